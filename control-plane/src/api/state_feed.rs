//! `GET /internal/state`: the state the filter pulls — live API keys (hashes only), users'
//! status and token versions, and the JWT verification keys — behind the feed's shared secret,
//! with an ETag so an unchanged state costs a 304 and no body. The ETag is a version counter that
//! triggers bump on every change the feed depends on (migration 0004), so a 304 costs two small
//! queries, and a changed state is built once and shared by every puller.

use axum::body::Bytes;
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

/// The last feed built, by its ETag: several Envoys pulling the same version share one build.
pub type FeedCache = std::sync::Arc<tokio::sync::Mutex<Option<(String, Bytes)>>>;

/// The feed, or 304 when `If-None-Match` names the current version.
pub async fn get_state(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let authorized = bearer(&request).is_some_and(|t| secrets::constant_time_eq(t, &state.inner.state_token));
    if !authorized {
        return Err(ApiError::Unauthorized);
    }
    // Retired signing keys leave the feed as time passes, so they are part of the version.
    let jwt_keys = jwt::published_keys(state.db(), state.jwt_lifetime_secs()).await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM state_version WHERE id = 1").fetch_one(state.db()).await?;
    let kids: Vec<&str> = jwt_keys.iter().map(|k| k.kid.as_str()).collect();
    let etag = format!("\"v{version}-{}\"", &secrets::hash(kids.join(","))[..12]);
    let etag_value = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\""));
    let unchanged = request
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, etag_value)]).into_response());
    }
    let mut cache = state.inner.feed_cache.lock().await;
    let body = match cache.as_ref() {
        Some((cached, body)) if *cached == etag => body.clone(),
        _ => {
            let feed = Feed {
                keys: apps::feed_keys(state.db()).await?,
                users: users::feed_users(state.db()).await?,
                jwt_keys,
            };
            let body = Bytes::from(serde_json::to_vec(&feed).unwrap_or_default());
            *cache = Some((etag.clone(), body.clone()));
            body
        }
    };
    drop(cache);
    Ok((
        StatusCode::OK,
        [(ETAG, etag_value), (axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}
