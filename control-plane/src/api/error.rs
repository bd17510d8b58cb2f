//! The one error type of the HTTP API. Internal details are logged, never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or invalid: `field`, and why.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A database failure.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

impl ApiError {
    /// A validation error on `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code, param) = match &self {
            Self::Invalid { field, .. } => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_field", Some(*field)),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_admin_token", None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "invalid_request_error", "not_found", None),
            Self::Database(e) => {
                tracing::error!(error = %e, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error", None)
            }
        };
        let message = match &self {
            Self::Unauthorized => "A valid admin token is required: Authorization: Bearer <admin token>.".to_owned(),
            Self::Database(_) => "Internal error.".to_owned(),
            other => other.to_string(),
        };
        let body = serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
        (status, Json(body)).into_response()
    }
}
