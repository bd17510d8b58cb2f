//! `POST /v1/responses`: the OpenAI Responses API as vLLM serves it for a plain text model
//! (`entrypoints/openai/responses/`: `api_router.py`, `serving.py`, `protocol.py`).
//!
//! - Not streamed: a `response` object (`ResponsesResponse.from_request`, keys in its field
//!   order), sent as `JSONResponse(model_dump())`: compact JSON, every field present, `null`s
//!   included. `output` holds one `message` item (id `msg_` + 32 hex) with one `output_text`
//!   part; `status` is `incomplete` with `incomplete_details: {"reason":"max_output_tokens"}`
//!   when generation stopped on length; `usage` is `{input_tokens, input_tokens_details,
//!   output_tokens, output_tokens_details, total_tokens}` (`ResponseUsage`; the per-turn lists stay
//!   empty for a plain model: `SimpleContext.all_turn_metrics`).
//! - Streamed (`stream` read as a lax boolean): see [`crate::responses_stream`].
//! - `input` is a string (one user message) or a list of items; `instructions` add a system
//!   message. Prompt tokens: 1 plus the words per message, as for chat. `max_output_tokens` is
//!   capped by the room left in the context window, not refused (`to_sampling_params`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::fault;
use crate::generate::{Null, Plan};
use crate::lax;
use crate::prompt::{message_tokens, Content};
use crate::request::{invalid, parse, stream_flag};
use crate::responses_stream;
use crate::sse;
use crate::state::{unix_now, MockState};

const WHAT: &str = "ResponsesRequest";

/// The part of a Responses request the mock reads or echoes.
#[derive(Debug, Deserialize)]
pub(crate) struct ResponsesRequest {
    #[serde(default)]
    model: Option<String>,
    input: Input,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    max_output_tokens: Option<i64>,
    #[serde(default)]
    stream: Value,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub metadata: Value,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default = "no_tools")]
    pub tools: Value,
    #[serde(default = "auto")]
    pub tool_choice: Value,
    #[serde(default)]
    pub text: Value,
    #[serde(default)]
    pub reasoning: Value,
    #[serde(default)]
    parallel_tool_calls: Value,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Items(Vec<Item>),
}

/// An input item (a message; other items count as an empty message).
#[derive(Debug, Deserialize)]
struct Item {
    #[serde(default)]
    content: Option<Content>,
}

impl ResponsesRequest {
    /// Prompt tokens: the instructions' system message and every input message.
    fn prompt_tokens(&self) -> u32 {
        let instructions = self
            .instructions
            .as_ref()
            .map_or(0, |text| message_tokens(Some(&Content::Text(text.clone()))));
        let input = match &self.input {
            Input::Text(text) => message_tokens(Some(&Content::Text(text.clone()))),
            Input::Items(items) => items
                .iter()
                .map(|i| message_tokens(i.content.as_ref()))
                .fold(0, u32::saturating_add),
        };
        instructions.saturating_add(input).max(1)
    }
}

/// What the reply shares between its events.
pub(crate) struct Reply {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub plan: Plan,
    /// `max_output_tokens` as the sampling parameters have it.
    pub max_output_tokens: u32,
    pub parallel_tool_calls: bool,
    pub request: ResponsesRequest,
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: ResponsesRequest = parse(&body, WHAT)?;
    let streamed = stream_flag(WHAT, &request.stream)?;
    let parallel_tool_calls = lax::optional_bool(&request.parallel_tool_calls)
        .map_err(|m| invalid(WHAT, "parallel_tool_calls", m))?
        .unwrap_or(true);
    let model = state.resolve_model(request.model.as_deref())?;
    let prompt = request.prompt_tokens();
    let max_len = state.config().max_model_len;
    if prompt >= max_len {
        return Err(ApiError::BadRequest(format!(
            "The engine prompt length {prompt} exceeds the max_model_len {max_len}. Please reduce prompt."
        )));
    }
    let room = i64::from(max_len - prompt);
    let max_tokens = request.max_output_tokens.map(|n| n.min(room));
    let plan = fault::overrun(Plan::new(prompt, max_tokens, state.config())?, state.fault());
    let meter = state.meter(&model);
    meter.add_prompt(u64::from(prompt));
    let reply = Reply {
        id: new_id_hex("resp_"),
        created_at: unix_now(),
        model,
        plan,
        max_output_tokens: u32::try_from(max_tokens.unwrap_or(room)).unwrap_or(0),
        parallel_tool_calls,
        request,
    };
    Ok(if streamed {
        sse::reply(&state, responses_stream::events(&reply), meter)
    } else {
        state.pace_generation(plan.completion_tokens).await;
        meter.add_generation(u64::from(plan.completion_tokens));
        Json(reply.object(Status::Done)).into_response()
    })
}

/// How far a response object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// `response.created` / `response.in_progress`: no output, no usage.
    InProgress,
    /// Generation is over.
    Done,
}

/// `ResponsesResponse`, fields in vLLM's order.
#[derive(Serialize)]
pub(crate) struct ResponseObject<'a> {
    id: &'a str,
    created_at: u64,
    incomplete_details: Option<IncompleteDetails>,
    instructions: Option<&'a str>,
    metadata: &'a Value,
    model: &'a str,
    object: &'static str,
    output: Vec<MessageItem>,
    parallel_tool_calls: bool,
    temperature: f64,
    tool_choice: &'a Value,
    tools: &'a Value,
    top_p: f64,
    background: bool,
    max_output_tokens: u32,
    max_tool_calls: Null,
    previous_response_id: Null,
    prompt: Null,
    reasoning: &'a Value,
    service_tier: &'static str,
    status: &'static str,
    text: &'a Value,
    top_logprobs: Null,
    truncation: &'static str,
    usage: Option<ResponseUsage>,
    user: Option<&'a str>,
    input_messages: Null,
    output_messages: Null,
}

#[derive(Serialize)]
struct IncompleteDetails {
    reason: &'static str,
}

/// A `message` output item (`ResponseOutputMessage`); the streamed `output_item.done` adds
/// `annotations` and `logprobs` keys after its fields, as vLLM passes them as extras.
#[derive(Serialize)]
pub(crate) struct MessageItem {
    pub id: String,
    pub content: Vec<TextPart>,
    pub role: &'static str,
    pub status: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<[Null; 0]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<[Null; 0]>,
}

/// An `output_text` part (`ResponseOutputText`): `logprobs` is `[]` when announced, `null` in
/// finished items.
#[derive(Serialize)]
pub(crate) struct TextPart {
    pub annotations: [Null; 0],
    pub text: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub logprobs: Option<[Null; 0]>,
}

/// `ResponseUsage` with vLLM's details.
#[derive(Serialize)]
struct ResponseUsage {
    input_tokens: u32,
    input_tokens_details: InputDetails,
    output_tokens: u32,
    output_tokens_details: OutputDetails,
    total_tokens: u32,
}

#[derive(Serialize)]
struct InputDetails {
    cached_tokens: u32,
    input_tokens_per_turn: [u32; 0],
    cached_tokens_per_turn: [u32; 0],
}

#[derive(Serialize)]
struct OutputDetails {
    reasoning_tokens: u32,
    tool_output_tokens: u32,
    output_tokens_per_turn: [u32; 0],
    tool_output_tokens_per_turn: [u32; 0],
}

/// `[]`, the default of `tools`.
fn no_tools() -> Value {
    Value::Array(Vec::new())
}

/// `"auto"`, the default of `tool_choice`.
fn auto() -> Value {
    Value::String("auto".to_owned())
}

impl Reply {
    /// Whether generation stopped on length (`status: "incomplete"`).
    pub(crate) fn incomplete(&self) -> bool {
        self.plan.finish_reason == "length"
    }

    /// The response object at `status`.
    pub(crate) fn object(&self, status: Status) -> ResponseObject<'_> {
        let done = status == Status::Done;
        let request = &self.request;
        ResponseObject {
            id: &self.id,
            created_at: self.created_at,
            incomplete_details: (done && self.incomplete())
                .then_some(IncompleteDetails { reason: "max_output_tokens" }),
            instructions: request.instructions.as_deref(),
            metadata: &request.metadata,
            model: &self.model,
            object: "response",
            output: if done { vec![self.message(new_id_hex("msg_"), None)] } else { Vec::new() },
            parallel_tool_calls: self.parallel_tool_calls,
            temperature: request.temperature.unwrap_or(1.0),
            tool_choice: &request.tool_choice,
            tools: &request.tools,
            top_p: request.top_p.unwrap_or(1.0),
            background: false,
            max_output_tokens: self.max_output_tokens,
            max_tool_calls: Null,
            previous_response_id: Null,
            prompt: Null,
            reasoning: &request.reasoning,
            service_tier: "auto",
            status: match (done, self.incomplete()) {
                (false, _) => "in_progress",
                (true, true) => "incomplete",
                (true, false) => "completed",
            },
            text: &request.text,
            top_logprobs: Null,
            truncation: "disabled",
            usage: done.then(|| self.usage()),
            user: request.user.as_deref(),
            input_messages: Null,
            output_messages: Null,
        }
    }

    /// The finished message item `id`; `extras` are the streamed item's extra keys.
    pub(crate) fn message(&self, id: String, extras: Option<[Null; 0]>) -> MessageItem {
        MessageItem {
            id,
            content: vec![self.part(self.plan.text(), None)],
            role: "assistant",
            status: "completed",
            kind: "message",
            annotations: extras,
            logprobs: extras,
        }
    }

    /// An `output_text` part.
    pub(crate) fn part(&self, text: String, logprobs: Option<[Null; 0]>) -> TextPart {
        TextPart { annotations: [], text, kind: "output_text", logprobs }
    }

    fn usage(&self) -> ResponseUsage {
        let (input, output) = (self.plan.prompt_tokens, self.plan.completion_tokens);
        ResponseUsage {
            input_tokens: input,
            input_tokens_details: InputDetails {
                cached_tokens: 0,
                input_tokens_per_turn: [],
                cached_tokens_per_turn: [],
            },
            output_tokens: output,
            output_tokens_details: OutputDetails {
                reasoning_tokens: 0,
                tool_output_tokens: 0,
                output_tokens_per_turn: [],
                tool_output_tokens_per_turn: [],
            },
            total_tokens: input.saturating_add(output),
        }
    }
}

/// `prefix` + 32 lowercase hex digits (vLLM's `random_uuid()` is `uuid4().hex`).
pub(crate) fn new_id_hex(prefix: &str) -> String {
    format!("{prefix}{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_tokens_count_instructions_and_every_message() {
        let request = |json: &str| serde_json::from_str::<ResponsesRequest>(json).unwrap();
        assert_eq!(request(r#"{"input":"three small words"}"#).prompt_tokens(), 4);
        let items = r#"{"instructions":"Be brief.","input":[{"role":"user","content":"hi there"},
            {"role":"user","content":[{"type":"input_text","text":"你好"}]},{"type":"function_call_output","output":"x"}]}"#;
        assert_eq!(request(items).prompt_tokens(), 3 + 3 + 2 + 1);
    }
}
