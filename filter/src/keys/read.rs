//! Reading a state document into [`Credentials`]: the fields of [`crate::feed::Feed`] (a test keeps
//! them in step), with the keys read one [`FeedKey`] at a time into a slice sized up front (the
//! document's `"hash"` members are counted first, so the slice never grows while it is filled),
//! then sorted once. A key whose hash is not 64 hex digits is skipped, and a hash listed twice
//! keeps one of its entries; both are logged.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{AppKey, Credentials, RuleSet, User};
use crate::feed::{FeedKey, FeedUser, KeyHash, PublishedKey};
use crate::jwt::JwtKeys;

/// See the module docs.
pub(super) fn parse(bytes: &[u8]) -> Result<Credentials, serde_json::Error> {
    let key_capacity = memchr::memmem::find_iter(bytes, b"\"hash\"").count();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let state = Document { key_capacity }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(state)
}

/// The whole document.
struct Document {
    key_capacity: usize,
}

impl<'de> DeserializeSeed<'de> for Document {
    type Value = Credentials;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Credentials, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Document {
    type Value = Credentials;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a state document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Credentials, A::Error> {
        let mut keys = None;
        let mut users = HashMap::new();
        let mut jwt_keys: Vec<PublishedKey> = Vec::new();
        let (mut epoch, mut version) = (String::new(), 0);
        let mut rules = RuleSet::default();
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                "keys" => {
                    keys =
                        Some(map.next_value_seed(Keys {
                            capacity: self.key_capacity,
                            rules: &mut rules,
                        })?)
                }
                "users" => users = map.next_value_seed(Users)?,
                "jwtKeys" => jwt_keys = map.next_value()?,
                "epoch" => epoch = map.next_value()?,
                "version" => version = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let keys = keys.ok_or_else(|| <A::Error as de::Error>::missing_field("keys"))?;
        Ok(Credentials { epoch, version, keys, users, jwt_keys: JwtKeys::new(jwt_keys), rules })
    }
}

/// The document's `keys`.
struct Keys<'a> {
    capacity: usize,
    rules: &'a mut RuleSet,
}

impl<'de> DeserializeSeed<'de> for Keys<'_> {
    type Value = Vec<(KeyHash, AppKey)>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = Vec<(KeyHash, AppKey)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Room for new keys to come by delta: untouched, it costs no memory.
        let mut keys = Vec::with_capacity(self.capacity + self.capacity / 8 + 16);
        let mut malformed = 0;
        while let Some(key) = seq.next_element::<FeedKey>()? {
            match AppKey::from_feed(key, self.rules) {
                Some(entry) => keys.push(entry),
                None => malformed += 1,
            }
        }
        keys.sort_unstable_by_key(|(hash, _)| *hash);
        let listed = keys.len();
        keys.dedup_by(|(a, _), (b, _)| a == b);
        if malformed > 0 || listed > keys.len() {
            let twice = listed - keys.len();
            log::warn!(
                "state keys skipped: {malformed} with a malformed hash, {twice} listed twice"
            );
        }
        Ok(keys)
    }
}

/// The document's `users`, read one at a time into the state's map (a user with limits is ten
/// times the size of one as the state keeps it).
struct Users;

impl<'de> DeserializeSeed<'de> for Users {
    type Value = HashMap<i64, User>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Users {
    type Value = HashMap<i64, User>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of users")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut users = HashMap::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(user) = seq.next_element::<FeedUser>()? {
            users.insert(user.id, User::from(&user));
        }
        Ok(users)
    }
}
