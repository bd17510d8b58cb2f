//! Reading what routing and accounting need from a request body: the `model`, whether the reply
//! streams, what the caller asked for in `stream_options`, and `n`.
//!
//! Only those members are read; every other member is skipped without being kept, so a long
//! prompt costs one scan and no allocation. A body that names a member twice is refused: the
//! gateway and the upstream must never disagree on which `model` a request is for.
//!
//! `stream` and `stream_options` decide how a reply is counted, and vLLM reads them leniently
//! (pydantic's lax mode streams for `"stream": "true"` or `1`). So the gateway refuses what it
//! would have to guess: a `stream` that is neither a JSON boolean nor `null`, a `stream_options`
//! that is neither an object nor `null`, and `include_usage` / `continuous_usage_stats` that are
//! neither booleans nor `null` (400, `invalid_type`). What is left is read exactly as vLLM reads
//! it (`StreamOptions` in vLLM's `protocol.py`: `include_usage` defaults to true when
//! `stream_options` is present; `should_include_usage` in its `api_utils.py`).

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::GatewayError;

pub mod completion;
pub mod edit;

use completion::{count_prompts, Cap, CompletionAsk};
pub use edit::{BodyEdit, MemberSpans};

/// What the gateway reads from an OpenAI request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    /// The requested model.
    pub model: String,
    /// `"stream": true`.
    pub stream: bool,
    /// Whether vLLM sends a usage-only chunk at the end: `stream_options` is an object whose
    /// `include_usage` is true or absent (it defaults to true there).
    pub include_usage: bool,
    /// Whether vLLM adds a running usage to every chunk: `include_usage` and
    /// `continuous_usage_stats: true`.
    pub continuous_usage_stats: bool,
    /// `n`, the choices per prompt: a positive integer, 1 when absent, `null` or anything else
    /// (which the upstream judges).
    pub n: u64,
    /// The members that cap the completion, and the prompts.
    pub completion: CompletionAsk,
    /// Where the members the gateway may edit sit in the body ([`BodyEdit`]).
    pub members: MemberSpans,
}

/// The members routing looks at; values stay loosely typed so that a wrong type is reported as
/// what it means rather than as a parse error.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default, borrow)]
    stream_options: Raw<'a>,
    #[serde(default)]
    n: Option<Value>,
    #[serde(default)]
    background: Option<Value>,
    #[serde(default, borrow)]
    max_tokens: Raw<'a>,
    #[serde(default, borrow)]
    max_completion_tokens: Raw<'a>,
    #[serde(default, borrow)]
    max_output_tokens: Raw<'a>,
    #[serde(default, borrow)]
    prompt: Option<&'a RawValue>,
}

/// A member that may be edited: its value as written (`null` included), borrowed from the body.
#[derive(Default, Clone, Copy)]
struct Raw<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| Raw(Some(raw)))
    }
}

impl Raw<'_> {
    /// The value, read (the small members only: options and numbers); an error for what is
    /// valid JSON text but no value `serde_json` holds (a number out of range, a lone surrogate
    /// in a key), as reading the whole body as values would have said.
    fn value(self) -> Result<Option<Value>, serde_json::Error> {
        self.0.map(|raw| serde_json::from_str(raw.get())).transpose()
    }

    /// A capping member as the body gives it: one no value holds never counts as a cap.
    fn cap(self) -> Cap {
        self.value().map_or(Cap::Other, |value| Cap::of(value.as_ref()))
    }
}

/// Reads the routing facts of a JSON request body.
pub fn read(body: &[u8]) -> Result<RequestFacts, GatewayError> {
    // Serde would also read a struct from an array: only an object is a request.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(GatewayError::BadJson("expected a JSON object".to_owned()));
    }
    let head: Head<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let model = match head.model {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(GatewayError::MissingModel),
    };
    let stream = match head.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(wrong_type("stream", "`stream` must be a boolean or null.")),
    };
    let options = head.stream_options.value().map_err(|e| GatewayError::BadJson(e.to_string()))?;
    let (include_usage, continuous_usage_stats) = match options {
        None | Some(Value::Null) => (false, false),
        Some(Value::Object(options)) => usage_options(&options)?,
        Some(_) => {
            return Err(wrong_type("stream_options", "`stream_options` must be an object or null."))
        }
    };
    if !matches!(head.background, None | Some(Value::Null) | Some(Value::Bool(false))) {
        // The Responses API answers a background request at once and generates afterwards,
        // out of the gateway's sight: its tokens could never be counted.
        return Err(GatewayError::Unsupported {
            param: "background",
            message: "Background responses are not supported through the gateway: their usage \
                      could not be counted. Send the request without `background`."
                .to_owned(),
        });
    }
    let n = head.n.as_ref().and_then(Value::as_u64).filter(|n| *n >= 1).unwrap_or(1);
    let completion = CompletionAsk {
        max_tokens: head.max_tokens.cap(),
        max_completion_tokens: head.max_completion_tokens.cap(),
        max_output_tokens: head.max_output_tokens.cap(),
        prompts: head.prompt.map_or(1, |p| count_prompts(p.get().as_bytes())),
    };
    // In `edit::EDITABLE`'s order.
    let editable =
        [head.stream_options, head.max_tokens, head.max_completion_tokens, head.max_output_tokens];
    let members = MemberSpans::of(body, editable.map(|raw| raw.0));
    Ok(RequestFacts {
        model,
        stream,
        include_usage,
        continuous_usage_stats,
        n,
        completion,
        members,
    })
}

/// `include_usage` and `continuous_usage_stats` as vLLM applies them.
fn usage_options(options: &Map<String, Value>) -> Result<(bool, bool), GatewayError> {
    let flag = |name: &str, default: bool| match options.get(name) {
        None => Ok(default),
        Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(wrong_type(
            "stream_options",
            &format!("`stream_options.{name}` must be a boolean or null."),
        )),
    };
    let include = flag("include_usage", true)?;
    let continuous = flag("continuous_usage_stats", false)?;
    Ok((include, include && continuous))
}

fn wrong_type(param: &'static str, message: &str) -> GatewayError {
    GatewayError::InvalidType { param, message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn facts(body: &str) -> RequestFacts {
        read(body.as_bytes()).unwrap()
    }

    #[test]
    fn reads_model_and_stream_flags() {
        let f = facts(
            r#"{"model":"qwen","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        );
        assert_eq!(
            f,
            RequestFacts {
                model: "qwen".into(),
                stream: true,
                include_usage: true,
                continuous_usage_stats: false,
                n: 1,
                completion: CompletionAsk { prompts: 1, ..CompletionAsk::default() },
                members: f.members.clone(),
            }
        );
        let f = facts("{\"model\":\"模型\",\"prompt\":\"你好\"}");
        assert_eq!(f.model, "模型");
        assert!(!f.stream && !f.include_usage);
        let f = facts(
            r#" {"stream_options":{"include_usage":true,"continuous_usage_stats":true,"x":[1]},"model":"m\u00e9"}"#,
        );
        assert_eq!((f.model.as_str(), f.continuous_usage_stats), ("mé", true));
        assert!(!facts(r#"{"model":"m","stream_options":null,"stream":null}"#).include_usage);
        assert!(!facts(r#"{"model":"m","stream":null}"#).stream);
    }

    #[test]
    fn members_no_value_holds_are_refused_or_never_a_cap() {
        let e = read(br#"{"model":"m","stream":true,"stream_options":{"\ud83e":true}}"#);
        assert!(matches!(e, Err(GatewayError::BadJson(_))), "{e:?}");
        let f = facts(r#"{"model":"m","max_tokens":1e999,"max_completion_tokens":5}"#);
        assert_eq!(
            (f.completion.max_tokens, f.completion.max_completion_tokens),
            (Cap::Other, Cap::Int(5))
        );
    }

    #[test]
    fn background_responses_are_refused_and_false_is_fine() {
        for background in ["true", "\"true\"", "1", "{}"] {
            let e = read(
                format!(r#"{{"model":"m","input":"x","background":{background}}}"#).as_bytes(),
            )
            .unwrap_err();
            assert!(
                matches!(&e, GatewayError::Unsupported { param: "background", .. }),
                "{background}: {e:?}"
            );
            assert_eq!((e.status(), e.code()), (400, "unsupported_parameter"));
        }
        for background in ["false", "null"] {
            assert!(read(
                format!(r#"{{"model":"m","input":"x","background":{background}}}"#).as_bytes()
            )
            .is_ok());
        }
    }

    #[test]
    fn stream_options_are_read_as_vllm_reads_them() {
        let ask = |options: &str| {
            let f = facts(&format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#));
            (f.include_usage, f.continuous_usage_stats)
        };
        assert_eq!(ask("{}"), (true, false), "include_usage defaults to true");
        assert_eq!(ask(r#"{"continuous_usage_stats":true}"#), (true, true));
        assert_eq!(
            ask(r#"{"include_usage":null,"continuous_usage_stats":true}"#),
            (false, false),
            "null is false"
        );
        assert_eq!(ask(r#"{"include_usage":false,"continuous_usage_stats":true}"#), (false, false));
        assert_eq!(ask(r#"{"include_usage":true,"continuous_usage_stats":null}"#), (true, false));
        assert_eq!(ask("null"), (false, false));
    }

    #[test]
    fn a_stream_that_is_not_a_boolean_is_refused() {
        for stream in [r#""true""#, "1", "0", r#""false""#, "[]", "{}", "1.0"] {
            let e = read(format!(r#"{{"model":"m","stream":{stream}}}"#).as_bytes()).unwrap_err();
            assert!(
                matches!(&e, GatewayError::InvalidType { param: "stream", .. }),
                "{stream}: {e:?}"
            );
            assert_eq!((e.status(), e.code()), (400, "invalid_type"));
        }
    }

    #[test]
    fn stream_options_of_the_wrong_type_are_refused() {
        for options in [
            r#""yes""#,
            "true",
            "[]",
            "1",
            r#"{"include_usage":"true"}"#,
            r#"{"include_usage":1}"#,
            r#"{"continuous_usage_stats":"yes"}"#,
        ] {
            let e = read(
                format!(r#"{{"model":"m","stream":true,"stream_options":{options}}}"#).as_bytes(),
            )
            .unwrap_err();
            assert!(
                matches!(&e, GatewayError::InvalidType { param: "stream_options", .. }),
                "{options}: {e:?}"
            );
        }
        let e = read(br#"{"model":"m","stream_options":{"include_usage":"1"}}"#).unwrap_err();
        assert_eq!(e.message(), "`stream_options.include_usage` must be a boolean or null.");
    }

    #[test]
    fn the_completion_caps_and_prompts_are_read_as_given() {
        let f = facts(
            r#"{"model":"m","max_tokens":50,"max_completion_tokens":"x","prompt":["a","b"]}"#,
        );
        assert_eq!(f.completion.max_tokens, Cap::Int(50));
        assert_eq!(f.completion.max_completion_tokens, Cap::Other);
        assert_eq!((f.completion.max_output_tokens, f.completion.prompts), (Cap::Absent, 2));
    }

    #[test]
    fn n_is_a_positive_integer_or_one() {
        assert_eq!(facts(r#"{"model":"m","n":4}"#).n, 4);
        for n in ["null", "0", "-2", "2.5", r#""3""#, "true"] {
            assert_eq!(facts(&format!(r#"{{"model":"m","n":{n}}}"#)).n, 1, "{n}");
        }
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
    }

    #[test]
    fn a_member_named_twice_is_refused() {
        let e = read(br#"{"model":"cheap","messages":[],"model":"expensive"}"#).unwrap_err();
        assert!(
            matches!(&e, GatewayError::BadJson(m) if m.contains("duplicate field `model`")),
            "{e:?}"
        );
        let e = read(br#"{"model":"m","stream":false,"stream":true}"#).unwrap_err();
        assert!(
            matches!(&e, GatewayError::BadJson(m) if m.contains("duplicate field `stream`")),
            "{e:?}"
        );
    }
}
