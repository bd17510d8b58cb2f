//! The response side of an exchange: what the upstream's headers decide (how the reply is
//! counted, whether the caller gets it rewritten), each piece of the body counted (and rewritten)
//! as it passes, and the record the exchange ends with.

use super::{Counting, Endpoint, Exchange};
use crate::inject::{StreamRewrite, UsageAsk};
use crate::record::UsageRecord;
use crate::usage::{Accounting, PromptLayout, StreamAccounting};

impl Exchange {
    /// Response headers from the upstream (or a local reply). Returns true when the body will be
    /// rewritten for the caller (the glue then drops `content-length`).
    /// A reply with a `content-encoding` other than `identity` is not read (its bytes are not
    /// text): it counts as unknown, and passes unchanged.
    pub fn on_response_headers(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> bool {
        self.record.status = status;
        let is_sse = content_type.is_some_and(|t| t.trim_start().starts_with("text/event-stream"));
        let encoded = content_encoding
            .is_some_and(|e| e.split(',').any(|e| !e.trim().eq_ignore_ascii_case("identity")));
        let cut_may_come = self.cut_may_come(is_sse);
        let rewrite = match self.injected {
            _ if encoded || self.finished || !is_sse => None,
            Some(ask) if ask.needs_rewrite() || cut_may_come => Some(StreamRewrite::new(ask)),
            // Passed unchanged, but whole events at a time: the stream may be cut between two.
            None if cut_may_come => {
                Some(StreamRewrite::new(UsageAsk { include_usage: true, continuous: true }))
            }
            _ => None,
        };
        let rewrites = rewrite.is_some();
        self.counting = Some(match (encoded, is_sse) {
            (true, _) => Counting::Opaque,
            (false, true) => {
                let counting = StreamAccounting::new(self.prompt_layout());
                Counting::Stream(Box::new(match rewrite {
                    Some(rewrite) => counting.rewriting(rewrite),
                    None => counting,
                }))
            }
            (false, false) => Counting::Body(Box::default()),
        });
        rewrites
    }

    /// How the stream's choices map to prompts, for counting a stream cut off half-way.
    fn prompt_layout(&self) -> PromptLayout {
        match self.endpoint {
            Endpoint::Chat => PromptLayout::Single,
            Endpoint::Responses | Endpoint::Embeddings | Endpoint::Other => {
                PromptLayout::Batched { n: self.n }
            }
        }
    }

    /// Whether the next response bytes are the first (the only ones whose time is recorded).
    pub fn awaits_first_byte(&self) -> bool {
        self.tracked && !self.finished && self.record.ttft_ms.is_none()
    }

    /// A piece of the response body. `now_ms` is read only while [`Self::awaits_first_byte`].
    /// Returns the bytes to send instead of `chunk` when the
    /// stream is rewritten for the caller; `None` means pass `chunk` on unchanged.
    pub fn on_response_body(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        now_ms: u64,
    ) -> Option<Vec<u8>> {
        if !self.tracked || self.finished {
            return None;
        }
        if self.record.ttft_ms.is_none() && !chunk.is_empty() {
            self.record.ttft_ms = Some(now_ms.saturating_sub(self.started_ms));
        }
        let (rewritten, held) = match &mut self.counting {
            Some(Counting::Stream(acc)) if acc.rewrites() => {
                let rewritten = acc.feed(chunk);
                (rewritten, if end_of_stream { acc.finish_rewrite() } else { Vec::new() })
            }
            Some(Counting::Stream(acc)) => {
                acc.feed(chunk);
                return None;
            }
            Some(Counting::Body(acc)) => {
                acc.feed(chunk);
                return None;
            }
            Some(Counting::Opaque) | None => return None,
        };
        if rewritten.is_none() && held.is_empty() && !self.grant_watches() {
            return None;
        }
        let mut out = rewritten.unwrap_or_else(|| chunk.to_vec());
        out.extend(held);
        if !self.check_grant(&mut out) {
            out.clear();
        }
        // Most events pass as they came: the host then keeps the chunk it has (no copy back).
        (out != chunk).then_some(out)
    }

    /// Whether the exchange has given its record already (or has none to give).
    pub fn is_finished(&self) -> bool {
        !self.tracked || self.finished
    }

    /// Ends the exchange and returns its record, once; `None` for untracked or already-finished
    /// exchanges. When the response did not reach its end (the client went away, the upstream
    /// reset or stalled) what was read until then still counts — a stream's usage so far, a
    /// body's `usage` if it had been read whole — and the record says whether the client left.
    pub fn finish(&mut self, now_ms: u64, ending: Ending) -> Option<UsageRecord> {
        if !self.tracked || self.finished {
            return None;
        }
        self.finished = true;
        let accounting = match self.counting.take() {
            Some(Counting::Stream(mut acc)) => acc.finish(),
            Some(Counting::Body(mut acc)) => acc.finish(),
            Some(Counting::Opaque) | None => Accounting::default(),
        };
        self.record.usage = accounting.usage;
        self.record.usage_source = accounting.source;
        self.record.upstream_error = accounting.error.map(|e| e.kind);
        self.record.client_disconnected = ending == Ending::ClientGone;
        self.record.duration_ms = Some(now_ms.saturating_sub(self.started_ms));
        Some(self.record.clone())
    }
}

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The response reached its end.
    Complete,
    /// The client went away before it did.
    ClientGone,
    /// It was cut short otherwise: the upstream reset or stalled, a timeout.
    Cut,
}

/// Envoy's response flag `DC` (downstream connection termination) in the `response.flags`
/// property's bits.
pub const DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14;

impl Ending {
    /// How a request Envoy logs before its response reached its end ended, from Envoy's
    /// response flags: the client's doing only when Envoy says the client's connection ended.
    pub fn unfinished(response_flags: u64) -> Self {
        if response_flags & DOWNSTREAM_CONNECTION_TERMINATION != 0 {
            Ending::ClientGone
        } else {
            Ending::Cut
        }
    }
}
