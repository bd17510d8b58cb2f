//! The access-log sink: Envoy's `envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`
//! over gRPC. Each HTTP entry becomes an [`AccessLog`](crate::store::logs::AccessLog) row
//! (see [`entry`]) queued to the batching writer.

pub mod entry;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{StreamAccessLogsMessage, StreamAccessLogsResponse};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::log_writer::LogSender;

/// The gRPC service.
pub struct Sink {
    writer: LogSender,
    stopping: watch::Receiver<bool>,
}

/// The service ready to add to a tonic server. Envoy never ends its stream, so each stream also
/// ends when `stopping` turns true: that is what lets a graceful shutdown finish.
pub fn service(writer: LogSender, stopping: watch::Receiver<bool>) -> AccessLogServiceServer<Sink> {
    AccessLogServiceServer::new(Sink { writer, stopping })
}

#[tonic::async_trait]
impl AccessLogService for Sink {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut stopping = self.stopping.clone();
        loop {
            let message = tokio::select! {
                message = stream.message() => message?,
                _ = stopping.wait_for(|stop| *stop) => None,
            };
            let Some(message) = message else { break };
            let Some(LogEntries::HttpLogs(http)) = message.log_entries else {
                continue;
            };
            for entry in http.log_entry {
                let row = entry::to_row(&entry);
                if self.writer.send(row).await.is_err() {
                    return Err(Status::unavailable("the control plane is shutting down"));
                }
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}
