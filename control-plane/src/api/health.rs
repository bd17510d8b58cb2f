//! Operations endpoints, open without a token: `/healthz` (the process answers), `/readyz` (the
//! database answers and every embedded migration is applied) and Prometheus `/metrics`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::Db;

/// What `/readyz` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    status: &'static str,
    /// Why not, when not ready (never an internal error text).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = String, content_type = "text/plain", description = "`ok`")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers and every migration this binary embeds is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    match unready_reason(state.db()).await {
        None => (StatusCode::OK, Json(Readiness { status: "ready", reason: None })),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness { status: "not ready", reason: Some(reason) }),
        ),
    }
}

async fn unready_reason(db: &Db) -> Option<&'static str> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(db)
            .await
        {
            Ok(versions) => versions,
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the database does not answer");
                return Some("database unavailable");
            }
        };
    let pending = sqlx::migrate!("./migrations").iter().any(|m| !applied.contains(&m.version));
    pending.then_some("migrations pending")
}

/// Prometheus metrics, text exposition format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics().render();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Counts every request by method, matched route template and status class.
pub async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    state.metrics().count_request(&method, &route, response.status().as_u16());
    response
}
