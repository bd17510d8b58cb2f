//! Faults over a real connection: a stream cut after its first frames (the client reads them,
//! then a broken body, and only their tokens are counted), a request never answered (but
//! recorded), a stream that stops sending, requests held until let go, replies past
//! `max_tokens`, a caller going away mid-stream noted; and vLLM's behaviour again once the fault
//! is cleared.

use std::time::Duration;

use futures::StreamExt;
use mock_vllm::{Fault, MockConfig, MockState};
use serde_json::json;

const MODEL: &str = "test-model";

/// A mock serving [`MODEL`] on 127.0.0.1; its base URL and state. It stops with the runtime.
async fn serve() -> (String, MockState) {
    let state =
        MockState::new(MockConfig { models: vec![MODEL.to_owned()], ..MockConfig::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mock_vllm::serve(listener, state.clone(), std::future::pending()));
    (url, state)
}

fn streamed_chat(max_tokens: u32) -> serde_json::Value {
    json!({"model": MODEL, "stream": true, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}]})
}

/// Reads a body to its end or its first error: the bytes read, and whether it broke.
async fn read_body(resp: reqwest::Response) -> (Vec<u8>, bool) {
    let mut body = resp.bytes_stream();
    let mut read = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => read.extend_from_slice(&bytes),
            Err(_) => return (read, true),
        }
    }
    (read, false)
}

fn events(body: &[u8]) -> usize {
    String::from_utf8_lossy(body).matches("data: ").count()
}

#[tokio::test]
async fn a_cut_stream_breaks_after_its_first_frames_and_counts_only_their_tokens() {
    let (url, state) = serve().await;
    state.set_fault(Fault::ResetAfter { frames: 3 });
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&streamed_chat(10))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (body, broke) = read_body(resp).await;
    assert!(broke, "the body ends in an error, not in a clean end");
    assert_eq!(events(&body), 3, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("[DONE]"));
    // The role chunk, then two tokens.
    assert_eq!(state.token_totals().1, 2);

    state.set_fault(Fault::None);
    let resp = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&streamed_chat(10))
        .send()
        .await
        .unwrap();
    let (body, broke) = read_body(resp).await;
    assert!(!broke);
    assert!(String::from_utf8_lossy(&body).ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn a_stalled_request_is_recorded_and_never_answered() {
    let (url, state) = serve().await;
    state.set_fault(Fault::StallBeforeHeaders);
    let client = reqwest::Client::new();
    let send = client
        .post(format!("{url}/v1/completions"))
        .json(&json!({"model": MODEL, "prompt": "hi"}))
        .send();
    // No answer ever comes; the wait only bounds the test.
    assert!(tokio::time::timeout(Duration::from_millis(500), send).await.is_err());
    assert_eq!(state.seen().len(), 1, "recorded before the stall");
    // Only POSTs stall.
    let models = client.get(format!("{url}/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
}

#[tokio::test]
async fn a_stalled_stream_sends_its_first_frames_then_nothing() {
    let (url, state) = serve().await;
    state.set_fault(Fault::StallAfter { frames: 2 });
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&streamed_chat(10))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut read = Vec::new();
    while events(&read) < 2 {
        read.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    // Nothing more comes; the wait only bounds the test.
    assert!(tokio::time::timeout(Duration::from_millis(500), body.next()).await.is_err());
    assert_eq!(events(&read), 2);
}

#[tokio::test]
async fn held_requests_wait_until_let_go_then_are_answered() {
    let (url, state) = serve().await;
    state.set_fault(Fault::HoldBeforeHeaders);
    let client = reqwest::Client::new();
    let sends: Vec<_> = (0..3)
        .map(|_| {
            let request = client
                .post(format!("{url}/v1/chat/completions"))
                .json(&json!({"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}));
            tokio::spawn(request.send())
        })
        .collect();
    while state.seen().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sends.iter().all(|s| !s.is_finished()), "held while the fault is set");
    state.set_fault(Fault::None);
    for send in sends {
        let reply: serde_json::Value = send.await.unwrap().unwrap().json().await.unwrap();
        assert_eq!(reply["usage"]["completion_tokens"], 2);
    }
}

#[tokio::test]
async fn an_overrunning_upstream_generates_past_max_tokens() {
    let (url, state) = serve().await;
    state.set_fault(Fault::IgnoreMaxTokens { tokens: 30 });
    let client = reqwest::Client::new();
    let reply: serde_json::Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["usage"]["completion_tokens"], 30);
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    let mut body = streamed_chat(5);
    body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let resp = client.post(format!("{url}/v1/chat/completions")).json(&body).send().await.unwrap();
    let (read, broke) = read_body(resp).await;
    assert!(!broke);
    let text = String::from_utf8_lossy(&read);
    let usages: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .map(|c| c["usage"]["completion_tokens"].clone())
        .collect();
    assert!(usages.iter().all(|u| u.is_u64()), "usage on every chunk: {text}");
    assert_eq!(usages.last().unwrap(), 30);
    assert_eq!(state.token_totals().1, 60);
}

#[tokio::test]
async fn a_caller_that_goes_away_mid_stream_is_noted_with_the_tokens_sent() {
    let (url, state) = serve().await;
    state.set_token_delay(Duration::from_millis(20));
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .json(&streamed_chat(1000))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut read = Vec::new();
    while events(&read) < 4 {
        read.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    drop(body);
    let mut waited = 0;
    while state.abandoned_streams().is_empty() && waited < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let abandoned = state.abandoned_streams();
    assert_eq!(abandoned.len(), 1);
    assert!((3..1000).contains(&abandoned[0]), "{abandoned:?}");

    // A stream read to its end, or cut by the mock itself, is not noted.
    state.set_token_delay(Duration::ZERO);
    let client = reqwest::Client::new();
    for fault in [Fault::None, Fault::ResetAfter { frames: 2 }] {
        state.set_fault(fault);
        let resp = client
            .post(format!("{url}/v1/chat/completions"))
            .json(&streamed_chat(3))
            .send()
            .await
            .unwrap();
        read_body(resp).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state.abandoned_streams().len(), 1);
}
