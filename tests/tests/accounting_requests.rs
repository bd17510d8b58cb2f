//! What a client that wants free tokens tries with the request itself, through the real Envoy:
//! replaying a request id, a `stream` that is not a boolean, paths the gateway does not account
//! for (and tricks to reach them), and compression that would blind the counter.

mod common;

use serde_json::{json, Value};

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 5})
}

#[tokio::test]
async fn a_replayed_request_id_never_drops_or_merges_a_row() {
    let (stack, app) = common::stack_with_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = stack
            .gateway_post("/v1/chat/completions", &app.api_key)
            .header("x-request-id", "replayed-id")
            .json(&chat("model-a"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, "replayed-id", "the gateway's id, not the client's");
        // The upstream sees the gateway's id too; the client's travels aside.
        let seen = stack.mock("model-a").state.seen().pop().unwrap();
        assert_eq!(seen.header("x-request-id"), Some(id.as_str()));
        assert_eq!(seen.header("x-client-request-id"), Some("replayed-id"));
        ids.push(id);
    }
    let logged = gateway_e2e::eventually(
        "the rows of the three requests",
        std::time::Duration::from_secs(10),
        || async {
            let logged: Vec<Value> = stack
                .logs()
                .await?
                .into_iter()
                .filter(|r| r["clientRequestId"] == "replayed-id")
                .collect();
            Ok((logged.len() >= 3).then_some(logged))
        },
    )
    .await
    .unwrap();
    assert_eq!(logged.len(), 3, "every request is its own row: {logged:#?}");
    let mut keys: Vec<&str> = logged.iter().map(|r| r["requestId"].as_str().unwrap()).collect();
    keys.sort_unstable();
    ids.sort_unstable();
    assert_eq!(keys, ids);
    assert!(logged.iter().all(|r| r["completionTokens"] == 5 && r["usageSource"] == "reported"));
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_flag_that_is_not_a_boolean_is_refused_before_the_upstream() {
    let (stack, app) = common::stack_with_app().await;
    let cases = [
        (json!("true"), Value::Null, "stream"),
        (json!(1), Value::Null, "stream"),
        (json!({"on": true}), Value::Null, "stream"),
        (json!(true), json!("include"), "stream_options"),
        (json!(true), json!({"include_usage": "yes"}), "stream_options"),
        (
            json!(true),
            json!({"include_usage": true, "continuous_usage_stats": 1}),
            "stream_options",
        ),
    ];
    for (stream, options, param) in cases {
        let mut body = chat("model-a");
        body["stream"] = stream.clone();
        if !options.is_null() {
            body["stream_options"] = options.clone();
        }
        let resp = stack
            .gateway_post("/v1/chat/completions", &app.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    assert!(stack.mock("model-a").state.seen().is_empty(), "nothing reached the upstream");
    // `null` is vLLM's default and stays accepted.
    let mut body = chat("model-a");
    body["stream"] = Value::Null;
    let resp =
        stack.gateway_post("/v1/chat/completions", &app.api_key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn only_listed_endpoints_reach_an_upstream_whatever_the_path_spelling() {
    let (stack, app) = common::stack_with_app().await;
    let auth = format!("Bearer {}", app.api_key);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let lora = r#"{"model":"model-a","lora_name":"evil","lora_path":"/tmp/evil"}"#;
    let targets = [
        "/v1/load_lora_adapter",
        "/v1/unload_lora_adapter",
        "/v1/not-an-endpoint",
        "/v1/chat/completions/../../v1/load_lora_adapter",
        "/v1/chat/completions/../load_lora_adapter",
        "//v1/load_lora_adapter",
        "/v1//load_lora_adapter",
        "/v1%2Fload_lora_adapter",
        "/v1/load%2Flora_adapter",
        "/v1/%6Coad_lora_adapter",
        "/V1/load_lora_adapter",
        "/v1/Chat/Completions",
    ];
    for target in targets {
        let reply = common::raw_request(&stack, "POST", target, &headers, lora).await;
        assert_eq!(reply.status, 404, "{target}: {:?}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.json()["error"]["code"], "unknown_url", "{target}");
    }
    assert!(stack.mock("model-a").state.seen().is_empty(), "no refused path reached the upstream");
    // A listed endpoint spelled with a doubled slash is normalised and served.
    let reply = common::raw_request(
        &stack,
        "POST",
        "/v1//chat/completions",
        &headers,
        &chat("model-a").to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{:?}", String::from_utf8_lossy(&reply.body));
    assert_eq!(stack.mock("model-a").state.seen().pop().unwrap().path, "/v1/chat/completions");
    stack.stop().await;
}

#[tokio::test]
async fn upstreams_answer_identity_and_envoy_compresses_towards_the_client() {
    use std::io::Read;
    let (stack, app) = common::stack_with_app().await;
    let mut body = chat("model-a");
    body["max_tokens"] = json!(400);
    let resp = stack
        .gateway_post("/v1/chat/completions", &app.api_key)
        .header("accept-encoding", "gzip")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-encoding").map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "compressed towards the client"
    );
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let compressed = resp.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..]).read_to_string(&mut text).unwrap();
    let reply: Value = serde_json::from_str(&text).unwrap();
    let seen = stack.mock("model-a").state.seen().pop().unwrap();
    assert_eq!(seen.header("accept-encoding"), None, "the upstream was asked for identity");
    let row = stack
        .wait_for_log("the compressed reply", |r| r["requestId"] == id.as_str())
        .await
        .unwrap();
    assert_eq!(row["usageSource"], "reported");
    assert_eq!(row["promptTokens"], reply["usage"]["prompt_tokens"]);
    assert_eq!(row["completionTokens"], reply["usage"]["completion_tokens"]);
    stack.stop().await;
}
