//! A worker thread's own parts, per configuration: its credentials (adopted from the Envoy's
//! shared store, which the main thread pulls into), its budget of buffered request bytes, and
//! its side of the limits: what a wasm worker's VM holds, kept here in thread-locals.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::config::NativeConfig;
use super::host::{self, NativeStream};
use crate::body_budget::BodyBudget;
use crate::config::PluginConfig;
use crate::limits::float::Float;
use crate::request::{LimitsGlue, SharedBudget, SharedLimits, SharedWorker};
use crate::worker::Worker;

/// How often a worker looks for newer shared credentials, at most (when it has requests).
const ADOPT_EVERY_MS: u64 = 100;

/// See the module docs.
pub struct WorkerParts {
    pub config: Rc<PluginConfig>,
    pub worker: SharedWorker<NativeStream>,
    pub budget: SharedBudget,
    pub limits: SharedLimits<NativeStream>,
    adopted_ms: Cell<u64>,
}

impl WorkerParts {
    fn new(native: &NativeConfig) -> Self {
        let config = Rc::new(native.plugin.clone());
        let mut worker = Worker::new(&config.state);
        worker.adopt_shared(&native.store);
        let budget = BodyBudget::new(config.max_buffered_request_bytes);
        // No float: the shared ledger is this process's memory, and a worker has no tick to
        // give a float back on.
        let limits = LimitsGlue::new(native.instance.clone(), native.upkeep.clone(), Float::off());
        Self {
            config,
            worker: Rc::new(RefCell::new(worker)),
            budget: Rc::new(RefCell::new(budget)),
            limits: Rc::new(RefCell::new(limits)),
            adopted_ms: Cell::new(host::now_ms()),
        }
    }

    /// Follows the shared credentials if they were not looked at lately.
    pub fn follow_shared(&self, native: &NativeConfig) {
        let now_ms = host::now_ms();
        if now_ms.saturating_sub(self.adopted_ms.get()) < ADOPT_EVERY_MS {
            return;
        }
        self.adopted_ms.set(now_ms);
        if let Ok(mut worker) = self.worker.try_borrow_mut() {
            worker.adopt_shared(&native.store);
        }
    }
}

thread_local! {
    /// This worker's parts, by configuration id.
    static PARTS: RefCell<Vec<(u64, Rc<WorkerParts>)>> = const { RefCell::new(Vec::new()) };
}

/// This worker's parts of `native` (made on its first request).
pub fn parts(native: &NativeConfig) -> Option<Rc<WorkerParts>> {
    PARTS.with(|parts| {
        let mut parts = parts.try_borrow_mut().ok()?;
        if let Some((_, p)) = parts.iter().find(|(id, _)| *id == native.id) {
            return Some(p.clone());
        }
        // A new configuration: the parts of those Envoy has destroyed go.
        parts.retain(|(id, _)| super::config::is_live(*id));
        let made = Rc::new(WorkerParts::new(native));
        parts.push((native.id, made.clone()));
        Some(made)
    })
}
