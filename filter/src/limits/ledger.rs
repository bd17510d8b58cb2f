//! One Envoy's ledger of one subject's limits (subject-wide, or scoped to one model), in Envoy's
//! shared data so that every worker spends the same leases: per limit, what the control plane
//! leased to this Envoy for the current window and what the workers have spent of it. One
//! shared-data entry holds every limit of the scope, in a small fixed binary layout, so an
//! admission reads it once and takes its units with one compare-and-swap ([`update`]): two
//! workers can never both spend the last unit.

use crate::feed::limits::{LimitKey, LimitKind, Subject};
use crate::state_sync::SharedData;

/// Prefix of the ledger's shared-data keys.
const KEY_PREFIX: &str = "vllm_gateway.limit.";
/// Compare-and-swap attempts before a change gives up (only under extreme contention).
const CAS_ATTEMPTS: usize = 64;
/// Bytes of one limit in the layout: its kind, then the entry's eight numbers.
const RECORD_BYTES: usize = 1 + 8 * 8;

/// The shared-data key of a scope's ledger: a subject's limits over every model, or over one.
pub fn scope_key(subject: Subject, model: Option<&str>) -> String {
    let model = model.unwrap_or("");
    let (kind, id) = match subject {
        Subject::App(id) => ("app.", id),
        Subject::User(id) => ("user.", id),
    };
    let mut key = String::with_capacity(KEY_PREFIX.len() + 26 + model.len());
    key.push_str(KEY_PREFIX);
    key.push_str(kind);
    key.push_str(&id.to_string());
    key.push('.');
    key.push_str(model);
    key
}

/// The shared-data key of the ledger that holds `key`.
pub fn shared_key(key: &LimitKey) -> String {
    scope_key(key.subject, key.model.as_deref())
}

/// One limit's ledger entry, as this Envoy holds it (short member names: it is read on every
/// admission).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The window the lease belongs to (its start, Unix seconds; 0 for concurrency).
    pub window: i64,
    /// When the window ends, Unix milliseconds (0 for concurrency: it never ends).
    pub resets_at_ms: u64,
    /// The limit as the control plane last said; `None` when it no longer has it (unlimited).
    pub limit: Option<u64>,
    /// Units the control plane leased to this Envoy for the window (charges included).
    pub leased: u64,
    /// Units the workers have spent or hold; more than `leased` when a reply overran its grant
    /// (the difference is charged by the upkeep).
    pub spent: u64,
    /// Units the ledger counted for the other Envoys at the last lease call.
    pub others: u64,
    /// When a worker last spent or gave back units here (Unix ms).
    pub touched_ms: u64,
    /// When the lease was last renewed or asked for (Unix ms).
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

impl Entry {
    fn write(&self, out: &mut Vec<u8>) {
        let numbers = [
            u64::from_le_bytes(self.window.to_le_bytes()),
            self.resets_at_ms,
            self.limit.unwrap_or(u64::MAX),
            self.leased,
            self.spent,
            self.others,
            self.touched_ms,
            self.renewed_ms,
        ];
        for n in numbers {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        let mut n = bytes.chunks_exact(8).map(|b| <[u8; 8]>::try_from(b).map(u64::from_le_bytes));
        let mut next = || n.next()?.ok();
        Some(Self {
            window: i64::from_le_bytes(next()?.to_le_bytes()),
            resets_at_ms: next()?,
            limit: Some(next()?).filter(|l| *l != u64::MAX),
            leased: next()?,
            spent: next()?,
            others: next()?,
            touched_ms: next()?,
            renewed_ms: next()?,
        })
    }
}

/// The ledger of one scope: an entry per limit kind it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger(Vec<(LimitKind, Entry)>);

impl Ledger {
    /// The entry of `kind`.
    pub fn get(&self, kind: LimitKind) -> Option<Entry> {
        self.0.iter().find(|(k, _)| *k == kind).map(|(_, e)| *e)
    }

    /// Sets the entry of `kind`.
    pub fn set(&mut self, kind: LimitKind, entry: Entry) {
        match self.0.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, e)) => *e = entry,
            None => self.0.push((kind, entry)),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * RECORD_BYTES);
        for (kind, entry) in &self.0 {
            let index = LimitKind::ALL.iter().position(|k| k == kind).unwrap_or_default();
            out.push(u8::try_from(index).unwrap_or_default());
            entry.write(&mut out);
        }
        out
    }

    /// The ledger in `bytes`; what does not read as one is an empty ledger.
    fn decode(bytes: &[u8]) -> Self {
        let mut entries = Vec::with_capacity(bytes.len() / RECORD_BYTES);
        for record in bytes.chunks_exact(RECORD_BYTES) {
            let (Some(index), Some(numbers)) = (record.first(), record.get(1..)) else { continue };
            let (Some(kind), Some(entry)) =
                (LimitKind::ALL.get(usize::from(*index)), Entry::read(numbers))
            else {
                return Self::default();
            };
            entries.push((*kind, entry));
        }
        Self(entries)
    }
}

/// Reads a scope's ledger (empty when this Envoy holds none).
pub fn read(shared: &dyn SharedData, key: &str) -> Ledger {
    read_with_cas(shared, key).0
}

fn read_with_cas(shared: &dyn SharedData, key: &str) -> (Ledger, Option<u32>) {
    let (bytes, cas) = shared.get(key);
    (bytes.map(|b| Ledger::decode(&b)).unwrap_or_default(), cas)
}

/// Changes a scope's ledger by compare-and-swap: `change` gets the ledger as it is and changes
/// it, or returns false to leave it (then `update` returns `None` too). Retried when another
/// worker changed the ledger in between; the ledger that was written.
pub fn update(
    shared: &mut dyn SharedData,
    key: &str,
    mut change: impl FnMut(&mut Ledger) -> bool,
) -> Option<Ledger> {
    for _ in 0..CAS_ATTEMPTS {
        let (mut ledger, cas) = read_with_cas(shared, key);
        if !change(&mut ledger) {
            return None;
        }
        if shared.set(key, &ledger.encode(), cas) {
            return Some(ledger);
        }
    }
    log::warn!("the limit ledger {key} changed too often to be updated");
    None
}

/// Reads one limit's entry.
pub fn read_entry(shared: &dyn SharedData, key: &LimitKey) -> Option<Entry> {
    read(shared, &shared_key(key)).get(key.kind)
}

/// Changes one limit's entry by compare-and-swap (see [`update`]): `change` gets the entry (or
/// `None`) and returns the new one, or `None` to leave it.
pub fn update_entry(
    shared: &mut dyn SharedData,
    key: &LimitKey,
    mut change: impl FnMut(Option<Entry>) -> Option<Entry>,
) -> Option<Entry> {
    let mut written = None;
    update(shared, &shared_key(key), |ledger| match change(ledger.get(key.kind)) {
        Some(entry) => {
            ledger.set(key.kind, entry);
            written = Some(entry);
            true
        }
        None => false,
    })?;
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_sync::testing::FakeShared;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn key(kind: LimitKind) -> LimitKey {
        LimitKey { subject: Subject::User(4), model: Some("m".into()), kind }
    }

    #[test]
    fn one_key_per_subject_and_model_scope() {
        assert_eq!(shared_key(&key(LimitKind::TokensPerDay)), "vllm_gateway.limit.user.4.m");
        assert_eq!(scope_key(Subject::App(1), None), "vllm_gateway.limit.app.1.");
    }

    #[test]
    fn a_ledger_round_trips_and_junk_reads_as_empty() {
        let mut ledger = Ledger::default();
        let entry = Entry {
            window: -60,
            resets_at_ms: 9,
            limit: None,
            leased: 5,
            spent: 7,
            others: 1,
            touched_ms: 2,
            renewed_ms: 3,
        };
        ledger.set(LimitKind::TokensPerMonth, entry);
        ledger.set(LimitKind::ConcurrentRequests, Entry { limit: Some(4), ..Entry::default() });
        assert_eq!(Ledger::decode(&ledger.encode()), ledger);
        assert_eq!(ledger.get(LimitKind::TokensPerMonth), Some(entry));
        let mut junk = ledger.encode();
        junk[0] = 200;
        assert_eq!(Ledger::decode(&junk), Ledger::default());
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
                    let mut other = read(&self.0, key);
                    let mut e = other.get(LimitKind::TokensPerDay).unwrap();
                    e.spent += 3;
                    other.set(LimitKind::TokensPerDay, e);
                    self.0.set(key, &other.encode(), None);
                }
                self.0.set(key, value, cas)
            }
        }
        let k = key(LimitKind::TokensPerDay);
        let mut shared = Racing(FakeShared::default(), false);
        update_entry(&mut shared, &k, |_| Some(Entry { leased: 10, ..Entry::default() }));
        shared.1 = true;
        let after = update_entry(&mut shared, &k, |e| e.map(|e| Entry { spent: e.spent + 1, ..e }))
            .unwrap();
        assert_eq!(after.spent, 4);
        assert_eq!(read_entry(&shared, &k).unwrap().available(), 6);
    }
}
