//! `POST /v1/chat/completions`: a `chat.completion` reply, or a stream of
//! `chat.completion.chunk` events (role chunk, one chunk per token, finish chunk, optional
//! usage-only chunk, `[DONE]`), keys in the order vLLM sends them.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::generate::{count, new_id, Null, Plan, Usage, SYSTEM_FINGERPRINT};
use crate::request::{parse, stream_mode, StreamOptions, UsageMode};
use crate::sse;
use crate::state::{unix_now, MockState};

/// The part of a chat request the mock reads; everything else is accepted and ignored.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[allow(dead_code)] // required, as in vLLM, but not otherwise used
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

/// Prompt tokens of a conversation: per message, 1 plus the words of its text.
fn prompt_tokens(messages: &[Message]) -> u32 {
    let words = |text: &str| count(text.split_whitespace().count());
    let message_tokens = |m: &Message| match &m.content {
        Some(Content::Text(text)) => 1 + words(text),
        Some(Content::Parts(parts)) => {
            1 + parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .map(words)
                .sum::<u32>()
        }
        None => 1,
    };
    messages.iter().map(message_tokens).sum::<u32>().max(1)
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&body, "ChatCompletionRequest")?;
    let mode = stream_mode(request.stream, request.stream_options)?;
    let model = state.resolve_model(request.model.as_deref())?;
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let plan = Plan::new(prompt_tokens(&request.messages), max_tokens, state.config())?;
    let reply = Reply {
        id: new_id("chatcmpl-"),
        created: unix_now(),
        model,
    };
    Ok(match mode {
        Some(mode) => sse::response(reply.events(&plan, mode), state.config().split_seed, state.token_delay()),
        None => Json(reply.completion(&plan)).into_response(),
    })
}

/// What every part of one reply shares.
struct Reply {
    id: String,
    created: u64,
    model: String,
}

/// The non-streamed reply (`vllm-chat.json`).
#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice; 1],
    service_tier: Null,
    system_fingerprint: Null,
    usage: Usage,
    prompt_logprobs: Null,
    prompt_token_ids: Null,
    kv_transfer_params: Null,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    message: ChatMessage,
    logprobs: Null,
    finish_reason: &'static str,
    stop_reason: Null,
    token_ids: Null,
}

#[derive(Serialize)]
struct ChatMessage {
    role: &'static str,
    content: String,
    refusal: Null,
    annotations: Null,
    audio: Null,
    function_call: Null,
    tool_calls: [Null; 0],
    reasoning: Null,
}

/// One streamed chunk (`vllm-chat-stream-include-usage.sse`); which optional keys it has
/// depends on its kind (role, token, finish, usage).
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
    logprobs: Null,
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

impl Reply {
    fn completion(&self, plan: &Plan) -> ChatCompletion<'_> {
        let message = ChatMessage {
            role: "assistant",
            content: plan.text(),
            refusal: Null,
            annotations: Null,
            audio: Null,
            function_call: Null,
            tool_calls: [],
            reasoning: Null,
        };
        let choice = Choice {
            index: 0,
            message,
            logprobs: Null,
            finish_reason: plan.finish_reason,
            stop_reason: Null,
            token_ids: Null,
        };
        ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices: [choice],
            service_tier: Null,
            system_fingerprint: Null,
            usage: Usage::reply(plan.prompt_tokens, plan.completion_tokens),
            prompt_logprobs: Null,
            prompt_token_ids: Null,
            kv_transfer_params: Null,
        }
    }

    /// Every event of the stream, `[DONE]` included.
    fn events(&self, plan: &Plan, mode: UsageMode) -> Vec<Bytes> {
        let running = |tokens| {
            mode.continuous
                .then(|| Usage::running(plan.prompt_tokens, tokens))
        };
        let first = Delta {
            role: Some("assistant"),
            content: Some(""),
        };
        let mut events = vec![sse::event(&Chunk {
            prompt_token_ids: Some(Null),
            prompt_text: Some(Null),
            ..self.chunk(vec![choice(first, None)], running(0))
        })];
        for (i, piece) in plan.pieces().enumerate() {
            let delta = Delta {
                role: None,
                content: Some(piece),
            };
            let token = StreamChoice {
                token_ids: Some(Null),
                ..choice(delta, None)
            };
            events.push(sse::event(&self.chunk(vec![token], running(count(i + 1)))));
        }
        let finish = StreamChoice {
            stop_reason: Some(Null),
            token_ids: Some(Null),
            ..choice(
                Delta {
                    role: None,
                    content: None,
                },
                Some(plan.finish_reason),
            )
        };
        events.push(sse::event(
            &self.chunk(vec![finish], running(plan.completion_tokens)),
        ));
        if mode.include_usage {
            events.push(sse::event(&Chunk {
                system_fingerprint: Some(SYSTEM_FINGERPRINT),
                ..self.chunk(
                    Vec::new(),
                    Some(Usage::final_chunk(
                        plan.prompt_tokens,
                        plan.completion_tokens,
                    )),
                )
            }));
        }
        events.push(Bytes::from_static(sse::DONE));
        events
    }

    fn chunk<'a>(&'a self, choices: Vec<StreamChoice<'a>>, usage: Option<Usage>) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
            system_fingerprint: None,
            prompt_token_ids: None,
            prompt_text: None,
        }
    }
}

fn choice<'a>(delta: Delta<'a>, finish_reason: Option<&'static str>) -> StreamChoice<'a> {
    StreamChoice {
        index: 0,
        delta,
        logprobs: Null,
        finish_reason,
        stop_reason: None,
        token_ids: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_tokens_are_one_per_message_plus_words() {
        let request: ChatRequest = serde_json::from_str(
            r#"{"messages":[{"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"你好, gateway"},{"type":"image_url","image_url":{"url":"x"}}]},
                {"role":"assistant","content":null}]}"#,
        )
        .unwrap();
        assert_eq!(prompt_tokens(&request.messages), (1 + 2) + (1 + 2) + 1);
        assert_eq!(prompt_tokens(&[]), 1);
    }
}
