//! The filter's state read from the database, as the shared contract's types
//! ([`vllm_gateway_filter::feed`]): every live key and every user for the whole state, one key
//! (by hash, through the `api_keys.hash` UNIQUE index) or one user (by id) for a lookup, and
//! the state version counter (migration 0004) the feed's ETag is made of. What changed after a
//! version (a delta) is read in [`super::feed_changes`].
//!
//! Every function takes any executor, so a caller can read several of them in one transaction
//! (one snapshot).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteExecutor};
use vllm_gateway_filter::feed::{FeedKey, FeedUser, Status};

use super::apps::models_from_row;

/// The columns [`feed_key`] reads, from `api_keys k JOIN apps a`.
pub(super) const SELECT_KEY: &str =
    "SELECT k.hash, k.app_id, k.id AS key_id, a.status, a.expires_at, a.models, \
     a.limits FROM api_keys k JOIN apps a ON a.id = k.app_id \
     WHERE k.retired_at IS NULL";

/// A row of [`SELECT_KEY`] as the feed sends it.
pub(super) fn feed_key(row: &SqliteRow) -> Result<FeedKey, sqlx::Error> {
    Ok(FeedKey {
        hash: row.try_get("hash")?,
        app_id: row.try_get("app_id")?,
        key_id: row.try_get("key_id")?,
        status: status(row.try_get("status")?),
        expires_at: row.try_get("expires_at")?,
        models: models_from_row(row)?,
        limits: super::limits::from_row(row)?,
    })
}

/// A stored status (`enabled` or `disabled`, a CHECK constraint says); anything else would
/// be refused rather than served.
fn status(text: &str) -> Status {
    if text == "enabled" {
        Status::Enabled
    } else {
        Status::Disabled
    }
}

/// The columns [`feed_user`] reads, from `users`.
pub(super) const SELECT_USER: &str = "SELECT id, status, token_version, limits FROM users";

/// A row of [`SELECT_USER`] as the feed sends it.
pub(super) fn feed_user(row: &SqliteRow) -> Result<FeedUser, sqlx::Error> {
    Ok(FeedUser {
        id: row.try_get("id")?,
        status: status(row.try_get("status")?),
        token_version: row.try_get("token_version")?,
        limits: super::limits::from_row(row)?,
    })
}

/// Every live (not retired) key, whatever its app's status or expiry, in key order.
pub async fn keys<'c>(db: impl SqliteExecutor<'c>) -> Result<Vec<FeedKey>, sqlx::Error> {
    sqlx::query(&format!("{SELECT_KEY} ORDER BY k.id"))
        .try_map(|row| feed_key(&row))
        .fetch_all(db)
        .await
}

/// The live key with this hash, whatever its app's status or expiry; `None` when no live key
/// has it (unknown, its app deleted, or rotated out).
pub async fn key_by_hash<'c>(
    db: impl SqliteExecutor<'c>,
    hash: &str,
) -> Result<Option<FeedKey>, sqlx::Error> {
    sqlx::query(&format!("{SELECT_KEY} AND k.hash = ?"))
        .bind(hash)
        .try_map(|row| feed_key(&row))
        .fetch_optional(db)
        .await
}

/// Every user, in id order.
pub async fn users<'c>(db: impl SqliteExecutor<'c>) -> Result<Vec<FeedUser>, sqlx::Error> {
    sqlx::query(&format!("{SELECT_USER} ORDER BY id"))
        .try_map(|row| feed_user(&row))
        .fetch_all(db)
        .await
}

/// The user with this id, whatever its status.
pub async fn user_by_id<'c>(
    db: impl SqliteExecutor<'c>,
    id: i64,
) -> Result<Option<FeedUser>, sqlx::Error> {
    sqlx::query(&format!("{SELECT_USER} WHERE id = ?"))
        .bind(id)
        .try_map(|row| feed_user(&row))
        .fetch_optional(db)
        .await
}

/// The state version: bumped (by triggers) on every change of apps, keys, users or signing keys.
pub async fn version<'c>(db: impl SqliteExecutor<'c>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT version FROM state_version WHERE id = 1").fetch_one(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan of a lookup query: what SQLite will do, one line per step.
    async fn plan(db: &crate::Db, query: &str) -> Vec<String> {
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {query}"))
            .bind("x")
            .fetch_all(db)
            .await
            .unwrap();
        rows.iter().map(|r| r.get::<String, _>("detail")).collect()
    }

    #[tokio::test]
    async fn one_key_and_one_user_are_read_by_their_indexes_never_by_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("f.db").display().to_string()).await.unwrap();
        let key = plan(&db, &format!("{SELECT_KEY} AND k.hash = ?")).await;
        assert!(key.iter().any(|d| d.contains("USING INDEX") && d.contains("hash=?")), "{key:?}");
        let user = plan(&db, &format!("{SELECT_USER} WHERE id = ?")).await;
        for step in key.iter().chain(&user) {
            assert!(step.starts_with("SEARCH"), "a scan: {step} in {key:?} / {user:?}");
        }
        assert_eq!(key_by_hash(&db, "0".repeat(64).as_str()).await.unwrap(), None);
        assert_eq!(user_by_id(&db, 7).await.unwrap(), None);
        assert!(version(&db).await.unwrap() >= 1);
    }
}
