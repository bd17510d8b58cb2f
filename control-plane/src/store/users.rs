//! Users (the replaced JWT gateway's accounts) and their token versions.

use serde::Serialize;
use sqlx::FromRow;

use super::now_secs;
use crate::Db;

/// A user as the admin API shows it (never with the password hash).
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Id (the JWT's `sub`).
    pub id: i64,
    /// Login e-mail, unique regardless of case.
    pub email: String,
    /// `enabled` or `disabled`.
    pub status: String,
    /// The version every valid JWT of this user carries as `ver`.
    pub token_version: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

const SELECT_USER: &str = "SELECT id, email, status, token_version, created_at, updated_at FROM users";

/// Whether a failed insert was a duplicate e-mail.
pub fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates a user.
pub async fn create(db: &Db, email: &str, password_hash: &str) -> Result<User, sqlx::Error> {
    let now = now_secs();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?) RETURNING id",
    )
    .bind(email)
    .bind(password_hash)
    .bind(now)
    .bind(now)
    .fetch_one(db)
    .await?;
    get(db, id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// One user.
pub async fn get(db: &Db, id: i64) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_USER} WHERE id = ?")).bind(id).fetch_optional(db).await
}

/// A user and its password hash, by e-mail (any case).
pub async fn by_email(db: &Db, email: &str) -> Result<Option<(User, String)>, sqlx::Error> {
    let user: Option<User> =
        sqlx::query_as(&format!("{SELECT_USER} WHERE email = ?")).bind(email).fetch_optional(db).await?;
    let Some(user) = user else { return Ok(None) };
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?").bind(user.id).fetch_one(db).await?;
    Ok(Some((user, hash)))
}

/// A page of users, newest first, and the total.
pub async fn list(db: &Db, offset: i64, limit: i64) -> Result<(Vec<User>, i64), sqlx::Error> {
    let records = sqlx::query_as(&format!("{SELECT_USER} ORDER BY id DESC LIMIT ? OFFSET ?"))
        .bind(limit)
        .bind(offset)
        .fetch_all(db)
        .await?;
    let total = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(db).await?;
    Ok((records, total))
}

/// Enables or disables a user; `None` if there is no such user.
pub async fn set_status(db: &Db, id: i64, status: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query("UPDATE users SET status = ?, updated_at = ? WHERE id = ?")
        .bind(status)
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
