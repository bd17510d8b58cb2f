//! Keys are shown once and stored as hashes; the state feed lists the hashes behind its own
//! secret, with an ETag that only a change moves (304 otherwise).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

use super::*;

#[tokio::test]
async fn a_key_is_shown_once_and_only_its_hash_is_stored() {
    let (state, _dir) = state().await;
    let body = json!({"orgName": "my-org", "expireTime": "2099-12-31T23:59:59.000+08:00", "remark": "测试应用"});
    let created = admin(&state, "POST", "/api/apps", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let key = created.json["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-live-"));
    assert_eq!(created.json["keyPrefix"], key[..12]);
    assert_eq!(created.json["remark"], "测试应用");
    let id = created.json["id"].as_i64().unwrap();
    let one = admin(&state, "GET", &format!("/api/apps/{id}"), None).await;
    let list = admin(&state, "GET", "/api/apps", None).await;
    assert!(!one.text.contains(&key) && !list.text.contains(&key), "the plaintext is never shown again");
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_keys").fetch_all(state.db()).await.unwrap();
    assert_eq!(stored, vec![secrets::hash(&key)]);
}

async fn feed_with(state: &AppState, if_none_match: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get("/internal/state").header("authorization", format!("Bearer {FEED}"));
    if let Some(etag) = if_none_match {
        req = req.header("if-none-match", etag);
    }
    let resp = app(state.clone()).oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    (resp.status(), resp.headers()["etag"].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_feed_lists_hashes_behind_its_secret_and_only_changes_move_its_etag() {
    let (state, _dir) = state().await;
    assert_eq!(call(&state, "GET", "/internal/state", Some(ADMIN), None).await.status, StatusCode::UNAUTHORIZED);
    let created = admin(&state, "POST", "/api/apps", Some(json!({"orgName": "o"}))).await;
    let key = created.json["apiKey"].as_str().unwrap();
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed.json["keys"][0]["hash"], secrets::hash(key));
    assert_eq!(feed.json["keys"][0]["appId"], created.json["id"]);
    assert!(!feed.text.contains(key));

    let (_, etag) = feed_with(&state, None).await;
    assert_eq!(feed_with(&state, Some(&etag)).await, (StatusCode::NOT_MODIFIED, etag.clone()));
    let id = created.json["id"].as_i64().unwrap();
    admin(&state, "PATCH", &format!("/api/apps/{id}/status"), Some(json!({"status": "disabled"}))).await;
    let (status, changed) = feed_with(&state, Some(&etag)).await;
    assert_eq!(status, StatusCode::OK, "disabling an app changes the state");
    assert_ne!(changed, etag);
    admin(&state, "POST", "/api/users", Some(json!({"email": "u@example.com", "password": "your_password"}))).await;
    assert_eq!(feed_with(&state, Some(&changed)).await.0, StatusCode::OK, "so does a new user");
}
