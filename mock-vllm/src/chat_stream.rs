//! The streamed chat reply: `chat.completion.chunk` events as vLLM sends them
//! (`vllm-chat-stream-include-usage.sse`; `chat_completion/serving.py`,
//! `chat_completion_stream_generator`).
//!
//! First one role chunk per choice (`"delta":{"role":"assistant","content":""}`, with
//! `prompt_token_ids`/`prompt_text`), then one chunk per token of one choice (round-robin over the
//! choices, see [`crate::fanout`]), each choice's finish chunk, the usage-only chunk when asked
//! for, and `[DONE]`. With `continuous_usage_stats` every chunk's `usage` is that of ITS choice:
//! the prompt's tokens and the tokens choice `index` has generated so far; the final chunk sums
//! the prompt once and every choice's tokens.

use serde::Serialize;

use crate::chat::Reply;
use crate::fanout::{self, Step};
use crate::generate::{Null, Usage, SYSTEM_FINGERPRINT};
use crate::logprobs::ChatLogprobs;
use crate::request::UsageMode;
use crate::sse::{self, Event};

/// One streamed chunk; which optional keys it has depends on its kind (role, token, finish,
/// usage).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_token_ids: Option<Null>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_text: Option<Null>,
}

#[derive(Serialize)]
struct StreamChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<ChatLogprobs>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<Null>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ids: Option<Null>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// Every event of the stream, `[DONE]` included.
pub(crate) fn events(reply: &Reply, mode: UsageMode) -> Vec<Event> {
    let mut events: Vec<Event> =
        reply.choices.iter().map(|c| role_chunk(reply, c.index, mode)).collect();
    events.extend(
        fanout::schedule(&reply.choices).into_iter().map(|step| step_chunk(reply, step, mode)),
    );
    if mode.include_usage {
        let (prompt, completion) = fanout::totals(&[reply.plan], &reply.choices);
        let usage = Some(Usage::final_chunk(prompt, completion));
        let last = Chunk {
            system_fingerprint: Some(SYSTEM_FINGERPRINT),
            ..chunk_of(reply, Vec::new(), usage)
        };
        events.push(Event::data(sse::event(&last)));
    }
    events.push(Event::done());
    events
}

/// The running usage of a choice that has generated `tokens`, if the stream carries it.
fn running(reply: &Reply, mode: UsageMode, tokens: u32) -> Option<Usage> {
    mode.continuous.then(|| Usage::running(reply.plan.prompt_tokens, tokens))
}

/// The first chunk of choice `index`: its role, and `prompt_token_ids`/`prompt_text`.
fn role_chunk(reply: &Reply, index: u32, mode: UsageMode) -> Event {
    let role = Delta { role: Some("assistant"), content: Some("") };
    let chunk = Chunk {
        prompt_token_ids: Some(Null),
        prompt_text: Some(Null),
        ..chunk(reply, choice(index, role, None), running(reply, mode, 0))
    };
    Event::data(sse::event(&chunk))
}

/// A token or finish chunk of one choice.
fn step_chunk(reply: &Reply, step: Step, mode: UsageMode) -> Event {
    match step {
        Step::Token { choice: at, piece, so_far } => {
            let delta = Delta { role: None, content: Some(piece) };
            let token = StreamChoice {
                token_ids: Some(Null),
                logprobs: reply.logprobs.chat(so_far as usize - 1, [piece]),
                ..choice(reply.choices[at].index, delta, None)
            };
            Event::token(sse::event(&chunk(reply, token, running(reply, mode, so_far))))
        }
        Step::Finish { choice: at } => {
            let c = &reply.choices[at];
            let delta = Delta { role: None, content: None };
            let finish = StreamChoice {
                stop_reason: Some(Null),
                token_ids: Some(Null),
                ..choice(c.index, delta, Some(c.plan.finish_reason))
            };
            let usage = running(reply, mode, c.plan.completion_tokens);
            Event::data(sse::event(&chunk(reply, finish, usage)))
        }
    }
}

fn chunk<'a>(reply: &'a Reply, choice: StreamChoice<'a>, usage: Option<Usage>) -> Chunk<'a> {
    chunk_of(reply, vec![choice], usage)
}

fn chunk_of<'a>(
    reply: &'a Reply,
    choices: Vec<StreamChoice<'a>>,
    usage: Option<Usage>,
) -> Chunk<'a> {
    Chunk {
        id: &reply.id,
        object: "chat.completion.chunk",
        created: reply.created,
        model: &reply.model,
        choices,
        usage,
        system_fingerprint: None,
        prompt_token_ids: None,
        prompt_text: None,
    }
}

fn choice<'a>(
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
) -> StreamChoice<'a> {
    StreamChoice { index, delta, logprobs: None, finish_reason, stop_reason: None, token_ids: None }
}
