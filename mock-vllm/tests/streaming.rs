//! Streamed replies: which usage they carry, how they end, how they are framed (token delay,
//! split seed), and that they say the same as the non-streamed reply.

mod common;

use std::time::{Duration, Instant};

use common::{chunk_kind, post, state, state_with, Reply, MODEL};
use futures::StreamExt;
use mock_vllm::{MockConfig, MockState};
use serde_json::{json, Value};

fn chat(max_tokens: Option<u32>, stream_options: Option<Value>) -> Value {
    let mut body = json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "你好, gateway"}]});
    if let Some(n) = max_tokens {
        body["max_tokens"] = n.into();
    }
    if let Some(options) = stream_options {
        body["stream_options"] = options;
    }
    body
}

/// The JSON chunks of a stream (without `[DONE]`, which must be last).
fn chunks(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200);
    let mut events = reply.events();
    assert_eq!(events.pop().as_deref(), Some("[DONE]"), "[DONE] last");
    events.iter().map(|e| serde_json::from_str(e).unwrap()).collect()
}

fn content_chunks(chunks: &[Value]) -> usize {
    chunks.iter().filter(|c| chunk_kind(c) == "content").count()
}

#[tokio::test]
async fn without_include_usage_there_is_no_usage_at_all() {
    for options in [
        None,
        Some(json!({"include_usage": false})),
        // vLLM's `include_usage` defaults to true only when `stream_options` is there.
        Some(json!({"include_usage": false, "continuous_usage_stats": true})),
    ] {
        let reply = post(&state(), "/v1/chat/completions", &chat(Some(5), options.clone())).await;
        let chunks = chunks(&reply);
        assert!(!reply.text().contains("usage"), "{options:?}: {}", reply.text());
        assert_eq!(chunks.len(), 1 + 5 + 1, "role, 5 tokens, finish");
        assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    }
}

#[tokio::test]
async fn include_usage_adds_one_usage_chunk_counting_the_content_chunks() {
    let reply = post(
        &state(),
        "/v1/chat/completions",
        &chat(Some(7), Some(json!({"include_usage": true}))),
    )
    .await;
    let chunks = chunks(&reply);
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
    assert_eq!(with_usage.len(), 1);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["id"], chunks[0]["id"]);
    let usage = &last["usage"];
    assert_eq!(usage["completion_tokens"], content_chunks(&chunks));
    assert_eq!(usage["completion_tokens"], 7);
    assert_eq!(usage["prompt_tokens"], 3, "one message of two words");
    assert_eq!(usage["total_tokens"], 10);
}

#[tokio::test]
async fn without_max_tokens_the_default_count_ends_with_stop() {
    let config = MockConfig { default_max_tokens: 9, ..MockConfig::default() };
    let reply = post(
        &state_with(config),
        "/v1/chat/completions",
        &chat(None, Some(json!({"include_usage": true}))),
    )
    .await;
    let chunks = chunks(&reply);
    assert_eq!(content_chunks(&chunks), 9);
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn continuous_usage_puts_a_running_usage_on_every_chunk() {
    let options = json!({"include_usage": true, "continuous_usage_stats": true});
    let chunks =
        chunks(&post(&state(), "/v1/chat/completions", &chat(Some(4), Some(options))).await);
    assert_eq!(chunks.len(), 1 + 4 + 1 + 1);
    let completion: Vec<u64> =
        chunks.iter().map(|c| c["usage"]["completion_tokens"].as_u64().unwrap()).collect();
    assert_eq!(completion, [0, 1, 2, 3, 4, 4, 4]);
    for chunk in &chunks {
        let usage = &chunk["usage"];
        assert_eq!(
            usage["total_tokens"],
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
    }
}

#[tokio::test]
async fn stream_options_without_stream_is_a_400() {
    for stream in [json!(false), json!(null)] {
        let body = json!({"model": MODEL, "stream": stream, "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "hi"}]});
        let reply = post(&state(), "/v1/chat/completions", &body).await;
        assert_eq!(reply.status, 400, "stream {stream}");
        assert_eq!(reply.json()["error"]["type"], "BadRequestError");
    }
}

#[tokio::test]
async fn the_streamed_text_is_the_non_streamed_text() {
    let streamed = chunks(&post(&state(), "/v1/chat/completions", &chat(Some(12), None)).await);
    let text: String =
        streamed.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let mut plain = chat(Some(12), None);
    plain.as_object_mut().unwrap().remove("stream");
    let reply = post(&state(), "/v1/chat/completions", &plain).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(text, mock_vllm::completion_text(12));
    assert_eq!(reply["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn completions_stream_one_text_chunk_per_token() {
    let body = json!({"model": MODEL, "prompt": "What is AWS ECS?", "max_tokens": 6, "stream": true,
                      "stream_options": {"include_usage": true}});
    let chunks = chunks(&post(&state(), "/v1/completions", &body).await);
    assert_eq!(chunks.len(), 6 + 1 + 1, "tokens, finish, usage");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["text"].as_str()).collect();
    assert_eq!(text, mock_vllm::completion_text(6));
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "length");
    let usage = &chunks[7]["usage"];
    assert_eq!(
        (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()),
        (Some(4), Some(6))
    );
}

#[tokio::test]
async fn split_seed_recuts_the_same_bytes() {
    let body = chat(Some(20), Some(json!({"include_usage": true})));
    let whole = post(&state(), "/v1/chat/completions", &body).await;
    let split = post(
        &state_with(MockConfig { split_seed: Some(3), ..MockConfig::default() }),
        "/v1/chat/completions",
        &body,
    )
    .await;
    assert_eq!(whole.frames.len(), 1 + 20 + 1 + 1 + 1, "one frame per event");
    assert!(split.frames.len() > whole.frames.len());
    assert_eq!(normalize(&split.text()), normalize(&whole.text()));
}

#[tokio::test]
async fn some_split_seeds_cut_inside_a_character() {
    let body = chat(Some(16), None);
    let mut cut_inside = false;
    for seed in 0..16 {
        let reply = post(
            &state_with(MockConfig { split_seed: Some(seed), ..MockConfig::default() }),
            "/v1/chat/completions",
            &body,
        )
        .await;
        cut_inside |= reply.frames.iter().any(|f| std::str::from_utf8(f).is_err());
        assert!(reply.text().ends_with("data: [DONE]\n\n"));
    }
    assert!(cut_inside);
}

/// The stream with its id and timestamp blanked out.
fn normalize(text: &str) -> String {
    let first: Value = serde_json::from_str(&common::events(text)[0]).unwrap();
    let id = first["id"].as_str().unwrap();
    let created = format!("\"created\":{}", first["created"]);
    text.replace(id, "ID").replace(&created, "\"created\":0")
}

/// A 5-token stream over real TCP from `state`: its frames and how long it took.
async fn five_token_frames(state: MockState) -> (Vec<bytes::Bytes>, Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(mock_vllm::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    let response =
        reqwest::Client::new().post(url).json(&chat(Some(5), None)).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    let frames: Vec<bytes::Bytes> = response.bytes_stream().map(Result::unwrap).collect().await;
    let elapsed = started.elapsed();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    (frames, elapsed)
}

fn assert_paced(frames: &[bytes::Bytes], elapsed: Duration, delay: Duration) {
    assert_eq!(frames.len(), 1 + 5 + 1 + 1, "role, tokens, finish, [DONE], one frame each");
    assert!(frames.iter().all(|f| f.starts_with(b"data: ") && f.ends_with(b"\n\n")));
    assert!(elapsed >= delay * 7, "7 pauses between 8 frames, took {elapsed:?}");
}

#[tokio::test]
async fn token_delay_sends_each_event_as_its_own_frame_over_tcp() {
    let delay = Duration::from_millis(30);
    let state = state_with(MockConfig { token_delay: delay, ..MockConfig::default() });
    let (frames, elapsed) = five_token_frames(state).await;
    assert_paced(&frames, elapsed, delay);
}

#[tokio::test]
async fn a_running_mock_can_be_paced_and_let_go_again() {
    let state = state_with(MockConfig::default());
    assert_eq!(state.token_delay(), Duration::ZERO);
    let delay = Duration::from_millis(20);
    state.set_token_delay(delay);
    let (frames, elapsed) = five_token_frames(state.clone()).await;
    assert_paced(&frames, elapsed, delay);
    state.set_token_delay(Duration::ZERO);
    assert_eq!(state.token_delay(), Duration::ZERO);
}

#[tokio::test]
async fn stream_and_its_options_are_lax_booleans_as_in_vllm() {
    for stream in [json!("true"), json!(1), json!("yes"), json!("on"), json!("1"), json!("True")] {
        for path in ["/v1/chat/completions", "/v1/completions"] {
            let body = json!({"model": MODEL, "stream": stream, "max_tokens": 3, "prompt": "a b",
                              "messages": [{"role": "user", "content": "hi"}],
                              "stream_options": {"include_usage": "yes", "continuous_usage_stats": 1}});
            let reply = post(&state(), path, &body).await;
            assert_eq!(reply.content_type(), "text/event-stream; charset=utf-8", "{path} {stream}");
            let chunks = chunks(&reply);
            assert!(
                chunks.iter().all(|c| c["usage"].is_object()),
                "continuous usage: {path} {stream}"
            );
            assert_eq!(chunks.last().unwrap()["choices"], json!([]));
        }
    }
}

#[tokio::test]
async fn stream_options_are_checked_on_the_raw_body_as_vllm_does() {
    let body = |stream: Value, options: Value| {
        json!({"model": MODEL, "stream": stream, "stream_options": options, "max_tokens": 2,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    // A truthy string passes vLLM's raw check, then reads as False: a plain JSON reply.
    for stream in [json!("false"), json!("0"), json!("no")] {
        let reply =
            post(&state(), "/v1/chat/completions", &body(stream, json!({"include_usage": true})))
                .await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.json()["object"], "chat.completion");
    }
    // `{}` is falsy: no 400 even without stream.
    let reply = post(&state(), "/v1/chat/completions", &body(json!(false), json!({}))).await;
    assert_eq!(reply.status, 200);
    for (stream, options) in [
        (json!(0), json!({"include_usage": true})),
        (json!(true), json!("yes")),
        (json!("maybe"), json!(null)),
        (json!(true), json!({"include_usage": "sometimes"})),
    ] {
        let reply = post(
            &state(),
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "x", "stream": stream, "stream_options": options}),
        )
        .await;
        assert_eq!(reply.status, 400, "{stream} {options}");
        assert_eq!(reply.json()["error"]["type"], "BadRequestError");
    }
}
