//! `GET /internal/state`: the whole state the filter pulls — live API keys (hashes only), users'
//! status and token versions, and the JWT verification keys — as the contract's
//! [`Feed`](vllm_gateway_filter::feed::Feed), behind the feed's shared secret.
//!
//! The ETag is the state's version ([`state_version`]), so an unchanged state costs a 304 and
//! two small queries; a changed one is built once (in one read transaction, so the body is the
//! version its ETag names) and shared by every puller. With `wait_ms`, a pull that already has
//! the current version is held until the version changes or the time is up
//! ([`super::long_poll`]).
//!
//! The whole state names its `epoch` and `version`; a puller that sends them back as `since`
//! and `epoch` is answered with a delta instead when the change log allows
//! ([`super::state_delta`]), a held poll included. A change builds nothing by itself: the whole
//! state is built only when someone asks for it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::SqliteConnection;
use vllm_gateway_filter::feed::Feed;

use super::auth::require_state_token;
use super::long_poll::MAX_WAIT;
use super::state_version::Tag;
use super::{state_delta, state_version, ApiError, AppState};
use crate::store::{feed, feed_changes};

/// The last state built, by its ETag: several Envoys pulling the same version share one build.
pub type FeedCache = std::sync::Arc<tokio::sync::Mutex<Option<(String, Bytes)>>>;

/// The query of `GET /internal/state`.
#[derive(Debug, Default, Deserialize)]
pub struct StateQuery {
    /// Hold an unchanged pull this many milliseconds (capped at 30,000); absent or 0: answer
    /// at once.
    wait_ms: Option<u64>,
    /// The version the puller holds ([`vllm_gateway_filter::feed::SINCE_PARAM`]): with `epoch`,
    /// ask for a delta from it.
    since: Option<i64>,
    /// The epoch of `since` ([`vllm_gateway_filter::feed::EPOCH_PARAM`]).
    epoch: Option<String>,
}

impl StateQuery {
    /// The version and epoch the puller holds, when it sent both.
    fn held(&self) -> Option<(i64, &str)> {
        Some((self.since?, self.epoch.as_deref()?))
    }
}

/// The state, or 304 when `If-None-Match` names the current version (after waiting for a
/// change, when `wait_ms` asks to).
pub async fn get_state(
    State(state): State<AppState>,
    query: Result<Query<StateQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_state_token(&state, &headers)?;
    let Query(query) = query.map_err(ApiError::from_query)?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let etag = current_etag(&state).await?;
    let unchanged = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if !unchanged {
        return answer(&state, &query).await;
    }
    if wait.is_zero() {
        return Ok(not_modified(&etag));
    }
    hold(&state, etag, wait, &query).await
}

/// 200 with a delta when the query asks for one and the change log allows, else with the whole
/// state.
async fn answer(state: &AppState, query: &StateQuery) -> Result<Response, ApiError> {
    if let Some((since, epoch)) = query.held() {
        if let Some(delta) = state_delta::delta(state, since, epoch).await? {
            return Ok(delta);
        }
    }
    whole_state(state).await
}

async fn current_etag(state: &AppState) -> Result<String, ApiError> {
    let mut conn = state.db().acquire().await?;
    Ok(state_version::current(&mut conn, state.jwt_lifetime_secs()).await?.etag)
}

fn not_modified(etag: &str) -> Response {
    (StatusCode::NOT_MODIFIED, [(ETAG, state_version::header(etag))]).into_response()
}

/// Holds a pull whose version `etag` is current until the version changes (the new state, or
/// the delta the query asks for) or `wait` passes (304). Holds no database connection meanwhile.
async fn hold(
    state: &AppState,
    etag: String,
    wait: Duration,
    query: &StateQuery,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics().feed;
    let Some(mut waiter) = state.inner.long_poll.waiter(state.db(), state.jwt_lifetime_secs())
    else {
        metrics.long_polls_refused.fetch_add(1, Relaxed);
        return Ok(not_modified(&etag));
    };
    let deadline = tokio::time::Instant::now() + wait;
    while waiter.next_change(&etag, deadline).await {
        // The watcher saw another version; the database has the last word.
        if current_etag(state).await? != etag {
            drop(waiter);
            metrics.long_polls_changed.fetch_add(1, Relaxed);
            return answer(state, query).await;
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
            let body = build(state, &mut tx, &tag).await?;
            *cache = Some((tag.etag.clone(), body.clone()));
            body
        }
    };
    drop(cache);
    tx.commit().await?;
    Ok(reply(&tag.etag, body, None))
}

/// 200 with a state's (or a delta's) JSON, its ETag, and `extra` (the delta header).
pub(super) fn reply(etag: &str, body: Bytes, extra: Option<(HeaderName, HeaderValue)>) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(ETAG, state_version::header(etag));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some((name, value)) = extra {
        headers.insert(name, value);
    }
    response
}

/// The state's JSON, read in the transaction of its version `tag` (which published its JWT
/// keys).
async fn build(state: &AppState, tx: &mut SqliteConnection, tag: &Tag) -> Result<Bytes, ApiError> {
    let started = Instant::now();
    let feed = Feed {
        epoch: feed_changes::epoch(&mut *tx).await?,
        version: tag.version,
        keys: feed::keys(&mut *tx).await?,
        users: feed::users(&mut *tx).await?,
        jwt_keys: tag.jwt_keys.clone(),
    };
    let body = to_json(feed).await?;
    let metrics = &state.metrics().feed;
    metrics.builds.fetch_add(1, Relaxed);
    metrics
        .last_build_micros
        .store(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), Relaxed);
    Ok(body)
}

/// `value` as JSON, written off the async workers (a large state takes tens of milliseconds).
pub(super) async fn to_json<T: Serialize + Send + 'static>(value: T) -> Result<Bytes, ApiError> {
    let fail =
        |e: &dyn std::fmt::Display| ApiError::Internal(format!("serialising the state: {e}"));
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&value))
        .await
        .map_err(|e| fail(&e))?
        .map_err(|e| fail(&e))?;
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use vllm_gateway_filter::feed::{EPOCH_PARAM, SINCE_PARAM};

    use super::*;

    #[test]
    fn the_query_reads_the_contracts_parameter_names() {
        let text = format!("{SINCE_PARAM}=7&{EPOCH_PARAM}=e1&wait_ms=5");
        let query: StateQuery = parse_query(&text);
        assert_eq!((query.held(), query.wait_ms), (Some((7, "e1")), Some(5)));
        assert_eq!(parse_query(&format!("{SINCE_PARAM}=7")).held(), None, "no epoch: no delta");
    }

    fn parse_query(text: &str) -> StateQuery {
        let uri: axum::http::Uri = format!("/internal/state?{text}").parse().unwrap();
        Query::<StateQuery>::try_from_uri(&uri).unwrap().0
    }
}
