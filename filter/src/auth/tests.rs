//! The rules of [`Authority`]: the overlay's precedence over the full state, and which refusals
//! are worth a lookup.

use super::*;
use crate::feed::{hash_key, Feed, FeedKey, FeedUser, PublishedKey};
use crate::jwt::testing::{sign, sign_at_version, KEY_A, KEY_B, NOW};
use crate::lookup::LookupResult;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn published(kid: &str, public_hex: &str) -> PublishedKey {
    PublishedKey { kid: kid.into(), alg: "EdDSA".into(), public_key_hex: public_hex.into() }
}

fn feed_key(key: &str, status: Status, expires_at: Option<i64>) -> FeedKey {
    FeedKey {
        hash: hash_key(key),
        app_id: 1,
        key_id: 10,
        status,
        expires_at,
        models: vec![],
        limits: None,
    }
}

fn state() -> Credentials {
    let doc = serde_json::json!({
        "keys": [
            {"hash": hash_key("sk-live-off"), "appId": 2, "keyId": 20, "status": "disabled", "expiresAt": null},
            {"hash": hash_key("sk-live-old"), "appId": 3, "keyId": 30, "status": "enabled", "expiresAt": NOW - 1}
        ],
        "users": [
            {"id": 42, "status": "enabled", "tokenVersion": 3},
            {"id": 43, "status": "disabled", "tokenVersion": 3},
            {"id": 44, "status": "enabled", "tokenVersion": 2}
        ],
        "jwtKeys": [{"kid": "k1", "alg": "EdDSA", "publicKeyHex": KEY_A.1}]
    });
    Credentials::parse(doc.to_string().as_bytes()).unwrap()
}

fn answer(keys: Vec<FeedKey>, users: Vec<FeedUser>, jwt_keys: Vec<PublishedKey>) -> Feed {
    Feed { keys, users, jwt_keys, ..Feed::default() }
}

fn key_lookup(key: &str) -> Option<LookupKey> {
    Some(LookupKey::Key(key_digest(key)))
}

#[test]
fn refused_keys_are_worth_a_lookup_while_the_state_refuses_them() {
    let state = state();
    let auth = Authority::new(&state, None);
    let refusal = |key: &str| auth.authorize_key(key, NOW).unwrap_err();
    assert_eq!(
        refusal("sk-live-new"),
        Refusal { error: GatewayError::InvalidCredential, lookup: key_lookup("sk-live-new") }
    );
    assert_eq!(
        refusal("sk-live-off"),
        Refusal { error: GatewayError::AppDisabled, lookup: key_lookup("sk-live-off") }
    );
    assert_eq!(
        refusal("sk-live-old"),
        Refusal { error: GatewayError::ExpiredCredential, lookup: key_lookup("sk-live-old") }
    );
}

#[test]
fn a_looked_up_key_wins_over_the_state_and_a_refusal_may_be_asked_again() {
    let state = state();
    let mut overlay = Overlay::default();
    let asked = LookupKey::Key(key_digest("sk-live-off"));
    let enabled = answer(vec![feed_key("sk-live-off", Status::Enabled, None)], vec![], vec![]);
    assert_eq!(overlay.merge(&asked, enabled), LookupResult::Found);
    let auth = Authority::new(&state, Some(&overlay));
    assert_eq!(
        auth.authorize_key("sk-live-off", NOW).unwrap().app_id,
        1,
        "re-enabled a moment ago"
    );

    let disabled = answer(vec![feed_key("sk-live-off", Status::Disabled, None)], vec![], vec![]);
    assert_eq!(overlay.merge(&asked, disabled), LookupResult::Found);
    let auth = Authority::new(&state, Some(&overlay));
    let refusal = auth.authorize_key("sk-live-off", NOW).unwrap_err();
    assert_eq!(refusal.error, GatewayError::AppDisabled, "the lookup is the newest truth");
    assert!(
        refusal.lookup.is_some(),
        "and a later request asks again: the app may be re-enabled since"
    );

    let new = LookupKey::Key(key_digest("sk-live-new"));
    let expired = answer(vec![feed_key("sk-live-new", Status::Enabled, Some(NOW))], vec![], vec![]);
    assert_eq!(overlay.merge(&new, expired), LookupResult::Found);
    let auth = Authority::new(&state, Some(&overlay));
    assert_eq!(
        auth.authorize_key("sk-live-new", NOW).unwrap_err().error,
        GatewayError::ExpiredCredential
    );
}

#[test]
fn an_answer_without_the_key_is_absent_and_other_keys_in_it_are_ignored() {
    let state = state();
    let mut overlay = Overlay::default();
    let asked = LookupKey::Key(key_digest("sk-live-new"));
    let other = answer(vec![feed_key("sk-live-other", Status::Enabled, None)], vec![], vec![]);
    assert_eq!(overlay.merge(&asked, other), LookupResult::Absent);
    assert!(overlay.key(&key_digest("sk-live-other")).is_none());
    let auth = Authority::new(&state, Some(&overlay));
    assert!(
        auth.authorize_key("sk-live-new", NOW).unwrap_err().lookup.is_some(),
        "absence is the negative cache's"
    );
}

#[test]
fn jwt_refusals_worth_a_lookup() {
    let state = state();
    let auth = Authority::new(&state, None);
    let token =
        |sub: &str, ver: i64| sign_at_version(KEY_A.0, "k1", sub, ver, Some(NOW + 600), None);
    let user = |id| Some(LookupKey::User(id));
    assert_eq!(auth.authorize_jwt(&token("42", 3), NOW).map(|(id, _)| id), Ok(42));
    assert_eq!(
        auth.authorize_jwt(&token("45", 1), NOW).unwrap_err(),
        Refusal { error: GatewayError::UserDisabled, lookup: user(45) },
        "a new user"
    );
    assert_eq!(
        auth.authorize_jwt(&token("43", 3), NOW).unwrap_err(),
        Refusal { error: GatewayError::UserDisabled, lookup: user(43) }
    );
    assert_eq!(
        auth.authorize_jwt(&token("44", 3), NOW).unwrap_err(),
        Refusal { error: GatewayError::RevokedToken, lookup: user(44) },
        "issued after a revocation not seen yet"
    );
    assert_eq!(
        auth.authorize_jwt(&token("42", 2), NOW).unwrap_err(),
        Refusal { error: GatewayError::RevokedToken, lookup: None },
        "revoked for good"
    );
    let new_kid = sign(KEY_B.0, "k2", "42", Some(NOW + 600), None);
    assert_eq!(
        auth.authorize_jwt(&new_kid, NOW).unwrap_err(),
        Refusal { error: GatewayError::InvalidCredential, lookup: user(42) }
    );
    let expired = sign(KEY_A.0, "k1", "42", Some(NOW - 600), None);
    assert_eq!(
        auth.authorize_jwt(&expired, NOW).unwrap_err(),
        Refusal { error: GatewayError::ExpiredToken, lookup: None },
        "an expired JWT is not an expired API key, and no lookup renews it"
    );
    let forged = sign(KEY_B.0, "k1", "42", Some(NOW + 600), None);
    assert_eq!(auth.authorize_jwt(&forged, NOW).unwrap_err().lookup, None);
}

#[test]
fn a_looked_up_user_and_signing_keys_win_over_the_state() {
    let state = state();
    let mut overlay = Overlay::default();
    let user = |id, status, token_version| FeedUser { id, status, token_version, limits: None };
    let keys = vec![published("k1", KEY_A.1), published("k2", KEY_B.1)];
    assert_eq!(
        overlay
            .merge(&LookupKey::User(45), answer(vec![], vec![user(45, Status::Enabled, 3)], keys)),
        LookupResult::Found
    );
    let auth = Authority::new(&state, Some(&overlay));
    assert_eq!(
        auth.authorize_jwt(&sign(KEY_A.0, "k1", "45", Some(NOW + 600), None), NOW)
            .map(|(id, _)| id),
        Ok(45),
        "a user created a moment ago"
    );
    assert_eq!(
        auth.authorize_jwt(&sign(KEY_B.0, "k2", "42", Some(NOW + 600), None), NOW)
            .map(|(id, _)| id),
        Ok(42),
        "a new signing key"
    );

    let only_k2 = vec![published("k2", KEY_B.1)];
    assert_eq!(
        overlay.merge(
            &LookupKey::User(43),
            answer(vec![], vec![user(43, Status::Disabled, 3)], only_k2)
        ),
        LookupResult::Found
    );
    let auth = Authority::new(&state, Some(&overlay));
    let refusal =
        auth.authorize_jwt(&sign(KEY_B.0, "k2", "43", Some(NOW + 600), None), NOW).unwrap_err();
    assert_eq!(
        refusal,
        Refusal { error: GatewayError::UserDisabled, lookup: Some(LookupKey::User(43)) }
    );
    let retired =
        auth.authorize_jwt(&sign(KEY_A.0, "k1", "42", Some(NOW + 600), None), NOW).unwrap_err();
    assert_eq!(
        retired,
        Refusal { error: GatewayError::InvalidCredential, lookup: None },
        "k1 is gone as of the lookup"
    );
    assert_eq!(
        overlay.merge(&LookupKey::User(46), answer(vec![], vec![], vec![])),
        LookupResult::Absent
    );
}

#[test]
fn the_overlay_is_bounded() {
    let mut overlay = Overlay::default();
    for id in 0..crate::overlay::MAX_ENTRIES as i64 {
        let found = answer(
            vec![],
            vec![FeedUser { id, status: Status::Enabled, token_version: 1, limits: None }],
            vec![],
        );
        assert_eq!(overlay.merge(&LookupKey::User(id), found), LookupResult::Found);
    }
    assert_eq!(overlay.len(), crate::overlay::MAX_ENTRIES);
    let one_more = answer(
        vec![],
        vec![FeedUser { id: -1, status: Status::Enabled, token_version: 1, limits: None }],
        vec![],
    );
    overlay.merge(&LookupKey::User(-1), one_more);
    assert_eq!(overlay.len(), 1, "full: it starts over");
    assert!(overlay.user(-1).is_some() && overlay.user(0).is_none());
    overlay.clear();
    assert!(overlay.is_empty());
}
