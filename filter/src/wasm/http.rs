//! The HTTP context of one request: reads each proxy-wasm callback's input from the host and
//! hands it to the core's [`RequestContext`], which does the rest through [`WasmStream`].

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};

use super::host::{self, WasmStream};
use crate::config::PluginConfig;
use crate::exchange::RequestHead;
use crate::request::context::ResponseHead;
use crate::request::{Flow, RequestContext, SharedBudget, SharedLimits, SharedWorker};

/// See the module docs.
pub struct GatewayHttp {
    context: RequestContext<WasmStream>,
}

impl GatewayHttp {
    pub fn new(
        id: u32,
        config: Rc<PluginConfig>,
        worker: SharedWorker<WasmStream>,
        budget: SharedBudget,
        limits: SharedLimits<WasmStream>,
    ) -> Self {
        Self { context: RequestContext::new(WasmStream::new(id), config, worker, budget, limits) }
    }
}

/// What proxy-wasm is to do.
fn action(flow: Flow) -> Action {
    match flow {
        Flow::Continue => Action::Continue,
        Flow::Pause => Action::Pause,
    }
}

impl Context for GatewayHttp {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.context.on_call_answer(token, &host::call_answer(body_size));
    }
}

impl HttpContext for GatewayHttp {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let head = RequestHead {
            method: host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default(),
            path: host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default(),
            authorization: host::header(MapType::HttpRequestHeaders, "authorization"),
        };
        action(self.context.on_request_headers(head, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.context.on_request_body(body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        action(self.context.on_request_trailers())
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let head = ResponseHead {
            status: host::header(MapType::HttpResponseHeaders, ":status")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            content_type: host::header(MapType::HttpResponseHeaders, "content-type"),
            content_encoding: host::header(MapType::HttpResponseHeaders, "content-encoding"),
        };
        action(self.context.on_response_headers(&head, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.context.on_response_body(body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        self.context.on_log();
    }
}
