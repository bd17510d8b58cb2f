//! Fallible host calls wrapped for the core: failures are logged, never unwrapped.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::exchange::Host;

/// The request-editing side of the host, for [`crate::exchange::Exchange`].
pub struct HostCalls;

impl Host for HostCalls {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let result = match value {
            Some(v) => hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, Some(v.as_bytes())),
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

/// Sends a local JSON reply.
pub fn send_json(status: u16, body: &[u8]) {
    let headers = vec![("content-type", "application/json")];
    if let Err(e) = hostcalls::send_http_response(u32::from(status), headers, Some(body)) {
        log::error!("sending a local reply failed: {e:?}");
    }
}

/// Stores the request's usage record in the filter state for the access log.
pub fn store_record(bytes: &[u8]) {
    if let Err(e) = hostcalls::set_property(vec![crate::record::PROPERTY], Some(bytes)) {
        log::warn!("storing the usage record failed: {e:?}");
    }
}
