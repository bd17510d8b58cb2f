//! Token accounting: what the upstream reported about usage and errors, from a streamed response
//! ([`StreamAccounting`], fed chunk by chunk through the SSE parser) or a whole JSON body
//! ([`BodyAccounting`]). Both keep bounded memory however long the response is.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::sse::SseParser;

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
    /// Nothing to count (an error reply, or a body without usage).
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

/// What one JSON document (a stream chunk or a whole body) says about usage.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DocumentFacts {
    /// The `usage` object, if present and not null.
    pub usage: Option<Usage>,
    /// An error object, if the document is one.
    pub error: Option<UpstreamError>,
    /// Whether a choice carries generated content (one token per chunk when estimating).
    pub has_content: bool,
}

/// A stream chunk or a whole body, read without keeping its text: strings the accounting only
/// tests for emptiness are never copied, and every other member is skipped.
#[derive(Deserialize)]
struct Document<'a> {
    #[serde(default)]
    usage: Option<ReportedUsage>,
    #[serde(default)]
    error: Option<ErrorObject>,
    #[serde(default, borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
}

#[derive(Deserialize)]
struct ReportedUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<Text>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<Text>,
    #[serde(default)]
    reasoning_content: Option<Text>,
    #[serde(default)]
    tool_calls: Option<IgnoredAny>,
}

/// A JSON string, of which only whether it is empty is kept.
struct Text {
    empty: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl serde::de::Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text { empty: v.is_empty() })
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl From<ReportedUsage> for Usage {
    fn from(r: ReportedUsage) -> Self {
        let prompt = r.prompt_tokens.unwrap_or(0);
        let completion = r.completion_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: r.total_tokens.unwrap_or(prompt.saturating_add(completion)),
        }
    }
}

/// Reads one JSON document; `None` if it is not a JSON object.
pub fn read_document(bytes: &[u8]) -> Option<DocumentFacts> {
    let doc: Document<'_> = serde_json::from_slice(bytes).ok()?;
    let flat_error = (doc.object.as_deref() == Some("error")).then(|| UpstreamError {
        kind: doc.kind.as_deref().unwrap_or("error").to_owned(),
    });
    let nested_error = doc.error.map(|e| UpstreamError {
        kind: e.kind.unwrap_or_else(|| "error".to_owned()),
    });
    let has_content = doc.choices.iter().flatten().any(Choice::has_content);
    Some(DocumentFacts {
        usage: doc.usage.map(Usage::from),
        error: nested_error.or(flat_error),
        has_content,
    })
}

impl Choice {
    fn has_content(&self) -> bool {
        let non_empty = |s: &Option<Text>| s.as_ref().is_some_and(|s| !s.empty);
        non_empty(&self.text)
            || self.delta.as_ref().is_some_and(|d| {
                non_empty(&d.content) || non_empty(&d.reasoning_content) || d.tool_calls.is_some()
            })
    }
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

/// Counts a streamed (SSE) response as it passes through.
#[derive(Debug, Default)]
pub struct StreamAccounting {
    parser: SseParser,
    reported: Option<Usage>,
    content_chunks: u64,
    error: Option<UpstreamError>,
}

impl StreamAccounting {
    /// Reads the next piece of the stream.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.parser.feed(chunk);
        while let Some(event) = self.parser.next() {
            self.take_event(&event);
        }
    }

    fn take_event(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            return;
        }
        let Some(facts) = read_document(data) else {
            return;
        };
        if facts.usage.is_some() {
            self.reported = facts.usage;
        }
        if facts.has_content {
            self.content_chunks += 1;
        }
        if facts.error.is_some() {
            self.error = facts.error;
        }
    }

    /// The counts so far; call at the end of the stream (or when it was cut off).
    pub fn finish(&mut self) -> Accounting {
        if let Some(event) = self.parser.finish() {
            self.take_event(&event);
        }
        let (usage, source) = match (self.reported, self.content_chunks) {
            (Some(usage), _) => (usage, UsageSource::Reported),
            (None, 0) => (Usage::default(), UsageSource::None),
            (None, n) => (
                Usage { prompt_tokens: 0, completion_tokens: n, total_tokens: n },
                UsageSource::Estimated,
            ),
        };
        Accounting { usage, source, error: self.error.clone() }
    }
}

/// Counts a whole (non-streamed) JSON body, which passes through untouched while a copy of at
/// most `limit` bytes is kept; past that only the tail is kept, where `usage` sits.
#[derive(Debug)]
pub struct BodyAccounting {
    kept: Vec<u8>,
    limit: usize,
    truncated: bool,
}

/// Bytes of the body's tail kept once a body is over the limit.
const TAIL_BYTES: usize = 64 * 1024;

impl BodyAccounting {
    /// Keeps at most `limit` bytes of the body (at least the tail window).
    pub fn new(limit: usize) -> Self {
        Self { kept: Vec::new(), limit: limit.max(TAIL_BYTES), truncated: false }
    }

    /// Reads the next piece of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.kept.extend_from_slice(chunk);
        if self.kept.len() > self.limit {
            let cut = self.kept.len() - TAIL_BYTES;
            self.kept.drain(..cut);
            self.truncated = true;
        }
    }

    /// The counts, once the body is complete.
    pub fn finish(&mut self) -> Accounting {
        let facts = if self.truncated {
            usage_in_tail(&self.kept).map(|usage| DocumentFacts { usage: Some(usage), ..Default::default() })
        } else {
            read_document(&self.kept)
        };
        self.kept = Vec::new();
        let facts = facts.unwrap_or_default();
        match facts.usage {
            Some(usage) => Accounting { usage, source: UsageSource::Reported, error: facts.error },
            None => Accounting { error: facts.error, ..Default::default() },
        }
    }
}

/// Finds the last `"usage":{…}` object in the tail of a large body.
fn usage_in_tail(tail: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\":";
    let at = tail.windows(KEY.len()).rposition(|w| w == KEY)?;
    let rest = tail.get(at + KEY.len()..)?;
    let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<ReportedUsage>();
    stream.next()?.ok().map(Usage::from)
}

#[cfg(test)]
mod tests;
