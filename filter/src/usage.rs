//! Token accounting: what the upstream reported about usage and errors, from a streamed response
//! ([`StreamAccounting`], fed chunk by chunk) or a whole JSON body ([`BodyAccounting`]). Both read
//! with the incremental [`crate::json_scan`] scanner and keep bounded memory however long the
//! response is; a streamed chunk whose data comes whole is read in one pass instead (`chunk.rs`),
//! which finds the same.
//!
//! What counts, per endpoint (the shapes are vLLM's, read from its server code):
//! - `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, not streamed: the body's
//!   top-level `usage` (`prompt_tokens`, `completion_tokens`, `total_tokens`; for batched prompts
//!   or inputs vLLM sums them there).
//! - `/v1/responses`, not streamed: the top-level `usage` with `input_tokens` / `output_tokens` /
//!   `total_tokens`, read as prompt / completion / total.
//! - streamed chat and completions: the usage-only chunk (`"choices": []`) when it comes; before
//!   it (a stream cut off), the running usage of each choice (`continuous_usage_stats`), summed
//!   over choices, with each prompt's tokens counted once (see [`PromptLayout`]).
//! - streamed `/v1/responses`: `response.usage` of the `response.completed` (or
//!   `response.incomplete` / `response.failed`) event.
//! - nothing reported: completion tokens are estimated as the number of chunks (or `*.delta`
//!   events) that carry generated content, and the source says `estimated`.

use serde::{Deserialize, Serialize};

mod body;
mod choices;
mod chunk;
mod event;
mod reported;
mod stream;

pub use body::BodyAccounting;
use reported::parse_usage;
pub use stream::{PromptLayout, StreamAccounting, MAX_TRACKED_CHOICES};

/// Values copied out of a reply are at most this large (64 KiB); a larger one is skipped.
pub const CAPTURE_BYTES: usize = 64 * 1024;

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum as the upstream reported it.
    pub total_tokens: u64,
}

/// Where the counts of a request came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageSource {
    /// The upstream reported them.
    Reported,
    /// None was reported; completion tokens are the number of content chunks seen.
    Estimated,
    /// Nothing to count (an error reply, a body without usage, a compressed reply).
    #[default]
    None,
}

/// An error the upstream sent, in vLLM's nested or older flat shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamError {
    /// The error's `type`, e.g. `BadRequestError`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// What a streamed chunk's top-level `usage` member is: what the caller's view of the stream
/// depends on when usage was injected into its request ([`crate::inject::StreamRewrite`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsageMember {
    /// There is none (or the event is not a chat or completions chunk).
    #[default]
    Absent,
    /// `"usage": null`.
    Null,
    /// A usage on a chunk that carries choices: the running usage of continuous usage stats.
    Running,
    /// A usage on a chunk whose `choices` is an empty list: the usage-only chunk.
    UsageOnly,
}

/// The outcome of counting one response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// The counts.
    pub usage: Usage,
    /// Where they came from.
    pub source: UsageSource,
    /// The upstream's error, if it sent one.
    pub error: Option<UpstreamError>,
}

impl Accounting {
    /// Counts the upstream reported.
    fn reported(usage: Usage, error: Option<UpstreamError>) -> Self {
        Self { usage, source: UsageSource::Reported, error }
    }
}

/// An error object's `type` (or, for the Responses API's errors, its `code`).
#[derive(Default, Deserialize)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Reads a captured `error` value: its `type` (else its `code`, else `error`); `None` for
/// `null`.
fn parse_error(bytes: &[u8]) -> Option<UpstreamError> {
    let object: Option<ErrorObject> =
        serde_json::from_slice(bytes).unwrap_or(Some(ErrorObject::default()));
    let object = object?;
    let text = |v: &Option<serde_json::Value>| {
        v.as_ref().and_then(serde_json::Value::as_str).map(str::to_owned)
    };
    Some(UpstreamError {
        kind: text(&object.kind)
            .or_else(|| text(&object.code))
            .unwrap_or_else(|| "error".to_owned()),
    })
}

/// Reads a captured JSON string (`None` when it is not one).
fn parse_str(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests;
