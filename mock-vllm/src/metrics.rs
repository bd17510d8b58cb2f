//! `GET /metrics`: vLLM's token counters in Prometheus' text format, as vLLM's server writes
//! them (prometheus_client's `make_asgi_app`, mounted on `/metrics` by vLLM's API server).
//!
//! - vLLM v1 (`vllm/v1/metrics/loggers.py`, `PrometheusStatLogger`) registers the Counters
//!   `vllm:prompt_tokens` ("Number of prefill tokens processed.") and `vllm:generation_tokens`
//!   ("Number of generation tokens processed.") with labelnames `["model_name", "engine"]`, and
//!   binds one series per engine at start, so they read 0 before the first request.
//! - prometheus_client's text exposition (`exposition.py`, `generate_latest`) appends `_total` to a
//!   counter's name, writes the labels sorted by name (`engine="0",model_name="…"`), writes values
//!   with `floatToGoString` (`12.0`; `1.234567e+06` from 7 digits on), and puts every counter's
//!   `_created` sample (Unix seconds) in a gauge family right after it. It gzips the body when the
//!   request's `Accept-Encoding` accepts gzip.
//! - What counts (`vllm/v1/metrics/stats.py`, `IterationStats.update_from_output`): every engine
//!   request adds its whole prompt when prefilled, and each token it generates. `n > 1` is `n`
//!   engine requests (see [`crate::fanout`]), so there a prompt counts `n` times while
//!   `usage.prompt_tokens` counts it once. Embeddings add their inputs' tokens.
//!
//! The mock counts a request's prompt when it admits it and its tokens as they are produced: a
//! stream the client leaves counts what was sent until then. A real vLLM serves one model; the
//! mock keeps one series per configured model (labelled with that name).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::gzip;
use crate::state::MockState;

/// prometheus_client's `CONTENT_TYPE_LATEST`.
pub(crate) const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The counters of one served model.
#[derive(Debug, Default)]
pub(crate) struct TokenCounters {
    prompt: AtomicU64,
    generation: AtomicU64,
}

/// A handle on one model's counters, kept by the request that adds to them.
pub(crate) type Meter = Arc<TokenCounters>;

impl TokenCounters {
    /// Prompt tokens prefilled.
    pub(crate) fn add_prompt(&self, tokens: u64) {
        self.prompt.fetch_add(tokens, Ordering::Relaxed);
    }

    /// Tokens generated.
    pub(crate) fn add_generation(&self, tokens: u64) {
        self.generation.fetch_add(tokens, Ordering::Relaxed);
    }

    /// `(prompt, generation)` so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.prompt.load(Ordering::Relaxed), self.generation.load(Ordering::Relaxed))
    }
}

/// The handler.
pub(crate) async fn handle(State(state): State<MockState>, headers: HeaderMap) -> Response {
    let body = render(&state.meters(), state.created_at());
    let gzipped =
        headers.get(ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).is_some_and(gzip::accepted);
    if gzipped {
        let headers = [(CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS), (CONTENT_ENCODING, "gzip")];
        (headers, gzip::encode(body.as_bytes())).into_response()
    } else {
        ([(CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS)], body).into_response()
    }
}

/// A counter family: its name, its help text, and how to read it.
type Family = (&'static str, &'static str, fn(&TokenCounters) -> u64);

/// The exposition of both counters for every model; `created` is their `_created` value.
pub(crate) fn render(meters: &[(String, Meter)], created: f64) -> String {
    let families: [Family; 2] = [
        ("vllm:prompt_tokens", "Number of prefill tokens processed.", |c| c.totals().0),
        ("vllm:generation_tokens", "Number of generation tokens processed.", |c| c.totals().1),
    ];
    let mut out = String::new();
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name}_total {help}\n# TYPE {name}_total counter");
        for (model, counters) in meters {
            let tokens = value(counters) as f64;
            let _ = writeln!(out, "{name}_total{} {}", labels(model), go_float(tokens));
        }
        let _ = writeln!(out, "# HELP {name}_created {help}\n# TYPE {name}_created gauge");
        for (model, _) in meters {
            let _ = writeln!(out, "{name}_created{} {}", labels(model), go_float(created));
        }
    }
    out
}

/// `{engine="0",model_name="…"}`, sorted by label name and escaped as prometheus_client does.
fn labels(model: &str) -> String {
    let escaped = model.replace('\\', r"\\").replace('\n', r"\n").replace('"', "\\\"");
    format!("{{engine=\"0\",model_name=\"{escaped}\"}}")
}

/// prometheus_client's `floatToGoString` for a value in `[0, 1e16)`: Python's `repr` (shortest
/// round trip, always with a `.`), switched to Go's exponent form (`e+0<exponent>`) when more
/// than 6 digits stand before the point.
pub(crate) fn go_float(value: f64) -> String {
    let mut repr = format!("{value}");
    if !repr.contains('.') {
        repr.push_str(".0");
    }
    let dot = repr.find('.').unwrap_or(repr.len());
    if value > 0.0 && dot > 6 {
        let digits = format!("{}.{}{}", &repr[..1], &repr[1..dot], &repr[dot + 1..]);
        let mantissa = digits.trim_end_matches(['0', '.']);
        format!("{mantissa}e+0{}", dot - 1)
    } else {
        repr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_prometheus_client_prints_them() {
        assert_eq!(go_float(0.0), "0.0");
        assert_eq!(go_float(12.0), "12.0");
        assert_eq!(go_float(999_999.0), "999999.0");
        assert_eq!(go_float(1_234_567.0), "1.234567e+06");
        assert_eq!(go_float(7_307_144.0), "7.307144e+06");
        assert_eq!(go_float(10_000_000.0), "1e+07");
        assert_eq!(go_float(1_718_000_000.5), "1.7180000005e+09");
    }

    #[test]
    fn both_counters_and_their_created_gauges_are_listed_per_model() {
        let counters = Meter::default();
        counters.add_prompt(5);
        counters.add_generation(2_000_000);
        let text = render(&[("m\"x".to_owned(), counters)], 1_700_000_000.25);
        let expected = "\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine=\"0\",model_name=\"m\\\"x\"} 5.0
# HELP vllm:prompt_tokens_created Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine=\"0\",model_name=\"m\\\"x\"} 1.70000000025e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine=\"0\",model_name=\"m\\\"x\"} 2e+06
# HELP vllm:generation_tokens_created Number of generation tokens processed.
# TYPE vllm:generation_tokens_created gauge
vllm:generation_tokens_created{engine=\"0\",model_name=\"m\\\"x\"} 1.70000000025e+09
";
        assert_eq!(text, expected);
    }
}
