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

/// Takes grants into the ledger: what was granted is added to the lease of the grant's window
/// (charges and give-backs were taken into it when the call was made); an entry of an older
/// window is replaced.
pub fn apply(shared: &mut dyn SharedData, asks: &[LeaseAsk], grants: &[LeaseGrant], now_ms: u64) {
    for (ask, grant) in asks.iter().zip(grants) {
        ledger::update_entry(shared, &ask.key, |entry| Some(applied(grant, entry, now_ms)));
    }
}

fn applied(grant: &LeaseGrant, entry: Option<Entry>, now_ms: u64) -> Entry {
    let same_window = entry.filter(|e| e.window == grant.window);
    let base = same_window.unwrap_or(Entry { window: grant.window, ..Entry::default() });
    let leased = base.leased.saturating_add(grant.granted);
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

/// What one worker keeps up with the control plane between requests: overruns charged at once
/// (so the ledger, the admin API and the other Envoys see them), concurrency leases renewed
/// before the control plane lets them expire, idle slots given back.
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

    /// Remembers limits overdrawn by a reply (see [`super::settle`]), to charge.
    pub fn note_overdrawn(&mut self, keys: Vec<LimitKey>) {
        self.keys.extend(keys);
    }

    /// The asks due now: the charge of each overdraft (taken into the lease here), a renewal
    /// (take 0) of each concurrency lease not renewed for a third of its life, and the give-back of
    /// slots unused for [`IDLE_GIVE_BACK_MS`] (taken off the ledger here, so no worker spends them
    /// meanwhile). An entry another worker's upkeep has just seen to is left to it; a windowed
    /// limit is forgotten once charged, a concurrency limit once nothing is leased.
    pub fn due(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Vec<LeaseAsk> {
        let mut asks = Vec::new();
        let mut forget = Vec::new();
        for key in &self.keys {
            let ask = if key.kind.is_windowed() { charge(shared, key) } else { keep_slots(shared, key, now_ms) };
            if let Some(ask) = ask {
                asks.push(ask);
            }
            let leased = ledger::read_entry(shared, key).map_or(0, |e| e.leased);
            if key.kind.is_windowed() || leased == 0 {
                forget.push(key.clone());
            }
        }
        for key in forget {
            self.keys.remove(&key);
        }
        asks
    }
}

/// The charge of a windowed limit's overdraft, taken into its lease.
fn charge(shared: &mut dyn SharedData, key: &LimitKey) -> Option<LeaseAsk> {
    let mut ask = None;
    ledger::update_entry(shared, key, |entry| {
        let e = entry.filter(|e| e.overdraft() > 0)?;
        let charge = e.overdraft();
        ask = Some(LeaseAsk { key: key.clone(), window: Some(e.window), charge, give_back: 0, take: 0 });
        Some(Entry { leased: e.leased.saturating_add(charge), ..e })
    })?;
    ask
}

/// A concurrency lease's renewal and the give-back of its idle slots, if due.
fn keep_slots(shared: &mut dyn SharedData, key: &LimitKey, now_ms: u64) -> Option<LeaseAsk> {
    let renew_after = u64::try_from(CONCURRENCY_LEASE_TTL_SECS).unwrap_or(60) * 1000 / 3;
    let mut give_back = 0;
    ledger::update_entry(shared, key, |entry| {
        let e = entry?;
        let idle = now_ms.saturating_sub(e.touched_ms) >= IDLE_GIVE_BACK_MS;
        give_back = if idle { e.available() } else { 0 };
        let renew = now_ms.saturating_sub(e.renewed_ms) >= renew_after;
        (give_back > 0 || (renew && e.leased > 0))
            .then(|| Entry { leased: e.leased - give_back, renewed_ms: now_ms, ..e })
    })?;
    Some(LeaseAsk { key: key.clone(), window: None, charge: 0, give_back, take: 0 })
}

#[cfg(test)]
mod tests;
