//! Prometheus metrics through Envoy's admin `/stats/prometheus`: requests by model and status
//! class, tokens by model matching the access log, latency histograms, auth failures by reason.

mod common;

use serde_json::json;

async fn prometheus(stack: &gateway_stack::Stack) -> String {
    gateway_stack::envoy::prometheus(stack.envoy_admin).await.unwrap()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[tokio::test]
async fn requests_tokens_latencies_and_auth_failures_are_exported() {
    let (stack, app) = common::stack_with_app().await;
    let url = format!("{}/v1/chat/completions", stack.gateway_url);
    for stream in [false, true, true] {
        let body = json!({"model": "model-b", "stream": stream, "max_tokens": 6, "messages": [{"role": "user", "content": "count me"}]});
        let resp =
            stack.http().post(&url).bearer_auth(&app.api_key).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    stack
        .http()
        .post(&url)
        .bearer_auth("sk-live-nope")
        .json(&json!({"model": "model-b"}))
        .send()
        .await
        .unwrap();

    let logged_prompt = gateway_e2e::eventually(
        "the rows of the three served requests",
        std::time::Duration::from_secs(10),
        || async {
            let rows = stack.logs().await?;
            let served: Vec<_> =
                rows.iter().filter(|r| r["model"] == "model-b" && r["status"] == 200).collect();
            Ok((served.len() == 3)
                .then(|| served.iter().map(|r| r["promptTokens"].as_i64().unwrap()).sum::<i64>()))
        },
    )
    .await
    .unwrap();
    assert!(logged_prompt > 0);

    let text = gateway_e2e::eventually(
        "three time-to-first-token samples in Prometheus",
        std::time::Duration::from_secs(10),
        || async {
            let text = prometheus(&stack).await;
            let count =
                value(&text, "vllm_gateway_time_to_first_token_ms_count{model=\"model-b\"}");
            Ok(count.is_some_and(|c| c >= 3.0).then_some(text))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        value(&text, "vllm_gateway_requests_total{model=\"model-b\",status_class=\"2xx\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "vllm_gateway_prompt_tokens_total{model=\"model-b\"}"),
        Some(logged_prompt as f64)
    );
    assert_eq!(value(&text, "vllm_gateway_completion_tokens_total{model=\"model-b\"}"), Some(18.0));
    assert_eq!(
        value(&text, "vllm_gateway_auth_failures_total{reason=\"invalid_api_key\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "vllm_gateway_time_to_first_token_ms_count{model=\"model-b\"}"),
        Some(3.0)
    );
    // The configured buckets (35 ms is none of Envoy's defaults), in either build.
    assert!(
        text.contains("vllm_gateway_time_per_output_token_ms_bucket{model=\"model-b\",le=\"35\"}"),
        "{text}"
    );
    stack.stop().await;
}
