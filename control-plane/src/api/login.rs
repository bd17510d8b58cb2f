//! `POST /user/user_login`, exactly as the replaced JWT gateway answered it:
//! `{"success":true,"data":{"token","version","user_id"}}`, or `{"success":false,"message"}`.
//!
//! Guarded against brute force and overload: attempts are throttled per account and per client
//! address ([`crate::login_throttle`]; the address as [`crate::client_addr`] reads it), and
//! password checks are bounded ([`crate::password::PasswordChecks`]). A throttled or refused
//! attempt is a 429 in the same shape, with `Retry-After`, and costs no password check. An
//! unknown e-mail costs the same check as a known one, so timing does not tell them apart.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;
use vllm_gateway_filter::feed::Status;

use super::AppState;
use crate::jwt;
use crate::login_throttle::{account_key, Throttled};
use crate::password::Busy;
use crate::store::users;

/// The login route (no admin token: it is how users get theirs).
pub fn routes() -> Router<AppState> {
    Router::new().route("/user/user_login", post(login))
}

/// The login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Login {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"success": false, "message": message}))).into_response()
}

/// 429 in the login shape, with `Retry-After` (whole seconds, at least 1).
fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut response = refused(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("too many login attempts, retry in {secs} s"),
    );
    response.headers_mut().insert(RETRY_AFTER, secs.into());
    response
}

/// What one admitted attempt came to.
enum Outcome {
    /// The password matched (the user may still be disabled).
    Matched(Box<users::User>),
    /// Wrong e-mail or password.
    Failed,
    /// No password check was free.
    Busy,
    /// The database failed.
    Error,
}

/// Checks the password (the same time for an unknown e-mail) and issues a JWT:
/// `{"success":true,"data":{"token","version","user_id"}}`.
#[utoipa::path(post, path = "/user/user_login", tag = "users", request_body = Login, security(()),
    responses((status = 200, description = "`{\"success\":true,\"data\":{\"token\",\"version\",\"user_id\"}}`"),
        (status = 401, description = "`{\"success\":false,\"message\"}`: wrong e-mail or password"),
        (status = 403, description = "`{\"success\":false,\"message\"}`: the user is disabled"),
        (status = 429, description = "`{\"success\":false,\"message\"}` and `Retry-After`: too many failed attempts for the account or from the address, or too many logins at once")))]
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return refused(StatusCode::BAD_REQUEST, "send {\"email\",\"password\"} as JSON");
    };
    let account = account_key(&body.email);
    let address = peer.map(|Extension(ConnectInfo(peer))| {
        state.inner.trusted_proxies.client(peer.ip(), &headers)
    });
    let throttle = &state.inner.login_throttle;
    if let Err(throttled) = throttle.admit(&account, address, Instant::now()) {
        return throttled_reply(&state, throttled);
    }
    match attempt(&state, &account, body.password).await {
        Outcome::Matched(user) => {
            throttle.succeeded(&account, address);
            signed_in(&state, *user).await
        }
        Outcome::Failed => refused(StatusCode::UNAUTHORIZED, "invalid email or password"),
        Outcome::Busy => {
            throttle.not_checked(&account, address);
            state.metrics().login_throttled_busy.fetch_add(1, Relaxed);
            too_many(Duration::from_secs(1))
        }
        Outcome::Error => {
            throttle.not_checked(&account, address);
            refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Counts and answers a throttled attempt.
fn throttled_reply(state: &AppState, throttled: Throttled) -> Response {
    let metrics = state.metrics();
    let wait = match throttled {
        Throttled::Account(wait) => {
            metrics.login_throttled_account.fetch_add(1, Relaxed);
            wait
        }
        Throttled::Address(wait) => {
            metrics.login_throttled_address.fetch_add(1, Relaxed);
            wait
        }
    };
    too_many(wait)
}

/// Looks the account up and checks the password within the bound on checks.
async fn attempt(state: &AppState, account: &str, password: String) -> Outcome {
    let found = match users::by_email(state.db(), account).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "login lookup failed");
            return Outcome::Error;
        }
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    match state.password_checks().verify(password, hash).await {
        Ok(true) => user.map_or(Outcome::Failed, |user| Outcome::Matched(Box::new(user))),
        Ok(false) => Outcome::Failed,
        Err(Busy) => Outcome::Busy,
    }
}

/// The reply to a matching password: 403 for a disabled user, else a new JWT.
async fn signed_in(state: &AppState, user: users::User) -> Response {
    if user.status != Status::Enabled {
        return refused(StatusCode::FORBIDDEN, "user disabled");
    }
    match jwt::issue(state.db(), user.id, user.token_version, state.jwt_lifetime_secs()).await {
        Ok(token) => Json(json!({
            "success": true,
            "data": {"token": token, "version": user.token_version, "user_id": user.id}
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "issuing a token failed");
            refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
