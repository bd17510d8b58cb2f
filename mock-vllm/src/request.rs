//! Request parsing shared by the endpoints: JSON with vLLM's 400s, `stream` and `stream_options`.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;

use crate::error::ApiError;

/// Parses a JSON body; bad JSON and a wrong or missing field are 400 `BadRequestError`s.
/// `what` names the request type in the message, as pydantic does (`ChatCompletionRequest`).
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        let message = match err.classify() {
            Category::Data => format!("1 validation error for {what}\n  {err}"),
            Category::Syntax | Category::Eof | Category::Io => format!("JSON decode error: {err}"),
        };
        ApiError::BadRequest(message)
    })
}

/// `stream_options` of a request.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
    #[serde(default)]
    continuous_usage_stats: Option<bool>,
}

/// Which usage a streamed reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageMode {
    /// A usage-only chunk (`"choices":[]`) comes last before `[DONE]`.
    pub include_usage: bool,
    /// Every chunk also carries the running usage (only together with `include_usage`).
    pub continuous: bool,
}

/// `Some(mode)` for a streamed reply, `None` for a plain JSON one. `stream_options` on a
/// request that is not streamed is a 400, as in vLLM.
pub(crate) fn stream_mode(
    stream: Option<bool>,
    options: Option<StreamOptions>,
) -> Result<Option<UsageMode>, ApiError> {
    match (stream == Some(true), options) {
        (false, Some(_)) => Err(ApiError::BadRequest(
            "Stream options can only be defined when `stream=True`.".to_owned(),
        )),
        (false, None) => Ok(None),
        (true, options) => {
            let options = options.unwrap_or_default();
            let include_usage = options.include_usage == Some(true);
            let continuous = include_usage && options.continuous_usage_stats == Some(true);
            Ok(Some(UsageMode {
                include_usage,
                continuous,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: &str) -> Option<StreamOptions> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn stream_options_need_stream() {
        assert!(stream_mode(None, options(r#"{"include_usage":true}"#)).is_err());
        assert!(stream_mode(Some(false), options("{}")).is_err());
        assert_eq!(stream_mode(Some(false), None).unwrap(), None);
        assert_eq!(stream_mode(Some(false), options("null")).unwrap(), None);
    }

    #[test]
    fn continuous_usage_alone_does_nothing() {
        let mode = |json| stream_mode(Some(true), options(json)).unwrap().unwrap();
        assert_eq!(
            mode(r#"{"continuous_usage_stats":true}"#),
            UsageMode {
                include_usage: false,
                continuous: false
            }
        );
        assert_eq!(
            mode(r#"{"include_usage":true,"continuous_usage_stats":true}"#),
            UsageMode {
                include_usage: true,
                continuous: true
            }
        );
        assert_eq!(
            mode("null"),
            UsageMode {
                include_usage: false,
                continuous: false
            }
        );
    }

    #[test]
    fn bad_json_and_missing_fields_are_400() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct R {
            messages: Vec<u8>,
        }
        let err = parse::<R>(b"{", "R").unwrap_err();
        assert!(err.to_string().starts_with("JSON decode error"), "{err}");
        let err = parse::<R>(b"{}", "R").unwrap_err();
        assert!(
            err.to_string().contains("missing field `messages`"),
            "{err}"
        );
    }
}
