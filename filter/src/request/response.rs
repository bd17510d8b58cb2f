//! The response side of one request: its headers and body through the exchange (counting,
//! rewriting, cutting off a stream past its grant), and its end: the record for the access log,
//! the metrics, and the grant settled.

use super::{Request, StreamHost};
use crate::exchange::Ending;
use crate::limits;

impl<H: StreamHost> Request<H> {
    /// Response headers; whether the body will be rewritten (its length changes).
    pub fn on_response_headers(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        end_of_stream: bool,
    ) -> bool {
        let rewritten = self.exchange.on_response_headers(status, content_type, content_encoding);
        for (name, value) in self.exchange.rate_headers() {
            self.host.set_response_header(name, value);
        }
        if end_of_stream {
            self.record(Ending::Complete);
        }
        rewritten
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) {
        if self.exchange.is_tracked() {
            let chunk = self.host.response_body(body_size);
            // The clock matters only for the first byte.
            let now_ms = if self.exchange.awaits_first_byte() { self.host.now_ms() } else { 0 };
            let mut out = self.exchange.on_response_body(&chunk, end_of_stream, now_ms);
            if let Some(extra) = self.exchange.grant_overrun() {
                self.correct_prompt(extra, out.as_mut());
            }
            if let Some(out) = out {
                self.host.replace_response_body(body_size, &out);
            }
            if !end_of_stream && self.exchange.take_reset() {
                // The stream passed its grant and the caller has its error event: vLLM stops.
                self.record(Ending::Cut);
                self.host.reset_response();
                return;
            }
        }
        if end_of_stream {
            self.record(Ending::Complete);
        }
    }

    /// A stream's real prompt is `extra` tokens more than its grant was made for: the grant takes
    /// them, or the stream is cut off here (`out`: the events passed on now).
    fn correct_prompt(&mut self, extra: u64, out: Option<&mut Vec<u8>>) {
        let extended = match (self.limits.try_borrow_mut(), self.exchange.grant_mut()) {
            (Ok(mut glue), Some(grant)) => {
                let now_ms = self.host.now_ms();
                limits::extend(self.host.shared(), &mut glue.float, grant, extra, now_ms)
            }
            _ => false,
        };
        if extended {
            self.exchange.prompt_corrected(extra);
        } else if let Some(out) = out {
            self.exchange.cut_off(out);
        }
    }

    /// The request is over: the response never reached its end (the client gone, as Envoy's
    /// flags say, or the upstream reset or stalled) unless it was recorded already; a request
    /// still waiting for a lookup is not resumed.
    pub fn on_log(&mut self) {
        self.waiting = false;
        if std::mem::take(&mut self.leasing) {
            // The answer would come to this context, which is going: what it grants is lost to
            // this Envoy (see the README's bound); concurrency holdings meet again at the next
            // renewal.
            if let Ok(mut glue) = self.limits.try_borrow_mut() {
                let me = self.me.clone();
                glue.pending.retain(|p| !p.waiter.is(&me));
            }
        }
        self.release();
        if !self.exchange.is_finished() {
            self.record(Ending::unfinished(self.host.response_flags()));
        }
    }

    /// Hands the exchange's record to the access log, once.
    pub(super) fn record(&mut self, ending: Ending) {
        let now_ms = self.host.now_ms();
        if let Some(record) = self.exchange.finish(now_ms, ending) {
            self.host.store_record(&record.to_bytes());
            let error = self.exchange.error();
            self.host.emit(&crate::metrics::observations(&record, error, &self.config));
        }
        let Ok(mut glue) = self.limits.try_borrow_mut() else {
            log::error!("the limits of a request are in use: its grant is not settled");
            return;
        };
        if let Some((grant, used, failed)) = self.exchange.take_grant() {
            let overdrawn =
                limits::settle(self.host.shared(), &mut glue.float, &grant, used, failed, now_ms);
            glue.note_overdrawn(overdrawn);
        }
    }
}
