//! What each finished request adds to the Prometheus metrics Envoy serves at `/stats/prometheus`.
//!
//! Envoy's wasm metrics have no labels of their own: a name carries them as
//! `base;label=value;label=value`, and the `stats_tags` of the reference Envoy configuration turn
//! them into Prometheus labels. Label values come only from configured model names and fixed
//! reason codes (never raw client input), so the number of series stays bounded. Which refusals
//! are counted, and by which reason, is the error's to say ([`GatewayError::tally`]).

use crate::config::PluginConfig;
use crate::error::{GatewayError, Tally};
use crate::lookup::LookupResult;
use crate::record::UsageRecord;

/// How a metric is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// A distribution (buckets, sum, count).
    Histogram,
}

/// One observation: a metric (name with its labels), its kind, and the value to add or record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// `base;label=value…`.
    pub name: String,
    /// Counter or histogram.
    pub kind: MetricKind,
    /// Added to a counter, recorded in a histogram.
    pub value: u64,
}

/// Every metric the filter emits: its base name, kind and label names (in the order its
/// observations carry them). A host that wants its metrics declared up front (the native module)
/// declares these; a test checks every observation against them.
pub const FAMILIES: [(&str, MetricKind, &[&str]); 9] = [
    ("vllm_gateway_requests_total", MetricKind::Counter, &["model", "status_class"]),
    ("vllm_gateway_auth_failures_total", MetricKind::Counter, &["reason"]),
    ("vllm_gateway_limited_total", MetricKind::Counter, &["reason"]),
    ("vllm_gateway_cut_off_total", MetricKind::Counter, &["reason"]),
    ("vllm_gateway_prompt_tokens_total", MetricKind::Counter, &["model"]),
    ("vllm_gateway_completion_tokens_total", MetricKind::Counter, &["model"]),
    ("vllm_gateway_time_to_first_token_ms", MetricKind::Histogram, &["model"]),
    ("vllm_gateway_time_per_output_token_ms", MetricKind::Histogram, &["model"]),
    ("vllm_gateway_credential_lookups_total", MetricKind::Counter, &["result"]),
];

impl Observation {
    /// The base name and the label values, in order.
    pub fn parts(&self) -> (&str, Vec<&str>) {
        let mut parts = self.name.split(';');
        let base = parts.next().unwrap_or_default();
        (base, parts.map(|p| p.split_once('=').map_or("", |(_, v)| v)).collect())
    }
}

/// The observations of one finished request: `error` is what the gateway answered it with (a
/// refusal, or the error event of a stream it cut off), counted as the error says
/// ([`GatewayError::tally`]).
pub fn observations(
    record: &UsageRecord,
    error: Option<&GatewayError>,
    config: &PluginConfig,
) -> Vec<Observation> {
    let model = match record.model.as_deref() {
        Some(m) if config.models.contains_key(m) => label_value(m),
        Some(_) => UNKNOWN_MODEL.to_owned(),
        None => NO_MODEL.to_owned(),
    };
    let counter = |name: String, value: u64| Observation { name, kind: MetricKind::Counter, value };
    let histogram =
        |name: String, value: u64| Observation { name, kind: MetricKind::Histogram, value };
    let mut out = vec![counter(
        format!(
            "vllm_gateway_requests_total;model={model};status_class={}",
            status_class(record.status)
        ),
        1,
    )];
    if let Some(tally) = error.and_then(GatewayError::tally) {
        let (metric, reason) = match tally {
            Tally::AuthFailure(reason) => ("vllm_gateway_auth_failures_total", reason),
            Tally::Limited(reason) => ("vllm_gateway_limited_total", reason),
            Tally::CutOff(reason) => ("vllm_gateway_cut_off_total", reason),
        };
        out.push(counter(format!("{metric};reason={reason}"), 1));
    }
    let usage = record.usage;
    out.push(counter(
        format!("vllm_gateway_prompt_tokens_total;model={model}"),
        usage.prompt_tokens,
    ));
    out.push(counter(
        format!("vllm_gateway_completion_tokens_total;model={model}"),
        usage.completion_tokens,
    ));
    if let (Some(ttft), true) = (record.ttft_ms, record.cluster.is_some()) {
        out.push(histogram(format!("vllm_gateway_time_to_first_token_ms;model={model}"), ttft));
        if let (Some(total), true) = (record.duration_ms, usage.completion_tokens > 1) {
            let per_token = total.saturating_sub(ttft) / (usage.completion_tokens - 1);
            out.push(histogram(
                format!("vllm_gateway_time_per_output_token_ms;model={model}"),
                per_token,
            ));
        }
    }
    // Envoy refuses to add zero to a counter.
    out.retain(|o| o.kind == MetricKind::Histogram || o.value > 0);
    out
}

/// The observation of one credential lookup (or of a request that was refused without one):
/// `vllm_gateway_credential_lookups_total;result=found|absent|error|capped|cached`.
pub fn credential_lookup(result: LookupResult) -> Observation {
    Observation {
        name: format!("vllm_gateway_credential_lookups_total;result={}", result.label()),
        kind: MetricKind::Counter,
        value: 1,
    }
}

/// The `model` label of a request for a model no route serves.
const UNKNOWN_MODEL: &str = "unknown";
/// The `model` label of a request that named no model.
const NO_MODEL: &str = "none";
/// Every value of the `status_class` label ([`status_class`]).
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

fn status_class(status: u16) -> String {
    match status {
        100..=599 => format!("{}xx", status / 100),
        _ => "none".to_owned(),
    }
}

/// The values a label can take when the configuration alone says them (`model`,
/// `status_class`); `None` for the others (reasons, lookup results).
fn known_values(label: &str, config: &PluginConfig) -> Option<Vec<String>> {
    match label {
        "model" => Some(
            config
                .models
                .keys()
                .map(|m| label_value(m))
                .chain([UNKNOWN_MODEL.to_owned(), NO_MODEL.to_owned()])
                .collect(),
        ),
        "status_class" => Some(STATUS_CLASSES.map(str::to_owned).to_vec()),
        _ => None,
    }
}

/// The families whose label values the configuration alone says, each with every one of its
/// series (observation names): requests, tokens and latencies per model and status class — what
/// every request adds. A host where a labelled observation costs more than a plain one (the
/// native module: Envoy resolves a labelled stat's name on each call) declares these series one
/// by one up front; the other families stay labelled.
pub fn known_series(config: &PluginConfig) -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for (family, _, labels) in FAMILIES {
        let Some(values) =
            labels.iter().map(|l| known_values(l, config)).collect::<Option<Vec<_>>>()
        else {
            continue;
        };
        let mut names = vec![family.to_owned()];
        for (label, values) in labels.iter().zip(&values) {
            names = names
                .iter()
                .flat_map(|name| values.iter().map(move |v| format!("{name};{label}={v}")))
                .collect();
        }
        out.push((family, names));
    }
    out
}

/// A label value without the characters that separate labels in a metric name.
fn label_value(value: &str) -> String {
    value.chars().map(|c| if c == ';' || c == '=' { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[test]
    fn every_observation_is_of_a_declared_family() {
        let declared = |o: &Observation| {
            let (base, values) = o.parts();
            let labels: Vec<&str> = o
                .name
                .split(';')
                .skip(1)
                .filter_map(|p| p.split_once('=').map(|(k, _)| k))
                .collect();
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
    use crate::config::{ModelRoute, StateFeed};
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
        PluginConfig {
            models,
            state: StateFeed {
                cluster: "cp".into(),
                authority: "cp".into(),
                path: "/s".into(),
                token: "0123456789abcdef".into(),
                refresh_ms: 1000,
                timeout_ms: 1000,
                long_poll_ms: crate::config::DEFAULT_LONG_POLL_MS,
                lookup_negative_ttl_ms: crate::config::DEFAULT_LOOKUP_NEGATIVE_TTL_MS,
                lookups_per_second: crate::config::DEFAULT_LOOKUPS_PER_SECOND,
            },
            max_request_body_bytes: 1,
            max_buffered_request_bytes: 1,
            cluster_header: "x".into(),
            usage_injection: Default::default(),
            default_model: None,
            endpoints: crate::config::default_endpoints(),
            limits: crate::config::LimitsConfig::default(),
        }
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
}
