//! The one-pass reading against the scanner's: it must read the chunks vLLM writes itself, and
//! on anything (every event of the recorded streams, tricky events, then generated mutations of
//! real ones) it must find what the scanner finds, or leave the event to it.

use super::super::event::{self, EventFacts};
use super::*;
use crate::json_reader::mutations::mutations;
use crate::json_scan::JsonScanner;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Chunks in the shapes vLLM writes: continuous usage, the usage-only chunk, `"usage": null`,
/// completions, several choices, tool calls, reasoning, the end of a choice.
const VLLM_CHUNKS: &[&[u8]] = &[
    br#"{"id":"chatcmpl-e0e2","object":"chat.completion.chunk","created":1796084438,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":3,"total_tokens":3,"completion_tokens":0},"prompt_token_ids":null,"prompt_text":null}"#,
    br#"{"id":"chatcmpl-e0e2","object":"chat.completion.chunk","created":1796084438,"model":"m","choices":[{"index":0,"delta":{"content":" \"q\"\n\\"},"logprobs":null,"finish_reason":null,"token_ids":null}],"usage":{"prompt_tokens":3,"total_tokens":7,"completion_tokens":4}}"#,
    "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\" 你好\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":9,\"completion_tokens\":6}}".as_bytes(),
    br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"total_tokens":9,"completion_tokens":6,"prompt_tokens_details":null}}"#,
    br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"m","choices":[{"index":3,"text":" x","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":{"prompt_tokens":5,"total_tokens":6,"completion_tokens":1}}"#,
    br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\": 1}"}}]},"logprobs":null,"finish_reason":null}]}"#,
    br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"think"},"logprobs":{"content":[{"token":"t","logprob":-0.25,"bytes":[116],"top_logprobs":[]}]},"finish_reason":null}]}"#,
    br#" { "choices" : [ ] , "usage" : { "prompt_tokens" : 1 , "completion_tokens" : 2 } } "#,
];

/// Events it must leave to the scanner: errors, Responses API events, keys with escapes, a
/// member twice, not an object, cut off.
const DECLINED: &[&[u8]] = &[
    br#"{"error":{"object":"error","message":"boom","type":"BadRequestError","code":400}}"#,
    br#"{"object":"error","message":"boom","type":"BadRequestError","code":400}"#,
    br#"{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":2}}}"#,
    br#"{"type":"response.output_text.delta","delta":"x"}"#,
    br#"{"choices":[],"us\u0061ge":{"prompt_tokens":1}}"#,
    br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
    br#"{"choices":[],"choices":[{"index":0}]}"#,
    br#"{"object":"x","object":"y"}"#,
    br#"{"usage":{"prompt_tokens":1.5}}"#,
    br#"{"choices":[{"index":-1}]}"#,
    br#"{"usage":5}"#,
    b"[DONE]",
    br#"{"choices":[{"index":0}]"#,
    br#"{"choices":[{"index":0}]} x"#,
    b"{\"id\":\"a\x01\"}",
    b"",
];

/// Events whose reading only has to agree.
const TRICKY: &[&[u8]] = &[
    br#"{"choices":[{"index":0,"delta":{"content":"\u4f60\u597d"}}],"usage":{"prompt_tokens":3}}"#,
    br#"{"object":"\u0065rror","choices":[]}"#,
    br#"{"object":"error "}"#,
    br#"{"object":["error"],"usage":null}"#,
    br#"{"choices":null,"usage":{}}"#,
    br#"{"choices":[{"index":0,"delta":null,"text":true}],"usage":{"prompt_tokens":null}}"#,
    br#"{"delta":"x","code":"y","usage":{"input_tokens":3,"output_tokens":4}}"#,
    br#"{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    br#"{"x":{"y":"\ud800"},"choices":[]}"#,
    br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1}}"#,
    b"{\"id\":\"caf\xc3\xa9\",\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
    b"{}",
    b"\t{}\r\n",
];

/// The facts the scanner and [`event::read`] find in `data`, read byte by byte.
fn by_scanner(data: &[u8]) -> EventFacts {
    let mut scanner = JsonScanner::incremental(event::PATHS, CAPTURE_BYTES);
    scanner.feed(data);
    event::read(&scanner.finish())
}

/// Whether `data` was read in one pass (and then alike).
fn check(data: &[u8]) -> bool {
    let one_pass = read(data);
    if let Some(facts) = &one_pass {
        assert_eq!(facts, &by_scanner(data), "{}", data.escape_ascii());
    }
    one_pass.is_some()
}

/// The data of each event of a recorded stream.
fn events_of(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    stream.split(|&b| b == b'\n').filter_map(|line| line.strip_prefix(b"data: "))
}

fn recorded_events() -> Vec<&'static [u8]> {
    [
        &include_bytes!("../../../../../shared/fixtures/vllm-chat-stream-include-usage.sse")[..],
        include_bytes!("../../../../../shared/fixtures/openai-chat-stream-usage.sse"),
        include_bytes!("../../../../../shared/fixtures/openai-chat-stream-tool-call-usage.sse"),
    ]
    .into_iter()
    .flat_map(events_of)
    .collect()
}

#[test]
fn the_chunks_vllm_writes_are_read_in_one_pass_and_alike() {
    for chunk in VLLM_CHUNKS {
        assert!(check(chunk), "left to the scanner: {}", chunk.escape_ascii());
    }
    let events = recorded_events();
    assert!(events.len() > 20);
    for data in events.iter().filter(|d| *d != b"[DONE]") {
        assert!(check(data), "left to the scanner: {}", data.escape_ascii());
    }
    let facts = read(VLLM_CHUNKS[3]).unwrap();
    assert_eq!(facts.usage_member, UsageMember::UsageOnly);
    assert!(facts.usage_is_total);
    let span = facts.usage_span.unwrap();
    assert!(VLLM_CHUNKS[3][span.start..span.end].starts_with(b"\"usage\":{"));
    assert!(VLLM_CHUNKS[3][span.start..span.end].ends_with(b"null}"));
}

#[test]
fn errors_responses_events_and_odd_keys_are_left_to_the_scanner() {
    for data in DECLINED {
        assert!(!check(data), "read in one pass: {}", data.escape_ascii());
    }
    let large = format!(r#"{{"id":"{}","choices":[]}}"#, "x".repeat(CAPTURE_BYTES));
    assert!(!check(large.as_bytes()));
}

#[test]
fn tricky_events_are_read_as_the_scanner_reads_them() {
    for data in TRICKY {
        check(data);
    }
}

/// Mutations of real events (see [`mutations`]).
#[test]
fn mutated_events_are_read_as_the_scanner_reads_them() {
    let bases: Vec<&[u8]> = VLLM_CHUNKS.iter().chain(DECLINED).chain(TRICKY).copied().collect();
    let inputs = mutations(&bases, 20_000, 0x2545_f491_4f6c_dd1d);
    let one_pass = inputs.iter().filter(|input| check(input)).count();
    assert!(one_pass > 2_000, "only {one_pass} of 20,000 read in one pass");
}

/// How `data` was read after another event.
#[derive(Debug, PartialEq, Eq)]
enum ReadAfter {
    /// From its start.
    Whole,
    /// On from the start it shares.
    Resumed,
    /// Not read: its rest has the shape of the other's.
    Fitted,
}

/// Reads `data` after `previous` (read twice: its start is then the prefix, and its rest the
/// shape to fit): it must read as `data` read on its own; how it was read.
fn check_after(previous: &[u8], data: &[u8]) -> ReadAfter {
    let mut prefix = Prefix::default();
    read_after(previous, &mut prefix);
    read_after(previous, &mut prefix);
    let how = match prefix.rest.as_ref().map(|rest| rest.fit(data, &prefix)) {
        _ if !prefix.starts(data) => ReadAfter::Whole,
        Some(Some(_)) => ReadAfter::Fitted,
        _ => ReadAfter::Resumed,
    };
    let after = read_after(data, &mut prefix);
    assert_eq!(after, read(data), "{} after {}", data.escape_ascii(), previous.escape_ascii());
    if let Some(facts) = &after {
        assert_eq!(facts, &by_scanner(data), "{}", data.escape_ascii());
    }
    how
}

#[test]
fn a_streams_chunks_are_read_on_from_the_start_they_share() {
    for stream in [
        &include_bytes!("../../../../../shared/fixtures/vllm-chat-stream-include-usage.sse")[..],
        include_bytes!("../../../../../shared/fixtures/openai-chat-stream-usage.sse"),
    ] {
        let events: Vec<&[u8]> = events_of(stream).filter(|d| *d != b"[DONE]").collect();
        let (mut prefix, mut fitted) = (Prefix::default(), 0);
        for (i, data) in events.iter().enumerate() {
            let fits = prefix.starts(data)
                && prefix.rest.as_ref().is_some_and(|rest| rest.fit(data, &prefix).is_some());
            fitted += usize::from(fits);
            let facts = read_after(data, &mut prefix);
            assert_eq!(facts, read(data), "event {i}");
            assert!(facts.is_some(), "event {i} left to the scanner");
        }
        // All but the first two (the prefix, then the shape) and those shaped otherwise (the
        // role, the end of a choice, the usage-only chunk) fit the one before.
        assert!(fitted + 6 >= events.len(), "{fitted} of {} fitted", events.len());
        // The shared start runs up to `choices`, past `id`, `object`, `created` and `model`.
        let shared = String::from_utf8_lossy(&prefix.bytes).into_owned();
        assert!(shared.contains("\"model\":") && shared.ends_with(','), "{shared}");
        assert!(prefix.object);
        assert!(events.iter().skip(1).all(|d| d.starts_with(&prefix.bytes)));
    }
}

/// What follows a shared start is read as it would be on its own: a second `object` (refused),
/// `usage` or `choices` twice, an error, a different start.
#[test]
fn what_follows_a_shared_start_is_read_as_on_its_own() {
    let previous = VLLM_CHUNKS[0];
    let start = br#"{"id":"chatcmpl-e0e2","object":"chat.completion.chunk","created":1796084438,"model":"m","#;
    for rest in [
        &br#""object":"x","choices":[]}"#[..],
        br#""choices":[],"choices":[]}"#,
        br#""usage":null,"usage":null}"#,
        br#""error":{"message":"boom"}}"#,
        br#""type":"response.completed"}"#,
        br#" "choices" : [ ] }"#,
        br#"}"#,
        br#""choices":[{"index":2,"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
    ] {
        let data = [&start[..], rest].concat();
        let how = check_after(previous, &data);
        assert_eq!(how, ReadAfter::Resumed, "{}", data.escape_ascii());
    }
    let other = br#"{"id":"chatcmpl-e0e3","choices":[]}"#;
    assert_eq!(check_after(previous, other), ReadAfter::Whole);
    // The shared start ends at the first member that tells something, whichever comes first.
    for (previous, data) in [
        (
            &br#"{"id":"c","usage":{"prompt_tokens":5},"choices":[]}"#[..],
            &br#"{"id":"c","usage":{"prompt_tokens":5},"choices":[{"index":1}]}"#[..],
        ),
        (br#"{"id":"c","choices":[],"usage":null}"#, br#"{"id":"c","choices":[],"usage":{}}"#),
    ] {
        assert_eq!(check_after(previous, data), ReadAfter::Resumed, "{}", data.escape_ascii());
    }
    // An `object` after the shared start is no hole: `"error"` there makes an error event.
    let previous = br#"{"id":"c","choices":[],"object":"x"}"#;
    let error = br#"{"id":"c","choices":[],"object":"error"}"#;
    assert_eq!(check_after(previous, error), ReadAfter::Resumed);
    let other = br#"{"id":"c","choices":[],"object":"y"}"#;
    assert_eq!(check_after(previous, other), ReadAfter::Resumed);
    let previous = br#"{"id":"c","choices":[],"model":"x"}"#;
    let other = br#"{"id":"c","choices":[],"model":"y"}"#;
    assert_eq!(check_after(previous, other), ReadAfter::Fitted);
}

/// Mutations of real events, each read after the event it was made from: read on from their
/// start, or fitted to its shape, each must read as on its own.
#[test]
fn mutated_events_read_after_their_original_are_read_as_on_their_own() {
    let (mut resumed, mut fitted) = (0, 0);
    for base in VLLM_CHUNKS {
        for input in mutations(&[base], 2_000, 0x9e37_79b9_7f4a_7c15) {
            match check_after(base, &input) {
                ReadAfter::Whole => {}
                ReadAfter::Resumed => resumed += 1,
                ReadAfter::Fitted => fitted += 1,
            }
        }
    }
    assert!(resumed > 2_000, "only {resumed} mutations read on after their original's start");
    assert!(fitted > 150, "only {fitted} mutations fitted to their original's shape");
}

/// A stream with continuous usage, as vLLM writes it: after the first two chunks (the start,
/// then the shape), every chunk is fitted, with its own counts and text, as it reads on its own.
#[test]
fn a_continuous_usage_streams_chunks_fit_the_shape_of_the_last() {
    let texts = ["Hello", " world", ",", " \"q\"\n", " 你好", "\\", "a b c", "🙂"];
    let mut prefix = Prefix::default();
    for (i, text) in texts.iter().cycle().take(40).enumerate() {
        let text = text.escape_debug().to_string().replace("\\'", "'");
        let data = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":null,"token_ids":null}}],"usage":{{"prompt_tokens":{},"total_tokens":{},"completion_tokens":{i}}}}}"#,
            7 + i % 3,
            7 + i % 3 + i,
        );
        let data = data.as_bytes();
        let fits = prefix.rest.as_ref().is_some_and(|rest| rest.fit(data, &prefix).is_some());
        assert_eq!(fits, i >= 2, "chunk {i}: {}", data.escape_ascii());
        let facts = read_after(data, &mut prefix).unwrap();
        assert_eq!(Some(&facts), read(data).as_ref(), "chunk {i}");
        assert_eq!(facts, by_scanner(data), "chunk {i}");
        assert_eq!(facts.usage.map(|u| u.completion_tokens), Some(i as u64));
    }
}
