//! `POST /v1/completions`: a `text_completion` reply, or a stream of `text_completion` chunks
//! (one per token, then a finish chunk with empty text, optional usage-only chunk, `[DONE]`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::generate::{
    count, new_id, prompt_tokens_of_text, Null, Plan, Usage, SYSTEM_FINGERPRINT,
};
use crate::request::{parse, stream_mode, StreamOptions, UsageMode};
use crate::sse;
use crate::state::{unix_now, MockState};

/// The part of a completion request the mock reads.
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Prompt,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<i64>,
}

/// The prompt forms vLLM accepts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Prompt {
    Text(String),
    Tokens(Vec<i64>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<i64>>),
}

impl Prompt {
    /// Prompt tokens: words of a text, length of a token list (at least 1). The mock answers one
    /// prompt per request; a batch of several is a 400.
    fn tokens(&self) -> Result<u32, ApiError> {
        match self {
            Self::Text(text) => Ok(prompt_tokens_of_text(text)),
            Self::Tokens(ids) => Ok(count(ids.len()).max(1)),
            Self::Texts(texts) if texts.len() == 1 => Ok(prompt_tokens_of_text(&texts[0])),
            Self::TokenLists(lists) if lists.len() == 1 => Ok(count(lists[0].len()).max(1)),
            Self::Texts(_) | Self::TokenLists(_) => Err(ApiError::BadRequest(
                "mock-vllm answers exactly one prompt per request".to_owned(),
            )),
        }
    }
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&body, "CompletionRequest")?;
    let mode = stream_mode(request.stream, request.stream_options)?;
    let model = state.resolve_model(request.model.as_deref())?;
    let plan = Plan::new(request.prompt.tokens()?, request.max_tokens, state.config())?;
    let reply = Reply {
        id: new_id("cmpl-"),
        created: unix_now(),
        model,
    };
    Ok(match mode {
        Some(mode) => sse::response(reply.events(&plan, mode), state.config().split_seed, state.token_delay()),
        None => Json(reply.completion(&plan)).into_response(),
    })
}

struct Reply {
    id: String,
    created: u64,
    model: String,
}

/// The non-streamed reply (`vllm-completions.json`).
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice; 1],
    service_tier: Null,
    system_fingerprint: Null,
    usage: Usage,
    kv_transfer_params: Null,
}

#[derive(Serialize)]
struct Choice {
    index: u32,
    text: String,
    logprobs: Null,
    finish_reason: &'static str,
    stop_reason: Null,
    token_ids: Null,
    prompt_logprobs: Null,
    prompt_token_ids: Null,
}

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
    logprobs: Null,
    finish_reason: Option<&'static str>,
    stop_reason: Null,
    prompt_token_ids: Null,
    token_ids: Null,
}

impl Reply {
    fn completion(&self, plan: &Plan) -> Completion<'_> {
        let choice = Choice {
            index: 0,
            text: plan.text(),
            logprobs: Null,
            finish_reason: plan.finish_reason,
            stop_reason: Null,
            token_ids: Null,
            prompt_logprobs: Null,
            prompt_token_ids: Null,
        };
        Completion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: [choice],
            service_tier: Null,
            system_fingerprint: Null,
            usage: Usage::reply(plan.prompt_tokens, plan.completion_tokens),
            kv_transfer_params: Null,
        }
    }

    /// Every event of the stream, `[DONE]` included.
    fn events(&self, plan: &Plan, mode: UsageMode) -> Vec<Bytes> {
        let running = |tokens| {
            mode.continuous
                .then(|| Usage::running(plan.prompt_tokens, tokens))
        };
        let mut events: Vec<Bytes> = plan
            .pieces()
            .enumerate()
            .map(|(i, piece)| sse::event(&self.chunk(choice(piece, None), running(count(i + 1)))))
            .collect();
        let finish = choice("", Some(plan.finish_reason));
        events.push(sse::event(
            &self.chunk(finish, running(plan.completion_tokens)),
        ));
        if mode.include_usage {
            events.push(sse::event(&Chunk {
                choices: Vec::new(),
                system_fingerprint: Some(SYSTEM_FINGERPRINT),
                ..self.chunk(
                    choice("", None),
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

    fn chunk<'a>(&'a self, choice: StreamChoice<'a>, usage: Option<Usage>) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices: vec![choice],
            usage,
            system_fingerprint: None,
        }
    }
}

fn choice<'a>(text: &'a str, finish_reason: Option<&'static str>) -> StreamChoice<'a> {
    StreamChoice {
        index: 0,
        text,
        logprobs: Null,
        finish_reason,
        stop_reason: Null,
        prompt_token_ids: Null,
        token_ids: Null,
    }
}
