//! The streamed completion reply: `text_completion` chunks as vLLM sends them
//! (`completion/serving.py`, `completion_stream_generator`): one chunk per token of one choice
//! (round-robin over prompts and samples, see [`crate::fanout`]), a finish chunk with empty text
//! per choice, the usage-only chunk when asked for, and `[DONE]`.
//!
//! With `continuous_usage_stats` each chunk's `usage` is that of ITS choice `i` =
//! `prompt_idx * n + output_idx`: `prompt_tokens` of that prompt, `completion_tokens` generated so
//! far by choice `i`. The final chunk sums every prompt once and every choice's tokens.

use serde::Serialize;

use crate::completions::Reply;
use crate::fanout::{self, Choice, Step};
use crate::generate::{Null, Usage, SYSTEM_FINGERPRINT};
use crate::logprobs::CompletionLogprobs;
use crate::request::UsageMode;
use crate::sse::{self, Event};

/// One streamed chunk, as vLLM's completion stream sets its fields.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<StreamChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_fingerprint: Option<&'static str>,
}

#[derive(Serialize)]
struct StreamChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<CompletionLogprobs>,
    finish_reason: Option<&'static str>,
    stop_reason: Null,
    prompt_token_ids: Null,
    token_ids: Null,
}

/// Every event of the stream, `[DONE]` included.
pub(crate) fn events(reply: &Reply, mode: UsageMode) -> Vec<Event> {
    let running =
        |c: &Choice, tokens| mode.continuous.then(|| Usage::running(c.plan.prompt_tokens, tokens));
    // Characters each choice has sent so far: the `text_offset` of its next logprobs.
    let mut offsets = vec![0usize; reply.choices.len()];
    let mut events = Vec::new();
    for step in fanout::schedule(&reply.choices) {
        events.push(match step {
            Step::Token { choice: at, piece, so_far } => {
                let c = &reply.choices[at];
                let token = StreamChoice {
                    logprobs: reply.logprobs.completion(so_far as usize - 1, [piece], offsets[at]),
                    ..choice(c.index, piece, None)
                };
                offsets[at] += piece.chars().count();
                Event::token(sse::event(&chunk(reply, vec![token], running(c, so_far))))
            }
            Step::Finish { choice: at } => {
                let c = &reply.choices[at];
                let finish = choice(c.index, "", Some(c.plan.finish_reason));
                let usage = running(c, c.plan.completion_tokens);
                Event::data(sse::event(&chunk(reply, vec![finish], usage)))
            }
        });
    }
    if mode.include_usage {
        let (prompt, completion) = fanout::totals(&reply.plans, &reply.choices);
        let last = Chunk {
            system_fingerprint: Some(SYSTEM_FINGERPRINT),
            ..chunk(reply, Vec::new(), Some(Usage::final_chunk(prompt, completion)))
        };
        events.push(Event::data(sse::event(&last)));
    }
    events.push(Event::done());
    events
}

fn chunk<'a>(reply: &'a Reply, choices: Vec<StreamChoice<'a>>, usage: Option<Usage>) -> Chunk<'a> {
    Chunk {
        id: &reply.id,
        object: "text_completion",
        created: reply.created,
        model: &reply.model,
        choices,
        usage,
        system_fingerprint: None,
    }
}

fn choice<'a>(index: u32, text: &'a str, finish_reason: Option<&'static str>) -> StreamChoice<'a> {
    StreamChoice {
        index,
        text,
        logprobs: None,
        finish_reason,
        stop_reason: Null,
        prompt_token_ids: Null,
        token_ids: Null,
    }
}
