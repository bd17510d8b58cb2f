//! What the caller gets of a streamed reply whose request was injected with usage options.
//!
//! The stream is parsed once, by the counting ([`crate::usage::StreamAccounting`]), which hands
//! each event's end and what its `usage` member is to [`StreamRewrite`]: the event's bytes then
//! go on as they came, lose their `usage` member, or are dropped (see [`UsageAsk`]). An event is
//! held only until its closing blank line has arrived; one longer than 1 MiB is passed on as it
//! is rather than held.

use super::members::{key_is, member_cut, member_span, top_level_members};
use super::UsageAsk;
use crate::json_scan::MemberSpan;
use crate::usage::UsageMember;

/// Events longer than this are passed on unchanged rather than held (1 MiB).
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// How an event of the chunk being read ended, as the counting's one parse of the stream saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventEnd {
    /// Where its bytes end in the chunk (its blank line included).
    pub end: usize,
    /// What its top-level `usage` member is.
    pub usage: UsageMember,
    /// Where that member sits in its data, when the counting's scan could tell.
    pub span: Option<MemberSpan>,
    /// How many bytes its data has (the values of its `data` lines, joined).
    pub data_len: usize,
    /// It ended on a CR: an LF starting the next chunk is its.
    pub owes_lf: bool,
}

/// Rewrites a streamed reply for the caller, event by event; see the module docs.
#[derive(Debug)]
pub struct StreamRewrite {
    ask: UsageAsk,
    /// The bytes of the event in progress that came in earlier chunks.
    held: Vec<u8>,
    /// What the caller gets of the chunk being read.
    out: Vec<u8>,
    /// Where the event in progress starts in the chunk being read.
    start: usize,
    /// The last event ended on a CR that ended its chunk: an LF starting the next chunk is its
    /// (sent on when the event was).
    lf_owed: Option<bool>,
    /// Part of the event in progress was passed on unchanged (it was too long to hold).
    passed_on: bool,
}

impl StreamRewrite {
    /// A rewrite for a caller that asked for `ask`.
    pub fn new(ask: UsageAsk) -> Self {
        Self { ask, held: Vec::new(), out: Vec::new(), start: 0, lf_owed: None, passed_on: false }
    }

    /// A chunk of the stream is about to be read.
    pub(crate) fn begin(&mut self, chunk: &[u8]) {
        self.out.clear();
        self.out.reserve(chunk.len());
        self.start = 0;
        if chunk.is_empty() {
            return;
        }
        if let Some(kept) = self.lf_owed.take() {
            if chunk.first() == Some(&b'\n') {
                if kept {
                    self.out.push(b'\n');
                }
                self.start = 1;
            }
        }
    }

    /// An event of the chunk ended ([`EventEnd`]).
    pub(crate) fn event(&mut self, chunk: &[u8], ended: EventEnd) {
        let tail = chunk.get(self.start..ended.end).unwrap_or_default();
        // The span is the whole event's: of no use for what is left of it.
        let span = ended.span.filter(|_| !std::mem::take(&mut self.passed_on));
        let read = EventEnd { span, ..ended };
        let kept = if self.held.is_empty() {
            rewrite_event(tail, read, self.ask, &mut self.out)
        } else {
            self.held.extend_from_slice(tail);
            let kept = rewrite_event(&self.held, read, self.ask, &mut self.out);
            self.held.clear();
            kept
        };
        self.start = ended.end;
        self.lf_owed = (ended.owes_lf && ended.end == chunk.len()).then_some(kept);
    }

    /// The chunk has been read: the bytes the caller gets instead of it, or `None` when they are
    /// the chunk's own.
    pub(crate) fn end_chunk(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        self.held.extend_from_slice(chunk.get(self.start..).unwrap_or_default());
        if self.held.len() > MAX_HELD_BYTES {
            self.out.append(&mut self.held);
            self.passed_on = true;
        }
        (self.out != chunk).then(|| std::mem::take(&mut self.out))
    }

    /// The end of the stream: whatever is held goes on as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        self.lf_owed = None;
        std::mem::take(&mut self.held)
    }
}

/// Appends the event as the caller should see it; false when it is dropped.
///
/// Only what the injection caused is removed: a usage-only chunk when the caller did not ask for
/// `include_usage`; a content chunk's `"usage": null` when it did not ask for `include_usage`
/// (an upstream such as OpenAI writes it on every chunk once usage is asked for); a running usage
/// when it did not ask for continuous usage. Anything else passes byte for byte, and so does an
/// event that is not one `data:` line. The member is cut where the counting's scan found it, or
/// else where a search of the event's members finds it.
fn rewrite_event(event: &[u8], read: EventEnd, ask: UsageAsk, out: &mut Vec<u8>) -> bool {
    let EventEnd { usage, span, data_len, .. } = read;
    let caused_by_injection = match usage {
        UsageMember::Absent => false,
        UsageMember::Null | UsageMember::UsageOnly => !ask.include_usage,
        UsageMember::Running => !ask.continuous,
    };
    let data = caused_by_injection.then(|| single_data_line(event, data_len)).flatten();
    let Some((prefix_len, json_len)) = data else {
        out.extend_from_slice(event);
        return true;
    };
    if usage == UsageMember::UsageOnly {
        return false;
    }
    let json = event.get(prefix_len..prefix_len + json_len).unwrap_or_default();
    let cut = span.and_then(|span| member_cut(json, span)).or_else(|| {
        let members = top_level_members(json)?;
        let index = members.iter().position(|m| key_is(json, m, "usage"))?;
        member_span(&members, index)
    });
    match cut {
        Some((start, end)) => {
            out.extend_from_slice(event.get(..prefix_len + start).unwrap_or_default());
            out.extend_from_slice(event.get(prefix_len + end..).unwrap_or_default());
        }
        None => out.extend_from_slice(event),
    }
    true
}

/// For an event made of one `data:` line whose value is `data_len` bytes (what the parse of the
/// stream counted of its data): where its JSON starts and how long it is. Any other line in the
/// event adds more bytes than it adds to the data (a line break and a field name against at most
/// the one `\n` that joins two values), so the event is one line exactly when its line's break and
/// the blank line's are all that follow the value.
fn single_data_line(event: &[u8], data_len: usize) -> Option<(usize, usize)> {
    let prefix: usize = if event.starts_with(b"data: ") {
        6
    } else if event.starts_with(b"data:") {
        5
    } else {
        return None;
    };
    let rest = event.get(prefix.checked_add(data_len)?..)?;
    is_two_line_breaks(rest).then_some((prefix, data_len))
}

/// Whether `rest` is the line's break and the blank line's (the blank line's CR may be all of
/// its CRLF that has come: its LF, if any, starts the next chunk).
fn is_two_line_breaks(rest: &[u8]) -> bool {
    let second = match rest {
        [b'\r', b'\n', second @ ..] | [b'\r' | b'\n', second @ ..] => second,
        _ => return false,
    };
    matches!(second, b"\r\n" | b"\r" | b"\n")
}
