//! The vllm-gateway proxy-wasm filter.
//!
//! Everything that decides something (configuration, credentials, routing, SSE parsing, usage
//! accounting, error bodies) lives in pure modules that never touch proxy-wasm types, so they are
//! unit-tested natively. Only [`glue`] (built for `wasm32-wasip1`) calls the host, and it does so
//! through fallible host calls: the filter never panics, because a trapped VM stops the filter
//! for every request on that worker.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod config;
pub mod credential;
pub mod error;
pub mod exchange;
pub mod inject;
pub mod json_scan;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod record;
pub mod request_body;
pub mod sse;
pub mod usage;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod glue;
