//! How the workers of one Envoy keep their credentials current together, over Envoy's shared data
//! ([`SharedData`]; the glue implements it with host calls, tests with a map). The layout in
//! shared data is [`ring`]'s: the whole state once (the *base*), then a ring of changes.
//!
//! - **follow**: on each tick (and before refusing a credential) a worker compares the head's
//!   sequence number with the one it holds (one small read) and applies the changes after it,
//!   each a delta of a few keys: a change costs every worker what changed, not the whole state.
//!   A worker with no state, or further behind than the ring reaches, reads the base (when it is
//!   newer than what it holds) and follows the ring from there.
//! - **catch up**: a worker that still cannot connect to the ring (the base is older than the
//!   ring reaches, or a change does not apply) asks the control plane itself, once, for the
//!   changes since the version it holds (or for the whole state, when it holds none), and
//!   follows the ring from where the head was when it asked. A whole state got this way becomes
//!   the new base when it is newer.
//! - **lease**: one worker at a time pulls for everyone; it takes the lease by compare-and-swap
//!   when the lease has run out. The lease covers the whole call (its timeout and
//!   [`LEASE_SLACK_MS`]); a pull that never got an answer by then is forgotten.
//! - **long poll**: once a state is held, the pull asks for the changes since its version and
//!   asks the control plane to hold it until something changes (`?since=&epoch=&wait_ms=` with
//!   `If-None-Match`); when it answers (200 or 304) the lease is handed back at once, so the next
//!   pull goes out on the next tick. A delta is applied and pushed onto the ring; a whole state
//!   (the first one, or one the control plane sent because it no longer had the changes) becomes
//!   the base and a ring entry that tells the others to read it. Before the first state, and
//!   with `long_poll_ms` 0, pulls are short and go out every `refresh_ms`; a 304 never brings the
//!   next pull nearer than `refresh_ms` after the previous one started.
//! - **retry**: after a failed pull (no answer, not 200/304, a body that does not parse or
//!   apply) the next one waits `refresh_ms` (500 ms at most before the first state); a pull that
//!   could not be dispatched gives the lease back at once.
//!
//! A delta applies to a state of any version from its `since` to its `version` ([`check`]), so a
//! reader that races a writer, or a base newer than the ring entries after it, never goes back
//! in time: an older change is skipped, a gap sends the worker to catch up.

use crate::config::StateFeed;

mod pull;
pub mod ring;

use ring::{Change, Mark, BASE_KEY, HEAD_KEY, RING, WHOLE_KEY};

/// Shared-data key of the pull lease: the Unix millisecond until which one worker owns the pull.
pub const LEASE_KEY: &str = "vllm_gateway.state.pull_lease";
/// How long a lease (or a catch-up call) outlives its call's timeout.
pub const LEASE_SLACK_MS: u64 = 1_000;
/// Longest wait between pulls before the first state has arrived.
pub const FIRST_STATE_RETRY_MS: u64 = 500;

/// Envoy's shared data, as the state machinery uses it.
pub trait SharedData {
    /// The value under `key` and its compare-and-swap token; `(None, None)` when there is none.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Sets `key`. With `cas`, only if the value has not changed since `cas` was read (a key that
    /// does not exist yet is always set). Whether it was set.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// A state the machinery keeps: read whole, or moved on by a delta.
pub trait SyncedState: Sized {
    /// Why a document was refused.
    type Error: std::fmt::Display;
    /// Reads a whole state document.
    fn read_whole(document: &[u8]) -> Result<Self, Self::Error>;
    /// Applies a delta document (see [`check`]); a delta that does not parse changes nothing.
    fn apply_delta(&mut self, delta: &[u8]) -> Result<Applied, Self::Error>;
    /// The epoch and version of the state held.
    fn position(&self) -> (&str, i64);
}

/// What applying a delta did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The state moved on to the delta's version.
    Changed,
    /// The state already had it (its version is the delta's, or newer).
    AlreadyHeld,
    /// The delta starts after the state's version, or is of another epoch: nothing applied.
    Gap,
}

/// Whether a delta from `since` to `version` of `epoch` applies to a state at `held`.
pub fn check(held: (&str, i64), epoch: &str, since: i64, version: i64) -> Applied {
    let (held_epoch, held_version) = held;
    if held_epoch != epoch || since > held_version {
        Applied::Gap
    } else if version <= held_version {
        Applied::AlreadyHeld
    } else {
        Applied::Changed
    }
}

/// A call this worker has dispatched (or is about to): the lease pull or a catch-up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    /// Until when it may be answered.
    until: u64,
    started_ms: u64,
    /// The call's token, once dispatched.
    token: Option<u32>,
    /// The ring head when it was dispatched (a catch-up follows the ring from there).
    head_seq: u64,
}

/// One worker's side of the state machinery (see the module docs).
#[derive(Debug, Default)]
pub struct StateSync<S> {
    refresh_ms: u64,
    timeout_ms: u64,
    long_poll_ms: u64,
    path: String,
    state: Option<S>,
    /// The ETag of the state held, as the control plane named it.
    etag: Option<String>,
    /// The ring position the state held has followed to.
    seq: u64,
    /// A base mark whose document did not parse (not read again).
    rejected_base: Option<Mark>,
    /// Whether this worker must ask the control plane itself ([`Self::begin_catch_up`]).
    behind: bool,
    /// No catch-up before this time (after a failed one).
    catch_up_after: u64,
    pull: Option<Pending>,
    catch_up: Option<Pending>,
    /// How many whole states were installed.
    wholes: u64,
}

impl<S: SyncedState> StateSync<S> {
    /// The machinery as `feed` configures it, holding no state yet.
    pub fn new(feed: &StateFeed) -> Self {
        Self {
            refresh_ms: feed.refresh_ms,
            timeout_ms: feed.timeout_ms,
            long_poll_ms: feed.long_poll_ms,
            path: feed.path.clone(),
            state: None,
            etag: None,
            seq: 0,
            rejected_base: None,
            behind: false,
            catch_up_after: 0,
            pull: None,
            catch_up: None,
            wholes: 0,
        }
    }

    /// How many whole states this worker has installed (a change in it means the state was
    /// replaced, not moved on by a delta).
    pub fn wholes_installed(&self) -> u64 {
        self.wholes
    }

    /// The state held; `None` until the first one.
    pub fn state(&self) -> Option<&S> {
        self.state.as_ref()
    }

    /// Brings the state up to the shared head (see the module docs); whether it changed.
    pub fn adopt(&mut self, shared: &dyn SharedData) -> bool {
        if self.catch_up.is_some() {
            return false;
        }
        let Some(head) = ring::read_mark(shared, HEAD_KEY) else { return false };
        if head.seq == self.seq && self.state.is_some() {
            return false;
        }
        let mut changed = false;
        if self.state.is_none() || head.seq.saturating_sub(self.seq) > RING {
            changed |= self.adopt_base(shared);
        }
        if self.state.is_some() && head.seq > self.seq {
            let (followed, connected) = self.follow(shared, head.seq);
            changed |= followed;
            self.behind = !connected;
        } else if self.state.is_none() {
            self.behind = true;
        }
        changed
    }

    /// Applies the ring's changes after the one held, up to `head`: whether the state changed,
    /// and whether the ring connected all the way.
    fn follow(&mut self, shared: &dyn SharedData, head: u64) -> (bool, bool) {
        let mut changed = false;
        while self.seq < head {
            let next = self.seq + 1;
            let Some((mark, change)) = ring::read_change(shared, next) else {
                return (changed, false);
            };
            let applied = match change {
                Change::Delta(delta) => self.apply(&delta),
                Change::Whole => match self.adopt_base(shared) {
                    true => Applied::Changed,
                    false => self.base_is_held(shared),
                },
            };
            match applied {
                Applied::Gap => return (changed, false),
                Applied::Changed => {
                    changed = true;
                    self.etag = Some(mark.etag);
                }
                Applied::AlreadyHeld => {}
            }
            self.seq = self.seq.max(next);
        }
        (changed, true)
    }

    fn apply(&mut self, delta: &[u8]) -> Applied {
        let Some(state) = &mut self.state else { return Applied::Gap };
        state.apply_delta(delta).unwrap_or_else(|e| {
            log::warn!("a shared key-state change is malformed: {e}");
            Applied::Gap
        })
    }

    /// After a "whole state" change that did not replace the state: whether the base is the one
    /// held (so following may go on) or not usable (a gap).
    fn base_is_held(&self, shared: &dyn SharedData) -> Applied {
        match (ring::read_mark(shared, BASE_KEY), &self.state) {
            (Some(base), Some(state))
                if !base.is_newer_than(state.position().0, state.position().1) =>
            {
                Applied::AlreadyHeld
            }
            _ => Applied::Gap,
        }
    }

    /// Replaces the state with the base when the base is newer (and not one that failed
    /// before); whether it did. The ring is then followed from the base's place.
    fn adopt_base(&mut self, shared: &dyn SharedData) -> bool {
        let Some(base) = ring::read_mark(shared, BASE_KEY) else { return false };
        let newer =
            self.state.as_ref().is_none_or(|s| base.is_newer_than(s.position().0, s.position().1));
        if !newer || self.rejected_base.as_ref() == Some(&base) {
            return false;
        }
        let (Some(document), _) = shared.get(WHOLE_KEY) else { return false };
        match S::read_whole(&document) {
            Ok(state) => {
                self.install(state, Some(base.etag), base.seq);
                self.rejected_base = None;
                true
            }
            Err(e) => {
                log::warn!("the shared key state is malformed, keeping the previous one: {e}");
                self.rejected_base = Some(base);
                false
            }
        }
    }

    /// Takes a whole state this worker got from the control plane at ring position `seq`.
    fn install(&mut self, state: S, etag: Option<String>, seq: u64) {
        self.state = Some(state);
        self.etag = etag;
        self.seq = seq;
        self.behind = false;
        self.wholes += 1;
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
