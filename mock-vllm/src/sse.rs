//! Server-sent events as vLLM writes them (`data: <json>\n\n`, LF only, `data: [DONE]\n\n`
//! last; the Responses API writes `event: <type>\ndata: <json>\n\n` and no `[DONE]`) and how
//! they are cut into body frames: one frame per event, or re-cut at pseudo-random byte positions
//! (`split_seed`), with an optional pause between frames (`token_delay`), cut or stalled by the
//! state's [`crate::Fault`]. The tokens an event carries are counted as generated when its
//! first byte is handed to the connection; a stream whose caller goes away before its end is
//! noted.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::Serialize;

use crate::fault;
use crate::generate::SplitMix64;
use crate::metrics::Meter;
use crate::state::MockState;

/// The content type of vLLM's streams (as recorded).
pub(crate) const CONTENT_TYPE_SSE: &str = "text/event-stream; charset=utf-8";

/// The last event of every stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// Largest frame of a split stream; most are far smaller (see [`split`]).
const MAX_SPLIT_FRAME: u64 = 512;

/// Bytes of a stream and the generated tokens they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    pub bytes: Bytes,
    pub tokens: u32,
}

impl Event {
    /// An event that carries no generated token (role, finish, usage, lifecycle, `[DONE]`).
    pub(crate) fn data(bytes: Bytes) -> Self {
        Self { bytes, tokens: 0 }
    }

    /// An event that carries one generated token.
    pub(crate) fn token(bytes: Bytes) -> Self {
        Self { bytes, tokens: 1 }
    }

    /// `data: [DONE]`.
    pub(crate) fn done() -> Self {
        Self::data(Bytes::from_static(DONE))
    }
}

/// One event: `data: <json>\n\n`, the JSON compact and non-ASCII written raw.
pub(crate) fn event<T: Serialize>(value: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing plain structs of strings and numbers into memory cannot fail.
    serde_json::to_writer(&mut out, value).expect("serializable event");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// One named event, as vLLM's Responses API writes them (`_convert_stream_to_sse_events` in
/// `entrypoints/openai/responses/api_router.py`): `event: <type>\ndata: <json>\n\n`.
pub(crate) fn named_event<T: Serialize>(kind: &str, value: &T) -> Bytes {
    let mut out = format!("event: {kind}\ndata: ").into_bytes();
    serde_json::to_writer(&mut out, value).expect("serializable event");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A 200 `text/event-stream` response sending `events` as the state says: framing from
/// `split_seed`, a pause of `token_delay` between frames, then cut or stalled as the fault
/// says. Each frame's tokens are added to `meter` when the frame is produced, so a client that
/// goes away (or a cut) stops the count where it left; a client that goes away is also noted
/// ([`MockState::abandoned_streams`]).
pub(crate) fn reply(state: &MockState, events: Vec<Event>, meter: Meter) -> Response {
    let frames = match state.config().split_seed {
        Some(seed) => split_events(&events, seed),
        None => events,
    };
    let delay = state.token_delay();
    let sent = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&sent);
    let body = futures::stream::iter(frames).enumerate().then(move |(i, frame)| {
        let (meter, counted) = (meter.clone(), Arc::clone(&counted));
        async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            meter.add_generation(u64::from(frame.tokens));
            counted.fetch_add(frame.tokens, Ordering::Relaxed);
            Ok::<_, Infallible>(frame.bytes)
        }
    });
    let body = Watched {
        frames: fault::apply(body.boxed(), state.fault()),
        ended: false,
        sent,
        state: state.clone(),
    };
    ([(CONTENT_TYPE, CONTENT_TYPE_SSE)], Body::from_stream(body)).into_response()
}

/// A streamed body that notes, when it is dropped before its end, that its caller went away.
struct Watched {
    frames: BoxStream<'static, Result<Bytes, std::io::Error>>,
    /// The body ended (or the mock cut it itself).
    ended: bool,
    /// Tokens sent so far.
    sent: Arc<AtomicU32>,
    state: MockState,
}

impl Stream for Watched {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.frames.poll_next_unpin(cx);
        if matches!(next, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        next
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.ended {
            self.state.record_abandoned(self.sent.load(Ordering::Relaxed));
        }
    }
}

/// [`split`] for events: each event's tokens go with the frame that holds its first byte.
fn split_events(events: &[Event], seed: u64) -> Vec<Event> {
    let body: Vec<u8> = events.iter().flat_map(|e| e.bytes.iter().copied()).collect();
    let mut starts = Vec::with_capacity(events.len());
    let mut offset = 0;
    for event in events {
        starts.push((offset, event.tokens));
        offset += event.bytes.len();
    }
    let mut frame_start = 0;
    let mut next = starts.iter().peekable();
    split(&body, seed)
        .into_iter()
        .map(|bytes| {
            let end = frame_start + bytes.len();
            let mut tokens = 0;
            while let Some((_, t)) = next.next_if(|(start, _)| *start < end) {
                tokens += t;
            }
            frame_start = end;
            Event { bytes, tokens }
        })
        .collect()
}

/// Re-cuts `body` into frames at positions drawn from `seed`: mostly short frames (1–16
/// bytes, which land inside lines and UTF-8 characters), now and then a long one (up to
/// [`MAX_SPLIT_FRAME`] bytes, which spans several events). Concatenated, they are `body`.
pub(crate) fn split(body: &[u8], seed: u64) -> Vec<Bytes> {
    let mut rng = SplitMix64(seed);
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let limit = if rng.next_u64().is_multiple_of(8) { MAX_SPLIT_FRAME } else { 16 };
        let len = usize::try_from(1 + rng.next_u64() % limit).unwrap_or(1).min(rest.len());
        let (frame, tail) = rest.split_at(len);
        frames.push(Bytes::copy_from_slice(frame));
        rest = tail;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_compact_lf_framed_and_raw_utf8() {
        let e = event(&serde_json::json!({"content": "你好 🚀\n"}));
        assert_eq!(&e[..], "data: {\"content\":\"你好 🚀\\n\"}\n\n".as_bytes());
    }

    #[test]
    fn split_keeps_every_byte_and_depends_only_on_the_seed() {
        let body = "data: {\"x\":\"你好 🚀 é\"}\n\n".repeat(40);
        for seed in 0..32 {
            let frames = split(body.as_bytes(), seed);
            assert_eq!(frames.concat(), body.as_bytes());
            assert!(frames.iter().all(|f| !f.is_empty()));
            assert_eq!(frames, split(body.as_bytes(), seed));
        }
        assert_ne!(split(body.as_bytes(), 1), split(body.as_bytes(), 2));
    }

    #[test]
    fn split_events_keep_every_token() {
        let events: Vec<Event> = (0..30)
            .map(|i| {
                let bytes = event(&serde_json::json!({"content": "你好 🚀", "i": i}));
                if i % 3 == 0 {
                    Event::data(bytes)
                } else {
                    Event::token(bytes)
                }
            })
            .collect();
        for seed in 0..16 {
            let frames = split_events(&events, seed);
            assert_eq!(frames.iter().map(|f| f.tokens).sum::<u32>(), 20);
            let body: Vec<u8> = frames.iter().flat_map(|f| f.bytes.iter().copied()).collect();
            assert_eq!(
                body,
                events.iter().flat_map(|e| e.bytes.iter().copied()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn named_events_have_an_event_line() {
        let e = named_event("response.created", &serde_json::json!({"a": "é"}));
        assert_eq!(&e[..], "event: response.created\ndata: {\"a\":\"é\"}\n\n".as_bytes());
    }

    #[test]
    fn split_cuts_inside_characters_and_sometimes_spans_events() {
        let body = "data: {\"x\":\"你好 🚀 é\"}\n\n".repeat(40);
        let frames = split(body.as_bytes(), 7);
        assert!(frames.iter().any(|f| std::str::from_utf8(f).is_err()), "a cut inside a character");
        assert!(
            frames.iter().any(|f| f.windows(2).filter(|w| w == b"\n\n").count() >= 2),
            "a frame with 2 events"
        );
    }
}
