//! What the mock records, which models it serves, and what it refuses.

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{get, post, post_raw, send, state, state_with, MODEL};
use mock_vllm::MockConfig;
use serde_json::json;

#[tokio::test]
async fn every_request_is_recorded_as_received() {
    let state = state();
    let body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "你好"}]}).to_string();
    let request = Request::post("/v1/chat/completions?trace=1")
        .header("Content-Type", "application/json")
        .header("X-Request-Id", "abc")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_eq!(send(&state, request).await.status, 200);
    get(&state, "/nowhere").await;

    let seen = state.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/v1/chat/completions?trace=1");
    assert_eq!(seen[0].header("x-request-id"), Some("abc"));
    assert!(seen[0].headers.contains(&("content-type".to_owned(), "application/json".to_owned())));
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!((seen[1].method.as_str(), seen[1].path.as_str()), ("GET", "/nowhere"));

    state.clear_seen();
    assert!(state.seen().is_empty());
    assert!(state.clone().seen().is_empty(), "clones share what was seen");
}

#[tokio::test]
async fn only_configured_models_are_served() {
    let state = state();
    for path in ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"] {
        let body = json!({"model": "other", "messages": [], "prompt": "x", "input": "x"});
        let reply = post(&state, path, &body).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.json()["error"]["message"], "The model `other` does not exist.");
    }
    let body = json!({"messages": [{"role": "user", "content": "no model named"}]});
    let reply = post(&state, "/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["model"], MODEL, "no model means the served one");
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let state = state();
    let cases = [
        ("/v1/chat/completions", "{not json".to_owned()),
        ("/v1/chat/completions", json!({"model": MODEL}).to_string()),
        ("/v1/chat/completions", json!({"model": MODEL, "messages": "hi"}).to_string()),
        ("/v1/completions", json!({"model": MODEL}).to_string()),
        ("/v1/completions", json!({"model": MODEL, "prompt": "x", "max_tokens": 0}).to_string()),
        ("/v1/embeddings", json!({"model": MODEL}).to_string()),
    ];
    for (path, body) in cases {
        let reply = post_raw(&state, path, body.clone()).await;
        assert_eq!(reply.status, 400, "{path} {body}");
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "BadRequestError", "{body}");
        assert_eq!(error["code"], 400);
        assert_eq!(error["param"], json!(null));
    }
}

#[tokio::test]
async fn prompts_over_the_context_window_are_400() {
    let state = state_with(MockConfig { max_model_len: 10, ..MockConfig::default() });
    let long = "word ".repeat(10);
    let reply = post(&state, "/v1/completions", &json!({"model": MODEL, "prompt": long})).await;
    assert_eq!(reply.status, 400);
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("maximum context length is 10 tokens"), "{message}");

    let reply = post(
        &state,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "two words", "max_tokens": 9}),
    )
    .await;
    assert_eq!(reply.status, 400, "2 + 9 > 10");
    let reply = post(
        &state,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "two words", "max_tokens": 8}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["usage"]["total_tokens"], 10);

    let messages = json!([{"role": "user", "content": long}]);
    let reply =
        post(&state, "/v1/chat/completions", &json!({"model": MODEL, "messages": messages})).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn routes_and_methods_that_do_not_exist_get_fastapi_bodies() {
    let state = state();
    let reply = get(&state, "/v2/nothing").await;
    assert_eq!((reply.status.as_u16(), reply.json()), (404, json!({"detail": "Not Found"})));
    let reply = get(&state, "/v1/chat/completions").await;
    assert_eq!(
        (reply.status.as_u16(), reply.json()),
        (405, json!({"detail": "Method Not Allowed"}))
    );
    assert_eq!(get(&state, "/health").await.status, 200);
}

#[tokio::test]
async fn embeddings_take_batches_and_base64() {
    let state = state();
    let body = json!({"model": MODEL, "input": ["one", "two words"], "encoding_format": "base64", "dimensions": 4});
    let reply = post(&state, "/v1/embeddings", &body).await.json();
    assert_eq!(reply["data"].as_array().unwrap().len(), 2);
    assert_eq!(reply["data"][1]["index"], 1);
    assert_eq!(reply["data"][0]["embedding"].as_str().unwrap().len(), 24, "16 bytes in base64");
    assert_eq!(
        reply["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3, "completion_tokens": 0, "prompt_tokens_details": null})
    );
}

#[tokio::test]
async fn the_headers_a_gateway_sends_are_recorded() {
    let state = state();
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let request = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("Authorization", "Bearer vllm-key")
        .header("accept-encoding", "gzip")
        .header("accept-encoding", "br")
        .body(Body::from(body))
        .unwrap();
    let reply = send(&state, request).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers.get("content-encoding").is_none(), "vLLM does not compress replies");
    let seen = state.seen().pop().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer vllm-key"));
    assert_eq!(seen.header("Accept-Encoding"), Some("gzip"));
    assert_eq!(seen.header_values("accept-encoding"), ["gzip", "br"]);
    assert!(seen.header_values("x-missing").is_empty());
}
