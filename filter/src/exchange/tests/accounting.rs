//! Counting through the exchange: per endpoint, compressed replies, cut-off replies, and the
//! caller's view of a stream.

use super::*;
use crate::usage::Usage;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const OPENAI_STREAM: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/openai-chat-stream-usage.sse"
));

/// An exchange past its request body, for `body` sent to `path`.
fn sent(path: &str, body: &str) -> (Exchange, FakeHost) {
    let mut host = FakeHost::default();
    let mut ex = Exchange::new(
        Rc::new(PluginConfig { max_request_body_bytes: 1 << 20, ..(*config()).clone() }),
        1_000,
    );
    let step = ex.on_request_headers(
        &mut host,
        &head("POST", path, Some("Bearer sk-live-good")),
        Some(Authority::new(&keys(), None)),
        0,
    );
    assert_eq!(step, Step::ReadBody);
    assert_eq!(ex.on_request_body(&mut host, body.as_bytes()), Step::Continue);
    (ex, host)
}

/// The bytes the caller gets for `upstream`, fed in two pieces cut at `cut`.
fn relay(ex: &mut Exchange, upstream: &[u8], cut: usize) -> Vec<u8> {
    let (a, b) = upstream.split_at(cut);
    let mut out = Vec::new();
    for (piece, last) in [(a, false), (b, true)] {
        out.extend(ex.on_response_body(piece, last, 1_001).unwrap_or_else(|| piece.to_vec()));
    }
    out
}

#[test]
fn an_injected_stream_rewrites_only_the_chunks_it_changes() {
    let (mut ex, host) =
        sent("/v1/chat/completions", r#"{"model":"model-a","messages":[],"stream":true}"#);
    assert!(host.body.is_some(), "usage asked for on the caller's behalf");
    assert!(ex.on_response_headers(200, Some("text/event-stream"), None));
    let event = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    assert_eq!(
        ex.on_response_body(event, false, 1_001),
        None,
        "a whole event without usage passes as it is"
    );
    let (head, tail) = event.split_at(10);
    assert_eq!(ex.on_response_body(head, false, 1_002), Some(Vec::new()), "half an event waits");
    assert_eq!(ex.on_response_body(tail, false, 1_003).as_deref(), Some(&event[..]));
    let usage = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
    assert_eq!(
        ex.on_response_body(usage, true, 1_004).as_deref(),
        Some(&b"data: [DONE]\n\n"[..]),
        "the usage the caller did not ask for is taken out"
    );
    let record = ex.finish(1_005, Ending::Complete).unwrap();
    assert_eq!(record.usage.total_tokens, 3);
}

#[test]
fn a_responses_stream_is_not_injected_and_counts_its_final_event() {
    let (mut ex, host) = sent("/v1/responses", r#"{"model":"model-a","input":"hi","stream":true}"#);
    assert_eq!(host.body, None, "the Responses API has no stream_options");
    assert!(
        !ex.on_response_headers(200, Some("text/event-stream"), None),
        "nothing to hide from the caller"
    );
    let stream = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":8,\"output_tokens\":1,\"total_tokens\":9}}}\n\n";
    assert_eq!(ex.on_response_body(stream, true, 1_002), None);
    let record = ex.finish(1_003, Ending::Complete).unwrap();
    assert_eq!(
        (record.usage, record.usage_source),
        (Usage { prompt_tokens: 8, completion_tokens: 1, total_tokens: 9 }, UsageSource::Reported)
    );
}

#[test]
fn n_choices_of_a_cut_chat_stream_are_summed_with_the_prompt_once() {
    let (mut ex, _) = sent("/v1/chat/completions", r#"{"model":"model-a","stream":true,"n":2}"#);
    ex.on_response_headers(200, Some("text/event-stream"), None);
    let chunk = |i: u32, c: u32| {
        format!("data: {{\"choices\":[{{\"index\":{i},\"delta\":{{\"content\":\"x\"}}}}],\"usage\":{{\"prompt_tokens\":7,\"total_tokens\":{},\"completion_tokens\":{c}}}}}\n\n", 7 + c)
    };
    let stream = [chunk(0, 1), chunk(1, 1), chunk(0, 2), chunk(1, 2), chunk(0, 3)].concat();
    ex.on_response_body(stream.as_bytes(), false, 1_001);
    let record = ex.finish(1_002, Ending::ClientGone).unwrap();
    assert_eq!(record.usage, Usage { prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    assert!(record.client_disconnected);
}

#[test]
fn batched_completions_count_each_prompt_once() {
    let (mut ex, _) =
        sent("/v1/completions", r#"{"model":"model-a","stream":true,"n":2,"prompt":["a","bb"]}"#);
    ex.on_response_headers(200, Some("text/event-stream"), None);
    let chunk = |i: u32, p: u32| {
        format!("data: {{\"choices\":[{{\"index\":{i},\"text\":\"x\"}}],\"usage\":{{\"prompt_tokens\":{p},\"total_tokens\":{},\"completion_tokens\":1}}}}\n\n", p + 1)
    };
    let stream = [chunk(0, 3), chunk(1, 3), chunk(2, 5), chunk(3, 5)].concat();
    ex.on_response_body(stream.as_bytes(), false, 1_001);
    assert_eq!(
        ex.finish(1_002, Ending::ClientGone).unwrap().usage,
        Usage { prompt_tokens: 8, completion_tokens: 4, total_tokens: 12 }
    );
}

#[test]
fn a_non_streamed_reply_cut_off_keeps_the_usage_it_had_read() {
    let (mut ex, _) = sent("/v1/completions", r#"{"model":"model-a"}"#);
    ex.on_response_headers(200, Some("application/json"), None);
    ex.on_response_body(br#"{"usage":{"prompt_tokens":2,"total_tokens":5,"completion_tokens":3},"choices":[{"text":"and then"#, false, 1_001);
    let record = ex.finish(1_002, Ending::ClientGone).unwrap();
    assert_eq!(
        (record.usage.completion_tokens, record.usage_source, record.client_disconnected),
        (3, UsageSource::Reported, true)
    );
}

#[test]
fn a_compressed_reply_is_counted_as_unknown_not_as_garbage() {
    for (content_type, encoding) in [
        ("application/json", "gzip"),
        ("text/event-stream", "br"),
        ("application/json", "identity, gzip"),
    ] {
        let (mut ex, _) = sent("/v1/chat/completions", r#"{"model":"model-a","stream":true}"#);
        assert!(
            !ex.on_response_headers(200, Some(content_type), Some(encoding)),
            "compressed bytes are never rewritten"
        );
        let gzip =
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03data: {\"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(ex.on_response_body(gzip, true, 1_001), None);
        let record = ex.finish(1_002, Ending::Complete).unwrap();
        assert_eq!(
            (record.usage, record.usage_source),
            (Usage::default(), UsageSource::None),
            "{encoding}"
        );
    }
    let (mut ex, _) = sent("/v1/completions", r#"{"model":"model-a"}"#);
    ex.on_response_headers(200, Some("application/json"), Some("Identity"));
    ex.on_response_body(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#, true, 1_001);
    assert_eq!(ex.finish(1_002, Ending::Complete).unwrap().usage_source, UsageSource::Reported);
}

#[test]
fn an_upstream_writing_null_usage_reaches_a_caller_that_asked_for_usage_byte_for_byte() {
    let body = r#"{"model":"model-a","stream":true,"stream_options":{"include_usage":true}}"#;
    for cut in 0..=OPENAI_STREAM.len() {
        let (mut ex, host) = sent("/v1/chat/completions", body);
        let injected: serde_json::Value =
            serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
        assert_eq!(injected["stream_options"]["continuous_usage_stats"], true);
        ex.on_response_headers(200, Some("text/event-stream"), None);
        assert_eq!(relay(&mut ex, OPENAI_STREAM, cut), OPENAI_STREAM, "split at {cut}");
        assert_eq!(ex.finish(1_002, Ending::Complete).unwrap().usage.total_tokens, 30);
    }
}

#[test]
fn an_empty_stream_options_asks_for_usage_as_vllm_reads_it() {
    let (mut ex, _) =
        sent("/v1/chat/completions", r#"{"model":"model-a","stream":true,"stream_options":{}}"#);
    ex.on_response_headers(200, Some("text/event-stream"), None);
    let usage_only = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"total_tokens\":2,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";
    assert_eq!(
        relay(&mut ex, usage_only, 10),
        usage_only.to_vec(),
        "the usage-only chunk is the caller's"
    );
}
