//! The admin token check on every `/api/*` route.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState};
use crate::secrets;

/// The bearer token of a request, if any.
pub(super) fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Lets the request through only with the admin token (compared by hash, in constant time).
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let token = bearer(&request).ok_or(ApiError::Unauthorized)?;
    if !secrets::constant_time_eq(&secrets::hash(token), &state.inner.admin_token_hash) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}
