//! How the workers of one Envoy keep the key state current together, over Envoy's shared data
//! ([`SharedData`]; the glue implements it with host calls, tests with a map):
//!
//! - **adopt**: on each tick (and before refusing a credential) a worker compares the shared
//!   version with the one it holds (one small read) and adopts the shared state when it differs.
//!   A shared state that does not parse is skipped, and not read again until its version changes;
//!   the worker keeps its last good one.
//! - **lease**: one worker at a time pulls from the control plane; it takes the lease by
//!   compare-and-swap when the lease has run out. The lease covers the whole call (its timeout
//!   and [`LEASE_SLACK_MS`]); a pull that never got an answer by then is forgotten.
//! - **long poll**: once a state is held, the pull asks the control plane to hold it until
//!   something changes (`?wait_ms=` with `If-None-Match`); when it answers (200 or 304) the lease
//!   is handed back at once, so the next pull goes out on the next tick and a change reaches every
//!   worker as soon as it is committed. Before the first state, and with `long_poll_ms` 0, pulls
//!   are short and go out every `refresh_ms`; a 304 never brings the next pull nearer than
//!   `refresh_ms` after the previous one started.
//! - **retry**: after a failed pull (no answer, not 200/304, a body that does not parse) the
//!   next one waits `refresh_ms` (500 ms at most before the first state); a pull that could not
//!   be dispatched gives the lease back at once.
//!
//! A pulled state is shared as it came (no copy with its version in front: at 100,000 keys that
//! is 16 MB more at the puller's high-water mark) under [`STATE_KEY`], then its version under
//! [`VERSION_KEY`]. A reader reads the version, then the state: the state it gets is that version
//! or a newer one (never an older one), so at worst it adopts the newer state again when its
//! version follows. The keys are not those of earlier filter builds (`<etag>\n<document>`),
//! so that an old and a new build running side by side during an upgrade do not read each
//! other's format.

use crate::config::StateFeed;
use crate::control_plane::{with_query, CallAnswer, CallRequest};

/// Shared-data key of the state: the feed document.
pub const STATE_KEY: &str = "vllm_gateway.feed.document";
/// Shared-data key of the state's version (its ETag), small and cheap to read.
pub const VERSION_KEY: &str = "vllm_gateway.feed.version";
/// Shared-data key of the pull lease: the Unix millisecond until which one worker owns the pull.
pub const LEASE_KEY: &str = "vllm_gateway.feed.pull_lease";
/// How long a lease outlives its call's timeout.
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

/// A pull this worker has dispatched (or is about to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pull {
    /// The lease it holds: until when.
    lease_until: u64,
    started_ms: u64,
    /// The call's token, once dispatched.
    token: Option<u32>,
}

/// One worker's side of the state machinery (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct StateSync {
    refresh_ms: u64,
    timeout_ms: u64,
    long_poll_ms: u64,
    path: String,
    /// The version of the state this worker holds.
    version: Option<Vec<u8>>,
    /// A shared version that did not parse.
    rejected: Option<Vec<u8>>,
    pull: Option<Pull>,
}

impl StateSync {
    /// The machinery as `feed` configures it, holding no state yet.
    pub fn new(feed: &StateFeed) -> Self {
        Self {
            refresh_ms: feed.refresh_ms,
            timeout_ms: feed.timeout_ms,
            long_poll_ms: feed.long_poll_ms,
            path: feed.path.clone(),
            ..Self::default()
        }
    }

    /// Whether a state is held.
    pub fn has_state(&self) -> bool {
        self.version.is_some()
    }

    /// The shared state, parsed by `parse`, when its version differs from the one held (and did
    /// not fail to parse before); the worker then holds that version.
    pub fn adopt<S, E: std::fmt::Display>(
        &mut self,
        shared: &dyn SharedData,
        parse: impl FnOnce(&[u8]) -> Result<S, E>,
    ) -> Option<S> {
        let (Some(version), _) = shared.get(VERSION_KEY) else { return None };
        if self.version.as_ref() == Some(&version) || self.rejected.as_ref() == Some(&version) {
            return None;
        }
        let (Some(document), _) = shared.get(STATE_KEY) else { return None };
        match parse(&document) {
            Ok(state) => {
                self.version = Some(version);
                self.rejected = None;
                Some(state)
            }
            Err(e) => {
                log::warn!("shared key state is malformed, keeping the previous one: {e}");
                self.rejected = Some(version);
                None
            }
        }
    }

    /// Takes the lease if it has run out and returns the pull to dispatch; `None` when another
    /// worker holds it, or this one has a pull in flight.
    pub fn begin_pull(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Option<CallRequest> {
        if let Some(pull) = self.pull {
            if pull.lease_until > now_ms {
                return None;
            }
            log::warn!("the key state pull got no answer before its lease ran out; forgotten");
            self.pull = None;
        }
        let (mut lease, mut cas) = shared.get(LEASE_KEY);
        if lease.is_none() {
            // Created first, so that taking it below is a real compare-and-swap.
            shared.set(LEASE_KEY, b"0", None);
            (lease, cas) = shared.get(LEASE_KEY);
        }
        if lease.is_none() || lease.as_deref().and_then(read_ms).unwrap_or(0) > now_ms {
            return None;
        }
        let etag = self.version.as_ref().filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned());
        let long = etag.is_some() && self.long_poll_ms > 0;
        let timeout_ms = if long { self.long_poll_ms + self.timeout_ms } else { self.timeout_ms };
        let lease_until = now_ms + timeout_ms + LEASE_SLACK_MS;
        if !shared.set(LEASE_KEY, lease_until.to_string().as_bytes(), cas) {
            return None;
        }
        self.pull = Some(Pull { lease_until, started_ms: now_ms, token: None });
        let path = if long { with_query(&self.path, "wait_ms", &self.long_poll_ms.to_string()) } else { self.path.clone() };
        Some(CallRequest { path, if_none_match: etag, timeout_ms })
    }

    /// The pull [`Self::begin_pull`] returned was dispatched as call `token`.
    pub fn pull_sent(&mut self, token: u32) {
        if let Some(pull) = &mut self.pull {
            pull.token = Some(token);
        }
    }

    /// The pull could not be dispatched: the lease is given back so that a worker pulls at its
    /// next tick.
    pub fn pull_not_sent(&mut self, shared: &mut dyn SharedData) {
        if let Some(pull) = self.pull.take() {
            hand_back(shared, pull.lease_until, 0);
        }
    }

    /// Whether call `token` is this worker's pull.
    pub fn is_pull(&self, token: u32) -> bool {
        self.pull.is_some_and(|p| p.token == Some(token))
    }

    /// The answer to this worker's pull: the new state, parsed by `parse` and shared with every
    /// worker, when there is one. Sets when the next pull is due (see the module docs).
    pub fn pull_answered<S, E: std::fmt::Display>(
        &mut self,
        shared: &mut dyn SharedData,
        now_ms: u64,
        answer: &CallAnswer,
        parse: impl FnOnce(&[u8]) -> Result<S, E>,
    ) -> Option<S> {
        let pull = self.pull.take()?;
        let retry_at = now_ms + if self.has_state() { self.refresh_ms } else { self.timeout_ms.min(FIRST_STATE_RETRY_MS) };
        let (next_ms, state) = match answer.status {
            Some(200) => match parse(&answer.body) {
                Ok(state) => {
                    let etag = answer.etag.clone().unwrap_or_default();
                    share(shared, etag.as_bytes(), &answer.body);
                    self.version = Some(etag.into_bytes());
                    let long = self.long_poll_ms > 0 && self.version.as_ref().is_some_and(|v| !v.is_empty());
                    (if long { now_ms } else { pull.started_ms + self.refresh_ms }, Some(state))
                }
                Err(e) => {
                    log::warn!("pulled key state is malformed, keeping the previous one: {e}");
                    (retry_at, None)
                }
            },
            Some(304) => (now_ms.max(pull.started_ms + self.refresh_ms), None),
            other => {
                let other = other.map_or("nothing (control plane unreachable?)".to_owned(), |s| s.to_string());
                log::warn!("key state pull answered {other}");
                (retry_at, None)
            }
        };
        hand_back(shared, pull.lease_until, next_ms);
        state
    }
}

/// Sets the lease to `next_ms` if it is still the one this worker took (`held`).
fn hand_back(shared: &mut dyn SharedData, held: u64, next_ms: u64) {
    let (lease, cas) = shared.get(LEASE_KEY);
    if lease.as_deref().and_then(read_ms) == Some(held) {
        shared.set(LEASE_KEY, next_ms.to_string().as_bytes(), cas);
    }
}

/// Shares a state with every worker: the state first, then its version.
fn share(shared: &mut dyn SharedData, etag: &[u8], document: &[u8]) {
    if !(shared.set(STATE_KEY, document, None) && shared.set(VERSION_KEY, etag, None)) {
        log::warn!("sharing the key state failed");
    }
}

fn read_ms(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
