//! Usage accounting over the recorded real streams and bodies in `shared/fixtures`, split at
//! every byte boundary.

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/", $name))
    };
}

const VLLM_STREAM: &[u8] = fixture!("vllm-chat-stream-include-usage.sse");
const OPENAI_STREAM: &[u8] = fixture!("openai-chat-stream-usage.sse");
const OPENAI_TOOL_STREAM: &[u8] = fixture!("openai-chat-stream-tool-call-usage.sse");

fn count_stream(chunks: &[&[u8]]) -> Accounting {
    let mut acc = StreamAccounting::default();
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
        .filter(|l| *l != "[DONE]")
        .last()
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
fn an_error_mid_stream_is_seen_in_both_shapes() {
    let nested = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}\n\ndata: [DONE]\n\n";
    let acc = count_stream(&[nested]);
    assert_eq!(acc.error.unwrap().kind, "InternalServerError");
    assert_eq!(acc.source, UsageSource::Estimated);

    let flat = b"data: {\"object\":\"error\",\"message\":\"m\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}\n\n";
    assert_eq!(count_stream(&[flat]).error.unwrap().kind, "BadRequestError");
}

#[test]
fn continuous_usage_keeps_the_last_report() {
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":6,\"completion_tokens\":1}}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n\n";
    let acc = count_stream(&[stream]);
    assert_eq!(acc.usage, Usage { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });
    assert_eq!(acc.source, UsageSource::Reported);
}

fn count_body(body: &[u8], limit: usize, chunk: usize) -> Accounting {
    let mut acc = BodyAccounting::new(limit);
    for piece in body.chunks(chunk.max(1)) {
        acc.feed(piece);
    }
    acc.finish()
}

#[test]
fn recorded_bodies_report_their_usage() {
    let chat = fixture!("vllm-chat.json");
    let acc = count_body(chat, 1 << 20, 7);
    assert_eq!(acc.usage, Usage { prompt_tokens: 12, completion_tokens: 100, total_tokens: 112 });
    assert_eq!(acc.source, UsageSource::Reported);
    for name in [&fixture!("vllm-completions.json")[..], &fixture!("vllm-embeddings.json")[..]] {
        let expected: serde_json::Value = serde_json::from_slice(name).unwrap();
        let acc = count_body(name, 1 << 20, 3);
        assert_eq!(acc.usage.prompt_tokens, expected["usage"]["prompt_tokens"].as_u64().unwrap());
        assert_eq!(acc.usage.total_tokens, expected["usage"]["total_tokens"].as_u64().unwrap());
    }
}

#[test]
fn recorded_error_body_is_an_error_without_usage() {
    let acc = count_body(fixture!("vllm-error.json"), 1 << 20, 5);
    assert_eq!(acc.error.unwrap().kind, "BadRequestError");
    assert_eq!(acc.source, UsageSource::None);
}

#[test]
fn a_huge_body_keeps_only_its_tail_and_still_counts() {
    let filler = "x".repeat(3 * 1024 * 1024);
    let body = format!(
        "{{\"choices\":[{{\"text\":\"{filler}\"}}],\"usage\":{{\"prompt_tokens\":3,\"total_tokens\":10,\"completion_tokens\":7}}}}"
    );
    let mut acc = BodyAccounting::new(1024 * 1024);
    for piece in body.as_bytes().chunks(16 * 1024) {
        acc.feed(piece);
        assert!(acc.kept.len() <= 1024 * 1024 + 16 * 1024);
    }
    let out = acc.finish();
    assert_eq!(out.usage, Usage { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 });
}

#[test]
fn garbage_counts_nothing_and_never_fails() {
    assert_eq!(count_body(b"<html>oops", 100, 1).source, UsageSource::None);
    assert_eq!(count_stream(&[b"data: {not json\n\ndata: \xff\xfe\n\n"]).source, UsageSource::None);
    assert_eq!(read_document(b"[1,2]"), None);
}
