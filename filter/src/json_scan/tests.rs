//! The scanner against serde_json: hand-picked documents split at every byte boundary, and
//! generated ones fed in pieces of every size.

use serde_json::Value;

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const PATHS: &[Path] = &[&["usage"], &["error"], &["response", "usage"], &["type"]];

/// Scans the pieces with a scanner that reads whole documents at once when it can, and checks
/// that one that reads every byte as it comes finds the same.
fn scan_in(chunks: &[&[u8]], cap: usize) -> Scan {
    let read = |mut scanner: JsonScanner| {
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner.finish()
    };
    let scan = read(JsonScanner::new(PATHS, cap));
    assert_eq!(scan, read(JsonScanner::incremental(PATHS, cap)), "read whole and incrementally");
    scan
}

fn value_at(scan: &Scan, index: usize) -> Option<Value> {
    scan.value(index).map(|v| serde_json::from_slice(v).unwrap())
}

/// Scans `doc` whole, then split in two at every byte boundary, then byte by byte; every way
/// must find the same; returns that.
fn at_every_split(doc: &[u8]) -> Scan {
    let whole = scan_in(&[doc], 1 << 16);
    for cut in 0..=doc.len() {
        let (a, b) = doc.split_at(cut);
        assert_eq!(
            scan_in(&[a, b], 1 << 16),
            whole,
            "split at {cut} of {}",
            String::from_utf8_lossy(doc)
        );
    }
    let bytes: Vec<&[u8]> = doc.chunks(1).collect();
    assert_eq!(scan_in(&bytes, 1 << 16), whole, "byte by byte");
    whole
}

#[test]
fn finds_top_level_members_and_nothing_nested() {
    let doc = r#" { "choices" : [ {"usage":{"x":1}, "text":"a \"usage\": {} \\"} ], "usage" : { "prompt_tokens" : 3 , "completion_tokens":[1, 2.5e3, true,null] } , "type":"chat" }  "#;
    let scan = at_every_split(doc.as_bytes());
    assert!(scan.is_object && scan.complete);
    assert_eq!(
        value_at(&scan, 0).unwrap(),
        serde_json::json!({"prompt_tokens": 3, "completion_tokens": [1, 2500.0, true, null]})
    );
    assert_eq!(
        scan.value(0).unwrap(),
        br#"{ "prompt_tokens" : 3 , "completion_tokens":[1, 2.5e3, true,null] }"#,
        "as written"
    );
    assert_eq!(value_at(&scan, 3).unwrap(), "chat");
    assert_eq!(scan.captured(1), None);
}

#[test]
fn keys_are_compared_decoded_and_the_last_one_wins() {
    let doc = r#"{"us\u0061ge":1,"usage":2,"usag":9,"usagee":8,"\"usage":7,"usage":{"a":"\u00e9 你好 🚀 \\u"}}"#;
    let scan = at_every_split(doc.as_bytes());
    assert_eq!(value_at(&scan, 0).unwrap(), serde_json::json!({"a": "é 你好 🚀 \\u"}));
    let scan = at_every_split(br#"{"us\u0061ge":1}"#);
    assert_eq!(value_at(&scan, 0).unwrap(), 1);
}

#[test]
fn nested_paths_go_through_objects_only() {
    let doc = br#"{"type":"response.completed","response":{"output":[{"usage":5}],"usage":{"input_tokens":4,"output_tokens":2},"status":"completed"}}"#;
    let scan = at_every_split(doc);
    assert_eq!(
        value_at(&scan, 2).unwrap(),
        serde_json::json!({"input_tokens": 4, "output_tokens": 2})
    );
    assert_eq!(scan.captured(0), None, "`usage` at the top level only");
    let scan = at_every_split(br#"{"response":[{"usage":1}],"x":{"response":{"usage":2}}}"#);
    assert_eq!(scan.captured(2), None);
}

#[test]
fn scalars_end_at_any_delimiter() {
    for (doc, want) in [
        (&br#"{"usage":12}"#[..], Value::from(12)),
        (br#"{"usage":-1.5e-3 ,"x":1}"#, Value::from(-0.0015)),
        (b"{\"usage\":null\n}", Value::Null),
        (br#"{"usage":"a,b}]"}"#, Value::from("a,b}]")),
        (br#"{"usage":true}"#, Value::Bool(true)),
    ] {
        assert_eq!(
            value_at(&at_every_split(doc), 0).unwrap(),
            want,
            "{}",
            String::from_utf8_lossy(doc)
        );
    }
}

#[test]
fn values_over_the_cap_are_reported_but_not_kept() {
    let doc = format!(r#"{{"usage":{{"x":"{}"}},"type":"t"}}"#, "y".repeat(100));
    let scan = scan_in(&[doc.as_bytes()], 64);
    assert_eq!(scan.captured(0), Some(&Captured::TooLarge));
    assert_eq!(value_at(&scan, 3).unwrap(), "t");
    let small = scan_in(&[br#"{"usage":{"x":1}}"#], 64);
    assert_eq!(value_at(&small, 0).unwrap(), serde_json::json!({"x": 1}));
}

#[test]
fn what_is_not_one_json_object_finds_nothing() {
    for doc in [
        &b"[DONE]"[..],
        b"[1,{\"usage\":1}]",
        b"<html>{\"usage\":1}",
        b"\"usage\"",
        b"",
        b"  ",
        b"12",
    ] {
        let scan = scan_in(&[doc], 1024);
        assert!(!scan.is_object, "{}", String::from_utf8_lossy(doc));
        assert!(scan.values.iter().all(Option::is_none));
    }
    let broken = scan_in(&[br#"{"usage":{"a":1},"x": nope nope}"#], 1024);
    assert!(broken.is_object && !broken.complete);
    assert_eq!(
        value_at(&broken, 0).unwrap(),
        serde_json::json!({"a": 1}),
        "what came before the break is kept"
    );
    let after = scan_in(&[br#"{"x":1} {"usage":2}"#], 1024);
    assert!(after.complete && after.captured(0).is_none(), "only the first document counts");
}

#[test]
fn a_cut_document_keeps_only_whole_values() {
    let scan = scan_in(&[br#"{"usage":{"prompt_tokens":3},"error":{"type":"x"#], 1024);
    assert!(scan.is_object && !scan.complete);
    assert_eq!(value_at(&scan, 0).unwrap(), serde_json::json!({"prompt_tokens": 3}));
    assert_eq!(scan.captured(1), None, "an unfinished value is dropped");
}

#[test]
fn finish_resets_for_the_next_document() {
    let mut scanner = JsonScanner::incremental(PATHS, 1024);
    scanner.feed(br#"{"usage":1,"#);
    assert!(scanner.has_value(0));
    let first = scanner.finish();
    assert_eq!(value_at(&first, 0).unwrap(), 1);
    scanner.feed(br#"{"type":"b"}"#);
    let second = scanner.finish();
    assert_eq!((second.captured(0), value_at(&second, 3).unwrap()), (None, Value::from("b")));
}

#[test]
fn any_nesting_is_skipped_in_constant_memory() {
    let nested = format!("{}{}", "[{\"a\":".repeat(100_000), "1}]".repeat(100_000));
    let deep = format!(r#"{{"x":{nested},"response":{{"y":{nested},"usage":2}},"usage":1}}"#);
    let mut scanner = JsonScanner::new(PATHS, 1024);
    for piece in deep.as_bytes().chunks(999) {
        scanner.feed(piece);
        assert!(scanner.stack.len() <= 2, "only the levels a path reaches are stacked");
    }
    let scan = scanner.finish();
    assert!(scan.complete);
    assert_eq!(
        (value_at(&scan, 0).unwrap(), value_at(&scan, 2).unwrap()),
        (Value::from(1), Value::from(2))
    );
}

#[test]
fn skipped_containers_keep_strings_with_brackets_and_escapes_apart() {
    let doc =
        r#"{"x":[{"a":"]}\"}","b":["[",{"c":"\\"}]}],"usage":{"s":"}]\\","t":[{}]},"type":"t"}"#;
    let scan = at_every_split(doc.as_bytes());
    assert_eq!(value_at(&scan, 0).unwrap(), serde_json::json!({"s": "}]\\", "t": [{}]}));
    assert_eq!(value_at(&scan, 3).unwrap(), "t");
}

#[test]
fn a_whole_document_is_read_at_once_and_a_split_one_when_it_has_ended() {
    let doc = br#"{"id":"x","usage":{"prompt_tokens":3},"choices":[{"index":0}]}"#;
    let mut scanner = JsonScanner::new(PATHS, 1024);
    scanner.feed(doc);
    assert_eq!(scanner.status, Status::Done, "read at once");
    let (a, b) = doc.split_at(30);
    scanner.finish();
    scanner.feed(a);
    scanner.feed(b);
    assert_eq!((scanner.status, scanner.held.len()), (Status::Start, doc.len()), "held");
    let scan = scanner.finish();
    assert_eq!(value_at(&scan, 0).unwrap(), serde_json::json!({"prompt_tokens": 3}));
    // A key with escapes is left to the incremental reading, from the start.
    scanner.feed(br#"{"us\u0061ge":2}"#);
    assert_eq!((scanner.status, scanner.pos), (Status::Done, 16));
    assert_eq!(value_at(&scanner.finish(), 0).unwrap(), 2);
}

#[test]
fn a_document_larger_than_what_is_held_is_read_as_it_comes() {
    let doc = format!(r#"{{"x":"{}","usage":1}}"#, "y".repeat(WHOLE_BYTES));
    let mut scanner = JsonScanner::new(PATHS, 1024);
    for piece in doc.as_bytes().chunks(1000) {
        scanner.feed(piece);
        assert!(scanner.held.len() <= WHOLE_BYTES);
    }
    assert_eq!(value_at(&scanner.finish(), 0).unwrap(), 1);
}

/// Where the `usage` member of `doc` is said to sit, checked at every split.
fn usage_span(doc: &str) -> Option<(usize, usize)> {
    at_every_split(doc.as_bytes()).span(0).map(|s| (s.start, s.end))
}

#[test]
fn a_top_level_member_found_whole_and_once_has_its_span() {
    let doc = r#" { "a" : 1 , "usage" : {"x":[1]} , "type":"t"} "#;
    let (start, end) = usage_span(doc).unwrap();
    assert_eq!(&doc[start..end], r#""usage" : {"x":[1]}"#);
    for (doc, member) in [
        (r#"{"usage":null}"#, r#""usage":null"#),
        (r#"{"a":"}","usage":-1.5e3}"#, r#""usage":-1.5e3"#),
        (r#"{"b":true,"us\u0061ge":"u\"","c":[]}"#, r#""us\u0061ge":"u\"""#),
    ] {
        let (start, end) = usage_span(doc).unwrap();
        assert_eq!(&doc[start..end], member, "{doc}");
    }
    let scan = at_every_split(br#"{"response":{"usage":1},"type":"x"}"#);
    assert_eq!((scan.span(2), scan.span(3).is_some()), (None, true), "top-level members only");
}

#[test]
fn no_span_where_readers_could_disagree_on_it() {
    for doc in [
        r#"{"usage":1,"usage":2}"#,              // which one
        r#"{"usage":1,"us\u0061ge":2}"#,         // the same, decoded
        "{\"a\":1\u{c},\"usage\":2}",            // a form feed: whitespace to some
        r#"{"a":,,"usage":2}"#,                  // a scalar that is no token
        r#"{"a":"\u00e9","usage":2,"x":tr"ue}"#, // a broken document
        r#"{"usage":2"#,                         // a cut one
    ] {
        assert_eq!(usage_span(doc), None, "{doc}");
    }
    let large = format!(r#"{{"usage":"{}"}}"#, "x".repeat(100));
    assert_eq!(scan_in(&[large.as_bytes()], 64).span(0), None, "a value too large");
}

/// A small deterministic generator (no dependency): random documents over a few keys, with
/// escapes, non-ASCII text and every kind of value.
struct Gen(u64);

impl Gen {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }

    fn string(&mut self) -> String {
        const PIECES: [&str; 9] =
            ["a", "usage", "\\\"", "\\\\", "\\u00e9", "é", "🚀", "\\n", "{]:,"];
        let n = self.next(5);
        let body: String =
            (0..n).map(|_| PIECES[self.next(PIECES.len() as u64) as usize]).collect();
        format!("\"{body}\"")
    }

    fn value(&mut self, depth: u32) -> String {
        let pick = if depth > 3 { self.next(4) } else { self.next(7) };
        match pick {
            0 => self.string(),
            1 => ["0", "-12.5e+3", "true", "false", "null", "7"][self.next(6) as usize].to_owned(),
            2 => format!("{}", self.next(100_000)),
            3 => self.string(),
            4 | 5 => {
                const KEYS: [&str; 6] = ["usage", "error", "response", "type", "x", "us\\u0061ge"];
                let members: Vec<String> = (0..self.next(4))
                    .map(|_| {
                        let key = KEYS[self.next(6) as usize];
                        format!("\"{key}\" : {}", self.value(depth + 1))
                    })
                    .collect();
                format!("{{ {} }}", members.join(" ,"))
            }
            _ => {
                let items: Vec<String> = (0..self.next(4)).map(|_| self.value(depth + 1)).collect();
                format!("[{}]", items.join(","))
            }
        }
    }
}

fn expected_at(doc: &Value, path: &[&str]) -> Option<Value> {
    path.iter().try_fold(doc, |v, key| v.as_object()?.get(*key)).cloned()
}

#[test]
fn generated_documents_agree_with_serde_json_in_pieces_of_every_size() {
    let mut gen = Gen(7);
    let mut checked = 0;
    for round in 0..3000 {
        let doc = gen.value(0);
        let Ok(parsed) = serde_json::from_str::<Value>(&doc) else { continue };
        if !parsed.is_object() {
            continue;
        }
        checked += 1;
        let size = 1 + round % 17;
        let chunks: Vec<&[u8]> = doc.as_bytes().chunks(size).collect();
        let scan = scan_in(&chunks, 1 << 16);
        assert_eq!(scan, scan_in(&[doc.as_bytes()], 1 << 16), "{doc}");
        assert!(scan.is_object && scan.complete, "{doc}");
        for (index, path) in PATHS.iter().enumerate() {
            assert_eq!(
                value_at(&scan, index),
                expected_at(&parsed, path),
                "{path:?} in {doc} (pieces of {size})"
            );
        }
    }
    assert!(checked > 500, "only {checked} objects generated");
}

#[test]
fn a_20_mib_body_costs_one_pass_and_keeps_only_usage() {
    let entry = r#"{"token":"\u00e9x\"","logprob":-0.25,"bytes":[195,169],"top_logprobs":[{"token":"y","logprob":-1.5}]},"#;
    let mut doc = String::from(r#"{"id":"cmpl-1","choices":[{"index":0,"logprobs":{"content":["#);
    while doc.len() < 20 << 20 {
        doc.push_str(entry);
    }
    doc.push_str(r#"{"token":"z","logprob":0}]},"text":"done"}],"usage":{"prompt_tokens":11,"total_tokens":21,"completion_tokens":10}}"#);
    let mut scanner = JsonScanner::new(PATHS, 1 << 16);
    for piece in doc.as_bytes().chunks(16 * 1024 + 3) {
        scanner.feed(piece);
        assert!(scanner.capture.as_ref().is_none_or(|c| c.bytes.len() <= 1 << 16));
    }
    let scan = scanner.finish();
    assert!(scan.complete);
    assert_eq!(
        value_at(&scan, 0).unwrap(),
        serde_json::json!({"prompt_tokens": 11, "total_tokens": 21, "completion_tokens": 10})
    );
}
