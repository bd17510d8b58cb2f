//! Every observation names a declared family and, where the configuration says its series, a
//! known series; names, labels and values as the record and the error say.

use std::collections::BTreeMap;

#[test]
fn every_observation_is_of_a_declared_family() {
    let declared = |o: &Observation| {
        let (base, values) = o.parts();
        let labels: Vec<&str> =
            o.name.split(';').skip(1).filter_map(|p| p.split_once('=').map(|(k, _)| k)).collect();
        FAMILIES.iter().any(|(name, kind, names)| {
            *name == base
                && *kind == o.kind
                && *names == labels.as_slice()
                && values.len() == names.len()
        })
    };
    let record = UsageRecord {
        model: Some("org/m;x=1".into()),
        status: 200,
        ttft_ms: Some(5),
        duration_ms: Some(50),
        cluster: Some("c".into()),
        usage: Usage { prompt_tokens: 3, completion_tokens: 4, ..Default::default() },
        ..Default::default()
    };
    let mut all = observations(&record, None, &config());
    for error in tallied_errors() {
        all.extend(observations(&record, Some(&error), &config()));
    }
    all.push(credential_lookup(LookupResult::Found));
    assert!(all.len() >= 9);
    for o in &all {
        assert!(declared(o), "{} is not declared in FAMILIES", o.name);
    }
}

#[test]
fn every_observation_of_a_known_family_is_a_known_series() {
    let config = config();
    let known = known_series(&config);
    let families: Vec<&str> = known.iter().map(|(family, _)| *family).collect();
    let series: Vec<&String> = known.iter().flat_map(|(_, names)| names).collect();
    assert!(series
        .iter()
        .any(|n| *n == "vllm_gateway_requests_total;model=none;status_class=none"));
    for status in [0, 101, 200, 302, 404, 429, 503, 700] {
        for model in [Some("org/m;x=1"), Some("not-configured"), None] {
            let record = UsageRecord {
                model: model.map(str::to_owned),
                status,
                ttft_ms: Some(5),
                duration_ms: Some(50),
                cluster: Some("c".into()),
                usage: Usage { prompt_tokens: 3, completion_tokens: 4, ..Default::default() },
                ..Default::default()
            };
            for o in observations(&record, None, &config) {
                let base = o.name.split(';').next().unwrap_or("");
                if families.contains(&base) {
                    assert!(series.contains(&&o.name), "{} is not a known series", o.name);
                }
            }
        }
    }
    assert!(!families.contains(&"vllm_gateway_auth_failures_total"), "reasons stay labelled");
}

use super::*;
use crate::config::ModelRoute;
use crate::error::LimitError;
use crate::feed::limits::{LimitKind, Subject};
use crate::usage::Usage;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn limited(kind: LimitKind, cut_off: bool) -> GatewayError {
    GatewayError::Limited(Box::new(LimitError {
        kind,
        subject: Subject::App(1),
        model: None,
        limit: 1,
        remaining: 0,
        needed: 1,
        retry_after_secs: 1,
        cut_off,
    }))
}

/// An error of every tally.
fn tallied_errors() -> [GatewayError; 4] {
    [
        GatewayError::InvalidCredential,
        limited(LimitKind::TokensPerDay, false),
        limited(LimitKind::TokensPerMinute, true),
        GatewayError::LimitsUnavailable,
    ]
}

fn config() -> PluginConfig {
    let mut models = BTreeMap::new();
    models.insert("org/m;x=1".to_owned(), ModelRoute { cluster: "c".into(), api_key: None });
    PluginConfig::for_tests(models, 1, "x", "/s")
}

#[test]
fn a_served_request_counts_requests_tokens_and_latencies() {
    let record = UsageRecord {
        model: Some("org/m;x=1".into()),
        cluster: Some("c".into()),
        status: 200,
        usage: Usage { prompt_tokens: 5, completion_tokens: 11, total_tokens: 16 },
        ttft_ms: Some(40),
        duration_ms: Some(240),
        ..Default::default()
    };
    let names: Vec<(String, u64)> =
        observations(&record, None, &config()).into_iter().map(|o| (o.name, o.value)).collect();
    assert_eq!(
        names,
        vec![
            ("vllm_gateway_requests_total;model=org/m_x_1;status_class=2xx".to_owned(), 1),
            ("vllm_gateway_prompt_tokens_total;model=org/m_x_1".to_owned(), 5),
            ("vllm_gateway_completion_tokens_total;model=org/m_x_1".to_owned(), 11),
            ("vllm_gateway_time_to_first_token_ms;model=org/m_x_1".to_owned(), 40),
            ("vllm_gateway_time_per_output_token_ms;model=org/m_x_1".to_owned(), 20),
        ]
    );
}

#[test]
fn lookups_count_by_result() {
    let o = credential_lookup(LookupResult::Capped);
    assert_eq!(
        (o.name.as_str(), o.kind, o.value),
        ("vllm_gateway_credential_lookups_total;result=capped", MetricKind::Counter, 1)
    );
    assert_eq!(
        credential_lookup(LookupResult::Found).name,
        "vllm_gateway_credential_lookups_total;result=found"
    );
}

#[test]
fn refusals_count_their_reason_and_unknown_models_stay_unlabelled() {
    let error = GatewayError::InvalidCredential;
    let record = UsageRecord {
        status: 401,
        gateway_error: Some("invalid_api_key".into()),
        ..Default::default()
    };
    let names: Vec<String> =
        observations(&record, Some(&error), &config()).into_iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "vllm_gateway_requests_total;model=none;status_class=4xx",
            "vllm_gateway_auth_failures_total;reason=invalid_api_key"
        ]
    );
    let record = UsageRecord {
        status: 404,
        model: Some("made-up-by-a-client".into()),
        gateway_error: Some("model_not_found".into()),
        ..Default::default()
    };
    let error = GatewayError::UnknownModel("made-up-by-a-client".into());
    let names: Vec<String> =
        observations(&record, Some(&error), &config()).into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["vllm_gateway_requests_total;model=unknown;status_class=4xx"]);
}

#[test]
fn limits_count_what_they_refused_or_cut_off() {
    let reasons: Vec<Vec<String>> = tallied_errors()
        .iter()
        .skip(1)
        .map(|error| {
            let record = UsageRecord { status: error.status(), ..Default::default() };
            let all = observations(&record, Some(error), &config());
            all.into_iter().skip(1).map(|o| o.name).collect()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ["vllm_gateway_limited_total;reason=tokens_per_day"],
            ["vllm_gateway_cut_off_total;reason=tokens_per_minute"],
            ["vllm_gateway_limited_total;reason=limits_unavailable"],
        ]
    );
}

#[test]
fn names_hash_as_fnv_1a_and_are_found_by_name() {
    use std::hash::Hasher;
    let hash = |bytes: &[u8]| {
        let mut h = NameHash::default();
        h.write(bytes);
        h.finish()
    };
    assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    let mut ids = ByName::default();
    ids.insert("vllm_gateway_requests_total;model=m;status_class=2xx".to_owned(), 1);
    ids.insert("vllm_gateway_requests_total;model=m;status_class=4xx".to_owned(), 2);
    assert_eq!(ids.get("vllm_gateway_requests_total;model=m;status_class=4xx"), Some(&2));
    assert_eq!(ids.get("vllm_gateway_requests_total;model=n;status_class=4xx"), None);
}
