//! The part of Envoy's dynamic-module ABI (Envoy 1.40, ABI `v0.2.0`) this module uses, declared
//! from Envoy's `abi.h`: only the callbacks we call, the types they take, and the numeric values
//! of the enums we pass or read. C enums cross as `i32`, so that a value Envoy adds later is not
//! undefined behaviour here. `tests::every_callback_is_exported_by_the_installed_envoy` (run by
//! `cargo xtask test`) reads this file and checks each callback declared below against the
//! installed Envoy's exports.

#[cfg(not(test))]
use std::ffi::c_void;

/// The ABI version this module is written against (what `on_program_init` returns).
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Bytes Envoy owns, valid during the callback that handed them over.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: Self = Self { ptr: std::ptr::null(), len: 0 };

    /// The bytes (empty for a null pointer).
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes for as long as the slice is used.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes this module owns, read by Envoy only during the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> Self {
        Self { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// Nothing (a removed header's value, an empty body).
    pub const NONE: Self = Self { ptr: std::ptr::null(), len: 0 };
}

/// A header this module passes.
#[repr(C)]
pub struct ModuleHeader {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

impl ModuleHeader {
    pub fn of(key: &str, value: &str) -> Self {
        Self {
            key_ptr: key.as_ptr(),
            key_len: key.len(),
            value_ptr: value.as_ptr(),
            value_len: value.len(),
        }
    }
}

/// A header Envoy passes (valid during the callback).
#[repr(C)]
pub struct EnvoyHeader {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: i32 = 0;
pub const RESPONSE_HEADER: i32 = 2;
/// `envoy_dynamic_module_type_http_body_type`.
pub const RECEIVED_REQUEST_BODY: i32 = 0;
pub const BUFFERED_REQUEST_BODY: i32 = 1;
pub const RECEIVED_RESPONSE_BODY: i32 = 2;
/// Header and body statuses (`Continue` is 0 in each).
pub const CONTINUE: i32 = 0;
/// `request_headers_status_StopIteration`: the headers wait, the body still comes here.
pub const HEADERS_STOP_ITERATION: i32 = 1;
/// `request_trailers_status_StopIteration`.
pub const TRAILERS_STOP_ITERATION: i32 = 1;
/// `request_body_status_StopIterationAndBuffer`.
pub const BODY_STOP_AND_BUFFER: i32 = 1;
/// `http_callout_init_result_Success` / `http_callout_result_Success`.
pub const CALLOUT_SUCCESS: i32 = 0;
/// `http_filter_stream_reset_reason_LocalReset`.
pub const RESET_LOCAL: i32 = 0;
/// `metrics_result_Success`.
pub const METRICS_SUCCESS: i32 = 0;
/// `envoy_dynamic_module_type_attribute_id_ResponseFlags` (read as an integer).
pub const ATTRIBUTE_RESPONSE_FLAGS: i32 = 17;
/// `envoy_dynamic_module_type_log_level`.
pub const LOG_INFO: i32 = 2;
pub const LOG_WARN: i32 = 3;
pub const LOG_ERROR: i32 = 4;

#[cfg(not(test))]
extern "C" {
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: i32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: *mut c_void,
        body_type: i32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        body_type: i32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        body_type: i32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: *mut c_void,
        body_type: i32,
        bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: *mut c_void,
        body_type: i32,
        data: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    pub fn envoy_dynamic_module_callback_http_filter_reset_stream(
        filter: *mut c_void,
        reason: i32,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: *mut c_void);
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: *mut c_void,
        attribute: i32,
        result: *mut u64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: *mut c_void,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> i32;
    pub fn envoy_dynamic_module_callback_log(level: i32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: i32) -> bool;
}
