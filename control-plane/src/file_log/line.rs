//! The durable file log's format, with no I/O: splitting bytes into complete lines, and reading
//! one line — one JSON object written by Envoy's file access logger — as [`RequestFacts`].
//!
//! Envoy writes (keys sorted; absent values are `null`; `start_ms` is a string; a usage of
//! `null` means the filter set nothing):
//!
//! ```json
//! {"bytes_sent":2,"client_request_id":"c1","duration_ms":0,"method":"POST","path":"/v1/chat/completions",
//!  "request_id":"d150a0a8-…","response_flags":"-","start_ms":"1796018700551","status":200,
//!  "upstream_cluster":"model_0_x","upstream_host":"127.0.0.1:4000","usage":"{\"app_id\":1,…}"}
//! ```
//!
//! Reading is lenient: a number may be a string, `null`/missing/`-` mean absent, `usage` may be
//! the record's JSON as a string or as an object. A line needs a `request_id` and a `start_ms`;
//! anything else is garbage. A line that starts with the cut-off rest of an earlier write (a
//! crash mid-line, then an append) is recovered from the record that follows the cut.

use serde_json::{Map, Value};

use crate::request_facts::{self, parse_usage, RequestFacts};

/// How many places a cut-off line is tried for the record after the cut.
const RECOVERY_TRIES: usize = 16;

/// One complete line of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Where the line starts in the file.
    pub offset: u64,
    /// Where the next line starts (just past the newline).
    pub end: u64,
    /// The line with its newline.
    pub raw: &'a [u8],
}

impl Line<'_> {
    /// The line without its newline (and without a `\r` before it).
    pub fn text(&self) -> &[u8] {
        let text = self.raw.strip_suffix(b"\n").unwrap_or(self.raw);
        text.strip_suffix(b"\r").unwrap_or(text)
    }
}

/// The complete lines of `buf`, which starts at file offset `base`; a last line without its
/// newline is left out (it waits for the rest).
pub fn complete_lines(buf: &[u8], base: u64) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(newline) = buf[start..].iter().position(|b| *b == b'\n') {
        let end = start + newline + 1;
        lines.push(Line {
            offset: base + start as u64,
            end: base + end as u64,
            raw: &buf[start..end],
        });
        start = end;
    }
    lines
}

/// Why a line is no request record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A fact every record has is missing or unreadable.
    #[error("no {0}")]
    Missing(&'static str),
}

/// What one line gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A request.
    Row(RequestFacts),
    /// The line began with garbage (the rest of a cut-off write); this request followed it.
    Recovered(RequestFacts),
    /// No request.
    Garbage(LineError),
}

/// Reads one line (without its newline).
pub fn parse_line(text: &[u8]) -> Parsed {
    let error = match parse_record(text) {
        Ok(facts) => return Parsed::Row(facts),
        Err(e) => e,
    };
    let starts = text.windows(2).enumerate().skip(1).filter(|(_, w)| w == b"{\"").map(|(i, _)| i);
    for start in starts.take(RECOVERY_TRIES) {
        if let Ok(facts) = parse_record(&text[start..]) {
            return Parsed::Recovered(facts);
        }
    }
    Parsed::Garbage(error)
}

fn parse_record(text: &[u8]) -> Result<RequestFacts, LineError> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| LineError::NotJson(e.to_string()))?;
    let Value::Object(map) = value else { return Err(LineError::NotAnObject) };
    let started_at_ms = integer(&map, "start_ms").ok_or(LineError::Missing("start_ms"))?;
    let request_id = string(&map, "request_id").filter(|id| !id.is_empty() && id != "-");
    // A request cut before its headers were complete has no id: made as the gRPC path makes it.
    let fallback = || {
        let peer = string(&map, "downstream_peer").filter(|p| !p.is_empty() && p != "-")?;
        Some(request_facts::fallback_request_id(started_at_ms, &peer))
    };
    Ok(RequestFacts {
        request_id: request_id.or_else(fallback).ok_or(LineError::Missing("request_id"))?,
        client_request_id: string(&map, "client_request_id"),
        started_at_ms,
        method: string(&map, "method"),
        path: string(&map, "path"),
        status: integer(&map, "status"),
        duration_ms: integer(&map, "duration_ms"),
        upstream_cluster: string(&map, "upstream_cluster"),
        upstream_host: string(&map, "upstream_host"),
        response_flags: string(&map, "response_flags"),
        bytes_sent: integer(&map, "bytes_sent"),
        usage: usage(&map),
    })
}

/// Text, also from a number or a boolean.
fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A whole number, also from a string or a float.
fn integer(map: &Map<String, Value>, key: &str) -> Option<i64> {
    let float = |f: f64| f.is_finite().then_some(f as i64);
    match map.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(float)),
        Value::String(s) => s.trim().parse().ok().or_else(|| s.trim().parse().ok().and_then(float)),
        _ => None,
    }
}

/// The filter's record: its JSON as a string (as Envoy logs it), or as an object.
fn usage(map: &Map<String, Value>) -> Option<crate::usage_check::LoggedUsage> {
    match map.get("usage")? {
        Value::String(s) if !s.is_empty() && s != "-" => parse_usage(s.as_bytes()),
        object @ Value::Object(_) => parse_usage(object.to_string().as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of contract 2, as Envoy 1.40 wrote it.
    pub(crate) const ENVOY_LINE: &str = r#"{"bytes_sent":2,"client_request_id":"dup1","duration_ms":0,"method":"POST","path":"/v1/chat/completions","request_id":"d150a0a8-36bb-4ab3-8aef-987b7263f8d5","response_flags":"-","start_ms":"1796018700551","status":200,"upstream_cluster":"model_0_x","upstream_host":"127.0.0.1:4000","usage":"{\"app_id\":1,\"model\":\"m\",\"status\":200,\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7,\"usage_source\":\"reported\"}"}"#;

    #[test]
    fn reads_envoys_line() {
        let Parsed::Row(facts) = parse_line(ENVOY_LINE.as_bytes()) else { panic!("not a row") };
        assert_eq!(facts.request_id, "d150a0a8-36bb-4ab3-8aef-987b7263f8d5");
        assert_eq!(facts.client_request_id.as_deref(), Some("dup1"));
        assert_eq!(
            (facts.started_at_ms, facts.status, facts.bytes_sent),
            (1_796_018_700_551, Some(200), Some(2))
        );
        assert_eq!(facts.upstream_host.as_deref(), Some("127.0.0.1:4000"));
        let usage = facts.usage.unwrap().record;
        assert_eq!(
            (usage.app_id, usage.usage.prompt_tokens, usage.usage.total_tokens),
            (Some(1), 3, 7)
        );
    }

    #[test]
    fn reads_numbers_as_strings_and_absent_values_leniently() {
        let line = br#"{"request_id":"r","start_ms":1700000000000.0,"status":"503","duration_ms":"-","bytes_sent":null,"usage":null,"method":null}"#;
        let Parsed::Row(facts) = parse_line(line) else { panic!("not a row") };
        assert_eq!(
            (facts.started_at_ms, facts.status, facts.duration_ms, facts.bytes_sent),
            (1_700_000_000_000, Some(503), None, None)
        );
        assert_eq!((facts.method, facts.usage), (None, None));
        let object = br#"{"request_id":"r","start_ms":"1","usage":{"model":"m","status":200,"prompt_tokens":1,"completion_tokens":0,"total_tokens":1,"usage_source":"reported"}}"#;
        let Parsed::Row(facts) = parse_line(object) else { panic!("not a row") };
        assert_eq!(facts.usage.unwrap().record.model.as_deref(), Some("m"));
    }

    #[test]
    fn garbage_is_named_and_a_cut_off_line_is_recovered() {
        assert!(matches!(parse_line(b"hello"), Parsed::Garbage(LineError::NotJson(_))));
        assert_eq!(parse_line(b"[1]"), Parsed::Garbage(LineError::NotAnObject));
        assert_eq!(
            parse_line(br#"{"start_ms":"1"}"#),
            Parsed::Garbage(LineError::Missing("request_id"))
        );
        assert_eq!(
            parse_line(br#"{"request_id":"-","start_ms":"1"}"#),
            Parsed::Garbage(LineError::Missing("request_id"))
        );
        assert_eq!(
            parse_line(br#"{"request_id":"r"}"#),
            Parsed::Garbage(LineError::Missing("start_ms"))
        );
        let cut = format!("{}{ENVOY_LINE}", &ENVOY_LINE[..120]);
        let Parsed::Recovered(facts) = parse_line(cut.as_bytes()) else { panic!("not recovered") };
        assert_eq!(facts.request_id, "d150a0a8-36bb-4ab3-8aef-987b7263f8d5");
    }

    #[test]
    fn splits_complete_lines_and_leaves_a_partial_one() {
        let buf = b"a\r\nbb\n\nccc";
        let lines = complete_lines(buf, 100);
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0].offset, lines[0].end, lines[0].text()), (100, 103, &b"a"[..]));
        assert_eq!((lines[1].offset, lines[1].end, lines[1].raw), (103, 106, &b"bb\n"[..]));
        assert_eq!((lines[2].offset, lines[2].text()), (106, &b""[..]));
        assert!(complete_lines(b"partial", 0).is_empty());
    }
}
