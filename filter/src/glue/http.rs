//! The HTTP context of one request: feeds Envoy's callbacks to the pure
//! [`Exchange`](crate::exchange::Exchange) and carries out its steps.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, HostCalls};
use super::root::SharedKeys;
use crate::config::PluginConfig;
use crate::error::GatewayError;
use crate::exchange::{Exchange, RequestHead, Step};

/// Refusals that a newer key state could turn into an acceptance.
fn may_be_stale(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::NotReady
            | GatewayError::InvalidCredential
            | GatewayError::AppDisabled
            | GatewayError::UserDisabled
            | GatewayError::RevokedToken
            | GatewayError::ModelNotAllowed(_)
    )
}

/// See the module docs.
pub struct GatewayHttp {
    config: Rc<PluginConfig>,
    exchange: Exchange,
    keys: SharedKeys,
    reading_body: bool,
}

impl GatewayHttp {
    pub fn new(config: Rc<PluginConfig>, keys: SharedKeys) -> Self {
        Self { exchange: Exchange::new(config.clone(), host::now_ms()), config, keys, reading_body: false }
    }

    fn authenticate(&mut self, head: &RequestHead) -> Step {
        let keys = self.keys.borrow().keys.clone();
        // One clock read (the exchange's start) serves the exchange and the credential checks.
        let now_secs = i64::try_from(self.exchange.started_ms() / 1000).unwrap_or(i64::MAX);
        self.exchange.on_request_headers(&mut HostCalls, head, keys.as_deref(), now_secs)
    }

    /// Carries out a step of the exchange; returns what Envoy should do with the request.
    fn carry_out(&mut self, step: Step) -> Action {
        match step {
            Step::Continue => Action::Continue,
            Step::ReadBody => {
                self.reading_body = true;
                Action::Pause
            }
            Step::Refuse(error) => {
                self.reply(&error);
                Action::Pause
            }
            Step::Answer(body) => {
                self.record(true);
                host::send_json(200, &body);
                Action::Pause
            }
        }
    }

    fn reply(&mut self, error: &GatewayError) {
        self.reading_body = false;
        self.record(true);
        host::send_json(error.status(), &error.body());
    }

    /// Hands the exchange's record to the access log, once.
    fn record(&mut self, complete: bool) {
        if let Some(record) = self.exchange.finish(host::now_ms(), complete) {
            host::store_record(&record.to_bytes());
            super::metrics::emit(&crate::metrics::observations(&record, &self.config));
        }
    }
}

impl Context for GatewayHttp {}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let head = RequestHead {
            method: host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default(),
            path: host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default(),
            authorization: host::header(MapType::HttpRequestHeaders, "authorization"),
        };
        let mut step = self.authenticate(&head);
        if matches!(&step, Step::Refuse(e) if may_be_stale(e)) && super::root::adopt_shared_state(&self.keys) {
            // Another worker has a newer state (a key created or a user re-enabled a moment ago).
            self.exchange = Exchange::new(self.config.clone(), self.exchange.started_ms());
            step = self.authenticate(&head);
        }
        if step == Step::ReadBody && end_of_stream {
            // A POST without a body: route what there is (an empty body is refused as bad JSON).
            let step = self.exchange.on_request_body(&mut HostCalls, &[]);
            return self.carry_out(step);
        }
        self.carry_out(step)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.reading_body {
            return Action::Continue;
        }
        if let Err(error) = self.exchange.check_body_size(body_size) {
            self.reply(&error);
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.reading_body = false;
        let body = host::buffer(BufferType::HttpRequestBody, body_size);
        let step = self.exchange.on_request_body(&mut HostCalls, &body);
        self.carry_out(step)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let status = host::header(MapType::HttpResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let content_type = host::header(MapType::HttpResponseHeaders, "content-type");
        let content_encoding = host::header(MapType::HttpResponseHeaders, "content-encoding");
        if self.exchange.on_response_headers(status, content_type.as_deref(), content_encoding.as_deref()) {
            // The caller gets the stream without the injected usage: its length changes.
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
        if end_of_stream {
            self.record(true);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.exchange.is_tracked() {
            let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
            // The clock matters only for the first byte.
            let now_ms = if self.exchange.awaits_first_byte() { host::now_ms() } else { 0 };
            if let Some(out) = self.exchange.on_response_body(&chunk, end_of_stream, now_ms) {
                host::replace_buffer(BufferType::HttpResponseBody, body_size, &out);
            }
        }
        if end_of_stream {
            self.record(true);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // The response never reached its end (client gone, upstream reset): record what there is.
        self.record(false);
    }
}
