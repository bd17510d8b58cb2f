//! `GET /internal/state`: the whole state the filter pulls — live API keys (hashes only), users'
//! status and token versions, and the JWT verification keys — as the contract's
//! [`Feed`](vllm_gateway_filter::feed::Feed), behind the feed's shared secret.
//!
//! The ETag is the state's version ([`state_version`]), so an unchanged state costs a 304 and
//! two small queries; a changed one is built once (in one read transaction, so the body is the
//! version its ETag names) and shared by every puller. With `wait_ms`, a pull that already has
//! the current version is held until the version changes or the time is up
//! ([`super::long_poll`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sqlx::SqliteConnection;
use vllm_gateway_filter::feed::{Feed, PublishedKey};

use super::auth::require_state_token;
use super::long_poll::MAX_WAIT;
use super::{state_version, ApiError, AppState};
use crate::store::feed;

/// The last state built, by its ETag: several Envoys pulling the same version share one build.
pub type FeedCache = std::sync::Arc<tokio::sync::Mutex<Option<(String, Bytes)>>>;

/// The query of `GET /internal/state`.
#[derive(Debug, Default, Deserialize)]
pub struct StateQuery {
    /// Hold an unchanged pull this many milliseconds (capped at 30,000); absent or 0: answer
    /// at once.
    wait_ms: Option<u64>,
}

/// The state, or 304 when `If-None-Match` names the current version (after waiting for a
/// change, when `wait_ms` asks to).
pub async fn get_state(
    State(state): State<AppState>,
    query: Result<Query<StateQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_state_token(&state, &headers)?;
    let wait = Duration::from_millis(query.map_err(ApiError::from_query)?.0.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let etag = current_etag(&state).await?;
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if !unchanged {
        return whole_state(&state).await;
    }
    if wait.is_zero() {
        return Ok(not_modified(&etag));
    }
    hold(&state, etag, wait).await
}

async fn current_etag(state: &AppState) -> Result<String, ApiError> {
    let mut conn = state.db().acquire().await?;
    Ok(state_version::current(&mut conn, state.jwt_lifetime_secs()).await?.etag)
}

fn not_modified(etag: &str) -> Response {
    (StatusCode::NOT_MODIFIED, [(ETAG, state_version::header(etag))]).into_response()
}

/// Holds a pull whose version `etag` is current until the version changes (the new state) or
/// `wait` passes (304). Holds no database connection meanwhile.
async fn hold(state: &AppState, etag: String, wait: Duration) -> Result<Response, ApiError> {
    let metrics = &state.metrics().feed;
    let Some(mut waiter) = state.inner.long_poll.waiter(state.db(), state.jwt_lifetime_secs()) else {
        metrics.long_polls_refused.fetch_add(1, Relaxed);
        return Ok(not_modified(&etag));
    };
    let deadline = tokio::time::Instant::now() + wait;
    while waiter.next_change(&etag, deadline).await {
        // The watcher saw another version; the database has the last word.
        if current_etag(state).await? != etag {
            drop(waiter);
            metrics.long_polls_changed.fetch_add(1, Relaxed);
            return whole_state(state).await;
        }
    }
    metrics.long_polls_timed_out.fetch_add(1, Relaxed);
    Ok(not_modified(&etag))
}

/// 200 with the current state: the cached build when it is of the current version, else a
/// new build (one at a time; the others wait for it and share it).
async fn whole_state(state: &AppState) -> Result<Response, ApiError> {
    let mut cache = state.inner.feed_cache.lock().await;
    let mut tx = state.db().begin().await?;
    let tag = state_version::current(&mut tx, state.jwt_lifetime_secs()).await?;
    let body = match cache.as_ref() {
        Some((cached, body)) if *cached == tag.etag => body.clone(),
        _ => {
            let body = build(state, &mut tx, tag.jwt_keys).await?;
            *cache = Some((tag.etag.clone(), body.clone()));
            body
        }
    };
    drop(cache);
    tx.commit().await?;
    let headers = [(ETAG, state_version::header(&tag.etag)), (CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    Ok((StatusCode::OK, headers, body).into_response())
}

/// The state's JSON, read in the transaction of its version (which published `jwt_keys`).
async fn build(state: &AppState, tx: &mut SqliteConnection, jwt_keys: Vec<PublishedKey>) -> Result<Bytes, ApiError> {
    let started = Instant::now();
    let feed = Feed { keys: feed::keys(&mut *tx).await?, users: feed::users(&mut *tx).await?, jwt_keys };
    // A large state takes tens of milliseconds to write out: off the async workers.
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&feed))
        .await
        .map_err(|e| ApiError::Internal(format!("serialising the state: {e}")))?
        .map_err(|e| ApiError::Internal(format!("serialising the state: {e}")))?;
    let metrics = &state.metrics().feed;
    metrics.builds.fetch_add(1, Relaxed);
    metrics.last_build_micros.store(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), Relaxed);
    Ok(Bytes::from(body))
}
