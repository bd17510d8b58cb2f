//! `/api/users`, `/user/user_login`, `/api/signing-keys/rotate`, and what the state feed says
//! about users and keys: every endpoint with its error cases.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const PASSWORD: &str = "your_password";

async fn create_user(state: &AppState, email: &str) -> Value {
    let reply = admin(state, "POST", "/api/users", Some(json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

async fn login(state: &AppState, email: &str, password: &str) -> Reply {
    call(state, "POST", "/user/user_login", None, Some(json!({"email": email, "password": password}))).await
}

#[tokio::test]
async fn users_are_created_listed_and_never_show_their_password() {
    let (state, _dir) = state().await;
    let user = create_user(&state, "test@example.com").await;
    assert_eq!(user["email"], "test@example.com");
    assert_eq!(user["status"], "enabled");
    assert_eq!(user["tokenVersion"], 1);
    create_user(&state, "other@example.com").await;
    let list = admin(&state, "GET", "/api/users?page=1&size=1", None).await;
    assert_eq!(list.json["total"], 2);
    assert_eq!(list.json["records"].as_array().unwrap().len(), 1);
    assert!(!list.text.contains(PASSWORD) && !list.text.contains("argon2"));
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(user["id"].as_i64().unwrap())
        .fetch_one(state.db())
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$"));
}

#[tokio::test]
async fn bad_users_are_refused_naming_the_field() {
    let (state, _dir) = state().await;
    create_user(&state, "taken@example.com").await;
    let cases = [
        (json!({"password": PASSWORD}), "email"),
        (json!({"email": "no-at-sign", "password": PASSWORD}), "email"),
        (json!({"email": "a@example.com", "password": "short"}), "password"),
        (json!({"email": "a@example.com", "password": PASSWORD, "role": "root"}), "body"),
    ];
    for (body, field) in cases {
        assert_invalid(&admin(&state, "POST", "/api/users", Some(body)).await, field);
    }
    let dup = admin(&state, "POST", "/api/users", Some(json!({"email": "TAKEN@example.com", "password": PASSWORD}))).await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
    assert_invalid(&admin(&state, "PATCH", "/api/users/1/status", Some(json!({"status": "paused"}))).await, "status");
    assert_not_found(&admin(&state, "PATCH", "/api/users/99/status", Some(json!({"status": "disabled"}))).await);
    assert_not_found(&admin(&state, "POST", "/api/users/99/revoke-tokens", None).await);
    for uri in ["/api/users", "/api/signing-keys/rotate"] {
        assert_eq!(call(&state, "POST", uri, None, Some(json!({}))).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn login_answers_like_the_replaced_gateway() {
    let (state, _dir) = state().await;
    let user = create_user(&state, "test@example.com").await;
    let ok = login(&state, "Test@Example.com", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.json["success"], true);
    assert_eq!(ok.json["data"]["user_id"], user["id"]);
    assert_eq!(ok.json["data"]["version"], 1);
    assert_eq!(ok.json["data"]["token"].as_str().unwrap().split('.').count(), 3);

    for (email, password) in [("test@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)] {
        let refused = login(&state, email, password).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.json, json!({"success": false, "message": "invalid email or password"}));
    }
    let garbage = call(&state, "POST", "/user/user_login", None, None).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.json["success"], false);

    let id = user["id"].as_i64().unwrap();
    admin(&state, "PATCH", &format!("/api/users/{id}/status"), Some(json!({"status": "disabled"}))).await;
    let disabled = login(&state, "test@example.com", PASSWORD).await;
    assert_eq!(disabled.status, StatusCode::FORBIDDEN);
    assert_eq!(disabled.json["success"], false);
}

#[tokio::test]
async fn revoking_bumps_the_version_the_feed_and_new_tokens_carry() {
    let (state, _dir) = state().await;
    let user = create_user(&state, "test@example.com").await;
    let id = user["id"].as_i64().unwrap();
    let revoked = admin(&state, "POST", &format!("/api/users/{id}/revoke-tokens"), None).await;
    assert_eq!(revoked.json["tokenVersion"], 2);
    assert_eq!(login(&state, "test@example.com", PASSWORD).await.json["data"]["version"], 2);
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed.json["users"], json!([{"id": id, "status": "enabled", "tokenVersion": 2}]));
}

#[tokio::test]
async fn a_rotated_signing_key_stays_published_while_its_tokens_live() {
    let (state, _dir) = state().await;
    create_user(&state, "test@example.com").await;
    let before = login(&state, "test@example.com", PASSWORD).await.json["data"]["token"].as_str().unwrap().to_owned();
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    let keys = feed.json["jwtKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["publicKeyHex"].as_str().unwrap().len(), 64);

    let rotated = admin(&state, "POST", "/api/signing-keys/rotate", None).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_kid = rotated.json["kid"].as_str().unwrap().to_owned();
    let after = login(&state, "test@example.com", PASSWORD).await.json["data"]["token"].as_str().unwrap().to_owned();
    assert_ne!(header_kid(&before), header_kid(&after));
    assert_eq!(header_kid(&after), new_kid);
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    let kids: Vec<&str> = feed.json["jwtKeys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2, "the old key is published until its tokens expire");
    assert!(kids.contains(&header_kid(&before).as_str()));

    let expired = state.clone().with_jwt_lifetime(60);
    sqlx::query("UPDATE signing_keys SET retired_at = retired_at - 120 WHERE retired_at IS NOT NULL")
        .execute(state.db())
        .await
        .unwrap();
    let feed = call(&expired, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed.json["jwtKeys"].as_array().unwrap().len(), 1, "gone once its tokens have expired");
}

fn header_kid(token: &str) -> String {
    let token = jwt_compact::UntrustedToken::new(token).unwrap();
    token.header().key_id.clone().unwrap()
}
