//! The proxy-wasm glue: the only code that talks to a wasm Envoy. It turns host callbacks into calls on
//! the pure core and the core's answers into host calls. Every host call is the fallible one from
//! `proxy_wasm::hostcalls` (the trait helpers unwrap, and a panic would trap the VM), and header
//! values are read as bytes (the string helpers panic on non-UTF-8 input).
#![allow(unsafe_code)] // `proxy_wasm::main!` exports `_initialize` with `#[no_mangle]`.

mod host;
mod http;
mod metrics;
mod root;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| Box::new(root::GatewayRoot::new(id)));
}}
