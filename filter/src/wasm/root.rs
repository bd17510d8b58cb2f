//! The root context of one worker: holds the validated configuration and the worker's
//! credential state ([`crate::worker::Worker`]), and creates an HTTP context per request.
//!
//! On each tick it carries out what the state machinery ([`crate::state_sync`]) says: follow the
//! shared changes, dispatch a catch-up or the pull when it is due, hand the answers back;
//! and it refuses the requests of lookups whose answer is lost. When the control plane is
//! unreachable the last state keeps serving.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::host::{self, HostSharedData, RootCalls, WasmStream};
use super::http::GatewayHttp;
use crate::body_budget::BodyBudget;
use crate::config::PluginConfig;
use crate::limits::float::Float;
use crate::limits::lease::{self, Upkeep};
use crate::request::tick::{self, UpkeepCall};
use crate::request::waiting::SharedUpkeep;
use crate::request::{waiting, LimitsGlue, SharedBudget, SharedLimits, SharedWorker};
use crate::worker::Worker;

/// How often each worker looks at the shared state (cheap: one shared-data read).
const TICK: Duration = Duration::from_millis(200);

/// See the module docs.
pub struct GatewayRoot {
    id: u32,
    calls: RootCalls,
    config: Option<Rc<PluginConfig>>,
    worker: Option<SharedWorker<WasmStream>>,
    budget: Option<SharedBudget>,
    limits: Option<SharedLimits<WasmStream>>,
    /// What the worker keeps up with the control plane (also in `limits`, for its requests).
    upkeep: Option<SharedUpkeep>,
    upkeep_call: UpkeepCall,
}

impl GatewayRoot {
    pub fn new(id: u32) -> Self {
        Self {
            id,
            calls: RootCalls::default(),
            config: None,
            worker: None,
            budget: None,
            limits: None,
            upkeep: None,
            upkeep_call: None,
        }
    }
}

impl Context for GatewayRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let answer = host::call_answer(body_size);
        if let Some(upkeep) = &self.upkeep {
            if tick::upkeep_answered(&mut self.calls, upkeep, &mut self.upkeep_call, token, &answer)
            {
                return;
            }
        }
        let Some(worker) = &self.worker else { return };
        let is_state_call = match worker.try_borrow_mut() {
            Ok(mut w) => tick::state_answered(&mut self.calls, &mut w, token, &answer),
            Err(_) => false,
        };
        if !is_state_call {
            // A lookup the root sent again.
            let now_ms = host::now_ms();
            if let Some(result) = waiting::lookup_answered(worker, now_ms, token, &answer) {
                host::act_on(self.id);
                crate::request::Calls::emit(
                    &mut self.calls,
                    &[crate::metrics::credential_lookup(result)],
                );
            }
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
                self.budget =
                    Some(Rc::new(RefCell::new(BodyBudget::new(config.max_buffered_request_bytes))));
                let seed =
                    u64::try_from(host::now().as_nanos()).unwrap_or_default() ^ u64::from(self.id);
                let instance = lease::instance(&mut HostSharedData, seed);
                let upkeep = Arc::new(Mutex::new(Upkeep::default()));
                self.upkeep = Some(upkeep.clone());
                self.limits = Some(Rc::new(RefCell::new(LimitsGlue::new(
                    instance,
                    upkeep,
                    Float::default(),
                ))));
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
        if let Some(Ok(mut limits)) = self.limits.as_ref().map(|l| l.try_borrow_mut()) {
            let limits = &mut *limits;
            tick::keep_leases(
                &mut self.calls,
                &config.state,
                &limits.instance,
                &limits.upkeep,
                Some(&mut limits.float),
                &mut self.upkeep_call,
            );
        }
        let Some(worker) = &self.worker else { return };
        if let Ok(mut w) = worker.try_borrow_mut() {
            tick::sync_state(&mut self.calls, &config.state, &mut w);
        }
        // Lookups sent again from here are answered here.
        tick::sync_lookups(&mut self.calls, &config.state, worker);
        host::act_on(self.id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let (config, worker, budget) =
            (self.config.clone()?, self.worker.clone()?, self.budget.clone()?);
        let limits = self.limits.clone()?;
        Some(Box::new(GatewayHttp::new(context_id, config, worker, budget, limits)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
