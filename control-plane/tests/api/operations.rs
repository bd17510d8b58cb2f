//! `/healthz`, `/readyz` and `/metrics`: open without a token; readiness follows the database
//! and its migrations; API requests are counted by route and status class.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let (state, _dir) = state().await;
    let reply = call(&state, "GET", "/healthz", None, None).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::OK, "ok"));
    let reply = call(&state, "GET", "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json, json!({"status": "ready"}));
}

#[tokio::test]
async fn not_ready_while_a_migration_is_missing() {
    let (state, _dir) = state().await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 2")
        .execute(state.db())
        .await
        .unwrap();
    let reply = call(&state, "GET", "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json, json!({"status": "not ready", "reason": "migrations pending"}));
}

#[tokio::test]
async fn not_ready_without_the_database() {
    let (state, _dir) = state().await;
    state.db().close().await;
    let reply = call(&state, "GET", "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json, json!({"status": "not ready", "reason": "database unavailable"}));
    assert_eq!(
        call(&state, "GET", "/healthz", None, None).await.status,
        StatusCode::OK,
        "still alive"
    );
}

#[tokio::test]
async fn metrics_count_api_requests_by_route_and_status_class() {
    let (state, _dir) = state().await;
    admin(&state, "POST", "/api/apps", Some(json!({"orgName": "o"}))).await;
    admin(&state, "GET", "/api/apps/41", None).await;
    admin(&state, "GET", "/api/apps/42", None).await;
    call(&state, "GET", "/api/apps", None, None).await;
    call(&state, "GET", "/nowhere", None, None).await;
    let reply = call(&state, "GET", "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for line in [
        r#"gateway_api_requests_total{method="POST",route="/api/apps",status="2xx"} 1"#,
        r#"gateway_api_requests_total{method="GET",route="/api/apps/{id}",status="4xx"} 2"#,
        r#"gateway_api_requests_total{method="GET",route="/api/apps",status="4xx"} 1"#,
        r#"gateway_api_requests_total{method="GET",route="unmatched",status="4xx"} 1"#,
        "# TYPE gateway_access_log_rows_written_total counter",
        "gateway_access_log_queue_depth 0",
        "# TYPE gateway_access_log_batch_write_seconds histogram",
    ] {
        assert!(reply.text.lines().any(|l| l == line), "missing {line:?} in\n{}", reply.text);
    }
}
