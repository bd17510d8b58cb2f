//! One filter configuration, made and destroyed on Envoy's main thread: the parsed plugin
//! configuration, the metrics, the Envoy's limits identity and upkeep, and the main thread's
//! duties. A module thread posts a tick to the main thread every [`TICK`]; on it the main
//! thread pulls the credentials into the shared store (the workers follow it) and keeps the
//! Envoy's leases, with callouts made from the main thread and answered there.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use super::abi::{self, EnvoyBuffer, EnvoyHeader};
use super::host::{self, callout};
use super::metrics::Metrics;
use super::store::Store;
use crate::config::{PluginConfig, StateFeed};
use crate::control_plane::{CallAnswer, CallRequest};
use crate::limits::lease::{self, Upkeep};
use crate::metrics::Observation;
use crate::request::tick::{self, UpkeepCall};
use crate::request::waiting::SharedUpkeep;
use crate::request::Calls;
use crate::state_sync::SharedData;
use crate::worker::Worker;

/// How often the main thread pulls and keeps leases.
pub const TICK: Duration = Duration::from_millis(200);

/// The Envoy's shared data: one store for every configuration and worker of the process.
pub fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(Store::default)
}

/// The ids of the configurations Envoy holds.
static LIVE: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether configuration `id` is still held by Envoy.
pub fn is_live(id: u64) -> bool {
    LIVE.lock().is_ok_and(|live| live.contains(&id))
}

/// The main thread's calls: config-level callouts (answered on the main thread).
struct MainCalls {
    envoy: *mut c_void,
    store: Store,
    /// Envoy's callout id → the core's token.
    calls: Vec<(u64, u32)>,
    next_token: u32,
}

impl Calls for MainCalls {
    fn now_ms(&self) -> u64 {
        host::now_ms()
    }

    fn emit(&mut self, _observations: &[Observation]) {}

    fn dispatch(&mut self, feed: &StateFeed, call: &CallRequest) -> Option<u32> {
        let envoy = self.envoy;
        // SAFETY: main thread, the configuration is alive; every buffer outlives the call.
        let id = callout(feed, call, &mut |cluster, headers, body, timeout_ms, id| unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                envoy,
                id,
                cluster,
                headers.as_mut_ptr(),
                headers.len(),
                body,
                timeout_ms,
            )
        })?;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.calls.push((id, self.next_token));
        Some(self.next_token)
    }

    fn shared(&mut self) -> &mut dyn SharedData {
        &mut self.store
    }
}

/// What the main thread keeps between ticks.
struct MainRoot {
    calls: MainCalls,
    worker: Worker<()>,
    upkeep_call: UpkeepCall,
}

/// The scheduler pointer, handed to the ticking thread.
struct Scheduler(*mut c_void);
// SAFETY: Envoy's scheduler commit is thread-safe; the pointer is deleted only after the thread
// that uses it has stopped.
unsafe impl Send for Scheduler {}

/// The module thread that posts ticks to the main thread.
struct Ticker {
    stop: Sender<()>,
    thread: JoinHandle<()>,
    scheduler: *mut c_void,
}

impl Ticker {
    fn start(envoy: *mut c_void) -> Option<Self> {
        // SAFETY: main thread, inside `config_new`.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
        if scheduler.is_null() {
            return None;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = Scheduler(scheduler);
        let thread =
            std::thread::Builder::new().name("vllm-gateway-tick".into()).spawn(move || {
                let handle = handle;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    // SAFETY: see `Scheduler`.
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            handle.0, 0,
                        )
                    };
                }
            });
        match thread {
            Ok(thread) => Some(Self { stop, thread, scheduler }),
            Err(e) => {
                log::error!("starting the tick thread failed: {e}");
                // SAFETY: nothing else has the scheduler.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        scheduler,
                    )
                };
                None
            }
        }
    }

    fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            log::error!("the tick thread failed");
        }
        // SAFETY: the only thread that committed has stopped.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler)
        };
    }
}

/// See the module docs.
pub struct NativeConfig {
    pub id: u64,
    pub plugin: PluginConfig,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub instance: String,
    pub upkeep: SharedUpkeep,
    root: Mutex<MainRoot>,
    ticker: Mutex<Option<Ticker>>,
}

impl NativeConfig {
    fn new(envoy: *mut c_void, bytes: &[u8]) -> Option<Self> {
        let plugin = match PluginConfig::parse(bytes) {
            Ok(plugin) => plugin,
            Err(e) => {
                log::error!("{e}");
                return None;
            }
        };
        let mut store = store().clone();
        let seed = host::now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        let instance = lease::instance(&mut store, seed);
        let mut worker = Worker::new(&plugin.state);
        worker.adopt_shared(&store);
        let calls = MainCalls { envoy, store: store.clone(), calls: Vec::new(), next_token: 0 };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let metrics = Arc::new(Metrics::declare(envoy, &plugin));
        log::info!("vllm-gateway configured with {} models (native module)", plugin.models.len());
        Some(Self {
            id,
            plugin,
            store,
            metrics,
            instance,
            upkeep: Arc::new(Mutex::new(Upkeep::default())),
            root: Mutex::new(MainRoot { calls, worker, upkeep_call: None }),
            ticker: Mutex::new(None),
        })
    }

    /// The main thread's tick: keep the leases, follow and pull the credentials.
    fn tick(&self) {
        let Ok(mut root) = self.root.lock() else { return };
        let root = &mut *root;
        let feed = &self.plugin.state;
        tick::keep_leases(
            &mut root.calls,
            feed,
            &self.instance,
            &self.upkeep,
            None,
            &mut root.upkeep_call,
        );
        tick::sync_state(&mut root.calls, feed, &mut root.worker);
    }

    /// The answer to a main-thread call.
    fn answered(&self, id: u64, answer: &CallAnswer) {
        let Ok(mut root) = self.root.lock() else { return };
        let root = &mut *root;
        let Some(at) = root.calls.calls.iter().position(|(i, _)| *i == id) else { return };
        let (_, token) = root.calls.calls.swap_remove(at);
        if !tick::upkeep_answered(
            &mut root.calls,
            &self.upkeep,
            &mut root.upkeep_call,
            token,
            answer,
        ) {
            tick::state_answered(&mut root.calls, &mut root.worker, token, answer);
        }
    }
}

/// An answer as the core reads it, from what Envoy handed the callout's hook.
///
/// # Safety
/// The pointers are those Envoy passed to the hook, read before it returns.
pub unsafe fn call_answer(
    result: i32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) -> CallAnswer {
    if result != abi::CALLOUT_SUCCESS || headers.is_null() {
        return CallAnswer::default();
    }
    // SAFETY: the caller's contract.
    let (headers, chunks) = unsafe {
        let chunks =
            if chunks.is_null() { &[][..] } else { std::slice::from_raw_parts(chunks, chunks_len) };
        (std::slice::from_raw_parts(headers, headers_len), chunks)
    };
    let find = |name: &str| {
        headers.iter().find_map(|h| {
            // SAFETY: the caller's contract.
            let key = unsafe { EnvoyBuffer { ptr: h.key_ptr, len: h.key_len }.bytes() };
            // SAFETY: the caller's contract.
            (key.eq_ignore_ascii_case(name.as_bytes())).then(|| {
                String::from_utf8_lossy(unsafe {
                    EnvoyBuffer { ptr: h.value_ptr, len: h.value_len }.bytes()
                })
                .into_owned()
            })
        })
    };
    let mut body = Vec::with_capacity(chunks.iter().map(|c| c.len).sum());
    for chunk in chunks {
        // SAFETY: the caller's contract.
        body.extend_from_slice(unsafe { chunk.bytes() });
    }
    CallAnswer::new(
        find(":status").as_deref(),
        find("etag").as_deref(),
        find(crate::feed::DELTA_HEADER).as_deref(),
        body,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's buffer, read during the call.
    let bytes = unsafe { config.bytes() };
    let Some(native) = NativeConfig::new(envoy, bytes) else { return std::ptr::null() };
    if let Ok(mut live) = LIVE.lock() {
        live.push(native.id);
    }
    let native = Box::new(native);
    if let Ok(mut ticker) = native.ticker.lock() {
        *ticker = Ticker::start(envoy);
    }
    Box::into_raw(native).cast_const().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if config.is_null() {
        return;
    }
    // SAFETY: made by `config_new`, destroyed once (on the main thread, or on the worker whose
    // stream held the configuration last).
    let native = unsafe { Box::from_raw(config.cast_mut().cast::<NativeConfig>()) };
    if let Some(ticker) = native.ticker.lock().ok().and_then(|mut t| t.take()) {
        ticker.stop();
    }
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|id| *id != native.id);
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: *mut c_void,
    config: *const c_void,
    _event: u64,
) {
    // SAFETY: alive until `config_destroy`, which stops the ticks first; main thread.
    if let Some(native) = unsafe { config.cast::<NativeConfig>().as_ref() } {
        native.tick();
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: *mut c_void,
    config: *const c_void,
    id: u64,
    result: i32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) {
    // SAFETY: alive until `config_destroy` (which cancels its callouts); Envoy's pointers are
    // read during the call.
    if let Some(native) = unsafe { config.cast::<NativeConfig>().as_ref() } {
        let answer = unsafe { call_answer(result, headers, headers_len, chunks, chunks_len) };
        native.answered(id, &answer);
    }
}
