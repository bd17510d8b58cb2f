//! What the gateway's processes ask of the operating system, in one place for all of them (the
//! control plane, the mock vLLM's binary, the stack launcher `gateway-up`, the bench):
//!
//! - [`shutdown`]: when to stop: Ctrl-C or SIGTERM, whichever comes first.
//! - [`secrets`]: random bytes from the OS, and opaque tokens made of them.

pub mod secrets;
pub mod shutdown;

pub use secrets::{new_token, random_bytes};
pub use shutdown::shutdown_signal;
