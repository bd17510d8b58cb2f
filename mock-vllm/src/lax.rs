//! How vLLM's request models read values that are not of their declared type: pydantic v2's
//! *lax* mode (vLLM's `OpenAIBaseModel` is not strict), and Python truthiness in the
//! `mode="before"` validators that look at the raw JSON.
//!
//! - A `bool` field takes `true`/`false`, the integers `0`/`1`, the floats `0.0`/`1.0`, and the
//!   strings `0 off f false n no` / `1 on t true y yes` in any ASCII case (pydantic's conversion
//!   table, "bool" rows; pydantic-core compares the strings case-insensitively, without trimming).
//!   So `"stream": "true"`, `1` or `"YES"` all stream, as they do in vLLM.
//! - `validate_stream_options` (vLLM `chat_completion/protocol.py`, `completion/protocol.py`) runs
//!   before that, on the raw body: `if data.get("stream_options") and not data.get("stream")`. An
//!   empty object is falsy there and a non-empty string (even `"false"`) is truthy.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// pydantic's message when a value cannot be read as a boolean.
pub(crate) const NOT_A_BOOL: &str = "Input should be a valid boolean, unable to interpret input";

/// Python's truthiness of a raw JSON value (`bool(data.get(...))`).
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
    }
}

/// An `Optional[bool]` field read as pydantic reads it in lax mode: `null` is `None`.
pub(crate) fn optional_bool(value: &Value) -> Result<Option<bool>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Ok(Some(false)),
            Some(1.0) => Ok(Some(true)),
            _ => Err(NOT_A_BOOL),
        },
        Value::String(s) => string_bool(s).map(Some).ok_or(NOT_A_BOOL),
        Value::Array(_) | Value::Object(_) => Err(NOT_A_BOOL),
    }
}

/// pydantic-core's `str_as_bool`.
fn string_bool(s: &str) -> Option<bool> {
    const FALSE: [&str; 6] = ["0", "off", "f", "false", "n", "no"];
    const TRUE: [&str; 6] = ["1", "on", "t", "true", "y", "yes"];
    if FALSE.iter().any(|word| s.eq_ignore_ascii_case(word)) {
        Some(false)
    } else if TRUE.iter().any(|word| s.eq_ignore_ascii_case(word)) {
        Some(true)
    } else {
        None
    }
}

/// For `#[serde(default, deserialize_with = "lax::bool_field")]` on an `Option<bool>` field.
pub(crate) fn bool_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let value = Value::deserialize(d)?;
    optional_bool(&value).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lax_booleans_are_read_as_pydantic_reads_them() {
        for yes in [
            json!(true),
            json!(1),
            json!(1.0),
            json!("true"),
            json!("True"),
            json!("YES"),
            json!("on"),
            json!("1"),
            json!("t"),
            json!("y"),
        ] {
            assert_eq!(optional_bool(&yes), Ok(Some(true)), "{yes}");
        }
        for no in [
            json!(false),
            json!(0),
            json!(0.0),
            json!("false"),
            json!("No"),
            json!("off"),
            json!("0"),
            json!("F"),
            json!("n"),
        ] {
            assert_eq!(optional_bool(&no), Ok(Some(false)), "{no}");
        }
        assert_eq!(optional_bool(&Value::Null), Ok(None));
        for bad in [
            json!(2),
            json!(-1),
            json!(0.5),
            json!(""),
            json!(" true"),
            json!("maybe"),
            json!([]),
            json!({}),
        ] {
            assert_eq!(optional_bool(&bad), Err(NOT_A_BOOL), "{bad}");
        }
    }

    #[test]
    fn truthiness_is_python_s() {
        for falsy in
            [json!(null), json!(false), json!(0), json!(0.0), json!(""), json!([]), json!({})]
        {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for truthy_value in [
            json!(true),
            json!(2),
            json!("false"),
            json!("0"),
            json!([0]),
            json!({"include_usage": false}),
        ] {
            assert!(truthy(&truthy_value), "{truthy_value}");
        }
    }
}
