//! Control-plane settings kept in the database: the admin token (hashed) and the state feed's
//! shared secret. A token generated here is handed to a `publish` step (written to an
//! owner-only file) before it is stored, so a token is never stored that nobody could read.

use crate::secrets;
use crate::Db;

const ADMIN_TOKEN_HASH: &str = "admin_token_hash";
const STATE_TOKEN: &str = "state_token";

async fn get(db: &Db, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
        .bind(key)
        .fetch_optional(db)
        .await
}

async fn put(db: &Db, key: &str, value: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(db)
        .await?;
    Ok(())
}

/// Why a token could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The database failed.
    #[error("reading or storing a token: {0}")]
    Database(#[from] sqlx::Error),
    /// A generated token could not be published (so it was not stored).
    #[error("{0}")]
    Publish(std::io::Error),
}

/// Settles the admin token and returns its hash: `given` (from the flag or environment) wins
/// and is stored hashed; otherwise the stored one stays; otherwise a new one is generated,
/// handed to `publish`, and stored hashed once published.
pub async fn admin_token(
    db: &Db,
    given: Option<&str>,
    publish: impl FnOnce(&str) -> std::io::Result<()>,
) -> Result<String, SettleError> {
    if let Some(token) = given {
        let hash = secrets::hash(token);
        put(db, ADMIN_TOKEN_HASH, &hash).await?;
        return Ok(hash);
    }
    if let Some(hash) = get(db, ADMIN_TOKEN_HASH).await? {
        return Ok(hash);
    }
    let token = secrets::new_token();
    publish(&token).map_err(SettleError::Publish)?;
    let hash = secrets::hash(&token);
    put(db, ADMIN_TOKEN_HASH, &hash).await?;
    Ok(hash)
}

/// Settles the state feed's secret the same way (stored as it is: the feed compares it).
pub async fn state_token(
    db: &Db,
    given: Option<&str>,
    publish: impl FnOnce(&str) -> std::io::Result<()>,
) -> Result<String, SettleError> {
    if let Some(token) = given {
        put(db, STATE_TOKEN, token).await?;
        return Ok(token.to_owned());
    }
    if let Some(token) = get(db, STATE_TOKEN).await? {
        return Ok(token);
    }
    let token = secrets::new_token();
    publish(&token).map_err(SettleError::Publish)?;
    put(db, STATE_TOKEN, &token).await?;
    Ok(token)
}
