//! The driver of one request: its [`Exchange`] and what must be remembered between host
//! callbacks (the request head, the body so far, whether it waits for a lookup or a lease), over
//! a [`StreamHost`]. Both glues (proxy-wasm and the Envoy dynamic module) feed their callbacks to
//! it and carry out the [`Flow`] it returns; nothing here knows which host runs it.
//!
//! A request is shared (`Rc<RefCell<_>>`, per worker) so that the answer to a lookup or a lease,
//! which may arrive in another request's callback, can resume or refuse it ([`waiting`]).

pub mod context;
pub mod host;
mod response;
pub mod tick;
pub mod waiting;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

pub use context::RequestContext;
pub use host::{Calls, Flow, StreamHost};
pub use waiting::{LimitsGlue, PendingLease, SharedBudget, SharedLimits, SharedWorker, Waiter};

use crate::config::PluginConfig;
use crate::error::GatewayError;
use crate::exchange::{Ending, Exchange, RequestHead, Step};
use crate::feed::limits::LeaseAsk;
use crate::limits::{self, lease, Admission};
use crate::lookup::LookupKey;

/// What the request headers came to.
pub enum Headers {
    /// What Envoy is to do with the request.
    Done(Flow),
    /// Look this credential up before refusing the request with this error (it is paused).
    LookUp(LookupKey, GatewayError),
}

/// See the module docs.
pub struct Request<H> {
    /// The host's side of this request's stream.
    pub host: H,
    config: Rc<PluginConfig>,
    exchange: Exchange,
    head: RequestHead,
    reading_body: bool,
    waiting: bool,
    /// The request body buffered so far, and whether that is all of it.
    body: (usize, bool),
    /// The worker's budget of buffered request bytes, and this request's share of it.
    budget: SharedBudget,
    reserved: usize,
    /// The Envoy's limits upkeep (its instance name, the concurrency leases to keep alive).
    limits: SharedLimits<H>,
    /// Whether the request waits for a lease call (answered to the root context).
    leasing: bool,
    /// Itself (for the answer to its lease call to resume it).
    me: Weak<RefCell<Request<H>>>,
    /// The lookup call this request dispatched (its answer comes here), for others or itself.
    pub lookup_call: Option<u32>,
}

impl<H: StreamHost> Request<H> {
    /// A request on `host`'s stream, shared so that another request's callback can resume it.
    pub fn shared(
        host: H,
        config: Rc<PluginConfig>,
        budget: SharedBudget,
        limits: SharedLimits<H>,
    ) -> Rc<RefCell<Self>> {
        Rc::new_cyclic(|me| RefCell::new(Self::new(host, me.clone(), config, budget, limits)))
    }

    fn new(
        host: H,
        me: Weak<RefCell<Self>>,
        config: Rc<PluginConfig>,
        budget: SharedBudget,
        limits: SharedLimits<H>,
    ) -> Self {
        let exchange = Exchange::new(config.clone(), host.now_ms());
        let head = RequestHead::default();
        Self {
            host,
            config,
            exchange,
            head,
            reading_body: false,
            waiting: false,
            body: (0, false),
            budget,
            reserved: 0,
            limits,
            leasing: false,
            me,
            lookup_call: None,
        }
    }

    /// Takes this request's share of the worker's buffered bytes up to `body_size`; `false`
    /// when the worker has no room for it.
    fn reserve(&mut self, body_size: usize) -> bool {
        let Ok(mut budget) = self.budget.try_borrow_mut() else { return false };
        let taken = budget.grow(self.reserved, body_size);
        if taken {
            self.reserved = self.reserved.max(body_size);
        }
        taken
    }

    /// Gives this request's share of the worker's buffered bytes back (its body was read, or it
    /// ended).
    fn release(&mut self) {
        if let Ok(mut budget) = self.budget.try_borrow_mut() {
            budget.release(std::mem::take(&mut self.reserved));
        }
    }

    /// Whether the request is paused for a lookup.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Checks the credential against the worker's state (as it is now) from a fresh exchange.
    fn authenticate(&mut self, worker: &SharedWorker<H>) -> Step {
        self.exchange = Exchange::new(self.config.clone(), self.exchange.started_ms());
        let Ok(worker) = worker.try_borrow() else { return Step::Refuse(GatewayError::NotReady) };
        // One clock read (the exchange's start) serves the exchange and the credential checks.
        let now_secs = i64::try_from(self.exchange.started_ms() / 1000).unwrap_or(i64::MAX);
        self.exchange.on_request_headers(&mut self.host, &self.head, worker.authority(), now_secs)
    }

    pub fn on_headers(
        &mut self,
        worker: &SharedWorker<H>,
        head: RequestHead,
        end_of_stream: bool,
    ) -> Headers {
        self.head = head;
        self.body = (0, end_of_stream);
        let mut step = self.authenticate(worker);
        if matches!(&step, Step::Refuse(e) if e.may_be_stale())
            && adopt_shared(worker, self.host.shared())
        {
            // Another worker has a newer state (a key created or a user re-enabled a moment ago).
            step = self.authenticate(worker);
        }
        if let (Step::Refuse(error), Some(key)) = (&step, self.exchange.credential_lookup()) {
            self.waiting = true;
            return Headers::LookUp(key, error.clone());
        }
        Headers::Done(self.proceed(step))
    }

    /// The lookup this request waited for has ended (answered or not): its credential is checked
    /// again (no second lookup) and the request resumed or refused. The host calls act on this
    /// request's context.
    pub fn after_lookup(&mut self, worker: &SharedWorker<H>) {
        self.waiting = false;
        let step = self.authenticate(worker);
        if self.proceed(step) == Flow::Continue {
            self.host.resume_request();
        }
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.body = (body_size, end_of_stream);
        if self.waiting {
            // Buffered until the lookup ends (its timeout bounds how long); then
            // [`Self::proceed`] reads it if it is complete.
            return Flow::Pause;
        }
        if !self.reading_body {
            return Flow::Continue;
        }
        if let Err(error) = self.exchange.check_body_size(body_size) {
            return self.refuse(&error);
        }
        if !self.reserve(body_size) {
            return self.refuse(&GatewayError::Busy);
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        self.reading_body = false;
        self.release();
        let body = self.host.request_body(body_size);
        let step = self.exchange.on_request_body(&mut self.host, &body);
        self.carry_out(step)
    }

    /// Request trailers: the body before them is whole. A request reading it reads it now; one
    /// waiting for a lookup reads it when the lookup ends; one waiting for a lease stays paused
    /// (its body was read). Envoy would otherwise pass an undecided request through, or, paused,
    /// hold it until its timeout: no body callback with the end of the stream comes after them.
    pub fn on_trailers(&mut self) -> Flow {
        if self.reading_body || self.waiting {
            // The body as its last callback left it, now known whole.
            return self.on_body(self.body.0, true);
        }
        if self.leasing {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    /// Carries out a step of the request headers: a body already complete is routed at once.
    fn proceed(&mut self, step: Step) -> Flow {
        match (step, self.body) {
            (Step::ReadBody, (size, true)) => {
                // A POST without a body routes what there is (an empty body is refused as bad JSON).
                let body = if size == 0 { Vec::new() } else { self.host.request_body(size) };
                let step = self.exchange.on_request_body(&mut self.host, &body);
                self.carry_out(step)
            }
            (step, _) => self.carry_out(step),
        }
    }

    /// Carries out a step of the exchange; returns what Envoy should do with the request.
    fn carry_out(&mut self, step: Step) -> Flow {
        match step {
            Step::Continue => self.admit(true),
            Step::ReadBody => {
                self.reading_body = true;
                Flow::Pause
            }
            Step::Refuse(error) => self.refuse(&error),
            Step::Answer(body) => {
                self.record(Ending::Complete);
                self.host.send_reply(200, &body, &[]);
                Flow::Pause
            }
        }
    }

    /// Admits a routed request under its caller's limits (see [`crate::limits`]): forwarded,
    /// refused, or paused for a lease call (once; then decided with what there is).
    fn admit(&mut self, may_lease: bool) -> Flow {
        let now_ms = self.host.now_ms();
        let Ok(mut glue) = self.limits.try_borrow_mut() else { return Flow::Continue };
        let decision = match self.exchange.limit_ask() {
            None => return Flow::Continue,
            Some(ask) => {
                limits::admit(self.host.shared(), &mut glue.float, &ask, now_ms, may_lease)
            }
        };
        drop(glue);
        match decision {
            Admission::Granted(grant) => {
                self.exchange.admitted(&mut self.host, grant);
                Flow::Continue
            }
            Admission::Refused(refusal) => {
                let error = self.exchange.limit_refused(refusal);
                self.refuse(&error)
            }
            Admission::Unavailable => self.refuse(&GatewayError::LimitsUnavailable),
            Admission::Lease(asks) => self.lease(asks),
        }
    }

    /// Asks the control plane for leases; the request waits for the answer (see
    /// [`waiting::lease_answered`]).
    fn lease(&mut self, asks: Vec<LeaseAsk>) -> Flow {
        let (Some(me), Ok(mut glue)) = (self.me.upgrade(), self.limits.try_borrow_mut()) else {
            return self.admit(false);
        };
        glue.note(&asks);
        let call = lease::call(&self.config.state, &glue.instance, &asks);
        match self.host.dispatch(&self.config.state, &call) {
            Some(token) => {
                glue.pending.push(PendingLease { token, asks, waiter: Waiter::new(me) });
                self.leasing = true;
                Flow::Pause
            }
            None => {
                drop(glue);
                self.admit(false)
            }
        }
    }

    /// Whether the request waits for a lease call.
    pub fn is_leasing(&self) -> bool {
        self.leasing
    }

    /// The lease call this request waited for was answered (and taken into the ledger by the
    /// root): the request is admitted (resumed) or refused. The host calls act on its context.
    pub fn lease_answered(&mut self) {
        self.leasing = false;
        if self.admit(false) == Flow::Continue {
            self.host.resume_request();
        }
    }

    /// Refuses the request with `error`: the one way a refusal reaches the caller, whatever
    /// decided it. The exchange records it ([`Exchange::note_refusal`]: the record's status and
    /// `gateway_error`, and how the metrics count it, are the error's); the reply has the caller's
    /// rate-limit headers, and `Retry-After` when the error names one. The request stays paused.
    pub fn refuse(&mut self, error: &GatewayError) -> Flow {
        self.reading_body = false;
        self.waiting = false;
        self.leasing = false;
        self.release();
        self.exchange.note_refusal(error);
        self.record(Ending::Complete);
        let mut headers = self.exchange.rate_headers().to_vec();
        if let Some(secs) = error.retry_after_secs() {
            headers.push(("retry-after", secs.to_string()));
        }
        self.host.send_reply(error.status(), &error.body(), &headers);
        Flow::Pause
    }
}

/// Adopts a newer shared state, if there is one.
fn adopt_shared<H>(worker: &SharedWorker<H>, shared: &dyn crate::state_sync::SharedData) -> bool {
    worker.try_borrow_mut().is_ok_and(|mut w| w.adopt_shared(shared))
}

#[cfg(test)]
mod tests;
