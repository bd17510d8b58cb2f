//! The [`Credentials`] the control plane feeds to the filter — everything it authenticates callers
//! with: API keys by hash (with their apps' rules), users' status and token versions, the JWT
//! verification keys — kept compact: the keys are one slice sorted by the 32 bytes of their
//! SHA-256 (no hex `String` per key, no hash-table slack), and keys with the same models and
//! limits share one copy of them. The feed's keys are read straight into that slice, one at a
//! time ([`read`]), so a state of 100,000 keys never exists twice while it is parsed.
//! A delta of the control plane moves the state on in place ([`delta`]): what changed is
//! replaced, nothing else is copied.
//!
//! The feed carries only SHA-256 hashes of API keys, never a key itself. A request's key is hashed
//! and looked up locally, a JWT is verified locally: no call-out per request (see
//! [`crate::auth`] for the rules, and for the one lookup a refused credential may get).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::auth::Authority;
use crate::error::GatewayError;
use crate::feed::{parse_key_hash, FeedKey, FeedUser, KeyHash, Limits, Status};
use crate::jwt::{self, JwtKeys};

mod delta;
mod read;

/// One API key as the filter knows it: 72 bytes in a wasm VM, its hash included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppKey {
    /// The app that owns the key.
    pub app_id: i64,
    /// The key's own id (a rotated key gets a new one).
    pub key_id: i64,
    /// The app's status.
    pub status: Status,
    /// When the app expires, in Unix seconds.
    pub expires_at: Option<i64>,
    /// What the app may use; shared by every key with the same rules.
    pub rules: Rc<AppRules>,
}

/// An app's models and limits: held once for all the keys that have the same.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct AppRules {
    /// The models the app may use; empty means all.
    pub models: Box<[String]>,
    /// The app's limits; `None` when nothing is limited.
    pub limits: Option<Rc<Limits>>,
}

impl AppRules {
    /// Whether the app may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

impl AppKey {
    /// The key of a feed entry and its hash; `None` when the hash is not 64 hex digits.
    pub fn from_feed(key: FeedKey, rules: &mut RuleSet) -> Option<(KeyHash, Self)> {
        let hash = parse_key_hash(&key.hash)?;
        let app_key = Self {
            app_id: key.app_id,
            key_id: key.key_id,
            status: key.status,
            expires_at: key.expires_at,
            rules: rules.intern(AppRules {
                models: key.models.into(),
                limits: key.limits.filter(|l| !l.is_empty()).map(Rc::new),
            }),
        };
        Some((hash, app_key))
    }

    /// Whether the app may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.rules.allows(model)
    }
}

/// A user as the filter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Whether the user may call the gateway.
    pub status: Status,
    /// The current token version: a JWT whose `ver` differs has been revoked.
    pub token_version: i64,
    /// The user's limits; `None` when nothing is limited.
    pub limits: Option<Rc<Limits>>,
}

impl From<&FeedUser> for User {
    fn from(user: &FeedUser) -> Self {
        let limits = user.limits.clone().filter(|l| !l.is_empty()).map(Rc::new);
        Self { status: user.status, token_version: user.token_version, limits }
    }
}

/// The distinct [`AppRules`] of a state: each is held once, however many keys have it.
#[derive(Debug, Default)]
pub struct RuleSet(HashSet<Rc<AppRules>>);

impl RuleSet {
    /// The shared copy of `rules`.
    pub fn intern(&mut self, rules: AppRules) -> Rc<AppRules> {
        if let Some(shared) = self.0.get(&rules) {
            return shared.clone();
        }
        let shared = Rc::new(rules);
        self.0.insert(shared.clone());
        shared
    }
}

/// Everything the filter authenticates callers with, as the control plane feeds it: every live API
/// key, by the SHA-256 of its plaintext; every user; the JWT verification keys; the version of the
/// control plane's state they are. (What a caller presents is a [`crate::credential::Credential`];
/// these are what it is checked against.)
#[derive(Debug, Default)]
pub struct Credentials {
    /// The database the version counts in.
    epoch: String,
    /// The control plane's state version.
    version: i64,
    /// Sorted by hash, each hash once.
    keys: Vec<(KeyHash, AppKey)>,
    users: HashMap<i64, User>,
    jwt_keys: JwtKeys,
    /// The rules the keys share.
    rules: RuleSet,
}

impl Credentials {
    /// Parses the control plane's state document (a [`crate::feed::Feed`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        read::parse(bytes)
    }

    /// The epoch and version of the control plane's state this is.
    pub fn position(&self) -> (&str, i64) {
        (&self.epoch, self.version)
    }

    /// The key with this hash.
    pub fn key(&self, hash: &KeyHash) -> Option<&AppKey> {
        let at = self.keys.binary_search_by(|(h, _)| h.cmp(hash)).ok()?;
        self.keys.get(at).map(|(_, key)| key)
    }

    /// The user with this id.
    pub fn user(&self, id: i64) -> Option<&User> {
        self.users.get(&id)
    }

    /// The keys JWTs are verified with.
    pub fn jwt_keys(&self) -> &JwtKeys {
        &self.jwt_keys
    }

    /// Checks a JWT at `now` (Unix seconds) against this state alone: its user id, or why it is
    /// refused.
    pub fn authorize_jwt(&self, token: &str, now: i64) -> Result<i64, GatewayError> {
        Authority::new(self, None).authorize_jwt(token, now).map(|(id, _)| id).map_err(|r| r.error)
    }

    /// Checks an API key at `now` (Unix seconds) against this state alone: the key, or why it is
    /// refused.
    pub fn authorize(&self, api_key: &str, now: i64) -> Result<&AppKey, GatewayError> {
        Authority::new(self, None).authorize_key(api_key, now).map_err(|r| r.error)
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
        self.keys.len()
    }

    /// Whether no key is known.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests;
