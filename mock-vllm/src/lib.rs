//! A mock of vLLM's OpenAI-compatible server, for end-to-end tests (in-process, through this
//! library) and for `cargo xtask up` (through the `mock-vllm` binary).
//!
//! It answers `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//! `POST /v1/responses`, `GET /v1/models`, `GET /health` and `GET /metrics` with replies shaped
//! exactly like vLLM's (same keys in the same order, vLLM's extra fields, vLLM's error bodies;
//! see `shared/fixtures/`), reads requests as vLLM does (lax booleans, `n`, batched prompts),
//! generates a deterministic multi-byte UTF-8 text, counts tokens as vLLM's Prometheus counters
//! do, and records every request it receives (headers included) and every stream whose caller
//! went away before its end. Told to, it shows faults ([`Fault`]): a stream cut mid-way, a
//! request never answered, a stream that stops sending, requests held until let go, replies
//! that run past `max_tokens`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let state = mock_vllm::MockState::new(mock_vllm::MockConfig {
//!     models: vec!["model-a".into()],
//!     ..mock_vllm::MockConfig::default()
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(mock_vllm::serve(listener, state.clone(), std::future::pending()));
//! // … send requests, then look at `state.seen()`.
//! # Ok(()) }
//! ```

mod chat;
mod chat_stream;
mod completions;
mod completions_stream;
mod config;
mod embeddings;
mod error;
mod fanout;
mod fault;
mod generate;
mod gzip;
mod lax;
mod logprobs;
mod metrics;
mod models;
mod prompt;
mod record;
mod request;
mod responses;
mod responses_stream;
mod sse;
mod state;

use std::future::Future;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use config::MockConfig;
pub use error::ApiError;
pub use fault::Fault;
pub use generate::{completion_text, prompt_tokens_of_text, PIECES};
pub use state::{MockState, SeenRequest};

/// The router of the mock: vLLM's endpoints, FastAPI-style 404/405 bodies for anything else,
/// and the recorder in front of all of it.
pub fn app(state: MockState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/embeddings", post(embeddings::handle))
        .route("/v1/responses", post(responses::handle))
        .route("/v1/models", get(models::handle))
        .route("/health", get(|| async {}))
        .route("/metrics", get(metrics::handle))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // The recorder has already read the whole body (bounded by `record::MAX_BODY`).
        .layer(DefaultBodyLimit::disable())
        // Inside the recorder: a request that is never answered is still recorded.
        .layer(axum::middleware::from_fn_with_state(state.clone(), fault::stall_before_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), record::record))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in flight.
/// Like vLLM's server (uvicorn), it sets `TCP_NODELAY`, so small stream chunks are not held back.
pub async fn serve(
    listener: TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "setting TCP_NODELAY failed");
        }
    });
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
