//! `GET /internal/state`: the state the filter pulls — live API keys (hashes only), users'
//! status and token versions, and the JWT verification keys — behind the feed's shared secret,
//! with an ETag so an unchanged state costs a 304 and no body.

use axum::extract::{Request, State};
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::bearer;
use super::{ApiError, AppState};
use crate::secrets;
use crate::jwt::{self, PublishedKey};
use crate::store::apps::{self, FeedKey};
use crate::store::users::{self, FeedUser};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Feed {
    keys: Vec<FeedKey>,
    users: Vec<FeedUser>,
    jwt_keys: Vec<PublishedKey>,
}

/// The feed, or 304 when `If-None-Match` names the current version.
pub async fn get_state(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let authorized = bearer(&request).is_some_and(|t| secrets::constant_time_eq(t, &state.inner.state_token));
    if !authorized {
        return Err(ApiError::Unauthorized);
    }
    // The signing key exists before the first login, so the filter can verify the first token.
    if let Err(e) = jwt::current_key(state.db()).await {
        tracing::error!(error = %e, "no usable JWT signing key");
    }
    let feed = Feed {
        keys: apps::feed_keys(state.db()).await?,
        users: users::feed_users(state.db()).await?,
        jwt_keys: jwt::published_keys(state.db(), state.jwt_lifetime_secs()).await?,
    };
    let body = serde_json::to_vec(&feed).unwrap_or_default();
    let etag = format!("\"{}\"", &secrets::hash(&body)[..32]);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let unchanged = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, etag_value)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [(ETAG, etag_value), (axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}
