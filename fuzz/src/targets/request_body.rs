//! `request_body`: reading a request body's routing facts ([`request_body::read`]) and editing
//! it with what that one read found ([`BodyEdit`]): the usage options added ([`ask_for_usage`])
//! and `max_tokens` lowered. A refusal's error reply is valid JSON; a body that reads is edited
//! into a body that still reads, with the same model, `stream` and `n`, usage asked for, the
//! cap set, and every other member unchanged.

use serde_json::Value;
use vllm_gateway_filter::inject::ask_for_usage;
use vllm_gateway_filter::request_body::{self, BodyEdit, RequestFacts};

use super::{outcome, Target};
use crate::rng::hash_bytes;

pub const TARGET: Target = Target {
    name: "request_body",
    about: "request-body reader and usage injection: injected bodies read the same, with usage",
    run,
    dictionary: &[
        b"\"model\":\"m\"",
        b"\"model\"",
        b"\"stream\":true",
        b"\"stream\"",
        b"\"stream_options\":{}",
        b"\"stream_options\"",
        b"\"include_usage\":true",
        b"\"include_usage\"",
        b"\"continuous_usage_stats\":true",
        b"\"n\":2",
        b"\"n\"",
        b"\"background\":false",
        b"\"stream\\u005foptions\"",
        b"\"mod\\u0065l\"",
        b"\"max_tokens\":5",
        b"\"max_completion_tokens\":null",
        b"\"max\\u005ftokens\"",
        b"\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]",
    ],
};

fn run(input: &[u8]) -> u64 {
    let facts = match request_body::read(input) {
        Ok(facts) => facts,
        Err(error) => {
            let body: Result<Value, _> = serde_json::from_slice(&error.body());
            assert!(body.is_ok(), "the error reply is not JSON: {error:?}");
            return outcome(&[0, hash_bytes(error.code().as_bytes())]);
        }
    };
    for continuous in [false, true] {
        check_injection(input, &facts, continuous);
    }
    outcome(&[
        1,
        u64::from(facts.stream),
        u64::from(facts.include_usage),
        u64::from(facts.continuous_usage_stats),
    ])
}

/// The members the check edits.
const EDITED: [&str; 3] = ["stream_options", "max_tokens", "max_completion_tokens"];

fn check_injection(body: &[u8], facts: &RequestFacts, continuous: bool) {
    let caps = ["max_tokens", "max_completion_tokens"];
    let mut edit = BodyEdit::default();
    ask_for_usage(body, &facts.members, continuous, &mut edit);
    edit.set_number(&caps, 7, &facts.members);
    let injected = edit.apply(body, &facts.members);
    let after = request_body::read(&injected)
        .unwrap_or_else(|e| panic!("the edited body no longer reads: {e:?}"));
    assert_eq!(after.completion.honoured(&caps), Some(7), "the cap was not set");
    assert_eq!(
        (&after.model, after.stream, after.n),
        (&facts.model, facts.stream, facts.n),
        "routing facts changed"
    );
    assert!(after.include_usage, "usage not asked for after injection");
    assert!(
        after.continuous_usage_stats || !continuous,
        "continuous usage not asked for after injection"
    );
    // The edited members are compared apart: the body's own values of them may be what no
    // `Value` reads (a number out of range, a key with a lone surrogate). `read` skips the
    // members it does not need without checking them (an invalid UTF-8 string there is the
    // upstream's to refuse), so the rest may not be a `Value` either: then neither is the edited
    // body.
    let mut neutral = BodyEdit::default();
    for edited in EDITED {
        neutral.set(edited, b"null".to_vec());
    }
    let before_edits = neutral.apply(body, &facts.members);
    let (mut before, mut after): (Value, Value) =
        match (serde_json::from_slice(&before_edits), serde_json::from_slice(&injected)) {
            (Ok(before), Ok(after)) => (before, after),
            (Err(_), Err(_)) => return,
            (before, after) => {
                panic!("one is not JSON: before {:?}, after {:?}", before.err(), after.err())
            }
        };
    for value in [&mut before, &mut after] {
        if let Some(object) = value.as_object_mut() {
            for edited in EDITED {
                object.remove(edited);
            }
        }
    }
    assert_eq!(before, after, "members other than the edited ones changed");
}
