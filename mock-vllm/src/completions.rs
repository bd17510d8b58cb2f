//! `POST /v1/completions`: a `text_completion` reply, or a stream of `text_completion` chunks
//! (see [`crate::completions_stream`]), for one prompt or a batch, with `n` choices per prompt.
//!
//! As in vLLM (`entrypoints/openai/completion/serving.py`): every prompt of a batch is its own
//! engine request; choice `index` = `prompt_index * n + output_index`; `usage` counts each
//! prompt once and the tokens of every choice (`request_output_to_completion_response`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::completions_stream;
use crate::error::ApiError;
use crate::fanout::{self, Choice};
use crate::fault;
use crate::generate::{new_id, Null, Plan, Usage};
use crate::lax;
use crate::logprobs::{CompletionLogprobs, LogprobsRequest, PromptLogprobs, Wanted};
use crate::prompt::Prompt;
use crate::request::{choices, parse, stream_mode};
use crate::sse;
use crate::state::{unix_now, MockState};

const WHAT: &str = "CompletionRequest";

/// The part of a completion request the mock reads.
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: Prompt,
    /// Raw: read as vLLM reads it (`request::stream_mode`).
    #[serde(default)]
    stream: Value,
    #[serde(default)]
    stream_options: Value,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(flatten)]
    logprobs: LogprobsRequest,
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CompletionRequest = parse(&body, WHAT)?;
    let mode = stream_mode(WHAT, &request.stream, &request.stream_options)?;
    let n = choices(request.n)?;
    let logprobs = request.logprobs.completion(lax::truthy(&request.stream))?;
    let model = state.resolve_model(request.model.as_deref())?;
    let plans = request
        .prompt
        .each()
        .into_iter()
        .map(|p| Plan::new(p.tokens(), request.max_tokens, state.config()))
        .map(|plan| plan.map(|plan| fault::overrun(plan, state.fault())))
        .collect::<Result<Vec<_>, _>>()?;
    let choices = fanout::fan_out(&plans, n);
    let meter = state.meter(&model);
    meter.add_prompt(fanout::prefilled(&choices));
    let reply = Reply { id: new_id("cmpl-"), created: unix_now(), model, plans, choices, logprobs };
    Ok(match mode {
        Some(mode) => sse::reply(&state, completions_stream::events(&reply, mode), meter),
        None => {
            let generated = fanout::totals(&reply.plans, &reply.choices).1;
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
    /// One per prompt of the batch.
    pub plans: Vec<Plan>,
    pub choices: Vec<Choice>,
    pub logprobs: Wanted,
}

/// The non-streamed reply (`vllm-completions.json`).
#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<CompletionChoice>,
    service_tier: Null,
    system_fingerprint: Null,
    usage: Usage,
    kv_transfer_params: Null,
}

#[derive(Serialize)]
struct CompletionChoice {
    index: u32,
    text: String,
    logprobs: Option<CompletionLogprobs>,
    finish_reason: &'static str,
    stop_reason: Null,
    token_ids: Null,
    prompt_logprobs: Option<PromptLogprobs>,
    prompt_token_ids: Null,
}

impl Reply {
    fn completion(&self) -> Completion<'_> {
        let choices = self
            .choices
            .iter()
            .map(|c| CompletionChoice {
                index: c.index,
                text: c.plan.text(),
                logprobs: self.logprobs.completion(0, c.plan.pieces(), 0),
                finish_reason: c.plan.finish_reason,
                stop_reason: Null,
                token_ids: Null,
                prompt_logprobs: self.logprobs.prompt(c.plan.prompt_tokens),
                prompt_token_ids: Null,
            })
            .collect();
        let (prompt, completion) = fanout::totals(&self.plans, &self.choices);
        Completion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            service_tier: Null,
            system_fingerprint: Null,
            usage: Usage::reply(prompt, completion),
            kv_transfer_params: Null,
        }
    }
}
