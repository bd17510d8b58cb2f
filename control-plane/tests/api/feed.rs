//! Keys are shown once and stored as hashes; the state feed lists the hashes behind its own
//! secret, with an ETag that only a change moves (304 otherwise), in the filter's own `Feed`
//! type (the contract).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use vllm_gateway_filter::feed::{hash_key, Feed, FeedUser, Limits, Status};

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
    assert!(
        !one.text.contains(&key) && !list.text.contains(&key),
        "the plaintext is never shown again"
    );
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM api_keys").fetch_all(state.db()).await.unwrap();
    assert_eq!(stored, vec![hash_key(&key)], "hashed with the filter's own function");
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
    assert_eq!(
        call(&state, "GET", "/internal/state", Some(ADMIN), None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let created = admin(&state, "POST", "/api/apps", Some(json!({"orgName": "o"}))).await;
    let key = created.json["apiKey"].as_str().unwrap();
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed.json["keys"][0]["hash"], hash_key(key));
    assert_eq!(feed.json["keys"][0]["appId"], created.json["id"]);
    assert!(!feed.text.contains(key));

    let (_, etag) = feed_with(&state, None).await;
    assert_eq!(feed_with(&state, Some(&etag)).await, (StatusCode::NOT_MODIFIED, etag.clone()));
    let id = created.json["id"].as_i64().unwrap();
    admin(&state, "PATCH", &format!("/api/apps/{id}/status"), Some(json!({"status": "disabled"})))
        .await;
    let (status, changed) = feed_with(&state, Some(&etag)).await;
    assert_eq!(status, StatusCode::OK, "disabling an app changes the state");
    assert_ne!(changed, etag);
    admin(
        &state,
        "POST",
        "/api/users",
        Some(json!({"email": "u@example.com", "password": "your_password"})),
    )
    .await;
    assert_eq!(feed_with(&state, Some(&changed)).await.0, StatusCode::OK, "so does a new user");
}

#[tokio::test]
async fn the_served_state_is_the_filters_feed_and_carries_models_limits_and_users() {
    let (state, _dir) = state().await;
    let limits = json!({"requestsPerMinute": 10, "tokensPerMinute": 1000});
    let body = json!({"orgName": "o", "models": ["Qwen3-32B"], "limits": limits.clone(), "expireTime": "2099-12-31T23:59:59.000+08:00"});
    let created = admin(&state, "POST", "/api/apps", Some(body)).await;
    let unlimited = admin(&state, "POST", "/api/apps", Some(json!({"orgName": "p"}))).await;
    let user = admin(
        &state,
        "POST",
        "/api/users",
        Some(json!({"email": "u@example.com", "password": "your_password"})),
    )
    .await;
    let user_id = user.json["id"].as_i64().unwrap();
    admin(
        &state,
        "PATCH",
        &format!("/api/users/{user_id}/status"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    control_plane::jwt::current_key(state.db()).await.unwrap();

    let reply = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let feed: Feed =
        serde_json::from_str(&reply.text).expect("the filter reads what the control plane serves");
    let key = &feed.keys[0];
    assert_eq!(key.hash, hash_key(created.json["apiKey"].as_str().unwrap()));
    assert_eq!((key.app_id, key.status), (created.json["id"].as_i64().unwrap(), Status::Enabled));
    let expected: Limits = serde_json::from_value(limits).unwrap();
    assert_eq!(key.limits, Some(expected));
    assert_eq!(key.models, ["Qwen3-32B"]);
    assert_eq!(key.expires_at, Some(4_102_415_999));
    assert_eq!(feed.keys[1].hash, hash_key(unlimited.json["apiKey"].as_str().unwrap()));
    assert_eq!(
        (feed.keys[1].limits.clone(), feed.keys[1].expires_at),
        (None, None),
        "nothing limited: no limits"
    );
    assert_eq!(
        feed.users,
        [FeedUser { id: user_id, status: Status::Disabled, token_version: 1, limits: None }]
    );
    assert_eq!(feed.jwt_keys.len(), 1);
    assert_eq!(feed.jwt_keys[0].alg, "EdDSA");
}
