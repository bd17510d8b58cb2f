//! What the request driver needs of a host: one request's stream, and the Envoy's shared data.
//! The proxy-wasm glue and the dynamic-module glue each implement it; tests implement it with
//! plain values.

use crate::config::StateFeed;
use crate::control_plane::CallRequest;
use crate::exchange::Host;
use crate::metrics::Observation;
use crate::state_sync::SharedData;

/// What the host should do with the request or response after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Let it go on.
    Continue,
    /// Hold it (its body is buffered); the driver resumes or answers it later.
    Pause,
}

/// What every context of a worker can do: read the clock, call the control plane, use the
/// Envoy's shared data, count. Every call is fallible in the host and logged there: the callers
/// never see a host error (a failed header write must not fail the request).
pub trait Calls {
    /// The host's clock, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Adds the observations to Envoy's stats.
    fn emit(&mut self, observations: &[Observation]);
    /// Sends a call to the control plane on the state cluster; its token, `None` if not sent.
    /// The answer comes to the context that sent it.
    fn dispatch(&mut self, feed: &StateFeed, call: &CallRequest) -> Option<u32>;
    /// The Envoy's shared data (the credentials, the limits' ledger).
    fn shared(&mut self) -> &mut dyn SharedData;
}

/// One request's stream in the host.
pub trait StreamHost: Host + Calls {
    /// Makes the following calls act on this request (when it is resumed from another request's
    /// callback); `false` when the host no longer has it.
    fn activate(&self) -> bool;
    /// The first `len` bytes of the buffered request body.
    fn request_body(&mut self, len: usize) -> Vec<u8>;
    /// The first `len` bytes of the response body chunk at hand.
    fn response_body(&mut self, len: usize) -> Vec<u8>;
    /// Replaces the first `len` bytes of the response chunk at hand.
    fn replace_response_body(&mut self, len: usize, bytes: &[u8]);
    /// Sets a response header.
    fn set_response_header(&mut self, name: &str, value: &str);
    /// Removes a response header.
    fn remove_response_header(&mut self, name: &str);
    /// Answers the request locally with a JSON body and these extra headers.
    fn send_reply(&mut self, status: u16, body: &[u8], headers: &[(&str, String)]);
    /// Resumes a paused request.
    fn resume_request(&mut self);
    /// Resets the response stream (the upstream stops).
    fn reset_response(&mut self);
    /// Hands the usage record to Envoy's access log.
    fn store_record(&mut self, bytes: &[u8]);
    /// Envoy's response flags of the request (the bits of `%RESPONSE_FLAGS%`); 0 if unknown.
    fn response_flags(&self) -> u64;
}
