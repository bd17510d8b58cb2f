//! What the lookups of one worker learned since its full state: for each credential looked up,
//! the control plane's answer, and the signing keys that came with it. The overlay is newer than
//! the full state, so it takes precedence over it (see [`crate::auth::Authority`]), until a newer
//! full state is adopted and the overlay is dropped. It is bounded: past [`MAX_ENTRIES`] it
//! starts over (what it held is then looked up again if needed).

use std::collections::HashMap;

use crate::feed::{parse_key_hash, Feed, KeyHash};
use crate::jwt::JwtKeys;
use crate::keys::{AppKey, RuleSet, User};
use crate::lookup::{LookupKey, LookupResult};

/// Most keys and users an overlay holds.
pub const MAX_ENTRIES: usize = 10_000;

/// See the module docs.
#[derive(Debug, Default)]
pub struct Overlay {
    keys: HashMap<KeyHash, AppKey>,
    users: HashMap<i64, User>,
    /// The signing keys of the latest answer (every answer carries the current ones).
    jwt_keys: Option<JwtKeys>,
    rules: RuleSet,
}

impl Overlay {
    /// Takes in the answer to the lookup of `asked`: whether the control plane knows it.
    pub fn merge(&mut self, asked: &LookupKey, answer: Feed) -> LookupResult {
        if self.len() >= MAX_ENTRIES {
            self.clear();
        }
        self.jwt_keys = Some(JwtKeys::new(answer.jwt_keys));
        match asked {
            LookupKey::Key(hash) => {
                let found = answer
                    .keys
                    .into_iter()
                    .find(|k| parse_key_hash(&k.hash).as_ref() == Some(hash));
                match found.and_then(|k| AppKey::from_feed(k, &mut self.rules)) {
                    Some((hash, key)) => {
                        self.keys.insert(hash, key);
                        LookupResult::Found
                    }
                    None => {
                        self.keys.remove(hash);
                        LookupResult::Absent
                    }
                }
            }
            LookupKey::User(id) => match answer.users.iter().find(|u| u.id == *id) {
                Some(user) => {
                    self.users.insert(*id, User::from(user));
                    LookupResult::Found
                }
                None => {
                    self.users.remove(id);
                    LookupResult::Absent
                }
            },
        }
    }

    /// The key with this hash, as a lookup found it.
    pub fn key(&self, hash: &KeyHash) -> Option<&AppKey> {
        self.keys.get(hash)
    }

    /// The user with this id, as a lookup found it.
    pub fn user(&self, id: i64) -> Option<&User> {
        self.users.get(&id)
    }

    /// The signing keys of the latest lookup, if there was one.
    pub fn jwt_keys(&self) -> Option<&JwtKeys> {
        self.jwt_keys.as_ref()
    }

    /// Forgets everything (a newer full state was adopted).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Number of keys and users held.
    pub fn len(&self) -> usize {
        self.keys.len() + self.users.len()
    }

    /// Whether nothing was learned.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.jwt_keys.is_none()
    }
}
