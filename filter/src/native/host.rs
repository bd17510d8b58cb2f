//! The core's host traits over the dynamic-module callbacks of one HTTP stream. Every callback
//! takes the stream's Envoy pointer, which is valid until the stream is destroyed: the handle
//! says when it is gone ([`StreamHost::activate`]), and nothing is called through it after.
//! Replies, resumes and resets are queued ([`super::deferred`]): they can run other hooks.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::abi::{self, EnvoyBuffer, ModuleBuffer, ModuleHeader};
use super::deferred::{self, Deferred};
use super::metrics::Metrics;
use super::store::Store;
use crate::config::StateFeed;
use crate::control_plane::CallRequest;
use crate::exchange::Host;
use crate::metrics::Observation;
use crate::request::{Calls, StreamHost};
use crate::state_sync::SharedData;

thread_local! {
    /// The worker's call tokens: Envoy numbers callouts per stream, the core wants them unique
    /// per worker.
    static NEXT_TOKEN: Cell<u32> = const { Cell::new(1) };
}

/// A token no other call of this worker has.
fn next_token() -> u32 {
    NEXT_TOKEN.with(|t| {
        let token = t.get();
        t.set(token.wrapping_add(1).max(1));
        token
    })
}

/// The stream as Envoy knows it, shared by the handles of one stream.
struct Stream {
    envoy: *mut c_void,
    alive: Cell<bool>,
    /// Envoy's callout id → the core's token, for the calls in flight.
    calls: RefCell<Vec<(u64, u32)>>,
}

impl deferred::Target for Stream {
    fn envoy(&self) -> Option<*mut c_void> {
        self.alive.get().then_some(self.envoy)
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct NativeStream {
    stream: Rc<Stream>,
    store: Store,
    metrics: Arc<Metrics>,
}

impl NativeStream {
    pub fn new(envoy: *mut c_void, store: Store, metrics: Arc<Metrics>) -> Self {
        let stream =
            Rc::new(Stream { envoy, alive: Cell::new(true), calls: RefCell::new(Vec::new()) });
        Self { stream, store, metrics }
    }

    /// The stream is destroyed: no callback may use its pointer any more.
    pub fn destroyed(&self) {
        self.stream.alive.set(false);
    }

    /// The core's token of Envoy's callout `id` (which is then no longer in flight).
    pub fn token_of(&self, id: u64) -> Option<u32> {
        let mut calls = self.stream.calls.borrow_mut();
        let at = calls.iter().position(|(i, _)| *i == id)?;
        Some(calls.swap_remove(at).1)
    }

    fn envoy(&self) -> Option<*mut c_void> {
        self.stream.alive.get().then_some(self.stream.envoy)
    }

    /// The bytes of a body buffer (`kind`), all chunks joined.
    fn body(&self, kind: i32) -> Vec<u8> {
        let Some(envoy) = self.envoy() else { return Vec::new() };
        // SAFETY: `envoy` is alive and we are on its worker; the chunks are read before the
        // callback returns and before any mutation.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_body_chunks_size(envoy, kind);
            if n == 0 {
                return Vec::new();
            }
            let mut chunks = vec![EnvoyBuffer::EMPTY; n];
            if !abi::envoy_dynamic_module_callback_http_get_body_chunks(
                envoy,
                kind,
                chunks.as_mut_ptr(),
            ) {
                return Vec::new();
            }
            let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len).sum());
            for chunk in chunks {
                out.extend_from_slice(chunk.bytes());
            }
            out
        }
    }

    fn body_size(&self, kind: i32) -> usize {
        // SAFETY: as in `body`.
        self.envoy().map_or(0, |envoy| unsafe {
            abi::envoy_dynamic_module_callback_http_get_body_size(envoy, kind)
        })
    }

    /// Replaces a body buffer's bytes.
    fn replace_body(&self, kind: i32, bytes: &[u8]) {
        let Some(envoy) = self.envoy() else { return };
        // SAFETY: as in `body`; `bytes` outlives the call.
        unsafe {
            let size = abi::envoy_dynamic_module_callback_http_get_body_size(envoy, kind);
            abi::envoy_dynamic_module_callback_http_drain_body(envoy, kind, size);
            if !bytes.is_empty()
                && !abi::envoy_dynamic_module_callback_http_append_body(
                    envoy,
                    kind,
                    ModuleBuffer::of(bytes),
                )
            {
                log::warn!("replacing a body failed");
            }
        }
    }

    fn set_header(&self, map: i32, name: &str, value: Option<&str>) {
        let Some(envoy) = self.envoy() else { return };
        let value = value.map_or(ModuleBuffer::NONE, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: as in `body`; the buffers outlive the call.
        if !unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                envoy,
                map,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        } {
            log::warn!("setting header {name} failed");
        }
    }

    /// A header of the request (`map` = [`abi::REQUEST_HEADER`]) or the response, as text.
    pub fn header(&self, map: i32, name: &str) -> Option<String> {
        let envoy = self.envoy()?;
        let mut value = EnvoyBuffer::EMPTY;
        // SAFETY: as in `body`; the value is copied before the callback returns.
        unsafe {
            let found = abi::envoy_dynamic_module_callback_http_get_header(
                envoy,
                map,
                ModuleBuffer::of(name.as_bytes()),
                &mut value,
                0,
                std::ptr::null_mut(),
            );
            found.then(|| String::from_utf8_lossy(value.bytes()).into_owned())
        }
    }

    /// The size of the response chunk at hand.
    pub fn response_body_size(&self) -> usize {
        self.body_size(abi::RECEIVED_RESPONSE_BODY)
    }

    /// The size of the request body Envoy holds for this filter (buffered and just received).
    pub fn request_body_size(&self) -> usize {
        self.body_size(abi::BUFFERED_REQUEST_BODY) + self.body_size(abi::RECEIVED_REQUEST_BODY)
    }
}

/// The host's clock.
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// A callout Envoy makes on a stream or on the configuration (`start`: the ABI call, given the
/// cluster, the headers, the body, the timeout and where to put Envoy's callout id).
pub type StartCallout<'a> =
    &'a mut dyn FnMut(ModuleBuffer, &mut [ModuleHeader], ModuleBuffer, u64, &mut u64) -> i32;

/// Sends `call` to the control plane on the state cluster with `start`; Envoy's callout id.
pub fn callout(feed: &StateFeed, call: &CallRequest, start: StartCallout<'_>) -> Option<u64> {
    let headers = call.headers(feed);
    let mut abi_headers: Vec<ModuleHeader> =
        headers.iter().map(|(name, value)| ModuleHeader::of(name, value)).collect();
    let body = call.body.as_deref().map_or(ModuleBuffer::NONE, ModuleBuffer::of);
    let mut id = 0u64;
    let result = start(
        ModuleBuffer::of(feed.cluster.as_bytes()),
        &mut abi_headers,
        body,
        call.timeout_ms,
        &mut id,
    );
    if result != abi::CALLOUT_SUCCESS {
        log::warn!("calling the control plane on cluster {} failed: {result}", feed.cluster);
        return None;
    }
    Some(id)
}

impl Calls for NativeStream {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn emit(&mut self, observations: &[Observation]) {
        if let Some(envoy) = self.envoy() {
            self.metrics.emit(envoy, observations);
        }
    }

    fn dispatch(&mut self, feed: &StateFeed, call: &CallRequest) -> Option<u32> {
        let envoy = self.envoy()?;
        // SAFETY: as in `body`; every buffer outlives the call.
        let id = callout(feed, call, &mut |cluster, headers, body, timeout_ms, id| unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                envoy,
                id,
                cluster,
                headers.as_mut_ptr(),
                headers.len(),
                body,
                timeout_ms,
            )
        })?;
        let token = next_token();
        self.stream.calls.borrow_mut().push((id, token));
        Some(token)
    }

    fn shared(&mut self) -> &mut dyn SharedData {
        &mut self.store
    }
}

impl StreamHost for NativeStream {
    fn activate(&self) -> bool {
        self.stream.alive.get()
    }

    fn request_body(&mut self, len: usize) -> Vec<u8> {
        let mut body = self.body(abi::BUFFERED_REQUEST_BODY);
        body.extend(self.body(abi::RECEIVED_REQUEST_BODY));
        body.truncate(len);
        body
    }

    fn response_body(&mut self, len: usize) -> Vec<u8> {
        let mut body = self.body(abi::RECEIVED_RESPONSE_BODY);
        body.truncate(len);
        body
    }

    fn replace_response_body(&mut self, _len: usize, bytes: &[u8]) {
        self.replace_body(abi::RECEIVED_RESPONSE_BODY, bytes);
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        self.set_header(abi::RESPONSE_HEADER, name, Some(value));
    }

    fn remove_response_header(&mut self, name: &str) {
        self.set_header(abi::RESPONSE_HEADER, name, None);
    }

    fn send_reply(&mut self, status: u16, body: &[u8], headers: &[(&str, String)]) {
        let headers =
            headers.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect();
        deferred::defer(
            self.stream.clone(),
            Deferred::Reply { status, body: body.to_vec(), headers },
        );
    }

    fn resume_request(&mut self) {
        deferred::defer(self.stream.clone(), Deferred::Resume);
    }

    fn reset_response(&mut self) {
        deferred::defer(self.stream.clone(), Deferred::Reset);
    }

    fn store_record(&mut self, bytes: &[u8]) {
        let Some(envoy) = self.envoy() else { return };
        let key = crate::record::LOG_KEY.as_bytes();
        // SAFETY: as in `body`; the buffers outlive the call.
        if !unsafe {
            abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                envoy,
                ModuleBuffer::of(key),
                ModuleBuffer::of(bytes),
            )
        } {
            log::warn!("storing the usage record failed");
        }
    }

    fn response_flags(&self) -> u64 {
        let Some(envoy) = self.envoy() else { return 0 };
        let mut flags = 0u64;
        // SAFETY: as in `body`.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                envoy,
                abi::ATTRIBUTE_RESPONSE_FLAGS,
                &mut flags,
            )
        };
        if found {
            flags
        } else {
            0
        }
    }
}

/// The request-editing side, for [`crate::exchange::Exchange`].
impl Host for NativeStream {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.set_header(abi::REQUEST_HEADER, name, value);
    }

    fn clear_route_cache(&mut self) {
        // SAFETY: as in `NativeStream::body`.
        if let Some(envoy) = self.envoy() {
            unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(envoy) }
        }
    }

    fn set_request_body(&mut self, body: &[u8]) {
        // The body is where Envoy holds it: buffered (it came in several events, or while the
        // request waited), or only in the event at hand.
        if self.body_size(abi::BUFFERED_REQUEST_BODY) > 0 {
            self.replace_body(abi::RECEIVED_REQUEST_BODY, &[]);
            self.replace_body(abi::BUFFERED_REQUEST_BODY, body);
        } else {
            self.replace_body(abi::RECEIVED_REQUEST_BODY, body);
        }
    }
}
