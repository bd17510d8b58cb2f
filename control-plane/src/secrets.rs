//! Secrets: API keys, admin and feed tokens, their hashes, and comparing them in constant time.

pub use gateway_os::{new_token, random_bytes};
use sha2::{Digest, Sha256};

/// Prefix of every API key (the replaced system's format: `sk-live-` + a UUID-shaped value).
pub const API_KEY_PREFIX: &str = "sk-live-";

/// A new API key: `sk-live-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, 128 random bits.
pub fn new_api_key() -> String {
    let h = hex::encode(random_bytes::<16>());
    format!("{API_KEY_PREFIX}{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Hex SHA-256 of a token (admin token, signing-key ids). An API key is hashed with the
/// contract's [`vllm_gateway_filter::feed::hash_key`] instead, the function the filter looks keys
/// up with, so the two sides cannot differ.
pub fn hash(secret: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(secret.as_ref()))
}

/// The part of a key shown in listings: `sk-live-` and four more characters.
pub fn display_prefix(api_key: &str) -> String {
    api_key.chars().take(API_KEY_PREFIX.len() + 4).collect()
}

/// The token of an `Authorization` value `Bearer <token>` (the scheme in any case).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether an `Authorization` value carries `expected` as its bearer token, compared in
/// constant time: the one check of the shared state token, on the state feed (HTTP) and on
/// the access-log stream (gRPC metadata).
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    authorization.and_then(bearer_token).is_some_and(|token| constant_time_eq(token, expected))
}

/// Words that mark a demo or placeholder token (compared in any case).
pub const PLACEHOLDER_WORDS: [&str; 6] =
    ["change-me", "changeme", "demo", "example", "placeholder", "secret"];

/// Why `token` looks like a demo or placeholder value rather than a random secret, if it does:
/// it contains one of [`PLACEHOLDER_WORDS`], or is one character repeated.
pub fn placeholder_reason(token: &str) -> Option<String> {
    let lower = token.to_lowercase();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| lower.contains(*w)) {
        return Some(format!("it contains `{word}`"));
    }
    let mut chars = token.chars();
    let first = chars.next()?;
    chars.all(|c| c == first).then(|| "it is one character repeated".to_owned())
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_have_the_replaced_systems_shape() {
        let key = new_api_key();
        let rest = key.strip_prefix("sk-live-").unwrap();
        let groups: Vec<usize> = rest.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(rest.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
        assert_ne!(new_api_key(), key);
        assert_eq!(display_prefix(&key).len(), 12);
    }

    #[test]
    fn hashes_and_compares() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
        assert_eq!(new_token().len(), 64);
    }

    #[test]
    fn demo_and_placeholder_tokens_are_recognised() {
        for token in [
            "compose-demo-state-token-change-me",
            "CHANGEME-please-1234",
            "my-Secret-token",
            "an-example-token",
            "xxxxxxxxxxxxxxxxxxxx",
            "placeholder",
        ] {
            assert!(placeholder_reason(token).is_some(), "{token}");
        }
        assert_eq!(placeholder_reason("aaaa").as_deref(), Some("it is one character repeated"));
        assert_eq!(placeholder_reason("x-Demo-y").as_deref(), Some("it contains `demo`"));
        for token in [
            new_token().as_str(),
            "bench-admin-token-4242-0badcafe",
            "feed-token-for-tests-0001",
            "",
        ] {
            assert_eq!(placeholder_reason(token), None, "{token}");
        }
    }

    #[test]
    fn bearer_values_match_only_the_expected_token() {
        assert!(bearer_matches(Some("Bearer tok"), "tok"));
        assert!(bearer_matches(Some(" bearer  tok "), "tok"));
        for value in
            [None, Some("tok"), Some("Basic tok"), Some("Bearer tok2"), Some("Bearer "), Some("")]
        {
            assert!(!bearer_matches(value, "tok"), "{value:?}");
        }
    }
}
