//! Deltas applied to a state give the state the control plane would send whole.

use super::*;
use crate::error::GatewayError;
use crate::feed::{hash_key, Feed, FeedKey, FeedUser, PublishedKey, Status};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn key(name: &str, app_id: i64, status: Status) -> FeedKey {
    FeedKey {
        hash: hash_key(name),
        app_id,
        key_id: app_id,
        status,
        expires_at: None,
        models: vec![],
        limits: None,
    }
}

fn whole(version: i64, keys: Vec<FeedKey>) -> Credentials {
    let users = vec![FeedUser { id: 1, status: Status::Enabled, token_version: 1, limits: None }];
    let feed = Feed { epoch: "e".into(), version, keys, users, jwt_keys: vec![] };
    Credentials::parse(&serde_json::to_vec(&feed).unwrap()).unwrap()
}

fn delta(since: i64, version: i64) -> FeedDelta {
    FeedDelta { epoch: "e".into(), since, version, ..FeedDelta::default() }
}

fn apply(state: &mut Credentials, delta: &FeedDelta) -> Applied {
    state.apply_delta(&serde_json::to_vec(delta).unwrap()).unwrap()
}

fn app_of(state: &Credentials, name: &str) -> Result<i64, GatewayError> {
    state.authorize(name, 0).map(|k| k.app_id)
}

#[test]
fn new_changed_and_removed_keys_and_users() {
    let mut state = whole(5, vec![key("a", 1, Status::Enabled), key("b", 2, Status::Enabled)]);
    assert_eq!(state.position(), ("e", 5));
    let d = FeedDelta {
        keys: vec![key("c", 3, Status::Enabled), key("b", 2, Status::Disabled)],
        removed_keys: vec![hash_key("a")],
        users: vec![FeedUser { id: 2, status: Status::Enabled, token_version: 4, limits: None }],
        removed_users: vec![1],
        jwt_keys: vec![PublishedKey {
            kid: "k".into(),
            alg: "EdDSA".into(),
            public_key_hex: "00".repeat(32),
        }],
        ..delta(5, 7)
    };
    assert_eq!(apply(&mut state, &d), Applied::Changed);
    assert_eq!(state.position(), ("e", 7));
    assert_eq!(app_of(&state, "a"), Err(GatewayError::InvalidCredential));
    assert_eq!(app_of(&state, "b"), Err(GatewayError::AppDisabled));
    assert_eq!(app_of(&state, "c"), Ok(3));
    assert_eq!((state.user(1), state.user(2).map(|u| u.token_version)), (None, Some(4)));
    assert_eq!(state.jwt_key_count(), 1);
}

#[test]
fn only_a_delta_that_follows_the_state_applies() {
    let mut state = whole(5, vec![key("a", 1, Status::Enabled)]);
    let gone = FeedDelta { removed_keys: vec![hash_key("a")], ..delta(6, 8) };
    assert_eq!(apply(&mut state, &gone), Applied::Gap, "starts after 5");
    assert_eq!(
        apply(&mut state, &FeedDelta { epoch: "other".into(), ..delta(5, 8) }),
        Applied::Gap
    );
    assert_eq!(
        apply(&mut state, &FeedDelta { removed_keys: vec![hash_key("a")], ..delta(2, 5) }),
        Applied::AlreadyHeld
    );
    assert_eq!((app_of(&state, "a"), state.position()), (Ok(1), ("e", 5)), "nothing applied");
    assert_eq!(
        apply(&mut state, &FeedDelta { removed_keys: vec![hash_key("a")], ..delta(3, 6) }),
        Applied::Changed,
        "overlaps 5"
    );
    assert_eq!(app_of(&state, "a"), Err(GatewayError::InvalidCredential));
    assert!(state.apply_delta(b"{\"since\":1}").is_err());
    assert_eq!(state.position(), ("e", 6));
}

#[test]
fn many_keys_at_once_keep_the_table_sorted() {
    let mut state = whole(1, (0..100).map(|i| key(&format!("k{i}"), i, Status::Enabled)).collect());
    let d = FeedDelta {
        keys: (100..300).map(|i| key(&format!("k{i}"), i, Status::Enabled)).collect(),
        removed_keys: (0..50).map(|i| hash_key(&format!("k{i}"))).collect(),
        ..delta(1, 2)
    };
    apply(&mut state, &d);
    assert_eq!(state.len(), 250);
    for i in 0..300 {
        let expected = if i < 50 { Err(GatewayError::InvalidCredential) } else { Ok(i) };
        assert_eq!(app_of(&state, &format!("k{i}")), expected, "k{i}");
    }
}

#[test]
fn a_hash_both_live_and_removed_stays_live_and_twice_listed_keys_once() {
    let mut state = whole(1, vec![]);
    let d = FeedDelta {
        keys: vec![
            key("a", 1, Status::Enabled),
            key("a", 1, Status::Enabled),
            FeedKey { hash: "x".into(), ..key("b", 2, Status::Enabled) },
        ],
        removed_keys: vec![hash_key("a"), "not-a-hash".into()],
        ..delta(1, 2)
    };
    apply(&mut state, &d);
    assert_eq!((state.len(), app_of(&state, "a")), (1, Ok(1)));
}

#[test]
fn a_chain_of_deltas_equals_the_whole_state_of_its_version() {
    let names: Vec<String> = (0..40).map(|i| format!("key-{i}")).collect();
    let mut state = whole(0, vec![]);
    let mut live = std::collections::BTreeMap::new();
    for (version, name) in (1..).zip(&names) {
        let app = version % 7;
        let mut d = FeedDelta {
            keys: vec![key(name, app, Status::Enabled)],
            ..delta(version - 1, version)
        };
        live.insert(name.clone(), app);
        if version % 3 == 0 {
            let gone = &names[usize::try_from(version / 3).unwrap()];
            if live.remove(gone).is_some() && gone != name {
                d.removed_keys.push(hash_key(gone));
            } else if gone == name {
                live.insert(name.clone(), app);
            }
        }
        assert_eq!(apply(&mut state, &d), Applied::Changed);
    }
    let keys = live.iter().map(|(name, app)| key(name, *app, Status::Enabled)).collect();
    let expected = whole(40, keys);
    for name in &names {
        assert_eq!(app_of(&state, name), app_of(&expected, name), "{name}");
    }
    assert_eq!(state.len(), expected.len());
}
