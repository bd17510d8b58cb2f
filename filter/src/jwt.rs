//! Verifying the JWTs that `/user/user_login` issues, locally and without a call-out.
//!
//! A token is accepted only if its algorithm is on the allow-list (`EdDSA`; never `none`), its
//! `kid` names a key the control plane published, its signature verifies with that key, it has
//! an `exp` that has not passed and no `nbf` still ahead (both with [`LEEWAY_SECS`] of slack), and
//! its `sub` is a user id. Whether the user is enabled and `ver` is still the user's token version
//! is checked against the fed user state by [`crate::auth::Authority`].

use std::collections::HashMap;

use jwt_compact::alg::Ed25519;
use jwt_compact::{AlgorithmExt, Token, UntrustedToken, ValidationError};

use crate::error::GatewayError;
use crate::feed::{PublishedKey, TokenClaims};

/// Clock slack allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: i64 = 30;

/// The only algorithms accepted.
pub const ALGORITHMS: [&str; 1] = ["EdDSA"];

type PublicKey = <Ed25519 as jwt_compact::Algorithm>::VerifyingKey;

/// The claims the gateway reads from a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtSubject {
    /// The user (`sub`).
    pub user_id: i64,
    /// The user's token version when the token was issued (`ver`).
    pub version: i64,
}

/// The published verification keys, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct JwtKeys {
    by_kid: HashMap<String, PublicKey>,
}

impl JwtKeys {
    /// Keeps the usable keys (known algorithm, well-formed); others are skipped and logged.
    pub fn new(published: Vec<PublishedKey>) -> Self {
        let by_kid = published
            .into_iter()
            .filter(|k| ALGORITHMS.contains(&k.alg.as_str()))
            .filter_map(|k| {
                match decode_hex(&k.public_key_hex).and_then(|b| PublicKey::from_slice(&b).ok()) {
                    Some(key) => Some((k.kid, key)),
                    None => {
                        log::warn!("published JWT key {} is malformed; skipped", k.kid);
                        None
                    }
                }
            })
            .collect();
        Self { by_kid }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// Verifies a token at `now` (Unix seconds); see the module docs. A token past its `exp` is
    /// refused as [`GatewayError::ExpiredToken`] (log in again), anything else wrong with it as
    /// [`GatewayError::InvalidCredential`].
    pub fn verify(&self, token: &str, now: i64) -> Result<JwtSubject, GatewayError> {
        let untrusted = UntrustedToken::new(token).map_err(|_| GatewayError::InvalidCredential)?;
        if !ALGORITHMS.contains(&untrusted.algorithm()) {
            return Err(GatewayError::InvalidCredential);
        }
        let kid = untrusted.header().key_id.as_deref().ok_or(GatewayError::InvalidCredential)?;
        let key = self.by_kid.get(kid).ok_or(GatewayError::InvalidCredential)?;
        let token: Token<TokenClaims> =
            Ed25519.validator(key).validate(&untrusted).map_err(|e: ValidationError| {
                log::debug!("JWT refused: {e}");
                GatewayError::InvalidCredential
            })?;
        let claims = token.claims();
        let expires = claims.expiration.ok_or(GatewayError::InvalidCredential)?.timestamp();
        if expires.saturating_add(LEEWAY_SECS) < now {
            return Err(GatewayError::ExpiredToken);
        }
        if claims.not_before.is_some_and(|nbf| nbf.timestamp() > now.saturating_add(LEEWAY_SECS)) {
            return Err(GatewayError::InvalidCredential);
        }
        let user_id = claims.custom.sub.parse().map_err(|_| GatewayError::InvalidCredential)?;
        Ok(JwtSubject { user_id, version: claims.custom.ver })
    }

    /// When `token` names a `kid` these keys do not know, the user id it claims — unverified, so
    /// good only for asking the control plane about that user (and its current keys); `None`
    /// otherwise, or when the token is not a well-formed `EdDSA` token with a numeric `sub`.
    pub fn unknown_key_subject(&self, token: &str) -> Option<i64> {
        let untrusted = UntrustedToken::new(token).ok()?;
        if !ALGORITHMS.contains(&untrusted.algorithm()) {
            return None;
        }
        let kid = untrusted.header().key_id.as_deref()?;
        if self.by_kid.contains_key(kid) {
            return None;
        }
        let claims = untrusted.deserialize_claims_unchecked::<TokenClaims>().ok()?;
        claims.custom.sub.parse().ok()
    }
}

/// Whether a bearer token looks like a JWT (three dot-separated parts) rather than an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && !token.starts_with("sk-")
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
