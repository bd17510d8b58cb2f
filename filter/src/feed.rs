//! The state feed's contract: what the control plane serves at [`STATE_PATH`] (and, for one
//! credential, at [`LOOKUP_PATH`]) and the filter reads. Declared once, here, and used by both
//! sides (the control plane serialises these very types), so a change that one side does not
//! follow fails to compile.
//!
//! The feed carries only SHA-256 hashes of API keys ([`hash_key`]), never a key itself.
//!
//! **Versions and deltas.** Every change the feed depends on bumps one counter, the state's
//! `version`; `epoch` names the database the counter belongs to (a new database starts a new
//! epoch, so its versions are never mistaken for another's). A puller that holds a state asks
//! `GET` [`STATE_PATH`]`?`[`SINCE_PARAM`]`=<version>&`[`EPOCH_PARAM`]`=<epoch>` and is answered
//! with a [`FeedDelta`] (marked by the [`DELTA_HEADER`] response header) when the control plane
//! still has every change after that version, else with the whole [`Feed`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod limits;
pub use limits::Limits;

/// Path of the whole state (ETag, `If-None-Match`).
pub const STATE_PATH: &str = "/internal/state";
/// Path of the state of one credential: `?keyHash=<hex>` and/or `?userId=<id>`; answered with a
/// [`Feed`] holding just that key and user (whatever their status) and the current JWT keys.
pub const LOOKUP_PATH: &str = "/internal/lookup";
/// Query parameter of [`STATE_PATH`]: the version the puller holds, to get a delta from.
pub const SINCE_PARAM: &str = "since";
/// Query parameter of [`STATE_PATH`]: the epoch of the version in [`SINCE_PARAM`].
pub const EPOCH_PARAM: &str = "epoch";
/// Response header of [`STATE_PATH`] marking the body as a [`FeedDelta`]; its value is the
/// delta's `since`. Without it the body is a whole [`Feed`].
pub const DELTA_HEADER: &str = "x-vllm-gateway-state-delta";

/// The whole state, or the part of it a lookup asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Feed {
    /// The database the version counts in (absent in a lookup's answer).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub epoch: String,
    /// The state's version (0 in a lookup's answer).
    #[serde(default)]
    pub version: i64,
    /// Live API keys (a key of a deleted app, or a rotated-out key, is absent).
    pub keys: Vec<FeedKey>,
    /// Every user.
    #[serde(default)]
    pub users: Vec<FeedUser>,
    /// The keys JWTs are verified with.
    #[serde(default)]
    pub jwt_keys: Vec<PublishedKey>,
}

/// What changed after version `since`, as of version `version` (same epoch): applied to a state
/// of any version from `since` to `version`, it gives the state of `version`. A key or user that
/// changed in between is listed once, as it is now (or as removed); the JWT keys are always the
/// whole current set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedDelta {
    /// The database the versions count in.
    pub epoch: String,
    /// The version the delta starts after.
    pub since: i64,
    /// The version it brings the state to.
    pub version: i64,
    /// Live keys that changed or are new, and every live key of an app that changed.
    #[serde(default)]
    pub keys: Vec<FeedKey>,
    /// Hashes of keys that are no longer live (deleted, rotated out, their app deleted).
    #[serde(default)]
    pub removed_keys: Vec<String>,
    /// Users that changed or are new.
    #[serde(default)]
    pub users: Vec<FeedUser>,
    /// Ids of deleted users.
    #[serde(default)]
    pub removed_users: Vec<i64>,
    /// The keys JWTs are verified with: the whole current set.
    #[serde(default)]
    pub jwt_keys: Vec<PublishedKey>,
}

/// One live API key and what its app may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedKey {
    /// Hex SHA-256 of the key ([`hash_key`]).
    pub hash: String,
    /// The app that owns the key.
    pub app_id: i64,
    /// The key's own id (a rotated key gets a new one).
    pub key_id: i64,
    /// The app's status.
    pub status: Status,
    /// When the app expires, Unix seconds.
    pub expires_at: Option<i64>,
    /// The models the app may use; empty means every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// The app's limits; `None` when nothing is limited.
    #[serde(default)]
    pub limits: Option<Limits>,
}

/// A user who may call the gateway with a JWT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedUser {
    /// The user's id (a JWT's `sub`).
    pub id: i64,
    /// The user's status.
    pub status: Status,
    /// The current token version: a JWT whose `ver` differs has been revoked.
    pub token_version: i64,
    /// The user's limits; `None` when nothing is limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// A JWT signing key as the control plane publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedKey {
    /// Key id (the token header's `kid`).
    pub kid: String,
    /// Algorithm; only `EdDSA` keys are used.
    pub alg: String,
    /// The Ed25519 public key, hex.
    pub public_key_hex: String,
}

/// The gateway's own claims in a user's JWT (beside `exp`, `iat`, `nbf`): signed by the control
/// plane at login, read by the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    /// The user's id, as a string.
    pub sub: String,
    /// The user's token version when the token was issued.
    pub ver: i64,
}

/// Whether an app or a user may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Requests are served.
    Enabled,
    /// Requests are refused with 403.
    Disabled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 2] = [Status::Enabled, Status::Disabled];

    /// The status as serialised (and as the control plane stores it): `enabled`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    /// The status [`Status::as_str`] writes as `text`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not a status (enabled or disabled)"))
    }
}

/// The SHA-256 of an API key, as bytes: how the filter keeps it (no hex `String` per key).
pub type KeyHash = [u8; 32];

/// Hex SHA-256 of an API key: how the control plane stores it and the feed names it.
pub fn hash_key(api_key: &str) -> String {
    key_hash_hex(&key_digest(api_key))
}

/// The SHA-256 of an API key ([`hash_key`] before it is written as hex).
pub fn key_digest(api_key: &str) -> KeyHash {
    Sha256::digest(api_key.as_bytes()).into()
}

/// A key hash written as the feed writes it: 64 lowercase hex digits.
pub fn key_hash_hex(hash: &KeyHash) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(64);
    for byte in hash {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A feed's key hash (64 hex digits, either case) as bytes; `None` when it is not one.
pub fn parse_key_hash(hex: &str) -> Option<KeyHash> {
    fn nibble(digit: u8) -> Option<u8> {
        char::from(digit).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *byte = nibble(*high)? << 4 | nibble(*low)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hashes_like_sha256sum() {
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn key_hashes_read_back_in_either_case() {
        let hex = hash_key("sk-live-a");
        let bytes = parse_key_hash(&hex).unwrap();
        assert_eq!(bytes, key_digest("sk-live-a"));
        assert_eq!(key_hash_hex(&bytes), hex);
        assert_eq!(parse_key_hash(&hex.to_uppercase()), Some(bytes));
        for bad in ["", "00", &hex[1..], &format!("{}zz", &hex[2..]), &format!("+{}", &hex[1..])] {
            assert_eq!(parse_key_hash(bad), None, "{bad}");
        }
        let mut multibyte = hex[..62].to_owned();
        multibyte.push('é');
        assert_eq!(parse_key_hash(&multibyte), None);
    }

    #[test]
    fn the_document_round_trips_in_camel_case_with_limits() {
        let feed = Feed {
            epoch: "e1".into(),
            version: 9,
            keys: vec![FeedKey {
                hash: hash_key("k"),
                app_id: 1,
                key_id: 2,
                status: Status::Enabled,
                expires_at: None,
                models: vec!["m".into()],
                limits: Some(Limits {
                    all: limits::Caps { requests_per_minute: Some(10), ..limits::Caps::default() },
                    ..Limits::default()
                }),
            }],
            users: vec![FeedUser {
                id: 3,
                status: Status::Disabled,
                token_version: 4,
                limits: None,
            }],
            jwt_keys: vec![PublishedKey {
                kid: "k1".into(),
                alg: "EdDSA".into(),
                public_key_hex: "00".into(),
            }],
        };
        let json = serde_json::to_value(&feed).unwrap();
        assert_eq!(json["keys"][0]["appId"], 1);
        assert_eq!(json["keys"][0]["limits"]["requestsPerMinute"], 10);
        assert_eq!(json["users"][0]["tokenVersion"], 4);
        assert_eq!(json["jwtKeys"][0]["publicKeyHex"], "00");
        assert_eq!(serde_json::from_value::<Feed>(json).unwrap(), feed);
    }

    #[test]
    fn a_delta_round_trips_in_camel_case() {
        let delta = FeedDelta {
            epoch: "e1".into(),
            since: 3,
            version: 5,
            removed_keys: vec![hash_key("gone")],
            removed_users: vec![7],
            ..FeedDelta::default()
        };
        let json = serde_json::to_value(&delta).unwrap();
        assert_eq!(json["removedKeys"][0], hash_key("gone"));
        assert_eq!(json["removedUsers"][0], 7);
        assert_eq!(serde_json::from_value::<FeedDelta>(json).unwrap(), delta);
        let lookup: Feed = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
        assert_eq!((lookup.epoch.as_str(), lookup.version), ("", 0));
    }
}
