//! Verification against tokens signed here, and forgeries: `alg: none`, tampered claims, a
//! key that was never published, a foreign `kid`, expired and not-yet-valid tokens.

use super::testing::{b64url, sign, KEY_A, KEY_B, NOW};
use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn keys() -> JwtKeys {
    JwtKeys::new(vec![PublishedKey {
        kid: "k1".into(),
        alg: "EdDSA".into(),
        public_key_hex: KEY_A.1.into(),
    }])
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
    assert_eq!(keys().verify(&token, NOW), Err(GatewayError::ExpiredToken), "not an API key's");
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

    let tampered_claims =
        b64url(format!(r#"{{"exp":{},"sub":"1","ver":3}}"#, NOW + 600).as_bytes());
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
        assert_eq!(
            keys().verify(garbage, NOW),
            Err(GatewayError::InvalidCredential),
            "{garbage:?}"
        );
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
    use crate::keys::Credentials;
    let doc = serde_json::json!({
        "keys": [],
        "users": [
            {"id": 42, "status": "enabled", "tokenVersion": 3},
            {"id": 43, "status": "enabled", "tokenVersion": 4},
            {"id": 44, "status": "disabled", "tokenVersion": 3}
        ],
        "jwtKeys": [{"kid": "k1", "alg": "EdDSA", "publicKeyHex": KEY_A.1}]
    });
    let state = Credentials::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(state.jwt_key_count(), 1);
    let token = |sub: &str| sign(KEY_A.0, "k1", sub, Some(NOW + 600), None);
    assert_eq!(state.authorize_jwt(&token("42"), NOW), Ok(42));
    assert_eq!(
        state.authorize_jwt(&token("43"), NOW),
        Err(GatewayError::RevokedToken),
        "ver 3 < 4"
    );
    assert_eq!(state.authorize_jwt(&token("44"), NOW), Err(GatewayError::UserDisabled));
    assert_eq!(
        state.authorize_jwt(&token("45"), NOW),
        Err(GatewayError::UserDisabled),
        "deleted user"
    );
}

#[test]
fn an_unknown_kid_names_the_user_to_ask_about() {
    let fresh = sign(KEY_B.0, "k2", "42", Some(NOW + 600), None);
    assert_eq!(keys().verify(&fresh, NOW), Err(GatewayError::InvalidCredential));
    assert_eq!(keys().unknown_key_subject(&fresh), Some(42));
    let known = sign(KEY_A.0, "k1", "42", Some(NOW + 600), None);
    assert_eq!(keys().unknown_key_subject(&known), None, "a known kid is never looked up");
    assert_eq!(
        keys().unknown_key_subject(&sign(KEY_B.0, "k2", "admin", Some(NOW + 600), None)),
        None
    );
    let parts: Vec<&str> = fresh.split('.').collect();
    let none = format!("{}.{}.", b64url(br#"{"alg":"none","kid":"k2"}"#), parts[1]);
    assert_eq!(keys().unknown_key_subject(&none), None);
    let no_kid = format!("{}.{}.{}", b64url(br#"{"alg":"EdDSA"}"#), parts[1], parts[2]);
    assert_eq!(keys().unknown_key_subject(&no_kid), None);
    assert_eq!(keys().unknown_key_subject("a.b.c"), None);
}
