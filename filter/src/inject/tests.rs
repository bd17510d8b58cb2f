//! Injection of usage options into a streamed request's body, and of lowered limits; the
//! caller's view of the stream is in [`stream`].

use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

mod stream;

pub(crate) use stream::rewrite_with;

/// The body as the gateway forwards a streamed request: usage asked for (`None` when the body is
/// not a request).
fn inject_usage(body: &[u8], continuous: bool) -> Option<Vec<u8>> {
    let facts = crate::request_body::read(body).ok()?;
    let mut edit = BodyEdit::default();
    ask_for_usage(body, &facts.members, continuous, &mut edit);
    Some(edit.apply(body, &facts.members))
}

/// The body with `names` set to `value` as the limits lower them.
fn set_number_members(body: &[u8], names: &[&'static str], value: u64) -> Option<Vec<u8>> {
    let facts = crate::request_body::read(body).ok()?;
    let mut edit = BodyEdit::default();
    edit.set_number(names, value, &facts.members);
    Some(edit.apply(body, &facts.members))
}

fn inject(body: &str, continuous: bool) -> Value {
    let out = inject_usage(body.as_bytes(), continuous).unwrap();
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
}

#[test]
fn injection_adds_usage_options_and_keeps_the_rest() {
    let out =
        inject(r#"{"model":"m","stream":true,"stream_options":{"x":1},"temperature":0.7}"#, true);
    assert_eq!(
        out["stream_options"],
        serde_json::json!({"x":1,"include_usage":true,"continuous_usage_stats":true})
    );
    assert_eq!(out["temperature"], 0.7);
    let out = inject(r#"{"model":"m","stream":true,"stream_options":null}"#, false);
    assert_eq!(out["stream_options"], serde_json::json!({"include_usage": true}));
}

#[test]
fn injection_copies_the_rest_of_the_body_byte_for_byte() {
    let body = "\n { \"model\" : \"模型\",\n  \"messages\":[{\"role\":\"user\",\"content\":\"a \\\"q\\\" {x} \\u00e9\"}],\"stream\":true }\n";
    let out = String::from_utf8(inject_usage(body.as_bytes(), true).unwrap()).unwrap();
    assert_eq!(
        out,
        body.replacen(
            '{',
            "{\"stream_options\":{\"continuous_usage_stats\":true,\"include_usage\":true},",
            1
        )
    );
    assert_eq!(
        String::from_utf8(inject_usage(br#"{"model":"m"}"#, false).unwrap()).unwrap(),
        r#"{"stream_options":{"include_usage":true},"model":"m"}"#
    );
    let with_options =
        r#"{"a":[1,{"b":"}"}],"stream_options":{"include_usage":false},"model":"m"}"#;
    let out = String::from_utf8(inject_usage(with_options.as_bytes(), false).unwrap()).unwrap();
    assert_eq!(out, r#"{"a":[1,{"b":"}"}],"stream_options":{"include_usage":true},"model":"m"}"#);
    assert!(inject_usage(b"[1]", true).is_none());
    let escaped = r#"{"model":"m","stream\u005foptions":{"include_usage":false,"x":1}}"#;
    let out: Value =
        serde_json::from_slice(&inject_usage(escaped.as_bytes(), true).unwrap()).unwrap();
    assert_eq!(
        out,
        serde_json::json!({"model": "m", "stream_options": {"x": 1, "include_usage": true, "continuous_usage_stats": true}})
    );
    assert!(inject_usage(b"{\"a\":", true).is_none());
}

/// Found by `cargo xtask fuzz` (`request_body`): a body with a key spelled with escapes used to
/// be re-serialised whole, which fails on what a request body may hold in its other members
/// (a lone surrogate, `"\ud800"`, which `read` and Python's `json` accept) and left the stream
/// without usage.
#[test]
fn an_escaped_key_does_not_make_injection_depend_on_the_rest_of_the_body() {
    for body in [
        r#"{"mod\u0065l":"m","stream":true,"messages":[{"role":"user","content":"hi \ud800"}]}"#,
        r#"{"model":"m","stream\u005foptions":{"x":1},"stream":true,"prompt":"\udfff"}"#,
    ] {
        assert!(crate::request_body::read(body.as_bytes()).is_ok());
        let out = String::from_utf8(inject_usage(body.as_bytes(), true).unwrap()).unwrap();
        assert_eq!(
            crate::request_body::read(out.as_bytes())
                .map(|f| (f.include_usage, f.continuous_usage_stats)),
            Ok((true, true)),
            "{out}"
        );
        assert!(
            out.contains(r"\ud") && out.contains(r#""stream":true"#),
            "the rest is copied byte for byte: {out}"
        );
    }
    let escaped = r#"{"model":"m","stream\u005foptions":{"include_usage":false,"x":1},"z":0}"#;
    let out = String::from_utf8(inject_usage(escaped.as_bytes(), false).unwrap()).unwrap();
    assert_eq!(out, r#"{"model":"m","stream\u005foptions":{"include_usage":true,"x":1},"z":0}"#);
}

#[test]
fn what_the_caller_asked_is_read() {
    let ask = |s: &str| UsageAsk::of(&crate::request_body::read(s.as_bytes()).unwrap());
    assert_eq!(ask(r#"{"model":"m"}"#), UsageAsk::default());
    assert_eq!(
        ask(r#"{"model":"m","stream_options":{"include_usage":true}}"#),
        UsageAsk { include_usage: true, continuous: false }
    );
    // vLLM's `StreamOptions.include_usage` defaults to true once `stream_options` is there.
    assert_eq!(
        ask(r#"{"model":"m","stream_options":{}}"#),
        UsageAsk { include_usage: true, continuous: false }
    );
    assert_eq!(
        ask(r#"{"model":"m","stream_options":{"continuous_usage_stats":true}}"#),
        UsageAsk { include_usage: true, continuous: true }
    );
    assert_eq!(
        ask(
            r#"{"model":"m","stream_options":{"include_usage":null,"continuous_usage_stats":true}}"#
        ),
        UsageAsk::default()
    );
    assert!(!ask(
        r#"{"model":"m","stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#
    )
    .needs_rewrite());
}

#[test]
fn max_tokens_is_lowered_in_place_or_added_first() {
    let set = |body: &str, names: &[&'static str]| {
        String::from_utf8(set_number_members(body.as_bytes(), names, 7).unwrap()).unwrap()
    };
    assert_eq!(
        set(r#"{"model":"m","max_tokens":100}"#, &["max_tokens"]),
        r#"{"model":"m","max_tokens":7}"#
    );
    assert_eq!(set(r#"{"model":"m"}"#, &["max_tokens"]), r#"{"max_tokens":7,"model":"m"}"#);
    assert_eq!(
        set(
            r#"{"max_completion_tokens":50,"x":[1],"max_tokens":null,"model":"m"}"#,
            &["max_tokens", "max_completion_tokens"]
        ),
        r#"{"max_completion_tokens":7,"x":[1],"max_tokens":7,"model":"m"}"#
    );
    assert_eq!(
        set(r#"{"max\u005ftokens": 90, "model":"m"}"#, &["max_tokens"]),
        r#"{"max\u005ftokens": 7, "model":"m"}"#
    );
    assert!(set_number_members(b"[1]", &["max_tokens"], 1).is_none());
}
