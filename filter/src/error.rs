//! What the gateway refuses, as OpenAI-shaped error replies:
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}` with the matching HTTP status.
//!
//! [`GatewayError`] is the one policy of a refusal; nothing else keeps a list of its variants or
//! codes. [`GatewayError::class`] sorts every refusal once (an authentication failure, a
//! permission failure, a bad request, a limit, …), and its HTTP status, its OpenAI `type` and the
//! metric it is counted in ([`GatewayError::tally`]) follow from the class; its `code` and message
//! are said next to it, and so is whether newer credentials could lift it
//! ([`GatewayError::may_be_stale`]). Those matches name every variant (no `_` arm): a new
//! variant cannot be left out of any of them.

use serde::Serialize;

use crate::feed::limits::{LimitKind, Subject};
use crate::limits::rate_headers::duration;

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// No `Authorization: Bearer` header and no `?token=`.
    MissingCredential,
    /// A credential that is not a known key (or is malformed).
    InvalidCredential,
    /// The API key's app has expired.
    ExpiredCredential,
    /// The JWT has expired.
    ExpiredToken,
    /// The JWT was issued before the user's tokens were revoked.
    RevokedToken,
    /// The JWT's user is disabled (or no longer exists).
    UserDisabled,
    /// The key's app is disabled.
    AppDisabled,
    /// No credentials have arrived from the control plane yet.
    NotReady,
    /// The body is not a JSON object.
    BadJson(String),
    /// The body has no string `model`.
    MissingModel,
    /// `model` names no configured model.
    UnknownModel(String),
    /// The caller's app may not use this model.
    ModelNotAllowed(String),
    /// The body is over the configured limit.
    BodyTooLarge(usize),
    /// This worker already buffers as many request bytes as it may
    /// (`max_buffered_request_bytes`): the gateway is busy receiving other bodies.
    Busy,
    /// A `/v1/*` path the gateway does not serve.
    UnknownPath(String),
    /// A request member of the wrong type that would change how the reply is counted
    /// (`stream`, `stream_options`): refused rather than guessed.
    InvalidType {
        /// The member, as OpenAI's `param`.
        param: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A request member whose use the gateway could not account for (`background` responses,
    /// answered before they are generated): refused rather than left uncounted.
    Unsupported {
        /// The member, as OpenAI's `param`.
        param: &'static str,
        /// Why it is refused.
        message: String,
    },
    /// A limit refused the request (429), or cut its stream off.
    Limited(Box<LimitError>),
    /// A limit of the caller has no lease here and the control plane could not be asked for one.
    LimitsUnavailable,
}

/// What a limit's refusal (or cut-off) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// Which limit.
    pub kind: LimitKind,
    /// Whose.
    pub subject: Subject,
    /// The model it is scoped to, if any.
    pub model: Option<String>,
    /// Its value.
    pub limit: u64,
    /// What remained of it.
    pub remaining: u64,
    /// What the request needed of it at least.
    pub needed: u64,
    /// When it may succeed, in seconds (`Retry-After`).
    pub retry_after_secs: u64,
    /// The stream was cut off (rather than the request refused).
    pub cut_off: bool,
}

impl LimitError {
    fn message(&self) -> String {
        let whose = match self.subject {
            Subject::App(_) => "this API key's app",
            Subject::User(_) => "this user",
        };
        let scope = self.model.as_deref().map(|m| format!(" for model `{m}`")).unwrap_or_default();
        let name = self.kind.name().replace('_', " ");
        let wait = duration(self.retry_after_secs.saturating_mul(1000));
        if self.cut_off {
            return format!(
                "The response was cut off: it passed the tokens granted to it under the {name} limit \
                 of {whose}{scope} (limit {}).",
                self.limit
            );
        }
        if self.kind.is_budget() {
            return format!(
                "You exceeded your current quota: the {name} budget of {whose}{scope} is used up (limit {}, \
                 remaining {}, requested at least {}). It resets in {wait}.",
                self.limit, self.remaining, self.needed
            );
        }
        format!(
            "Rate limit reached on {name} for {whose}{scope}: limit {}, remaining {}, requested {}. \
             Please try again in {wait}.",
            self.limit, self.remaining, self.needed
        )
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// What kind of refusal a [`GatewayError`] is: its HTTP status and OpenAI `type`, and the metric
/// it is counted in, follow from its class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The credential is missing, not known, expired or revoked: 401 `authentication_error`,
    /// counted as an auth failure.
    Authentication,
    /// The caller is known but may not do this: 403 `permission_error`, counted as an auth
    /// failure.
    Permission,
    /// The credential cannot be checked: no credentials have arrived from the control plane yet.
    /// 503 `service_unavailable`, counted as an auth failure.
    NotReady,
    /// The request itself is wrong: `invalid_request_error` with this status (400, 404, 413).
    InvalidRequest(u16),
    /// The gateway cannot take the request now: 503 `server_error`.
    Overloaded,
    /// A limit of the caller refused the request (429), or cut its stream off; its `type` says
    /// which kind of limit. Counted as limited, or cut off.
    Limited {
        /// Which limit.
        kind: LimitKind,
        /// The stream was cut off (rather than the request refused).
        cut_off: bool,
    },
    /// The caller's limits cannot be checked now: 503 `server_error`, counted as limited.
    LimitsUnavailable,
}

/// A metric a refusal is counted in besides the requests by status, with its `reason` label (a
/// fixed name of the gateway's, never client input). [`crate::metrics`] names the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// An authentication or authorisation failure (`vllm_gateway_auth_failures_total`), by code.
    AuthFailure(&'static str),
    /// A request a limit refused (`vllm_gateway_limited_total`), by the limit kind's name, or
    /// `limits_unavailable`.
    Limited(&'static str),
    /// A stream a limit cut off (`vllm_gateway_cut_off_total`), by the limit kind's name.
    CutOff(&'static str),
}

impl GatewayError {
    /// What kind of refusal this is (see [`Class`]).
    pub fn class(&self) -> Class {
        match self {
            Self::MissingCredential
            | Self::InvalidCredential
            | Self::ExpiredCredential
            | Self::ExpiredToken
            | Self::RevokedToken => Class::Authentication,
            Self::AppDisabled | Self::UserDisabled | Self::ModelNotAllowed(_) => Class::Permission,
            Self::NotReady => Class::NotReady,
            Self::BadJson(_)
            | Self::MissingModel
            | Self::InvalidType { .. }
            | Self::Unsupported { .. } => Class::InvalidRequest(400),
            Self::UnknownModel(_) | Self::UnknownPath(_) => Class::InvalidRequest(404),
            Self::BodyTooLarge(_) => Class::InvalidRequest(413),
            Self::Busy => Class::Overloaded,
            Self::Limited(e) => Class::Limited { kind: e.kind, cut_off: e.cut_off },
            Self::LimitsUnavailable => Class::LimitsUnavailable,
        }
    }

    /// The HTTP status of the reply.
    pub fn status(&self) -> u16 {
        match self.class() {
            Class::Authentication => 401,
            Class::Permission => 403,
            Class::InvalidRequest(status) => status,
            Class::Limited { .. } => 429,
            Class::NotReady | Class::Overloaded | Class::LimitsUnavailable => 503,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self.class() {
            Class::Authentication => "authentication_error",
            Class::Permission => "permission_error",
            Class::InvalidRequest(_) => "invalid_request_error",
            Class::NotReady => "service_unavailable",
            Class::Overloaded | Class::LimitsUnavailable => "server_error",
            Class::Limited { kind, .. } if kind.is_budget() => "insufficient_quota",
            Class::Limited { kind, .. } if kind.counts_tokens() => "tokens",
            Class::Limited { .. } => "requests",
        }
    }

    /// The metric this refusal is counted in besides the requests by status, if any.
    pub fn tally(&self) -> Option<Tally> {
        match self.class() {
            Class::Authentication | Class::Permission | Class::NotReady => {
                Some(Tally::AuthFailure(self.code()))
            }
            Class::Limited { kind, cut_off: false } => Some(Tally::Limited(kind.name())),
            Class::Limited { kind, cut_off: true } => Some(Tally::CutOff(kind.name())),
            Class::LimitsUnavailable => Some(Tally::Limited(self.code())),
            Class::InvalidRequest(_) | Class::Overloaded => None,
        }
    }

    /// Whether newer credentials from the control plane could turn this refusal into an
    /// acceptance (a key created, an app or user re-enabled, a token issued after a revocation
    /// this worker has not seen yet a moment ago): the request then looks for them before it is
    /// answered. Never for what is wrong with the request or the token itself (no credential, an
    /// expired JWT), nor for what no credential changes.
    pub fn may_be_stale(&self) -> bool {
        match self {
            Self::NotReady
            | Self::InvalidCredential
            | Self::ExpiredCredential
            | Self::AppDisabled
            | Self::UserDisabled
            | Self::RevokedToken
            | Self::ModelNotAllowed(_) => true,
            Self::MissingCredential
            | Self::ExpiredToken
            | Self::BadJson(_)
            | Self::MissingModel
            | Self::UnknownModel(_)
            | Self::BodyTooLarge(_)
            | Self::Busy
            | Self::UnknownPath(_)
            | Self::InvalidType { .. }
            | Self::Unsupported { .. }
            | Self::Limited(_)
            | Self::LimitsUnavailable => false,
        }
    }

    /// The machine-readable `code`, also the reason in logs (the record's `gateway_error`) and
    /// metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_api_key",
            Self::InvalidCredential => "invalid_api_key",
            Self::ExpiredCredential => "expired_api_key",
            Self::ExpiredToken => "expired_token",
            Self::RevokedToken => "revoked_token",
            Self::UserDisabled => "user_disabled",
            Self::AppDisabled => "app_disabled",
            Self::NotReady => "gateway_not_ready",
            Self::BadJson(_) => "invalid_json",
            Self::MissingModel => "missing_model",
            Self::UnknownModel(_) => "model_not_found",
            Self::ModelNotAllowed(_) => "model_not_allowed",
            Self::BodyTooLarge(_) => "request_too_large",
            Self::Busy => "overloaded",
            Self::UnknownPath(_) => "unknown_url",
            Self::InvalidType { .. } => "invalid_type",
            Self::Unsupported { .. } => "unsupported_parameter",
            Self::Limited(e) if e.kind.is_budget() => "insufficient_quota",
            Self::Limited(_) => "rate_limit_exceeded",
            Self::LimitsUnavailable => "limits_unavailable",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            Self::MissingModel | Self::UnknownModel(_) | Self::ModelNotAllowed(_) => Some("model"),
            Self::InvalidType { param, .. } | Self::Unsupported { param, .. } => Some(*param),
            Self::MissingCredential
            | Self::InvalidCredential
            | Self::ExpiredCredential
            | Self::ExpiredToken
            | Self::RevokedToken
            | Self::UserDisabled
            | Self::AppDisabled
            | Self::NotReady
            | Self::BadJson(_)
            | Self::BodyTooLarge(_)
            | Self::Busy
            | Self::UnknownPath(_)
            | Self::Limited(_)
            | Self::LimitsUnavailable => None,
        }
    }

    /// The human-readable `message`.
    pub fn message(&self) -> String {
        match self {
            Self::MissingCredential => "Missing credential: send `Authorization: Bearer <key>` \
                                        or `?token=<token>`."
                .to_owned(),
            Self::InvalidCredential => "Invalid API key or token.".to_owned(),
            Self::ExpiredCredential => "This API key has expired.".to_owned(),
            Self::ExpiredToken => "The token has expired: log in again.".to_owned(),
            Self::RevokedToken => "The token has been revoked: log in again.".to_owned(),
            Self::UserDisabled => "The user this token belongs to is disabled.".to_owned(),
            Self::AppDisabled => "The app this API key belongs to is disabled.".to_owned(),
            Self::NotReady => "gateway not ready".to_owned(),
            Self::BadJson(why) => format!("The request body is not valid JSON: {why}"),
            Self::MissingModel => "The request body must have a string `model`.".to_owned(),
            Self::UnknownModel(model) => format!("The model `{model}` does not exist."),
            Self::ModelNotAllowed(model) => {
                format!("This API key may not use the model `{model}`.")
            }
            Self::BodyTooLarge(limit) => {
                format!("The request body is larger than the gateway's limit of {limit} bytes.")
            }
            Self::Busy => {
                "The gateway is receiving too many large request bodies at once; retry shortly."
                    .to_owned()
            }
            Self::UnknownPath(path) => format!("Unknown request URL: {path}."),
            Self::InvalidType { message, .. } | Self::Unsupported { message, .. } => {
                message.clone()
            }
            Self::Limited(e) => e.message(),
            Self::LimitsUnavailable => {
                "The gateway cannot check this caller's limits right now (its control plane \
                                        is unreachable); retry shortly."
                    .to_owned()
            }
        }
    }

    /// `Retry-After`, in seconds, for a refusal that names one.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Limited(e) => Some(e.retry_after_secs),
            Self::LimitsUnavailable => Some(1),
            _ => None,
        }
    }

    /// The JSON reply body.
    pub fn body(&self) -> Vec<u8> {
        let envelope = Envelope {
            error: Body {
                message: self.message(),
                kind: self.kind(),
                param: self.param(),
                code: self.code(),
            },
        };
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
