//! The lease call ([`LEASE_PATH`]): building it, taking its answer into the Envoy's ledger, and
//! the upkeep of concurrency leases (renewed before they expire at the control plane, idle slots
//! given back).

use std::collections::BTreeSet;

use super::ledger::{self, Entry};
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::feed::limits::{LeaseAsk, LeaseGrant, LeaseRequest, LeaseResponse, LimitKey, LimitKind, CONCURRENCY_LEASE_TTL_SECS};
use crate::feed::limits::LEASE_PATH;
use crate::feed::STATE_PATH;
use crate::state_sync::SharedData;

/// Shared-data key of this Envoy's instance name (set once, by the first worker).
const INSTANCE_KEY: &str = "vllm_gateway.limit.instance";
/// How long concurrency slots leased and unused stay with this Envoy before they are given back.
const IDLE_GIVE_BACK_MS: u64 = 2_000;

/// Why a lease answer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No answer, or not 200.
    #[error("the lease call failed (status {0:?})")]
    Status(Option<u16>),
    /// A body that is not a lease answer for the asks sent.
    #[error("the lease answer does not parse: {0}")]
    Body(String),
}

/// This Envoy's instance name: the one the first worker wrote, or a new one from `seed`.
pub fn instance(shared: &mut dyn SharedData, seed: u64) -> String {
    if let (Some(name), _) = shared.get(INSTANCE_KEY) {
        return String::from_utf8_lossy(&name).into_owned();
    }
    let name = format!("envoy-{seed:x}");
    // Only written when absent; whoever lost the race reads the winner's.
    shared.set(INSTANCE_KEY, name.as_bytes(), Some(0));
    shared.get(INSTANCE_KEY).0.map_or(name, |n| String::from_utf8_lossy(&n).into_owned())
}

/// The lease call for `asks`, to the state feed's cluster ([`LEASE_PATH`] under the prefix of
/// the state path).
pub fn call(feed: &StateFeed, instance: &str, asks: &[LeaseAsk]) -> CallRequest {
    let path = feed.path.split('?').next().unwrap_or_default();
    let prefix = path.strip_suffix(STATE_PATH).unwrap_or("");
    let request = LeaseRequest { instance: instance.to_owned(), items: asks.to_vec() };
    CallRequest {
        path: format!("{prefix}{LEASE_PATH}"),
        if_none_match: None,
        timeout_ms: feed.timeout_ms,
        body: Some(serde_json::to_vec(&request).unwrap_or_default()),
    }
}

/// The grants of an answer, one per ask.
pub fn read_answer(answer: &CallAnswer, asks: &[LeaseAsk]) -> Result<Vec<LeaseGrant>, LeaseError> {
    if answer.status != Some(200) {
        return Err(LeaseError::Status(answer.status));
    }
    let response: LeaseResponse = serde_json::from_slice(&answer.body).map_err(|e| LeaseError::Body(e.to_string()))?;
    if response.items.len() != asks.len() {
        return Err(LeaseError::Body(format!("{} grants for {} asks", response.items.len(), asks.len())));
    }
    Ok(response.items)
}

/// Takes grants into the ledger: what was granted (and charged) is added to the lease of the
/// grant's window; an entry of an older window is replaced.
pub fn apply(shared: &mut dyn SharedData, asks: &[LeaseAsk], grants: &[LeaseGrant], now_ms: u64) {
    for (ask, grant) in asks.iter().zip(grants) {
        ledger::update(shared, &ledger::shared_key(&ask.key), |entry| Some(applied(ask, grant, entry, now_ms)));
    }
}

fn applied(ask: &LeaseAsk, grant: &LeaseGrant, entry: Option<Entry>, now_ms: u64) -> Entry {
    let same_window = entry.filter(|e| e.window == grant.window);
    let base = same_window.unwrap_or(Entry { window: grant.window, ..Entry::default() });
    // The charge settled an overdraft of this window: it is now part of the lease.
    let charged = if ask.window.is_none() || ask.window == Some(grant.window) { ask.charge } else { 0 };
    // A give-back was taken off the lease before the call (see [`Upkeep::due`]).
    let leased = base.leased.saturating_add(grant.granted).saturating_add(charged);
    Entry {
        window: grant.window,
        resets_at_ms: grant.resets_at_ms,
        limit: grant.limit,
        leased,
        spent: base.spent,
        others: grant.used.saturating_sub(leased),
        touched_ms: base.touched_ms,
        renewed_ms: now_ms,
    }
}

/// The concurrency leases one worker keeps alive: renewed before the control plane lets them
/// expire, idle slots given back.
#[derive(Debug, Default)]
pub struct Upkeep {
    keys: BTreeSet<LimitKey>,
}

impl Upkeep {
    /// Remembers the concurrency limits among `asks`.
    pub fn note(&mut self, asks: &[LeaseAsk]) {
        for ask in asks.iter().filter(|a| a.key.kind == LimitKind::ConcurrentRequests) {
            self.keys.insert(ask.key.clone());
        }
    }

    /// The asks due now: a renewal (take 0) of each lease not renewed for a third of its life,
    /// and the give-back of slots unused for [`IDLE_GIVE_BACK_MS`] (taken off the ledger here, so
    /// no worker spends them meanwhile). An entry claimed by another worker's upkeep is left to
    /// it; a key with nothing leased is forgotten.
    pub fn due(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Vec<LeaseAsk> {
        let renew_after = u64::try_from(CONCURRENCY_LEASE_TTL_SECS).unwrap_or(60) * 1000 / 3;
        let mut asks = Vec::new();
        let mut forget = Vec::new();
        for key in &self.keys {
            let mut give_back = 0;
            let updated = ledger::update(shared, &ledger::shared_key(key), |entry| {
                let e = entry?;
                let idle = now_ms.saturating_sub(e.touched_ms) >= IDLE_GIVE_BACK_MS;
                give_back = if idle { e.available() } else { 0 };
                let renew = now_ms.saturating_sub(e.renewed_ms) >= renew_after;
                (give_back > 0 || (renew && e.leased > 0))
                    .then(|| Entry { leased: e.leased - give_back, renewed_ms: now_ms, ..e })
            });
            match updated {
                Some(_) => asks.push(LeaseAsk { key: key.clone(), window: None, charge: 0, give_back, take: 0 }),
                None if ledger::read(shared, &ledger::shared_key(key)).is_none_or(|e| e.leased == 0) => {
                    forget.push(key.clone());
                }
                None => {}
            }
        }
        for key in forget {
            self.keys.remove(&key);
        }
        asks
    }
}

#[cfg(test)]
mod tests;
