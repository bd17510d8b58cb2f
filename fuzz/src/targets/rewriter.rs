//! `rewriter`: the stream rewrite of usage injection ([`StreamRewrite`], driven by the counting's
//! parse of the stream). For every ask the
//! caller can make: the same output whichever way the stream is split, only bytes taken away,
//! and the stream byte for byte for a caller who asked for continuous usage. An input that is a
//! JSON object on one line is also sent as one `data:` event: the caller gets it dropped (only a
//! usage-only chunk it did not ask for), unchanged, or without its `usage` (only when it did not
//! ask for continuous usage), and always as valid JSON.

use serde_json::{Map, Value};
use vllm_gateway_filter::inject::{StreamRewrite, UsageAsk};
use vllm_gateway_filter::usage::StreamAccounting;

use super::json::unique_object;
use super::{outcome, Target};
use crate::split::splittings;

pub const TARGET: Target = Target {
    name: "rewriter",
    about:
        "usage-injection stream rewriter: split-independent, lossless for a full ask, valid JSON",
    run,
    dictionary: &[
        b"\"usage\"",
        b"\"usage\":null",
        b"\"usage\": null ,",
        b"\"choices\":[]",
        b"\"choices\": [ ]",
        b"\"choices\":[{}]",
        b",\"usage\":{\"prompt_tokens\":1}",
        b"{\"usage\":1}",
        b"data:{",
        b"\n\n",
        b"\r\n\r\n",
        b"\r\r",
    ],
};

/// What a caller can ask for (`continuous` only with `include_usage`).
const ASKS: [UsageAsk; 3] = [
    UsageAsk { include_usage: false, continuous: false },
    UsageAsk { include_usage: true, continuous: false },
    UsageAsk { include_usage: true, continuous: true },
];

fn run(input: &[u8]) -> u64 {
    let mut facts = Vec::new();
    for ask in ASKS {
        let output = check_stream(ask, input);
        facts.push(u64::from(output.len() == input.len()));
    }
    // A line end in the JSON (whitespace) would end the event early: one-line objects only.
    let one_line = !input.iter().any(|&b| b == b'\n' || b == b'\r');
    if let Some(object) = unique_object(input).filter(|_| one_line) {
        for ask in ASKS {
            facts.push(check_event(ask, input, &object));
        }
    }
    outcome(&facts)
}

/// What the caller gets for a stream fed in `pieces`.
fn rewrite(ask: UsageAsk, pieces: &[&[u8]]) -> Vec<u8> {
    rewrite_with(StreamAccounting::default(), ask, pieces)
}

fn rewrite_with(stream: StreamAccounting, ask: UsageAsk, pieces: &[&[u8]]) -> Vec<u8> {
    let mut stream = stream.rewriting(StreamRewrite::new(ask));
    let mut out = Vec::new();
    for piece in pieces {
        match stream.feed(piece) {
            Some(rewritten) => out.extend(rewritten),
            None => out.extend_from_slice(piece),
        }
    }
    out.extend(stream.finish_rewrite());
    out
}

fn check_stream(ask: UsageAsk, input: &[u8]) -> Vec<u8> {
    let [whole, halves, chunks] = splittings(input);
    let output = rewrite(ask, &whole);
    assert_eq!(rewrite(ask, &halves), output, "{ask:?}: cut in two");
    assert_eq!(rewrite(ask, &chunks), output, "{ask:?}: in chunks");
    let scanned = rewrite_with(StreamAccounting::default().scanner_only(), ask, &whole);
    assert_eq!(scanned, output, "{ask:?}: events read by the scanner alone");
    assert!(is_subsequence(&output, input), "{ask:?}: bytes added");
    if !ask.needs_rewrite() {
        assert_eq!(output, input, "{ask:?}: the stream must pass unchanged");
    }
    output
}

/// The JSON object `json` sent as one event; returns what happened to it (0 dropped, 1 kept, 2
/// `usage` removed).
fn check_event(ask: UsageAsk, json: &[u8], object: &Map<String, Value>) -> u64 {
    let event = [b"data: ", json, b"\n\n"].concat();
    let output = rewrite(ask, &[&event]);
    if output.is_empty() {
        assert!(!ask.include_usage, "{ask:?}: an event dropped for a caller who asked for usage");
        let usage_only = object.get("choices") == Some(&Value::Array(Vec::new()))
            && object.get("usage").is_some_and(|u| !u.is_null());
        assert!(usage_only, "{ask:?}: dropped an event that is not a usage-only chunk");
        return 0;
    }
    let rewritten = output
        .strip_prefix(b"data: ")
        .and_then(|o| o.strip_suffix(b"\n\n"))
        .unwrap_or_else(|| panic!("{ask:?}: the event lost its framing"));
    let rewritten: Map<String, Value> = serde_json::from_slice(rewritten)
        .unwrap_or_else(|e| panic!("{ask:?}: the rewritten event is not a JSON object ({e})"));
    if &rewritten == object {
        return 1;
    }
    let mut without_usage = object.clone();
    without_usage.remove("usage");
    assert_eq!(rewritten, without_usage, "{ask:?}: changed more than `usage`");
    assert!(!ask.continuous, "{ask:?}: removed a usage the caller asked for");
    2
}

/// Whether `part` is `whole` with some bytes taken out.
fn is_subsequence(part: &[u8], whole: &[u8]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|b| rest.any(|w| w == b))
}
