//! An in-memory fake of Envoy's shared data, for the tests of the state machinery (here and in
//! [`crate::worker`]).

use std::collections::HashMap;

use super::pull::read_ms;
use super::{SharedData, LEASE_KEY};

/// Envoy's shared data: a CAS token per key that changes on every set; a set with a stale token
/// fails, a set of a key that does not exist always succeeds.
#[derive(Default)]
pub struct FakeShared {
    entries: HashMap<String, (Vec<u8>, u32)>,
    sets: u32,
}

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if let (Some(cas), Some((_, current))) = (cas, self.entries.get(key)) {
            if cas != 0 && cas != *current {
                return false;
            }
        }
        self.sets += 1;
        self.entries.insert(key.to_owned(), (value.to_vec(), self.sets));
        true
    }
}

impl FakeShared {
    /// The lease as a number.
    pub fn lease(&self) -> u64 {
        self.get(LEASE_KEY).0.and_then(|v| read_ms(&v)).unwrap()
    }
}
