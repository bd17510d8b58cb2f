//! The calls of the state machinery: the pull one worker makes for everyone under the lease, and
//! the catch-up a worker makes for itself (see the parent module's docs for the rules).

use super::ring::{self, Change, Mark, BASE_KEY, HEAD_KEY};
use super::{
    Applied, Pending, SharedData, StateSync, SyncedState, FIRST_STATE_RETRY_MS, LEASE_KEY,
    LEASE_SLACK_MS,
};
use crate::control_plane::{with_query, CallAnswer, CallRequest};
use crate::feed::{EPOCH_PARAM, SINCE_PARAM};

impl<S: SyncedState> StateSync<S> {
    /// The next call to dispatch now, if any: a catch-up when this worker is behind, else the
    /// pull when this worker may take the lease. The glue asks at most twice a tick and reports
    /// each call as sent or not sent before asking again.
    pub fn next_call(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Option<CallRequest> {
        for pending in [&mut self.pull, &mut self.catch_up] {
            if pending.as_ref().is_some_and(|p| p.until <= now_ms) {
                log::warn!("a key-state call got no answer in time; forgotten");
                *pending = None;
            }
        }
        if self.behind && self.catch_up.is_none() && now_ms >= self.catch_up_after {
            return Some(self.begin_catch_up(shared, now_ms));
        }
        self.begin_pull(shared, now_ms)
    }

    /// The call [`Self::next_call`] returned went out as `token`.
    pub fn call_sent(&mut self, token: u32) {
        if let Some(pending) =
            [&mut self.catch_up, &mut self.pull].into_iter().flatten().find(|p| p.token.is_none())
        {
            pending.token = Some(token);
        }
    }

    /// The call [`Self::next_call`] returned could not be dispatched: a catch-up is tried again
    /// `refresh_ms` later, a pull's lease is given back so that a worker pulls at its next tick.
    pub fn call_not_sent(&mut self, shared: &mut dyn SharedData, now_ms: u64) {
        if self.catch_up.as_ref().is_some_and(|c| c.token.is_none()) {
            self.catch_up = None;
            self.catch_up_after = now_ms + self.refresh_ms;
        } else if let Some(pull) = self.pull.take_if(|p| p.token.is_none()) {
            hand_back(shared, pull.until, 0);
        }
    }

    /// Whether call `token` is this worker's pull or catch-up.
    pub fn is_call(&self, token: u32) -> bool {
        [&self.pull, &self.catch_up].into_iter().flatten().any(|p| p.token == Some(token))
    }

    /// The answer to call `token`; whether the state held changed.
    pub fn call_answered(
        &mut self,
        shared: &mut dyn SharedData,
        now_ms: u64,
        token: u32,
        answer: &CallAnswer,
    ) -> bool {
        if self.catch_up.as_ref().is_some_and(|c| c.token == Some(token)) {
            return self.catch_up_answered(shared, now_ms, answer);
        }
        let Some(pull) = self.pull.take_if(|p| p.token == Some(token)) else { return false };
        let retry_at = now_ms
            + if self.state.is_some() {
                self.refresh_ms
            } else {
                self.timeout_ms.min(FIRST_STATE_RETRY_MS)
            };
        let (next_ms, changed) = match answer.status {
            Some(200) => match self.take_pulled(shared, answer) {
                Ok(changed) => (
                    if self.long_polls() { now_ms } else { pull.started_ms + self.refresh_ms },
                    changed,
                ),
                Err(e) => {
                    log::warn!("the pulled key state is not usable, keeping the previous one: {e}");
                    (retry_at, false)
                }
            },
            Some(304) => (now_ms.max(pull.started_ms + self.refresh_ms), false),
            other => {
                log::warn!("key state pull answered {}", describe(other));
                (retry_at, false)
            }
        };
        hand_back(shared, pull.until, next_ms);
        changed
    }

    /// Whether pulls are held by the control plane until something changes.
    fn long_polls(&self) -> bool {
        self.long_poll_ms > 0 && self.etag.as_ref().is_some_and(|e| !e.is_empty())
    }

    /// Takes the lease if it has run out and this worker is at the head; the pull to dispatch.
    fn begin_pull(&mut self, shared: &mut dyn SharedData, now_ms: u64) -> Option<CallRequest> {
        let head = ring::read_mark(shared, HEAD_KEY);
        let ready = match (&self.state, &head) {
            (None, None) => true,
            (Some(_), Some(head)) => !self.behind && head.seq == self.seq,
            _ => false,
        };
        if !ready || self.pull.is_some() {
            return None;
        }
        let long = self.state.is_some() && self.long_polls();
        let timeout_ms = if long { self.long_poll_ms + self.timeout_ms } else { self.timeout_ms };
        let until = take_lease(shared, now_ms, now_ms + timeout_ms + LEASE_SLACK_MS)?;
        self.pull = Some(Pending { until, started_ms: now_ms, token: None, head_seq: self.seq });
        let mut path = self.since_path();
        if long {
            path = with_query(&path, "wait_ms", &self.long_poll_ms.to_string());
        }
        Some(CallRequest {
            path,
            if_none_match: self.etag.clone().filter(|e| !e.is_empty()),
            timeout_ms,
            body: None,
        })
    }

    /// A catch-up: the changes since the version held, or the whole state; never held open.
    fn begin_catch_up(&mut self, shared: &dyn SharedData, now_ms: u64) -> CallRequest {
        let head_seq = ring::read_mark(shared, HEAD_KEY).map_or(0, |h| h.seq);
        let until = now_ms + self.timeout_ms + LEASE_SLACK_MS;
        self.catch_up = Some(Pending { until, started_ms: now_ms, token: None, head_seq });
        CallRequest {
            path: self.since_path(),
            if_none_match: None,
            timeout_ms: self.timeout_ms,
            body: None,
        }
    }

    /// The state path, asking for the changes since the version held when one is.
    fn since_path(&self) -> String {
        match &self.state {
            Some(state) => {
                let (epoch, version) = state.position();
                let path = with_query(&self.path, SINCE_PARAM, &version.to_string());
                with_query(&path, EPOCH_PARAM, epoch)
            }
            None => self.path.clone(),
        }
    }

    /// A 200 to the pull: a delta is applied and pushed onto the ring, a whole state installed,
    /// shared as the base and announced on the ring.
    fn take_pulled(
        &mut self,
        shared: &mut dyn SharedData,
        answer: &CallAnswer,
    ) -> Result<bool, String> {
        let etag = answer.etag.clone().unwrap_or_default();
        if answer.delta {
            if !self.apply_answered_delta(&answer.body)? {
                return Ok(false);
            }
            let mark = self.mark(etag)?;
            self.etag = Some(mark.etag.clone());
            match ring::push_change(shared, mark, &Change::Delta(answer.body.clone())) {
                Some(seq) => self.seq = seq,
                None => log::warn!("sharing a key-state change failed"),
            }
            return Ok(true);
        }
        let state = S::read_whole(&answer.body).map_err(|e| e.to_string())?;
        self.install(state, Some(etag.clone()), self.seq);
        let mark = self.mark(etag)?;
        let next_seq = ring::read_mark(shared, HEAD_KEY).map_or(1, |h| h.seq + 1);
        if !ring::share_base(shared, &Mark { seq: next_seq, ..mark.clone() }, &answer.body) {
            log::warn!("sharing the key state failed");
        }
        if let Some(seq) = ring::push_change(shared, mark, &Change::Whole) {
            self.seq = seq;
        }
        Ok(true)
    }

    /// The answer to this worker's catch-up: applied or installed, and the ring followed from
    /// where the head was when it was asked.
    fn catch_up_answered(
        &mut self,
        shared: &mut dyn SharedData,
        now_ms: u64,
        answer: &CallAnswer,
    ) -> bool {
        let Some(catch_up) = self.catch_up.take() else { return false };
        match self.take_catch_up(shared, answer, catch_up.head_seq) {
            Ok(changed) => {
                self.behind = false;
                self.seq = self.seq.max(catch_up.head_seq);
                changed
            }
            Err(e) => {
                log::warn!("key state catch-up failed: {e}");
                self.catch_up_after = now_ms + self.refresh_ms;
                false
            }
        }
    }

    fn take_catch_up(
        &mut self,
        shared: &mut dyn SharedData,
        answer: &CallAnswer,
        head_seq: u64,
    ) -> Result<bool, String> {
        if answer.status != Some(200) {
            return Err(format!("answered {}", describe(answer.status)));
        }
        let etag = answer.etag.clone().unwrap_or_default();
        if answer.delta {
            let changed = self.apply_answered_delta(&answer.body)?;
            if changed {
                self.etag = Some(etag);
            }
            return Ok(changed);
        }
        let state = S::read_whole(&answer.body).map_err(|e| e.to_string())?;
        self.install(state, Some(etag.clone()), head_seq);
        let mark = Mark { seq: head_seq, ..self.mark(etag)? };
        let base_is_older = ring::read_mark(shared, BASE_KEY)
            .is_none_or(|b| mark.is_newer_than(&b.epoch, b.version));
        if base_is_older && !ring::share_base(shared, &mark, &answer.body) {
            log::warn!("sharing the key state failed");
        }
        Ok(true)
    }

    /// Applies a delta the control plane answered: whether the state changed; an error when it
    /// does not parse or does not follow the state held (nothing applied).
    fn apply_answered_delta(&mut self, delta: &[u8]) -> Result<bool, String> {
        let state = self.state.as_mut().ok_or("a delta, and no state to apply it to")?;
        match state.apply_delta(delta).map_err(|e| e.to_string())? {
            Applied::Gap => Err("the delta does not follow the state held".into()),
            Applied::AlreadyHeld => Ok(false),
            Applied::Changed => Ok(true),
        }
    }

    /// The mark of the state held, named `etag`.
    fn mark(&self, etag: String) -> Result<Mark, String> {
        let (epoch, version) = self.state.as_ref().map(S::position).ok_or("no state")?;
        Ok(Mark { seq: self.seq, epoch: epoch.to_owned(), version, etag })
    }
}

/// Takes the lease (creating it first when absent) if it has run out by `now_ms`, to hold it
/// until `until`; `None` when another worker holds it or took it first.
fn take_lease(shared: &mut dyn SharedData, now_ms: u64, until: u64) -> Option<u64> {
    let (mut lease, mut cas) = shared.get(LEASE_KEY);
    if lease.is_none() {
        // Created first, so that taking it below is a real compare-and-swap.
        shared.set(LEASE_KEY, b"0", None);
        (lease, cas) = shared.get(LEASE_KEY);
    }
    if lease.as_deref().and_then(read_ms)? > now_ms {
        return None;
    }
    shared.set(LEASE_KEY, until.to_string().as_bytes(), cas).then_some(until)
}

/// Sets the lease to `next_ms` if it is still the one this worker took (`held`).
fn hand_back(shared: &mut dyn SharedData, held: u64, next_ms: u64) {
    let (lease, cas) = shared.get(LEASE_KEY);
    if lease.as_deref().and_then(read_ms) == Some(held) {
        shared.set(LEASE_KEY, next_ms.to_string().as_bytes(), cas);
    }
}

pub(super) fn read_ms(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

fn describe(status: Option<u16>) -> String {
    status.map_or("nothing (control plane unreachable?)".to_owned(), |s| s.to_string())
}
