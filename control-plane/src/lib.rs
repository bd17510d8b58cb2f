//! vllm-gateway's control plane: one binary that manages apps and API keys, feeds key state to
//! the Envoy filter, stores Envoy's access log in SQLite — from the gRPC stream and, durably,
//! from Envoy's JSON-lines file ([`file_log`]) — and reconciles it with vLLM's own counters
//! ([`reconcile`]).
//!
//! [`serve`] takes bound [`Listeners`] and a shutdown future (as tokio's mini-redis does), so the
//! binary, the tests and the local runner all start it the same way.

pub mod als;
pub mod api;
pub mod client_addr;
pub mod db;
pub mod file_log;
pub mod jwt;
pub mod ledger;
pub mod log_writer;
pub mod login_throttle;
pub mod metrics;
pub mod password;
pub mod reconcile;
pub mod request_facts;
pub mod retention;
pub mod secret_files;
pub mod secrets;
pub mod store;
pub mod usage_check;

use std::future::Future;
use std::net::SocketAddr;

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

/// The bound sockets the control plane serves on.
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP API: login, the state feed, operations, and `/api/*` unless `admin` is given.
    pub http: TcpListener,
    /// The access-log gRPC sink.
    pub als: TcpListener,
    /// When given, `/api/*` is served here only (and is a 404 on `http`).
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// The HTTP API (`/api/*` included) and the sink.
    pub fn new(http: TcpListener, als: TcpListener) -> Self {
        Self { http, als, admin: None }
    }

    /// The same, with the admin API (`/api/*`) on `admin` only.
    pub fn with_admin(self, admin: Option<TcpListener>) -> Self {
        Self { admin, ..self }
    }
}

/// Serves the HTTP API (on one listener, or split: `/api/*` on the admin listener) and the
/// access-log sink, ingests the file log, scrapes vLLM's counters (the upstreams of `state`)
/// and prunes as `tasks` say, until `shutdown` completes; then drains: the servers stop
/// accepting, every queued access-log row is written and the file ingest ends its transaction
/// before this returns.
pub async fn serve(
    state: api::AppState,
    tasks: impl Into<Tasks>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tasks = tasks.into();
    let (db, metrics) = (state.db().clone(), state.metrics().clone());
    let (writer, writer_task) = log_writer::spawn(db.clone(), metrics.clone());
    let pruner = retention::spawn(db.clone(), tasks.retention, metrics.clone());
    let ledger_pruner = ledger::spawn_pruning(db.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ingest = tasks
        .access_log_file
        .map(|config| file_log::spawn(db.clone(), config, metrics.clone(), stop_rx.clone()));
    let scrapes = reconcile::spawn(state.scraper().clone(), db, metrics, stop_rx.clone());
    let long_polls = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Held state-feed polls would keep the HTTP server from draining for up to 30 s.
        long_polls.stop_long_polls();
        let _ = stop_tx.send(true);
    });
    let sink = als::service(
        writer,
        stop_rx.clone(),
        state.state_token().to_owned(),
        state.metrics().clone(),
    );
    let als_server =
        tonic::transport::Server::builder().add_service(sink).serve_with_incoming_shutdown(
            TcpListenerStream::new(listeners.als),
            stopped(stop_rx.clone()),
        );
    let http_servers = serve_http(state, listeners.http, listeners.admin, stop_rx);
    let (http_result, als_result) = tokio::join!(http_servers, als_server);
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
    ledger_pruner.abort();
    http_result?;
    als_result?;
    Ok(())
}

/// Completes once `stop` turns true.
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The HTTP API on `http` (with each client's address, for login throttling), or split with
/// `/api/*` on `admin`; until `stop` turns true.
async fn serve_http(
    state: api::AppState,
    http: TcpListener,
    admin: Option<TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let Some(admin) = admin else {
        let app = api::app(state).into_make_service_with_connect_info::<SocketAddr>();
        return axum::serve(http, app).with_graceful_shutdown(stopped(stop)).await;
    };
    let public = api::public_app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let admin_app = api::admin_app(state).into_make_service_with_connect_info::<SocketAddr>();
    let public = axum::serve(http, public).with_graceful_shutdown(stopped(stop.clone()));
    let admin = axum::serve(admin, admin_app).with_graceful_shutdown(stopped(stop));
    let (public, admin) = tokio::join!(public, admin);
    public.and(admin)
}
