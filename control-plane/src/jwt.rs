//! Signing the JWTs `/user/user_login` issues: EdDSA (Ed25519) keys generated on first start and
//! kept in the database, `kid` in the header, claims `sub`, `ver`, `iat`, `exp`. Rotating the key
//! keeps the old public key published until the tokens it signed have expired.

use chrono::DateTime;
use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Claims, Header};
use sqlx::SqliteExecutor;
use vllm_gateway_filter::feed::{PublishedKey, TokenClaims};

use crate::secrets;
use crate::store::now_secs;
use crate::Db;

type SecretKey = <Ed25519 as jwt_compact::Algorithm>::SigningKey;

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Reading or writing keys failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored key is unusable.
    #[error("stored signing key {0} is malformed")]
    BadKey(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The key that signs now; created if there is none.
pub async fn current_key(db: &Db) -> Result<(String, SecretKey), JwtError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT kid, secret_key_hex FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    let (kid, hex_key) = match row {
        Some(row) => row,
        None => create_key(db).await?,
    };
    let bytes = hex::decode(&hex_key).map_err(|_| JwtError::BadKey(kid.clone()))?;
    let key = SecretKey::from_slice(&bytes).map_err(|_| JwtError::BadKey(kid.clone()))?;
    Ok((kid, key))
}

async fn create_key(db: &Db) -> Result<(String, String), JwtError> {
    let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(
        secrets::random_bytes::<32>(),
    ));
    let kid = hex::encode(secrets::random_bytes::<8>());
    let secret = hex::encode(&pair.sk[..]);
    sqlx::query("INSERT INTO signing_keys (kid, secret_key_hex, public_key_hex, created_at) VALUES (?, ?, ?, ?)")
        .bind(&kid)
        .bind(&secret)
        .bind(hex::encode(&pair.pk[..]))
        .bind(now_secs())
        .execute(db)
        .await?;
    tracing::info!(kid, "created a JWT signing key");
    Ok((kid, secret))
}

/// Retires the signing key and makes a new one; returns the new `kid`.
pub async fn rotate(db: &Db) -> Result<String, JwtError> {
    sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
        .bind(now_secs())
        .execute(db)
        .await?;
    Ok(create_key(db).await?.0)
}

/// Keys the filter must accept, as the feed publishes them: the signing one, and retired ones
/// whose tokens may still be valid.
pub async fn published_keys<'c>(
    db: impl SqliteExecutor<'c>,
    token_lifetime_secs: i64,
) -> Result<Vec<PublishedKey>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT kid, public_key_hex FROM signing_keys \
         WHERE retired_at IS NULL OR retired_at + ? > ? ORDER BY created_at, kid",
    )
    .bind(token_lifetime_secs)
    .bind(now_secs())
    .fetch_all(db)
    .await?;
    let published =
        |(kid, public_key_hex)| PublishedKey { kid, alg: "EdDSA".to_owned(), public_key_hex };
    Ok(rows.into_iter().map(published).collect())
}

/// Issues a token for a user at its current token version.
pub async fn issue(
    db: &Db,
    user_id: i64,
    version: i64,
    lifetime_secs: i64,
) -> Result<String, JwtError> {
    let (kid, key) = current_key(db).await?;
    let now = now_secs();
    let at = |secs: i64| DateTime::from_timestamp(secs, 0);
    let mut claims = Claims::new(TokenClaims { sub: user_id.to_string(), ver: version });
    claims.issued_at = at(now);
    claims.expiration = at(now.saturating_add(lifetime_secs));
    Ed25519
        .token(&Header::empty().with_key_id(kid), &claims, &key)
        .map_err(|e| JwtError::Sign(e.to_string()))
}
