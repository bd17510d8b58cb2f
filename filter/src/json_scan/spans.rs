//! Where the captured members of the top-level object sit in the document, so that a reader who
//! edits the document (the stream rewrite cutting `usage` out) need not search its members
//! again.
//!
//! A span is reported only when every reader of the top-level members must agree on it: the
//! top-level object closed without a grammar error, the member's key came once, its value was
//! captured whole, and every scalar value at the top level was a plain token (letters, digits,
//! `+`, `-`, `.`), so that where a scalar ends does not depend on which bytes a reader takes
//! for delimiters or whitespace.

use super::MAX_PATHS;

/// A member of the top-level object, by its place in the document: from its key's opening quote
/// to just past its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberSpan {
    /// Where the key's opening quote is.
    pub start: usize,
    /// Just past the value.
    pub end: usize,
}

/// What the scanner notes about the top-level members of the document being read.
#[derive(Debug)]
pub(super) struct TopLevel {
    /// Where the top-level key being read (or last read) starts.
    key_start: usize,
    /// Per path: its member's span, once its value was captured whole.
    spans: Vec<Option<MemberSpan>>,
    /// Paths whose member has begun (a bit per path).
    seen: u64,
    /// Paths whose key came more than once.
    repeated: u64,
    /// No top-level scalar so far held anything but a plain token's bytes.
    plain: bool,
    /// A vector of spans given back, reused for the next document.
    spare: Option<Vec<Option<MemberSpan>>>,
}

impl TopLevel {
    pub(super) fn new(paths: usize) -> Self {
        Self {
            key_start: 0,
            spans: vec![None; paths],
            seen: 0,
            repeated: 0,
            plain: true,
            spare: None,
        }
    }

    /// A top-level key starts at `at`.
    pub(super) fn key(&mut self, at: usize) {
        self.key_start = at;
    }

    /// A top-level member's value at `path` (one of the first [`MAX_PATHS`]) starts being copied
    /// out; returns where the member starts.
    pub(super) fn value_begins(&mut self, path: usize) -> usize {
        let bit = 1u64 << (path % MAX_PATHS);
        if self.seen & bit != 0 {
            self.repeated |= bit;
        }
        self.seen |= bit;
        self.key_start
    }

    /// The member at `path`, starting at `start`, has its value whole up to `end`.
    pub(super) fn captured(&mut self, path: usize, start: usize, end: usize) {
        if let Some(slot) = self.spans.get_mut(path) {
            *slot = Some(MemberSpan { start, end });
        }
    }

    /// Bytes of a top-level scalar value.
    pub(super) fn scalar(&mut self, bytes: &[u8]) {
        self.plain &= bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    }

    /// The spans of a document that ended (`complete`: its top-level object closed); resets
    /// for the next one.
    pub(super) fn finish(&mut self, complete: bool) -> Vec<Option<MemberSpan>> {
        let fresh = self.spare.take().unwrap_or_else(|| vec![None; self.spans.len()]);
        let mut spans = std::mem::replace(&mut self.spans, fresh);
        for (index, span) in spans.iter_mut().enumerate() {
            let repeated = self.repeated >> (index % MAX_PATHS) & 1 != 0;
            if !complete || !self.plain || repeated {
                *span = None;
            }
        }
        self.clear();
        spans
    }

    /// Forgets the document being read.
    pub(super) fn clear(&mut self) {
        self.spans.iter_mut().for_each(|s| *s = None);
        self.seen = 0;
        self.repeated = 0;
        self.plain = true;
    }

    /// Gives back a finished document's spans for reuse.
    pub(super) fn recycle(&mut self, mut spans: Vec<Option<MemberSpan>>) {
        if spans.len() == self.spans.len() {
            spans.iter_mut().for_each(|s| *s = None);
            self.spare = Some(spans);
        }
    }
}
