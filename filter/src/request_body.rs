//! Reading what routing needs from a request body: the `model`, and whether the reply streams.

use serde_json::{Map, Value};

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
}

struct Head {
    model: Option<Value>,
    stream: Option<Value>,
    stream_options: Option<Value>,
}

/// Reads the routing facts of a JSON request body.
pub fn read(body: &[u8]) -> Result<RequestFacts, GatewayError> {
    read_object(body).map(|(facts, _)| facts)
}

/// Reads the routing facts and returns the parsed body too (for usage injection).
pub fn read_object(body: &[u8]) -> Result<(RequestFacts, Map<String, Value>), GatewayError> {
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(GatewayError::BadJson("expected a JSON object".to_owned())),
        Err(e) => return Err(GatewayError::BadJson(e.to_string())),
    };
    let head = Head {
        model: object.get("model").cloned(),
        stream: object.get("stream").cloned(),
        stream_options: object.get("stream_options").cloned(),
    };
    Ok((facts(head)?, object))
}

fn facts(head: Head) -> Result<RequestFacts, GatewayError> {
    let model = match head.model {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(GatewayError::MissingModel),
    };
    let include_usage = head
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(RequestFacts { model, stream: head.stream == Some(Value::Bool(true)), include_usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_flags() {
        let f = read(br#"{"model":"qwen","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert_eq!(f, RequestFacts { model: "qwen".into(), stream: true, include_usage: true });
        let f = read("{\"model\":\"模型\",\"prompt\":\"你好\"}".as_bytes()).unwrap();
        assert_eq!(f.model, "模型");
        assert!(!f.stream && !f.include_usage);
    }

    #[test]
    fn refuses_what_cannot_be_routed() {
        assert!(matches!(read(b"{bad"), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(b""), Err(GatewayError::BadJson(_))));
        assert!(matches!(read(b"[1]"), Err(GatewayError::BadJson(_))));
        assert_eq!(read(b"{}"), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":7}"#), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":""}"#), Err(GatewayError::MissingModel));
        assert_eq!(read(br#"{"model":null}"#), Err(GatewayError::MissingModel));
        assert!(!read(br#"{"model":"m","stream":"yes"}"#).unwrap().stream);
    }
}
