//! `GET /internal/lookup`: one key (by hash) and/or one user (by id), whatever their status, with
//! the JWT keys and the state version, behind the feed's secret; malformed parameters are 400s.

use axum::http::StatusCode;
use serde_json::json;
use vllm_gateway_filter::feed::{hash_key, Feed, FeedUser, Status};

use super::*;

async fn lookup(state: &AppState, query: &str) -> (Reply, Feed) {
    let reply = call(state, "GET", &format!("/internal/lookup?{query}"), Some(FEED), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
    let feed = serde_json::from_str(&reply.text).expect("a Feed");
    (reply, feed)
}

#[tokio::test]
async fn a_key_is_found_whatever_its_apps_status_and_is_gone_once_rotated_or_deleted() {
    let (state, _dir) = state().await;
    let (id, key) = new_app(&state).await;
    let (reply, feed) = lookup(&state, &format!("keyHash={}", hash_key(&key))).await;
    let whole = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(
        reply.headers["etag"], whole.headers["etag"],
        "the version, as the state feed names it"
    );
    let served: Feed = serde_json::from_str(&whole.text).unwrap();
    assert_eq!(feed.keys, served.keys, "the key as the state feed has it, limits included");
    assert!(feed.users.is_empty());
    assert_eq!(feed.jwt_keys, served.jwt_keys);

    admin(&state, "PATCH", &format!("/api/apps/{id}/status"), Some(json!({"status": "disabled"})))
        .await;
    let upper = hash_key(&key).to_ascii_uppercase();
    let (disabled, feed) = lookup(&state, &format!("keyHash={upper}")).await;
    assert_eq!(feed.keys[0].status, Status::Disabled, "found, and said disabled");
    assert_ne!(disabled.headers["etag"], reply.headers["etag"]);

    let rotated = admin(&state, "POST", &format!("/api/apps/{id}/key"), None).await;
    assert!(
        lookup(&state, &format!("keyHash={}", hash_key(&key))).await.1.keys.is_empty(),
        "rotated out"
    );
    let new_key = rotated.json["apiKey"].as_str().unwrap();
    assert_eq!(lookup(&state, &format!("keyHash={}", hash_key(new_key))).await.1.keys.len(), 1);
    admin(&state, "DELETE", &format!("/api/apps/{id}"), None).await;
    assert!(
        lookup(&state, &format!("keyHash={}", hash_key(new_key))).await.1.keys.is_empty(),
        "app deleted"
    );
    assert!(
        lookup(&state, &format!("keyHash={}", "0".repeat(64))).await.1.keys.is_empty(),
        "unknown"
    );
}

#[tokio::test]
async fn a_user_is_found_whatever_its_status_alone_or_with_a_key() {
    let (state, _dir) = state().await;
    let user = admin(
        &state,
        "POST",
        "/api/users",
        Some(json!({"email": "u@example.com", "password": "your_password"})),
    )
    .await;
    let user_id = user.json["id"].as_i64().unwrap();
    admin(&state, "POST", &format!("/api/users/{user_id}/revoke-tokens"), None).await;
    admin(
        &state,
        "PATCH",
        &format!("/api/users/{user_id}/status"),
        Some(json!({"status": "disabled"})),
    )
    .await;
    let (_, feed) = lookup(&state, &format!("userId={user_id}")).await;
    assert_eq!(
        feed.users,
        [FeedUser { id: user_id, status: Status::Disabled, token_version: 2, limits: None }]
    );
    assert!(feed.keys.is_empty());
    let (_, key) = new_app(&state).await;
    let (_, both) = lookup(&state, &format!("keyHash={}&userId={user_id}", hash_key(&key))).await;
    assert_eq!((both.keys.len(), both.users.len()), (1, 1));
    let (_, nobody) = lookup(&state, "userId=999").await;
    assert!(nobody.users.is_empty());

    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    for line in [
        "gateway_credential_lookups_total{kind=\"key\",result=\"found\"} 1",
        "gateway_credential_lookups_total{kind=\"key\",result=\"absent\"} 0",
        "gateway_credential_lookups_total{kind=\"user\",result=\"found\"} 2",
        "gateway_credential_lookups_total{kind=\"user\",result=\"absent\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
}

#[tokio::test]
async fn the_jwt_keys_are_always_there_and_a_rotation_moves_the_version() {
    let (state, _dir) = state().await;
    control_plane::jwt::current_key(state.db()).await.unwrap();
    let (before, feed) = lookup(&state, "userId=1").await;
    assert_eq!(feed.jwt_keys.len(), 1);
    admin(&state, "POST", "/api/signing-keys/rotate", None).await;
    let (after, feed) = lookup(&state, "userId=1").await;
    assert_eq!(feed.jwt_keys.len(), 2, "the retired key stays while its tokens may be valid");
    assert_ne!(before.headers["etag"], after.headers["etag"]);
}

#[tokio::test]
async fn only_the_feed_token_and_well_formed_parameters_are_answered() {
    let (state, _dir) = state().await;
    let hash = hash_key("sk-live-anything");
    for token in [None, Some(ADMIN)] {
        let reply =
            call(&state, "GET", &format!("/internal/lookup?keyHash={hash}"), token, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let short = &hash[..63];
    let cases = [
        (String::new(), "keyHash"),
        ("keyHash=".to_owned(), "keyHash"),
        (format!("keyHash={short}"), "keyHash"),
        (format!("keyHash={short}z"), "keyHash"),
        ("userId=x".to_owned(), "userId"),
        (format!("keyHash={hash}&userId=1.5"), "userId"),
    ];
    for (query, field) in cases {
        let reply =
            call(&state, "GET", &format!("/internal/lookup?{query}"), Some(FEED), None).await;
        assert_invalid(&reply, field);
    }
}
