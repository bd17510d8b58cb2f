//! Spending a grant: taking its units from the Envoy's ledger (and floating some beside them),
//! growing it when a stream's real prompt is larger than its estimate, and settling it with the
//! real usage when the request ends — from the worker's float when it can, else by
//! compare-and-swap in shared data, one per scope.

use super::float::{Float, FLOAT_REQUESTS, FLOAT_SHARE};
use super::ledger::{self, Entry};
use super::{Grant, Hold, Ledgers, Need, SMALL_LIMIT};
use crate::feed::limits::{LimitKey, LimitKind};
use crate::state_sync::SharedData;

/// Takes the units of every need (`tokens` of each token limit), one compare-and-swap per scope;
/// `None` when another worker took them first (what was taken is given back). The holds, and
/// the ledgers as taken.
pub(super) fn take(
    shared: &mut dyn SharedData,
    float: &mut Float,
    needs: &[Need],
    entries: &[Option<Entry>],
    tokens: u64,
    now_ms: u64,
) -> Option<(Vec<Hold>, Ledgers)> {
    let mut holds: Vec<Hold> = Vec::with_capacity(needs.len());
    let mut after = Ledgers(Vec::with_capacity(2));
    let mut scopes: Vec<&str> = needs.iter().map(|n| &*n.shared_key).collect();
    scopes.dedup();
    for scope in scopes {
        let mine: Vec<(&Need, Entry, u64)> = needs
            .iter()
            .zip(entries)
            .filter(|(n, _)| &*n.shared_key == scope)
            .filter_map(|(n, e)| Some((n, e.filter(|e| e.limit.is_some())?)))
            .map(|(n, e)| (n, e, if n.key.kind.counts_tokens() { tokens } else { 1 }))
            .collect();
        let mut extras = vec![0; mine.len()];
        let floating = float.is_on();
        let taken = ledger::update(shared, scope, |ledger| {
            for ((need, seen, units), extra) in mine.iter().zip(extras.iter_mut()) {
                match ledger.get(need.key.kind) {
                    Some(e) if e.window == seen.window && e.available() >= *units => {
                        *extra = if floating { float_extra(need, &e, *units) } else { 0 };
                        let spent = e.spent.saturating_add(*units).saturating_add(*extra);
                        ledger.set(need.key.kind, Entry { spent, touched_ms: now_ms, ..e });
                    }
                    _ => return false,
                }
            }
            true
        });
        let Some(ledger) = taken else {
            release(shared, &holds, now_ms);
            return None;
        };
        for ((need, seen, units), extra) in mine.into_iter().zip(extras) {
            if let (true, Some(e)) = (extra > 0, ledger.get(need.key.kind)) {
                float.refill(scope, &need.key, &e, extra);
            }
            let hold = Hold {
                key: need.key.clone(),
                shared_key: need.shared_key.clone(),
                window: seen.window,
                units,
            };
            holds.push(hold);
        }
        after.0.push((scope.to_owned(), ledger));
    }
    Some((holds, after))
}

/// What a worker floats of a large limit beside `units` it takes (see [`float`]).
fn float_extra(need: &Need, entry: &Entry, units: u64) -> u64 {
    if need.limit < SMALL_LIMIT {
        return 0;
    }
    let left = entry.available().saturating_sub(units);
    (left / FLOAT_SHARE).min(units.saturating_mul(FLOAT_REQUESTS))
}

/// Takes `extra` more tokens of every token limit a grant holds (a stream's real prompt was
/// larger than its estimate), from the worker's float or the Envoy's ledger, never leasing;
/// whether the grant could be extended (else nothing was taken).
pub fn extend(
    shared: &mut dyn SharedData,
    float: &mut Float,
    grant: &mut Grant,
    extra: u64,
    now_ms: u64,
) -> bool {
    let mut taken: Vec<(Hold, bool)> = Vec::new();
    for hold in grant.holds.iter().filter(|h| h.key.kind.counts_tokens()) {
        let from_float = float
            .of_window(&hold.shared_key, hold.key.kind, hold.window)
            .is_some_and(|f| f.held >= extra);
        let ok = if from_float {
            float.spend(&hold.shared_key, hold.key.kind, extra);
            true
        } else {
            ledger::update(shared, &hold.shared_key, |ledger| match ledger.get(hold.key.kind) {
                Some(e) if e.window == hold.window && e.available() >= extra => {
                    ledger.set(
                        hold.key.kind,
                        Entry { spent: e.spent.saturating_add(extra), touched_ms: now_ms, ..e },
                    );
                    true
                }
                _ => false,
            })
            .is_some()
        };
        if !ok {
            for (hold, from_float) in &taken {
                if !(*from_float
                    && float.settle(&hold.shared_key, hold.key.kind, hold.window, hold.units, 0))
                {
                    release(shared, std::slice::from_ref(hold), now_ms);
                }
            }
            return false;
        }
        taken.push((Hold { units: extra, ..hold.clone() }, from_float));
    }
    for hold in grant.holds.iter_mut().filter(|h| h.key.kind.counts_tokens()) {
        hold.units = hold.units.saturating_add(extra);
    }
    grant.tokens = grant.tokens.map(|t| t.saturating_add(extra));
    true
}

/// Ends a request's grant: concurrency given back, token holds settled with `used_tokens` (the
/// request's real usage; `None` when unknown, which keeps the grant as spent), and, when the
/// request `failed` (no reply from the upstream, or an error), its request units given back. Units of a window
/// that has ended meanwhile stay where they were. Returns the limits now overdrawn (the reply
/// overran its grant past the lease), for the upkeep to charge at once.
pub fn settle(
    shared: &mut dyn SharedData,
    float: &mut Float,
    grant: &Grant,
    used_tokens: Option<u64>,
    failed: bool,
    now_ms: u64,
) -> Vec<LimitKey> {
    let spent_by = |hold: &Hold| match hold.key.kind {
        LimitKind::ConcurrentRequests => Some(0),
        LimitKind::RequestsPerMinute if failed => Some(0),
        LimitKind::RequestsPerMinute => None,
        _ => Some(used_tokens.unwrap_or(hold.units)),
    };
    // A hold goes back into the worker's float when it has one of the hold's window (its units
    // count as spent in the Envoy's ledger either way): no shared data is touched.
    let in_shared: Vec<Hold> = grant
        .holds
        .iter()
        .filter(|hold| {
            let Some(spent) = spent_by(hold) else { return false };
            !float.settle(&hold.shared_key, hold.key.kind, hold.window, hold.units, spent)
        })
        .cloned()
        .collect();
    let mut overdrawn = Vec::new();
    change_holds(shared, &in_shared, now_ms, |hold, e| {
        let spent_now = spent_by(hold)?;
        let spent = e.spent.saturating_sub(hold.units).saturating_add(spent_now);
        if spent > e.leased {
            overdrawn.push(hold.key.clone());
        }
        Some(spent)
    });
    overdrawn
}

/// Gives back every hold of a request that was not forwarded after all.
pub fn release(shared: &mut dyn SharedData, holds: &[Hold], now_ms: u64) {
    change_holds(shared, holds, now_ms, |hold, e| Some(e.spent.saturating_sub(hold.units)));
}

/// Sets what each hold's entry has spent to what `spent` says (`None`: unchanged), one
/// compare-and-swap per scope; entries of a window that has ended are left.
fn change_holds(
    shared: &mut dyn SharedData,
    holds: &[Hold],
    now_ms: u64,
    mut spent: impl FnMut(&Hold, &Entry) -> Option<u64>,
) {
    let mut scopes: Vec<&str> = holds.iter().map(|h| &*h.shared_key).collect();
    scopes.dedup();
    for scope in scopes {
        ledger::update(shared, scope, |ledger| {
            let mut changed = false;
            for hold in holds.iter().filter(|h| &*h.shared_key == scope) {
                let Some(e) = ledger.get(hold.key.kind).filter(|e| e.window == hold.window) else {
                    continue;
                };
                if let Some(spent) = spent(hold, &e) {
                    ledger.set(hold.key.kind, Entry { spent, touched_ms: now_ms, ..e });
                    changed = true;
                }
            }
            changed
        });
    }
}
