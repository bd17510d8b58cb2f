//! `POST /user/user_login`, exactly as the replaced JWT gateway answered it:
//! `{"success":true,"data":{"token","version","user_id"}}`, or `{"success":false,"message"}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use crate::store::users;
use crate::{jwt, password};

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

/// Checks the password (the same time for an unknown e-mail) and issues a JWT:
/// `{"success":true,"data":{"token","version","user_id"}}`.
#[utoipa::path(post, path = "/user/user_login", tag = "users", request_body = Login, security(()),
    responses((status = 200, description = "`{\"success\":true,\"data\":{\"token\",\"version\",\"user_id\"}}`"),
        (status = 401, description = "`{\"success\":false,\"message\"}`: wrong e-mail or password"),
        (status = 403, description = "`{\"success\":false,\"message\"}`: the user is disabled")))]
pub async fn login(State(state): State<AppState>, body: Result<Json<Login>, axum::extract::rejection::JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return refused(StatusCode::BAD_REQUEST, "send {\"email\",\"password\"} as JSON");
    };
    let found = match users::by_email(state.db(), body.email.trim()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "login lookup failed");
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matches = password::verify(body.password, hash).await;
    let Some(user) = user.filter(|_| matches) else {
        return refused(StatusCode::UNAUTHORIZED, "invalid email or password");
    };
    if user.status != "enabled" {
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
