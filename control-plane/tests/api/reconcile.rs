//! `GET /api/usage/reconcile`: the gateway's totals beside vLLM's counters scraped from a fake
//! upstream's `/metrics`, with restarts, unreachable upstreams and unconfigured models.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use control_plane::reconcile::prom::TokenTotals;
use control_plane::reconcile::{Scraper, Upstream};
use control_plane::store::logs::{insert_batch, AccessLog};
use control_plane::store::samples;
use serde_json::{json, Value};

use super::logs::T0;
use super::*;

/// A fake vLLM whose counters the test sets; they are split over two engines.
struct FakeVllm {
    url: String,
    prompt: Arc<AtomicI64>,
    generation: Arc<AtomicI64>,
}

impl FakeVllm {
    async fn start(model: &'static str) -> Self {
        let (prompt, generation) = (Arc::new(AtomicI64::new(0)), Arc::new(AtomicI64::new(0)));
        let (p, g) = (prompt.clone(), generation.clone());
        let metrics = move || {
            let (p, g) = (p.load(Relaxed), g.load(Relaxed));
            async move {
                format!(
                    "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.\n\
                     # TYPE vllm:prompt_tokens_total counter\n\
                     vllm:prompt_tokens_total{{engine=\"0\",model_name=\"{model}\"}} {:e}\n\
                     vllm:prompt_tokens_total{{engine=\"1\",model_name=\"{model}\"}} {}.0\n\
                     vllm:num_requests_running{{engine=\"0\",model_name=\"{model}\"}} 3.0\n\
                     vllm:generation_tokens_total{{engine=\"0\",model_name=\"{model}\"}} {g}.0\n\
                     vllm:generation_tokens_total{{engine=\"1\",model_name=\"{model}\"}} 0.0\n",
                    (p - p / 2) as f64,
                    p / 2
                )
            }
        };
        let app = axum::Router::new().route("/metrics", axum::routing::get(metrics));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, prompt, generation }
    }

    fn set(&self, prompt: i64, generation: i64) {
        self.prompt.store(prompt, Relaxed);
        self.generation.store(generation, Relaxed);
    }

    fn upstream(&self, model: &str) -> Upstream {
        format!("{model}={}", self.url).parse().unwrap()
    }
}

fn row(id: &str, at: i64, model: &str, prompt: i64, completion: i64) -> AccessLog {
    AccessLog {
        request_id: id.into(),
        started_at_ms: at,
        model: Some(model.into()),
        prompt_tokens: Some(prompt),
        completion_tokens: Some(completion),
        total_tokens: Some(prompt + completion),
        usage_source: Some("reported".into()),
        client_disconnected: Some(false),
        ..AccessLog::default()
    }
}

fn now_ms() -> i64 {
    control_plane::store::now_ms()
}

async fn reconcile(state: &AppState, query: &str) -> Value {
    let reply = admin(state, "GET", &format!("/api/usage/reconcile?{query}"), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json
}

#[tokio::test]
async fn a_fresh_call_scrapes_and_sets_vllms_increase_beside_the_gateways_totals() {
    let vllm = FakeVllm::start("m").await;
    let (state, _dir) = state().await;
    let state = state.with_upstreams(vec![vllm.upstream("m")], Duration::ZERO);
    vllm.set(1000, 500);
    let first = reconcile(&state, "").await;
    assert_eq!(first["records"][0]["vllm"]["samples"], 1);
    let start: i64 = sqlx::query_scalar("SELECT MAX(at_ms) FROM upstream_samples")
        .fetch_one(state.db())
        .await
        .unwrap();

    // Two requests through the gateway, then the same counted by vLLM.
    let at = now_ms();
    insert_batch(
        state.db(),
        &[row("a", at, "m", 20, 5), row("b", at, "m", 10, 15), row("old", start - 1, "m", 99, 99)],
    )
    .await
    .unwrap();
    vllm.set(1030, 520);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = reconcile(&state, &format!("from={start}")).await;
    let record = &r["records"][0];
    assert_eq!(record["model"], "m");
    assert_eq!(record["upstream"], vllm.url);
    assert_eq!(record["gateway"]["requests"], 2);
    assert_eq!(
        (
            record["gateway"]["promptTokens"].as_i64(),
            record["gateway"]["completionTokens"].as_i64()
        ),
        (Some(30), Some(20))
    );
    assert_eq!(record["vllm"]["promptTokens"], 30, "{record}");
    assert_eq!(record["vllm"]["generationTokens"], 20);
    assert_eq!(record["vllm"]["coversWindow"], true, "{record}");
    assert_eq!(record["difference"], json!({"promptTokens": 0, "completionTokens": 0}));
    assert_eq!(record["likelyCauses"], json!([]));
    assert_eq!(record["lastScrape"]["error"], Value::Null);

    // Traffic that went to vLLM directly.
    vllm.set(1070, 520);
    let r = reconcile(&state, &format!("from={start}")).await;
    let record = &r["records"][0];
    assert_eq!(record["difference"], json!({"promptTokens": 40, "completionTokens": 0}));
    assert!(
        record["likelyCauses"][0].as_str().unwrap().contains("did not pass the gateway"),
        "{record}"
    );
}

#[tokio::test]
async fn a_restart_between_samples_adds_the_new_count_and_estimates_are_named() {
    let (state, _dir) = state().await;
    let upstream: Upstream = "m=http://127.0.0.1:9".parse().unwrap();
    let state = state.with_upstreams(vec![upstream.clone()], Duration::from_secs(15));
    let sample = |at, prompt, generation| {
        samples::insert(state.db(), &upstream, at, TokenTotals { prompt, generation })
    };
    sample(T0 - 1000, 100, 50).await.unwrap();
    sample(T0 + 10_000, 160, 80).await.unwrap();
    sample(T0 + 20_000, 40, 10).await.unwrap(); // restarted
    sample(T0 + 60_000, 70, 30).await.unwrap();
    sample(T0 + 90_000, 900, 900).await.unwrap(); // after the first sample past the window: unused
    let mut estimated = row("e", T0 + 5, "m", 100, 60);
    estimated.usage_source = Some("estimated".into());
    insert_batch(state.db(), &[estimated, row("r", T0 + 6, "m", 30, 0)]).await.unwrap();
    let r = reconcile(&state, &format!("from={T0}&to={}", T0 + 50_000)).await;
    let record = &r["records"][0];
    assert_eq!(record["vllm"]["promptTokens"], 60 + 40 + 30, "{record}");
    assert_eq!(record["vllm"]["generationTokens"], 30 + 10 + 20);
    assert_eq!(record["vllm"]["counterResets"], 1);
    assert_eq!(record["vllm"]["samples"], 4);
    assert_eq!(record["vllm"]["firstSampleAt"], "2026-01-30T23:59:59Z");
    assert_eq!(record["vllm"]["lastSampleAt"], "2026-01-31T00:01:00Z");
    assert_eq!(record["gateway"]["estimatedRequests"], 1);
    assert_eq!(record["difference"], json!({"promptTokens": 0, "completionTokens": 0}));
    assert_eq!(record["lastScrape"], Value::Null, "a past window scrapes nothing");

    let r = reconcile(&state, &format!("from={T0}&to={}", T0 + 15_000)).await;
    let causes = r["records"][0]["likelyCauses"].to_string();
    assert!(causes.contains("1 request with estimated usage"), "{causes}");
}

#[tokio::test]
async fn an_unreachable_upstream_or_a_missing_model_says_why_there_is_no_vllm_side() {
    let vllm = FakeVllm::start("served-name").await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (state, _dir) = state().await;
    let down: Upstream = format!("down=http://{closed}").parse().unwrap();
    let state =
        state.with_upstreams(vec![down, vllm.upstream("other-name")], Duration::from_secs(15));
    insert_batch(
        state.db(),
        &[row("a", now_ms() - 1000, "down", 5, 5), row("b", now_ms() - 1000, "direct", 1, 1)],
    )
    .await
    .unwrap();
    let mut refused = row("c", now_ms() - 1000, "made-up", 0, 0);
    refused.gateway_error = Some("model_not_found".into());
    insert_batch(state.db(), &[refused]).await.unwrap();
    let r = reconcile(&state, "").await;
    let records = r["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{r}");
    assert_eq!((records[0]["model"].as_str(), records[0]["vllm"].is_null()), (Some("down"), true));
    assert_eq!(records[0]["gateway"]["promptTokens"], 5);
    assert!(records[0]["lastScrape"]["error"].as_str().unwrap().contains(&closed.to_string()));
    assert!(records[0]["likelyCauses"][0]
        .as_str()
        .unwrap()
        .starts_with("no vLLM samples in the window"));
    assert!(
        records[1]["lastScrape"]["error"].as_str().unwrap().contains("model_name=\"other-name\""),
        "{}",
        records[1]
    );
    assert_eq!(
        (records[2]["model"].as_str(), &records[2]["upstream"]),
        (Some("direct"), &Value::Null)
    );
    assert!(records[2]["likelyCauses"][0].as_str().unwrap().contains("no upstream is configured"));
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    assert!(metrics.contains("gateway_upstream_scrapes_total{result=\"error\"} 2"), "{metrics}");
}

#[tokio::test]
async fn the_background_task_samples_every_interval() {
    let vllm = FakeVllm::start("m").await;
    let (state, _dir) = state().await;
    vllm.set(7, 3);
    let scraper = Arc::new(Scraper::new(vec![vllm.upstream("m")], Duration::from_millis(50)));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let task =
        control_plane::reconcile::spawn(scraper, state.db().clone(), state.metrics().clone(), stop)
            .unwrap();
    gateway_stack::eventually("two samples taken", Duration::from_secs(10), || async {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM upstream_samples WHERE prompt_total = 7")
                .fetch_one(state.db())
                .await
                .unwrap();
        Ok((count >= 2).then_some(()))
    })
    .await
    .unwrap();
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(control_plane::reconcile::spawn(
        Arc::new(Scraper::new(vec![vllm.upstream("m")], Duration::ZERO)),
        state.db().clone(),
        state.metrics().clone(),
        tokio::sync::watch::channel(false).1
    )
    .is_none());
}

#[tokio::test]
async fn bad_windows_are_refused() {
    let (state, _dir) = state().await;
    let r = reconcile(&state, "").await;
    assert_eq!(r["records"], json!([]));
    for (query, field) in [
        ("from=yesterday", "from"),
        (&format!("from={T0}&to={T0}") as &str, "to"),
        (&format!("from={}&to={T0}", T0 - 32 * 86_400_000), "from"),
    ] {
        assert_invalid(
            &admin(&state, "GET", &format!("/api/usage/reconcile?{query}"), None).await,
            field,
        );
    }
    assert_eq!(
        call(&state, "GET", "/api/usage/reconcile", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}
