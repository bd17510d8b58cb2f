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

    /// An event of the chunk ended at `end` (its blank line included); `usage` says what its
    /// top-level `usage` member is, `span` where it sits in the event's data (when the counting's
    /// scan could tell); `owes_lf`: it ended on a CR.
    pub(crate) fn event(
        &mut self,
        chunk: &[u8],
        end: usize,
        usage: UsageMember,
        span: Option<MemberSpan>,
        owes_lf: bool,
    ) {
        let tail = chunk.get(self.start..end).unwrap_or_default();
        // The span is the whole event's: of no use for what is left of it.
        let usage = (usage, span.filter(|_| !std::mem::take(&mut self.passed_on)));
        let kept = if self.held.is_empty() {
            rewrite_event(tail, usage, self.ask, &mut self.out)
        } else {
            self.held.extend_from_slice(tail);
            let kept = rewrite_event(&self.held, usage, self.ask, &mut self.out);
            self.held.clear();
            kept
        };
        self.start = end;
        self.lf_owed = (owes_lf && end == chunk.len()).then_some(kept);
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
fn rewrite_event(
    event: &[u8],
    (usage, span): (UsageMember, Option<MemberSpan>),
    ask: UsageAsk,
    out: &mut Vec<u8>,
) -> bool {
    let caused_by_injection = match usage {
        UsageMember::Absent => false,
        UsageMember::Null | UsageMember::UsageOnly => !ask.include_usage,
        UsageMember::Running => !ask.continuous,
    };
    let data = caused_by_injection.then(|| single_data_line(event)).flatten();
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

/// For an event made of one `data:` line: where its JSON starts and how long it is.
fn single_data_line(event: &[u8]) -> Option<(usize, usize)> {
    let prefix = if event.starts_with(b"data: ") {
        6
    } else if event.starts_with(b"data:") {
        5
    } else {
        return None;
    };
    let line_end = memchr::memchr2(b'\n', b'\r', event)?;
    let is_one_line = is_two_line_breaks(event.get(line_end..)?);
    (is_one_line && line_end >= prefix).then_some((prefix, line_end - prefix))
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
