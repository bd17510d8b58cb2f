//! What one Envoy worker knows and does about credentials, put together: the state it keeps
//! current with the other workers ([`crate::state_sync`]), the lookups' overlay over it ([`crate::overlay`]), and its
//! lookups ([`crate::lookup`]). The glue holds one per worker and carries out what it says; `W`
//! is whatever the glue needs to resume a request that waits for a lookup.

use crate::auth::Authority;
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::keys::Credentials;
use crate::lookup::{read_answer, LookupKey, LookupResult, Lookups, Start};
use crate::overlay::Overlay;
use crate::state_sync::{SharedData, StateSync};

/// See the module docs.
pub struct Worker<W> {
    sync: StateSync<Credentials>,
    overlay: Overlay,
    lookups: Lookups<W>,
}

impl<W> Worker<W> {
    /// A worker configured by `feed`, holding no state yet.
    pub fn new(feed: &StateFeed) -> Self {
        Self {
            sync: StateSync::new(feed),
            overlay: Overlay::default(),
            lookups: Lookups::new(feed),
        }
    }

    /// What credentials are checked against; `None` until the first state.
    pub fn authority(&self) -> Option<Authority<'_>> {
        self.sync.state().map(|state| Authority::new(state, Some(&self.overlay)))
    }

    /// Brings the state up to what the workers share (see [`StateSync::adopt`]); whether it
    /// changed.
    pub fn adopt_shared(&mut self, shared: &dyn SharedData) -> bool {
        let wholes = self.sync.wholes_installed();
        let changed = self.sync.adopt(shared);
        self.changed(changed, wholes);
        changed
    }

    /// The next state call to dispatch now, if any (see [`StateSync::next_call`]).
    pub fn next_state_call(
        &mut self,
        shared: &mut dyn SharedData,
        now_ms: u64,
    ) -> Option<CallRequest> {
        self.sync.next_call(shared, now_ms)
    }

    /// The state call went out as `token`.
    pub fn state_call_sent(&mut self, token: u32) {
        self.sync.call_sent(token);
    }

    /// The state call could not be dispatched.
    pub fn state_call_not_sent(&mut self, shared: &mut dyn SharedData, now_ms: u64) {
        self.sync.call_not_sent(shared, now_ms);
    }

    /// Whether call `token` is one of this worker's state calls.
    pub fn is_state_call(&self, token: u32) -> bool {
        self.sync.is_call(token)
    }

    /// The answer to state call `token`: what changed is applied (and shared, for the pull).
    pub fn state_call_answered(
        &mut self,
        shared: &mut dyn SharedData,
        now_ms: u64,
        token: u32,
        answer: &CallAnswer,
    ) {
        let wholes = self.sync.wholes_installed();
        let changed = self.sync.call_answered(shared, now_ms, token, answer);
        self.changed(changed, wholes);
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
    pub fn lookup_answered(
        &mut self,
        token: u32,
        now_ms: u64,
        answer: &CallAnswer,
    ) -> Option<(LookupResult, Vec<W>)> {
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

    /// The waiters of the lookup of `key`.
    pub fn lookup_waiters(&self, key: LookupKey) -> impl Iterator<Item = &W> {
        self.lookups.waiters(key)
    }

    /// The lookups whose answer is lost (past their deadline), with their waiters, to refuse.
    pub fn expired_lookups(&mut self, now_ms: u64) -> Vec<(LookupKey, Vec<W>)> {
        self.lookups.expired(now_ms)
    }

    /// After the state changed: what lookups learned before is dropped (the state is at least
    /// as new), and the change is logged (a whole new state as `adopted`, a delta as `changed`).
    fn changed(&mut self, changed: bool, wholes_before: u64) {
        if !changed {
            return;
        }
        self.overlay.clear();
        let Some(state) = self.sync.state() else { return };
        let version = state.position().1;
        if self.sync.wholes_installed() != wholes_before {
            log::info!(
                "key state adopted: {} keys, {} JWT keys, version {version}",
                state.len(),
                state.jwt_key_count()
            );
        } else {
            log::info!(
                "key state changed: {} keys, {} JWT keys, version {version}",
                state.len(),
                state.jwt_key_count()
            );
        }
    }
}

#[cfg(test)]
mod tests;
