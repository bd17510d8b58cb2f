//! The root context of one worker: holds the validated configuration and the key state, and
//! creates an HTTP context per request.
//!
//! The key state is pulled from the control plane (with `If-None-Match`) by one worker at a time
//! and shared with every worker through Envoy's shared data: on each tick a worker adopts a
//! newer shared state if there is one, and takes the pull lease (compare-and-swap) when it has
//! run out. A request whose credential is refused also looks for a newer state first (one small
//! shared-data read of the version), so a new key works on every worker as soon as one worker has
//! it. When the control plane is unreachable the last state keeps serving.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::host;
use super::http::GatewayHttp;
use crate::config::PluginConfig;
use crate::keys::KeyState;

/// How often each worker looks at the shared state (cheap: one shared-data read).
const TICK: Duration = Duration::from_millis(200);
/// Shared-data key of the state: `<etag>\n<feed document>`.
const STATE_KEY: &str = "vllm_gateway.state";
/// Shared-data key of the state's version (its ETag), small and cheap to read.
const VERSION_KEY: &str = "vllm_gateway.state_version";
/// Shared-data key of the pull lease: the Unix millisecond until which one worker owns the pull.
const LEASE_KEY: &str = "vllm_gateway.pull_lease";

/// The key state this worker uses, and the version it was adopted at.
#[derive(Default)]
pub struct WorkerState {
    /// The state; `None` until the first one arrives.
    pub keys: Option<Rc<KeyState>>,
    version: Option<Vec<u8>>,
}

/// The worker's state, shared with its HTTP contexts.
pub type SharedKeys = Rc<RefCell<WorkerState>>;

/// See the module docs.
#[derive(Default)]
pub struct GatewayRoot {
    config: Option<Rc<PluginConfig>>,
    keys: SharedKeys,
    pull_in_flight: Option<u32>,
}

impl GatewayRoot {
    /// The ETag of the shared state, for `If-None-Match`.
    fn shared_etag() -> Option<String> {
        let (version, _) = hostcalls::get_shared_data(VERSION_KEY).ok()?;
        let version = version?;
        (!version.is_empty()).then(|| String::from_utf8_lossy(&version).into_owned())
    }

    /// Takes the pull lease if it has run out; true when this worker should pull now.
    fn take_lease(&self, config: &PluginConfig) -> bool {
        let now = host::now_ms();
        let (value, cas) = hostcalls::get_shared_data(LEASE_KEY).unwrap_or((None, None));
        let until = value.and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok()).unwrap_or(0);
        if until > now {
            return false;
        }
        // Before the first state arrives, retry soon; afterwards, once per refresh period.
        let hold = if self.keys.borrow().keys.is_some() { config.state.refresh_ms } else { config.state.timeout_ms.min(500) };
        let lease = (now + hold).to_string();
        hostcalls::set_shared_data(LEASE_KEY, Some(lease.as_bytes()), cas).is_ok()
    }

    fn pull_state(&mut self, config: &PluginConfig) {
        if self.pull_in_flight.is_some() {
            return;
        }
        let feed = &config.state;
        let bearer = format!("Bearer {}", feed.token);
        let etag = Self::shared_etag();
        let mut headers = vec![
            (":method", "GET"),
            (":path", feed.path.as_str()),
            (":authority", feed.authority.as_str()),
            ("authorization", bearer.as_str()),
        ];
        if let (Some(etag), true) = (&etag, self.keys.borrow().keys.is_some()) {
            headers.push(("if-none-match", etag.as_str()));
        }
        let timeout = Duration::from_millis(feed.timeout_ms);
        match hostcalls::dispatch_http_call(&feed.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.pull_in_flight = Some(token),
            Err(e) => {
                log::warn!("pulling key state from cluster {} failed: {e:?}", feed.cluster);
                // Give the lease back so that another worker pulls at its next tick.
                let _ = hostcalls::set_shared_data(LEASE_KEY, Some(b"0"), None);
            }
        }
    }

    /// Stores a pulled state in shared data for every worker and installs it here.
    fn take_pulled_state(&mut self, body_size: usize) {
        match host::header(MapType::HttpCallResponseHeaders, ":status").as_deref() {
            Some("200") => {}
            Some("304") => return,
            other => {
                log::warn!("key state pull answered {}", other.unwrap_or("nothing (control plane unreachable?)"));
                return;
            }
        }
        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
        let state = match KeyState::parse(&body) {
            Ok(state) => state,
            Err(e) => {
                log::warn!("pulled key state is malformed, keeping the previous one: {e}");
                return;
            }
        };
        let etag = host::header(MapType::HttpCallResponseHeaders, "etag").unwrap_or_default().replace('\n', "");
        let mut value = Vec::with_capacity(etag.len() + 1 + body.len());
        value.extend_from_slice(etag.as_bytes());
        value.push(b'\n');
        value.extend_from_slice(&body);
        let shared = hostcalls::set_shared_data(STATE_KEY, Some(&value), None)
            .and_then(|()| hostcalls::set_shared_data(VERSION_KEY, Some(etag.as_bytes()), None));
        if let Err(e) = shared {
            log::warn!("sharing the key state failed: {e:?}");
        }
        // Parsed once: this worker installs it at the version it shared, so its own tick skips it.
        log::info!("key state pulled: {} keys, {} JWT keys", state.len(), state.jwt_key_count());
        *self.keys.borrow_mut() = WorkerState { keys: Some(Rc::new(state)), version: Some(etag.into_bytes()) };
    }
}

/// Adopts the shared state into `worker` if its version differs from the one adopted; returns
/// whether it did. Costs one small read when nothing changed.
pub fn adopt_shared_state(worker: &SharedKeys) -> bool {
    let version = match hostcalls::get_shared_data(VERSION_KEY) {
        Ok((Some(version), _)) => version,
        _ => return false,
    };
    if worker.borrow().version.as_deref() == Some(version.as_slice()) {
        return false;
    }
    let Ok((Some(value), _)) = hostcalls::get_shared_data(STATE_KEY) else { return false };
    let mut parts = value.splitn(2, |&b| b == b'\n');
    let etag = parts.next().unwrap_or_default().to_vec();
    match KeyState::parse(parts.next().unwrap_or_default()) {
        Ok(state) => {
            log::info!("key state adopted: {} keys, {} JWT keys", state.len(), state.jwt_key_count());
            *worker.borrow_mut() = WorkerState { keys: Some(Rc::new(state)), version: Some(etag) };
            true
        }
        Err(e) => {
            log::warn!("shared key state is malformed, keeping the previous one: {e}");
            false
        }
    }
}

impl Context for GatewayRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if self.pull_in_flight == Some(token) {
            self.pull_in_flight = None;
            self.take_pulled_state(body_size);
        }
    }
}

impl RootContext for GatewayRoot {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size);
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                log::info!("vllm-gateway configured with {} models", config.models.len());
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
        adopt_shared_state(&self.keys);
        let Some(config) = self.config.clone() else { return };
        if self.take_lease(&config) {
            self.pull_state(&config);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(GatewayHttp::new(config, self.keys.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
