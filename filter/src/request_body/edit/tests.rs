//! Edits made in one pass with the spans of the one read of the body.

use super::*;
use crate::request_body::read;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn edited(body: &str, edit: impl FnOnce(&mut BodyEdit, &MemberSpans)) -> String {
    let facts = read(body.as_bytes()).unwrap();
    let mut changes = BodyEdit::default();
    edit(&mut changes, &facts.members);
    String::from_utf8(changes.apply(body.as_bytes(), &facts.members)).unwrap()
}

#[test]
fn values_are_found_as_written_null_and_escaped_keys_included() {
    let body = " {\"model\":\"m\", \"stream_options\" :  null ,\"max\\u005ftokens\":\t12 }";
    let facts = read(body.as_bytes()).unwrap();
    let value = |name| facts.members.value_in(body.as_bytes(), name);
    assert_eq!(value("stream_options"), Some(&b"null"[..]));
    assert_eq!(value("max_tokens"), Some(&b"12"[..]));
    assert_eq!(value("max_output_tokens"), None);
    assert_eq!(value("model"), None, "only the editable members");
}

#[test]
fn replaced_and_added_members_are_written_in_one_pass() {
    let body = r#"{"max_tokens":100,"messages":[{"content":"a \"max_tokens\": 5"}],"stream_options":{"x":1},"model":"m"}"#;
    let out = edited(body, |edit, spans| {
        edit.set("stream_options", br#"{"include_usage":true}"#.to_vec());
        edit.set_number(&["max_tokens", "max_completion_tokens"], 7, spans);
    });
    assert_eq!(
        out,
        r#"{"max_tokens":7,"messages":[{"content":"a \"max_tokens\": 5"}],"stream_options":{"include_usage":true},"model":"m"}"#
    );
    let out = edited(" {\"model\":\"m\"}\n", |edit, spans| {
        edit.set_number(&["max_completion_tokens", "max_tokens"], 3, spans);
        edit.set("stream_options", b"{}".to_vec());
    });
    assert_eq!(out, " {\"max_completion_tokens\":3,\"stream_options\":{},\"model\":\"m\"}\n");
}

#[test]
fn a_later_setting_replaces_an_earlier_one_and_no_edit_copies_the_body() {
    let body = r#"{"model":"m","max_tokens":9}"#;
    let out = edited(body, |edit, spans| {
        edit.set_number(&["max_tokens"], 5, spans);
        edit.set_number(&["max_tokens"], 4, spans);
    });
    assert_eq!(out, r#"{"model":"m","max_tokens":4}"#);
    assert_eq!(edited(body, |_, _| {}), body);
    assert!(BodyEdit::default().is_empty());
}
