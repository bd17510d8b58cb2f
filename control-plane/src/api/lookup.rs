//! `GET /internal/lookup?keyHash=<64 hex>&userId=<id>`: the state of one credential, for a
//! filter that does not know it yet (a key created, rotated or re-enabled a moment ago; a user
//! who has just logged in). Answered with the contract's
//! [`Feed`](vllm_gateway_filter::feed::Feed) holding the live key with that hash (whatever its
//! app's status or expiry; absent when there is none), the user with that id (whatever its
//! status) and the current JWT keys, and with the state version of the answer as its `ETag`.
//! Single-row reads by index only, in one read transaction with the version.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::ETAG;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use vllm_gateway_filter::feed::Feed;

use super::auth::require_state_token;
use super::{state_version, ApiError, AppState};
use crate::store::feed;

/// The query of `GET /internal/lookup`: one or both.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupQuery {
    /// Hex SHA-256 of an API key (`hash_key`), 64 digits.
    key_hash: Option<String>,
    /// A user's id (a JWT's `sub`).
    user_id: Option<i64>,
}

/// The key and the user asked about, and the JWT keys.
pub async fn lookup(
    State(state): State<AppState>,
    query: Result<Query<LookupQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_state_token(&state, &headers)?;
    let Query(LookupQuery { key_hash, user_id }) = query.map_err(ApiError::from_query)?;
    let key_hash = key_hash.as_deref().map(parse_key_hash).transpose()?;
    if key_hash.is_none() && user_id.is_none() {
        return Err(ApiError::invalid("keyHash", "keyHash, userId or both are required"));
    }
    let mut tx = state.db().begin().await?;
    let tag = state_version::current(&mut tx, state.jwt_lifetime_secs()).await?;
    let key = match &key_hash {
        Some(hash) => feed::key_by_hash(&mut *tx, hash).await?,
        None => None,
    };
    let user = match user_id {
        Some(id) => feed::user_by_id(&mut *tx, id).await?,
        None => None,
    };
    tx.commit().await?;
    count(
        &state,
        key_hash.is_some().then_some(key.is_some()),
        user_id.is_some().then_some(user.is_some()),
    );
    let feed = Feed {
        keys: key.into_iter().collect(),
        users: user.into_iter().collect(),
        jwt_keys: tag.jwt_keys,
        ..Feed::default()
    };
    Ok(([(ETAG, state_version::header(&tag.etag))], Json(feed)).into_response())
}

/// A key hash as stored: 64 hex digits, lower case (upper case is accepted and lowered).
fn parse_key_hash(text: &str) -> Result<String, ApiError> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid("keyHash", "must be 64 hex digits: the SHA-256 of the key"))
    }
}

/// Counts what was asked (`Some`) and whether it was found.
fn count(state: &AppState, key_found: Option<bool>, user_found: Option<bool>) {
    let m = &state.metrics().feed;
    let counters = [
        (key_found, &m.key_lookups_found, &m.key_lookups_absent),
        (user_found, &m.user_lookups_found, &m.user_lookups_absent),
    ];
    for (asked, found, absent) in counters {
        if let Some(was_found) = asked {
            (if was_found { found } else { absent }).fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hash_is_64_hex_digits() {
        let hash = vllm_gateway_filter::feed::hash_key("sk-live-x");
        assert_eq!(parse_key_hash(&hash).unwrap(), hash);
        assert_eq!(parse_key_hash(&hash.to_ascii_uppercase()).unwrap(), hash);
        let bad = [
            String::new(),
            "abc".to_owned(),
            hash[1..].to_owned(),
            format!("{hash}0"),
            format!("g{}", &hash[1..]),
        ];
        for text in bad {
            assert!(parse_key_hash(&text).is_err(), "{text}");
        }
    }
}
