//! Usage accounting over the recorded real streams and bodies in `shared/fixtures` and over
//! streams built in vLLM's shapes, split at every byte boundary.

use super::*;
use crate::inject::UsageAsk;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod built;
mod readers;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/", $name))
    };
}

const VLLM_STREAM: &[u8] = fixture!("vllm-chat-stream-include-usage.sse");
const OPENAI_STREAM: &[u8] = fixture!("openai-chat-stream-usage.sse");
const OPENAI_TOOL_STREAM: &[u8] = fixture!("openai-chat-stream-tool-call-usage.sse");

fn count_stream(chunks: &[&[u8]]) -> Accounting {
    count_stream_as(PromptLayout::default(), chunks)
}

fn count_stream_as(layout: PromptLayout, chunks: &[&[u8]]) -> Accounting {
    let mut acc = StreamAccounting::new(layout);
    for chunk in chunks {
        acc.feed(chunk);
    }
    acc.finish()
}

fn reported_usage_of(stream: &[u8]) -> Usage {
    // The usage object of the last `data:` line that has one, read independently of the parser.
    let text = std::str::from_utf8(stream).unwrap();
    let line = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|l| l.contains("\"usage\":{"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    serde_json::from_value(v["usage"].clone()).unwrap()
}

#[test]
fn every_recorded_stream_counts_the_same_at_every_split() {
    for stream in [VLLM_STREAM, OPENAI_STREAM, OPENAI_TOOL_STREAM] {
        let expected = reported_usage_of(stream);
        assert!(expected.total_tokens > 0);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let acc = count_stream(&[a, b]);
            assert_eq!(acc.usage, expected, "split at {cut}");
            assert_eq!(acc.source, UsageSource::Reported);
            assert_eq!(acc.error, None);
        }
        for size in [1, 2, 3, 7] {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            assert_eq!(count_stream(&chunks).usage, expected, "chunks of {size}");
        }
    }
}

/// A chat stream with continuous usage and two choices, as vLLM writes it when the gateway
/// asks for usage on every chunk.
fn continuous_stream() -> Vec<u8> {
    let mut stream = String::new();
    let chunk = r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":"#;
    for k in 1..=6u64 {
        let (index, text) = (k % 2, if k == 3 { "é\"\\" } else { "tok" });
        let choice = format!(
            r#"[{{"index":{index},"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":null}}]"#
        );
        let usage = format!(
            r#"{{"prompt_tokens":5,"total_tokens":{},"completion_tokens":{}}}"#,
            5 + k,
            k.div_ceil(2)
        );
        stream += &format!("data: {chunk}{choice},\"usage\":{usage}}}\n\n");
    }
    stream += &format!("data: {chunk}[],\"usage\":{{\"prompt_tokens\":5,\"total_tokens\":11,\"completion_tokens\":6}}}}\n\ndata: [DONE]\n\n");
    stream.into_bytes()
}

/// What a stream fed in `pieces` counts, and what the caller gets for `ask`.
fn count_and_rewrite(
    accounting: StreamAccounting,
    ask: UsageAsk,
    pieces: &[&[u8]],
) -> (Accounting, Vec<u8>) {
    let (out, mut accounting) = crate::inject::tests::rewrite_with(accounting, ask, pieces);
    (accounting.finish(), out)
}

#[test]
fn events_read_in_one_pass_count_and_rewrite_as_the_scanner_does() {
    let continuous = continuous_stream();
    let asks = [(false, false), (true, false), (true, true)]
        .map(|(include_usage, continuous)| UsageAsk { include_usage, continuous });
    for stream in [VLLM_STREAM, OPENAI_STREAM, OPENAI_TOOL_STREAM, &continuous] {
        for ask in asks {
            let scanner = StreamAccounting::default().scanner_only();
            let expected = count_and_rewrite(scanner, ask, &[stream]);
            assert_eq!(expected.0.source, UsageSource::Reported);
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                let got = count_and_rewrite(StreamAccounting::default(), ask, &[a, b]);
                assert_eq!(got, expected, "{ask:?}, split at {cut}");
            }
        }
    }
    let usage = count_and_rewrite(StreamAccounting::default(), asks[0], &[&continuous]).0.usage;
    assert_eq!(usage, Usage { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 });
}

#[test]
fn the_vllm_recording_reports_its_exact_usage() {
    let acc = count_stream(&[VLLM_STREAM]);
    assert_eq!(acc.usage, Usage { prompt_tokens: 46, completion_tokens: 14, total_tokens: 60 });
}

#[test]
fn crlf_reframing_changes_nothing() {
    let crlf = String::from_utf8(VLLM_STREAM.to_vec()).unwrap().replace('\n', "\r\n");
    let crlf = format!(": keep-alive\r\n\r\n{crlf}");
    let acc = count_stream(&[crlf.as_bytes()]);
    assert_eq!(acc.usage, reported_usage_of(VLLM_STREAM));
}

#[test]
fn without_reported_usage_content_chunks_are_estimated() {
    let no_usage: String = String::from_utf8(VLLM_STREAM.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|e| !e.contains("\"usage\""))
        .map(|e| format!("{e}\n\n"))
        .collect();
    let acc = count_stream(&[no_usage.as_bytes()]);
    assert_eq!(acc.source, UsageSource::Estimated);
    assert_eq!(acc.usage.completion_tokens, 13, "non-empty content chunks of the recording");
    assert_eq!(acc.usage.prompt_tokens, 0);
}

#[test]
fn an_error_mid_stream_is_seen_in_every_shape() {
    let nested = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\ndata: [DONE]\n\n";
    let acc = count_stream(&[nested]);
    assert_eq!(acc.error.unwrap().kind, "InternalServerError");
    assert_eq!(acc.source, UsageSource::Estimated);

    let flat = b"data: {\"object\":\"error\",\"message\":\"m\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}\n\n";
    assert_eq!(count_stream(&[flat]).error.unwrap().kind, "BadRequestError");
    let responses = b"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"m\",\"param\":null,\"sequence_number\":3}\n\n";
    assert_eq!(count_stream(&[responses]).error.unwrap().kind, "server_error");
    let failed = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"m\"},\"usage\":{\"input_tokens\":5,\"output_tokens\":1,\"total_tokens\":6}}}\n\n";
    let acc = count_stream(&[failed]);
    assert_eq!(
        (acc.error.unwrap().kind.as_str(), acc.usage.prompt_tokens, acc.source),
        ("server_error", 5, UsageSource::Reported)
    );
    let fine = b"data: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\",\"error\":null,\"usage\":null}}\n\n";
    assert_eq!(count_stream(&[fine]), Accounting::default());
}

#[test]
fn continuous_usage_keeps_the_last_report() {
    let stream = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":6,\"completion_tokens\":1}}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n\n";
    let acc = count_stream(&[stream]);
    assert_eq!(acc.usage, Usage { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });
    assert_eq!(acc.source, UsageSource::Reported);
}

#[test]
fn a_huge_chunk_is_read_without_being_held() {
    let logprobs = "{\"token\":\"x\",\"logprob\":-0.5},".repeat(100_000);
    let chunk = format!("data: {{\"choices\":[{{\"index\":0,\"text\":\"a\",\"prompt_logprobs\":[{logprobs}null]}}],\"usage\":{{\"prompt_tokens\":9,\"total_tokens\":10,\"completion_tokens\":1}}}}\n\ndata: [DONE]\n\n");
    assert!(chunk.len() > 2 << 20);
    let mut acc = StreamAccounting::default();
    for piece in chunk.as_bytes().chunks(16 * 1024) {
        acc.feed(piece);
    }
    let out = acc.finish();
    assert_eq!(out.usage, Usage { prompt_tokens: 9, completion_tokens: 1, total_tokens: 10 });
    assert_eq!(out.source, UsageSource::Reported);
}

fn count_body(body: &[u8], chunk: usize) -> Accounting {
    let mut acc = BodyAccounting::new();
    for piece in body.chunks(chunk.max(1)) {
        acc.feed(piece);
    }
    acc.finish()
}

#[test]
fn recorded_bodies_report_their_usage() {
    let chat = fixture!("vllm-chat.json");
    let acc = count_body(chat, 7);
    assert_eq!(acc.usage, Usage { prompt_tokens: 12, completion_tokens: 100, total_tokens: 112 });
    assert_eq!(acc.source, UsageSource::Reported);
    for body in [&fixture!("vllm-completions.json")[..], &fixture!("vllm-embeddings.json")[..]] {
        let expected: serde_json::Value = serde_json::from_slice(body).unwrap();
        for cut in 1..=body.len().min(400) {
            let acc = count_body(body, cut);
            assert_eq!(
                acc.usage.prompt_tokens,
                expected["usage"]["prompt_tokens"].as_u64().unwrap()
            );
            assert_eq!(acc.usage.total_tokens, expected["usage"]["total_tokens"].as_u64().unwrap());
        }
    }
}

#[test]
fn a_small_body_counts_the_same_at_every_split() {
    let body = "{\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\"text\":\"a \\\"usage\\\":{} é 你好\",\"usage\":{\"prompt_tokens\":99}}],\"us\\u0061ge\":{\"prompt_tokens\":3,\"total_tokens\":10,\"completion_tokens\":7,\"prompt_tokens_details\":null}}";
    let body = body.as_bytes();
    for cut in 0..=body.len() {
        let (a, b) = body.split_at(cut);
        let mut acc = BodyAccounting::new();
        acc.feed(a);
        acc.feed(b);
        assert_eq!(
            acc.finish(),
            Accounting::reported(
                Usage { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 },
                None
            ),
            "split at {cut}"
        );
    }
}

#[test]
fn recorded_error_body_is_an_error_without_usage() {
    let acc = count_body(fixture!("vllm-error.json"), 5);
    assert_eq!(acc.error.unwrap().kind, "BadRequestError");
    assert_eq!(acc.source, UsageSource::None);
    let flat = count_body(
        br#"{"object":"error","message":"m","type":"NotFoundError","param":null,"code":404}"#,
        3,
    );
    assert_eq!(flat.error.unwrap().kind, "NotFoundError");
}

/// A non-streamed reply of about `size` bytes: `logprobs` before its `usage` and, as vLLM writes
/// them when asked for, `prompt_logprobs` after it (so its tail does not hold the usage).
fn huge_body(size: usize) -> String {
    let entry = r#"{"token":"é\"x","logprob":-0.25,"bytes":[195,169,34,120],"top_logprobs":[{"token":"y","logprob":-1.5,"bytes":[121]}]},"#;
    let prompt_entry = r#"{"123":{"logprob":-2.5,"rank":1,"decoded_token":"}]\"usage\":{"}},"#;
    let mut body = String::from(
        r#"{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"hi","logprobs":{"content":["#,
    );
    while body.len() < size / 2 {
        body.push_str(entry);
    }
    body.push_str(r#"{"token":"z","logprob":0}]},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"total_tokens":10,"completion_tokens":7},"prompt_logprobs":[null,"#);
    while body.len() < size {
        body.push_str(prompt_entry);
    }
    body.push_str(r#"null],"kv_transfer_params":null}"#);
    body
}

#[test]
fn a_20_mib_body_with_logprobs_around_its_usage_counts_exactly() {
    let body = huge_body(20 << 20);
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok());
    for piece in [16 * 1024, 1_000_003] {
        let out = count_body(body.as_bytes(), piece);
        assert_eq!(
            out.usage,
            Usage { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 },
            "pieces of {piece}"
        );
        assert_eq!(out.source, UsageSource::Reported);
    }
}

#[test]
fn a_body_cut_off_keeps_the_usage_it_had_read() {
    let body = br#"{"usage":{"prompt_tokens":3,"total_tokens":10,"completion_tokens":7},"choices":[{"text":"and more"#;
    assert_eq!(count_body(body, 4).usage.completion_tokens, 7);
    assert_eq!(
        count_body(&body[..20], 4).source,
        UsageSource::None,
        "a usage read half is not a usage"
    );
}

#[test]
fn garbage_counts_nothing_and_never_fails() {
    assert_eq!(count_body(b"<html>oops", 1).source, UsageSource::None);
    assert_eq!(count_body(b"\x1f\x8b\x08\x00\xff\xff{\"usage\"", 1).source, UsageSource::None);
    assert_eq!(count_stream(&[b"data: {not json\n\ndata: \xff\xfe\n\n"]).source, UsageSource::None);
    assert_eq!(count_body(br#"{"usage":"lots"}"#, 1).source, UsageSource::None);
    assert_eq!(count_body(br#"{"usage":{"prompt_tokens":-1}}"#, 1).source, UsageSource::None);
}
