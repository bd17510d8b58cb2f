//! A proxy between Envoy and the control plane's HTTP API, for fault tests: it forwards every
//! request as it is (the state feed, its long polls and lookups, the admin API) until it is
//! told to garble some paths; then it still forwards them, and replaces the body of the control
//! plane's answer with a malformed one (status and headers kept), so the filter gets what looks
//! like a state and does not parse.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Largest request body forwarded (the admin API's bodies are small).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The body of a garbled answer: JSON cut off mid-way.
pub const GARBLED_BODY: &str = r#"{"epoch":"garbled","version":9,"keys":[{"keyHash":"#;

/// A running proxy; it stops when dropped.
pub struct ControlPlaneProxy {
    /// Where it listens (Envoy's `control_plane` cluster points here).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    client: reqwest::Client,
    /// Path prefixes whose answers are garbled now.
    garbled: Mutex<Vec<String>>,
    /// Answers garbled so far.
    garbled_answers: AtomicU64,
}

impl ControlPlaneProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            client: reqwest::Client::new(),
            garbled: Mutex::new(Vec::new()),
            garbled_answers: AtomicU64::new(0),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// From now on, the answers to requests whose path starts with one of `prefixes` (answers
    /// still on their way included) carry [`GARBLED_BODY`]; an empty list garbles nothing.
    pub fn garble(&self, prefixes: &[&str]) {
        *self.shared.garbled.lock().unwrap_or_else(|p| p.into_inner()) =
            prefixes.iter().map(|p| (*p).to_owned()).collect();
    }

    /// How many answers have been garbled so far.
    pub fn garbled_answers(&self) -> u64 {
        self.shared.garbled_answers.load(Ordering::Relaxed)
    }
}

impl Drop for ControlPlaneProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn garbles(&self, path: &str) -> bool {
        self.garbled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|prefix| path.starts_with(prefix.as_str()))
    }
}

/// Forwards one request and answers with the control plane's answer (garbled if asked); 502
/// when the control plane cannot be reached.
async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path_and_query}", shared.target);
    let sent = shared
        .client
        .request(parts.method, url)
        .headers(end_to_end(&parts.headers))
        .body(body)
        .send()
        .await;
    let Ok(answer) = sent else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let (status, headers) = (answer.status(), end_to_end(answer.headers()));
    let Ok(bytes) = answer.bytes().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let body = if shared.garbles(parts.uri.path()) {
        shared.garbled_answers.fetch_add(1, Ordering::Relaxed);
        Body::from(GARBLED_BODY)
    } else {
        Body::from(bytes)
    };
    (status, headers, body).into_response()
}

/// The headers worth passing on: all but the hop-by-hop ones and the length (set again).
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in
        [header::HOST, header::CONTENT_LENGTH, header::CONNECTION, header::TRANSFER_ENCODING]
    {
        out.remove(name);
    }
    out
}
