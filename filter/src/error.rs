//! What the gateway refuses, as OpenAI-shaped error replies:
//! `{"error":{"message":…,"type":…,"param":…,"code":…}}` with the matching HTTP status.

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
    /// The key's app has expired.
    ExpiredCredential,
    /// The JWT has expired.
    ExpiredToken,
    /// The JWT was issued before the user's tokens were revoked.
    RevokedToken,
    /// The JWT's user is disabled (or no longer exists).
    UserDisabled,
    /// The key's app is disabled.
    AppDisabled,
    /// No key state has arrived from the control plane yet.
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

impl GatewayError {
    /// The HTTP status of the reply.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingCredential
            | Self::InvalidCredential
            | Self::ExpiredCredential
            | Self::ExpiredToken
            | Self::RevokedToken => 401,
            Self::AppDisabled | Self::UserDisabled | Self::ModelNotAllowed(_) => 403,
            Self::NotReady | Self::Busy => 503,
            Self::BadJson(_)
            | Self::MissingModel
            | Self::InvalidType { .. }
            | Self::Unsupported { .. } => 400,
            Self::UnknownModel(_) | Self::UnknownPath(_) => 404,
            Self::BodyTooLarge(_) => 413,
            Self::Limited(_) => 429,
            Self::LimitsUnavailable => 503,
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingCredential
            | Self::InvalidCredential
            | Self::ExpiredCredential
            | Self::ExpiredToken
            | Self::RevokedToken => "authentication_error",
            Self::AppDisabled | Self::UserDisabled | Self::ModelNotAllowed(_) => "permission_error",
            Self::NotReady => "service_unavailable",
            Self::Busy | Self::LimitsUnavailable => "server_error",
            Self::Limited(e) if e.kind.is_budget() => "insufficient_quota",
            Self::Limited(e) if e.kind.counts_tokens() => "tokens",
            Self::Limited(_) => "requests",
            _ => "invalid_request_error",
        }
    }

    /// The machine-readable `code`, also used as the reason in logs and metrics.
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
            _ => None,
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
mod tests {
    use super::*;

    #[test]
    fn bodies_are_openai_shaped() {
        let all = [
            GatewayError::MissingCredential,
            GatewayError::InvalidCredential,
            GatewayError::ExpiredCredential,
            GatewayError::ExpiredToken,
            GatewayError::RevokedToken,
            GatewayError::UserDisabled,
            GatewayError::AppDisabled,
            GatewayError::NotReady,
            GatewayError::BadJson("eof".into()),
            GatewayError::MissingModel,
            GatewayError::UnknownModel("gpt-\"x\"".into()),
            GatewayError::ModelNotAllowed("m".into()),
            GatewayError::BodyTooLarge(10),
            GatewayError::Busy,
            GatewayError::UnknownPath("/v1/nope".into()),
            GatewayError::InvalidType { param: "stream", message: "m".into() },
            GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerDay))),
            GatewayError::LimitsUnavailable,
        ];
        for e in all {
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            let obj = v["error"].as_object().unwrap();
            assert_eq!(obj.len(), 4, "{v}");
            assert!(obj["message"].is_string());
            assert_eq!(obj["type"], e.kind());
            assert_eq!(obj["code"], e.code());
            assert!(obj.contains_key("param"));
            assert!((400..600).contains(&e.status()));
        }
    }

    fn limit_error(kind: LimitKind) -> LimitError {
        LimitError {
            kind,
            subject: Subject::App(3),
            model: None,
            limit: 10,
            remaining: 0,
            needed: 1,
            retry_after_secs: 6,
            cut_off: false,
        }
    }

    #[test]
    fn limits_answer_as_openai_does() {
        let rate = GatewayError::Limited(Box::new(limit_error(LimitKind::RequestsPerMinute)));
        let v: serde_json::Value = serde_json::from_slice(&rate.body()).unwrap();
        assert_eq!((rate.status(), rate.retry_after_secs()), (429, Some(6)));
        assert_eq!(
            (&v["error"]["type"], &v["error"]["code"]),
            (&"requests".into(), &"rate_limit_exceeded".into())
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("requests per minute"), "{v}");
        let budget = GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerMonth)));
        let v: serde_json::Value = serde_json::from_slice(&budget.body()).unwrap();
        assert_eq!(
            (&v["error"]["type"], &v["error"]["code"]),
            (&"insufficient_quota".into(), &"insufficient_quota".into())
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("tokens per month budget"), "{v}");
        let tokens = GatewayError::Limited(Box::new(limit_error(LimitKind::TokensPerMinute)));
        assert_eq!((tokens.kind(), tokens.code()), ("tokens", "rate_limit_exceeded"));
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(GatewayError::MissingCredential.status(), 401);
        assert_eq!(GatewayError::AppDisabled.status(), 403);
        assert_eq!(GatewayError::UnknownModel("m".into()).status(), 404);
        assert_eq!(GatewayError::BodyTooLarge(1).status(), 413);
        assert_eq!(GatewayError::NotReady.status(), 503);
        assert_eq!(GatewayError::NotReady.message(), "gateway not ready");
    }

    #[test]
    fn a_wrong_type_names_its_param() {
        let e = GatewayError::InvalidType {
            param: "stream",
            message: "`stream` must be a boolean or null.".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 400);
        assert_eq!(
            v,
            serde_json::json!({"error": {
                "message": "`stream` must be a boolean or null.", "type": "invalid_request_error", "param": "stream", "code": "invalid_type"
            }})
        );
    }
}
