//! `/api/users`, `/user/user_login`, `/api/signing-keys/rotate`, and what the state feed says
//! about users and keys: every endpoint with its error cases.

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const PASSWORD: &str = "your_password";

async fn create_user(state: &AppState, email: &str) -> Value {
    let reply =
        admin(state, "POST", "/api/users", Some(json!({"email": email, "password": PASSWORD})))
            .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json
}

async fn login(state: &AppState, email: &str, password: &str) -> Reply {
    call(
        state,
        "POST",
        "/user/user_login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
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
    let dup = admin(
        &state,
        "POST",
        "/api/users",
        Some(json!({"email": "TAKEN@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
    assert_invalid(
        &admin(&state, "PATCH", "/api/users/1/status", Some(json!({"status": "paused"}))).await,
        "status",
    );
    assert_not_found(
        &admin(&state, "PATCH", "/api/users/99/status", Some(json!({"status": "disabled"}))).await,
    );
    assert_not_found(&admin(&state, "POST", "/api/users/99/revoke-tokens", None).await);
    for uri in ["/api/users", "/api/signing-keys/rotate"] {
        assert_eq!(
            call(&state, "POST", uri, None, Some(json!({}))).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn a_status_change_reads_back_and_reaches_the_feed() {
    let (state, _dir) = state().await;
    let id = create_user(&state, "test@example.com").await["id"].as_i64().unwrap();
    let uri = format!("/api/users/{id}/status");
    let reply = admin(&state, "PATCH", &uri, Some(json!({"status": "disabled"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["status"], "disabled");
    assert_eq!(
        admin(&state, "GET", &format!("/api/users/{id}"), None).await.json["status"],
        "disabled"
    );
    assert_eq!(
        admin(&state, "GET", "/api/users", None).await.json["records"][0]["status"],
        "disabled"
    );
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(feed.json["users"][0]["status"], "disabled");

    for (body, field) in [
        (json!({"status": "Enabled"}), "status"),
        (json!({"status": ""}), "status"),
        (json!({}), "body"),
        (json!({"status": "enabled", "role": "root"}), "body"),
    ] {
        assert_invalid(&admin(&state, "PATCH", &uri, Some(body)).await, field);
    }
    let stored: String = sqlx::query_scalar("SELECT status FROM users WHERE id = ?")
        .bind(id)
        .fetch_one(state.db())
        .await
        .unwrap();
    assert_eq!(stored, "disabled", "a refused change changes nothing");
    let reply = admin(&state, "PATCH", &uri, Some(json!({"status": "enabled"}))).await;
    assert_eq!(reply.json["status"], "enabled");
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

    for (email, password) in
        [("test@example.com", "wrong-password"), ("nobody@example.com", PASSWORD)]
    {
        let refused = login(&state, email, password).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.json, json!({"success": false, "message": "invalid email or password"}));
    }
    let garbage = call(&state, "POST", "/user/user_login", None, None).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbage.json["success"], false);

    let id = user["id"].as_i64().unwrap();
    admin(&state, "PATCH", &format!("/api/users/{id}/status"), Some(json!({"status": "disabled"})))
        .await;
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
    let before = login(&state, "test@example.com", PASSWORD).await.json["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    let keys = feed.json["jwtKeys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["publicKeyHex"].as_str().unwrap().len(), 64);

    let rotated = admin(&state, "POST", "/api/signing-keys/rotate", None).await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_kid = rotated.json["kid"].as_str().unwrap().to_owned();
    let after = login(&state, "test@example.com", PASSWORD).await.json["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(header_kid(&before), header_kid(&after));
    assert_eq!(header_kid(&after), new_kid);
    let feed = call(&state, "GET", "/internal/state", Some(FEED), None).await;
    let kids: Vec<&str> = feed.json["jwtKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2, "the old key is published until its tokens expire");
    assert!(kids.contains(&header_kid(&before).as_str()));

    let expired = state.clone().with_jwt_lifetime(60);
    sqlx::query(
        "UPDATE signing_keys SET retired_at = retired_at - 120 WHERE retired_at IS NOT NULL",
    )
    .execute(state.db())
    .await
    .unwrap();
    let feed = call(&expired, "GET", "/internal/state", Some(FEED), None).await;
    assert_eq!(
        feed.json["jwtKeys"].as_array().unwrap().len(),
        1,
        "gone once its tokens have expired"
    );
}

fn header_kid(token: &str) -> String {
    let token = jwt_compact::UntrustedToken::new(token).unwrap();
    token.header().key_id.clone().unwrap()
}

/// A login from the TCP peer `peer`, with `x-forwarded-for` when given.
async fn login_from(
    state: &AppState,
    peer: &str,
    forwarded: Option<&str>,
    email: &str,
    password: &str,
) -> Reply {
    let body = json!({"email": email, "password": password}).to_string();
    let mut req = axum::http::Request::builder()
        .method("POST")
        .uri("/user/user_login")
        .header("content-type", "application/json");
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let mut req = req.body(axum::body::Body::from(body)).unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Reply { status, json: serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers, text }
}

#[track_caller]
fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.text);
    assert_eq!(
        reply.json,
        json!({"success": false, "message": "too many login attempts, retry in 1 s"})
    );
    assert_eq!(reply.headers["retry-after"], "1");
}

#[tokio::test]
async fn an_account_is_throttled_after_five_failures_even_with_the_right_password() {
    let (state, _dir) = state().await;
    create_user(&state, "test@example.com").await;
    for i in 0..5 {
        let email = if i % 2 == 0 { " Test@Example.com " } else { "test@example.com" };
        assert_eq!(
            login(&state, email, "wrong-password").await.status,
            StatusCode::UNAUTHORIZED,
            "failure {i} is free"
        );
    }
    assert_throttled(&login(&state, "TEST@example.com", PASSWORD).await);
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics.lines().any(|l| l == r#"gateway_login_throttled_total{scope="account"} 1"#),
        "{metrics}"
    );
    assert_eq!(
        login(&state, "other@example.com", "x").await.status,
        StatusCode::UNAUTHORIZED,
        "other accounts go on"
    );
}

#[tokio::test]
async fn a_success_resets_the_accounts_failures() {
    let (state, _dir) = state().await;
    create_user(&state, "test@example.com").await;
    for _ in 0..4 {
        login(&state, "test@example.com", "wrong-password").await;
    }
    assert_eq!(login(&state, "test@example.com", PASSWORD).await.status, StatusCode::OK);
    for i in 0..5 {
        assert_eq!(
            login(&state, "test@example.com", "wrong-password").await.status,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
}

#[tokio::test]
async fn a_client_address_is_throttled_across_accounts_as_the_trusted_proxy_forwards_it() {
    let (state, _dir) = state().await;
    // Envoy on loopback appends the client it saw; what the client wrote itself is ignored.
    for i in 0..5 {
        let reply = login_from(
            &state,
            "127.0.0.1:4000",
            Some(&format!("10.9.9.{i}, 203.0.113.7")),
            &format!("u{i}@example.com"),
            "x",
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    }
    assert_throttled(
        &login_from(&state, "127.0.0.1:4000", Some("203.0.113.7"), "fresh@example.com", "x").await,
    );
    let other =
        login_from(&state, "127.0.0.1:4000", Some("203.0.113.8"), "fresh@example.com", "x").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED, "another client behind the same proxy");
    // An untrusted peer is the client, whatever it forwards.
    let direct =
        login_from(&state, "198.51.100.2:5000", Some("203.0.113.7"), "fresh2@example.com", "x")
            .await;
    assert_eq!(direct.status, StatusCode::UNAUTHORIZED, "{}", direct.text);
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics.lines().any(|l| l == r#"gateway_login_throttled_total{scope="address"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn logins_past_the_bound_on_password_checks_are_refused_at_once() {
    let (state, _dir) = state().await;
    let state = state.with_password_checks(control_plane::password::PasswordChecks::new(1, 0));
    let held = state.password_checks().acquire().await.unwrap();
    let reply = login(&state, "test@example.com", "x").await;
    assert_throttled(&reply);
    drop(held);
    // The refused attempt was not charged to the account.
    for i in 0..5 {
        assert_eq!(
            login(&state, "test@example.com", "x").await.status,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
    let metrics = call(&state, "GET", "/metrics", None, None).await.text;
    assert!(
        metrics.lines().any(|l| l == r#"gateway_login_throttled_total{scope="busy"} 1"#),
        "{metrics}"
    );
}
