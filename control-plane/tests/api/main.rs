//! The admin API, the operations endpoints and the OpenAPI document, through the real router
//! against a real SQLite file, every endpoint with its error cases.

mod apps;
mod feed;
mod feed_delta;
mod limits;
mod logs;
mod long_poll;
mod lookup;
mod openapi;
mod operations;
mod reconcile;
mod usage;
mod users;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use control_plane::api::{app, AppState};
use control_plane::secrets;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-token-for-tests-0001";
pub const FEED: &str = "feed-token-for-tests-0001";

/// A fresh database in a temporary folder (kept alive by the returned guard).
pub async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db =
        control_plane::db::open(&dir.path().join("api.db").display().to_string()).await.unwrap();
    (AppState::new(db, FEED.into(), secrets::hash(ADMIN)), dir)
}

/// A reply: status, JSON body (`Null` when not JSON), headers, raw text.
pub struct Reply {
    pub status: StatusCode,
    pub json: Value,
    pub headers: HeaderMap,
    pub text: String,
}

/// One request through the router, with `token` as the bearer.
pub async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, json: serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers, text }
}

/// An admin call.
pub async fn admin(state: &AppState, method: &str, uri: &str, body: Option<Value>) -> Reply {
    call(state, method, uri, Some(ADMIN), body).await
}

/// A new app with a limit (5 requests a minute): its id and API key.
pub async fn new_app(state: &AppState) -> (i64, String) {
    let body = serde_json::json!({"orgName": "o", "limits": {"requestsPerMinute": 5}});
    let created = admin(state, "POST", "/api/apps", Some(body)).await;
    (created.json["id"].as_i64().unwrap(), created.json["apiKey"].as_str().unwrap().to_owned())
}

/// Asserts a 400 naming `field`.
#[track_caller]
pub fn assert_invalid(reply: &Reply, field: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.json["error"]["param"], field, "{}", reply.text);
    assert_eq!(reply.json["error"]["type"], "invalid_request_error");
}

/// Asserts a 404 in the API's error shape.
#[track_caller]
pub fn assert_not_found(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(reply.json["error"]["code"], "not_found");
}
