//! Requests that wait: for a lookup of their credential at the control plane ([`crate::lookup`])
//! or for a lease of their limits ([`crate::limits::lease`]). The request that dispatched the
//! call gets its answer, and resumes or refuses every request waiting for it, each acting on its
//! own stream.

use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};

use super::{Request, StreamHost};
use crate::body_budget::BodyBudget;
use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::feed::limits::{LeaseAsk, LimitKey};
use crate::limits::float::Float;
use crate::limits::lease::{self, Upkeep};
use crate::lookup::LookupResult;
use crate::state_sync::SharedData;
use crate::worker::Worker;

/// A waiting request, to resume once its call is answered.
pub struct Waiter<H> {
    request: Rc<RefCell<Request<H>>>,
}

impl<H> Waiter<H> {
    /// Waits with `request`.
    pub fn new(request: Rc<RefCell<Request<H>>>) -> Self {
        Self { request }
    }

    /// Sends `call` (a lookup others wait for too) as this request: its answer comes here.
    pub fn resend(&self, feed: &StateFeed, call: &CallRequest) -> Option<u32>
    where
        H: StreamHost,
    {
        let mut request = self.request.try_borrow_mut().ok()?;
        if !request.is_waiting() {
            return None;
        }
        let token = request.host.dispatch(feed, call)?;
        request.lookup_call = Some(token);
        Some(token)
    }

    /// Whether this is `request`.
    pub fn is(&self, request: &Weak<RefCell<Request<H>>>) -> bool {
        std::ptr::eq(Rc::as_ptr(&self.request), request.as_ptr())
    }
}

/// A lease call in flight, and the request that waits for it (the answer comes to it).
pub struct PendingLease<H> {
    pub token: u32,
    pub asks: Vec<LeaseAsk>,
    pub waiter: Waiter<H>,
}

/// The worker's credential state, shared by its requests (and its root, in the wasm glue).
pub type SharedWorker<H> = Rc<RefCell<Worker<Waiter<H>>>>;

/// The request bytes the worker buffers, shared by its requests.
pub type SharedBudget = Rc<RefCell<BodyBudget>>;

/// What the Envoy keeps up with the control plane for its limits (see [`Upkeep`]); one per
/// worker in the wasm glue, one per Envoy in the native one (whose workers have no tick).
pub type SharedUpkeep = Arc<Mutex<Upkeep>>;

/// The worker's side of the limits: the Envoy's instance name, its upkeep, the worker's float,
/// and the lease calls in flight; shared by the worker's requests.
pub struct LimitsGlue<H> {
    pub instance: String,
    pub upkeep: SharedUpkeep,
    pub float: Float,
    /// Lease calls in flight.
    pub pending: Vec<PendingLease<H>>,
}

impl<H> LimitsGlue<H> {
    /// A worker's limits with no call in flight.
    pub fn new(instance: String, upkeep: SharedUpkeep, float: Float) -> Self {
        Self { instance, upkeep, float, pending: Vec::new() }
    }

    /// Remembers the limits of `asks` for the upkeep.
    pub fn note(&self, asks: &[LeaseAsk]) {
        if let Ok(mut upkeep) = self.upkeep.lock() {
            upkeep.note(asks);
        }
    }

    /// Remembers limits a reply overdrew, for the upkeep to charge.
    pub fn note_overdrawn(&self, keys: Vec<LimitKey>) {
        if keys.is_empty() {
            return;
        }
        if let Ok(mut upkeep) = self.upkeep.lock() {
            upkeep.note_overdrawn(keys);
        }
    }
}

/// See [`LimitsGlue`].
pub type SharedLimits<H> = Rc<RefCell<LimitsGlue<H>>>;

/// Takes in `answer` to call `token` if it is a lease call: applies it to the ledger and resumes
/// or refuses the request that waited for it (if it is still there). Whether it was one; the
/// caller then makes its own stream current again.
pub fn lease_answered<H: StreamHost>(
    limits: &SharedLimits<H>,
    shared: &mut dyn SharedData,
    now_ms: u64,
    token: u32,
    answer: &CallAnswer,
) -> bool {
    let pending = match limits.try_borrow_mut() {
        Ok(mut glue) => match glue.pending.iter().position(|p| p.token == token) {
            Some(i) => glue.pending.swap_remove(i),
            None => return false,
        },
        Err(_) => return false,
    };
    match lease::read_answer(answer, &pending.asks) {
        Ok(grants) => lease::apply(shared, &pending.asks, &grants, now_ms),
        Err(e) => log::warn!("{e}"),
    }
    if let Ok(mut request) = pending.waiter.request.try_borrow_mut() {
        if request.is_leasing() && request.host.activate() {
            request.lease_answered();
        }
    }
    true
}

/// Counts one lookup (or a refusal without one) in the filter's metrics.
pub fn count(host: &mut impl StreamHost, result: LookupResult) {
    host.emit(&[crate::metrics::credential_lookup(result)]);
}

/// Takes in `answer` to lookup `token`: resumes or refuses the requests that waited for it;
/// what the lookup came to, for the caller to count. The caller then makes its own stream
/// current again.
pub fn lookup_answered<H: StreamHost>(
    worker: &SharedWorker<H>,
    now_ms: u64,
    token: u32,
    answer: &CallAnswer,
) -> Option<LookupResult> {
    let answered = match worker.try_borrow_mut() {
        Ok(mut worker) => worker.lookup_answered(token, now_ms, answer),
        Err(_) => None,
    };
    let (result, waiters) = answered?;
    resume_waiters(worker, waiters);
    Some(result)
}

/// Checks the credential of every waiter again now that its lookup has ended, and resumes or
/// refuses it on its own stream. The caller then makes its own stream current again.
pub fn resume_waiters<H: StreamHost>(worker: &SharedWorker<H>, waiters: Vec<Waiter<H>>) {
    for waiter in waiters {
        let Ok(mut request) = waiter.request.try_borrow_mut() else {
            log::error!("the state of a waiting request is in use");
            continue;
        };
        if request.is_waiting() && request.host.activate() {
            request.after_lookup(worker);
        }
    }
}
