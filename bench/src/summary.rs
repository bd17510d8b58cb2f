//! What a scenario reports of its runs: the total rate, medians of the rounds' latencies, and
//! the request-weighted CPU per request by process.

use serde_json::{json, Value};

use crate::cpu::CpuPerRequest;
use crate::wrk::Run;

/// Requests per second over all `runs`.
pub fn total_rps(runs: &[Run]) -> f64 {
    runs.iter().map(|r| r.requests).sum::<f64>() / runs.iter().map(|r| r.seconds).sum::<f64>()
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The request-weighted CPU per request of the runs, by process.
pub fn cpu(runs: &[Run]) -> CpuPerRequest {
    CpuPerRequest::mean(&runs.iter().filter_map(|r| Some((r.cpu?, r.requests))).collect::<Vec<_>>())
}

/// One arm's runs for the report's details: rate, median p50 and p99, CPU, every run.
pub fn arm_summary(runs: &[Run]) -> Value {
    json!({
        "rps": total_rps(runs),
        "p50_ms": median(runs.iter().map(|r| r.p50_ms).collect()),
        "p99_ms": median(runs.iter().map(|r| r.p99_ms).collect()),
        "cpu_us_per_request": cpu(runs).json(),
        "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
    })
}

/// Two arms' runs, with and without the filter, for the report's details.
pub fn summary(with: &[Run], without: &[Run]) -> Value {
    json!({"with_filter": arm_summary(with), "without_filter": arm_summary(without)})
}

/// Envoy's CPU per request with the filter minus without it: what the filter itself costs.
pub fn filter_cpu_us(with: &[Run], without: &[Run]) -> f64 {
    cpu(with).envoy - cpu(without).envoy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }
}
