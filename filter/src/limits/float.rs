//! A worker's *float*: units of large limits it took from the Envoy's ledger ahead of need, so
//! that most admissions and settlements touch no shared data at all (each shared-data call is a
//! trip out of the wasm VM). Units in a float count as spent in the Envoy's ledger; the float
//! goes back to it on every tick ([`Float::flush`]), so a worker holds at most what its requests
//! of one tick could use.
//!
//! Only limits of at least [`super::SMALL_LIMIT`] are floated, and a float is at most
//! 1/[`FLOAT_SHARE`] of what the Envoy's lease had left when it was taken: a small limit stays
//! exact to the unit, and near a large limit's end the floats shrink to nothing.

use super::ledger::{self, Entry};
use crate::feed::limits::{LimitKey, LimitKind};
use crate::state_sync::SharedData;

/// A float takes at most this share of what the Envoy's lease has left.
pub const FLOAT_SHARE: u64 = 16;
/// A float holds at most what this many requests like the one that took it need.
pub const FLOAT_REQUESTS: u64 = 64;

/// One limit's float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floated {
    /// The window of the units (as in the Envoy's ledger).
    pub window: i64,
    /// When the window ends (0: never).
    pub resets_at_ms: u64,
    /// The limit the units were taken under.
    pub limit: u64,
    /// Units held, not spent.
    pub held: u64,
    /// Units spent past what was taken (replies that overran), to charge at the flush.
    pub owed: u64,
    /// What remained of the limit over every Envoy, as far as this worker knows.
    pub remaining: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Float {
    entries: Vec<(String, LimitKey, Floated)>,
    /// Limits a flush left overdrawn, for the upkeep ([`Self::take_overdrawn`]).
    overdrawn: Vec<LimitKey>,
    /// Never floats (a host whose shared data is as cheap as the worker's own memory).
    off: bool,
}

impl Float {
    /// A float that never takes units ahead: for the native module, whose shared data is
    /// in-process memory (no trip out of a VM to save) and whose workers have no tick to flush
    /// on.
    pub fn off() -> Self {
        Self { off: true, ..Self::default() }
    }

    /// Whether this worker floats units of large limits.
    pub fn is_on(&self) -> bool {
        !self.off
    }

    /// The float of a limit (in the scope `scope_key`) usable at `now_ms` under `limit`.
    pub fn usable(
        &self,
        scope_key: &str,
        kind: LimitKind,
        limit: u64,
        now_ms: u64,
    ) -> Option<Floated> {
        self.find(scope_key, kind)
            .filter(|f| f.limit == limit && (f.resets_at_ms == 0 || now_ms < f.resets_at_ms))
    }

    /// The float of a limit's `window`, whatever its limit.
    pub fn of_window(&self, scope_key: &str, kind: LimitKind, window: i64) -> Option<Floated> {
        self.find(scope_key, kind).filter(|f| f.window == window)
    }

    fn find(&self, scope_key: &str, kind: LimitKind) -> Option<Floated> {
        self.entries
            .iter()
            .find(|(k, key, _)| k == scope_key && key.kind == kind)
            .map(|(_, _, f)| *f)
    }

    fn find_mut(&mut self, scope_key: &str, kind: LimitKind) -> Option<&mut Floated> {
        self.entries
            .iter_mut()
            .find(|(k, key, _)| k == scope_key && key.kind == kind)
            .map(|(_, _, f)| f)
    }

    /// Spends `units` of a float that has them (see [`Self::usable`]).
    pub fn spend(&mut self, scope_key: &str, kind: LimitKind, units: u64) {
        if let Some(f) = self.find_mut(scope_key, kind) {
            f.held = f.held.saturating_sub(units);
            f.remaining = f.remaining.saturating_sub(units);
        }
    }

    /// Adds `extra` units taken from `entry` (the Envoy's ledger after they were taken).
    pub fn refill(&mut self, scope_key: &str, key: &LimitKey, entry: &Entry, extra: u64) {
        let remaining = entry.remaining().unwrap_or(0).saturating_add(extra);
        match self.find_mut(scope_key, key.kind) {
            Some(f) if f.window == entry.window => {
                f.held = f.held.saturating_add(extra);
                f.remaining = remaining;
            }
            Some(f) => {
                // A float of an older window: its units stay with that window (already counted).
                *f = floated(entry, extra, remaining);
            }
            None => self.entries.push((
                scope_key.to_owned(),
                key.clone(),
                floated(entry, extra, remaining),
            )),
        }
    }

    /// Settles a hold of the window `window` whose units came from this float: `units` held,
    /// `spent` spent. False when the float is gone (flushed, or of another window): the hold is
    /// then settled in the Envoy's ledger, where the float had counted it.
    pub fn settle(
        &mut self,
        scope_key: &str,
        kind: LimitKind,
        window: i64,
        units: u64,
        spent: u64,
    ) -> bool {
        let Some(f) = self.find_mut(scope_key, kind).filter(|f| f.window == window) else {
            return false;
        };
        if spent <= units {
            f.held = f.held.saturating_add(units - spent);
            f.remaining = f.remaining.saturating_add(units - spent);
        } else {
            let over = spent - units;
            let from_held = over.min(f.held);
            f.held -= from_held;
            f.owed = f.owed.saturating_add(over - from_held);
            f.remaining = f.remaining.saturating_sub(over);
        }
        true
    }

    /// Gives every float back to the Envoy's ledger (unspent units returned, overruns charged);
    /// the limits left overdrawn there are kept for the upkeep ([`Self::take_overdrawn`]).
    pub fn flush(&mut self, shared: &mut dyn SharedData, now_ms: u64) {
        let overdrawn = &mut self.overdrawn;
        for (scope_key, key, f) in std::mem::take(&mut self.entries) {
            let kind = key.kind;
            let updated = ledger::update(shared, &scope_key, |ledger| {
                let Some(e) = ledger.get(kind).filter(|e| e.window == f.window) else {
                    return false;
                };
                let spent = e.spent.saturating_sub(f.held).saturating_add(f.owed);
                // Spending from a float is activity too: the lease is not idle.
                ledger.set(kind, Entry { spent, touched_ms: now_ms, ..e });
                true
            });
            let over = updated.and_then(|l| l.get(kind)).is_some_and(|e| e.overdraft() > 0);
            if over {
                overdrawn.push(key);
            }
        }
    }

    /// The limits flushes left overdrawn since the last call.
    pub fn take_overdrawn(&mut self) -> Vec<LimitKey> {
        std::mem::take(&mut self.overdrawn)
    }

    /// Whether the worker holds no float.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn floated(entry: &Entry, extra: u64, remaining: u64) -> Floated {
    Floated {
        window: entry.window,
        resets_at_ms: entry.resets_at_ms,
        limit: entry.limit.unwrap_or(0),
        held: extra,
        owed: 0,
        remaining,
    }
}
