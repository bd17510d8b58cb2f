//! Errors as vLLM (≥ 0.10.1) sends them:
//! `{"error":{"message":…,"type":"BadRequestError","param":null,"code":400}}`, and FastAPI's
//! `{"detail":…}` for unknown routes and methods.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Everything the mock refuses, each with vLLM's status and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400 `BadRequestError`: bad JSON, a missing field, `stream_options` without `stream`, a
    /// prompt or `max_tokens` over the context window.
    #[error("{0}")]
    BadRequest(String),
    /// 404 `NotFoundError`: a model the server does not serve.
    #[error("The model `{0}` does not exist.")]
    ModelNotFound(String),
    /// 404 from FastAPI: no such route.
    #[error("Not Found")]
    RouteNotFound,
    /// 405 from FastAPI: the route exists, the method does not.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
}

impl ApiError {
    /// vLLM's refusal of a prompt that does not fit the context window.
    pub(crate) fn prompt_too_long(max_model_len: u32, prompt_tokens: u32) -> Self {
        Self::BadRequest(format!(
            "This model's maximum context length is {max_model_len} tokens. However, your request has \
             {prompt_tokens} input tokens. Please reduce the length of the input messages."
        ))
    }

    /// vLLM's refusal of a `max_tokens` that does not fit beside the prompt.
    pub(crate) fn max_tokens_too_large(
        max_tokens: u32,
        max_model_len: u32,
        prompt_tokens: u32,
    ) -> Self {
        Self::BadRequest(format!(
            "'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum \
             context length is {max_model_len} tokens and your request has {prompt_tokens} input tokens \
             ({max_tokens} > {max_model_len} - {prompt_tokens})."
        ))
    }

    /// The HTTP status it is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::ModelNotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// `{"error":{…}}`, the body of vLLM's own errors.
#[derive(Serialize)]
struct ErrorBody {
    error: ErrorInfo,
}

#[derive(Serialize)]
struct ErrorInfo {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<String>,
    code: u16,
}

/// `{"detail":…}`, FastAPI's body for routing errors.
#[derive(Serialize)]
struct Detail {
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = match self {
            Self::BadRequest(_) => "BadRequestError",
            Self::ModelNotFound(_) => "NotFoundError",
            Self::RouteNotFound | Self::MethodNotAllowed => {
                return (status, Json(Detail { detail: self.to_string() })).into_response();
            }
        };
        let error =
            ErrorInfo { message: self.to_string(), kind, param: None, code: status.as_u16() };
        (status, Json(ErrorBody { error })).into_response()
    }
}
