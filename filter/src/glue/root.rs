//! The root context of one worker: holds the validated configuration and the worker's
//! credential state ([`crate::worker::Worker`]), and creates an HTTP context per request.
//!
//! On each tick it carries out what the state machinery ([`crate::state_sync`]) says: follow the
//! shared changes, dispatch a catch-up or the pull when it is due, hand the answers back;
//! and it refuses the requests of lookups whose answer is lost. When the control plane is
//! unreachable the last state keeps serving.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::{self, HostSharedData};
use super::http::{self, GatewayHttp, LimitsGlue, SharedBudget, SharedLimits, SharedWorker};
use crate::body_budget::BodyBudget;
use crate::config::PluginConfig;
use crate::feed::limits::LeaseAsk;
use crate::limits::float::Float;
use crate::limits::lease::{self, Upkeep};
use crate::lookup::LookupResult;
use crate::worker::Worker;

/// How often each worker looks at the shared state (cheap: one shared-data read).
const TICK: Duration = Duration::from_millis(200);

/// See the module docs.
pub struct GatewayRoot {
    id: u32,
    config: Option<Rc<PluginConfig>>,
    worker: Option<SharedWorker>,
    budget: Option<SharedBudget>,
    limits: Option<SharedLimits>,
    /// The upkeep's lease call in flight, and what it asked.
    upkeep_call: Option<(u32, Vec<LeaseAsk>)>,
}

impl GatewayRoot {
    pub fn new(id: u32) -> Self {
        Self { id, config: None, worker: None, budget: None, limits: None, upkeep_call: None }
    }

    /// Renews the concurrency leases and gives idle slots back (see [`Upkeep`]).
    fn keep_leases(&mut self, config: &PluginConfig) {
        let Some(limits) = &self.limits else { return };
        let Ok(mut limits) = limits.try_borrow_mut() else { return };
        // The float goes back every tick: a worker holds at most what one tick's requests use.
        limits.float.flush(&mut HostSharedData, host::now_ms());
        let overdrawn = limits.float.take_overdrawn();
        limits.upkeep.note_overdrawn(overdrawn);
        if self.upkeep_call.is_some() {
            return;
        }
        let asks = limits.upkeep.due(&mut HostSharedData, host::now_ms());
        if asks.is_empty() {
            return;
        }
        let call = lease::call(&config.state, &limits.instance, &asks);
        match host::dispatch(&config.state, &call) {
            Ok(token) => self.upkeep_call = Some((token, asks)),
            Err(_) => {
                lease::undo(&mut HostSharedData, &asks);
                limits.upkeep.note(&asks);
            }
        }
    }

    /// Adopts a newer shared state, pulls if this worker holds the lease, sends the lookups whose
    /// dispatcher is gone again; returns the waiters of lookups that failed or whose answer is
    /// lost, to refuse.
    fn sync(&self, config: &PluginConfig, worker: &SharedWorker) -> Vec<http::Waiter> {
        let Ok(mut worker) = worker.try_borrow_mut() else { return Vec::new() };
        let now = host::now_ms();
        let mut shared = HostSharedData;
        worker.adopt_shared(&shared);
        // At most a catch-up and the pull.
        for _ in 0..2 {
            let Some(call) = worker.next_state_call(&mut shared, now) else { break };
            match host::dispatch(&config.state, &call) {
                Ok(token) => worker.state_call_sent(token),
                Err(_) => worker.state_call_not_sent(&mut shared, now),
            }
        }
        let mut lost = Vec::new();
        for key in worker.lookups_to_resend(now) {
            match host::dispatch(&config.state, &key.call(&config.state)) {
                Ok(token) => worker.lookup_sent(key, token),
                Err(_) => {
                    http::count(LookupResult::Error);
                    lost.extend(worker.lookup_not_sent(key));
                }
            }
        }
        for (_, waiters) in worker.expired_lookups(now) {
            http::count(LookupResult::Error);
            lost.extend(waiters);
        }
        lost
    }
}

impl Context for GatewayRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if self.upkeep_call.as_ref().is_some_and(|(t, _)| *t == token) {
            let Some((_, asks)) = self.upkeep_call.take() else { return };
            match lease::read_answer(&host::call_answer(body_size), &asks) {
                Ok(grants) => lease::apply(&mut HostSharedData, &asks, &grants, host::now_ms()),
                Err(e) => {
                    log::warn!("the limits' upkeep call: {e}");
                    lease::undo(&mut HostSharedData, &asks);
                    if let Some(Ok(mut limits)) = self.limits.as_ref().map(|l| l.try_borrow_mut()) {
                        limits.upkeep.note(&asks);
                    }
                }
            }
            return;
        }
        let Some(worker) = &self.worker else { return };
        let is_state_call = match worker.try_borrow_mut() {
            Ok(mut w) if w.is_state_call(token) => {
                w.state_call_answered(&mut HostSharedData, host::now_ms(), token, &host::call_answer(body_size));
                true
            }
            _ => false,
        };
        if !is_state_call {
            // A lookup the root sent again.
            http::lookup_answered(worker, token, body_size);
            host::act_on(self.id);
        }
    }
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size);
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                log::info!("vllm-gateway configured with {} models", config.models.len());
                let mut worker = Worker::new(&config.state);
                // A state other workers already hold serves at once (a reconfigured filter).
                worker.adopt_shared(&HostSharedData);
                self.worker = Some(Rc::new(RefCell::new(worker)));
                self.budget = Some(Rc::new(RefCell::new(BodyBudget::new(config.max_buffered_request_bytes))));
                let seed = u64::try_from(host::now().as_nanos()).unwrap_or_default() ^ u64::from(self.id);
                let instance = lease::instance(&mut HostSharedData, seed);
                self.limits = Some(Rc::new(RefCell::new(LimitsGlue {
                    instance,
                    upkeep: Upkeep::default(),
                    float: Float::default(),
                    pending: Vec::new(),
                })));
                self.config = Some(Rc::new(config));
                // The first pull waits for the first tick: during configuration Envoy's clusters
                // may not be ready, and a call dispatched then can be lost.
                if let Err(e) = hostcalls::set_tick_period(TICK) {
                    log::warn!("setting the tick period failed: {e:?}");
                }
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(config) = self.config.clone() else { return };
        self.keep_leases(&config);
        let Some(worker) = &self.worker else { return };
        let lost = self.sync(&config, worker);
        if !lost.is_empty() {
            http::resume_waiters(worker, lost);
            host::act_on(self.id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (config, worker, budget) = (self.config.clone()?, self.worker.clone()?, self.budget.clone()?);
        let limits = self.limits.clone()?;
        Some(Box::new(GatewayHttp::new(context_id, config, worker, budget, limits)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
