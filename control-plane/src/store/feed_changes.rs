//! The state's change log (migration 0009) read for the feed's deltas: the epoch the versions
//! count in, the oldest change still logged, and what changed after a version, as it is now.
//!
//! Every read joins the log's rows after `since` (a range of its primary key) to the tables by
//! their indexes: keys by `api_keys.hash` (UNIQUE) and `api_keys.app_id`, users by id. Nothing
//! scans every key for one change. Read them in one transaction with the version (one snapshot),
//! as [`Changes::after`] does.

use sqlx::{SqliteConnection, SqliteExecutor};
use vllm_gateway_filter::feed::{FeedKey, FeedUser};

use super::feed::{feed_key, feed_user, SELECT_KEY, SELECT_USER};

/// The hashes of keys changed after the parameter.
const CHANGED_HASHES: &str =
    "SELECT key_hash FROM state_changes WHERE version > ? AND key_hash IS NOT NULL";
/// The apps changed (or whose keys changed) after the parameter.
const CHANGED_APPS: &str =
    "SELECT app_id FROM state_changes WHERE version > ? AND app_id IS NOT NULL";
/// Changed users that exist, by id.
fn users_query() -> String {
    format!("{SELECT_USER} WHERE id IN (SELECT user_id FROM state_changes WHERE version > ? AND user_id IS NOT NULL) ORDER BY id")
}
/// Changed hashes that no live key has.
const REMOVED_KEYS: &str = "SELECT DISTINCT c.key_hash FROM state_changes c \
     WHERE c.version > ? AND c.key_hash IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.hash = c.key_hash AND k.retired_at IS NULL) ORDER BY c.key_hash";
/// Changed user ids that no user has.
const REMOVED_USERS: &str = "SELECT DISTINCT c.user_id FROM state_changes c \
     WHERE c.version > ? AND c.user_id IS NOT NULL \
     AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.user_id) ORDER BY c.user_id";

/// Live keys whose hash, or whose app, changed after the two parameters (the same version).
fn keys_query() -> String {
    format!("{SELECT_KEY} AND (k.hash IN ({CHANGED_HASHES}) OR k.app_id IN ({CHANGED_APPS})) ORDER BY k.id")
}

/// What changed after a version, as it is now (the JWT keys aside: a delta carries them whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Live keys that changed, and every live key of an app that changed, in key order.
    pub keys: Vec<FeedKey>,
    /// Hashes of keys that changed and are no longer live, sorted.
    pub removed_keys: Vec<String>,
    /// Users that changed and exist, in id order.
    pub users: Vec<FeedUser>,
    /// Ids of users that changed and no longer exist, sorted.
    pub removed_users: Vec<i64>,
}

impl Changes {
    /// Everything that changed after version `since`, read on `conn` (in the caller's
    /// transaction, so with the version it reads there).
    pub async fn after(conn: &mut SqliteConnection, since: i64) -> Result<Self, sqlx::Error> {
        Ok(Self {
            keys: changed_keys(&mut *conn, since).await?,
            removed_keys: removed_keys(&mut *conn, since).await?,
            users: changed_users(&mut *conn, since).await?,
            removed_users: removed_users(&mut *conn, since).await?,
        })
    }
}

/// The database's epoch: made once by migration 0009, never changed.
pub async fn epoch<'c>(db: impl SqliteExecutor<'c>) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT epoch FROM state_epoch WHERE id = 1").fetch_one(db).await
}

/// The version of the oldest change still logged; `None` when none is (nothing has changed
/// since the migration).
pub async fn oldest_change<'c>(db: impl SqliteExecutor<'c>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT MIN(version) FROM state_changes").fetch_one(db).await
}

/// Live keys whose hash changed after `since`, or whose app did (or whose app's keys did).
pub async fn changed_keys<'c>(
    db: impl SqliteExecutor<'c>,
    since: i64,
) -> Result<Vec<FeedKey>, sqlx::Error> {
    sqlx::query(&keys_query())
        .bind(since)
        .bind(since)
        .try_map(|row| feed_key(&row))
        .fetch_all(db)
        .await
}

/// Hashes of keys that changed after `since` and are not live now (deleted, retired, their app
/// deleted).
pub async fn removed_keys<'c>(
    db: impl SqliteExecutor<'c>,
    since: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(REMOVED_KEYS).bind(since).fetch_all(db).await
}

/// Users that changed after `since` and exist now.
pub async fn changed_users<'c>(
    db: impl SqliteExecutor<'c>,
    since: i64,
) -> Result<Vec<FeedUser>, sqlx::Error> {
    sqlx::query(&users_query()).bind(since).try_map(|row| feed_user(&row)).fetch_all(db).await
}

/// Ids of users that changed after `since` and no longer exist.
pub async fn removed_users<'c>(
    db: impl SqliteExecutor<'c>,
    since: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(REMOVED_USERS).bind(since).fetch_all(db).await
}

#[cfg(test)]
mod tests;
