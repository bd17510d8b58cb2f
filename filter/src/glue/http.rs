//! The HTTP context of one request: feeds Envoy's callbacks to the pure
//! [`Exchange`](crate::exchange::Exchange) (through [`Request`]) and carries out its steps.
//!
//! A request whose credential the worker's state refuses, for a reason a newer state could lift,
//! first looks for a newer shared state, then waits (paused in its headers) for a lookup at the
//! control plane ([`crate::lookup`]). The context that dispatched the lookup gets the answer and
//! resumes or refuses every request waiting for it, each under its own context; if that request
//! ends first, the root sends the lookup again for the others.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host;
use super::request::{Headers, Request};
use crate::body_budget::BodyBudget;
use crate::config::PluginConfig;
use crate::error::GatewayError;
use crate::exchange::RequestHead;
use crate::feed::limits::LeaseAsk;
use crate::limits::float::Float;
use crate::limits::lease::{self, Upkeep};
use crate::lookup::{LookupKey, LookupResult, Start};
use crate::worker::Worker;

/// A request waiting for a lookup: its context, and its state to resume it with.
pub struct Waiter {
    id: u32,
    request: Rc<RefCell<Request>>,
}

impl Waiter {
    /// The request of context `id`.
    pub fn new(id: u32, request: Rc<RefCell<Request>>) -> Self {
        Self { id, request }
    }

    /// Whether this is the request of context `id`.
    pub fn is(&self, id: u32) -> bool {
        self.id == id
    }
}

/// A lease call in flight, and the request that waits for it (the answer comes to that
/// request's context).
pub struct PendingLease {
    pub token: u32,
    pub asks: Vec<LeaseAsk>,
    pub waiter: Waiter,
}

/// The worker's credential state, shared by its root and HTTP contexts.
pub type SharedWorker = Rc<RefCell<Worker<Waiter>>>;

/// The request bytes the worker buffers, shared by its HTTP contexts.
pub type SharedBudget = Rc<RefCell<BodyBudget>>;

/// The worker's side of the limits: the Envoy's instance name, what it keeps up with the control
/// plane, and its float; shared by its root and HTTP contexts.
pub struct LimitsGlue {
    pub instance: String,
    pub upkeep: Upkeep,
    pub float: Float,
    /// Lease calls in flight.
    pub pending: Vec<PendingLease>,
}

/// Takes in the answer to call `token` if it is a lease call: applies it to the ledger and
/// resumes or refuses the request that waited for it (if it is still there). Whether it was one;
/// the caller then makes its own context current again.
fn lease_answered(limits: &SharedLimits, token: u32, body_size: usize) -> bool {
    let pending = match limits.try_borrow_mut() {
        Ok(mut glue) => match glue.pending.iter().position(|p| p.token == token) {
            Some(i) => glue.pending.swap_remove(i),
            None => return false,
        },
        Err(_) => return false,
    };
    match lease::read_answer(&host::call_answer(body_size), &pending.asks) {
        Ok(grants) => lease::apply(&mut host::HostSharedData, &pending.asks, &grants, host::now_ms()),
        Err(e) => log::warn!("{e}"),
    }
    let waiter = pending.waiter;
    if let Ok(mut request) = waiter.request.try_borrow_mut() {
        if request.is_leasing() && host::act_on(waiter.id) {
            request.lease_answered();
        }
    }
    true
}

/// See [`LimitsGlue`].
pub type SharedLimits = Rc<RefCell<LimitsGlue>>;

/// See the module docs.
pub struct GatewayHttp {
    id: u32,
    config: Rc<PluginConfig>,
    worker: SharedWorker,
    limits: SharedLimits,
    request: Rc<RefCell<Request>>,
    /// The lookup this context dispatched (its answer comes here).
    lookup_call: Option<u32>,
}

impl GatewayHttp {
    pub fn new(id: u32, config: Rc<PluginConfig>, worker: SharedWorker, budget: SharedBudget, limits: SharedLimits) -> Self {
        let request = Request::shared(id, config.clone(), budget, limits.clone(), host::now_ms());
        Self { id, config, worker, limits, request, lookup_call: None }
    }

    /// Runs `f` on the request; `busy` when its state is in use (never, by construction).
    fn with_request<T>(&self, busy: T, f: impl FnOnce(&mut Request) -> T) -> T {
        match self.request.try_borrow_mut() {
            Ok(mut request) => f(&mut request),
            Err(_) => {
                log::error!("the state of request context {} is in use", self.id);
                busy
            }
        }
    }

    /// Refuses the request now, answering for it in a request callback.
    fn refuse(&self, error: &GatewayError) -> Action {
        self.with_request((), |r| r.reply(error));
        Action::Pause
    }

    /// Looks `key` up before believing `refusal` (see [`crate::lookup`]).
    fn look_up(&mut self, key: LookupKey, refusal: GatewayError) -> Action {
        let waiter = Waiter { id: self.id, request: self.request.clone() };
        let Ok(mut worker) = self.worker.try_borrow_mut() else { return self.refuse(&refusal) };
        match worker.start_lookup(key, waiter, host::now_ms()) {
            Start::Joined => Action::Pause,
            Start::Send => match host::dispatch(&self.config.state, &key.call(&self.config.state)) {
                Ok(token) => {
                    worker.lookup_sent(key, token);
                    self.lookup_call = Some(token);
                    Action::Pause
                }
                Err(_) => {
                    drop(worker.lookup_not_sent(key));
                    drop(worker);
                    count(LookupResult::Error);
                    self.refuse(&refusal)
                }
            },
            Start::Refuse(_, counted) => {
                drop(worker);
                if let Some(result) = counted {
                    count(result);
                }
                self.refuse(&refusal)
            }
        }
    }
}

/// Counts one lookup (or a refusal without one) in the filter's metrics.
pub fn count(result: LookupResult) {
    super::metrics::emit(&[crate::metrics::credential_lookup(result)]);
}

/// Takes in the answer to call `token` if it is a lookup: counts it, and resumes or refuses the
/// requests that waited for it. The caller then makes its own context current again.
pub fn lookup_answered(worker: &SharedWorker, token: u32, body_size: usize) {
    let answered = match worker.try_borrow_mut() {
        Ok(mut worker) => worker.lookup_answered(token, host::now_ms(), &host::call_answer(body_size)),
        Err(_) => None,
    };
    if let Some((result, waiters)) = answered {
        count(result);
        resume_waiters(worker, waiters);
    }
}

/// Checks the credential of every waiter again now that its lookup has ended, and resumes or
/// refuses it under its own context. The caller then makes its own context current again.
pub fn resume_waiters(worker: &SharedWorker, waiters: Vec<Waiter>) {
    for waiter in waiters {
        let Ok(mut request) = waiter.request.try_borrow_mut() else {
            log::error!("the state of waiting request context {} is in use", waiter.id);
            continue;
        };
        if request.is_waiting() && host::act_on(waiter.id) {
            request.after_lookup(worker);
        }
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if lease_answered(&self.limits, token, body_size) {
            host::act_on(self.id);
            return;
        }
        self.lookup_call = None;
        lookup_answered(&self.worker, token, body_size);
        host::act_on(self.id);
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let head = RequestHead {
            method: host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default(),
            path: host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default(),
            authorization: host::header(MapType::HttpRequestHeaders, "authorization"),
        };
        let busy = Headers::Done(Action::Pause);
        match self.with_request(busy, |r| r.on_headers(&self.worker, head, end_of_stream)) {
            Headers::Done(action) => action,
            Headers::LookUp(key, refusal) => self.look_up(key, refusal),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_request(Action::Pause, |r| r.on_body(body_size, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let status = host::header(MapType::HttpResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = host::header(MapType::HttpResponseHeaders, "content-type");
        let content_encoding = host::header(MapType::HttpResponseHeaders, "content-encoding");
        let rewritten = self.with_request(false, |r| {
            r.on_response_headers(status, content_type.as_deref(), content_encoding.as_deref(), end_of_stream)
        });
        if rewritten {
            // The caller gets the stream without the injected usage: its length changes.
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.with_request((), |r| r.on_response_body(body_size, end_of_stream));
        Action::Continue
    }

    fn on_log(&mut self) {
        self.with_request((), Request::on_log);
        if let (Some(token), Ok(mut worker)) = (self.lookup_call.take(), self.worker.try_borrow_mut()) {
            // The answer would come to this context, which is going: the others still wait.
            worker.lookup_orphaned(token, |w| w.id == self.id);
        }
    }
}
