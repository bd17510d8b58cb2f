//! The core's host traits over proxy-wasm's fallible host calls: failures are logged, never
//! unwrapped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, Status};

use crate::config::StateFeed;
use crate::control_plane::{CallAnswer, CallRequest};
use crate::exchange::Host;
use crate::metrics::Observation;
use crate::request::{Calls, StreamHost};
use crate::state_sync::SharedData;

/// One request's stream: the HTTP context `id` (host calls act on the current context, so a
/// request resumed from another's callback is made current first, [`StreamHost::activate`]).
#[derive(Debug, Clone, Copy)]
pub struct WasmStream {
    pub id: u32,
    shared: HostSharedData,
}

impl WasmStream {
    pub fn new(id: u32) -> Self {
        Self { id, shared: HostSharedData }
    }
}

/// The calls of a root context (or of any context: they act on no stream).
#[derive(Debug, Default)]
pub struct RootCalls {
    shared: HostSharedData,
}

/// [`Calls`] over proxy-wasm, for both kinds of context.
macro_rules! wasm_calls {
    ($t:ty) => {
        impl Calls for $t {
            fn now_ms(&self) -> u64 {
                now_ms()
            }

            fn emit(&mut self, observations: &[Observation]) {
                super::metrics::emit(observations);
            }

            fn dispatch(&mut self, feed: &StateFeed, call: &CallRequest) -> Option<u32> {
                dispatch(feed, call).ok()
            }

            fn shared(&mut self) -> &mut dyn SharedData {
                &mut self.shared
            }
        }
    };
}

wasm_calls!(RootCalls);
wasm_calls!(WasmStream);

impl StreamHost for WasmStream {
    fn activate(&self) -> bool {
        act_on(self.id)
    }

    fn request_body(&mut self, len: usize) -> Vec<u8> {
        buffer(BufferType::HttpRequestBody, len)
    }

    fn response_body(&mut self, len: usize) -> Vec<u8> {
        buffer(BufferType::HttpResponseBody, len)
    }

    fn replace_response_body(&mut self, len: usize, bytes: &[u8]) {
        replace_buffer(BufferType::HttpResponseBody, len, bytes);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Err(e) = hostcalls::set_map_value_bytes(
            MapType::HttpResponseHeaders,
            name,
            Some(value.as_bytes()),
        ) {
            log::warn!("setting {name} failed: {e:?}");
        }
    }

    fn remove_response_header(&mut self, name: &str) {
        if let Err(e) = hostcalls::remove_map_value(MapType::HttpResponseHeaders, name) {
            log::warn!("removing {name} failed: {e:?}");
        }
    }

    fn send_reply(&mut self, status: u16, body: &[u8], headers: &[(&str, String)]) {
        let mut all = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(name, value)| (*name, value.as_str())));
        if let Err(e) = hostcalls::send_http_response(u32::from(status), all, Some(body)) {
            log::error!("sending a local reply failed: {e:?}");
        }
    }

    fn resume_request(&mut self) {
        if let Err(e) = hostcalls::resume_http_request() {
            log::warn!("resuming a request failed: {e:?}");
        }
    }

    fn reset_response(&mut self) {
        if let Err(e) = hostcalls::reset_http_response() {
            log::warn!("resetting a cut-off stream failed: {e:?}");
        }
    }

    fn store_record(&mut self, bytes: &[u8]) {
        if let Err(e) = hostcalls::set_property(vec![crate::record::PROPERTY], Some(bytes)) {
            log::warn!("storing the usage record failed: {e:?}");
        }
    }

    fn response_flags(&self) -> u64 {
        match hostcalls::get_property(vec!["response", "flags"]) {
            Ok(Some(bytes)) => bytes
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes),
            _ => 0,
        }
    }
}

/// The request-editing side, for [`crate::exchange::Exchange`].
impl Host for WasmStream {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let result = match value {
            Some(v) => hostcalls::set_map_value_bytes(
                MapType::HttpRequestHeaders,
                name,
                Some(v.as_bytes()),
            ),
            None => hostcalls::remove_map_value(MapType::HttpRequestHeaders, name),
        };
        if let Err(status) = result {
            log::warn!("setting request header {name} failed: {status:?}");
        }
    }

    fn set_request_body(&mut self, body: &[u8]) {
        replace_buffer(BufferType::HttpRequestBody, usize::MAX, body);
    }

    fn clear_route_cache(&mut self) {
        if let Err(status) = hostcalls::call_foreign_function("clear_route_cache", None) {
            log::warn!("clear_route_cache failed: {status:?}");
        }
    }
}

/// The host's clock since the Unix epoch.
pub fn now() -> Duration {
    hostcalls::get_current_time()
        .unwrap_or(UNIX_EPOCH)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    u64::try_from(now().as_millis()).unwrap_or(u64::MAX)
}

/// A header of a map as text (lossy for non-UTF-8 bytes), if present.
pub fn header(map: MapType, name: &str) -> Option<String> {
    match hostcalls::get_map_value_bytes(map, name) {
        Ok(Some(bytes)) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    }
}

/// `len` bytes of a buffer from its start; empty if the host has none.
pub fn buffer(kind: BufferType, len: usize) -> Vec<u8> {
    match hostcalls::get_buffer(kind, 0, len) {
        Ok(Some(bytes)) => bytes,
        _ => Vec::new(),
    }
}

/// Replaces the first `len` bytes of a body buffer (all of it, when `len` covers it).
pub fn replace_buffer(kind: BufferType, len: usize, bytes: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(kind, 0, len, bytes) {
        log::warn!("replacing a body buffer failed: {e:?}");
    }
}

/// Envoy's shared data (one store for every worker's VM), for [`crate::state_sync`].
#[derive(Debug, Default, Clone, Copy)]
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => true,
            Err(Status::CasMismatch) => false,
            Err(e) => {
                log::warn!("setting shared data {key} failed: {e:?}");
                false
            }
        }
    }
}

/// Dispatches a call to the control plane on the state cluster; its token.
pub fn dispatch(feed: &StateFeed, call: &CallRequest) -> Result<u32, Status> {
    let headers = call.headers(feed);
    let headers = headers.iter().map(|(name, value)| (*name, value.as_str())).collect();
    let timeout = Duration::from_millis(call.timeout_ms);
    hostcalls::dispatch_http_call(&feed.cluster, headers, call.body.as_deref(), vec![], timeout)
        .inspect_err(|e| {
            log::warn!("calling the control plane on cluster {} failed: {e:?}", feed.cluster);
        })
}

/// The answer to a call, read in `on_http_call_response`.
pub fn call_answer(body_size: usize) -> CallAnswer {
    let status = header(MapType::HttpCallResponseHeaders, ":status");
    let etag = header(MapType::HttpCallResponseHeaders, "etag");
    let delta = header(MapType::HttpCallResponseHeaders, crate::feed::DELTA_HEADER);
    let body = buffer(BufferType::HttpCallResponseBody, body_size);
    CallAnswer::new(status.as_deref(), etag.as_deref(), delta.as_deref(), body)
}

/// Makes the following host calls act on context `id`; false when it no longer exists.
pub fn act_on(id: u32) -> bool {
    hostcalls::set_effective_context(id).is_ok()
}
