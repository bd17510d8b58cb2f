//! The context of one request in a worker: the request's driver ([`Request`]) with the worker's
//! shared parts (credential state, body budget, limits), and the calls it dispatched. A glue
//! makes one per HTTP stream and hands it each callback, already read from the host.
//!
//! A request whose credential the worker's state refuses, for a reason a newer state could lift,
//! first looks for a newer shared state, then waits (paused in its headers) for a lookup at the
//! control plane ([`crate::lookup`]). The request that dispatched the lookup gets the answer and
//! resumes or refuses every request waiting for it, each on its own stream; if that request ends
//! first, the lookup is sent again for the others ([`super::tick::sync_lookups`], or
//! [`super::tick::sweep_lookups_through_waiters`] where only a request can send a call).

use std::cell::RefCell;
use std::rc::Rc;

use super::waiting::{self, SharedBudget, SharedLimits, SharedWorker, Waiter};
use super::{Flow, Headers, Request, StreamHost};
use crate::config::PluginConfig;
use crate::control_plane::CallAnswer;
use crate::error::GatewayError;
use crate::exchange::RequestHead;
use crate::lookup::{LookupKey, LookupResult, Start};

/// What a response's headers say, as the glue read them.
#[derive(Debug, Default)]
pub struct ResponseHead {
    /// `:status` (0 when absent or not a number).
    pub status: u16,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
}

/// See the module docs.
pub struct RequestContext<H> {
    /// The host's side of this stream (for calls made outside the request's own state).
    host: H,
    config: Rc<PluginConfig>,
    worker: SharedWorker<H>,
    limits: SharedLimits<H>,
    request: Rc<RefCell<Request<H>>>,
}

impl<H: StreamHost + Clone> RequestContext<H> {
    pub fn new(
        host: H,
        config: Rc<PluginConfig>,
        worker: SharedWorker<H>,
        budget: SharedBudget,
        limits: SharedLimits<H>,
    ) -> Self {
        let request = Request::shared(host.clone(), config.clone(), budget, limits.clone());
        Self { host, config, worker, limits, request }
    }

    /// The worker's credential state (for a glue's tick).
    pub fn worker(&self) -> &SharedWorker<H> {
        &self.worker
    }

    /// The host's side of this stream.
    pub fn host(&mut self) -> &mut H {
        &mut self.host
    }

    /// Runs `f` on the request; `busy` when its state is in use (never, by construction).
    fn with_request<T>(&self, busy: T, f: impl FnOnce(&mut Request<H>) -> T) -> T {
        match self.request.try_borrow_mut() {
            Ok(mut request) => f(&mut request),
            Err(_) => {
                log::error!("the state of a request is in use");
                busy
            }
        }
    }

    /// Refuses the request now, answering for it in a request callback.
    fn refuse(&self, error: &GatewayError) -> Flow {
        self.with_request(Flow::Pause, |r| r.refuse(error))
    }

    /// Looks `key` up before believing `refusal` (see [`crate::lookup`]).
    fn look_up(&mut self, key: LookupKey, refusal: GatewayError) -> Flow {
        let waiter = Waiter::new(self.request.clone());
        let now_ms = self.host.now_ms();
        let Ok(mut worker) = self.worker.try_borrow_mut() else { return self.refuse(&refusal) };
        match worker.start_lookup(key, waiter, now_ms) {
            Start::Joined => Flow::Pause,
            Start::Send => {
                match self.host.dispatch(&self.config.state, &key.call(&self.config.state)) {
                    Some(token) => {
                        worker.lookup_sent(key, token);
                        drop(worker);
                        self.with_request((), |r| r.lookup_call = Some(token));
                        Flow::Pause
                    }
                    None => {
                        drop(worker.lookup_not_sent(key));
                        drop(worker);
                        waiting::count(&mut self.host, LookupResult::Error);
                        self.refuse(&refusal)
                    }
                }
            }
            Start::Refuse(_, counted) => {
                drop(worker);
                if let Some(result) = counted {
                    waiting::count(&mut self.host, result);
                }
                self.refuse(&refusal)
            }
        }
    }

    /// The answer to a call this request dispatched (a lease, a lookup, or a lookup sent again
    /// on behalf of other requests).
    pub fn on_call_answer(&mut self, token: u32, answer: &CallAnswer) {
        let now_ms = self.host.now_ms();
        if waiting::lease_answered(&self.limits, self.host.shared(), now_ms, token, answer) {
            self.host.activate();
            return;
        }
        self.with_request((), |r| {
            if r.lookup_call == Some(token) {
                r.lookup_call = None;
            }
        });
        if let Some(result) = waiting::lookup_answered(&self.worker, now_ms, token, answer) {
            self.host.activate();
            waiting::count(&mut self.host, result);
        }
        self.host.activate();
    }

    pub fn on_request_headers(&mut self, head: RequestHead, end_of_stream: bool) -> Flow {
        let worker = self.worker.clone();
        match self.with_request(Headers::Done(Flow::Pause), |r| {
            r.on_headers(&worker, head, end_of_stream)
        }) {
            Headers::Done(flow) => flow,
            Headers::LookUp(key, refusal) => self.look_up(key, refusal),
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.with_request(Flow::Pause, |r| r.on_body(body_size, end_of_stream))
    }

    /// Request trailers: the body before them is whole, and is read now (see
    /// [`Request::on_trailers`]).
    pub fn on_request_trailers(&mut self) -> Flow {
        self.with_request(Flow::Continue, Request::on_trailers)
    }

    pub fn on_response_headers(&mut self, head: &ResponseHead, end_of_stream: bool) -> Flow {
        let rewritten = self.with_request(false, |r| {
            r.on_response_headers(
                head.status,
                head.content_type.as_deref(),
                head.content_encoding.as_deref(),
                end_of_stream,
            )
        });
        if rewritten {
            // The caller gets the stream without the injected usage: its length changes.
            self.host.remove_response_header("content-length");
        }
        Flow::Continue
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Flow {
        self.with_request((), |r| r.on_response_body(body_size, end_of_stream));
        Flow::Continue
    }

    /// The request is over (Envoy logs it).
    pub fn on_log(&mut self) {
        let lookup_call = self.with_request(None, |r| {
            r.on_log();
            r.lookup_call.take()
        });
        if let (Some(token), Ok(mut worker)) = (lookup_call, self.worker.try_borrow_mut()) {
            // The answer would come to this request, which is going: the others still wait.
            let me = Rc::downgrade(&self.request);
            worker.lookup_orphaned(token, |w| w.is(&me));
        }
    }
}
