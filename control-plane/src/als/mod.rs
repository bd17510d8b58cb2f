//! The access-log sink: Envoy's `envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`
//! over gRPC ([`grpc`]), its messages read as [`wire`] types. Each HTTP entry becomes an
//! [`AccessLog`](crate::store::logs::AccessLog) row (see [`entry`]) queued to the batching
//! writer.
//!
//! Only Envoy may write: a stream must carry the state feed's shared secret as gRPC metadata
//! `authorization: Bearer <state token>` (Envoy's `grpc_service.initial_metadata`), compared in
//! constant time. Any other stream is refused with `UNAUTHENTICATED` before a message is read,
//! so it can neither write usage nor take a request id before Envoy's own entry.

pub mod entry;
pub mod grpc;
pub mod wire;

use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsResponse;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use self::grpc::AccessLogServer;
use self::wire::LogsMessage;
use crate::log_writer::LogSender;
use crate::metrics::Metrics;
use crate::secrets;

/// The metadata key of the shared secret (gRPC metadata keys are lowercase).
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// The gRPC service.
pub struct Sink {
    writer: LogSender,
    stopping: watch::Receiver<bool>,
    state_token: String,
    metrics: Arc<Metrics>,
}

/// The service ready to add to a tonic server, accepting streams that carry `state_token`
/// (refusals are counted in `metrics`). Envoy never ends its stream, so each stream also ends
/// when `stopping` turns true: that is what lets a graceful shutdown finish.
pub fn service(
    writer: LogSender,
    stopping: watch::Receiver<bool>,
    state_token: String,
    metrics: Arc<Metrics>,
) -> AccessLogServer {
    AccessLogServer::new(Sink { writer, stopping, state_token, metrics })
}

impl Sink {
    /// `Ok` when the stream's metadata carries the state token; else counted and refused.
    fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let authorization = metadata.get(AUTHORIZATION_METADATA).and_then(|v| v.to_str().ok());
        if secrets::bearer_matches(authorization, &self.state_token) {
            return Ok(());
        }
        self.metrics.als_streams_refused.fetch_add(1, Relaxed);
        tracing::warn!(
            "access-log stream refused: no or a wrong state token in its authorization metadata"
        );
        Err(Status::unauthenticated("send the state token: authorization: Bearer <state token>"))
    }

    /// One stream, until Envoy ends it or the control plane stops.
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<LogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        self.authenticate(request.metadata())?;
        let mut stream = request.into_inner();
        let mut stopping = self.stopping.clone();
        loop {
            let message = tokio::select! {
                message = stream.message() => message?,
                _ = stopping.wait_for(|stop| *stop) => None,
            };
            let Some(message) = message else { break };
            let Some(http) = message.http_logs else {
                continue;
            };
            for entry in http.log_entry {
                let row = entry::to_row(entry);
                if self.writer.send(row).await.is_err() {
                    return Err(Status::unavailable("the control plane is shutting down"));
                }
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
