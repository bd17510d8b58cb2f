//! Usage injection, invisible to the caller.
//!
//! For a streamed request the gateway asks vLLM for usage (`stream_options.include_usage`, and
//! `continuous_usage_stats` so that a stream cut off half-way can still be counted). The caller
//! then gets back exactly what it would have got without the injection: [`StreamRewrite`] drops
//! the usage-only chunk if the caller did not ask for usage, and removes from every other chunk
//! a running `usage` if it did not ask for continuous usage, or a `"usage": null` if it did not
//! ask for usage at all. Everything else passes byte for byte (an upstream that writes
//! `"usage": null` on every chunk of a caller that asked for usage keeps it); an event is held
//! only until its closing blank line has arrived.

use serde_json::{Map, Value};

use crate::request_body::{BodyEdit, MemberSpans, RequestFacts};

mod members;
mod stream;

pub(crate) use stream::EventEnd;
pub use stream::StreamRewrite;

/// What the caller itself asked for in `stream_options`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageAsk {
    /// Usage at the end of the stream (`stream_options` with `include_usage` true or absent).
    pub include_usage: bool,
    /// A running usage on every chunk (`include_usage` and `continuous_usage_stats: true`).
    pub continuous: bool,
}

impl UsageAsk {
    /// What a request body's `stream_options` asked for.
    pub fn of(facts: &RequestFacts) -> Self {
        Self {
            include_usage: facts.include_usage,
            continuous: facts.include_usage && facts.continuous_usage_stats,
        }
    }

    /// Whether the stream the caller gets differs from what the injected request returns.
    pub fn needs_rewrite(self) -> bool {
        !(self.include_usage && self.continuous)
    }
}

/// Makes a streamed request ask the upstream for usage: its `stream_options` get
/// `include_usage` (and `continuous_usage_stats` when `continuous`), the caller's other options
/// kept (options that are no JSON value `serde_json` reads, such as a key with a lone surrogate,
/// are replaced whole); without `stream_options` the member is added first. Only that member is
/// written: the rest of the body is copied byte for byte when `edit` is applied (a long prompt
/// is never parsed again nor re-serialised).
pub fn ask_for_usage(body: &[u8], members: &MemberSpans, continuous: bool, edit: &mut BodyEdit) {
    let options = members
        .value_in(body, "stream_options")
        .and_then(|value| serde_json::from_slice::<Value>(value).ok());
    edit.set("stream_options", with_usage_options(options, continuous).to_string().into_bytes());
}

/// The caller's `stream_options` (kept when it is an object) with the usage flags set.
fn with_usage_options(options: Option<Value>, continuous: bool) -> Value {
    let mut options = match options {
        Some(Value::Object(options)) => options,
        _ => Map::new(),
    };
    options.insert("include_usage".to_owned(), Value::Bool(true));
    if continuous {
        options.insert("continuous_usage_stats".to_owned(), Value::Bool(true));
    }
    Value::Object(options)
}

#[cfg(test)]
pub(crate) mod tests;
