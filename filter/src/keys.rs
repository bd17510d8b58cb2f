//! The key state the control plane feeds to the filter — API keys by hash, users' status and
//! token versions, the JWT verification keys — and checking a caller's credential against it.
//!
//! The feed carries only SHA-256 hashes of API keys, never a key itself. A request's key is hashed
//! and looked up locally, a JWT is verified locally: no call-out per request.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::GatewayError;
use crate::jwt::{self, JwtKeys, PublishedKey};

/// The state as the control plane serves it (`GET /internal/state`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Feed {
    keys: Vec<FeedKey>,
    #[serde(default)]
    users: Vec<FeedUser>,
    #[serde(default)]
    jwt_keys: Vec<PublishedKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedUser {
    id: i64,
    status: AppStatus,
    token_version: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedKey {
    hash: String,
    app_id: i64,
    key_id: i64,
    status: AppStatus,
    expires_at: Option<i64>,
    #[serde(default)]
    models: Vec<String>,
}

/// Whether an app may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Requests are served.
    Enabled,
    /// Requests are refused with 403.
    Disabled,
}

/// One API key as the filter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKey {
    /// The app that owns the key.
    pub app_id: i64,
    /// The key's own id (a rotated key gets a new one).
    pub key_id: i64,
    /// The app's status.
    pub status: AppStatus,
    /// When the app expires, in Unix seconds.
    pub expires_at: Option<i64>,
    /// The models the app may use; empty means all.
    pub models: Vec<String>,
}

impl AppKey {
    /// Whether the app may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        model_allowed(&self.models, model)
    }
}

/// Whether an allow-list of models (empty: all) lets `model` through.
pub fn model_allowed(models: &[String], model: &str) -> bool {
    models.is_empty() || models.iter().any(|m| m == model)
}

/// Every live key, by the hex SHA-256 of its plaintext; every user; the JWT keys.
#[derive(Debug, Clone, Default)]
pub struct KeyState {
    by_hash: HashMap<String, AppKey>,
    /// User id → (status, current token version).
    users: HashMap<i64, (AppStatus, i64)>,
    jwt_keys: JwtKeys,
}

impl KeyState {
    /// Parses the control plane's state document.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let feed: Feed = serde_json::from_slice(bytes)?;
        let by_hash = feed
            .keys
            .into_iter()
            .map(|k| {
                let key = AppKey {
                    app_id: k.app_id,
                    key_id: k.key_id,
                    status: k.status,
                    expires_at: k.expires_at,
                    models: k.models,
                };
                (k.hash.to_ascii_lowercase(), key)
            })
            .collect();
        let users = feed.users.into_iter().map(|u| (u.id, (u.status, u.token_version))).collect();
        Ok(Self { by_hash, users, jwt_keys: JwtKeys::new(feed.jwt_keys) })
    }

    /// Checks a JWT at `now` (Unix seconds): its user id, or why it is refused.
    pub fn authorize_jwt(&self, token: &str, now: i64) -> Result<i64, GatewayError> {
        let subject = self.jwt_keys.verify(token, now)?;
        match self.users.get(&subject.user_id) {
            None => Err(GatewayError::UserDisabled),
            Some((AppStatus::Disabled, _)) => Err(GatewayError::UserDisabled),
            Some((_, version)) if *version != subject.version => Err(GatewayError::RevokedToken),
            Some(_) => Ok(subject.user_id),
        }
    }

    /// Number of JWT verification keys known.
    pub fn jwt_key_count(&self) -> usize {
        self.jwt_keys.len()
    }

    /// Whether a token is to be checked as a JWT (else as an API key).
    pub fn is_jwt(token: &str) -> bool {
        jwt::looks_like_jwt(token)
    }

    /// Number of keys known.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Checks an API key at `now` (Unix seconds): the key, or why it is refused.
    pub fn authorize(&self, api_key: &str, now: i64) -> Result<&AppKey, GatewayError> {
        let key = self
            .by_hash
            .get(&hash_key(api_key))
            .ok_or(GatewayError::InvalidCredential)?;
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(GatewayError::ExpiredCredential);
        }
        if key.status == AppStatus::Disabled {
            return Err(GatewayError::AppDisabled);
        }
        Ok(key)
    }
}

/// Hex SHA-256 of an API key, as the control plane stores it.
pub fn hash_key(api_key: &str) -> String {
    use std::fmt::Write;
    let digest = Sha256::digest(api_key.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> KeyState {
        let doc = serde_json::json!({
            "version": "v1",
            "keys": [
                {"hash": hash_key("sk-live-ok"), "appId": 1, "keyId": 10, "status": "enabled", "expiresAt": null, "models": ["a"], "limits": null},
                {"hash": hash_key("sk-live-off"), "appId": 2, "keyId": 20, "status": "disabled", "expiresAt": null},
                {"hash": hash_key("sk-live-old").to_uppercase(), "appId": 3, "keyId": 30, "status": "enabled", "expiresAt": 100}
            ]
        });
        KeyState::parse(doc.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn authorizes_by_status_and_expiry() {
        let s = state();
        assert_eq!(s.len(), 3);
        assert_eq!(s.authorize("sk-live-ok", 50).unwrap().app_id, 1);
        assert!(s.authorize("sk-live-ok", 50).unwrap().allows("a"));
        assert!(!s.authorize("sk-live-ok", 50).unwrap().allows("b"));
        assert!(s.authorize("sk-live-old", 50).unwrap().allows("anything"), "no list: all models");
        assert_eq!(s.authorize("sk-live-off", 50), Err(GatewayError::AppDisabled));
        assert_eq!(s.authorize("sk-live-old", 99).unwrap().key_id, 30);
        assert_eq!(s.authorize("sk-live-old", 100), Err(GatewayError::ExpiredCredential));
        assert_eq!(s.authorize("sk-live-nope", 0), Err(GatewayError::InvalidCredential));
        assert_eq!(s.authorize("", 0), Err(GatewayError::InvalidCredential));
    }

    #[test]
    fn refuses_a_malformed_feed() {
        assert!(KeyState::parse(b"{}").is_err());
        assert!(KeyState::parse(br#"{"keys":[{"hash":"x"}]}"#).is_err());
        assert!(KeyState::parse(br#"{"keys":[]}"#).unwrap().is_empty());
    }
}
