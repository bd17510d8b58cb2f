//! A limited caller's exchange: `max_tokens` lowered to the grant, the rate headers, a refusal,
//! and a stream cut off at the event that passes its grant.

use super::*;
use crate::feed::limits::{Caps, LimitKey, LimitKind, Limits, Subject};
use crate::limits::{Grant, LimitRefusal, Standing};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn limited_exchange(host: &mut FakeHost, body: &str) -> Exchange {
    let (mut ex, step) =
        start(host, &head("POST", "/v1/chat/completions", Some("Bearer sk-live-good")));
    assert_eq!(step, Step::ReadBody);
    let limits =
        Limits { all: Caps { tokens_per_day: Some(1000), ..Caps::default() }, ..Limits::default() };
    ex.limit_caller(Subject::App(7), Some(Rc::new(limits)));
    assert_eq!(ex.on_request_body(host, body.as_bytes()), Step::Continue);
    ex
}

fn grant(tokens: u64, prompt: u64) -> Grant {
    let key = LimitKey { subject: Subject::App(7), model: None, kind: LimitKind::TokensPerDay };
    Grant {
        holds: vec![],
        tokens: Some(tokens),
        prompt_tokens: prompt,
        standing: vec![Standing {
            kind: key.kind,
            limit: 1000,
            remaining: 400,
            resets_in_ms: 3_600_000,
        }],
    }
}

#[test]
fn the_ask_estimates_the_prompt_and_takes_max_tokens_times_n() {
    let mut host = FakeHost::default();
    let body = r#"{"model":"model-a","max_tokens":100,"n":2,"messages":[]}"#;
    let ex = limited_exchange(&mut host, body);
    let ask = ex.limit_ask().unwrap();
    assert_eq!((ask.prompt_tokens, ask.completion_tokens), (body.len() as u64 / 4 + 1, 200));
    assert_eq!(ask.model, "model-a");
    let mut host = FakeHost::default();
    let ex = limited_exchange(&mut host, r#"{"model":"model-a"}"#);
    assert_eq!(
        ex.limit_ask().unwrap().completion_tokens,
        crate::config::DEFAULT_MAX_TOKENS,
        "the default"
    );
}

#[test]
fn max_tokens_is_lowered_to_the_grant_and_set_when_absent() {
    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a","max_tokens":500}"#);
    ex.admitted(&mut host, grant(70, 10));
    let body: serde_json::Value = serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["max_tokens"], 60);
    assert_eq!(
        host.headers["content-length"].as_deref(),
        Some(&*host.body.as_ref().unwrap().len().to_string())
    );
    assert!(ex
        .rate_headers()
        .iter()
        .any(|(n, v)| *n == "x-ratelimit-remaining-tokens" && v == "400"));

    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a","max_tokens":5}"#);
    ex.admitted(&mut host, grant(15, 10));
    assert!(host.body.is_none(), "a grant of all it asked for leaves the body alone");

    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a"}"#);
    ex.admitted(&mut host, grant(10 + crate::config::DEFAULT_MAX_TOKENS, 10));
    let body: serde_json::Value = serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
    assert_eq!(
        body["max_tokens"],
        crate::config::DEFAULT_MAX_TOKENS,
        "the upstream is never left uncapped"
    );
}

#[test]
fn a_refusal_is_recorded_with_its_limit() {
    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a"}"#);
    let refusal = LimitRefusal {
        key: LimitKey { subject: Subject::App(7), model: None, kind: LimitKind::RequestsPerMinute },
        limit: 10,
        needed: 1,
        remaining: 0,
        retry_after_secs: 12,
        standing: vec![],
    };
    let error = ex.limit_refused(refusal);
    assert_eq!(
        (error.status(), error.code(), error.retry_after_secs()),
        (429, "rate_limit_exceeded", Some(12))
    );
    let record = ex.finish(1_001, Ending::Complete).unwrap();
    assert_eq!((record.status, record.limited.as_deref()), (429, Some("requests_per_minute")));
}

fn chunk(completion: u64) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"x\"}}}}],\"usage\":{{\"prompt_tokens\":10,\"completion_tokens\":{completion},\"total_tokens\":{}}}}}\n\n",
        10 + completion
    )
}

#[test]
fn a_stream_past_its_grant_ends_with_an_error_event_and_is_reset() {
    let mut host = FakeHost::default();
    let mut ex =
        limited_exchange(&mut host, r#"{"model":"model-a","stream":true,"max_tokens":500}"#);
    ex.admitted(&mut host, grant(13, 10));
    ex.on_response_headers(200, Some("text/event-stream"), None);
    // Tokens 1 and 2 pass; the third is within the grant of 3; the fourth passes it, split
    // across two chunks.
    let mut seen = Vec::new();
    let whole: String = (1..=4).map(chunk).collect();
    let (a, b) = whole.split_at(whole.len() - 7);
    seen.extend(
        ex.on_response_body(a.as_bytes(), false, 1_002).unwrap_or_else(|| a.as_bytes().to_vec()),
    );
    assert!(!ex.take_reset());
    seen.extend(
        ex.on_response_body(b.as_bytes(), false, 1_003).unwrap_or_else(|| b.as_bytes().to_vec()),
    );
    let text = String::from_utf8(seen).unwrap();
    // The caller did not ask for usage: the running usage is taken off each of the four events.
    let event = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
    assert!(text.starts_with(&event.repeat(4)), "{text}");
    assert_eq!(text.matches("data: ").count(), 6, "{text}");
    let error = text.rsplit("data: ").nth(1).unwrap();
    let error: serde_json::Value = serde_json::from_str(error.trim()).unwrap();
    assert_eq!(error["error"]["code"], "insufficient_quota");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(!ex.take_reset(), "nothing more came yet");
    assert_eq!(ex.on_response_body(chunk(5).as_bytes(), false, 1_004), Some(Vec::new()), "dropped");
    assert!(ex.take_reset());
    assert!(!ex.take_reset(), "once");
    let record = ex.finish(1_005, Ending::Cut).unwrap();
    assert!(record.cut_off);
    assert_eq!(record.limited.as_deref(), Some("tokens_per_day"));
    assert_eq!(record.usage.completion_tokens, 5, "what the upstream generated is charged");
    let (_, used, failed) = ex.take_grant().unwrap();
    assert_eq!((used, failed), (Some(15), false));
}

#[test]
fn a_stream_within_its_grant_passes_untouched() {
    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a","stream":true,"max_tokens":5}"#);
    ex.admitted(&mut host, grant(15, 10));
    ex.on_response_headers(200, Some("text/event-stream"), None);
    let whole: String = (1..=5).map(chunk).collect::<String>() + "data: [DONE]\n\n";
    let out =
        String::from_utf8(ex.on_response_body(whole.as_bytes(), true, 1_002).unwrap()).unwrap();
    assert_eq!(out.matches("data: ").count(), 6, "{out}");
    assert!(!out.contains("error") && !ex.take_reset());
    assert!(!ex.finish(1_003, Ending::Complete).unwrap().cut_off);
}

#[test]
fn only_the_cap_the_upstream_honours_counts_and_a_doubtful_one_is_overwritten() {
    let mut host = FakeHost::default();
    // vLLM's chat takes max_completion_tokens over max_tokens: the ask is 40, not 1.
    let mut ex = limited_exchange(
        &mut host,
        r#"{"model":"model-a","max_tokens":1,"max_completion_tokens":40}"#,
    );
    assert_eq!(ex.limit_ask().unwrap().completion_tokens, 40);
    ex.admitted(&mut host, grant(50, 10));
    assert!(host.body.is_none(), "granted all it asked for, capped as the upstream reads it");

    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a","max_output_tokens":1}"#);
    ex.admitted(&mut host, grant(30, 10));
    let body: serde_json::Value = serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
    assert_eq!(
        body["max_tokens"], 20,
        "a member chat does not read caps nothing: the grant is written"
    );

    let mut host = FakeHost::default();
    let mut ex = limited_exchange(&mut host, r#"{"model":"model-a","max_tokens":"9"}"#);
    ex.admitted(&mut host, grant(30, 10));
    let body: serde_json::Value = serde_json::from_slice(host.body.as_ref().unwrap()).unwrap();
    assert_eq!(body["max_tokens"], 20, "a string the upstream may read as a number is overwritten");
}

#[test]
fn a_prompt_larger_than_its_estimate_asks_for_more_or_is_cut_off() {
    let mut host = FakeHost::default();
    let mut ex =
        limited_exchange(&mut host, r#"{"model":"model-a","stream":true,"max_tokens":500}"#);
    ex.admitted(&mut host, grant(13, 5));
    ex.on_response_headers(200, Some("text/event-stream"), None);
    // The first chunk says the prompt was 10 tokens, not 5.
    let mut out = ex.on_response_body(chunk(1).as_bytes(), false, 1_002).unwrap();
    assert_eq!(ex.grant_overrun(), Some(5));
    ex.cut_off(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"error\"") && text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(ex.grant_overrun(), None, "once cut, nothing more is asked");
}
