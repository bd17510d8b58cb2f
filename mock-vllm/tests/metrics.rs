//! `GET /metrics`: vLLM's token counters, in prometheus_client's text format, counting what the
//! mock served (prompts as the engine prefills them, tokens as they are produced).

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{get, post, send, state_with, MODEL};
use futures::StreamExt;
use mock_vllm::{MockConfig, MockState};
use serde_json::json;

fn two_models() -> MockState {
    MockState::new(MockConfig {
        models: vec![MODEL.to_owned(), "other-model".to_owned()],
        ..MockConfig::default()
    })
}

/// The value of `name{labels}` in an exposition.
fn sample(text: &str, name: &str, model: &str) -> Option<f64> {
    let prefix = format!("{name}{{engine=\"0\",model_name=\"{model}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn the_counters_are_listed_at_zero_in_prometheus_client_s_format() {
    let reply = get(&two_models(), "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    let text = reply.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.");
    assert_eq!(lines[1], "# TYPE vllm:prompt_tokens_total counter");
    assert_eq!(
        lines[2],
        format!("vllm:prompt_tokens_total{{engine=\"0\",model_name=\"{MODEL}\"}} 0.0")
    );
    assert_eq!(lines[3], "vllm:prompt_tokens_total{engine=\"0\",model_name=\"other-model\"} 0.0");
    assert_eq!(lines[5], "# TYPE vllm:prompt_tokens_created gauge");
    assert!(text.contains("# TYPE vllm:generation_tokens_total counter\n"));
    assert_eq!(sample(&text, "vllm:generation_tokens_total", "other-model"), Some(0.0));
    let created = sample(&text, "vllm:generation_tokens_created", MODEL).unwrap();
    assert!(created > 1.7e9, "Unix seconds: {created}");
    assert!(text.ends_with('\n'));
}

#[tokio::test]
async fn every_endpoint_counts_as_vllm_s_engine_does() {
    let state = two_models();
    let chat = json!({"model": MODEL, "n": 2, "max_tokens": 5, "messages": [{"role": "user", "content": "two words"}]});
    assert_eq!(post(&state, "/v1/chat/completions", &chat).await.status, 200);
    // n = 2: the prompt (3 tokens) is prefilled twice; 5 + 4 tokens generated.
    assert_eq!(state.token_totals(), (6, 9));
    let mut streamed = chat.clone();
    streamed["stream"] = json!("true");
    common::chunks(&post(&state, "/v1/chat/completions", &streamed).await);
    assert_eq!(state.token_totals(), (12, 18));
    let batch = json!({"model": "other-model", "prompt": ["a b", "c d e"], "max_tokens": 2});
    post(&state, "/v1/completions", &batch).await;
    let embeddings = json!({"model": "other-model", "input": ["one", "two three"]});
    post(&state, "/v1/embeddings", &embeddings).await;
    assert_eq!(state.model_token_totals("other-model"), Some((5 + 3, 4)));
    let responses = json!({"model": MODEL, "input": "hi", "max_output_tokens": 3, "stream": true});
    post(&state, "/v1/responses", &responses).await;
    assert_eq!(state.model_token_totals(MODEL), Some((14, 21)));
    assert_eq!(state.token_totals(), (22, 25));
    assert_eq!(state.model_token_totals("nope"), None);

    let text = get(&state, "/metrics").await.text();
    assert_eq!(sample(&text, "vllm:prompt_tokens_total", MODEL), Some(14.0));
    assert_eq!(sample(&text, "vllm:generation_tokens_total", MODEL), Some(21.0));
    assert_eq!(sample(&text, "vllm:prompt_tokens_total", "other-model"), Some(8.0));
    // Refused requests count nothing.
    post(&state, "/v1/chat/completions", &json!({"model": MODEL, "messages": [], "max_tokens": 0}))
        .await;
    assert_eq!(state.token_totals(), (22, 25));
}

#[tokio::test]
async fn large_counters_switch_to_go_s_exponent_form() {
    let state = state_with(MockConfig { max_model_len: 2_000_000, ..MockConfig::default() });
    let prompt = vec![1; 1_234_567];
    post(&state, "/v1/embeddings", &json!({"model": MODEL, "input": prompt})).await;
    let text = get(&state, "/metrics").await.text();
    let line =
        format!("vllm:prompt_tokens_total{{engine=\"0\",model_name=\"{MODEL}\"}} 1.234567e+06");
    assert!(text.lines().any(|l| l == line), "{text}");
}

/// Reads a gzip member of stored blocks (what the mock writes).
fn gunzip_stored(gz: &[u8]) -> Vec<u8> {
    assert_eq!(gz[..3], [0x1f, 0x8b, 8]);
    let (mut at, mut out) = (10, Vec::new());
    loop {
        let len = usize::from(u16::from_le_bytes([gz[at + 1], gz[at + 2]]));
        out.extend_from_slice(&gz[at + 5..at + 5 + len]);
        let last = gz[at] & 1 == 1;
        at += 5 + len;
        if last {
            break;
        }
    }
    assert_eq!(gz.len(), at + 8);
    out
}

#[tokio::test]
async fn metrics_are_gzipped_when_the_client_accepts_it() {
    let state = state_with(MockConfig::default());
    let plain = get(&state, "/metrics").await;
    let request = Request::get("/metrics")
        .header("accept-encoding", "deflate, gzip")
        .body(Body::empty())
        .unwrap();
    let gzipped = send(&state, request).await;
    assert_eq!(gzipped.headers["content-encoding"], "gzip");
    assert_eq!(gunzip_stored(&gzipped.body()), plain.body());
    assert!(plain.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn a_stream_the_client_leaves_counts_what_was_generated_until_then() {
    let state =
        state_with(MockConfig { token_delay: Duration::from_millis(20), ..MockConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mock_vllm::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    let body = json!({"model": MODEL, "stream": true, "n": 2, "max_tokens": 200,
                      "messages": [{"role": "user", "content": "hi"}]});
    let response = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let mut frames = 0;
    while frames < 12 {
        stream.next().await.unwrap().unwrap();
        frames += 1;
    }
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (prompt, generated) = state.token_totals();
    assert_eq!(prompt, 2 * 2, "the prompt, once per choice");
    assert!(generated >= 10, "the 2 role frames and 10 token frames were read: {generated}");
    assert!(generated < 30, "not the whole reply (399 tokens): {generated}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state.token_totals().1, generated, "nothing more after the client left");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn scrapes_are_not_recorded_as_api_requests() {
    let state = two_models();
    get(&state, "/metrics").await;
    assert!(state.seen().is_empty());
    post(&state, "/v1/completions", &json!({"model": MODEL, "prompt": "hi"})).await;
    assert_eq!(state.seen().len(), 1);
}

#[tokio::test]
async fn a_non_streamed_reply_comes_once_it_is_generated_at_the_configured_pace() {
    let state = MockState::new(MockConfig {
        models: vec![MODEL.to_owned()],
        token_delay: Duration::from_millis(20),
        ..MockConfig::default()
    });
    let started = std::time::Instant::now();
    let body = json!({"model": MODEL, "prompt": "hi", "max_tokens": 10});
    let reply = post(&state, "/v1/completions", &body).await;
    assert_eq!(reply.json()["usage"]["completion_tokens"], 10);
    // A lower bound only: the pause is the mock's own, not the machine's speed.
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
}
