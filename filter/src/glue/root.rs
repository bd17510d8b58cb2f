//! The root context of one worker: holds the validated configuration, pulls the key state from
//! the control plane on a tick (with `If-None-Match`), and creates an HTTP context per request.

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

/// Pull interval until the first state has arrived.
const FIRST_PULL_PERIOD: Duration = Duration::from_millis(200);

/// The key state of this worker, shared with its HTTP contexts.
pub type SharedKeys = Rc<RefCell<Option<Rc<KeyState>>>>;

/// See the module docs.
#[derive(Default)]
pub struct GatewayRoot {
    config: Option<Rc<PluginConfig>>,
    keys: SharedKeys,
    etag: Option<String>,
    pull_in_flight: Option<u32>,
}

impl GatewayRoot {
    fn pull_state(&mut self) {
        let Some(config) = self.config.clone() else { return };
        if self.pull_in_flight.is_some() {
            return;
        }
        let feed = &config.state;
        let bearer = format!("Bearer {}", feed.token);
        let mut headers = vec![
            (":method", "GET"),
            (":path", feed.path.as_str()),
            (":authority", feed.authority.as_str()),
            ("authorization", bearer.as_str()),
        ];
        if let Some(etag) = &self.etag {
            headers.push(("if-none-match", etag.as_str()));
        }
        let timeout = Duration::from_millis(feed.timeout_ms);
        match hostcalls::dispatch_http_call(&feed.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.pull_in_flight = Some(token),
            Err(e) => log::warn!("pulling key state from cluster {} failed: {e:?}", feed.cluster),
        }
    }

    fn take_state(&mut self, body_size: usize) {
        let status = host::header(MapType::HttpCallResponseHeaders, ":status");
        match status.as_deref() {
            Some("200") => {}
            Some("304") => return,
            other => {
                log::warn!("key state pull answered {}", other.unwrap_or("nothing (control plane unreachable?)"));
                return;
            }
        }
        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
        match KeyState::parse(&body) {
            Ok(state) => {
                let first = self.keys.borrow().is_none();
                log::info!("key state loaded: {} keys", state.len());
                *self.keys.borrow_mut() = Some(Rc::new(state));
                self.etag = host::header(MapType::HttpCallResponseHeaders, "etag");
                if first {
                    self.set_pull_period();
                }
            }
            Err(e) => log::warn!("key state is malformed, keeping the previous one: {e}"),
        }
    }

    fn set_pull_period(&self) {
        let ready = self.keys.borrow().is_some();
        let period = match (&self.config, ready) {
            (Some(config), true) => Duration::from_millis(config.state.refresh_ms),
            _ => FIRST_PULL_PERIOD,
        };
        if let Err(e) = hostcalls::set_tick_period(period) {
            log::warn!("setting the tick period failed: {e:?}");
        }
    }
}

impl Context for GatewayRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if self.pull_in_flight == Some(token) {
            self.pull_in_flight = None;
            self.take_state(body_size);
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
                self.set_pull_period();
                self.pull_state();
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.pull_state();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(GatewayHttp::new(config, self.keys.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
