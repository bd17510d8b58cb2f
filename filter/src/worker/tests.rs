//! Two workers over one fake shared store: a state pulled by one serves the other; a lookup's
//! answer lifts a refusal until a newer state (a delta too) replaces it.

use super::*;
use crate::error::GatewayError;
use crate::feed::{hash_key, key_digest};
use crate::state_sync::testing::FakeShared;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn feed() -> StateFeed {
    serde_json::from_value(serde_json::json!({"cluster": "cp", "token": "0123456789abcdef"}))
        .unwrap()
}

fn document(keys: &[(&str, &str)]) -> Vec<u8> {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, status))| {
            serde_json::json!({"hash": hash_key(key), "appId": i, "keyId": i, "status": status, "expiresAt": null})
        })
        .collect();
    serde_json::json!({ "epoch": "e", "version": 1, "keys": keys }).to_string().into_bytes()
}

fn answer(status: u16, etag: &str, body: Vec<u8>) -> CallAnswer {
    CallAnswer { status: Some(status), etag: Some(etag.into()), body, delta: false }
}

/// A worker holding a state with `keys`, pulled at `now`, and the store it shared it in.
fn pulled(shared: &mut FakeShared, now: u64, etag: &str, keys: &[(&str, &str)]) -> Worker<u32> {
    let mut w = Worker::new(&feed());
    w.next_state_call(shared, now).unwrap();
    w.state_call_sent(1);
    assert!(w.is_state_call(1));
    w.state_call_answered(shared, now, 1, &answer(200, etag, document(keys)));
    w
}

fn check(w: &Worker<u32>, key: &str) -> Result<i64, (GatewayError, Option<LookupKey>)> {
    let authority = w.authority().ok_or((GatewayError::NotReady, None))?;
    authority.authorize_key(key, 0).map(|k| k.app_id).map_err(|r| (r.error, r.lookup))
}

#[test]
fn a_state_pulled_by_one_worker_serves_the_other() {
    let mut shared = FakeShared::default();
    let mut w2 = Worker::<u32>::new(&feed());
    assert_eq!(check(&w2, "sk-a"), Err((GatewayError::NotReady, None)));
    let w1 = pulled(&mut shared, 0, "\"v1\"", &[("sk-a", "enabled")]);
    assert_eq!(check(&w1, "sk-a"), Ok(0));
    assert!(w2.adopt_shared(&shared));
    assert!(!w2.adopt_shared(&shared));
    assert_eq!(check(&w2, "sk-a"), Ok(0));
}

#[test]
fn a_lookup_lifts_a_refusal_until_a_newer_state_replaces_it() {
    let mut shared = FakeShared::default();
    let mut w = pulled(&mut shared, 0, "\"v1\"", &[("sk-a", "enabled")]);
    let new = LookupKey::Key(key_digest("sk-new"));
    assert_eq!(check(&w, "sk-new"), Err((GatewayError::InvalidCredential, Some(new))));
    assert_eq!(w.start_lookup(new, 10, 100), Start::Send);
    assert_eq!(w.start_lookup(new, 11, 101), Start::Joined);
    w.lookup_sent(new, 5);
    assert_eq!(w.lookup_answered(6, 120, &answer(200, "\"v2\"", vec![])), None, "not a lookup");
    let found =
        w.lookup_answered(5, 120, &answer(200, "\"v2\"", document(&[("sk-new", "enabled")])));
    assert_eq!(found, Some((LookupResult::Found, vec![10, 11])));
    assert_eq!(check(&w, "sk-new"), Ok(0));

    // A newer state that (wrongly or not) lacks it: the state wins, the overlay goes.
    let mut other = Worker::<u32>::new(&feed());
    other.adopt_shared(&shared);
    shared.set(crate::state_sync::LEASE_KEY, b"0", None);
    other.next_state_call(&mut shared, 200).unwrap();
    other.state_call_sent(2);
    let delta = serde_json::json!({"epoch": "e", "since": 1, "version": 2, "removedKeys": [hash_key("sk-a")]});
    let delta = CallAnswer { delta: true, ..answer(200, "\"v2\"", delta.to_string().into_bytes()) };
    other.state_call_answered(&mut shared, 200, 2, &delta);
    assert!(w.adopt_shared(&shared));
    assert_eq!(
        check(&w, "sk-a"),
        Err((GatewayError::InvalidCredential, Some(LookupKey::Key(key_digest("sk-a")))))
    );
    assert_eq!(check(&w, "sk-new"), Err((GatewayError::InvalidCredential, Some(new))));
}

#[test]
fn an_absent_credential_is_remembered_and_a_failed_lookup_is_not() {
    let mut shared = FakeShared::default();
    let mut w = pulled(&mut shared, 0, "\"v1\"", &[]);
    let gone = LookupKey::Key(key_digest("sk-gone"));
    assert_eq!(w.start_lookup(gone, 1, 1_000), Start::Send);
    w.lookup_sent(gone, 2);
    assert_eq!(
        w.lookup_answered(2, 1_000, &answer(200, "\"v1\"", document(&[]))),
        Some((LookupResult::Absent, vec![1]))
    );
    assert_eq!(w.start_lookup(gone, 3, 1_500), Start::Refuse(3, Some(LookupResult::Cached)));

    let flaky = LookupKey::User(9);
    for (token, failure) in [
        (4, answer(503, "", vec![])),
        (5, answer(200, "", b"{".to_vec())),
        (6, CallAnswer::default()),
    ] {
        assert_eq!(w.start_lookup(flaky, token, 1_500), Start::Send);
        w.lookup_sent(flaky, token);
        assert_eq!(
            w.lookup_answered(token, 1_500, &failure),
            Some((LookupResult::Error, vec![token]))
        );
    }
    assert_eq!(check(&w, "sk-gone").unwrap_err().0, GatewayError::InvalidCredential);
}

#[test]
fn lost_and_undispatched_lookups_hand_their_waiters_back() {
    let mut shared = FakeShared::default();
    let mut w = pulled(&mut shared, 0, "\"v1\"", &[]);
    let key = LookupKey::User(1);
    assert_eq!(w.start_lookup(key, 1, 0), Start::Send);
    assert_eq!(w.lookup_not_sent(key), vec![1]);
    assert_eq!(w.start_lookup(key, 2, 0), Start::Send);
    w.lookup_sent(key, 3);
    assert_eq!(w.expired_lookups(2_000), vec![]);
    assert_eq!(w.expired_lookups(3_000), vec![(key, vec![2])]);
}

#[test]
fn a_pull_that_cannot_be_dispatched_lets_another_worker_pull() {
    let mut shared = FakeShared::default();
    let (mut w1, mut w2) = (Worker::<u32>::new(&feed()), Worker::<u32>::new(&feed()));
    assert!(w1.next_state_call(&mut shared, 0).is_some());
    assert!(w2.next_state_call(&mut shared, 0).is_none());
    w1.state_call_not_sent(&mut shared, 0);
    assert!(w2.next_state_call(&mut shared, 0).is_some());
}
