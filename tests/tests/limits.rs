//! Limits and budgets through the real Envoy (several workers) and the real control plane.
//!
//! - `burst`: 100 concurrent requests against a concurrency limit and a per-minute limit of 10
//!   admit exactly 10; OpenAI's 429 with `Retry-After` and the `x-ratelimit-*` headers; refusals
//!   in the access log (`limited`) and in Prometheus (`vllm_gateway_limited_total{reason}`);
//!   two Envoys in front of one control plane admit exactly the limit together;
//! - `tokens`: a daily budget lowers `max_tokens` to what remains and refuses only what cannot
//!   fit (`insufficient_quota`); `limitUsage` agrees with the access log; an upstream that
//!   ignores `max_tokens` is charged as it was (non-streamed) or cut off at the grant
//!   (streamed: an error event, the row marked, the upstream request reset); per-model limits;
//! - `callers`: JWT users are limited as apps are; an OpenAI client library's retry honours
//!   `Retry-After`; budgets survive restarts of the control plane and of Envoy.
//!
//! The upstream holds requests for as long as a test needs (`Fault::HoldBeforeHeaders`), so
//! "in flight at once" needs no clock; only per-minute tests keep clear of a minute's end.

mod common;

#[path = "limits/burst.rs"]
mod burst;
#[path = "limits/callers.rs"]
mod callers;
#[path = "limits/support.rs"]
mod support;
#[path = "limits/tokens.rs"]
mod tokens;
