//! The one error type of the HTTP API, answered OpenAI-style:
//! `{"error":{"message","type","param","code"}}`. Internal details are logged, never returned.

use std::borrow::Cow;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field is missing or invalid: `field`, and why.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field (`body` when the JSON as a whole is unreadable).
        field: Cow<'static, str>,
        /// What is wrong with it.
        message: String,
    },
    /// No or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The change would duplicate something that must be unique.
    #[error("{0}")]
    Conflict(String),
    /// A database failure (logged; the client sees only "Internal error.").
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Any other failure inside the control plane (logged; the client sees only
    /// "Internal error.").
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A validation error on `field`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::Invalid { field: field.into(), message: message.into() }
    }

    /// A body that is not the JSON expected. A field with a wrong value is named
    /// (`limits.requestsPerMinute`); an unknown field, a syntax error or a missing content type
    /// is `body`.
    pub fn from_json(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        let detail = text.split_once("target type: ").map_or(text.as_str(), |(_, d)| d);
        let named = detail.split_once(": ").filter(|(path, why)| {
            !why.starts_with("unknown field")
                && !path.is_empty()
                && path.chars().all(|c| c.is_ascii_alphanumeric() || "._[]".contains(c))
        });
        match named {
            Some((path, why)) => Self::invalid(path.to_owned(), why.to_owned()),
            None => Self::invalid("body", text),
        }
    }

    /// A query string that does not parse (a number that is not one, …).
    pub fn from_query(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let detail = text.split_once("query string: ").map_or(text.as_str(), |(_, d)| d);
        let is_name =
            |f: &str| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match detail.split_once(": ").filter(|(f, _)| is_name(f)) {
            Some((field, why)) => Self::invalid(field.to_owned(), why.to_owned()),
            None => Self::invalid("query", detail.to_owned()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                tracing::info!(error = %e, "unique constraint");
                Self::Conflict("a record with these values already exists".to_owned())
            }
            _ => Self::Database(e),
        }
    }
}

/// The error reply (documentation of the shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an error reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Human-readable.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field of a 400, else `null`.
    pub param: Option<String>,
    /// `invalid_field`, `invalid_admin_token`, `not_found`, `conflict`, `internal_error`.
    pub code: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code) = match &self {
            Self::Invalid { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_field")
            }
            Self::Unauthorized => {
                (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_admin_token")
            }
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "invalid_request_error", "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "invalid_request_error", "conflict"),
            Self::Database(e) => {
                tracing::error!(error = %e, "database error");
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error")
            }
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error")
            }
        };
        let message = match &self {
            Self::Unauthorized => {
                "A valid admin token is required: Authorization: Bearer <admin token>.".to_owned()
            }
            Self::Database(_) | Self::Internal(_) => "Internal error.".to_owned(),
            other => other.to_string(),
        };
        let param = match self {
            Self::Invalid { field, .. } => Some(field.into_owned()),
            _ => None,
        };
        let error = ErrorDetail { message, kind: kind.to_owned(), param, code: code.to_owned() };
        (status, Json(ErrorBody { error })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    async fn reply(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body(), 64 * 1024).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_unique_violation_is_a_409_and_other_database_errors_a_bare_500() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::open(&dir.path().join("e.db").display().to_string()).await.unwrap();
        let insert = "INSERT INTO settings (key, value) VALUES ('k', 'secret-value')";
        sqlx::query(insert).execute(&db).await.unwrap();
        let duplicate = sqlx::query(insert).execute(&db).await.unwrap_err();
        let (status, body) = reply(ApiError::from(duplicate)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "conflict");
        assert!(
            !body.to_string().contains("UNIQUE") && !body.to_string().contains("settings"),
            "{body}"
        );

        let missing = sqlx::query("SELECT nothing FROM nowhere").execute(&db).await.unwrap_err();
        let (status, body) = reply(ApiError::from(missing)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["message"], "Internal error.");
        assert!(!body.to_string().contains("nowhere"), "{body}");
    }

    #[tokio::test]
    async fn internal_details_are_not_returned() {
        let (status, body) =
            reply(ApiError::Internal("signing key file /secret unreadable".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["message"], "Internal error.");
    }

    #[tokio::test]
    async fn conflicts_keep_their_message() {
        let (status, body) = reply(ApiError::Conflict("email already registered".into())).await;
        assert_eq!(
            (status, body["error"]["message"].as_str()),
            (StatusCode::CONFLICT, Some("email already registered"))
        );
        assert_eq!(body["error"]["param"], serde_json::Value::Null);
    }
}
