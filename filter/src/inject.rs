//! Usage injection, invisible to the caller.
//!
//! For a streamed request the gateway asks vLLM for usage (`stream_options.include_usage`, and
//! `continuous_usage_stats` so that a stream cut off half-way can still be counted). The caller
//! then gets back exactly what it would have got without the injection: [`StreamRewriter`] drops
//! the usage-only chunk if the caller did not ask for usage, and removes from every other chunk
//! a running `usage` if it did not ask for continuous usage, or a `"usage": null` if it did not
//! ask for usage at all. Everything else passes byte for byte (an upstream that writes
//! `"usage": null` on every chunk of a caller that asked for usage keeps it); an event is held
//! only until its closing blank line has arrived.

use serde_json::{Map, Value};

use crate::request_body::RequestFacts;

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

/// Adds `include_usage` (and `continuous_usage_stats` when `continuous`) to a streamed request's
/// `stream_options`, keeping the caller's other options; returns the new body, or `None` when
/// `body` is not a JSON object.
///
/// Only `stream_options` is rewritten: the rest of the body is copied byte for byte (a long
/// prompt is never parsed and re-serialised). Without `stream_options`, the member is put first.
pub fn inject_usage(body: &[u8], continuous: bool) -> Option<Vec<u8>> {
    let members = top_level_members(body)?;
    let existing = members.iter().find(|m| key_is(body, m, "stream_options"));
    let options = existing
        .and_then(|m| serde_json::from_slice::<Value>(body.get(m.value_start..m.end)?).ok());
    let options = serde_json::to_vec(&with_usage_options(options, continuous)).ok()?;
    let mut out = Vec::with_capacity(body.len() + options.len() + 20);
    match existing {
        Some(m) => {
            out.extend_from_slice(body.get(..m.value_start)?);
            out.extend_from_slice(&options);
            out.extend_from_slice(body.get(m.end..)?);
        }
        None => {
            let open = skip_ws(body, 0) + 1;
            out.extend_from_slice(body.get(..open)?);
            out.extend_from_slice(b"\"stream_options\":");
            out.extend_from_slice(&options);
            if !members.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(body.get(open..)?);
        }
    }
    Some(out)
}

/// Sets every member of a JSON object body named in `names` to the number `value` (a key
/// spelled with escapes counts, as for the upstream), or, when none is present, adds
/// `names[0]` first; the rest of the body is copied byte for byte. `None` when `body` is not a
/// JSON object.
pub fn set_number_members(body: &[u8], names: &[&str], value: u64) -> Option<Vec<u8>> {
    let members = top_level_members(body)?;
    let number = value.to_string();
    let mut out = Vec::with_capacity(body.len() + 32);
    let mut copied = 0;
    for m in members.iter().filter(|m| names.iter().any(|name| key_is(body, m, name))) {
        out.extend_from_slice(body.get(copied..m.value_start)?);
        out.extend_from_slice(number.as_bytes());
        copied = m.end;
    }
    if copied == 0 {
        let open = skip_ws(body, 0) + 1;
        out.extend_from_slice(body.get(..open)?);
        out.extend_from_slice(format!("\"{}\":{number}", names.first()?).as_bytes());
        if !members.is_empty() {
            out.push(b',');
        }
        copied = open;
    }
    out.extend_from_slice(body.get(copied..)?);
    Some(out)
}

/// Whether a member's key is `name`. A key spelled with escapes (`"stream\u005foptions"`) is
/// still `stream_options` to the upstream, so keys are compared decoded; only that key is
/// decoded (a body is never re-serialised, so nothing else in it can make the injection fail).
fn key_is(json: &[u8], member: &Member<'_>, name: &str) -> bool {
    if !member.key.contains(&b'\\') {
        return member.key == name.as_bytes();
    }
    let quoted = json.get(member.start..member.start + member.key.len() + 2).unwrap_or_default();
    serde_json::from_slice::<String>(quoted).is_ok_and(|key| key == name)
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

/// Events longer than this are passed on unchanged rather than held (1 MiB).
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// Rewrites a streamed response for the caller; see the module docs.
#[derive(Debug)]
pub struct StreamRewriter {
    ask: UsageAsk,
    held: Vec<u8>,
    /// Where the search for the held event's end goes on (each byte is scanned once, however
    /// the event is split).
    scan: Scan,
}

/// How far the held bytes have been searched for an event's end: the next byte to look at,
/// and whether it starts a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    at: usize,
    line_start: bool,
}

impl Scan {
    const START: Scan = Scan { at: 0, line_start: true };
}

impl StreamRewriter {
    /// A rewriter for a caller that asked for `ask`.
    pub fn new(ask: UsageAsk) -> Self {
        Self { ask, held: Vec::new(), scan: Scan::START }
    }

    /// Takes the next piece of the upstream's stream; returns the bytes to send on now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.held.len());
        let mut start = 0;
        loop {
            match event_end(self.held.get(start..).unwrap_or_default(), self.scan) {
                Ok(end) => {
                    let event = self.held.get(start..start + end).unwrap_or_default();
                    rewrite_event(event, self.ask, &mut out);
                    start += end;
                    self.scan = Scan::START;
                }
                Err(scan) => {
                    self.scan = scan;
                    break;
                }
            }
        }
        self.held.drain(..start);
        if self.held.len() > MAX_HELD_BYTES {
            out.append(&mut self.held);
            self.scan = Scan::START;
        }
        out
    }

    /// The end of the stream: whatever is held goes on as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        self.scan = Scan::START;
        std::mem::take(&mut self.held)
    }
}

/// Length of the first complete event (through its blank line), searching from `scan`; when
/// there is none yet, where the search is to go on once more bytes have come.
fn event_end(bytes: &[u8], scan: Scan) -> Result<usize, Scan> {
    let Scan { at: mut i, mut line_start } = scan;
    while let Some(&b) = bytes.get(i) {
        if b != b'\n' && b != b'\r' {
            // The rest of a line: jump to its break a word at a time.
            match memchr::memchr2(b'\n', b'\r', bytes.get(i..).unwrap_or_default()) {
                Some(offset) => {
                    i += offset;
                    line_start = false;
                    continue;
                }
                None => return Err(Scan { at: bytes.len(), line_start: false }),
            }
        }
        let len = if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
        if b == b'\r' && bytes.get(i + 1).is_none() {
            // Maybe the first half of a CRLF: looked at again with the next bytes.
            return Err(Scan { at: i, line_start });
        }
        if line_start {
            return Ok(i + len);
        }
        line_start = true;
        i += len;
    }
    Err(Scan { at: i, line_start })
}

/// Appends the event as the caller should see it (or nothing, if it is to be dropped).
///
/// Only what the injection caused is removed: a usage-only chunk when the caller did not ask for
/// `include_usage`; a content chunk's `"usage": null` when it did not ask for `include_usage`
/// (an upstream such as OpenAI writes it on every chunk once usage is asked for); a running usage
/// when it did not ask for continuous usage. Anything else passes byte for byte.
fn rewrite_event(event: &[u8], ask: UsageAsk, out: &mut Vec<u8>) {
    let Some((prefix_len, json_len)) = single_data_line(event) else {
        out.extend_from_slice(event);
        return;
    };
    let json = event.get(prefix_len..prefix_len + json_len).unwrap_or_default();
    if memchr::memmem::find(json, b"\"usage\"").is_none() {
        // No usage member anywhere (most content chunks): nothing to look for member by member.
        out.extend_from_slice(event);
        return;
    }
    let Some(members) = top_level_members(json) else {
        out.extend_from_slice(event);
        return;
    };
    let Some(usage) = members.iter().find(|m| m.key == b"usage") else {
        out.extend_from_slice(event);
        return;
    };
    let usage_only = is_usage_only(json, &members);
    let is_null = json.get(usage.value_start..usage.end) == Some(b"null");
    let caused_by_injection =
        if usage_only || is_null { !ask.include_usage } else { !ask.continuous };
    if !caused_by_injection {
        out.extend_from_slice(event);
        return;
    }
    if usage_only {
        return;
    }
    let Some((start, end)) = member_span(&members, "usage") else {
        out.extend_from_slice(event);
        return;
    };
    out.extend_from_slice(event.get(..prefix_len + start).unwrap_or_default());
    out.extend_from_slice(event.get(prefix_len + end..).unwrap_or_default());
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
    let line_end = event.iter().position(|&b| b == b'\n' || b == b'\r')?;
    let rest = event.get(line_end..)?;
    let is_blank_terminated = matches!(rest, b"\n\n" | b"\r\n\r\n" | b"\r\r");
    (is_blank_terminated && line_end >= prefix).then_some((prefix, line_end - prefix))
}

/// A usage-only chunk: `"choices": []` with a non-null `usage`.
fn is_usage_only(json: &[u8], members: &[Member<'_>]) -> bool {
    let value = |name: &[u8]| {
        let m = members.iter().find(|m| m.key == name)?;
        json.get(m.value_start..m.end)
    };
    let empty_array = value(b"choices")
        .is_some_and(|v| v.first() == Some(&b'[') && v.get(skip_ws(v, 1)) == Some(&b']'));
    empty_array && value(b"usage").is_some_and(|v| v != b"null")
}

/// The byte span of the top-level member `name` with the one comma that separates it from its
/// neighbour, so that cutting the span leaves valid JSON.
fn member_span(members: &[Member<'_>], name: &str) -> Option<(usize, usize)> {
    let index = members.iter().position(|m| m.key == name.as_bytes())?;
    let this = members.get(index)?;
    match (index.checked_sub(1).and_then(|i| members.get(i)), members.get(index + 1)) {
        (_, Some(next)) => Some((this.start, next.start)),
        (Some(prev), None) => Some((prev.end, this.end)),
        (None, None) => Some((this.start, this.end)),
    }
}

struct Member<'a> {
    key: &'a [u8],
    /// Where the key's opening quote is.
    start: usize,
    /// Where the value starts.
    value_start: usize,
    /// Just past the value.
    end: usize,
}

/// The members of a JSON object, found with a small scanner (strings and nesting only).
fn top_level_members(json: &[u8]) -> Option<Vec<Member<'_>>> {
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
        members.push(Member { key, start, value_start, end });
        i = end;
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while json.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Just past the string starting at `i` (which must be a quote).
fn string_end(json: &[u8], i: usize) -> Option<usize> {
    if json.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match json.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// Just past the value starting at `i`.
fn value_end(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => string_end(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = string_end(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
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
