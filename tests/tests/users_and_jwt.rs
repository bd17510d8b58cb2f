//! Users of the replaced JWT gateway: create a user, log in at `/user/user_login` through the
//! gateway, call the API with the JWT (header and `?token=`), revoke or disable, and see 401/403
//! within the propagation window; forged tokens never pass.

use gateway_stack::{Stack, StackOptions};
use reqwest::Method;
use serde_json::{json, Value};

const EMAIL: &str = "test@example.com";
const PASSWORD: &str = "your_password";

async fn chat(stack: &Stack, url_suffix: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = stack
        .http()
        .post(format!("{}/v1/chat/completions{url_suffix}", stack.gateway_url))
        .json(&json!({"model": "model-a", "messages": [{"role": "user", "content": "你好"}]}));
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_user_logs_in_calls_with_the_jwt_and_is_revoked() {
    let stack = Stack::start(StackOptions::for_tests()).await.unwrap();
    let user_id = stack.create_user(EMAIL, PASSWORD).await.unwrap();
    let data = stack.login(EMAIL, PASSWORD).await.unwrap();
    assert_eq!(data["user_id"], user_id);
    assert_eq!(data["version"], 1);
    let token = data["token"].as_str().unwrap().to_owned();
    stack.wait_for_key(&token).await.unwrap();

    let (status, reply) = chat(&stack, "", Some(&token)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, _) = chat(&stack, &format!("?token={token}"), None).await;
    assert_eq!(status, 200, "EventSource-style ?token= works too");
    let seen = stack.mock("model-a").state.seen();
    assert!(seen.iter().all(|r| r.header("authorization").is_none() && !r.path.contains("token")));
    let row = stack.wait_for_log("the JWT call", |r| r["userId"] == user_id).await.unwrap();
    assert_eq!(row["status"], 200);

    let (status, _) = stack
        .admin(Method::POST, &format!("/api/users/{user_id}/revoke-tokens"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let refused = stack.wait_for_status(&token, 401).await.unwrap();
    assert_eq!(refused["error"]["code"], "revoked_token");

    let fresh = stack.login(EMAIL, PASSWORD).await.unwrap();
    assert_eq!(fresh["version"], 2);
    let fresh = fresh["token"].as_str().unwrap().to_owned();
    stack.wait_for_key(&fresh).await.unwrap();
    stack
        .admin(
            Method::PATCH,
            &format!("/api/users/{user_id}/status"),
            Some(json!({"status": "disabled"})),
        )
        .await
        .unwrap();
    let refused = stack.wait_for_status(&fresh, 403).await.unwrap();
    assert_eq!(refused["error"]["code"], "user_disabled");
    stack.stop().await;
}

#[tokio::test]
async fn login_answers_like_the_replaced_gateway() {
    let stack = Stack::start(StackOptions::for_tests()).await.unwrap();
    stack.create_user(EMAIL, PASSWORD).await.unwrap();
    let url = format!("{}/user/user_login", stack.gateway_url);
    for (email, password) in [(EMAIL, "wrong password"), ("nobody@example.com", PASSWORD)] {
        let resp = stack
            .http()
            .post(&url)
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["success"], false);
        assert!(v["message"].is_string());
    }
    let (status, _) = stack
        .admin(
            Method::POST,
            "/api/users",
            Some(json!({"email": "TEST@example.com", "password": "another-pass"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 409, "e-mails are unique regardless of case");
    stack.stop().await;
}

#[tokio::test]
async fn forged_tokens_never_pass() {
    let stack = Stack::start(StackOptions::for_tests()).await.unwrap();
    stack.create_user(EMAIL, PASSWORD).await.unwrap();
    let token = stack.login(EMAIL, PASSWORD).await.unwrap()["token"].as_str().unwrap().to_owned();
    stack.wait_for_key(&token).await.unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |s: &str| base64url(s.as_bytes());
    let header: Value = serde_json::from_slice(&base64url_decode(parts[0])).unwrap();
    let claims: Value = serde_json::from_slice(&base64url_decode(parts[1])).unwrap();
    let mut other_user = claims.clone();
    other_user["sub"] = json!("999");
    let mut later = claims.clone();
    later["exp"] = json!(claims["exp"].as_i64().unwrap() + 86_400);
    let forgeries = [
        format!("{}.{}.", b64(&json!({"alg": "none", "kid": header["kid"]}).to_string()), parts[1]),
        format!("{}.{}.{}", parts[0], b64(&other_user.to_string()), parts[2]),
        format!("{}.{}.{}", parts[0], b64(&later.to_string()), parts[2]),
        format!(
            "{}.{}.{}",
            b64(&json!({"alg": "HS256", "kid": header["kid"]}).to_string()),
            parts[1],
            parts[2]
        ),
        format!("{}.{}.{}", parts[0], parts[1], b64("not a signature")),
        format!("{}.{}", parts[0], parts[1]),
    ];
    for forged in &forgeries {
        let (status, reply) = chat(&stack, "", Some(forged)).await;
        assert_eq!(status, 401, "{forged}: {reply}");
    }
    assert!(stack.mock("model-a").state.seen().is_empty(), "no forgery reached an upstream");
    let (status, _) = chat(&stack, "", Some(&token)).await;
    assert_eq!(status, 200, "the real token still works");
    stack.stop().await;
}

fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

fn base64url_decode(s: &str) -> Vec<u8> {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let values: Vec<u32> =
        s.bytes().map(|c| ABC.iter().position(|&a| a == c).unwrap() as u32).collect();
    let mut out = Vec::new();
    for chunk in values.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, v)| acc | v << (18 - 6 * i));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}
