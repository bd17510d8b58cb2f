//! One HTTP stream, on its worker: each hook reads what the core needs from Envoy and hands it
//! to the stream's [`RequestContext`]; the core's [`Flow`] becomes the hook's status. Each hook
//! lets go of the stream before it runs the calls the core queued ([`deferred::run`]), which may
//! end this stream (and free it) or resume others.

use std::ffi::c_void;
use std::rc::Rc;

use super::abi::{self, EnvoyBuffer, EnvoyHeader};
use super::config::{self, NativeConfig};
use super::deferred;
use super::host::{self, NativeStream};
use super::worker::{self, WorkerParts};
use crate::exchange::RequestHead;
use crate::request::context::ResponseHead;
use crate::request::{tick, waiting, Flow, RequestContext};

/// See the module docs.
struct NativeFilter {
    host: NativeStream,
    context: RequestContext<NativeStream>,
    parts: Rc<WorkerParts>,
}

/// The stream behind the module pointer Envoy hands every hook.
///
/// # Safety
/// `filter` is a pointer `on_http_filter_new` returned, not yet destroyed, used on its worker.
unsafe fn stream<'a>(filter: *const c_void) -> Option<&'a mut NativeFilter> {
    // SAFETY: the caller's contract; Envoy never calls one stream's hooks concurrently.
    unsafe { filter.cast_mut().cast::<NativeFilter>().as_mut() }
}

/// Runs a hook's work on the stream behind `filter` (`otherwise` when there is none), lets go of
/// it, then runs the calls the work queued ([`deferred::run`]): after that nothing of the stream
/// may be touched, as they can have ended it.
fn in_hook<T>(filter: *const c_void, otherwise: T, work: impl FnOnce(&mut NativeFilter) -> T) -> T {
    // SAFETY: Envoy's contract for every per-stream hook.
    let Some(f) = (unsafe { stream(filter) }) else { return otherwise };
    let out = work(f);
    deferred::run();
    out
}

fn headers_status(flow: Flow) -> i32 {
    match flow {
        Flow::Continue => abi::CONTINUE,
        Flow::Pause => abi::HEADERS_STOP_ITERATION,
    }
}

fn body_status(flow: Flow) -> i32 {
    match flow {
        Flow::Continue => abi::CONTINUE,
        Flow::Pause => abi::BODY_STOP_AND_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    envoy: *mut c_void,
) -> *const c_void {
    // SAFETY: the configuration outlives its streams.
    let Some(native) = (unsafe { config.cast::<NativeConfig>().as_ref() }) else {
        return std::ptr::null();
    };
    let Some(parts) = worker::parts(native) else { return std::ptr::null() };
    parts.follow_shared(native);
    let host = NativeStream::new(envoy, native.store.clone(), native.metrics.clone());
    let context = RequestContext::new(
        host.clone(),
        parts.config.clone(),
        parts.worker.clone(),
        parts.budget.clone(),
        parts.limits.clone(),
    );
    Box::into_raw(Box::new(NativeFilter { host, context, parts })).cast_const().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> i32 {
    in_hook(filter, abi::CONTINUE, |f| {
        let head = RequestHead {
            method: f.host.header(abi::REQUEST_HEADER, ":method").unwrap_or_default(),
            path: f.host.header(abi::REQUEST_HEADER, ":path").unwrap_or_default(),
            authorization: f.host.header(abi::REQUEST_HEADER, "authorization"),
        };
        headers_status(f.context.on_request_headers(head, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> i32 {
    in_hook(filter, abi::CONTINUE, |f| {
        let size = f.host.request_body_size();
        body_status(f.context.on_request_body(size, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: *mut c_void,
    filter: *const c_void,
) -> i32 {
    in_hook(filter, abi::CONTINUE, |f| match f.context.on_request_trailers() {
        Flow::Continue => abi::CONTINUE,
        Flow::Pause => abi::TRAILERS_STOP_ITERATION,
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> i32 {
    in_hook(filter, abi::CONTINUE, |f| {
        let head = ResponseHead {
            status: f
                .host
                .header(abi::RESPONSE_HEADER, ":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            content_type: f.host.header(abi::RESPONSE_HEADER, "content-type"),
            content_encoding: f.host.header(abi::RESPONSE_HEADER, "content-encoding"),
        };
        headers_status(f.context.on_response_headers(&head, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: *mut c_void,
    filter: *const c_void,
    end_of_stream: bool,
) -> i32 {
    // A cut-off stream is reset in `in_hook`: its `stream_complete` and `destroy` run before
    // this returns.
    in_hook(filter, abi::CONTINUE, |f| {
        let size = f.host.response_body_size();
        body_status(f.context.on_response_body(size, end_of_stream))
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: *mut c_void,
    _filter: *const c_void,
) -> i32 {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: *mut c_void,
    filter: *const c_void,
) {
    in_hook(filter, (), |f| {
        f.context.on_log();
        // Lookups this request sent for others go again, through one of them.
        let mut host = f.host.clone();
        tick::sweep_lookups_through_waiters(
            &f.parts.config.state,
            &f.parts.worker,
            host::now_ms(),
            |result| waiting::count(&mut host, result),
        );
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    if filter.is_null() {
        return;
    }
    // SAFETY: made by `on_http_filter_new`, destroyed once, on its worker.
    let f = unsafe { Box::from_raw(filter.cast_mut().cast::<NativeFilter>()) };
    f.host.destroyed();
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: *mut c_void,
    filter: *const c_void,
    id: u64,
    result: i32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) {
    // The answer may resume or refuse this request and others; a refusal ends this stream.
    in_hook(filter, (), |f| {
        let Some(token) = f.host.token_of(id) else { return };
        // SAFETY: Envoy's pointers, read during the call.
        let answer =
            unsafe { config::call_answer(result, headers, headers_len, chunks, chunks_len) };
        f.context.on_call_answer(token, &answer);
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: *mut c_void,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: *mut c_void,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _stream: u64,
    _headers: *const EnvoyHeader,
    _len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _len: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _stream: u64,
    _trailers: *const EnvoyHeader,
    _len: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _stream: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: *mut c_void,
    _filter: *const c_void,
    _stream: u64,
    _reason: i32,
) {
}
