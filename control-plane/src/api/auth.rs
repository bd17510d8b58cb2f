//! The token checks: the admin token on every `/api/*` route, the state feed's shared secret on
//! the filter's `/internal/*` routes. Both are compared in constant time.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::secrets;

/// The `Authorization` value of a request, if any.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()
}

/// Lets the request through only with the admin token (compared by hash, in constant time).
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = authorization(request.headers())
        .and_then(secrets::bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    if !secrets::constant_time_eq(&secrets::hash(token), &state.inner.admin_token_hash) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

/// `Ok` only when the request carries the state feed's token.
pub(super) fn require_state_token(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let authorized = secrets::bearer_matches(authorization(headers), &state.inner.state_token);
    authorized.then_some(()).ok_or(ApiError::Unauthorized)
}
