//! A small scanner for the top-level members of a JSON object (strings and nesting only), for
//! the one edit the stream rewrite makes in place: taking a chunk's `usage` out. Nothing is
//! decoded or re-serialised except a key written with escapes. When the counting's scan has
//! found the member already ([`MemberSpan`]), only its neighbouring bytes are read.

use crate::json_scan::{self, MemberSpan};

/// Whether a member's key is `name`. A key spelled with escapes (`"stream\u005foptions"`) is
/// still `stream_options` to the upstream, so keys are compared decoded; only that key is
/// decoded (a body is never re-serialised, so nothing else in it can make the injection fail).
pub(crate) fn key_is(json: &[u8], member: &Member<'_>, name: &str) -> bool {
    if !member.key.contains(&b'\\') {
        return member.key == name.as_bytes();
    }
    let quoted = json.get(member.start..member.start + member.key.len() + 2).unwrap_or_default();
    serde_json::from_slice::<String>(quoted).is_ok_and(|key| key == name)
}

/// The byte span of the `index`-th top-level member with the one comma that separates it from
/// its neighbour, so that cutting the span leaves valid JSON.
pub(crate) fn member_span(members: &[Member<'_>], index: usize) -> Option<(usize, usize)> {
    let this = members.get(index)?;
    match (index.checked_sub(1).and_then(|i| members.get(i)), members.get(index + 1)) {
        (_, Some(next)) => Some((this.start, next.start)),
        (Some(prev), None) => Some((prev.end, this.end)),
        (None, None) => Some((this.start, this.end)),
    }
}

/// What [`member_span`] gives for a top-level member whose place the counting's scan found
/// (`span`, see [`MemberSpan`]), from the member's neighbouring bytes alone; `None` when those
/// are not a comma or the object's bracket.
pub(crate) fn member_cut(json: &[u8], span: MemberSpan) -> Option<(usize, usize)> {
    let after = skip_ws(json, span.end);
    match json.get(after)? {
        b',' => Some((span.start, skip_ws(json, after + 1))),
        b'}' => {
            let before = skip_ws_back(json, span.start);
            match json.get(before.checked_sub(1)?)? {
                b',' => Some((skip_ws_back(json, before - 1), span.end)),
                b'{' => Some((span.start, span.end)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A member of a JSON object, by where it sits in the object's bytes.
pub(crate) struct Member<'a> {
    /// The key as written, between its quotes.
    pub key: &'a [u8],
    /// Where the key's opening quote is.
    pub start: usize,
    /// Just past the value.
    pub end: usize,
}

/// The members of a JSON object, found with a small scanner (strings and nesting only).
pub(crate) fn top_level_members(json: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut members = Vec::new();
    loop {
        i = skip_ws(json, i);
        match json.get(i)? {
            b'}' => return Some(members),
            b',' => i = skip_ws(json, i + 1),
            _ => {}
        }
        let start = i;
        let key_end = string_end(json, i)?;
        let key = json.get(start + 1..key_end - 1)?;
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(json, i + 1);
        let end = value_end(json, value_start)?;
        members.push(Member { key, start, end });
        i = end;
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Where the whitespace that ends just before `i` starts.
fn skip_ws_back(json: &[u8], mut i: usize) -> usize {
    while i > 0 && json.get(i - 1).is_some_and(u8::is_ascii_whitespace) {
        i -= 1;
    }
    i
}

/// Just past the string starting at `i` (which must be a quote).
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    json_scan::string_end(json, i + 1)
}

/// Just past the value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => json_scan::container_end(json, i),
        _ => {
            let mut j = i;
            while json
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests;
