//! The recorder: a middleware that keeps a copy of every API request before it is answered
//! (`GET /metrics` scrapes are served but not kept).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::{MockState, SeenRequest};

/// Largest body the mock reads (far above the gateway's own 8 MiB limit).
pub(crate) const MAX_BODY: usize = 64 * 1024 * 1024;

/// Reads the whole body, records the request, and passes it on unchanged.
pub(crate) async fn record(
    State(state): State<MockState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(err) => {
            return ApiError::BadRequest(format!("Could not read the request body: {err}"))
                .into_response()
        }
    };
    if parts.uri.path() == "/metrics" {
        // Monitoring scrapes (the control plane's reconciliation) are not API requests.
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    }
    let path =
        parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    tracing::debug!(method = %parts.method, %path, bytes = body.len(), "request");
    state.record(SeenRequest {
        method: parts.method.to_string(),
        path,
        headers,
        body: body.clone(),
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}
