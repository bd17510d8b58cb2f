//! The sink as a gRPC service of its own, so that it decodes the stream's messages as
//! [`LogsMessage`] (only the fields a row is made from) rather than as `envoy-types`' full
//! messages, which its generated server would. The same service name, method and codec
//! (tonic's prost codec, with a 4 MiB message limit); any other method is unimplemented.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsResponse;
use tonic::body::Body as ResponseBody;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{ClientStreamingService, Grpc, NamedService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use vllm_gateway_filter::record::ACCESS_LOG_BATCH_BYTES;

use super::wire::LogsMessage;
use super::Sink;

/// The service's full name.
pub const SERVICE_NAME: &str = "envoy.service.accesslog.v3.AccessLogService";
/// The largest message the sink takes in (tonic's default, said here so that it is checked
/// against the batches the rendered Envoy sends: a batch is at most
/// [`ACCESS_LOG_BATCH_BYTES`] plus one entry, whose headers the rendered configuration caps
/// at 64 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
const _: () = assert!(ACCESS_LOG_BATCH_BYTES * 8 <= MAX_MESSAGE_BYTES as u64);

/// The path of its one method.
const STREAM_ACCESS_LOGS: &str = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs";

/// The access-log service, ready to add to a tonic server.
#[derive(Clone)]
pub struct AccessLogServer(Arc<Sink>);

impl AccessLogServer {
    pub(super) fn new(sink: Sink) -> Self {
        Self(Arc::new(sink))
    }
}

impl NamedService for AccessLogServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AccessLogServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != STREAM_ACCESS_LOGS {
            let path = request.uri().path().to_owned();
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no method {path}")).into_http())
            });
        }
        let method = StreamMethod(self.0.clone());
        Box::pin(async move {
            let codec = ProstCodec::<StreamAccessLogsResponse, LogsMessage>::default();
            let mut grpc = Grpc::new(codec).max_decoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.client_streaming(method, request).await)
        })
    }
}

/// `StreamAccessLogs`, served by the sink.
struct StreamMethod(Arc<Sink>);

impl ClientStreamingService<LogsMessage> for StreamMethod {
    type Response = StreamAccessLogsResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Streaming<LogsMessage>>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move { sink.stream_access_logs(request).await })
    }
}
