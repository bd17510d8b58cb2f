//! Reading the feed into the compact table, and checking keys against it.

use super::*;
use crate::feed::{hash_key, Feed};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn state() -> Credentials {
    let doc = serde_json::json!({
        "version": 1,
        "keys": [
            {"hash": hash_key("sk-live-ok"), "appId": 1, "keyId": 10, "status": "enabled", "expiresAt": null, "models": ["a"], "limits": null},
            {"hash": hash_key("sk-live-off"), "appId": 2, "keyId": 20, "status": "disabled", "expiresAt": null},
            {"hash": hash_key("sk-live-old").to_uppercase(), "appId": 3, "keyId": 30, "status": "enabled", "expiresAt": 100,
             "limits": {"requestsPerMinute": 5}},
            {"hash": "not-a-hash", "appId": 4, "keyId": 40, "status": "enabled", "expiresAt": null}
        ]
    });
    Credentials::parse(doc.to_string().as_bytes()).unwrap()
}

#[test]
fn authorizes_by_status_and_expiry() {
    let s = state();
    assert_eq!(s.len(), 3, "the malformed hash is skipped, the rest kept");
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
fn limits_are_kept() {
    let s = state();
    let limits = s.authorize("sk-live-old", 0).unwrap().rules.limits.clone();
    assert_eq!(limits.and_then(|l| l.all.requests_per_minute), Some(5));
    assert_eq!(s.authorize("sk-live-ok", 0).unwrap().rules.limits.clone(), None);
}

#[test]
fn keys_with_the_same_list_share_it() {
    let keys: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            let models: &[&str] = if i % 2 == 0 { &["a", "b"] } else { &[] };
            serde_json::json!({"hash": hash_key(&format!("k{i}")), "appId": i, "keyId": i,
                               "status": "enabled", "expiresAt": null, "models": models})
        })
        .collect();
    let s = Credentials::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap();
    let models = |k: &str| s.authorize(k, 0).unwrap().rules.clone();
    assert!(Rc::ptr_eq(&models("k0"), &models("k2")));
    assert!(Rc::ptr_eq(&models("k1"), &models("k3")), "the empty list is shared too");
    assert_eq!(&*models("k0").models, ["a", "b"]);
}

#[test]
fn refuses_a_malformed_feed() {
    assert!(Credentials::parse(b"{}").is_err());
    assert!(Credentials::parse(br#"{"keys":[{"hash":"x"}]}"#).is_err());
    assert!(Credentials::parse(br#"{"keys":{}}"#).is_err());
    assert!(Credentials::parse(br#"{"keys":[]}"#).unwrap().is_empty());
}

#[test]
fn reads_every_field_of_the_feed() {
    // A field added to the contract must be read here too: this fails until it is.
    let fields = serde_json::to_value(Feed::default()).unwrap();
    let mut names: Vec<&str> = fields.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["jwtKeys", "keys", "users", "version"], "epoch is left out when empty");
    let s = Credentials::parse(br#"{"epoch":"e1","version":7,"keys":[]}"#).unwrap();
    assert_eq!(s.position(), ("e1", 7));
    let users = serde_json::json!({"keys": [], "users": [{"id": 5, "status": "disabled", "tokenVersion": 2}]});
    let s = Credentials::parse(users.to_string().as_bytes()).unwrap();
    assert_eq!(s.user(5), Some(&User { status: Status::Disabled, token_version: 2, limits: None }));
    assert_eq!(s.user(6), None);
}

#[test]
fn every_key_of_a_large_state_is_found_and_no_other() {
    let keys: Vec<serde_json::Value> = (0..2_000)
        .map(|i| serde_json::json!({"hash": hash_key(&format!("sk-{i}")), "appId": i, "keyId": i, "status": "enabled", "expiresAt": null}))
        .collect();
    let s = Credentials::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap();
    assert_eq!(s.len(), 2_000);
    for i in 0..2_000 {
        assert_eq!(s.authorize(&format!("sk-{i}"), 0).unwrap().app_id, i);
    }
    assert_eq!(s.authorize("sk-2000", 0), Err(GatewayError::InvalidCredential));
}

#[test]
fn a_hash_listed_twice_keeps_one_entry() {
    let doc = serde_json::json!({"keys": [
        {"hash": hash_key("k"), "appId": 1, "keyId": 1, "status": "enabled", "expiresAt": null},
        {"hash": hash_key("k").to_uppercase(), "appId": 1, "keyId": 1, "status": "enabled", "expiresAt": null}
    ]});
    let s = Credentials::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(s.len(), 1);
    assert!(s.authorize("k", 0).is_ok());
}

#[test]
fn only_one_document_is_read() {
    assert!(Credentials::parse(br#"{"keys":[]} {"keys":[]}"#).is_err());
    assert!(Credentials::parse(br#"{"keys":[], "keys":[]}"#).is_ok());
    assert!(Credentials::parse(br#"{"keys":[], "users": null}"#).is_err());
    assert!(Credentials::parse(br#"[]"#).is_err());
}

#[test]
fn a_key_entry_stays_small() {
    // 72 bytes in a wasm VM (32-bit pointers); the models and limits are behind one shared pointer.
    assert!(
        std::mem::size_of::<(KeyHash, AppKey)>() <= 80,
        "{}",
        std::mem::size_of::<(KeyHash, AppKey)>()
    );
}
