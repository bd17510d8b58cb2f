//! Ugly input through the real Envoy: streams re-cut at random byte positions, huge bodies,
//! upstream errors, bytes that are not UTF-8, a body ended by HTTP/2 trailers, and a plugin
//! configuration Envoy must refuse.

mod common;

use gateway_stack::{StackOptions, Upstreams};
use gateway_workspace::paths;
use serde_json::{json, Value};

#[tokio::test]
async fn streams_cut_at_random_bytes_are_passed_intact_and_counted_exactly() {
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Mock {
        models: vec!["split".into()],
        token_delay: std::time::Duration::ZERO,
        split_seed: Some(7),
    };
    let (stack, app) = common::stack_with_app_using(options).await;
    for (i, max_tokens) in [5u64, 17, 40].into_iter().enumerate() {
        let body = json!({"model": "split", "stream": true, "max_tokens": max_tokens,
                          "messages": [{"role": "user", "content": format!("多字节 {i}")}]});
        let via = stack
            .gateway_post("/v1/chat/completions", &app.api_key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!via.contains("usage"), "no usage for a caller that did not ask");
        let text: String = via
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, mock_vllm::completion_text(max_tokens as usize));
        let row = stack
            .wait_for_log("the split stream", |r| r["completionTokens"] == max_tokens)
            .await
            .unwrap();
        assert_eq!(row["usageSource"], "reported");
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_gets_an_openai_shaped_413() {
    let (stack, app) = common::stack_with_app().await;
    let huge = "x".repeat(9 * 1024 * 1024);
    let body = json!({"model": "model-a", "prompt": huge}).to_string();
    let resp = stack
        .gateway_post("/v1/completions", &app.api_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "request_too_large");
    assert!(stack.mock("model-a").state.seen().is_empty());
    // Recorded and counted as the 413 it is, like any refusal (not as a request without a status).
    let row = stack
        .wait_for_log("the refused body", |r| r["gatewayError"] == "request_too_large")
        .await
        .unwrap();
    assert_eq!(row["status"], 413);
    let metrics = gateway_stack::envoy::prometheus(stack.envoy_admin).await.unwrap();
    // Series that nothing was added to may be listed at 0 (the native build declares the
    // series of every configured model up front): only values count.
    let counted =
        |series: &str| metrics.lines().filter(|l| l.contains(series)).any(|l| !l.ends_with(" 0"));
    assert!(
        counted("vllm_gateway_requests_total{model=\"none\",status_class=\"4xx\"}"),
        "{metrics}"
    );
    assert!(!counted("status_class=\"none\""), "{metrics}");
    stack.stop().await;
}

#[tokio::test]
async fn upstream_errors_pass_unchanged_and_are_logged_with_their_type() {
    let (stack, app) = common::stack_with_app().await;
    let long_prompt = "word ".repeat(5000);
    let body = json!({"model": "model-a", "prompt": long_prompt});
    let resp =
        stack.gateway_post("/v1/completions", &app.api_key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let via: Value = resp.json().await.unwrap();
    let direct: Value = stack
        .http()
        .post(format!("http://{}/v1/completions", stack.mock("model-a").addr))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(via, direct, "vLLM's error reaches the caller as vLLM sent it");
    let row = stack.wait_for_log("the refused completion", |r| r["status"] == 400).await.unwrap();
    assert_eq!(row["upstreamError"], "BadRequestError");
    assert_eq!(row["usageSource"], "none");
    stack.stop().await;
}

#[tokio::test]
async fn bytes_that_are_not_utf8_get_a_401_and_the_filter_keeps_serving() {
    let (stack, app) = common::stack_with_app().await;
    let url = format!("{}/v1/models", stack.gateway_url);
    let bad = reqwest::header::HeaderValue::from_bytes(b"Bearer sk-live-\xff\xfe").unwrap();
    let resp = stack.http().get(&url).header("authorization", bad).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = stack.http().get(&url).bearer_auth(&app.api_key).send().await.unwrap();
    assert_eq!(resp.status(), 200, "the VM did not trap");
    stack.stop().await;
}

#[tokio::test]
async fn envoy_refuses_an_invalid_plugin_configuration_and_says_which_field() {
    let spec = gateway_envoy::GatewaySpec {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_port: 0,
        control_plane_http: "127.0.0.1:1".parse().unwrap(),
        control_plane_als: "127.0.0.1:2".parse().unwrap(),
        filter: gateway_stack::filter_build::from_env().unwrap(),
        models: vec!["m=http://127.0.0.1:3".parse().unwrap()],
        state_token: "0123456789abcdef0123".into(),
        state_refresh_ms: 1000,
        cors_origins: vec![],
        default_model: None,
        upstream_keys: Default::default(),
        access_log_file: std::env::temp_dir().join("vllm-gateway-validate-access.jsonl"),
    };
    let good = gateway_envoy::render(&spec).unwrap();
    let bad = good.replace("\"refresh_ms\":1000", "\"refresh_ms\":5");
    assert_ne!(good, bad);
    let dir = tempfile::tempdir().unwrap();
    let validate = |yaml: &str, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        let mut envoy = std::process::Command::new(paths::envoy_bin().unwrap());
        envoy.args(["--mode", "validate", "--disable-hot-restart", "-c"]).arg(&path);
        if let Some((name, dir)) = spec.filter.envoy_env() {
            envoy.env(name, dir);
        }
        envoy.output().unwrap()
    };
    let ok = validate(&good, "good.yaml");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let refused = validate(&bad, "bad.yaml");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!refused.status.success(), "Envoy accepted it:\n{log}");
    assert!(log.contains("state.refresh_ms"), "the log names the field:\n{log}");
}

/// Sends `body` over HTTP/2 in two DATA frames and ends the request with trailers (as gRPC-style
/// clients and some proxies do): no DATA frame ends the stream. Returns the status and the body.
async fn post_with_trailers(gateway_url: &str, key: &str, body: &[u8]) -> (u16, Value) {
    let addr = gateway_url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("{gateway_url}/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    let (first, second) = body.split_at(body.len() / 2);
    send.send_data(bytes::Bytes::copy_from_slice(first), false).unwrap();
    send.send_data(bytes::Bytes::copy_from_slice(second), false).unwrap();
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-body-checksum", http::HeaderValue::from_static("0"));
    send.send_trailers(trailers).unwrap();
    // Envoy's route timeout is far longer: a request held until it would fail here.
    let wait = std::time::Duration::from_secs(10);
    let response = tokio::time::timeout(wait, response).await.expect("an answer in time").unwrap();
    let status = response.status().as_u16();
    let mut received = response.into_body();
    let mut bytes = Vec::new();
    while let Some(data) = received.data().await {
        let data = data.unwrap();
        received.flow_control().release_capacity(data.len()).unwrap();
        bytes.extend_from_slice(&data);
    }
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn a_body_ended_by_http2_trailers_is_routed_counted_or_refused_at_once() {
    let (stack, app) = common::stack_with_app().await;
    let body = json!({"model": "model-a", "max_tokens": 6,
                      "messages": [{"role": "user", "content": "trailers"}]});
    let (status, reply) =
        post_with_trailers(&stack.gateway_url, &app.api_key, body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], "model-a");
    assert_eq!(reply["usage"]["completion_tokens"], 6);
    let id = reply["id"].as_str().unwrap().to_owned();
    let row = stack.wait_for_log("the request with trailers", |r| r["completionTokens"] == 6).await;
    assert_eq!(row.unwrap()["model"], "model-a", "{id}");
    let (status, reply) = post_with_trailers(&stack.gateway_url, &app.api_key, b"{not json").await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_json")), "{reply}");
    // A key the filter has not seen yet: its body and trailers come while it is looked up.
    let fresh = stack.create_app("trailers-first-use").await.unwrap();
    let (status, reply) =
        post_with_trailers(&stack.gateway_url, &fresh.api_key, body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    stack.stop().await;
}
