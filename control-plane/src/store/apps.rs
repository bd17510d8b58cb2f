//! Apps and their API keys: creation with a first key, listing with filters, changes, status,
//! deletion and key rotation. Keys are stored as [`hash_key`] hashes, the function the filter
//! looks them up with; what the filter is fed is read in [`super::feed`].

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, QueryBuilder, Row, Sqlite};
use utoipa::ToSchema;
use vllm_gateway_filter::feed::hash_key;
use vllm_gateway_filter::feed::limits::Subject;
use vllm_gateway_filter::feed::{Limits, Status};

use super::feed::{status_from_row, StatusSchema};
use super::now_secs;
use crate::api::LimitsSchema;
use crate::ledger::usage::{usage, LimitUsage};
use crate::secrets;
use crate::Db;

/// An app as stored (never with a plaintext key).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// Id.
    pub id: i64,
    /// Organisation the app belongs to.
    pub org_name: String,
    /// Free text.
    pub remark: String,
    /// Whether its key is served.
    #[schema(value_type = StatusSchema)]
    pub status: Status,
    /// When the app expires, as given (RFC 3339 with offset); `null` for never.
    pub expire_time: Option<String>,
    /// Models the app may use; empty means every model.
    pub models: Vec<String>,
    /// Limits and budgets; `null` for none.
    #[schema(value_type = Option<LimitsSchema>)]
    pub limits: Option<Limits>,
    /// Where each limit stands now: one entry per limit (subject-wide first, then per model).
    pub limit_usage: Vec<LimitUsage>,
    /// Display prefix of the live key (`sk-live-` and four more characters).
    pub key_prefix: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; bumped by every change, key rotation included.
    pub updated_at: i64,
}

impl FromRow<'_, SqliteRow> for App {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            org_name: row.try_get("org_name")?,
            remark: row.try_get("remark")?,
            status: status_from_row(row)?,
            expire_time: row.try_get("expire_time")?,
            models: models_from_row(row)?,
            limits: super::limits::from_row(row)?,
            limit_usage: Vec::new(),
            key_prefix: row.try_get("key_prefix")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// The `models` column (a JSON array) of an app row.
pub(super) fn models_from_row(row: &SqliteRow) -> Result<Vec<String>, sqlx::Error> {
    let text: String = row.try_get("models")?;
    serde_json::from_str(&text)
        .map_err(|e| sqlx::Error::ColumnDecode { index: "models".into(), source: e.into() })
}

fn models_to_text(models: &[String]) -> String {
    serde_json::to_string(models).unwrap_or_else(|_| "[]".to_owned())
}

/// A validated new app.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    /// Organisation.
    pub org_name: String,
    /// Free text.
    pub remark: String,
    /// Expiry as given, and in Unix seconds.
    pub expire: Option<(String, i64)>,
    /// Allowed models; empty for all.
    pub models: Vec<String>,
    /// Limits (nothing limited: none).
    pub limits: Limits,
}

/// Validated changes to an app; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AppChanges {
    /// New organisation.
    pub org_name: Option<String>,
    /// New remark.
    pub remark: Option<String>,
    /// New expiry (`Some(None)` removes it).
    pub expire: Option<Option<(String, i64)>>,
    /// New allowed models.
    pub models: Option<Vec<String>>,
    /// New limits (the default removes them).
    pub limits: Option<Limits>,
}

/// Which apps a listing shows.
#[derive(Debug, Clone, Default)]
pub struct AppFilter {
    /// Part of the organisation name (case-insensitive for ASCII).
    pub org_name: Option<String>,
    /// Only apps with this status.
    pub status: Option<Status>,
}

const SELECT_APP: &str = "SELECT a.id, a.org_name, a.remark, a.status, a.expire_time, a.models, \
     a.limits, \
     (SELECT k.prefix FROM api_keys k WHERE k.app_id = a.id AND k.retired_at IS NULL ORDER BY k.id DESC LIMIT 1) AS key_prefix, \
     a.created_at, a.updated_at FROM apps a";

/// Creates an app and its first key; returns the app and the key's plaintext (shown once).
pub async fn create(db: &Db, new: &NewApp) -> Result<(App, String), sqlx::Error> {
    let now = now_secs();
    let mut tx = db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO apps (org_name, remark, expire_time, expires_at, models, limits, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(&new.org_name)
    .bind(&new.remark)
    .bind(new.expire.as_ref().map(|e| e.0.as_str()))
    .bind(new.expire.as_ref().map(|e| e.1))
    .bind(models_to_text(&new.models))
    .bind(super::limits::to_text(&new.limits))
    .bind(now)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let key = issue_key(&mut tx, id, now).await?;
    tx.commit().await?;
    let app = get(db, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((app, key))
}

/// Stores a new key for `app_id`; returns its plaintext.
async fn issue_key(
    tx: &mut sqlx::SqliteConnection,
    app_id: i64,
    now: i64,
) -> Result<String, sqlx::Error> {
    let key = secrets::new_api_key();
    sqlx::query("INSERT INTO api_keys (app_id, hash, prefix, created_at) VALUES (?, ?, ?, ?)")
        .bind(app_id)
        .bind(hash_key(&key))
        .bind(secrets::display_prefix(&key))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(key)
}

/// One app, with where its limits stand.
pub async fn get(db: &Db, id: i64) -> Result<Option<App>, sqlx::Error> {
    let app: Option<App> =
        sqlx::query_as(&format!("{SELECT_APP} WHERE a.id = ?")).bind(id).fetch_optional(db).await?;
    match app {
        Some(app) => Ok(Some(with_usage(db, app).await?)),
        None => Ok(None),
    }
}

/// The app with its `limit_usage` filled in (nothing to read when it has no limits).
async fn with_usage(db: &Db, mut app: App) -> Result<App, sqlx::Error> {
    app.limit_usage = usage(db, Subject::App(app.id), app.limits.as_ref(), now_secs()).await?;
    Ok(app)
}

/// A page of apps matching `filter`, newest first, and how many match in all.
pub async fn list(
    db: &Db,
    filter: &AppFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<App>, i64), sqlx::Error> {
    let mut page = QueryBuilder::<Sqlite>::new(SELECT_APP);
    push_filter(&mut page, filter);
    page.push(" ORDER BY a.id DESC LIMIT ").push_bind(limit).push(" OFFSET ").push_bind(offset);
    let mut records = Vec::new();
    for app in page.build_query_as().fetch_all(db).await? {
        records.push(with_usage(db, app).await?);
    }
    let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM apps a");
    push_filter(&mut count, filter);
    let total = count.build_query_scalar().fetch_one(db).await?;
    Ok((records, total))
}

fn push_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &AppFilter) {
    query.push(" WHERE 1 = 1");
    if let Some(part) = &filter.org_name {
        let escaped = part.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        query.push(" AND a.org_name LIKE ").push_bind(format!("%{escaped}%")).push(" ESCAPE '\\'");
    }
    if let Some(status) = filter.status {
        query.push(" AND a.status = ").push_bind(status.as_str());
    }
}

/// Applies `changes`; `None` when the app does not exist.
pub async fn update(db: &Db, id: i64, changes: &AppChanges) -> Result<Option<App>, sqlx::Error> {
    let mut query = QueryBuilder::<Sqlite>::new("UPDATE apps SET updated_at = ");
    query.push_bind(now_secs());
    if let Some(org_name) = &changes.org_name {
        query.push(", org_name = ").push_bind(org_name);
    }
    if let Some(remark) = &changes.remark {
        query.push(", remark = ").push_bind(remark);
    }
    if let Some(expire) = &changes.expire {
        query.push(", expire_time = ").push_bind(expire.as_ref().map(|e| e.0.clone()));
        query.push(", expires_at = ").push_bind(expire.as_ref().map(|e| e.1));
    }
    if let Some(models) = &changes.models {
        query.push(", models = ").push_bind(models_to_text(models));
    }
    if let Some(limits) = &changes.limits {
        query.push(", limits = ").push_bind(super::limits::to_text(limits));
    }
    query.push(" WHERE id = ").push_bind(id);
    if query.build().execute(db).await?.rows_affected() == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// Enables or disables an app; `None` when it does not exist.
pub async fn set_status(db: &Db, id: i64, status: Status) -> Result<Option<App>, sqlx::Error> {
    let done = sqlx::query("UPDATE apps SET status = ?, updated_at = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(now_secs())
        .bind(id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// Deletes an app and its keys (they leave the state feed); false when it did not exist.
pub async fn delete(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM apps WHERE id = ?").bind(id).execute(db).await?;
    Ok(done.rows_affected() > 0)
}

/// Retires the app's live key(s) and issues a new one; returns the app and the new key's
/// plaintext (shown once), or `None` when the app does not exist.
pub async fn rotate_key(db: &Db, id: i64) -> Result<Option<(App, String)>, sqlx::Error> {
    let now = now_secs();
    let mut tx = db.begin().await?;
    let touched = sqlx::query("UPDATE apps SET updated_at = ? WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("UPDATE api_keys SET retired_at = ? WHERE app_id = ? AND retired_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let key = issue_key(&mut tx, id, now).await?;
    tx.commit().await?;
    let app = get(db, id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok(Some((app, key)))
}
