//! `key_state`: the state feed's parser ([`Credentials::parse`]) and deltas
//! ([`Credentials::apply_delta`]) against a reference model. The input is a whole state document,
//! then any number of delta documents, each after a NUL byte (which JSON never holds).
//!
//! The model reads the same documents with the feed's plain serde types ([`Feed`],
//! [`FeedDelta`]) into hash maps. What `Credentials` reads by hand must agree with it: an object
//! the feed types read is read (the hand-written reader may be more lenient, never stricter),
//! with the same position, the same keys (each found by its hash, with its fields when the
//! document lists it once; `len` equal), the same users, and a delta that does not apply changes
//! nothing.

use std::collections::HashMap;

use vllm_gateway_filter::feed::{parse_key_hash, Feed, FeedDelta, FeedKey, FeedUser, KeyHash};
use vllm_gateway_filter::keys::{AppKey, Credentials};
use vllm_gateway_filter::state_sync::Applied;

use super::{outcome, Target};

pub const TARGET: Target = Target {
    name: "key_state",
    about: "state-feed parser and deltas against a hash-map model",
    run,
    dictionary: &[
        b"\x00", b"\"keys\":[]", b"\"keys\"", b"\"users\"", b"\"jwtKeys\"", b"\"epoch\":\"e\"", b"\"since\":", b"\"version\":",
        b"\"removedKeys\":[]", b"\"removedUsers\":[1]", b"\"hash\":", b"\"appId\":", b"\"keyId\":", b"\"status\":\"enabled\"",
        b"\"status\":\"disabled\"", b"\"expiresAt\":null", b"\"models\":[\"m\"]", b"\"limits\":{\"requestsPerMinute\":5}",
        b"\"tokenVersion\":", b"\"0000000000000000000000000000000000000000000000000000000000000000\"",
        b"\"ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb\"",
        b"\"CA978112CA1BBDCAFAC231B39A23DC4DA786EFF8147C4E72B9807785AFEE48BB\"",
        b"{\"hash\":\"3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d\",\"appId\":2,\"keyId\":2,\"status\":\"enabled\",\"expiresAt\":null}",
    ],
};

fn run(input: &[u8]) -> u64 {
    let mut documents = input.split(|&b| b == 0);
    let whole = documents.next().unwrap_or_default();
    // Serde's derived readers also take a struct from an array; a state is an object.
    let is_object = whole.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let model = serde_json::from_slice::<Feed>(whole).ok().filter(|_| is_object).map(Model::of);
    let mut state = match Credentials::parse(whole) {
        Ok(state) => state,
        Err(e) => {
            assert!(model.is_none(), "the feed types read a state that Credentials refuses: {e}");
            return outcome(&[0]);
        }
    };
    // The outcome: the kinds of answer the deltas got (a bit each) and how many there were.
    let (mut kinds, mut deltas) = (0u64, 0u64);
    let mut model = model;
    if let Some(model) = &model {
        model.check(&state);
    }
    for delta in documents {
        let applied = state.apply_delta(delta);
        deltas += 1;
        kinds |= match &applied {
            Ok(Applied::Changed) => 1,
            Ok(Applied::AlreadyHeld) => 2,
            Ok(Applied::Gap) => 4,
            Err(_) => 8,
        };
        if let Some(current) = &mut model {
            match (applied, serde_json::from_slice::<FeedDelta>(delta)) {
                (Ok(Applied::Changed), Ok(delta)) => current.apply(delta),
                (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
                (applied, delta) => {
                    panic!("the delta reads differently: {applied:?} / {:?}", delta.err())
                }
            }
            current.check(&state);
        }
    }
    outcome(&[1, u64::from(model.is_some()), kinds, deltas.min(6), state.len().min(8) as u64])
}

/// A key of the model: its feed entry, or `None` when a document listed its hash more than once
/// (then either entry may be the one kept).
type ModelKey = Option<FeedKey>;

/// The reference model of [`Credentials`].
#[derive(Debug)]
struct Model {
    position: (String, i64),
    keys: HashMap<KeyHash, ModelKey>,
    users: HashMap<i64, FeedUser>,
    removed_users: Vec<i64>,
}

impl Model {
    fn of(feed: Feed) -> Self {
        let users = feed.users.into_iter().map(|u| (u.id, u)).collect();
        Self {
            position: (feed.epoch, feed.version),
            keys: listed_once(feed.keys),
            users,
            removed_users: Vec::new(),
        }
    }

    fn apply(&mut self, delta: FeedDelta) {
        let live = listed_once(delta.keys);
        for hash in delta.removed_keys.iter().filter_map(|h| parse_key_hash(h)) {
            if !live.contains_key(&hash) {
                self.keys.remove(&hash);
            }
        }
        self.keys.extend(live);
        for user in delta.users {
            self.users.insert(user.id, user);
        }
        for id in &delta.removed_users {
            self.users.remove(id);
        }
        self.removed_users = delta.removed_users;
        self.position = (delta.epoch, delta.version);
    }

    fn check(&self, state: &Credentials) {
        assert_eq!(state.position(), (self.position.0.as_str(), self.position.1), "position");
        assert_eq!(state.len(), self.keys.len(), "number of keys");
        for (hash, expected) in &self.keys {
            let key = state.key(hash).unwrap_or_else(|| panic!("key {hash:02x?} not found"));
            if let Some(expected) = expected {
                assert_same_key(key, expected);
            }
        }
        for (id, user) in &self.users {
            let held = state.user(*id).map(|u| (u.status, u.token_version));
            assert_eq!(held, Some((user.status, user.token_version)), "user {id}");
        }
        for id in &self.removed_users {
            assert!(state.user(*id).is_none(), "removed user {id} still held");
        }
    }
}

/// The well-formed keys of a document by hash; a hash listed twice maps to `None`.
fn listed_once(keys: Vec<FeedKey>) -> HashMap<KeyHash, ModelKey> {
    let mut by_hash = HashMap::new();
    for key in keys {
        let Some(hash) = parse_key_hash(&key.hash) else { continue };
        by_hash.entry(hash).and_modify(|entry| *entry = None).or_insert(Some(key));
    }
    by_hash
}

fn assert_same_key(key: &AppKey, expected: &FeedKey) {
    let held = (
        key.app_id,
        key.key_id,
        key.status,
        key.expires_at,
        &*key.rules.models,
        key.rules.limits.as_deref(),
    );
    let limits = expected.limits.as_ref().filter(|l| !l.is_empty());
    let fed = (
        expected.app_id,
        expected.key_id,
        expected.status,
        expected.expires_at,
        &expected.models[..],
        limits,
    );
    assert_eq!(held, fed, "key {}", expected.hash);
}
