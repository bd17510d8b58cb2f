//! Credentials and model routing through the real Envoy, filter and control plane.

mod common;

use serde_json::{json, Value};

#[tokio::test]
async fn requests_without_a_valid_key_get_openai_shaped_401s() {
    let (stack, _app) = common::stack_with_app().await;
    let url = format!("{}/v1/chat/completions", stack.gateway_url);
    let body = json!({"model": "model-a", "messages": [{"role": "user", "content": "hi"}]});
    let cases = [
        (None, "missing_api_key"),
        (Some("Bearer sk-live-00000000-0000-0000-0000-000000000000"), "invalid_api_key"),
        (Some("Basic c2stbGl2ZQ=="), "missing_api_key"),
    ];
    for (auth, code) in cases {
        let mut req = stack.http().post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(v["error"]["message"].is_string());
    }
    for mock in &stack.mocks {
        assert!(mock.state.seen().is_empty(), "nothing reached an upstream");
    }
    let row = stack
        .wait_for_log("a refused request", |r| r["gatewayError"] == "invalid_api_key")
        .await
        .unwrap();
    assert_eq!(row["status"], 401);
    stack.stop().await;
}

#[tokio::test]
async fn each_model_reaches_its_own_upstream_and_never_sees_the_key() {
    let (stack, app) = common::stack_with_app().await;
    let url = format!("{}/v1/chat/completions", stack.gateway_url);
    for (model, spoofed) in [("model-a", "model_1_model_b"), ("model-b", "model_0_model_a")] {
        let resp = stack
            .http()
            .post(&url)
            .bearer_auth(&app.api_key)
            .header("x-gateway-cluster", spoofed)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "route me"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["model"], model);
    }
    for mock in &stack.mocks {
        let seen = mock.state.seen();
        assert_eq!(seen.len(), 1, "{} saw {} requests", mock.model, seen.len());
        let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
        assert_eq!(body["model"], mock.model.as_str(), "a spoofed cluster header never routes");
        assert!(seen[0]
            .headers
            .iter()
            .all(|(name, value)| name != "authorization" && !value.contains(&app.api_key)));
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_query_token_works_and_is_stripped() {
    let (stack, app) = common::stack_with_app().await;
    let url = format!("{}/v1/completions?token={}", stack.gateway_url, app.api_key);
    let resp = stack
        .http()
        .post(&url)
        .json(&json!({"model": "model-b", "prompt": "你好", "max_tokens": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = stack.mock("model-b").state.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/completions");
    let row = stack.wait_for_log("the completion", |r| r["model"] == "model-b").await.unwrap();
    assert!(!row["path"].as_str().unwrap().contains("token"), "{row}");
    stack.stop().await;
}

#[tokio::test]
async fn unroutable_bodies_are_refused_before_any_upstream() {
    let (stack, app) = common::stack_with_app().await;
    let url = format!("{}/v1/chat/completions", stack.gateway_url);
    let cases: [(&str, u16, &str); 3] = [
        (r#"{"model":"gpt-unknown","messages":[]}"#, 404, "model_not_found"),
        (r#"{"messages":[]}"#, 400, "missing_model"),
        (r#"{"model": "model-a", "#, 400, "invalid_json"),
    ];
    for (body, status, code) in cases {
        let resp = stack
            .http()
            .post(&url)
            .bearer_auth(&app.api_key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code);
    }
    for mock in &stack.mocks {
        assert!(mock.state.seen().is_empty());
    }
    stack.stop().await;
}

#[tokio::test]
async fn upstreams_get_their_own_key_and_the_default_model_serves_listed_endpoints_only() {
    let mut options = gateway_stack::StackOptions::for_tests();
    options.upstream_keys.insert("model-b".into(), "vllm-server-key".into());
    options.default_model = Some("model-b".into());
    let (stack, app) = common::stack_with_app_using(options).await;
    let resp = stack
        .gateway_post("/v1/chat/completions", &app.api_key)
        .json(&json!({"model": "model-b", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A listed endpoint without a body to route by goes to the default model (vLLM answers the
    // GET with 405; what matters is who answered).
    let resp = stack
        .http()
        .get(format!("{}/v1/completions", stack.gateway_url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // A path that is not listed is the gateway's 404, default model or not.
    let resp = stack
        .http()
        .get(format!("{}/v1/models/model-b", stack.gateway_url))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "unknown_url");
    let seen = stack.mock("model-b").state.seen();
    assert_eq!(seen.len(), 2, "the POST and the listed GET reached model-b's server");
    for request in &seen {
        assert_eq!(request.header("authorization"), Some("Bearer vllm-server-key"));
    }
    assert_eq!(seen[1].path, "/v1/completions");
    stack.stop().await;
}

#[tokio::test]
async fn app_changes_reach_the_gateway_within_the_propagation_window() {
    use reqwest::Method;
    let stack =
        gateway_stack::Stack::start(gateway_stack::StackOptions::for_tests()).await.unwrap();
    let (status, created) = stack
        .admin(Method::POST, "/api/apps", Some(json!({"orgName": "o", "models": ["model-a"]})))
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    let (id, key) =
        (created["id"].as_i64().unwrap(), created["apiKey"].as_str().unwrap().to_owned());
    stack.wait_for_key(&key).await.unwrap();
    let chat = |model: &'static str| {
        stack
            .gateway_post("/v1/chat/completions", &key)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    assert_eq!(chat("model-a").await.unwrap().status(), 200);
    let refused: Value = chat("model-b").await.unwrap().json().await.unwrap();
    assert_eq!(refused["error"]["code"], "model_not_allowed");

    stack
        .admin(
            Method::PATCH,
            &format!("/api/apps/{id}/status"),
            Some(json!({"status": "disabled"})),
        )
        .await
        .unwrap();
    let refused = stack.wait_for_status(&key, 403).await.unwrap();
    assert_eq!(refused["error"]["code"], "app_disabled");
    stack
        .admin(Method::PATCH, &format!("/api/apps/{id}/status"), Some(json!({"status": "enabled"})))
        .await
        .unwrap();
    stack.wait_for_status(&key, 200).await.unwrap();

    let (status, rotated) =
        stack.admin(Method::POST, &format!("/api/apps/{id}/key"), None).await.unwrap();
    assert_eq!(status, 201);
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    stack.wait_for_status(&key, 401).await.unwrap();
    stack.wait_for_status(&new_key, 200).await.unwrap();

    stack.admin(Method::DELETE, &format!("/api/apps/{id}"), None).await.unwrap();
    stack.wait_for_status(&new_key, 401).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn an_expired_app_gets_401_expired_api_key() {
    use reqwest::Method;
    let stack =
        gateway_stack::Stack::start(gateway_stack::StackOptions::for_tests()).await.unwrap();
    let (status, created) = stack
        .admin(
            Method::POST,
            "/api/apps",
            Some(json!({"orgName": "o", "expireTime": "2001-01-01T00:00:00.000+08:00"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    let key = created["apiKey"].as_str().unwrap();
    // 401 invalid_api_key until the key reaches the filter, then 401 expired_api_key.
    let url = format!("{}/v1/models", stack.gateway_url);
    let (status, reply) = gateway_e2e::eventually(
        "the key refused as expired",
        std::time::Duration::from_secs(10),
        || async {
            let resp = stack.http().get(&url).bearer_auth(key).send().await?;
            let status = resp.status().as_u16();
            let reply: Value = resp.json().await.unwrap_or(Value::Null);
            Ok((reply["error"]["code"] == "expired_api_key").then_some((status, reply)))
        },
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "{reply}");
    stack.stop().await;
}

#[tokio::test]
async fn a_query_token_never_reaches_any_log_line() {
    let (stack, app) = common::stack_with_app().await;
    let forged = "sk-live-forged-query-token-0123456789";
    let cases = [
        (format!("/v1/chat/completions?token={}", app.api_key), 200),
        (format!("/v1/chat/completions?token={forged}"), 401),
        (format!("/v1/not-an-endpoint?token={}", app.api_key), 404),
        (format!("/v1/chat/completions?a=1&token={forged}&b=2"), 401),
    ];
    let mut ids = Vec::new();
    for (path, status) in &cases {
        let body = json!({"model": "model-a", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]});
        let resp = stack
            .http()
            .post(format!("{}{path}", stack.gateway_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{path}");
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let rows = gateway_e2e::eventually(
        "every request logged",
        std::time::Duration::from_secs(10),
        || async {
            let rows = stack.all_logs().await?;
            let logged = |id: &String| rows.iter().any(|r| r["requestId"] == id.as_str());
            Ok(ids.iter().all(logged).then_some(rows))
        },
    )
    .await
    .unwrap();
    // Every request's line is in Envoy's stdout access log and in the durable file.
    let file = gateway_e2e::eventually(
        "every request's line in Envoy's output and the durable file",
        std::time::Duration::from_secs(10),
        || async {
            let file = std::fs::read_to_string(&stack.access_log_file).unwrap_or_default();
            let output = stack.envoy_output();
            let written = |id: &String| file.contains(id.as_str()) && output.contains(id.as_str());
            Ok(ids.iter().all(written).then_some(file))
        },
    )
    .await
    .unwrap();
    let everything = [
        stack.envoy_output(),
        stack.control_plane_output(),
        file,
        serde_json::to_string(&rows).unwrap(),
    ];
    for (what, text) in [
        "Envoy's output",
        "the control plane's output",
        "the durable log file",
        "the access-log rows",
    ]
    .iter()
    .zip(&everything)
    {
        for secret in [app.api_key.as_str(), forged] {
            assert!(!text.contains(secret), "{what} holds a query credential");
        }
    }
    stack.stop().await;
}
