//! The HTTP API against a real SQLite file.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;
use crate::secrets;

const ADMIN: &str = "admin-token-for-tests-0001";
const FEED: &str = "feed-token-for-tests-0001";

async fn state() -> (AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = crate::db::open(&dir.path().join("t.db").display().to_string()).await.unwrap();
    (AppState::new(db, FEED.into(), secrets::hash(ADMIN)), dir)
}

async fn call(state: &AppState, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value, axum::http::HeaderMap) {
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
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value, headers)
}

#[tokio::test]
async fn creating_an_app_returns_its_key_once_and_stores_only_the_hash() {
    let (state, _dir) = state().await;
    let body = json!({"orgName": "my-org", "expireTime": "2099-12-31T23:59:59.000+08:00", "remark": "测试应用"});
    let (status, created, _) = call(&state, "POST", "/api/apps", Some(ADMIN), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-live-"));
    assert_eq!(created["orgName"], "my-org");
    assert_eq!(created["remark"], "测试应用");
    assert_eq!(created["status"], "enabled");
    assert_eq!(created["expireTime"], "2099-12-31T23:59:59.000+08:00");
    assert_eq!(created["keyPrefix"], key[..12]);

    let id = created["id"].as_i64().unwrap();
    let (status, one, _) = call(&state, "GET", &format!("/api/apps/{id}"), Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.get("apiKey").is_none(), "the plaintext is never shown again");
    let (_, list, _) = call(&state, "GET", "/api/apps?page=1&size=10", Some(ADMIN), None).await;
    assert_eq!(list["total"], 1);
    assert!(!list.to_string().contains(&key));

    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_keys").fetch_all(state.db()).await.unwrap();
    assert_eq!(stored, vec![secrets::hash(&key)]);
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let (state, _dir) = state().await;
    for (body, field) in [
        (json!({"remark": "x"}), "orgName"),
        (json!({"orgName": "o", "expireTime": "tomorrow"}), "expireTime"),
        (json!({"orgName": "o", "color": "red"}), "body"),
    ] {
        let (status, v, _) = call(&state, "POST", "/api/apps", Some(ADMIN), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["param"], field, "{v}");
    }
    let (status, v, _) = call(&state, "GET", "/api/logs?size=0", Some(ADMIN), None).await;
    assert_eq!((status, v["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some("size")));
    let (status, _, _) = call(&state, "GET", "/api/apps/999", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let (state, _dir) = state().await;
    for token in [None, Some("wrong"), Some(FEED)] {
        let (status, v, _) = call(&state, "GET", "/api/apps", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["type"], "authentication_error");
        let (status, _, _) = call(&state, "POST", "/api/apps", token, Some(json!({"orgName": "o"}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn the_state_feed_lists_hashes_with_etags() {
    let (state, _dir) = state().await;
    let (status, _, _) = call(&state, "GET", "/internal/state", Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the admin token is not the feed secret");
    let (_, created, _) = call(&state, "POST", "/api/apps", Some(ADMIN), Some(json!({"orgName": "o"}))).await;
    let key = created["apiKey"].as_str().unwrap();

    let (status, feed, headers) = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(status, StatusCode::OK);
    let entry = &feed["keys"][0];
    assert_eq!(entry["hash"], secrets::hash(key));
    assert_eq!(entry["appId"], created["id"]);
    assert_eq!(entry["status"], "enabled");
    assert!(!feed.to_string().contains(key));
    let etag = headers["etag"].to_str().unwrap().to_owned();

    let req = Request::get("/internal/state")
        .header("authorization", format!("Bearer {FEED}"))
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    call(&state, "POST", "/api/apps", Some(ADMIN), Some(json!({"orgName": "p"}))).await;
    let (_, feed, headers) = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed["keys"].as_array().unwrap().len(), 2);
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
}
