//! Support for the end-to-end tests in `tests/` (crate `gateway-e2e`), which run the whole stack
//! (crate `gateway-stack`: real Envoy, control plane, mock vLLM) and check what callers see:
//!
//! - [`eventually`]: waiting for something that happens a little later (the one polling helper,
//!   from `gateway-stack`, which the launcher waits with too).
//! - [`http_wire`]: HTTP/1.1 replies read off the wire, for tests that talk raw TCP.
//! - [`reply_body`]: a reply's body read to its end or to where the connection broke.

pub mod http_wire;
pub mod reply_body;

pub use gateway_stack::eventually;
