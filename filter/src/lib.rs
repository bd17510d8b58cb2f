//! The vllm-gateway proxy-wasm filter.
//!
//! Everything that decides something (configuration, credentials, routing, SSE parsing, usage
//! accounting, error bodies, and how the workers keep their key state current: the pull lease,
//! adoption, long polls, lookups of unknown credentials) lives in pure modules that never touch
//! proxy-wasm types, so they are unit-tested natively. Only [`glue`] (built for `wasm32-wasip1`) calls the host, and it does so
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

pub mod auth;
pub mod body_budget;
pub mod config;
pub mod control_plane;
pub mod credential;
pub mod error;
pub mod exchange;
pub mod feed;
pub mod inject;
pub mod json_scan;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod lookup;
pub mod metrics;
pub mod overlay;
pub mod record;
pub mod request_body;
pub mod sse;
pub mod state_sync;
pub mod usage;
pub mod worker;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod glue;
