//! Reading what routing needs from a request body: the `model`, whether the reply streams, and
//! what the caller asked for in `stream_options`.
//!
//! Only those members are read; every other member is skipped without being kept, so a long
//! prompt costs one scan and no allocation. A body that names a member twice is refused: the
//! gateway and the upstream must never disagree on which `model` a request is for.

use serde::Deserialize;
use serde_json::Value;

use crate::error::GatewayError;

/// What the gateway reads from an OpenAI request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// The requested model.
    pub model: String,
    /// `"stream": true`.
    pub stream: bool,
    /// `"stream_options": {"include_usage": true}`.
    pub include_usage: bool,
    /// `"stream_options": {"continuous_usage_stats": true}`.
    pub continuous_usage_stats: bool,
}

/// The members routing looks at; values stay loosely typed so that a wrong type is reported as
/// what it means (a missing model, no stream) rather than as a parse error.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    stream_options: Option<Value>,
}

/// Reads the routing facts of a JSON request body.
pub fn read(body: &[u8]) -> Result<RequestFacts, GatewayError> {
    // Serde would also read a struct from an array: only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(GatewayError::BadJson("expected a JSON object".to_owned()));
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let model = match head.model {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(GatewayError::MissingModel),
    };
    let option = |name: &str| {
        head.stream_options.as_ref().and_then(|o| o.get(name)).and_then(Value::as_bool).unwrap_or(false)
    };
    Ok(RequestFacts {
        model,
        stream: head.stream == Some(Value::Bool(true)),
        include_usage: option("include_usage"),
        continuous_usage_stats: option("continuous_usage_stats"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_flags() {
        let f = read(br#"{"model":"qwen","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(f, RequestFacts { model: "qwen".into(), stream: true, include_usage: true, continuous_usage_stats: false });
        let f = read("{\"model\":\"模型\",\"prompt\":\"你好\"}".as_bytes()).unwrap();
        assert_eq!(f.model, "模型");
        assert!(!f.stream && !f.include_usage);
        let f = read(br#" {"stream_options":{"continuous_usage_stats":true,"x":[1]},"model":"m\u00e9"}"#).unwrap();
        assert_eq!((f.model.as_str(), f.continuous_usage_stats), ("mé", true));
        assert!(!read(br#"{"model":"m","stream_options":null}"#).unwrap().include_usage);
        assert!(!read(br#"{"model":"m","stream_options":"yes"}"#).unwrap().include_usage);
    }

    #[test]
    fn refuses_what_cannot_be_routed() {
        assert!(matches!(read(b"{bad"), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(b""), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(b"[1]"), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(br#"["m",true]"#), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(br#"{"model":"a","x":1} trailing"#), Err(GatewayError::BadJson(_))));
        assert_eq!(read(b"{}"), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":7}"#), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":""}"#), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":null}"#), Err(GatewayError::MissingModel));
        assert!(!read(br#"{"model":"m","stream":"yes"}"#).unwrap().stream);
    }

    #[test]
    fn a_member_named_twice_is_refused() {
        let e = read(br#"{"model":"cheap","messages":[],"model":"expensive"}"#).unwrap_err();
        assert!(matches!(&e, GatewayError::BadJson(m) if m.contains("duplicate field `model`")), "{e:?}");
    }
}
