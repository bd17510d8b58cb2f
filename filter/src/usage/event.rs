//! What one streamed event says about usage: a chat or completions chunk, or a Responses API
//! event (`{"type":"response.output_text.delta",…}`, `{"type":"response.completed",…}`).

use super::choices::Choices;
use super::CAPTURE_BYTES;
use super::{parse_error, parse_str, parse_usage, UpstreamError, Usage, UsageMember};
use crate::json_scan::{Captured, JsonScanner, MemberSpan, Path, Scan};

const USAGE: usize = 0;
const ERROR: usize = 1;
const OBJECT: usize = 2;
const TYPE: usize = 3;
const CHOICES: usize = 4;
const DELTA: usize = 5;
const CODE: usize = 6;
const RESPONSE_USAGE: usize = 7;
const RESPONSE_ERROR: usize = 8;

/// The members an event is scanned for.
pub(super) const PATHS: &[Path] = &[
    &["usage"],
    &["error"],
    &["object"],
    &["type"],
    &["choices"],
    &["delta"],
    &["code"],
    &["response", "usage"],
    &["response", "error"],
];

/// The Responses API events whose `response` carries the request's final usage.
const FINAL_RESPONSE_EVENTS: [&str; 3] =
    ["response.completed", "response.incomplete", "response.failed"];

/// What one event says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct EventFacts {
    /// The usage it reports, if any (not `null`).
    pub usage: Option<Usage>,
    /// The usage covers the whole request (a usage-only chunk, a final Responses event) rather
    /// than the choice the chunk carries.
    pub usage_is_total: bool,
    /// The index of the (first) choice the chunk carries, when it could be read.
    pub choice: Option<u64>,
    /// Whether it carries generated content (one token when estimating).
    pub has_content: bool,
    /// An error, if the event is one.
    pub error: Option<UpstreamError>,
    /// What its top-level `usage` member is.
    pub usage_member: UsageMember,
    /// Where that member sits in the event's data, when the scan could tell.
    pub usage_span: Option<MemberSpan>,
}

/// Reads the facts of one scanned event.
pub(super) fn read(scan: &Scan) -> EventFacts {
    if !scan.is_object {
        return EventFacts::default(); // `[DONE]`, or not JSON
    }
    // Chat and completions chunks have no `type`: only a Responses event's is read.
    let responses_kind = |t: &&[u8]| t.starts_with(b"\"response.") || *t == &b"\"error\""[..];
    let kind = scan.value(TYPE).filter(responses_kind).and_then(parse_str);
    let mut facts = match kind.as_deref() {
        Some(k) if k.starts_with("response.") => responses_event(scan, k),
        _ => chunk(scan),
    };
    facts.error = error_of(scan, kind.as_deref());
    facts
}

/// A chat or completions chunk.
fn chunk(scan: &Scan) -> EventFacts {
    let usage = scan.value(USAGE).and_then(parse_usage);
    let (choices, has_content, choice) = match scan.captured(CHOICES) {
        None => (0, false, None),
        // Too large to read: it surely carries something, but which choice is unknown.
        Some(Captured::TooLarge) => (1, true, None),
        Some(Captured::Value(bytes)) => {
            let choices = Choices::read(bytes);
            (choices.count, choices.has_content, choices.first)
        }
    };
    EventFacts {
        usage,
        usage_is_total: usage.is_some() && choices == 0,
        choice,
        has_content,
        error: None,
        usage_member: usage_member(scan),
        usage_span: scan.span(USAGE),
    }
}

/// What a chunk's top-level `usage` member is; a usage-only chunk has `"choices": []`.
fn usage_member(scan: &Scan) -> UsageMember {
    let no_choices = scan.value(CHOICES).is_some_and(|v| {
        v.first() == Some(&b'[')
            && v.iter().skip(1).find(|b| !b.is_ascii_whitespace()) == Some(&b']')
    });
    match scan.captured(USAGE) {
        None => UsageMember::Absent,
        Some(Captured::Value(v)) if v == b"null" => UsageMember::Null,
        Some(_) if no_choices => UsageMember::UsageOnly,
        Some(_) => UsageMember::Running,
    }
}

/// A Responses API event.
fn responses_event(scan: &Scan, kind: &str) -> EventFacts {
    if FINAL_RESPONSE_EVENTS.contains(&kind) {
        let usage = scan.value(RESPONSE_USAGE).and_then(parse_usage);
        return EventFacts { usage, usage_is_total: usage.is_some(), ..Default::default() };
    }
    let has_content = kind.ends_with(".delta")
        && match scan.captured(DELTA) {
            Some(Captured::Value(bytes)) => bytes != b"\"\"" && bytes != b"null",
            Some(Captured::TooLarge) => true,
            None => false,
        };
    EventFacts { has_content, ..Default::default() }
}

/// The event's error: vLLM's `{"error":{…}}` or flat `{"object":"error",…}`, the Responses
/// API's `{"type":"error","code":…}` event, or a failed response's `response.error`.
fn error_of(scan: &Scan, kind: Option<&str>) -> Option<UpstreamError> {
    let from = |index: usize| match scan.captured(index)? {
        Captured::Value(bytes) => parse_error(bytes),
        Captured::TooLarge => Some(UpstreamError { kind: "error".to_owned() }),
    };
    if let Some(error) = from(ERROR).or_else(|| from(RESPONSE_ERROR)) {
        return Some(error);
    }
    if scan.value(OBJECT) == Some(&b"\"error\""[..]) {
        // The older flat shape: `type` is the error's.
        let kind = scan.value(TYPE).and_then(parse_str);
        return Some(UpstreamError { kind: kind.unwrap_or_else(|| "error".to_owned()) });
    }
    (kind == Some("error")).then(|| UpstreamError {
        kind: scan.value(CODE).and_then(parse_str).unwrap_or_else(|| "error".to_owned()),
    })
}

/// Reads each event's data into its facts: in one pass when its data comes whole ([`super::chunk`]),
/// else with the scanner.
#[derive(Debug)]
pub(super) struct EventReader {
    scanner: JsonScanner,
    /// Whole events are read in one pass (else every event by the scanner).
    pub(super) one_pass: bool,
    /// Some of the current event's data has come.
    in_event: bool,
    /// The current event's facts, when its data's first piece was read in one pass: the rest of
    /// its data is then ignored, as the scanner ignores what follows a whole object.
    read_whole: Option<EventFacts>,
    /// The start the stream's chunks share, read once ([`super::chunk::Prefix`]).
    prefix: super::chunk::Prefix,
}

impl EventReader {
    pub(super) fn new() -> Self {
        Self {
            scanner: JsonScanner::new(PATHS, CAPTURE_BYTES),
            one_pass: true,
            in_event: false,
            read_whole: None,
            prefix: Default::default(),
        }
    }

    /// More of the current event's data.
    pub(super) fn data(&mut self, bytes: &[u8]) {
        if self.read_whole.is_some() {
            return;
        }
        if !std::mem::replace(&mut self.in_event, true) && self.one_pass {
            self.read_whole = super::chunk::read_after(bytes, &mut self.prefix);
            if self.read_whole.is_some() {
                return;
            }
        }
        self.scanner.feed(bytes);
    }

    /// The current event ended: its facts.
    pub(super) fn end(&mut self) -> EventFacts {
        self.in_event = false;
        self.read_whole.take().unwrap_or_else(|| {
            let scan = self.scanner.finish();
            let facts = read(&scan);
            self.scanner.recycle(scan);
            facts
        })
    }
}
