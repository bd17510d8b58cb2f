//! The fault suite, through the real Envoy: what a user sees and what the access log holds when
//! things break.
//!
//! - `upstream`: a model server that cuts a stream, never answers, or stalls mid-stream;
//! - `control_plane`: the control plane SIGKILLed under load and restarted; a malformed state
//!   feed;
//! - `slow_clients`: slow-loris headers and bodies;
//! - `uploads`: many concurrent large uploads, within and beyond Envoy's heap cap;
//! - `load`: a thousand concurrent streams.
//!
//! Tests that wait for a timeout run Envoy with its configured timeouts capped at
//! [`support::SHORT_TIMEOUT`] (only timeouts the configuration sets: see
//! `gateway_stack::timeouts`), and a failure names the timeouts Envoy runs with.

mod common;

#[path = "faults/control_plane.rs"]
mod control_plane;
#[path = "faults/load.rs"]
mod load;
#[path = "faults/raw.rs"]
mod raw;
#[path = "faults/slow_clients.rs"]
mod slow_clients;
#[path = "faults/support.rs"]
mod support;
#[path = "faults/uploads.rs"]
mod uploads;
#[path = "faults/upstream.rs"]
mod upstream;
