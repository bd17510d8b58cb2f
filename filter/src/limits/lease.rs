//! The lease call ([`LEASE_PATH`]): building it, taking its answer into the Envoy's ledger, and
//! the upkeep of concurrency leases (renewed before they expire at the control plane, idle slots
//! given back).

use std::collections::BTreeSet;

use super::ledger::{self, Entry};
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::feed::limits::LEASE_PATH;
use crate::feed::limits::{
    LeaseAsk, LeaseGrant, LeaseRequest, LeaseResponse, LimitKey, CONCURRENCY_LEASE_TTL_SECS,
};
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
    let response: LeaseResponse =
        serde_json::from_slice(&answer.body).map_err(|e| LeaseError::Body(e.to_string()))?;
    if response.items.len() != asks.len() {
        return Err(LeaseError::Body(format!(
            "{} grants for {} asks",
            response.items.len(),
            asks.len()
        )));
    }
    Ok(response.items)
}

/// Takes grants into the ledger: what was granted is added to the lease of the grant's window
/// (charges and give-backs were taken into it when the call was made); an entry of an older
/// window is replaced, a grant of an older window than the entry's is dropped (its units are of
/// a window that has ended). A lease never stands above what the limit, as it is now, leaves this
/// Envoy: a lowered limit holds at once, and what was granted while the limit was unset
/// (everything asked) is not kept.
pub fn apply(shared: &mut dyn SharedData, asks: &[LeaseAsk], grants: &[LeaseGrant], now_ms: u64) {
    for (ask, grant) in asks.iter().zip(grants) {
        ledger::update_entry(shared, &ask.key, |entry| applied(grant, entry, now_ms));
    }
}

fn applied(grant: &LeaseGrant, entry: Option<Entry>, now_ms: u64) -> Option<Entry> {
    if entry.is_some_and(|e| e.window > grant.window) {
        return None;
    }
    let same_window = entry.filter(|e| e.window == grant.window);
    let base = same_window.unwrap_or(Entry { window: grant.window, ..Entry::default() });
    let Some(limit) = grant.limit else {
        return Some(Entry {
            limit: None,
            resets_at_ms: grant.resets_at_ms,
            renewed_ms: now_ms,
            ..base
        });
    };
    let leased = base.leased.saturating_add(grant.granted);
    let others = grant.used.saturating_sub(leased);
    let leased = leased.min(limit.saturating_sub(others).max(base.spent));
    Some(Entry {
        window: grant.window,
        resets_at_ms: grant.resets_at_ms,
        limit: Some(limit),
        leased,
        spent: base.spent,
        others,
        touched_ms: base.touched_ms,
        renewed_ms: now_ms,
    })
}

/// Puts back what the upkeep took off the ledger for asks whose call failed (their charges and
/// give-backs are asked again at the next tick).
pub fn undo(shared: &mut dyn SharedData, asks: &[LeaseAsk]) {
    for ask in asks.iter().filter(|a| a.charge > 0 || a.give_back > 0) {
        ledger::update_entry(shared, &ask.key, |entry| {
            let e = entry.filter(|e| ask.window.is_none_or(|w| w == e.window))?;
            let leased = e.leased.saturating_sub(ask.charge).saturating_add(ask.give_back);
            Some(Entry { leased, ..e })
        });
    }
}

/// What one worker keeps up with the control plane between requests: overruns charged at once
/// (so the ledger, the admin API and the other Envoys see them), units leased and left idle
/// given back (so another Envoy can have them), concurrency leases renewed before the control
/// plane lets them expire.
#[derive(Debug, Default)]
pub struct Upkeep {
    keys: BTreeSet<LimitKey>,
}

impl Upkeep {
    /// Remembers the limits of `asks`.
    pub fn note(&mut self, asks: &[LeaseAsk]) {
        self.keys.extend(asks.iter().map(|a| a.key.clone()));
    }

    /// Remembers limits overdrawn by a reply (see [`super::settle`]), to charge.
    pub fn note_overdrawn(&mut self, keys: Vec<LimitKey>) {
        self.keys.extend(keys);
    }

    /// The asks due now, each taken into the ledger here (so no worker spends what is being
    /// given back, and no other upkeep charges the same overdraft): an overdraft's charge, the
    /// give-back of units unused for [`IDLE_GIVE_BACK_MS`], and a renewal (take 0) of each
    /// concurrency lease not renewed for a third of its life. A limit is forgotten once nothing
    /// of it is left to see to.
    pub fn due(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Vec<LeaseAsk> {
        let mut asks = Vec::new();
        let mut forget = Vec::new();
        for key in &self.keys {
            let (ask, entry) = upkeep_ask(shared, key, now_ms);
            asks.extend(ask);
            let done = entry.is_none_or(|e| {
                let ended = !e.is_current(now_ms);
                ended
                    || e.leased == 0
                    || (key.kind.is_windowed() && e.available() == 0 && e.overdraft() == 0)
            });
            if done {
                forget.push(key.clone());
            }
        }
        for key in forget {
            self.keys.remove(&key);
        }
        asks
    }
}

/// The upkeep's ask for one limit, if one is due (taken into the ledger), and the limit's entry
/// as the ledger now has it.
fn upkeep_ask(
    shared: &mut dyn SharedData,
    key: &LimitKey,
    now_ms: u64,
) -> (Option<LeaseAsk>, Option<Entry>) {
    let renew_after = u64::try_from(CONCURRENCY_LEASE_TTL_SECS).unwrap_or(60) * 1000 / 3;
    let mut ask = None;
    let mut seen = None;
    let written = ledger::update_entry(shared, key, |entry| {
        seen = entry;
        let e = entry.filter(|e| e.is_current(now_ms) || e.overdraft() > 0)?;
        let charge = e.overdraft();
        let idle = e.is_current(now_ms) && now_ms.saturating_sub(e.touched_ms) >= IDLE_GIVE_BACK_MS;
        let give_back = if idle { e.available() } else { 0 };
        let renew = !key.kind.is_windowed()
            && e.leased > 0
            && now_ms.saturating_sub(e.renewed_ms) >= renew_after;
        if charge == 0 && give_back == 0 && !renew {
            return None;
        }
        let window = key.kind.is_windowed().then_some(e.window);
        let leased = e.leased.saturating_add(charge).saturating_sub(give_back);
        let held = (!key.kind.is_windowed()).then_some(leased);
        ask = Some(LeaseAsk { key: key.clone(), window, charge, give_back, take: 0, held });
        Some(Entry { leased, renewed_ms: if renew { now_ms } else { e.renewed_ms }, ..e })
    });
    // `ask` is only good if its change was written.
    match written {
        Some(entry) => (ask, Some(entry)),
        None => (None, seen),
    }
}

#[cfg(test)]
mod tests;
