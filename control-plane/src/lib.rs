//! vllm-gateway's control plane: one binary that manages apps and API keys, feeds key state to
//! the Envoy filter, stores Envoy's access log in SQLite — from the gRPC stream and, durably,
//! from Envoy's JSON-lines file ([`file_log`]) — and reconciles it with vLLM's own counters
//! ([`reconcile`]).
//!
//! [`serve`] takes bound listeners and a shutdown future (as tokio's mini-redis does), so the
//! binary, the tests and the local runner all start it the same way.

pub mod als;
pub mod api;
pub mod db;
pub mod file_log;
pub mod jwt;
pub mod log_writer;
pub mod metrics;
pub mod password;
pub mod reconcile;
pub mod request_facts;
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

/// The background work beside the two servers.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    /// How much of the access log (and of vLLM's samples) to keep.
    pub retention: Retention,
    /// The durable file log to ingest, if any.
    pub access_log_file: Option<file_log::Config>,
}

impl From<Retention> for Tasks {
    fn from(retention: Retention) -> Self {
        Self { retention, access_log_file: None }
    }
}

/// Serves the HTTP API and the access-log sink, ingests the file log, scrapes vLLM's counters
/// (the upstreams of `state`) and prunes as `tasks` say, until `shutdown` completes; then
/// drains: the servers stop accepting, every queued access-log row is written and the file
/// ingest ends its transaction before this returns.
pub async fn serve(
    state: api::AppState,
    tasks: impl Into<Tasks>,
    http: TcpListener,
    als: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tasks = tasks.into();
    let (db, metrics) = (state.db().clone(), state.metrics().clone());
    let (writer, writer_task) = log_writer::spawn(db.clone(), metrics.clone());
    let pruner = retention::spawn(db.clone(), tasks.retention, metrics.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ingest = tasks.access_log_file.map(|config| file_log::spawn(db.clone(), config, metrics.clone(), stop_rx.clone()));
    let scrapes = reconcile::spawn(state.scraper().clone(), db, metrics, stop_rx.clone());
    let long_polls = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Held state-feed polls would keep the HTTP server from draining for up to 30 s.
        long_polls.stop_long_polls();
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
    if let Some(ingest) = ingest {
        let _ = ingest.await;
    }
    // Scrapes and pruning are safe to stop anywhere.
    if let Some(scrapes) = scrapes {
        scrapes.abort();
    }
    pruner.abort();
    http_result?;
    als_result?;
    Ok(())
}
