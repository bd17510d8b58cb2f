//! The vllm-gateway filter: one core, two glues.
//!
//! Everything that decides something (configuration, credentials, routing, SSE parsing, usage
//! accounting, limits, error bodies, how the workers keep their credentials current, and how a
//! request is driven from host callbacks: [`request`]) lives in pure modules that never touch a
//! host's types, so they are unit-tested natively. Two thin glues adapt a host to the core's
//! traits ([`request::StreamHost`], [`request::Calls`], [`state_sync::SharedData`]):
//!
//! - `wasm` (built for `wasm32-wasip1`): a proxy-wasm filter, for any Envoy with a wasm runtime
//!   (Istio included);
//! - `native` (feature `dynamic-module`, built natively): an Envoy dynamic module
//!   (`envoy.filters.http.dynamic_modules`), our own code against the module ABI of Envoy 1.40.
//!
//! Both make only fallible host calls: the filter never panics, because a trapped VM (or a
//! panicking module) stops the filter for every request on that worker.
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
mod json_reader;
pub mod json_scan;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod lookup;
pub mod metrics;
pub mod overlay;
pub mod record;
pub mod request;
pub mod request_body;
pub mod sse;
pub mod state_sync;
pub mod usage;
pub mod worker;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod wasm;

#[cfg(all(feature = "dynamic-module", not(target_arch = "wasm32")))]
pub mod native;
