//! Users (the replaced JWT gateway's accounts), their token versions and their limits.

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, Row};
use vllm_gateway_filter::feed::limits::Subject;
use vllm_gateway_filter::feed::{Limits, Status};

use super::feed::{status_from_row, StatusSchema};
use super::now_secs;
use crate::api::LimitsSchema;
use crate::ledger::usage::{usage, LimitUsage};
use crate::Db;

/// A user as the admin API shows it (never with the password hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id (the JWT's `sub`).
    pub id: i64,
    /// Login e-mail, unique regardless of case.
    pub email: String,
    /// Whether the user may log in and call with its JWTs.
    #[schema(value_type = StatusSchema)]
    pub status: Status,
    /// The version every valid JWT of this user carries as `ver`.
    pub token_version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Limits and budgets; `null` for none.
    #[schema(value_type = Option<LimitsSchema>)]
    pub limits: Option<Limits>,
    /// Where each limit stands now: one entry per limit (user-wide first, then per model).
    pub limit_usage: Vec<LimitUsage>,
}

impl FromRow<'_, SqliteRow> for User {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            status: status_from_row(row)?,
            token_version: row.try_get("token_version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            limits: super::limits::from_row(row)?,
            limit_usage: Vec::new(),
        })
    }
}

const SELECT_USER: &str =
    "SELECT id, email, status, token_version, created_at, updated_at, limits FROM users";

/// Whether a failed insert was a duplicate e-mail.
pub fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates a user with these limits.
pub async fn create(
    db: &Db,
    email: &str,
    password_hash: &str,
    limits: &Limits,
) -> Result<User, sqlx::Error> {
    let now = now_secs();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, limits, created_at, updated_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(super::limits::to_text(limits))
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await?;
    get(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// One user, with where its limits stand.
pub async fn get(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    let user: Option<User> =
        sqlx::query_as(&format!("{SELECT_USER} WHERE id = ?")).bind(id).fetch_optional(db).await?;
    match user {
        Some(user) => Ok(Some(with_usage(db, user).await?)),
        None => Ok(None),
    }
}

/// The user with its `limit_usage` filled in (nothing to read when it has no limits).
async fn with_usage(db: &Db, mut user: User) -> Result<User, sqlx::Error> {
    user.limit_usage = usage(db, Subject::User(user.id), user.limits.as_ref(), now_secs()).await?;
    Ok(user)
}

/// Replaces the user's limits (nothing limited: none); `None` if there is no such user. The
/// change reaches the filter as a state delta (the users triggers of migration 0009).
pub async fn set_limits(db: &Db, id: i64, limits: &Limits) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("UPDATE users SET limits = ?, updated_at = ? WHERE id = ?")
        .bind(super::limits::to_text(limits))
        .bind(now_secs())
        .bind(id)
        .execute(db)
        .await?;
    get(db, id).await
}

/// A user and its password hash, by e-mail (any case).
pub async fn by_email(db: &Db, email: &str) -> Result<Option<(User, String)>, sqlx::Error> {
    let user: Option<User> = sqlx::query_as(&format!("{SELECT_USER} WHERE email = ?"))
        .bind(email)
        .fetch_optional(db)
        .await?;
    let Some(user) = user else { return Ok(None) };
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(user.id)
        .fetch_one(db)
        .await?;
    Ok(Some((user, hash)))
}

/// A page of users, newest first, and the total.
pub async fn list(db: &Db, offset: i64, limit: i64) -> Result<(Vec<User>, i64), sqlx::Error> {
    let page: Vec<User> =
        sqlx::query_as(&format!("{SELECT_USER} ORDER BY id DESC LIMIT ? OFFSET ?"))
            .bind(limit)
            .bind(offset)
            .fetch_all(db)
            .await?;
    let mut records = Vec::with_capacity(page.len());
    for user in page {
        records.push(with_usage(db, user).await?);
    }
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(db).await?;
    Ok((records, total))
}

/// Enables or disables a user; `None` if there is no such user.
pub async fn set_status(db: &Db, id: i64, status: Status) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("UPDATE users SET status = ?, updated_at = ? WHERE id = ?")
        .bind(status.as_str())
        .bind(now_secs())
        .bind(id)
        .execute(db)
        .await?;
    get(db, id).await
}

/// Revokes every JWT the user has: bumps its token version.
pub async fn revoke_tokens(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("UPDATE users SET token_version = token_version + 1, updated_at = ? WHERE id = ?")
        .bind(now_secs())
        .bind(id)
        .execute(db)
        .await?;
    get(db, id).await
}
