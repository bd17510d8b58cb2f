//! The readers without serde against serde: on the shapes vLLM writes they must read without
//! serde, and on anything (tricky inputs, then generated mutations of real ones) they must
//! read what serde reads, or leave it to serde.

use crate::json_reader::mutations::mutations;
use crate::usage::choices::{self, Choices};
use crate::usage::reported;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const USAGES: &[&[u8]] = &[
    br#"{"prompt_tokens":12,"total_tokens":13,"completion_tokens":1}"#,
    br#" { "prompt_tokens" : 12 ,	"completion_tokens" : 0 } "#,
    br#"{"input_tokens":4,"output_tokens":2,"total_tokens":6,"input_tokens_details":{"cached_tokens":0}}"#,
    br#"{"prompt_tokens":46,"total_tokens":60,"completion_tokens":14,"prompt_tokens_details":null}"#,
    br#"{"prompt_tokens":null,"completion_tokens":3}"#,
    br#"{"x":[1,-2.5e-3,true,false,null,{"y":"\u00e9\n\"","z":[]}],"prompt_tokens":3}"#,
    br#"{"prompt_tokens":18446744073709551615}"#,
    br#"{}"#,
    b"null",
    b" null ",
];

const ODD_USAGES: &[&[u8]] = &[
    b"nul",
    b"nullx",
    b"[]",
    b"[1,2,3]",
    br#"{"prompt_tokens":1,"input_tokens":2}"#,
    br#"{"prompt_tokens":1,"prompt_tokens":2}"#,
    br#"{"prompt_tokens":null,"prompt_tokens":2}"#,
    br#"{"prompt_tokens":1.0}"#,
    br#"{"prompt_tokens":1e3}"#,
    br#"{"prompt_tokens":-1}"#,
    br#"{"prompt_tokens":-0}"#,
    br#"{"prompt_tokens":01}"#,
    br#"{"prompt_tokens":18446744073709551616}"#,
    br#"{"prompt_tokens":99999999999999999999999}"#,
    br#"{"prompt_tokens":"3"}"#,
    br#"{"prompt_tokens":true}"#,
    br#"{"pr\u006fmpt_tokens":5}"#,
    br#"{"prompt_tokens\n":5}"#,
    "{\"é\":1,\"prompt_tokens\":2}".as_bytes(),
    b"{\"x\":\"\xff\",\"prompt_tokens\":2}",
    b"{\"x\":\"\x01\",\"prompt_tokens\":2}",
    b"{\"x\x01\":1,\"prompt_tokens\":2}",
    br#"{"x":"\u12","prompt_tokens":2}"#,
    br#"{"x":"\q","prompt_tokens":2}"#,
    br#"{"x":01,"prompt_tokens":2}"#,
    br#"{"x":-,"prompt_tokens":2}"#,
    br#"{"x":1.,"prompt_tokens":2}"#,
    br#"{"x":1e,"prompt_tokens":2}"#,
    br#"{"x":1e+5,"prompt_tokens":2}"#,
    br#"{"x":[1,],"prompt_tokens":2}"#,
    br#"{"x":{,},"prompt_tokens":2}"#,
    br#"{"x":{"a" 1},"prompt_tokens":2}"#,
    br#"{"x":tru,"prompt_tokens":2}"#,
    br#"{"prompt_tokens":3,}"#,
    br#"{"prompt_tokens":3} x"#,
    br#"{"prompt_tokens":3}}"#,
    br#"{"prompt_tokens":3"#,
    b"",
];

const CHOICES: &[&[u8]] = &[
    br#"[{"index":0,"delta":{"content":"tok"},"logprobs":null,"finish_reason":null}]"#,
    br#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
    br#"[{"index":0,"delta":{"content":null,"tool_calls":[{"index":0,"id":"c","function":{"arguments":"{\"a\":1}"}}]}}]"#,
    br#"[{"index":1,"text":"x","stop_reason":null},{"index":0,"text":""}]"#,
    br#"[{"index":0,"delta":{"reasoning_content":"r"}}]"#,
    br#"[{"index":0,"delta":{"reasoning":"","content":null}}]"#,
    br#"[{"index":0,"delta":{"content":"\n\"q\"\\\/\t"}}]"#,
    "[{\"index\":0,\"delta\":{\"content\":\"é 你好 🚀\"}}]".as_bytes(),
    br#"[{"index":0,"delta":{"content":true}}]"#,
    br#"[{"index":0,"delta":null}]"#,
    br#"[{"index":0,"delta":{"tool_calls":null}}]"#,
    br#"[{"index":0,"logprobs":{"content":[{"token":"a","logprob":-0.5,"bytes":[97],"top_logprobs":[]}]},"delta":{"content":"a"}}]"#,
    br#" [ { "index" : 2 , "text" : "t" } ] "#,
    br#"[{}]"#,
    br#"[]"#,
    b"null",
];

const ODD_CHOICES: &[&[u8]] = &[
    br#"[{"index":0,"delta":{"content":"\u00e9"}}]"#,
    br#"[{"index":0,"delta":{"content":"\ud800"}}]"#,
    b"[{\"index\":0,\"delta\":{\"content\":\"\xff\"}}]",
    b"[{\"index\":0,\"delta\":{\"content\":\"\x01\"}}]",
    br#"[{"index":0,"delta":{"content":5}}]"#,
    br#"[{"index":0,"delta":{"content":1e400}}]"#,
    br#"[{"index":0,"delta":{"content":[]}}]"#,
    br#"[{"index":0,"delta":{"content":{"a":1}}}]"#,
    br#"[{"index":0,"index":1}]"#,
    br#"[{"index":0,"delta":{"content":"a","content":"b"}}]"#,
    br#"[{"index":-1}]"#,
    br#"[{"index":1.5}]"#,
    br#"[{"index":"0"}]"#,
    br#"[{"index":0,"delta":[]}]"#,
    br#"[{"index":0,"delta":["x"]}]"#,
    br#"[[0]]"#,
    br#"{"index":0}"#,
    br#"[{"index":0,"delta":{"content":"a"}} , ]"#,
    br#"[{"index":0,"delta":{"content":"a"}}"#,
    br#"[{"ind\u0065x":3}]"#,
    br#""text""#,
    b"5",
    b"",
];

fn check_usage(bytes: &[u8]) -> bool {
    let fast = reported::fast(bytes);
    if let Some(fast) = fast {
        let serde = reported::parse_with_serde(bytes);
        assert_eq!(fast, serde, "{}", bytes.escape_ascii());
    }
    assert_eq!(reported::parse_usage(bytes), reported::parse_with_serde(bytes));
    fast.is_some()
}

fn check_choices(bytes: &[u8]) -> bool {
    let fast = choices::fast(bytes);
    if let Some(fast) = fast {
        assert_eq!(fast, Choices::read_with_serde(bytes), "{}", bytes.escape_ascii());
    }
    assert_eq!(Choices::read(bytes), Choices::read_with_serde(bytes));
    fast.is_some()
}

#[test]
fn the_shapes_vllm_writes_are_read_without_serde_and_alike() {
    for usage in USAGES {
        assert!(check_usage(usage), "read by serde: {}", usage.escape_ascii());
    }
    for choices in CHOICES {
        assert!(check_choices(choices), "read by serde: {}", choices.escape_ascii());
    }
    let read = Choices::read(CHOICES[0]);
    assert_eq!(read, Choices { count: 1, first: Some(0), has_content: true });
    assert!(!Choices::read(CHOICES[1]).has_content);
}

#[test]
fn anything_odd_is_read_as_serde_reads_it() {
    for usage in ODD_USAGES {
        check_usage(usage);
    }
    for choices in ODD_CHOICES {
        check_choices(choices);
    }
}

/// Mutations of the shapes above (see [`mutations`]).
#[test]
fn mutated_inputs_are_read_as_serde_reads_them() {
    let usages = mutations(USAGES, 10_000, 0x9e37_79b9_7f4a_7c15);
    let choices = mutations(CHOICES, 10_000, 0x7f4a_7c15_9e37_79b9);
    let fast = usages.iter().filter(|input| check_usage(input)).count()
        + choices.iter().filter(|input| check_choices(input)).count();
    assert!(fast > 2_000, "only {fast} of 20,000 read without serde");
}
