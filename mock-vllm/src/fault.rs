//! Faults a running mock can be told to show, for the gateway's fault and limit tests: a stream
//! whose connection is cut after some frames (vLLM dying mid-stream), a request that is never
//! answered (vLLM stuck before its first byte), a stream that stops sending (vLLM stuck
//! mid-generation), requests held until the test lets them go (a slow model, without timing),
//! and a reply that runs past its `max_tokens` (an upstream the gateway must not trust). Until
//! one is set ([`crate::MockState::set_fault`]) the mock behaves as vLLM does; a fault applies
//! to the requests that arrive after it is set (and a held request is answered as the fault set
//! when it is let go says).

use std::convert::Infallible;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use crate::generate::Plan;
use crate::state::MockState;

/// A fault to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// None: vLLM's behaviour.
    #[default]
    None,
    /// A streamed body sends its first `frames` frames, then the connection is closed without
    /// the body's end (no last chunk): the upstream went away mid-stream.
    ResetAfter {
        /// Frames sent before the cut.
        frames: usize,
    },
    /// Every `POST` is read (and recorded) and never answered: no status, no header, no byte,
    /// until the caller goes away.
    StallBeforeHeaders,
    /// A streamed body sends its first `frames` frames, then nothing more; the connection stays
    /// open until the caller goes away.
    StallAfter {
        /// Frames sent before the stall.
        frames: usize,
    },
    /// Every `POST` is read (and recorded), then waits until another fault is set; it is then
    /// answered as that fault says. A test holds requests in flight this way for as long as
    /// it needs (a slow model without a clock).
    HoldBeforeHeaders,
    /// Every reply generates `tokens` completion tokens (finish reason `length`) whatever
    /// `max_tokens` / `max_completion_tokens` says (still checked as vLLM checks them): an
    /// upstream that overruns the grant the gateway lowered `max_tokens` to.
    IgnoreMaxTokens {
        /// Completion tokens generated per choice.
        tokens: u32,
    },
}

/// The error a cut stream ends with (hyper then closes the connection without the last chunk).
fn cut() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "mock-vllm fault: the stream is cut")
}

/// The middleware of [`Fault::StallBeforeHeaders`] and [`Fault::HoldBeforeHeaders`]: a `POST`
/// waits forever (it is dropped when the caller goes away), or until the hold is lifted;
/// everything else passes.
pub(crate) async fn stall_before_headers(
    State(state): State<MockState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::POST {
        match state.fault() {
            Fault::StallBeforeHeaders => {
                tracing::info!(path = %request.uri().path(), "fault: never answering");
                std::future::pending::<()>().await;
            }
            Fault::HoldBeforeHeaders => {
                tracing::info!(path = %request.uri().path(), "fault: held");
                state.wait_for_release().await;
            }
            _ => {}
        }
    }
    next.run(request).await
}

/// `plan` as `fault` generates it: [`Fault::IgnoreMaxTokens`] replaces its completion tokens.
pub(crate) fn overrun(plan: Plan, fault: Fault) -> Plan {
    match fault {
        Fault::IgnoreMaxTokens { tokens } => {
            Plan { completion_tokens: tokens, finish_reason: "length", ..plan }
        }
        _ => plan,
    }
}

/// The frames of a streamed body as `fault` leaves them: all of them, or the first few followed
/// by a cut or by silence.
pub(crate) fn apply(
    frames: BoxStream<'static, Result<Bytes, Infallible>>,
    fault: Fault,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    let frames = frames.map(|frame| frame.map_err(|never| match never {}));
    match fault {
        Fault::ResetAfter { frames: n } => frames
            .take(n)
            .chain(stream::once(async {
                // Pending once first: the connection flushes the frames before the cut.
                tokio::task::yield_now().await;
                Err(cut())
            }))
            .boxed(),
        Fault::StallAfter { frames: n } => frames.take(n).chain(stream::pending()).boxed(),
        Fault::None
        | Fault::StallBeforeHeaders
        | Fault::HoldBeforeHeaders
        | Fault::IgnoreMaxTokens { .. } => frames.boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(n: u8) -> BoxStream<'static, Result<Bytes, Infallible>> {
        stream::iter((0..n).map(|i| Ok(Bytes::from(vec![i])))).boxed()
    }

    #[tokio::test]
    async fn a_cut_stream_ends_with_an_error_after_its_frames() {
        let got: Vec<_> = apply(frames(5), Fault::ResetAfter { frames: 2 }).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap()[..], [0]);
        assert_eq!(got[1].as_ref().unwrap()[..], [1]);
        assert!(got[2].is_err());
    }

    #[tokio::test]
    async fn a_stalled_stream_sends_its_frames_then_nothing() {
        let mut stalled = apply(frames(5), Fault::StallAfter { frames: 2 });
        assert!(stalled.next().await.is_some());
        assert!(stalled.next().await.is_some());
        assert!(
            futures::FutureExt::now_or_never(stalled.next()).is_none(),
            "nothing after the stall"
        );
    }

    #[test]
    fn an_overrun_ignores_max_tokens() {
        let plan = Plan::new(3, Some(5), &crate::MockConfig::default()).unwrap();
        assert_eq!(overrun(plan, Fault::None), plan);
        let over = overrun(plan, Fault::IgnoreMaxTokens { tokens: 200 });
        assert_eq!(
            (over.completion_tokens, over.finish_reason, over.prompt_tokens),
            (200, "length", 3)
        );
    }

    #[tokio::test]
    async fn without_a_fault_every_frame_passes() {
        let faults = [
            Fault::None,
            Fault::StallBeforeHeaders,
            Fault::HoldBeforeHeaders,
            Fault::IgnoreMaxTokens { tokens: 1 },
        ];
        for fault in faults {
            let got: Vec<_> = apply(frames(4), fault).collect().await;
            assert_eq!(got.len(), 4);
            assert!(got.iter().all(Result::is_ok));
        }
    }
}
