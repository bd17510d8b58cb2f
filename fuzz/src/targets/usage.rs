//! `usage_stream` and `json_scan`: token accounting and the incremental JSON scanner under it.
//!
//! `usage_stream` counts the input as a streamed reply ([`StreamAccounting`], with a prompt
//! layout the input's hash picks): the same count whichever way the stream is split, and the
//! same when every event is read by the scanner instead of in one pass.
//!
//! `json_scan` scans the input as one JSON document ([`JsonScanner`], with a small cap so that
//! values are also skipped as too large) and counts it as a whole body ([`BodyAccounting`]): the
//! same scan and count whichever way it is split, the same scan from a scanner that has just
//! finished (and recycled) a cut-off document, and, when `serde_json` reads the input as an
//! object with unique top-level keys, a complete scan whose values are `serde_json`'s.

use vllm_gateway_filter::json_scan::{Captured, JsonScanner, Path, Scan};
use vllm_gateway_filter::usage::{
    Accounting, BodyAccounting, PromptLayout, StreamAccounting, UsageSource,
};

use super::json::{unique_object, value_at};
use super::{outcome, Target};
use crate::rng::hash_bytes;
use crate::split::splittings;

/// Member names and shapes of vLLM's replies.
const REPLY_TOKENS: &[&[u8]] = &[
    b"\"usage\":",
    b"\"prompt_tokens\":",
    b"\"completion_tokens\":",
    b"\"total_tokens\":",
    b"\"input_tokens\":",
    b"\"output_tokens\":",
    b"\"choices\":[]",
    b"\"choices\":",
    b"{\"index\":2,\"delta\":{\"content\":\"x\"}}",
    b"\"index\":",
    b"\"delta\":",
    b"\"text\":\"t\"",
    b"\"error\":{\"type\":\"BadRequestError\"}",
    b"\"object\":\"error\"",
    b"\"type\":",
    b"\"response\":{\"usage\":{\"input_tokens\":1}}",
    b"\"response.completed\"",
    b"\"code\":",
    b"\"us\\u0061ge\"",
    b"\"logprobs\":{\"content\":[[[{}]]]}",
    b"data: ",
    b"\n\n",
];

pub const STREAM_TARGET: Target = Target {
    name: "usage_stream",
    about: "streamed-reply accounting: split-independent counts",
    run: run_stream,
    dictionary: REPLY_TOKENS,
};

pub const SCAN_TARGET: Target = Target {
    name: "json_scan",
    about: "JSON scanner and body accounting: split-independent, reusable, agrees with serde_json",
    run: run_scan,
    dictionary: REPLY_TOKENS,
};

/// The paths `json_scan` looks for (as the accounting's, and one inside an array's reach).
const PATHS: &[Path] =
    &[&["usage"], &["error"], &["response", "usage"], &["choices"], &["a", "b", "c"]];
/// Small, so that many values are too large.
const CAP: usize = 256;

fn run_stream(input: &[u8]) -> u64 {
    let layout = match hash_bytes(input) % 4 {
        0 => PromptLayout::Single,
        n => PromptLayout::Batched { n },
    };
    let [whole, halves, chunks] = splittings(input);
    let counted = count_stream(layout, &whole);
    assert_eq!(count_stream(layout, &halves), counted, "{layout:?}: cut in two");
    assert_eq!(count_stream(layout, &chunks), counted, "{layout:?}: in chunks");
    // Whole events are read in one pass; the scanner alone must count the same.
    let scanned = count(StreamAccounting::new(layout).scanner_only(), &whole);
    assert_eq!(scanned, counted, "{layout:?}: the scanner alone");
    accounting_outcome(&counted)
}

fn run_scan(input: &[u8]) -> u64 {
    let [whole, halves, chunks] = splittings(input);
    // Whole documents take the scanner's one-pass path; the byte-by-byte reader must agree.
    let incremental = scan(&mut JsonScanner::incremental(PATHS, CAP), &chunks);
    let scan = scan(&mut JsonScanner::new(PATHS, CAP), &whole);
    assert_eq!(scan_fresh(&halves), scan, "cut in two");
    assert_eq!(scan_fresh(&chunks), scan, "in chunks");
    assert_eq!(incremental, scan, "read byte by byte");
    check_reuse(input, &scan);
    if let Some(object) = unique_object(input) {
        check_against_serde(&scan, &object);
    }
    let counted = count_body(&whole);
    assert_eq!(count_body(&halves), counted, "body cut in two");
    assert_eq!(count_body(&chunks), counted, "body in chunks");
    let found = scan.values.iter().map(|v| match v {
        None => 0,
        Some(Captured::Value(_)) => 1,
        Some(Captured::TooLarge) => 2,
    });
    let mut facts: Vec<u64> = found.collect();
    facts.extend([
        u64::from(scan.is_object),
        u64::from(scan.complete),
        accounting_outcome(&counted),
    ]);
    outcome(&facts)
}

fn count_stream(layout: PromptLayout, pieces: &[&[u8]]) -> Accounting {
    count(StreamAccounting::new(layout), pieces)
}

fn count(mut accounting: StreamAccounting, pieces: &[&[u8]]) -> Accounting {
    for piece in pieces {
        accounting.feed(piece);
    }
    accounting.finish()
}

fn count_body(pieces: &[&[u8]]) -> Accounting {
    let mut accounting = BodyAccounting::new();
    for piece in pieces {
        accounting.feed(piece);
    }
    accounting.finish()
}

fn scan(scanner: &mut JsonScanner, pieces: &[&[u8]]) -> Scan {
    for piece in pieces {
        scanner.feed(piece);
    }
    scanner.finish()
}

fn scan_fresh(pieces: &[&[u8]]) -> Scan {
    scan(&mut JsonScanner::new(PATHS, CAP), pieces)
}

/// A scanner that finished a document cut off half-way, and recycled its scan, reads the input
/// as a fresh one does: nothing of the earlier document leaks into the next.
fn check_reuse(input: &[u8], expected: &Scan) {
    let mut scanner = JsonScanner::new(PATHS, CAP);
    let half = scan(&mut scanner, &[input.get(..input.len() / 2).unwrap_or_default()]);
    scanner.recycle(half);
    assert_eq!(&scan(&mut scanner, &[input]), expected, "after a cut-off document");
    let again = scan(&mut scanner, &[input]);
    assert_eq!(&again, expected, "after the same document");
    scanner.recycle(again);
}

/// The scan of a document `serde_json` reads agrees with it: whole, and each value captured is
/// the one at its path (or was too large), and none is missed.
fn check_against_serde(scan: &Scan, object: &serde_json::Map<String, serde_json::Value>) {
    assert!(scan.is_object && scan.complete, "a valid object scanned as incomplete: {scan:?}");
    for (index, path) in PATHS.iter().enumerate() {
        let expected = value_at(object, path);
        match (scan.captured(index), expected) {
            (None, None) | (Some(Captured::TooLarge), Some(_)) => {}
            (Some(Captured::Value(bytes)), Some(expected)) => {
                let captured: Result<serde_json::Value, _> = serde_json::from_slice(bytes);
                assert_eq!(
                    captured.ok().as_ref(),
                    Some(expected),
                    "{path:?}: captured {:?}",
                    bytes.escape_ascii().to_string()
                );
            }
            (captured, expected) => {
                panic!("{path:?}: scanned {captured:?}, serde_json has {expected:?}")
            }
        }
    }
}

fn accounting_outcome(accounting: &Accounting) -> u64 {
    let source = match accounting.source {
        UsageSource::Reported => 1,
        UsageSource::Estimated => 2,
        UsageSource::None => 3,
    };
    let zero = accounting.usage.total_tokens == 0;
    outcome(&[source, u64::from(zero), u64::from(accounting.error.is_some())])
}
