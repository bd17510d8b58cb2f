//! What one Envoy worker knows and does about credentials, put together: the full state it
//! adopted ([`crate::state_sync`]), the lookups' overlay over it ([`crate::overlay`]), and its
//! lookups ([`crate::lookup`]). The glue holds one per worker and carries out what it says; `W`
//! is whatever the glue needs to resume a request that waits for a lookup.

use crate::auth::Authority;
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::keys::KeyState;
use crate::lookup::{read_answer, LookupKey, LookupResult, Lookups, Start};
use crate::overlay::Overlay;
use crate::state_sync::{SharedData, StateSync};

/// See the module docs.
pub struct Worker<W> {
    sync: StateSync,
    state: Option<KeyState>,
    overlay: Overlay,
    lookups: Lookups<W>,
}

impl<W> Worker<W> {
    /// A worker configured by `feed`, holding no state yet.
    pub fn new(feed: &StateFeed) -> Self {
        Self { sync: StateSync::new(feed), state: None, overlay: Overlay::default(), lookups: Lookups::new(feed) }
    }

    /// What credentials are checked against; `None` until the first state.
    pub fn authority(&self) -> Option<Authority<'_>> {
        self.state.as_ref().map(|state| Authority::new(state, Some(&self.overlay)))
    }

    /// Adopts the shared state if it is newer than the one held; whether it did.
    pub fn adopt_shared(&mut self, shared: &dyn SharedData) -> bool {
        match self.sync.adopt(shared, KeyState::parse) {
            Some(state) => {
                log::info!("key state adopted: {} keys, {} JWT keys", state.len(), state.jwt_key_count());
                self.install(state);
                true
            }
            None => false,
        }
    }

    /// The pull to dispatch now, if this worker is to pull (see [`StateSync::begin_pull`]).
    pub fn begin_pull(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Option<CallRequest> {
        self.sync.begin_pull(shared, now_ms)
    }

    /// The pull went out as call `token`.
    pub fn pull_sent(&mut self, token: u32) {
        self.sync.pull_sent(token);
    }

    /// The pull could not be dispatched.
    pub fn pull_not_sent(&mut self, shared: &mut dyn SharedData) {
        self.sync.pull_not_sent(shared);
    }

    /// Whether call `token` is this worker's pull.
    pub fn is_pull(&self, token: u32) -> bool {
        self.sync.is_pull(token)
    }

    /// The answer to this worker's pull: a new state is installed and shared.
    pub fn pull_answered(&mut self, shared: &mut dyn SharedData, now_ms: u64, answer: &CallAnswer) {
        if let Some(state) = self.sync.pull_answered(shared, now_ms, answer, KeyState::parse) {
            log::info!("key state pulled: {} keys, {} JWT keys", state.len(), state.jwt_key_count());
            self.install(state);
        }
    }

    /// A refused request (`waiter`) wants `key` looked up (see [`Lookups::start`]).
    pub fn start_lookup(&mut self, key: LookupKey, waiter: W, now_ms: u64) -> Start<W> {
        self.lookups.start(key, waiter, now_ms)
    }

    /// The lookup of `key` went out as call `token`.
    pub fn lookup_sent(&mut self, key: LookupKey, token: u32) {
        self.lookups.sent(key, token);
    }

    /// The lookup of `key` could not be dispatched: its waiters, to refuse.
    pub fn lookup_not_sent(&mut self, key: LookupKey) -> Vec<W> {
        self.lookups.not_sent(key)
    }

    /// Call `token` answered a lookup: the answer is merged into the overlay (an absent credential
    /// is remembered as such) and the waiters are handed back, to check again and resume or
    /// refuse. `None` when `token` is no lookup of this worker.
    pub fn lookup_answered(&mut self, token: u32, now_ms: u64, answer: &CallAnswer) -> Option<(LookupResult, Vec<W>)> {
        let (key, waiters) = self.lookups.answered(token)?;
        let result = match read_answer(answer) {
            Ok(feed) => self.overlay.merge(&key, feed),
            Err(e) => {
                log::warn!("credential lookup failed: {e}");
                LookupResult::Error
            }
        };
        match result {
            LookupResult::Absent => self.lookups.absent(key, now_ms),
            LookupResult::Found => self.lookups.give_back(now_ms),
            _ => {}
        }
        Some((result, waiters))
    }

    /// Whoever dispatched lookup call `token` is gone (`gone` tells its waiter): the lookup is to
    /// be sent again for the others ([`Self::lookups_to_resend`]).
    pub fn lookup_orphaned(&mut self, token: u32, gone: impl Fn(&W) -> bool) {
        self.lookups.orphaned(token, gone);
    }

    /// The lookups to send again now, each then reported as sent or not sent.
    pub fn lookups_to_resend(&mut self, now_ms: u64) -> Vec<LookupKey> {
        self.lookups.to_resend(now_ms)
    }

    /// The lookups whose answer is lost (past their deadline), with their waiters, to refuse.
    pub fn expired_lookups(&mut self, now_ms: u64) -> Vec<(LookupKey, Vec<W>)> {
        self.lookups.expired(now_ms)
    }

    /// A newer full state replaces the held one, and what lookups learned before it.
    fn install(&mut self, state: KeyState) {
        self.state = Some(state);
        self.overlay.clear();
    }
}

#[cfg(test)]
mod tests;
