//! Runs the whole vllm-gateway stack on this machine: the real Envoy binary with the built filter
//! (wasm or native), the control-plane binary on its own SQLite file, and vLLM-compatible mock
//! upstreams in this process (or real vLLM URLs). `cargo xtask up` (the `gateway-up` binary of
//! this crate), the end-to-end tests (crate `gateway-e2e`) and the bench (`gateway-bench`) all
//! start it through [`Stack::start`], so that what the tests prove is what users run. A test can
//! put a second Envoy in front of the same control plane ([`Stack::start_second_envoy`]) and
//! restart the control plane or an Envoy on the same addresses and database.
//!
//! Every process is owned by a guard that kills it on drop; its output is kept and printed only
//! when a test fails (or echoed live, for `cargo xtask up`).
//!
//! - [`options`]: how to start a stack ([`StackOptions`], [`Upstreams`], [`FaultKnobs`]).
//! - [`stack`]: the running stack ([`Stack`]), started and stopped in order.
//! - [`control_plane`], [`upstreams`], [`envoy`] and [`envoy_process`]: its parts.
//! - [`process`]: child processes owned by guards ([`process::ChildGuard`]).
//! - [`admin`] and [`limits`]: the running stack's admin API.
//! - [`filter_build`]: which build of the filter runs (`GATEWAY_FILTER_BUILD`).
//! - [`timeouts`] and [`cp_proxy`]: what a fault test adds (shortened timeouts, a proxy that
//!   garbles the state feed).
//! - [`wait`]: waiting for something that happens a little later ([`eventually`]), the one
//!   polling helper of the launcher and of every test.

pub mod admin;
pub mod control_plane;
pub mod cp_proxy;
pub mod envoy;
pub mod envoy_process;
pub mod filter_build;
pub mod limits;
pub mod options;
pub mod process;
pub mod stack;
pub mod timeouts;
pub mod upstreams;
pub mod wait;

pub use admin::CreatedApp;
pub use cp_proxy::ControlPlaneProxy;
pub use envoy::Envoy;
pub use envoy_process::start_envoy_with;
pub use options::{FaultKnobs, StackOptions, Upstreams};
pub use stack::Stack;
pub use wait::eventually;
