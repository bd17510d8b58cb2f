//! Request parsing shared by the endpoints: JSON with vLLM's 400s, `stream` and `stream_options`
//! read as vLLM reads them (see [`crate::lax`]), and the `n` of a sampling request.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::error::Category;
use serde_json::Value;

use crate::error::ApiError;
use crate::lax;

/// Most choices (`n`) one request may ask for; vLLM sets no limit, the mock keeps its memory.
const MAX_N: i64 = 256;

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

/// A pydantic-style validation error on one field.
pub(crate) fn invalid(what: &str, field: &str, message: &str) -> ApiError {
    ApiError::BadRequest(format!("1 validation error for {what}\n{field}\n  {message}"))
}

/// `stream_options` of a request; its booleans are lax too. As in vLLM's `StreamOptions`
/// (`include_usage: bool | None = True`), a present `stream_options` asks for usage unless it
/// says `include_usage: false` (or `null`).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default = "asked", deserialize_with = "lax::bool_field")]
    include_usage: Option<bool>,
    #[serde(default, deserialize_with = "lax::bool_field")]
    continuous_usage_stats: Option<bool>,
}

fn asked() -> Option<bool> {
    Some(true)
}

/// Which usage a streamed reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UsageMode {
    /// A usage-only chunk (`"choices":[]`) comes last before `[DONE]`.
    pub include_usage: bool,
    /// Every chunk also carries the running usage (only together with `include_usage`).
    pub continuous: bool,
}

/// `stream` as a request sent it (any JSON value).
pub(crate) fn stream_flag(what: &str, stream: &Value) -> Result<bool, ApiError> {
    lax::optional_bool(stream)
        .map(|s| s == Some(true))
        .map_err(|message| invalid(what, "stream", message))
}

/// `Some(mode)` for a streamed reply, `None` for a plain JSON one, from the raw `stream` and
/// `stream_options` values. As in vLLM: first the raw check (truthy `stream_options` with a
/// falsy `stream` is a 400), then the lax reading of both; options on a request that is not
/// streamed after all (`"stream": "false"`) are ignored.
pub(crate) fn stream_mode(
    what: &str,
    stream: &Value,
    options: &Value,
) -> Result<Option<UsageMode>, ApiError> {
    if lax::truthy(options) && !lax::truthy(stream) {
        return Err(ApiError::BadRequest(
            "Stream options can only be defined when `stream=True`.".to_owned(),
        ));
    }
    let stream = stream_flag(what, stream)?;
    if !matches!(options, Value::Null | Value::Object(_)) {
        return Err(invalid(what, "stream_options", "Input should be an object"));
    }
    let options: Option<StreamOptions> = serde_json::from_value(options.clone())
        .map_err(|err| invalid(what, "stream_options", &err.to_string()))?;
    if !stream {
        return Ok(None);
    }
    let options = options.unwrap_or_default();
    let include_usage = options.include_usage == Some(true);
    let continuous = include_usage && options.continuous_usage_stats == Some(true);
    Ok(Some(UsageMode { include_usage, continuous }))
}

/// The number of choices, `n` (absent or `null`: 1); below 1 is vLLM's 400.
pub(crate) fn choices(n: Option<i64>) -> Result<u32, ApiError> {
    match n.unwrap_or(1) {
        n if n < 1 => Err(ApiError::BadRequest(format!("n must be at least 1, got {n}."))),
        n if n > MAX_N => Err(ApiError::BadRequest(format!(
            "mock-vllm answers at most {MAX_N} choices, got n={n}."
        ))),
        n => Ok(u32::try_from(n).unwrap_or(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mode(stream: Value, options: Value) -> Result<Option<UsageMode>, ApiError> {
        stream_mode("R", &stream, &options)
    }

    const NONE: UsageMode = UsageMode { include_usage: false, continuous: false };

    #[test]
    fn stream_options_need_a_truthy_stream() {
        assert!(mode(json!(null), json!({"include_usage": true})).is_err());
        assert!(mode(json!(false), json!({"include_usage": false})).is_err());
        assert!(mode(json!(0), json!({"include_usage": true})).is_err());
        assert_eq!(mode(json!(false), json!(null)).unwrap(), None);
        // vLLM's raw check: `{}` is falsy, so it passes and means nothing.
        assert_eq!(mode(json!(false), json!({})).unwrap(), None);
        // "false" is a truthy string: the raw check passes, then it reads as False.
        assert_eq!(mode(json!("false"), json!({"include_usage": true})).unwrap(), None);
    }

    #[test]
    fn stream_options_ask_for_usage_unless_they_say_no() {
        let streamed = |options| mode(json!(true), options).unwrap().unwrap();
        let both = UsageMode { include_usage: true, continuous: true };
        assert_eq!(streamed(json!({"continuous_usage_stats": true})), both);
        assert_eq!(streamed(json!({})), UsageMode { include_usage: true, continuous: false });
        assert_eq!(streamed(json!({"include_usage": false, "continuous_usage_stats": true})), NONE);
        assert_eq!(streamed(json!({"include_usage": null})), NONE);
        assert_eq!(
            streamed(json!({"include_usage": true, "continuous_usage_stats": true})),
            UsageMode { include_usage: true, continuous: true }
        );
        assert_eq!(streamed(json!(null)), NONE);
    }

    #[test]
    fn lax_values_stream_and_ask_for_usage() {
        for stream in [json!("true"), json!(1), json!("yes"), json!("on"), json!("1"), json!("T")] {
            let options = json!({"include_usage": "true", "continuous_usage_stats": 1});
            let got = mode(stream.clone(), options).unwrap();
            assert_eq!(got, Some(UsageMode { include_usage: true, continuous: true }), "{stream}");
        }
        assert!(mode(json!("maybe"), json!(null)).is_err());
        assert!(mode(json!(true), json!({"include_usage": "sometimes"})).is_err());
        assert!(mode(json!(true), json!("include_usage")).is_err(), "options of the wrong type");
        assert!(mode(json!(true), json!([])).is_err(), "options of the wrong type");
    }

    #[test]
    fn n_is_at_least_one() {
        assert_eq!(choices(None).unwrap(), 1);
        assert_eq!(choices(Some(3)).unwrap(), 3);
        assert!(choices(Some(0)).is_err());
        assert!(choices(Some(MAX_N + 1)).is_err());
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
        assert!(err.to_string().contains("missing field `messages`"), "{err}");
    }
}
