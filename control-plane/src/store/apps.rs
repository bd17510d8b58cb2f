//! Apps and their API keys.

use serde::Serialize;
use sqlx::FromRow;

use super::now_secs;
use crate::secrets;
use crate::Db;

/// An app as stored (never with a plaintext key).
#[derive(Debug, Clone, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Id.
    pub id: i64,
    /// Organisation the app belongs to.
    pub org_name: String,
    /// Free text.
    pub remark: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// When the app expires, as given (RFC 3339 with offset).
    pub expire_time: Option<String>,
    /// Display prefix of the live key.
    pub key_prefix: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A validated new app.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Organisation.
    pub org_name: String,
    /// Free text.
    pub remark: String,
    /// Expiry as given, and in Unix seconds.
    pub expire: Option<(String, i64)>,
}

const SELECT_APP: &str = "SELECT a.id, a.org_name, a.remark, a.status, a.expire_time, \
     (SELECT k.prefix FROM api_keys k WHERE k.app_id = a.id AND k.retired_at IS NULL ORDER BY k.id DESC LIMIT 1) AS key_prefix, \
     a.created_at, a.updated_at FROM apps a";

/// Creates an app and its first key; returns the app and the key's plaintext (shown once).
pub async fn create(db: &Db, new: &NewApp) -> Result<(App, String), sqlx::Error> {
    let now = now_secs();
    let key = secrets::new_api_key();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (org_name, remark, expire_time, expires_at, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&new.org_name)
    .bind(&new.remark)
    .bind(new.expire.as_ref().map(|e| e.0.as_str()))
    .bind(new.expire.as_ref().map(|e| e.1))
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (?, ?, ?, ?)")
        .bind(id)
        .bind(secrets::hash(&key))
        .bind(secrets::display_prefix(&key))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let app = get(db, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((app, key))
}

/// One app.
pub async fn get(db: &Db, id: i64) -> Result<Option<App>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_APP} WHERE a.id = ?")).bind(id).fetch_optional(db).await
}

/// A page of apps, newest first, and the total count.
pub async fn list(db: &Db, offset: i64, limit: i64) -> Result<(Vec<App>, i64), sqlx::Error> {
    let records = sqlx::query_as(&format!("{SELECT_APP} ORDER BY a.id DESC LIMIT ? OFFSET ?"))
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM apps").fetch_one(db).await?;
    Ok((records, total))
}

/// One live key as the filter needs it.
#[derive(Debug, Clone, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct FeedKey {
    /// SHA-256 of the key.
    pub hash: String,
    /// Owning app.
    pub app_id: i64,
    /// The key's id.
    pub key_id: i64,
    /// The app's status.
    pub status: String,
    /// The app's expiry, Unix seconds.
    pub expires_at: Option<i64>,
}

/// Every live (not retired) key, in a stable order.
pub async fn feed_keys(db: &Db) -> Result<Vec<FeedKey>, sqlx::Error> {
    sqlx::query_as(
        "SELECT k.hash, k.app_id, k.id AS key_id, a.status, a.expires_at \
         FROM api_keys k JOIN apps a ON a.id = k.app_id WHERE k.retired_at IS NULL ORDER BY k.id",
    )
    .fetch_all(db)
    .await
}
