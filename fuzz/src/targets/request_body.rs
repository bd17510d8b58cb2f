//! `request_body`: reading a request body's routing facts ([`request_body::read`]) and adding
//! the usage options to it ([`inject_usage`]). A refusal's error reply is valid JSON; a body that
//! reads is injected into a body that still reads, with the same model, `stream` and `n`, usage
//! asked for, and every other member unchanged.

use serde_json::Value;
use vllm_gateway_filter::inject::inject_usage;
use vllm_gateway_filter::request_body::{self, RequestFacts};

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

fn check_injection(body: &[u8], facts: &RequestFacts, continuous: bool) {
    let injected = inject_usage(body, continuous)
        .unwrap_or_else(|| panic!("a body that reads was not injected"));
    let after = request_body::read(&injected)
        .unwrap_or_else(|e| panic!("the injected body no longer reads: {e:?}"));
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
    // `read` skips the members it does not need without checking them (an invalid UTF-8 string
    // there is the upstream's to refuse), so the body may not be a `Value`: then neither is the
    // injected one.
    let (mut before, mut after): (Value, Value) =
        match (serde_json::from_slice(body), serde_json::from_slice(&injected)) {
            (Ok(before), Ok(after)) => (before, after),
            (Err(_), Err(_)) => return,
            (before, after) => {
                panic!("one is not JSON: before {:?}, after {:?}", before.err(), after.err())
            }
        };
    for value in [&mut before, &mut after] {
        if let Some(object) = value.as_object_mut() {
            object.remove("stream_options");
        }
    }
    assert_eq!(before, after, "members other than `stream_options` changed");
}
