//! Asking the control plane about one credential that the worker's state refuses, before
//! refusing it: a key, a user or a signing key created (or re-enabled) a moment ago works on its
//! first use. What keeps this from ever reaching the control plane in bulk:
//!
//! - **single flight**: one lookup per credential per worker at a time; the requests that come
//!   for it meanwhile wait for the same answer;
//! - **negative cache**: a credential the control plane said does not exist is refused without a
//!   new lookup for `state.lookup_negative_ttl_ms` (at most [`MAX_NEGATIVE`] of them are kept);
//! - **cap**: at most `state.lookups_per_second` lookups per worker and second of credentials the
//!   control plane does not know; beyond it a refusal is answered at once, never queued. A
//!   lookup that found its credential is given back ([`Lookups::give_back`]): a script that
//!   creates many keys a second is never capped, and an app re-enabled a moment ago works on its
//!   next request however often its clients were refused meanwhile. A flood of random keys is
//!   capped. What a known but refused credential (a disabled app's key) costs is one indexed
//!   lookup per refused request, one at a time per credential and worker.
//!
//! A lookup that gets no usable answer refuses its requests as before (never a 5xx, never a hang:
//! a flight past its deadline is swept). The answer goes to the request that dispatched the
//! lookup; when that request ends first (its client went away), the lookup is sent again for the
//! others ([`Lookups::orphaned`], [`Lookups::to_resend`]). The waiters are whatever the glue needs
//! to resume a request (`W`); here they are only carried.

use std::collections::HashMap;

use crate::config::StateFeed;
use crate::control_plane::{with_query, CallAnswer, CallRequest};
use crate::credential::path_only;
use crate::feed::{key_hash_hex, Feed, KeyHash, LOOKUP_PATH, STATE_PATH};

/// Most credentials remembered as absent; beyond it (after dropping expired ones) no more are.
pub const MAX_NEGATIVE: usize = 10_000;
/// Time a flight may outlive its call's timeout before it is swept.
const DEADLINE_SLACK_MS: u64 = 1_000;

/// The credential a lookup asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKey {
    /// An API key, by its hash.
    Key(KeyHash),
    /// A JWT's user (and, with it, the current signing keys).
    User(i64),
}

impl LookupKey {
    /// The lookup's call: [`LOOKUP_PATH`] under the prefix of the state path (what comes before
    /// its [`STATE_PATH`]; none when it does not end with it), keeping that path's own query.
    pub fn call(&self, feed: &StateFeed) -> CallRequest {
        let base = path_only(&feed.path);
        let prefix = base.strip_suffix(STATE_PATH).unwrap_or("");
        let path = match feed.path.split_once('?') {
            Some((_, query)) if !query.is_empty() => format!("{prefix}{LOOKUP_PATH}?{query}"),
            _ => format!("{prefix}{LOOKUP_PATH}"),
        };
        let path = match self {
            Self::Key(hash) => with_query(&path, "keyHash", &key_hash_hex(hash)),
            Self::User(id) => with_query(&path, "userId", &id.to_string()),
        };
        CallRequest { path, if_none_match: None, timeout_ms: feed.timeout_ms, body: None }
    }
}

/// How a lookup (or a request that might have had one) ended; the `result` label of
/// `vllm_gateway_credential_lookups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// The control plane knows the credential (whatever its status).
    Found,
    /// It does not.
    Absent,
    /// No usable answer: unreachable, timed out, not 200, malformed.
    Error,
    /// Not looked up: over `state.lookups_per_second`.
    Capped,
    /// Not looked up: said to be absent less than `state.lookup_negative_ttl_ms` ago.
    Cached,
}

impl LookupResult {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Found => "found",
            Self::Absent => "absent",
            Self::Error => "error",
            Self::Capped => "capped",
            Self::Cached => "cached",
        }
    }
}

/// The answer to a lookup, if it is one: a 200 carrying a [`Feed`].
pub fn read_answer(answer: &CallAnswer) -> Result<Feed, String> {
    match answer.status {
        Some(200) => {
            serde_json::from_slice(&answer.body).map_err(|e| format!("malformed answer: {e}"))
        }
        Some(status) => Err(format!("answered {status}")),
        None => Err("no answer (control plane unreachable, or timed out)".to_owned()),
    }
}

/// What to do with a request whose credential could be looked up.
#[derive(Debug, PartialEq, Eq)]
pub enum Start<W> {
    /// Dispatch the lookup ([`LookupKey::call`]), then report [`Lookups::sent`] or
    /// [`Lookups::not_sent`]; the request waits.
    Send,
    /// The same credential is being looked up: the request waits for that answer.
    Joined,
    /// Refuse the request now; the result is what to count (`None`: lookups are off).
    Refuse(W, Option<LookupResult>),
}

struct Flight<W> {
    key: LookupKey,
    token: Option<u32>,
    /// Its answer will never come (whoever dispatched it is gone): to be sent again.
    orphaned: bool,
    deadline_ms: u64,
    waiters: Vec<W>,
}

/// The lookups of one worker: those in flight with their waiters, the negative cache, the cap.
pub struct Lookups<W> {
    negative_ttl_ms: u64,
    per_second: u32,
    timeout_ms: u64,
    flights: Vec<Flight<W>>,
    negative: HashMap<LookupKey, u64>,
    /// The second (Unix) the count is for, and the lookups started in it.
    window: (u64, u32),
}

impl<W> Lookups<W> {
    /// Lookups as `feed` configures them.
    pub fn new(feed: &StateFeed) -> Self {
        Self {
            negative_ttl_ms: feed.lookup_negative_ttl_ms,
            per_second: feed.lookups_per_second,
            timeout_ms: feed.timeout_ms,
            flights: Vec::new(),
            negative: HashMap::new(),
            window: (0, 0),
        }
    }

    /// A request that `waiter` stands for wants `key` looked up at `now_ms`.
    pub fn start(&mut self, key: LookupKey, waiter: W, now_ms: u64) -> Start<W> {
        if self.per_second == 0 {
            return Start::Refuse(waiter, None);
        }
        if let Some(flight) = self.flights.iter_mut().find(|f| f.key == key) {
            flight.waiters.push(waiter);
            return Start::Joined;
        }
        if self.negative.get(&key).is_some_and(|until| *until > now_ms) {
            return Start::Refuse(waiter, Some(LookupResult::Cached));
        }
        let second = now_ms / 1000;
        if self.window.0 != second {
            self.window = (second, 0);
        }
        if self.window.1 >= self.per_second {
            return Start::Refuse(waiter, Some(LookupResult::Capped));
        }
        self.window.1 += 1;
        let deadline_ms = self.deadline(now_ms);
        self.flights.push(Flight {
            key,
            token: None,
            orphaned: false,
            deadline_ms,
            waiters: vec![waiter],
        });
        Start::Send
    }

    /// A lookup started in this second found its credential: it does not count against the cap.
    pub fn give_back(&mut self, now_ms: u64) {
        if self.window.0 == now_ms / 1000 {
            self.window.1 = self.window.1.saturating_sub(1);
        }
    }

    fn deadline(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.timeout_ms).saturating_add(DEADLINE_SLACK_MS)
    }

    /// The lookup of `key` was dispatched as call `token`.
    pub fn sent(&mut self, key: LookupKey, token: u32) {
        if let Some(flight) = self.flights.iter_mut().find(|f| f.key == key) {
            flight.token = Some(token);
        }
    }

    /// The lookup of `key` could not be dispatched: its waiters, to refuse.
    pub fn not_sent(&mut self, key: LookupKey) -> Vec<W> {
        self.take(|f| f.key == key && f.token.is_none()).map(|f| f.waiters).unwrap_or_default()
    }

    /// Call `token` was answered: the key it looked up and its waiters; `None` when `token` is
    /// not a lookup (or was swept).
    pub fn answered(&mut self, token: u32) -> Option<(LookupKey, Vec<W>)> {
        self.take(|f| f.token == Some(token)).map(|f| (f.key, f.waiters))
    }

    /// Whoever dispatched call `token` is gone (`gone` tells its waiter), and the answer with it:
    /// the others still wait, for [`Self::to_resend`]; with no others the lookup is dropped.
    pub fn orphaned(&mut self, token: u32, gone: impl Fn(&W) -> bool) {
        let Some(at) = self.flights.iter().position(|f| f.token == Some(token)) else { return };
        let Some(flight) = self.flights.get_mut(at) else { return };
        flight.waiters.retain(|w| !gone(w));
        flight.token = None;
        flight.orphaned = true;
        if flight.waiters.is_empty() {
            self.flights.swap_remove(at);
        }
    }

    /// The lookups to send again at `now_ms` (their dispatcher is gone); each is then reported
    /// with [`Self::sent`] or [`Self::not_sent`]. Not counted against the cap: they were already.
    pub fn to_resend(&mut self, now_ms: u64) -> Vec<LookupKey> {
        let deadline_ms = self.deadline(now_ms);
        let orphans = self.flights.iter_mut().filter(|f| f.orphaned);
        orphans
            .map(|f| {
                f.orphaned = false;
                f.deadline_ms = deadline_ms;
                f.key
            })
            .collect()
    }

    /// The control plane said `key` does not exist (as of `now_ms`).
    pub fn absent(&mut self, key: LookupKey, now_ms: u64) {
        if self.negative_ttl_ms == 0 {
            return;
        }
        if self.negative.len() >= MAX_NEGATIVE {
            self.negative.retain(|_, until| *until > now_ms);
        }
        if self.negative.len() < MAX_NEGATIVE || self.negative.contains_key(&key) {
            self.negative.insert(key, now_ms.saturating_add(self.negative_ttl_ms));
        }
    }

    /// Every flight past its deadline (its answer is lost): its key and its waiters, to refuse.
    pub fn expired(&mut self, now_ms: u64) -> Vec<(LookupKey, Vec<W>)> {
        let (gone, kept) =
            std::mem::take(&mut self.flights).into_iter().partition(|f| f.deadline_ms <= now_ms);
        self.flights = kept;
        gone.into_iter().map(|f: Flight<W>| (f.key, f.waiters)).collect()
    }

    /// The waiters of the lookup of `key` (to send it again through one of them, when the host
    /// answers a call only to the request that sent it).
    pub fn waiters(&self, key: LookupKey) -> impl Iterator<Item = &W> {
        self.flights.iter().filter(move |f| f.key == key).flat_map(|f| f.waiters.iter())
    }

    /// Number of lookups in flight.
    pub fn in_flight(&self) -> usize {
        self.flights.len()
    }

    fn take(&mut self, matches: impl Fn(&Flight<W>) -> bool) -> Option<Flight<W>> {
        let at = self.flights.iter().position(matches)?;
        Some(self.flights.swap_remove(at))
    }
}

#[cfg(test)]
mod tests;
