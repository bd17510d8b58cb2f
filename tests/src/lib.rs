//! Runs the whole vllm-gateway stack on this machine: the real Envoy binary with the built wasm
//! filter, the control-plane binary on its own SQLite file, and vLLM-compatible mock upstreams
//! (or real vLLM URLs). The end-to-end tests and `cargo xtask up` both start it through
//! [`Stack::start`], so what the tests prove is what users run. A test can put a second Envoy in
//! front of the same control plane ([`Stack::start_second_envoy`]) and restart the control plane
//! or an Envoy on the same addresses and database.
//!
//! Every process is owned by a guard that kills it on drop; its output is kept and printed only
//! when a test fails (or echoed live, for `cargo xtask up`).

pub mod cp_proxy;
pub mod envoy;
pub mod http_wire;
mod launch;
mod limits;
pub mod paths;
pub mod process;
pub mod reply_body;
pub mod stack;
pub mod timeouts;
mod wait;

pub use cp_proxy::ControlPlaneProxy;
pub use envoy::Envoy;
pub use launch::start_envoy_with;
pub use stack::{CreatedApp, FaultKnobs, Stack, StackOptions, Upstreams};
pub use wait::eventually;
