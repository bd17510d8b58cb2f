//! vllm-gateway's control plane: one binary that manages apps and API keys, feeds key state to
//! the Envoy filter, and stores Envoy's gRPC access-log stream in SQLite.
//!
//! [`serve`] takes bound listeners and a shutdown future (as tokio's mini-redis does), so the
//! binary, the tests and the local runner all start it the same way.

pub mod als;
pub mod api;
pub mod db;
pub mod jwt;
pub mod log_writer;
pub mod metrics;
pub mod password;
pub mod retention;
pub mod secrets;
pub mod store;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use db::Db;
pub use retention::Retention;

/// Why the control plane stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The HTTP API failed.
    #[error("HTTP server: {0}")]
    Http(#[from] std::io::Error),
    /// The access-log gRPC server failed.
    #[error("access-log gRPC server: {0}")]
    Als(#[from] tonic::transport::Error),
}

/// Serves the HTTP API and the access-log sink, and prunes the access log as `retention` says,
/// until `shutdown` completes; then drains: the servers stop accepting, and every queued
/// access-log row is written before this returns.
pub async fn serve(
    state: api::AppState,
    retention: Retention,
    http: TcpListener,
    als: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (writer, writer_task) = log_writer::spawn(state.db().clone(), state.metrics().clone());
    let pruner = retention::spawn(state.db().clone(), retention, state.metrics().clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http_server = axum::serve(http, api::app(state))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let als_server = tonic::transport::Server::builder()
        .add_service(als::service(writer, stop_rx.clone()))
        .serve_with_incoming_shutdown(TcpListenerStream::new(als), stopped(stop_rx));
    let (http_result, als_result) = tokio::join!(http_server, als_server);
    // Both servers are gone, so every sender is dropped: the writer drains and ends.
    let _ = writer_task.await;
    pruner.abort();
    http_result?;
    als_result?;
    Ok(())
}
