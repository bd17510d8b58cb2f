//! What each finished request adds to the Prometheus metrics Envoy serves at `/stats/prometheus`.
//!
//! Envoy's wasm metrics have no labels of their own: a name carries them as
//! `base;label=value;label=value`, and the `stats_tags` of the reference Envoy configuration turn
//! them into Prometheus labels. Label values come only from configured model names and fixed
//! reason codes (never raw client input), so the number of series stays bounded. Which refusals
//! are counted, and by which reason, is the error's to say ([`GatewayError::tally`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
        Some(_) => Cow::Borrowed(UNKNOWN_MODEL),
        None => Cow::Borrowed(NO_MODEL),
    };
    // Names are joined, not formatted: every request builds five of them.
    let per_model = |base: &str| [base, ";model=", &model].concat();
    let counter = |name: String, value: u64| Observation { name, kind: MetricKind::Counter, value };
    let histogram =
        |name: String, value: u64| Observation { name, kind: MetricKind::Histogram, value };
    let mut out = Vec::with_capacity(6);
    let class = status_class(record.status);
    let requests = ["vllm_gateway_requests_total;model=", &model, ";status_class=", class];
    out.push(counter(requests.concat(), 1));
    if let Some(tally) = error.and_then(GatewayError::tally) {
        let (metric, reason) = match tally {
            Tally::AuthFailure(reason) => ("vllm_gateway_auth_failures_total", reason),
            Tally::Limited(reason) => ("vllm_gateway_limited_total", reason),
            Tally::CutOff(reason) => ("vllm_gateway_cut_off_total", reason),
        };
        out.push(counter([metric, ";reason=", reason].concat(), 1));
    }
    let usage = record.usage;
    out.push(counter(per_model("vllm_gateway_prompt_tokens_total"), usage.prompt_tokens));
    out.push(counter(per_model("vllm_gateway_completion_tokens_total"), usage.completion_tokens));
    if let (Some(ttft), true) = (record.ttft_ms, record.cluster.is_some()) {
        out.push(histogram(per_model("vllm_gateway_time_to_first_token_ms"), ttft));
        if let (Some(total), true) = (record.duration_ms, usage.completion_tokens > 1) {
            let per_token = total.saturating_sub(ttft) / (usage.completion_tokens - 1);
            out.push(histogram(per_model("vllm_gateway_time_per_output_token_ms"), per_token));
        }
    }
    // Envoy refuses to add zero to a counter.
    out.retain(|o| o.kind == MetricKind::Histogram || o.value > 0);
    out
}

/// A host's stats by observation name (an Envoy stat id, say). Five lookups a request, of names
/// the filter made itself from its configuration and fixed reason codes: no caller picks them,
/// so the standard hasher's resistance to chosen collisions, at several times the cost of
/// FNV-1a, buys nothing here.
pub type ByName<V> = HashMap<String, V, BuildHasherDefault<NameHash>>;

/// FNV-1a over a name's bytes (see [`ByName`]).
#[derive(Debug, Default)]
pub struct NameHash(u64);

impl Hasher for NameHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const BASIS: u64 = 0xcbf2_9ce4_8422_2325;
        let start = if self.0 == 0 { BASIS } else { self.0 };
        self.0 =
            bytes.iter().fold(start, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    }
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

fn status_class(status: u16) -> &'static str {
    match status {
        100..=599 => STATUS_CLASSES.get(usize::from(status / 100 - 1)).copied().unwrap_or("none"),
        _ => "none",
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
                .map(|m| label_value(m).into_owned())
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
fn label_value(value: &str) -> Cow<'_, str> {
    if value.contains([';', '=']) {
        Cow::Owned(value.replace([';', '='], "_"))
    } else {
        Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests;
