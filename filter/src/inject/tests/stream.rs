//! The caller's view of a streamed reply whose request was injected with usage options, over
//! the recorded vLLM and OpenAI streams split at every byte boundary.

use super::super::members::{member_span, top_level_members};
use super::super::*;
use crate::usage::StreamAccounting;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/", $name))
    };
}

const VLLM_STREAM: &[u8] = fixture!("vllm-chat-stream-include-usage.sse");
/// OpenAI's own replies to `include_usage`: `"usage":null` on every content chunk.
const OPENAI_STREAMS: [&[u8]; 2] =
    [fixture!("openai-chat-stream-usage.sse"), fixture!("openai-chat-stream-tool-call-usage.sse")];

fn rewrite_in(chunks: &[&[u8]], ask: UsageAsk) -> Vec<u8> {
    rewrite_with(StreamAccounting::default(), ask, chunks).0
}

/// What the caller gets for a stream fed in `chunks` to `stream` rewriting for `ask`, and the
/// stream's accounting after it.
pub(crate) fn rewrite_with(
    stream: StreamAccounting,
    ask: UsageAsk,
    chunks: &[&[u8]],
) -> (Vec<u8>, StreamAccounting) {
    let mut stream = stream.rewriting(StreamRewrite::new(ask));
    let mut out = Vec::new();
    for chunk in chunks {
        match stream.feed(chunk) {
            Some(rewritten) => out.extend(rewritten),
            None => out.extend_from_slice(chunk),
        }
    }
    out.extend(stream.finish_rewrite());
    (out, stream)
}

/// Asserts that `stream`, cut in two at every byte, comes out for `ask` as `expected`.
fn assert_rewritten_at_every_split(stream: &[u8], ask: UsageAsk, expected: &[u8]) {
    for cut in 0..=stream.len() {
        let (a, b) = stream.split_at(cut);
        assert_eq!(rewrite_in(&[a, b], ask), expected, "split at {cut}");
    }
}

fn events(stream: &[u8]) -> Vec<String> {
    String::from_utf8(stream.to_vec()).unwrap().split("\n\n").map(str::to_owned).collect()
}

/// The recording as vLLM sends it with continuous usage: a running usage on every chunk.
fn with_continuous_usage(stream: &[u8]) -> Vec<u8> {
    let mut n = 0;
    let mut out = String::new();
    for event in events(stream) {
        match event
            .strip_prefix("data: ")
            .filter(|e| !e.contains("\"usage\"") && e.starts_with('{'))
        {
            Some(json) => {
                n += 1;
                let json = json.trim_end_matches('}');
                out.push_str(&format!("data: {json},\"usage\":{{\"prompt_tokens\":46,\"total_tokens\":{},\"completion_tokens\":{n}}}}}", 46 + n));
            }
            None => out.push_str(&event),
        }
        out.push_str("\n\n");
    }
    out.truncate(out.len() - 2);
    out.into_bytes()
}

#[test]
fn a_caller_that_asked_nothing_gets_no_usage_at_any_split() {
    let upstream = with_continuous_usage(VLLM_STREAM);
    let expected: Vec<u8> = events(VLLM_STREAM)
        .into_iter()
        .filter(|e| !e.contains("\"usage\""))
        .collect::<Vec<_>>()
        .join("\n\n")
        .into_bytes();
    assert!(!String::from_utf8_lossy(&expected).contains("usage"));
    assert_rewritten_at_every_split(&upstream, UsageAsk::default(), &expected);
    let bytes: Vec<&[u8]> = upstream.chunks(1).collect();
    assert_eq!(rewrite_in(&bytes, UsageAsk::default()), expected);
}

#[test]
fn a_caller_that_asked_for_usage_gets_exactly_vllms_stream() {
    let upstream = with_continuous_usage(VLLM_STREAM);
    let ask = UsageAsk { include_usage: true, continuous: false };
    assert_rewritten_at_every_split(&upstream, ask, VLLM_STREAM);
}

#[test]
fn member_spans_cut_cleanly() {
    let span = |json: &[u8], name: &str| {
        let members = top_level_members(json)?;
        member_span(&members, members.iter().position(|m| m.key == name.as_bytes())?)
    };
    let cut = |json: &str| {
        let (a, b) = span(json.as_bytes(), "usage").unwrap();
        format!("{}{}", &json[..a], &json[b..])
    };
    assert_eq!(cut(r#"{"a":1,"usage":{"x":[1,"}"]},"b":"u\"sage"}"#), r#"{"a":1,"b":"u\"sage"}"#);
    assert_eq!(cut(r#"{"a":1, "usage" : null}"#), r#"{"a":1}"#);
    assert_eq!(cut(r#"{"usage":{},"b":2}"#), r#"{"b":2}"#);
    assert_eq!(cut(r#"{"usage":3}"#), r#"{}"#);
    assert!(span(br#"{"a":{"usage":1}}"#, "usage").is_none(), "only top-level members");
    assert!(span(b"[1]", "usage").is_none());
    assert!(span(br#"{"usage":"#, "usage").is_none());
}

#[test]
fn an_event_passed_on_in_part_is_not_cut_where_the_whole_one_would_be() {
    // Too long to hold: its first part is passed on, and what is left of it looks like an event
    // of its own, on which the place of `usage` in the whole event would cut the wrong bytes.
    let head = format!(r#"data: {{"usage":1,"x":"{}"#, "y".repeat(1 << 20));
    let tail = b"data: 0123456789,rest\"}\n\n";
    let rewritten = rewrite_in(&[head.as_bytes(), tail], UsageAsk::default());
    assert_eq!(rewritten, [head.as_bytes(), tail].concat());
}

#[test]
fn odd_events_pass_unchanged() {
    let stream = b": keep-alive\n\nevent: x\ndata: {\"usage\":1}\n\ndata: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n";
    assert_eq!(rewrite_in(&[stream], UsageAsk::default()), stream.to_vec());
    // Lines that make no event before a usage-only chunk do not keep it from being dropped.
    let usage_only =
        b": ping\r\n\r\nid: 7\n\ndata: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\n";
    assert_rewritten_at_every_split(usage_only, UsageAsk::default(), b": ping\r\n\r\nid: 7\n\n");
    let crlf = b"data: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\r\n\r\ndata: [DONE]\r\n\r\n";
    assert_eq!(rewrite_in(&[crlf], UsageAsk::default()), b"data: [DONE]\r\n\r\n".to_vec());
    let unterminated = b"data: {\"choices\":[],\"usage\":{}}";
    assert_eq!(rewrite_in(&[unterminated], UsageAsk::default()), unterminated.to_vec());
}

#[test]
fn null_usage_from_an_upstream_reaches_a_caller_that_asked_for_usage_byte_for_byte() {
    let ask = UsageAsk { include_usage: true, continuous: false };
    for stream in OPENAI_STREAMS {
        assert!(String::from_utf8_lossy(stream).matches("\"usage\":null").count() >= 3);
        assert_rewritten_at_every_split(stream, ask, stream);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(rewrite_in(&bytes, ask), stream);
        let continuous = UsageAsk { include_usage: true, continuous: true };
        assert_eq!(rewrite_in(&[stream], continuous), stream);
    }
}

#[test]
fn null_usage_is_removed_only_for_a_caller_that_did_not_ask_for_usage() {
    for stream in OPENAI_STREAMS {
        let expected: String = events(stream)
            .into_iter()
            .filter(|e| !e.contains("\"choices\":[]"))
            .map(|e| e.replace("\"usage\":null,", ""))
            .collect::<Vec<_>>()
            .join("\n\n");
        assert!(!expected.contains("usage"));
        assert_rewritten_at_every_split(stream, UsageAsk::default(), expected.as_bytes());
    }
}

#[test]
fn a_running_usage_is_removed_only_for_a_caller_that_did_not_ask_for_it() {
    let running = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2,\"completion_tokens\":1}}\n\n";
    let without = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
    assert_eq!(rewrite_in(&[running], UsageAsk::default()), without);
    assert_eq!(
        rewrite_in(&[running], UsageAsk { include_usage: true, continuous: false }),
        without
    );
    assert_eq!(rewrite_in(&[running], UsageAsk { include_usage: true, continuous: true }), running);
}

#[test]
fn only_an_event_of_one_data_line_is_cut() {
    let usage = r#""usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}"#;
    let choices = r#"{"choices":[{"index":0,"delta":{"content":"a"}}]"#;
    // Its data is the same JSON each time, but only the one-line events are the upstream's.
    let one_line = [("data: ", "\n\n"), ("data:", "\r\n\r\n"), ("data: ", "\r\r")];
    for (prefix, ends) in one_line {
        let event = format!("{prefix}{choices},{usage}}}{ends}");
        let cut = format!("{prefix}{choices}}}{ends}");
        assert_rewritten_at_every_split(event.as_bytes(), UsageAsk::default(), cut.as_bytes());
    }
    let several_lines = [
        format!("data: {choices},\ndata: {usage}}}\n\n"),
        format!("data: {choices},{usage}}}\n: a comment\n\n"),
        format!("data: {choices},{usage}}}\nid: 1\r\n\r\n"),
        format!("data: {choices},{usage}}}\ndata\n\n"),
    ];
    for event in several_lines {
        let event = event.as_bytes();
        assert_rewritten_at_every_split(event, UsageAsk::default(), event);
    }
}

#[test]
fn an_event_fed_a_byte_at_a_time_is_rewritten_alike() {
    // CR, LF and CRLF line ends, and a CR that ends a chunk (half of a CRLF, or not).
    let usage_only = br#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}}"#;
    let mut stream = Vec::new();
    for (i, end) in [&b"\r\n"[..], b"\n", b"\r"].iter().enumerate() {
        stream.extend_from_slice(format!("data: {{\"n\":{i}}}").as_bytes());
        stream.extend_from_slice(end);
        stream.extend_from_slice(end);
    }
    stream.extend_from_slice(b"data: ");
    stream.extend_from_slice(usage_only);
    stream.extend_from_slice(b"\r\n\r\n");
    let ask = UsageAsk::default();
    let whole = rewrite_in(&[&stream], ask);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(rewrite_in(&bytes, ask), whole);
    assert!(
        !String::from_utf8_lossy(&whole).contains("usage"),
        "the usage-only chunk the caller did not ask for is gone"
    );
}
