//! `POST /v1/chat/completions`: a `chat.completion` reply with `n` choices, or a stream of
//! `chat.completion.chunk` events (see [`crate::chat_stream`]), keys in the order vLLM sends
//! them (`vllm-chat.json`; `entrypoints/openai/chat_completion/serving.py`,
//! `chat_completion_full_generator`: one choice per output, `index` = the output's index; usage
//! counts the prompt once and the tokens of every choice).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat_stream;
use crate::error::ApiError;
use crate::fanout::{self, Choice};
use crate::fault;
use crate::generate::{new_id, Null, Plan, Usage};
use crate::lax;
use crate::logprobs::{self, LogprobsRequest, Wanted};
use crate::prompt::{message_tokens, Content};
use crate::request::{choices, parse, stream_mode};
use crate::sse;
use crate::state::{unix_now, MockState};

const WHAT: &str = "ChatCompletionRequest";

/// The part of a chat request the mock reads; everything else is accepted and ignored.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    /// Raw: read as vLLM reads it (`request::stream_mode`).
    #[serde(default)]
    stream: Value,
    #[serde(default)]
    stream_options: Value,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(flatten)]
    logprobs: LogprobsRequest,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[allow(dead_code)] // required, as in vLLM, but not otherwise used
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// Prompt tokens of a conversation: per message, 1 plus the words of its text.
fn prompt_tokens(messages: &[Message]) -> u32 {
    messages.iter().map(|m| message_tokens(m.content.as_ref())).fold(0, u32::saturating_add).max(1)
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ChatRequest = parse(&body, WHAT)?;
    let mode = stream_mode(WHAT, &request.stream, &request.stream_options)?;
    let n = choices(request.n)?;
    let logprobs = request.logprobs.chat(lax::truthy(&request.stream))?;
    let model = state.resolve_model(request.model.as_deref())?;
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let plan = Plan::new(prompt_tokens(&request.messages), max_tokens, state.config())?;
    let plan = fault::overrun(plan, state.fault());
    let choices = fanout::fan_out(&[plan], n);
    let meter = state.meter(&model);
    meter.add_prompt(fanout::prefilled(&choices));
    let reply =
        Reply { id: new_id("chatcmpl-"), created: unix_now(), model, plan, choices, logprobs };
    Ok(match mode {
        Some(mode) => sse::reply(&state, chat_stream::events(&reply, mode), meter),
        None => {
            let generated = fanout::totals(&[plan], &reply.choices).1;
            state.pace_generation(generated).await;
            meter.add_generation(u64::from(generated));
            Json(reply.completion()).into_response()
        }
    })
}

/// What every part of one reply shares.
pub(crate) struct Reply {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub plan: Plan,
    pub choices: Vec<Choice>,
    pub logprobs: Wanted,
}

/// The non-streamed reply (`vllm-chat.json`).
#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<CompletionChoice>,
    service_tier: Null,
    system_fingerprint: Null,
    usage: Usage,
    prompt_logprobs: Option<logprobs::PromptLogprobs>,
    prompt_token_ids: Null,
    kv_transfer_params: Null,
}

#[derive(Serialize)]
struct CompletionChoice {
    index: u32,
    message: ChatMessage,
    logprobs: Option<logprobs::ChatLogprobs>,
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

impl Reply {
    fn completion(&self) -> ChatCompletion<'_> {
        let choices = self
            .choices
            .iter()
            .map(|c| CompletionChoice {
                index: c.index,
                message: ChatMessage {
                    role: "assistant",
                    content: c.plan.text(),
                    refusal: Null,
                    annotations: Null,
                    audio: Null,
                    function_call: Null,
                    tool_calls: [],
                    reasoning: Null,
                },
                logprobs: self.logprobs.chat(0, c.plan.pieces()),
                finish_reason: c.plan.finish_reason,
                stop_reason: Null,
                token_ids: Null,
            })
            .collect();
        let (prompt, completion) = fanout::totals(&[self.plan], &self.choices);
        ChatCompletion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: &self.model,
            choices,
            service_tier: Null,
            system_fingerprint: Null,
            usage: Usage::reply(prompt, completion),
            prompt_logprobs: self.logprobs.prompt(self.plan.prompt_tokens),
            prompt_token_ids: Null,
            kv_transfer_params: Null,
        }
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
