//! Server-sent events as vLLM writes them (`data: <json>\n\n`, LF only, `data: [DONE]\n\n`
//! last) and how they are cut into body frames: one frame per event, or re-cut at pseudo-random
//! byte positions (`split_seed`), with an optional pause between frames (`token_delay`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::generate::SplitMix64;

/// The content type of vLLM's streams (as recorded).
pub(crate) const CONTENT_TYPE_SSE: &str = "text/event-stream; charset=utf-8";

/// The last event of every stream.
pub(crate) const DONE: &[u8] = b"data: [DONE]\n\n";

/// Largest frame of a split stream; most are far smaller (see [`split`]).
const MAX_SPLIT_FRAME: u64 = 512;

/// One event: `data: <json>\n\n`, the JSON compact and non-ASCII written raw.
pub(crate) fn event<T: Serialize>(value: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing plain structs of strings and numbers into memory cannot fail.
    serde_json::to_writer(&mut out, value).expect("serializable event");
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// A 200 `text/event-stream` response sending `events` (which end with [`DONE`]) as the
/// configuration says: framing from `split_seed`, a pause of `delay` between frames.
pub(crate) fn response(events: Vec<Bytes>, split_seed: Option<u64>, delay: Duration) -> Response {
    let frames = match split_seed {
        Some(seed) => split(&events.concat(), seed),
        None => events,
    };
    let body = futures::stream::iter(frames)
        .enumerate()
        .then(move |(i, frame)| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok::<_, Infallible>(frame)
        });
    ([(CONTENT_TYPE, CONTENT_TYPE_SSE)], Body::from_stream(body)).into_response()
}

/// Re-cuts `body` into frames at positions drawn from `seed`: mostly short frames (1–16
/// bytes, which land inside lines and UTF-8 characters), now and then a long one (up to
/// [`MAX_SPLIT_FRAME`] bytes, which spans several events). Concatenated, they are `body`.
pub(crate) fn split(body: &[u8], seed: u64) -> Vec<Bytes> {
    let mut rng = SplitMix64(seed);
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let limit = if rng.next_u64().is_multiple_of(8) {
            MAX_SPLIT_FRAME
        } else {
            16
        };
        let len = usize::try_from(1 + rng.next_u64() % limit)
            .unwrap_or(1)
            .min(rest.len());
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
    fn split_cuts_inside_characters_and_sometimes_spans_events() {
        let body = "data: {\"x\":\"你好 🚀 é\"}\n\n".repeat(40);
        let frames = split(body.as_bytes(), 7);
        assert!(
            frames.iter().any(|f| std::str::from_utf8(f).is_err()),
            "a cut inside a character"
        );
        assert!(
            frames
                .iter()
                .any(|f| f.windows(2).filter(|w| w == b"\n\n").count() >= 2),
            "a frame with 2 events"
        );
    }
}
