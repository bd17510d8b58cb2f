//! Deltas of the state feed: a puller that holds version `since` of epoch `epoch`
//! (`GET /internal/state?since=&epoch=`) is answered with the contract's
//! [`FeedDelta`] — what changed after `since`, as it is now, and the whole JWT key set — marked
//! by the [`DELTA_HEADER`] header, when the change log (migration 0009) still has every change
//! after `since`. Otherwise (another epoch, a version ahead of the current one, or changes
//! pruned from the log) the caller answers with the whole state.
//!
//! A delta is read in one transaction with the version its ETag names, by index from the log's
//! rows after `since` (see [`crate::store::feed_changes`]): its cost follows the number of
//! changes, not the size of the state. It is served whenever the log covers it, however many
//! changes that is: the log keeps at most 100,000, and each changed key or user is listed once,
//! so a delta is at worst about the size of the whole state. The last few deltas of the current
//! version are kept, by `since`, so pullers that wake together on one change share one build.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use sqlx::SqliteConnection;
use vllm_gateway_filter::feed::{FeedDelta, DELTA_HEADER};

use super::state_feed::{reply, to_json};
use super::state_version::Tag;
use super::{state_version, ApiError, AppState};
use crate::store::feed_changes::{self, Changes};

/// How many deltas of the current version are kept (by `since`).
const CACHED_DELTAS: usize = 8;

/// The last deltas built, by `since` and ETag; only the current ETag's are kept.
pub type DeltaCache = std::sync::Arc<tokio::sync::Mutex<VecDeque<(Since, Bytes)>>>;

/// A delta's starting point and the ETag of the version it brings the state to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    version: i64,
    etag: String,
}

/// 200 with what changed after version `since` of `epoch`; `None` when the log cannot tell
/// (the caller answers with the whole state).
pub(super) async fn delta(
    state: &AppState,
    since: i64,
    epoch: &str,
) -> Result<Option<Response>, ApiError> {
    let metrics = &state.metrics().feed;
    let mut cache = state.inner.delta_cache.lock().await;
    let mut tx = state.db().begin().await?;
    let tag = state_version::current(&mut tx, state.jwt_lifetime_secs()).await?;
    let current_epoch = feed_changes::epoch(&mut *tx).await?;
    let oldest = feed_changes::oldest_change(&mut *tx).await?;
    if epoch != current_epoch || !covers(since, tag.version, oldest) {
        metrics.delta_fallbacks.fetch_add(1, Relaxed);
        return Ok(None);
    }
    let key = Since { version: since, etag: tag.etag.clone() };
    let cached = cache.iter().find(|(k, _)| *k == key).map(|(_, body)| body.clone());
    let body = match cached {
        Some(body) => body,
        None => {
            let body = build(state, &mut tx, since, current_epoch, &tag).await?;
            remember(&mut cache, key, body.clone());
            body
        }
    };
    drop(cache);
    tx.commit().await?;
    metrics.deltas.fetch_add(1, Relaxed);
    Ok(Some(reply(&tag.etag, body, Some(delta_header(since)))))
}

/// Whether the log has every change after `since` up to `version`: nothing to tell (the same
/// version), or `since` is at most one before the oldest change kept. Log rows are contiguous
/// (every bump logs one; pruning removes the oldest).
fn covers(since: i64, version: i64, oldest: Option<i64>) -> bool {
    since == version || (since < version && oldest.is_some_and(|oldest| since >= oldest - 1))
}

/// The delta's JSON, read in the transaction of `tag`'s version.
async fn build(
    state: &AppState,
    tx: &mut SqliteConnection,
    since: i64,
    epoch: String,
    tag: &Tag,
) -> Result<Bytes, ApiError> {
    let started = Instant::now();
    let changes = Changes::after(tx, since).await?;
    let delta = FeedDelta {
        epoch,
        since,
        version: tag.version,
        keys: changes.keys,
        removed_keys: changes.removed_keys,
        users: changes.users,
        removed_users: changes.removed_users,
        jwt_keys: tag.jwt_keys.clone(),
    };
    let body = to_json(delta).await?;
    let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state.metrics().feed.last_delta_micros.store(took, Relaxed);
    Ok(body)
}

/// Keeps `body` for `key`, dropping deltas of older ETags and the oldest beyond
/// [`CACHED_DELTAS`].
fn remember(cache: &mut VecDeque<(Since, Bytes)>, key: Since, body: Bytes) {
    cache.retain(|(cached, _)| cached.etag == key.etag);
    if cache.len() >= CACHED_DELTAS {
        cache.pop_front();
    }
    cache.push_back((key, body));
}

/// The [`DELTA_HEADER`] of a delta from `since`.
fn delta_header(since: i64) -> (HeaderName, HeaderValue) {
    (HeaderName::from_static(DELTA_HEADER), HeaderValue::from(since))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_covers_the_same_version_and_anything_from_just_before_its_oldest_change() {
        assert!(covers(5, 5, None), "nothing changed: an empty delta");
        assert!(covers(5, 5, Some(2)));
        assert!(!covers(4, 5, None), "a change not logged (before the migration)");
        assert!(covers(4, 9, Some(5)), "every change from 5 on is logged");
        assert!(covers(8, 9, Some(5)));
        assert!(!covers(3, 9, Some(5)), "change 4 was pruned");
        assert!(!covers(10, 9, Some(5)), "ahead of the current version");
    }

    #[test]
    fn only_the_current_etags_deltas_are_kept_and_at_most_a_few() {
        let mut cache = VecDeque::new();
        let since = |version, etag: &str| Since { version, etag: etag.to_owned() };
        remember(&mut cache, since(1, "a"), Bytes::from_static(b"1"));
        remember(&mut cache, since(2, "b"), Bytes::from_static(b"2"));
        assert_eq!(
            cache.iter().map(|(k, _)| k.version).collect::<Vec<_>>(),
            [2],
            "a's deltas are stale"
        );
        for version in 3..20 {
            remember(&mut cache, since(version, "b"), Bytes::new());
        }
        assert_eq!(cache.len(), CACHED_DELTAS);
        assert_eq!(cache.back().map(|(k, _)| k.version), Some(19));
    }
}
