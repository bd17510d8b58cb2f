//! What a browser and an outage see: CORS from the allow-list, 502 `upstream error` when a
//! model's server is down, and keys that keep working while the control plane is away.

mod common;

use gateway_stack::{StackOptions, Upstreams};
use serde_json::{json, Value};

#[tokio::test]
async fn cors_preflights_are_answered_for_the_allow_list_only() {
    let (stack, _app) = common::stack_with_app().await;
    let url = format!("{}/v1/chat/completions", stack.gateway_url);
    let preflight = |origin: &'static str| {
        stack
            .http()
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    for origin in ["http://localhost:5173", "http://127.0.0.1:5173"] {
        let resp = preflight(origin).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        assert!(resp.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization"));
    }
    let resp = preflight("http://evil.example").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    stack.stop().await;
}

#[tokio::test]
async fn a_model_whose_server_is_down_gets_502_upstream_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut options = StackOptions::for_tests();
    options.upstreams =
        Upstreams::Real(vec![format!("down-model=http://127.0.0.1:{port}").parse().unwrap()]);
    let (stack, app) = common::stack_with_app_using(options).await;
    let resp = stack
        .gateway_post("/v1/chat/completions", &app.api_key)
        .json(&json!({"model": "down-model", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["message"], "upstream error");
    stack.stop().await;
}

#[tokio::test]
async fn keys_keep_working_while_the_control_plane_is_down() {
    let (mut stack, app) = common::stack_with_app().await;
    // What the filter prints for each pull that gets no good answer.
    let failed_pulls = |stack: &gateway_stack::Stack| {
        stack.envoy_output().matches("key state pull answered").count()
    };
    let before = failed_pulls(&stack);
    stack.stop_control_plane().await;
    // Several pulls fail; the last state keeps serving.
    gateway_e2e::eventually("three failed pulls", std::time::Duration::from_secs(10), || async {
        Ok((failed_pulls(&stack) >= before + 3).then_some(()))
    })
    .await
    .unwrap();
    let resp = stack
        .gateway_post("/v1/completions", &app.api_key)
        .json(&json!({"model": "model-a", "prompt": "still here?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = stack
        .gateway_post("/v1/completions", "sk-live-unknown")
        .json(&json!({"model": "model-a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    stack.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_stream_is_logged_with_what_was_generated() {
    use futures::StreamExt;
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Mock {
        models: vec!["slow".into()],
        token_delay: std::time::Duration::from_millis(50),
        split_seed: None,
    };
    let (stack, app) = common::stack_with_app_using(options).await;
    let resp = stack
        .gateway_post("/v1/chat/completions", &app.api_key)
        .json(&json!({"model": "slow", "stream": true, "max_tokens": 200, "messages": [{"role": "user", "content": "long"}]}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while seen.iter().filter(|b| **b == b'\n').count() < 8 {
        seen.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    drop(body); // the client goes away after a few tokens
    let row = stack.wait_for_log("the cut-off stream", |r| r["model"] == "slow").await.unwrap();
    assert_eq!(row["clientDisconnected"], true, "{row}");
    assert_eq!(row["usageSource"], "reported", "continuous usage counts a cut-off stream");
    let completion = row["completionTokens"].as_i64().unwrap();
    assert!(
        (3..200).contains(&completion),
        "counted what was generated, not the whole request: {completion}"
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("usage"),
        "the caller never saw the injected usage"
    );
    stack.stop().await;
}
