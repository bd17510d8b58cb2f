//! One Envoy's ledger of one limit, in Envoy's shared data so that every worker spends the same
//! lease: what the control plane leased to this Envoy for the current window, and what the
//! workers have spent of it. Every change is a compare-and-swap ([`update`]), so two workers can
//! never both spend the last unit.

use serde::{Deserialize, Serialize};

use crate::feed::limits::{LimitKey, Subject};
use crate::state_sync::SharedData;

/// Prefix of the ledger's shared-data keys.
const KEY_PREFIX: &str = "vllm_gateway.limit.";
/// Compare-and-swap attempts before a change gives up (only under extreme contention).
const CAS_ATTEMPTS: usize = 64;

/// The shared-data key of a limit's ledger entry.
pub fn shared_key(key: &LimitKey) -> String {
    let subject = match key.subject {
        Subject::App(id) => format!("app.{id}"),
        Subject::User(id) => format!("user.{id}"),
    };
    let model = key.model.as_deref().unwrap_or("");
    format!("{KEY_PREFIX}{subject}.{}.{model}", key.kind.name())
}

/// One limit's ledger entry, as this Envoy holds it (short member names: it is read on every
/// admission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The window the lease belongs to (its start, Unix seconds; 0 for concurrency).
    #[serde(rename = "w")]
    pub window: i64,
    /// When the window ends, Unix milliseconds (0 for concurrency: it never ends).
    #[serde(rename = "r")]
    pub resets_at_ms: u64,
    /// The limit as the control plane last said; `None` when it no longer has it (unlimited).
    #[serde(rename = "l")]
    pub limit: Option<u64>,
    /// Units the control plane leased to this Envoy for the window (charges included).
    #[serde(rename = "a")]
    pub leased: u64,
    /// Units the workers have spent or hold; more than `leased` when a reply overran its grant
    /// (the difference is charged with the next lease call).
    #[serde(rename = "s")]
    pub spent: u64,
    /// Units the ledger counted for the other Envoys at the last lease call.
    #[serde(rename = "o")]
    pub others: u64,
    /// When a worker last spent or gave back units here (Unix ms).
    #[serde(rename = "t")]
    pub touched_ms: u64,
    /// When the lease was last renewed or asked for (Unix ms).
    #[serde(rename = "n")]
    pub renewed_ms: u64,
}

impl Entry {
    /// Whether the entry speaks of the window current at `now_ms`.
    pub fn is_current(&self, now_ms: u64) -> bool {
        self.resets_at_ms == 0 || now_ms < self.resets_at_ms
    }

    /// Units leased and not spent.
    pub fn available(&self) -> u64 {
        self.leased.saturating_sub(self.spent)
    }

    /// Units spent beyond the lease (charged with the next call).
    pub fn overdraft(&self) -> u64 {
        self.spent.saturating_sub(self.leased)
    }

    /// Whether the control plane has nothing more to lease: every unit of the limit is leased
    /// out (to this Envoy or others).
    pub fn exhausted(&self) -> bool {
        self.limit.is_some_and(|limit| self.others.saturating_add(self.leased) >= limit)
    }

    /// What remains of the limit over every Envoy, as far as this one knows.
    pub fn remaining(&self) -> Option<u64> {
        self.limit.map(|limit| limit.saturating_sub(self.others.saturating_add(self.spent)))
    }
}

/// Reads a limit's entry; `None` when this Envoy holds none (or it does not parse).
pub fn read(shared: &dyn SharedData, key: &str) -> Option<Entry> {
    read_with_cas(shared, key).0
}

fn read_with_cas(shared: &dyn SharedData, key: &str) -> (Option<Entry>, Option<u32>) {
    let (bytes, cas) = shared.get(key);
    (bytes.and_then(|b| serde_json::from_slice(&b).ok()), cas)
}

/// Changes a limit's entry by compare-and-swap: `change` gets the entry as it is (or `None`) and
/// returns the new one, or `None` to leave it (then `update` returns `None` too). Retried when
/// another worker changed the entry in between; the entry that was written.
pub fn update(
    shared: &mut dyn SharedData,
    key: &str,
    mut change: impl FnMut(Option<Entry>) -> Option<Entry>,
) -> Option<Entry> {
    for _ in 0..CAS_ATTEMPTS {
        let (entry, cas) = read_with_cas(shared, key);
        let new = change(entry)?;
        let Ok(bytes) = serde_json::to_vec(&new) else { return None };
        if shared.set(key, &bytes, cas) {
            return Some(new);
        }
    }
    log::warn!("the limit ledger {key} changed too often to be updated");
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::limits::LimitKind;
    use crate::state_sync::testing::FakeShared;

    #[test]
    fn keys_name_subject_kind_and_model() {
        let key = LimitKey { subject: Subject::User(4), model: Some("m".into()), kind: LimitKind::TokensPerDay };
        assert_eq!(shared_key(&key), "vllm_gateway.limit.user.4.tokens_per_day.m");
        let key = LimitKey { subject: Subject::App(1), model: None, kind: LimitKind::ConcurrentRequests };
        assert_eq!(shared_key(&key), "vllm_gateway.limit.app.1.concurrent_requests.");
    }

    #[test]
    fn an_update_that_races_another_worker_is_retried_on_the_new_value() {
        /// Shared data where another worker spends 3 units between the first read and write.
        struct Racing(FakeShared, bool);
        impl SharedData for Racing {
            fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
                self.0.get(key)
            }
            fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
                if std::mem::take(&mut self.1) {
                    let mut other = read(&self.0, key).unwrap();
                    other.spent += 3;
                    self.0.set(key, &serde_json::to_vec(&other).unwrap(), None);
                }
                self.0.set(key, value, cas)
            }
        }
        let mut shared = Racing(FakeShared::default(), false);
        update(&mut shared, "k", |_| Some(Entry { leased: 10, ..Entry::default() }));
        shared.1 = true;
        let after = update(&mut shared, "k", |e| e.map(|e| Entry { spent: e.spent + 1, ..e })).unwrap();
        assert_eq!(after.spent, 4);
        assert_eq!(read(&shared, "k").unwrap().available(), 6);
    }
}
