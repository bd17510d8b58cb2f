//! The Envoy's shared data in the native module: one map in the process, shared by the main
//! thread and every worker, with the same compare-and-swap contract as proxy-wasm's shared data
//! (so the core's key-state and ledger code runs unchanged). A value's token changes on every
//! write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::state_sync::SharedData;

/// One value and its compare-and-swap token.
struct Slot {
    value: Arc<[u8]>,
    cas: u32,
}

/// See the module docs. Cloning it shares the same map.
#[derive(Clone, Default)]
pub struct Store {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

impl SharedData for Store {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        // The copy is made outside the lock: a large value (the credentials) never holds up a
        // worker's ledger update.
        let found = match self.slots.lock() {
            Ok(slots) => slots.get(key).map(|s| (s.value.clone(), s.cas)),
            Err(_) => None,
        };
        match found {
            Some((value, cas)) => (Some(value.to_vec()), Some(cas)),
            None => (None, None),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let Ok(mut slots) = self.slots.lock() else { return false };
        match slots.get_mut(key) {
            Some(slot) => {
                if cas.is_some_and(|c| c != slot.cas) {
                    return false;
                }
                slot.value = value.into();
                slot.cas = slot.cas.wrapping_add(1);
            }
            None => {
                slots.insert(key.to_owned(), Slot { value: value.into(), cas: 1 });
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_token_is_refused_and_a_fresh_one_taken() {
        let mut store = Store::default();
        assert_eq!(store.get("k"), (None, None));
        assert!(store.set("k", b"a", Some(7)), "a new key is always set");
        let (value, cas) = store.get("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        let mut other = store.clone();
        assert!(other.set("k", b"b", cas));
        assert!(!store.set("k", b"c", cas), "the token changed with the other write");
        assert_eq!(store.get("k").0.as_deref(), Some(&b"b"[..]));
        assert!(store.set("k", b"d", None), "no token: always set");
    }
}
