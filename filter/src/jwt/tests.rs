//! Verification against tokens signed here, and forgeries: `alg: none`, tampered claims, a
//! key that was never published, a foreign `kid`, expired and not-yet-valid tokens.

use chrono::{DateTime, Utc};
use jwt_compact::{Claims, Header};

use super::*;

/// Two fixed Ed25519 key pairs (seeds 0x07… and 0x09…): secret key hex, public key hex.
const KEY_A: (&str, &str) = (
    "0707070707070707070707070707070707070707070707070707070707070707ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
    "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c",
);
const KEY_B: (&str, &str) = (
    "0909090909090909090909090909090909090909090909090909090909090909fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618",
    "fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618",
);
const NOW: i64 = 1_800_000_000;

type SecretKey = <Ed25519 as jwt_compact::Algorithm>::SigningKey;

fn keys() -> JwtKeys {
    JwtKeys::new(vec![PublishedKey { kid: "k1".into(), alg: "EdDSA".into(), public_key_hex: KEY_A.1.into() }])
}

#[derive(serde::Serialize)]
struct Custom<'a> {
    sub: &'a str,
    ver: i64,
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn sign(secret_hex: &str, kid: &str, sub: &str, exp: Option<i64>, nbf: Option<i64>) -> String {
    let key = SecretKey::from_slice(&decode_hex(secret_hex).unwrap()).unwrap();
    let mut claims = Claims::new(Custom { sub, ver: 3 });
    claims.expiration = exp.map(at);
    claims.not_before = nbf.map(at);
    claims.issued_at = Some(at(NOW - 10));
    Ed25519.token(&Header::empty().with_key_id(kid), &claims, &key).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[test]
fn a_good_token_verifies() {
    let token = sign(KEY_A.0, "k1", "42", Some(NOW + 600), None);
    assert_eq!(keys().verify(&token, NOW), Ok(JwtSubject { user_id: 42, version: 3 }));
    assert!(looks_like_jwt(&token));
    assert!(!looks_like_jwt("sk-live-a.b.c"));
}

#[test]
fn expiry_and_maturity_allow_only_the_leeway() {
    let token = sign(KEY_A.0, "k1", "42", Some(NOW - 10), None);
    assert!(keys().verify(&token, NOW).is_ok(), "within the leeway");
    let token = sign(KEY_A.0, "k1", "42", Some(NOW - 31), None);
    assert_eq!(keys().verify(&token, NOW), Err(GatewayError::ExpiredCredential));
    let token = sign(KEY_A.0, "k1", "42", None, None);
    assert_eq!(keys().verify(&token, NOW), Err(GatewayError::InvalidCredential), "exp is required");
    let token = sign(KEY_A.0, "k1", "42", Some(NOW + 600), Some(NOW + 120));
    assert_eq!(keys().verify(&token, NOW), Err(GatewayError::InvalidCredential), "not valid yet");
}

#[test]
fn forgeries_are_refused() {
    let good = sign(KEY_A.0, "k1", "42", Some(NOW + 600), None);
    let parts: Vec<&str> = good.split('.').collect();

    let none_header = b64url(br#"{"alg":"none","kid":"k1"}"#);
    let alg_none = format!("{none_header}.{}.", parts[1]);
    assert_eq!(keys().verify(&alg_none, NOW), Err(GatewayError::InvalidCredential));

    let tampered_claims = b64url(format!(r#"{{"exp":{},"sub":"1","ver":3}}"#, NOW + 600).as_bytes());
    let tampered = format!("{}.{tampered_claims}.{}", parts[0], parts[2]);
    assert_eq!(keys().verify(&tampered, NOW), Err(GatewayError::InvalidCredential));

    let wrong_key = sign(KEY_B.0, "k1", "42", Some(NOW + 600), None);
    assert_eq!(keys().verify(&wrong_key, NOW), Err(GatewayError::InvalidCredential));

    let unknown_kid = sign(KEY_A.0, "k9", "42", Some(NOW + 600), None);
    assert_eq!(keys().verify(&unknown_kid, NOW), Err(GatewayError::InvalidCredential));

    let hs256 = format!("{}.{}.{}", b64url(br#"{"alg":"HS256","kid":"k1"}"#), parts[1], parts[2]);
    assert_eq!(keys().verify(&hs256, NOW), Err(GatewayError::InvalidCredential));

    let not_a_user = sign(KEY_A.0, "k1", "admin", Some(NOW + 600), None);
    assert_eq!(keys().verify(&not_a_user, NOW), Err(GatewayError::InvalidCredential));

    for garbage in ["", "a.b.c", "....", "eyJ.eyJ.", "\u{ff}.\u{fe}.\u{fd}"] {
        assert_eq!(keys().verify(garbage, NOW), Err(GatewayError::InvalidCredential), "{garbage:?}");
    }
}

#[test]
fn malformed_published_keys_are_skipped() {
    let keys = JwtKeys::new(vec![
        PublishedKey { kid: "bad".into(), alg: "EdDSA".into(), public_key_hex: "zz".into() },
        PublishedKey { kid: "short".into(), alg: "EdDSA".into(), public_key_hex: "abcd".into() },
        PublishedKey { kid: "rsa".into(), alg: "RS256".into(), public_key_hex: KEY_A.1.into() },
        PublishedKey { kid: "k1".into(), alg: "EdDSA".into(), public_key_hex: KEY_A.1.into() },
    ]);
    assert_eq!(keys.len(), 1);
}

#[test]
fn the_fed_user_state_decides_revocation_and_status() {
    use crate::keys::KeyState;
    let doc = serde_json::json!({
        "keys": [],
        "users": [
            {"id": 42, "status": "enabled", "tokenVersion": 3},
            {"id": 43, "status": "enabled", "tokenVersion": 4},
            {"id": 44, "status": "disabled", "tokenVersion": 3}
        ],
        "jwtKeys": [{"kid": "k1", "alg": "EdDSA", "publicKeyHex": KEY_A.1}]
    });
    let state = KeyState::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(state.jwt_key_count(), 1);
    let token = |sub: &str| sign(KEY_A.0, "k1", sub, Some(NOW + 600), None);
    assert_eq!(state.authorize_jwt(&token("42"), NOW), Ok(42));
    assert_eq!(state.authorize_jwt(&token("43"), NOW), Err(GatewayError::RevokedToken), "ver 3 < 4");
    assert_eq!(state.authorize_jwt(&token("44"), NOW), Err(GatewayError::UserDisabled));
    assert_eq!(state.authorize_jwt(&token("45"), NOW), Err(GatewayError::UserDisabled), "deleted user");
}
