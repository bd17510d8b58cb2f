//! The Envoy dynamic-module glue (`envoy.filters.http.dynamic_modules`, feature
//! `dynamic-module`): the same core as the proxy-wasm filter, run natively in Envoy's process.
//! Our own code against the module ABI of Envoy 1.40 ([`abi`]); no SDK.
//!
//! - [`config`]: one per filter configuration, on Envoy's main thread: parses the plugin
//!   configuration, declares the metrics, and (on a tick a module thread posts to the main
//!   thread) pulls the credentials into [`store`] and keeps the Envoy's leases.
//! - [`filter`]: one per HTTP stream, on its worker: hands each callback to the core's
//!   [`crate::request::RequestContext`] over [`host::NativeStream`], with the worker's own key
//!   state, body budget and limits ([`worker`]), as a wasm worker's VM has them.
//!
//! Only fallible callbacks are used and every hook returns a status on every path: a panic
//! here would abort Envoy.
#![allow(unsafe_code)] // The module ABI is C: exported hooks and Envoy's callbacks.

pub mod abi;
pub mod store;

#[cfg(not(test))]
mod config;
#[cfg(not(test))]
mod deferred;
#[cfg(not(test))]
mod filter;
#[cfg(not(test))]
mod host;
#[cfg(not(test))]
mod logger;
#[cfg(not(test))]
mod metrics;
#[cfg(not(test))]
mod worker;

/// Called once when Envoy loads the module: installs the logger; the ABI version this module
/// was written against (Envoy only warns when it differs).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    logger::install();
    abi::ABI_VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests;
