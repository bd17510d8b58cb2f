//! `jwt` and `jwt_claims`: verifying users' JWTs ([`JwtKeys::verify`], and through the credentials,
//! [`Credentials::authorize_jwt`]) against one published key (`kid` `k1`) and one user (42, token
//! version 3), at a fixed clock ([`NOW`]).
//!
//! `jwt` takes the input as the token itself. `jwt_claims` takes a header, a line end and the
//! claims (no line end: [`DEFAULT_HEADER`] and all claims), and signs them, so that mutated
//! claims reach the checks behind the signature: one input in four is signed with a key that was
//! never published, and must never verify. A token that verifies is routed as a JWT, names no
//! unknown key, says `EdDSA`, and its `sub`, `ver`, `exp` and `nbf` are what the claims say.

use std::cell::RefCell;

use jwt_compact::alg::Ed25519;
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::Value;
use vllm_gateway_filter::jwt::{JwtSubject, LEEWAY_SECS};
use vllm_gateway_filter::keys::Credentials;

use super::json::unique_object;
use super::{outcome, Target};
use crate::rng::hash_bytes;

/// The clock the tokens are checked at (Unix seconds).
pub const NOW: i64 = 1_800_000_000;
/// The header `jwt_claims` signs when its input has none.
pub const DEFAULT_HEADER: &str = r#"{"alg":"EdDSA","kid":"k1"}"#;

/// The published key pair (seed 0x07…): secret key hex, public key hex.
const PUBLISHED: (&str, &str) = (
    "0707070707070707070707070707070707070707070707070707070707070707ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
    "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
);
/// A secret key that was never published (seed 0x09…).
const UNPUBLISHED_SECRET: &str =
    "0909090909090909090909090909090909090909090909090909090909090909fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618";

pub const TOKEN_TARGET: Target = Target {
    name: "jwt",
    about: "JWT verification of raw tokens",
    run: run_token,
    dictionary: &[
        b".",
        b"eyJ",
        b"eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0",
        b"eyJhbGciOiJub25lIn0",
        b"-",
        b"_",
        b"=",
        b"sk-",
        b"AAAA",
    ],
};

pub const CLAIMS_TARGET: Target = Target {
    name: "jwt_claims",
    about: "JWT claims and headers behind a valid signature",
    run: run_claims,
    dictionary: &[
        b"\"exp\":",
        b"\"nbf\":",
        b"\"iat\":",
        b"\"sub\":\"42\"",
        b"\"sub\":",
        b"\"ver\":3",
        b"\"ver\":",
        b"\"alg\":\"none\"",
        b"\"alg\":\"EdDSA\"",
        b"\"kid\":\"k1\"",
        b"\"kid\":\"k9\"",
        b"\"kid\":null",
        b"\"typ\":\"JWT\"",
        b"\"crit\":[\"x\"]",
        b"1800000000",
        b"1799999970",
        b"1800000030",
        b"-62135596800",
        b"8210298412799",
        b"\n",
    ],
};

/// Which key signs a built token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The key the state publishes as `k1`.
    Published,
    /// A key nobody published.
    Unpublished,
}

thread_local! {
    /// The state the tokens are checked against.
    static STATE: RefCell<Option<Credentials>> = const { RefCell::new(None) };
}

/// A token with `header` and `claims` (any bytes), signed by `signer`.
pub fn signed_token(header: &[u8], claims: &[u8], signer: Signer) -> String {
    let secret = match signer {
        Signer::Published => PUBLISHED.0,
        Signer::Unpublished => UNPUBLISHED_SECRET,
    };
    let key = <Ed25519 as Algorithm>::SigningKey::from_slice(&decode_hex(secret))
        .expect("a fixed, well-formed key");
    let mut token = format!("{}.{}", b64url(header), b64url(claims));
    let signature = Ed25519.sign(&key, token.as_bytes());
    token.push('.');
    token.push_str(&b64url(&signature.as_bytes()));
    token
}

fn run_token(input: &[u8]) -> u64 {
    let (verified, facts) = check(&String::from_utf8_lossy(input));
    outcome(&[u64::from(verified.is_ok()), facts])
}

fn run_claims(input: &[u8]) -> u64 {
    let (header, claims) = match input.iter().position(|&b| b == b'\n') {
        Some(end) => (&input[..end], &input[end + 1..]),
        None => (DEFAULT_HEADER.as_bytes(), input),
    };
    let signer =
        if hash_bytes(input).is_multiple_of(4) { Signer::Unpublished } else { Signer::Published };
    let (verified, facts) = check(&signed_token(header, claims, signer));
    if let Ok(subject) = verified {
        assert_eq!(signer, Signer::Published, "a token signed with an unpublished key verified");
        check_claims(header, claims, subject);
    }
    outcome(&[u64::from(verified.is_ok()), facts, u64::from(signer == Signer::Published)])
}

/// Checks a token every way the filter does; returns the verification and a few facts.
fn check(token: &str) -> (Result<JwtSubject, String>, u64) {
    STATE.with(|state| {
        let mut state = state.borrow_mut();
        let state = state.get_or_insert_with(key_state);
        let verified = state.jwt_keys().verify(token, NOW).map_err(|e| format!("{e:?}"));
        let unknown_key = state.jwt_keys().unknown_key_subject(token);
        let authorized = state.authorize_jwt(token, NOW);
        if let Ok(subject) = &verified {
            assert!(Credentials::is_jwt(token), "a verified token would be checked as an API key");
            assert_eq!(unknown_key, None, "a verified token names an unknown key");
            if let Ok(user) = authorized {
                assert_eq!(
                    (user, subject.version),
                    (42, 3),
                    "authorized a user or version never fed"
                );
            }
        }
        if let Ok(user) = authorized {
            assert_eq!(
                verified.as_ref().map(|s| s.user_id),
                Ok(user),
                "authorized without verifying"
            );
        }
        let error = match (&verified, &authorized) {
            (Err(e), _) => crate::rng::hash_bytes(e.as_bytes()),
            (_, Err(e)) => crate::rng::hash_bytes(format!("{e:?}").as_bytes()),
            _ => 0,
        };
        (verified, error ^ u64::from(unknown_key.is_some()))
    })
}

/// A token that verified says what its header and claims say.
fn check_claims(header: &[u8], claims: &[u8], subject: JwtSubject) {
    let header: Value = serde_json::from_slice(header)
        .unwrap_or_else(|e| panic!("a verified header is not JSON: {e}"));
    assert_eq!(
        header.get("alg").and_then(Value::as_str),
        Some("EdDSA"),
        "verified with another algorithm"
    );
    let Some(claims) = unique_object(claims) else { return };
    let sub = claims.get("sub").and_then(Value::as_str).and_then(|s| s.parse::<i64>().ok());
    assert_eq!(sub, Some(subject.user_id), "the subject is not the `sub` claim");
    assert_eq!(
        claims.get("ver").and_then(Value::as_i64),
        Some(subject.version),
        "the version is not the `ver` claim"
    );
    let seconds = |name: &str| {
        claims.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    };
    let exp = seconds("exp").unwrap_or_else(|| panic!("verified without `exp`"));
    assert!(exp.saturating_add(LEEWAY_SECS) >= NOW, "verified after `exp`");
    if let Some(nbf) = seconds("nbf") {
        assert!(nbf <= NOW.saturating_add(LEEWAY_SECS), "verified before `nbf`");
    }
}

/// The state: `k1` published, user 42 enabled at token version 3.
fn key_state() -> Credentials {
    let document = format!(
        r#"{{"epoch":"e","version":1,"keys":[],"users":[{{"id":42,"status":"enabled","tokenVersion":3}}],
            "jwtKeys":[{{"kid":"k1","alg":"EdDSA","publicKeyHex":"{}"}}]}}"#,
        PUBLISHED.1
    );
    Credentials::parse(document.as_bytes()).expect("the fixed state parses")
}

fn decode_hex(hex: &str) -> Vec<u8> {
    let digit = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
    hex.as_bytes()
        .chunks(2)
        .map(|pair| pair.iter().fold(0, |acc, &b| acc << 4 | digit(b)))
        .collect()
}

/// Base64url without padding, as JWTs write it.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> String {
        format!(r#"{{"sub":"42","ver":3,"exp":{exp}}}"#)
    }

    #[test]
    fn built_tokens_verify_only_with_the_published_key() {
        let good = signed_token(
            DEFAULT_HEADER.as_bytes(),
            claims(NOW + 600).as_bytes(),
            Signer::Published,
        );
        assert_eq!(check(&good).0, Ok(JwtSubject { user_id: 42, version: 3 }));
        let forged = signed_token(
            DEFAULT_HEADER.as_bytes(),
            claims(NOW + 600).as_bytes(),
            Signer::Unpublished,
        );
        assert!(check(&forged).0.is_err());
        assert!(check(&signed_token(
            DEFAULT_HEADER.as_bytes(),
            claims(NOW - 31).as_bytes(),
            Signer::Published
        ))
        .0
        .is_err());
        assert_eq!(b64url(b"\xfb\xff"), "-_8");
    }
}
