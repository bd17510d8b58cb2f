//! The filter's state read from the database, as the shared contract's types
//! ([`vllm_gateway_filter::feed`]): every live key and every user for the whole state, one key
//! (by hash, through the `api_keys.hash` UNIQUE index) or one user (by id) for a lookup, and
//! the state version counter (migration 0004) the feed's ETag is made of. What changed after a
//! version (a delta) is read in [`super::feed_changes`]. An app's or a user's status is read
//! ([`status_from_row`]) and documented ([`StatusSchema`]) here for the admin API as well: apps
//! and users have the contract's [`Status`].
//!
//! Every function takes any executor, so a caller can read several of them in one transaction
//! (one snapshot).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteExecutor};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
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
        status: status_from_row(row)?,
        expires_at: row.try_get("expires_at")?,
        models: models_from_row(row)?,
        limits: super::limits::from_row(row)?,
    })
}

/// The `status` column of an app or user row, as the contract's [`Status`] (stored as
/// [`Status::as_str`] writes it; a CHECK constraint allows nothing else). Anything else would
/// read as disabled: refused rather than served.
pub(super) fn status_from_row(row: &SqliteRow) -> Result<Status, sqlx::Error> {
    let text: &str = row.try_get("status")?;
    Ok(text.parse().unwrap_or(Status::Disabled))
}

/// The contract's [`Status`] in the OpenAPI document (the contract knows nothing of OpenAPI):
/// a string, one of the statuses as the contract serialises them.
pub struct StatusSchema;

impl utoipa::PartialSchema for StatusSchema {
    fn schema() -> RefOr<Schema> {
        let names = Status::ALL.map(|status| serde_json::to_value(status).unwrap_or_default());
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names))
            .description(Some(
                "Whether an app or a user may be used: `enabled` (requests are served) or \
                 `disabled` (requests are refused with 403).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for StatusSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Status".into()
    }
}

/// The columns [`feed_user`] reads, from `users`.
pub(super) const SELECT_USER: &str = "SELECT id, status, token_version, limits FROM users";

/// A row of [`SELECT_USER`] as the feed sends it.
pub(super) fn feed_user(row: &SqliteRow) -> Result<FeedUser, sqlx::Error> {
    Ok(FeedUser {
        id: row.try_get("id")?,
        status: status_from_row(row)?,
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

    #[test]
    fn a_status_is_stored_and_documented_as_the_contract_serialises_it() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(StatusSchema::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["enabled", "disabled"]));
        for status in Status::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert!("Enabled".parse::<Status>().is_err());
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
