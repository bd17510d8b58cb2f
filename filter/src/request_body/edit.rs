//! Editing a request body's top-level members in place, with what the one read of the body
//! ([`super::read`]) found: where the members an edit may touch sit ([`MemberSpans`]). A
//! member's value is replaced, or a missing member is added first; every other byte is copied as
//! it is (a long prompt is never re-serialised), and the body is never scanned again.

use std::ops::Range;

use serde_json::value::RawValue;

/// The members an edit may touch.
pub const EDITABLE: [&str; 4] =
    ["stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens"];

/// Where a body's editable members sit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpans {
    /// Just past the body's opening `{`: where an added member goes.
    open: usize,
    /// The object has members already (an added one then takes a comma).
    has_members: bool,
    /// Per [`EDITABLE`] name: the bytes of its value, when the member is there.
    values: [Option<Range<usize>>; EDITABLE.len()],
}

impl MemberSpans {
    /// The spans of `body` (a JSON object: its first byte that is not whitespace is `{`), whose
    /// editable members' values read as `raw` (in [`EDITABLE`]'s order, borrowed from `body`).
    pub(super) fn of(body: &[u8], raw: [Option<&RawValue>; EDITABLE.len()]) -> Self {
        let open = body.iter().position(|&b| b == b'{').map_or(body.len(), |at| at + 1);
        let rest = body.get(open..).unwrap_or_default();
        let has_members = rest.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'}');
        Self { open, has_members, values: raw.map(|value| value.and_then(|v| span_in(body, v))) }
    }

    /// The value of member `name` (one of [`EDITABLE`]) in `body`, when it is there.
    pub fn value_in<'a>(&self, body: &'a [u8], name: &str) -> Option<&'a [u8]> {
        body.get(self.value(name)?)
    }

    fn value(&self, name: &str) -> Option<Range<usize>> {
        let index = EDITABLE.iter().position(|n| *n == name)?;
        self.values.get(index)?.clone()
    }
}

/// Where `value`, borrowed from `body`, sits in it.
fn span_in(body: &[u8], value: &RawValue) -> Option<Range<usize>> {
    let bytes = value.get().as_bytes();
    let start = (bytes.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let span = start..start + bytes.len();
    (body.get(span.clone()) == Some(bytes)).then_some(span)
}

/// Edits to a body's members, applied in one pass ([`BodyEdit::apply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyEdit {
    /// Member name and its new value (JSON text).
    values: Vec<(&'static str, Vec<u8>)>,
}

impl BodyEdit {
    /// Sets member `name` (one of [`EDITABLE`]) to `value` (JSON text), added when missing.
    pub fn set(&mut self, name: &'static str, value: Vec<u8>) {
        self.values.retain(|(n, _)| *n != name);
        self.values.push((name, value));
    }

    /// Sets every one of `names` the body has to the number `value`, or, when it has none,
    /// adds `names[0]`.
    pub fn set_number(&mut self, names: &[&'static str], value: u64, spans: &MemberSpans) {
        let present: Vec<&'static str> =
            names.iter().copied().filter(|n| spans.value(n).is_some()).collect();
        let targets =
            if present.is_empty() { names.get(..1).unwrap_or_default() } else { &present };
        for name in targets {
            self.set(name, value.to_string().into_bytes());
        }
    }

    /// Whether there is nothing to edit.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `body` with the edits made; `spans` are `body`'s.
    pub fn apply(&self, body: &[u8], spans: &MemberSpans) -> Vec<u8> {
        let extra: usize = self.values.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let mut out = Vec::with_capacity(body.len() + extra);
        out.extend_from_slice(body.get(..spans.open).unwrap_or(body));
        let (mut replaced, added): (Vec<_>, Vec<_>) =
            self.values.iter().partition(|(name, _)| spans.value(name).is_some());
        for (i, (name, value)) in added.iter().enumerate() {
            out.extend_from_slice(format!("\"{name}\":").as_bytes());
            out.extend_from_slice(value);
            if spans.has_members || i + 1 < added.len() {
                out.push(b',');
            }
        }
        replaced.sort_by_key(|(name, _)| spans.value(name).map(|span| span.start));
        let mut copied = spans.open.min(body.len());
        for (name, value) in replaced {
            let Some(span) = spans.value(name).filter(|s| s.start >= copied) else { continue };
            out.extend_from_slice(body.get(copied..span.start).unwrap_or_default());
            out.extend_from_slice(value);
            copied = span.end;
        }
        out.extend_from_slice(body.get(copied..).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests;
