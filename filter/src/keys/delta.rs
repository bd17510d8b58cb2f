//! Moving [`Credentials`] on by one of the control plane's deltas ([`FeedDelta`]), in place: a
//! changed key is replaced where it is, a few new or removed keys are inserted or removed by
//! binary search, many at once in one pass; users by id; the JWT keys replaced whole. A delta
//! that does not follow the state held (see [`check`]) changes nothing.

use super::{AppKey, Credentials, User};
use crate::feed::{parse_key_hash, FeedDelta, KeyHash};
use crate::jwt::JwtKeys;
use crate::state_sync::{check, Applied, SyncedState};

/// Up to this many insertions or removals are done one by one; more in one pass.
const ONE_BY_ONE: usize = 32;

impl Credentials {
    /// Applies a delta document: [`Applied::Changed`] when the state moved on to its version.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<Applied, serde_json::Error> {
        let delta: FeedDelta = serde_json::from_slice(bytes)?;
        let applied = check(self.position(), &delta.epoch, delta.since, delta.version);
        if applied == Applied::Changed {
            self.apply(delta);
        }
        Ok(applied)
    }

    fn apply(&mut self, delta: FeedDelta) {
        let mut added = Vec::new();
        let mut removed: Vec<KeyHash> =
            delta.removed_keys.iter().filter_map(|hex| parse_key_hash(hex)).collect();
        let mut malformed = delta.removed_keys.len() - removed.len();
        for key in delta.keys {
            let Some((hash, key)) = AppKey::from_feed(key, &mut self.rules) else {
                malformed += 1;
                continue;
            };
            // A key listed live wins over the same hash listed removed.
            removed.retain(|r| *r != hash);
            match self.keys.binary_search_by(|(h, _)| h.cmp(&hash)) {
                Ok(at) => {
                    if let Some(entry) = self.keys.get_mut(at) {
                        entry.1 = key;
                    }
                }
                Err(_) => added.push((hash, key)),
            }
        }
        if malformed > 0 {
            log::warn!("state delta: {malformed} keys skipped with a malformed hash");
        }
        self.remove_keys(removed);
        self.insert_keys(added);
        for user in &delta.users {
            self.users.insert(user.id, User::from(user));
        }
        for id in &delta.removed_users {
            self.users.remove(id);
        }
        self.jwt_keys = JwtKeys::new(delta.jwt_keys);
        self.version = delta.version;
    }

    fn remove_keys(&mut self, mut removed: Vec<KeyHash>) {
        if removed.len() <= ONE_BY_ONE {
            for hash in &removed {
                if let Ok(at) = self.keys.binary_search_by(|(h, _)| h.cmp(hash)) {
                    self.keys.remove(at);
                }
            }
        } else {
            removed.sort_unstable();
            self.keys.retain(|(hash, _)| removed.binary_search(hash).is_err());
        }
    }

    fn insert_keys(&mut self, mut added: Vec<(KeyHash, AppKey)>) {
        added.sort_unstable_by_key(|(hash, _)| *hash);
        added.dedup_by(|(a, _), (b, _)| a == b);
        if added.len() <= ONE_BY_ONE {
            for (hash, key) in added {
                if let Err(at) = self.keys.binary_search_by(|(h, _)| h.cmp(&hash)) {
                    self.keys.insert(at, (hash, key));
                }
            }
        } else {
            self.keys.extend(added);
            self.keys.sort_by_key(|(hash, _)| *hash);
        }
    }
}

impl SyncedState for Credentials {
    type Error = serde_json::Error;

    fn read_whole(document: &[u8]) -> Result<Self, Self::Error> {
        Self::parse(document)
    }

    fn apply_delta(&mut self, delta: &[u8]) -> Result<Applied, Self::Error> {
        Credentials::apply_delta(self, delta)
    }

    fn position(&self) -> (&str, i64) {
        Credentials::position(self)
    }
}

#[cfg(test)]
mod tests;
