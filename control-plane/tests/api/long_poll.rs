//! Long polls of `/internal/state`: a pull with the current ETag and `wait_ms` is held until the
//! state changes (200, promptly, whatever wrote the change) or the time is up (304); anything
//! else is answered at once, and a shutdown releases what is held.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use vllm_gateway_filter::feed::hash_key;

use super::*;

/// Status, ETag and body of one pull.
async fn pull(
    state: &AppState,
    query: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, String, String) {
    let mut req = Request::get(format!("/internal/state{query}"))
        .header("authorization", format!("Bearer {FEED}"));
    if let Some(etag) = if_none_match {
        req = req.header("if-none-match", etag);
    }
    let resp = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let etag =
        resp.headers().get("etag").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, etag, String::from_utf8_lossy(&body).into_owned())
}

/// A poll held in the background: its reply and when it came.
fn hold(
    state: &AppState,
    etag: &str,
    wait_ms: u64,
) -> tokio::task::JoinHandle<((StatusCode, String, String), Instant)> {
    let (state, etag) = (state.clone(), etag.to_owned());
    tokio::spawn(async move {
        (pull(&state, &format!("?wait_ms={wait_ms}"), Some(&etag)).await, Instant::now())
    })
}

/// Waits until `n` polls are held (registered to be woken by a change or a stop).
async fn held_polls(state: &AppState, n: usize) {
    let line = format!("gateway_state_long_polls_waiting {n}");
    gateway_stack::eventually(&format!("{n} polls held"), Duration::from_secs(10), || async {
        let metrics = call(state, "GET", "/metrics", None, None).await.text;
        Ok(metrics.lines().any(|l| l == line).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_held_poll_answers_the_new_state_promptly_after_a_key_is_created() {
    let (state, _dir) = state().await;
    let (_, etag, _) = pull(&state, "", None).await;
    let held = hold(&state, &etag, 10_000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!held.is_finished(), "held while nothing changes");
    let asked = Instant::now();
    let created = admin(&state, "POST", "/api/apps", Some(json!({"orgName": "o"}))).await;
    let ((status, new_etag, body), answered) = held.await.unwrap();
    let took = answered.saturating_duration_since(asked);
    println!("held poll answered {took:?} after the creation was asked for");
    assert_eq!(status, StatusCode::OK);
    assert_ne!(new_etag, etag);
    assert!(body.contains(&hash_key(created.json["apiKey"].as_str().unwrap())), "{body}");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    for line in [
        "gateway_state_long_polls_total{result=\"changed\"} 1",
        "gateway_state_long_polls_waiting 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn a_change_no_handler_announces_wakes_the_poll_too() {
    let (state, _dir) = state().await;
    let (_, etag, _) = pull(&state, "", None).await;
    let held = hold(&state, &etag, 10_000);
    held_polls(&state, 1).await;
    let asked = Instant::now();
    control_plane::jwt::rotate(state.db()).await.unwrap();
    let ((status, _, body), answered) = held.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("publicKeyHex"), "{body}");
    assert!(answered.saturating_duration_since(asked) < Duration::from_millis(500));
}

#[tokio::test]
async fn an_unchanged_state_is_a_304_once_wait_ms_has_passed() {
    let (state, _dir) = state().await;
    let (_, etag, _) = pull(&state, "", None).await;
    let started = Instant::now();
    let (status, same, body) = pull(&state, "?wait_ms=300", Some(&etag)).await;
    let took = started.elapsed();
    assert_eq!(
        (status, same.as_str(), body.as_str()),
        (StatusCode::NOT_MODIFIED, etag.as_str(), "")
    );
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "took {took:?}");
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics.lines().any(|l| l == "gateway_state_long_polls_total{result=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn without_the_current_etag_or_without_wait_ms_the_answer_is_immediate() {
    let (state, _dir) = state().await;
    let (_, etag, _) = pull(&state, "", None).await;
    let started = Instant::now();
    assert_eq!(pull(&state, "?wait_ms=10000", None).await.0, StatusCode::OK, "no If-None-Match");
    assert_eq!(
        pull(&state, "?wait_ms=10000", Some("\"v0-stale\"")).await.0,
        StatusCode::OK,
        "an old ETag"
    );
    assert_eq!(pull(&state, "?wait_ms=0", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
    assert_eq!(pull(&state, "", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let reply = call(&state, "GET", "/internal/state?wait_ms=soon", Some(FEED), None).await;
    assert_invalid(&reply, "wait_ms");
    let reply = call(&state, "GET", "/internal/state?wait_ms=10", Some(ADMIN), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stopping_releases_held_polls_and_answers_later_ones_at_once() {
    let (state, _dir) = state().await;
    let (_, etag, _) = pull(&state, "", None).await;
    let held = hold(&state, &etag, 20_000);
    held_polls(&state, 1).await;
    let stopped = Instant::now();
    state.stop_long_polls();
    let ((status, _, _), answered) = held.await.unwrap();
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(answered.saturating_duration_since(stopped) < Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(pull(&state, "?wait_ms=20000", Some(&etag)).await.0, StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_graceful_shutdown_does_not_wait_for_held_polls() {
    let (state, _dir) = state().await;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let als = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/internal/state", http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let server = tokio::spawn(control_plane::serve(
        state,
        control_plane::Retention::default(),
        control_plane::Listeners::new(http, als),
        shutdown,
    ));
    let client = reqwest::Client::new();
    let first = client.get(&url).bearer_auth(FEED).send().await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let held = client
        .get(format!("{url}?wait_ms=20000"))
        .bearer_auth(FEED)
        .header("if-none-match", etag)
        .send();
    let held = tokio::spawn(held);
    let metrics = url.replace("/internal/state", "/metrics");
    gateway_stack::eventually("the poll held", Duration::from_secs(10), || async {
        let text = client.get(&metrics).send().await.unwrap().text().await.unwrap();
        Ok(text.lines().any(|l| l == "gateway_state_long_polls_waiting 1").then_some(()))
    })
    .await
    .unwrap();
    let started = Instant::now();
    stop.send(()).unwrap();
    let served =
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("the server drained");
    served.unwrap().unwrap();
    assert_eq!(held.await.unwrap().unwrap().status(), reqwest::StatusCode::NOT_MODIFIED);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
