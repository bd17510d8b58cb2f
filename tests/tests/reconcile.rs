//! Reconciliation with vLLM's own counters through the whole stack: the control plane samples
//! each upstream's `/metrics` (`vllm:prompt_tokens_total`, `vllm:generation_tokens_total`) and
//! `GET /api/usage/reconcile` sets them beside what the gateway logged, with the difference and
//! its likely causes.

mod common;

use std::time::Duration;

use gateway_e2e::eventually;
use gateway_stack::Stack;
use serde_json::{json, Value};

/// Sends a chat completion to `base` (the gateway, or the upstream directly); returns its usage.
async fn chat(stack: &Stack, base: &str, key: Option<&str>, i: usize) -> (u64, u64) {
    let body = json!({"model": "model-a", "max_tokens": 3 + i, "messages": [{"role": "user", "content": format!("question {i}")}]});
    let mut req = stack.http().post(format!("{base}/v1/chat/completions")).json(&body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let reply: Value = req.send().await.unwrap().json().await.unwrap();
    let tokens = |k: &str| reply["usage"][k].as_u64().unwrap();
    (tokens("prompt_tokens"), tokens("completion_tokens"))
}

fn sum(usages: &[(u64, u64)]) -> (i64, i64) {
    let (p, c) = usages.iter().fold((0, 0), |(p, c), u| (p + u.0, c + u.1));
    (p as i64, c as i64)
}

#[tokio::test]
async fn traffic_that_bypassed_the_gateway_shows_as_the_difference() {
    let (stack, app) = common::stack_with_app().await;
    // The window opens now: the control plane took its first samples when it started.
    let from =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let upstream = format!("http://{}", stack.mock("model-a").addr);
    let mut through = Vec::new();
    for i in 0..5 {
        through.push(chat(&stack, &stack.gateway_url, Some(&app.api_key), i).await);
    }
    let mut direct = Vec::new();
    for i in 0..3 {
        direct.push(chat(&stack, &upstream, None, i).await);
    }
    eventually("the gateway's rows", Duration::from_secs(20), || async {
        Ok((stack.logs().await?.iter().filter(|r| r["model"] == "model-a").count() == 5)
            .then_some(()))
    })
    .await
    .unwrap();

    let (status, report) = stack
        .admin(reqwest::Method::GET, &format!("/api/usage/reconcile?from={from}"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{report}");
    let record = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "model-a")
        .cloned()
        .expect("model-a");
    assert_eq!(record["upstream"], upstream.as_str(), "{record}");
    let ((through_p, through_c), (direct_p, direct_c)) = (sum(&through), sum(&direct));
    assert_eq!(record["gateway"]["promptTokens"], through_p, "{record}");
    assert_eq!(record["gateway"]["completionTokens"], through_c, "{record}");
    assert_eq!(record["vllm"]["promptTokens"], through_p + direct_p, "{record}");
    assert_eq!(record["vllm"]["generationTokens"], through_c + direct_c, "{record}");
    assert_eq!(record["difference"]["completionTokens"], direct_c, "{record}");
    assert_eq!(record["difference"]["promptTokens"], direct_p, "{record}");
    let causes = record["likelyCauses"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c.as_str().unwrap().contains("did not pass the gateway")),
        "{record}"
    );

    // The other model had no traffic on either side: nothing to explain.
    let quiet = report["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == "model-b")
        .cloned()
        .expect("model-b");
    assert_eq!(quiet["difference"]["completionTokens"], 0, "{quiet}");
    assert_eq!(quiet["vllm"]["coversWindow"], true, "{quiet}");
    assert!(quiet["likelyCauses"].as_array().unwrap().is_empty(), "{quiet}");
    stack.stop().await;
}
