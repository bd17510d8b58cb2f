//! The bench report: each figure with its unit, its target and whether it is met, printed as a
//! table and written as JSON (`target/bench/report.json`).

use std::path::Path;

use anyhow::Result;
use serde_json::{json, Map, Value};

/// The keys every report has (the list); each is present even when not measured.
pub const REQUIRED_KEYS: [&str; 23] = [
    "native_throughput_ratio",
    "native_cpu_us_per_request",
    "native_stream_throughput_ratio",
    "floor_gap",
    "ingest_cpu_us_per_row",
    "throughput_ratio",
    "limits_throughput_ratio",
    "added_p50_ms",
    "added_p99_ms",
    "ttft_added_ms",
    "stream_throughput_ratio",
    "sse_mb_per_s_native",
    "sse_mb_per_s_wasm",
    "als_rows_per_s",
    "logs_query_p99_ms_1m",
    "wasm_bytes",
    "state_bytes_100k",
    "adopt_ms_100k",
    "rss_mib_per_worker_100k",
    "change_p99_ratio_100k",
    "first_use_ms",
    "stack_cpu_us_per_request",
    "litellm_throughput_ratio",
];

/// A direction and a bound.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The value must be at least this.
    AtLeast(f64),
    /// The value must be at most this.
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(bound) => value >= bound,
            Target::AtMost(bound) => value <= bound,
        }
    }

    fn json(self) -> Value {
        match self {
            Target::AtLeast(bound) => json!({"op": ">=", "value": bound}),
            Target::AtMost(bound) => json!({"op": "<=", "value": bound}),
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtLeast(bound) => format!(">= {bound}"),
            Target::AtMost(bound) => format!("<= {bound}"),
        }
    }
}

/// The target of a headline key, if it has one (the targets).
pub fn target_of(key: &str) -> Option<Target> {
    Some(match key {
        "throughput_ratio" => Target::AtLeast(0.85),
        "limits_throughput_ratio" => Target::AtLeast(0.95),
        "added_p99_ms" => Target::AtMost(1.0),
        "ttft_added_ms" => Target::AtMost(0.5),
        "sse_mb_per_s_wasm" => Target::AtLeast(200.0),
        "als_rows_per_s" => Target::AtLeast(20_000.0),
        "logs_query_p99_ms_1m" => Target::AtMost(20.0),
        "wasm_bytes" => Target::AtMost(1024.0 * 1024.0),
        "rss_mib_per_worker_100k" | "rss_mib_per_worker_100k_after_1000_changes" => {
            Target::AtMost(64.0)
        }
        "change_p99_ratio_100k" => Target::AtMost(1.5),
        // The first request with a new key succeeds: no key needs a second one.
        "first_use_retries" => Target::AtMost(0.0),
        "revocation_ms_p99" => Target::AtMost(1000.0),
        // The whole stack's requests per second over the LiteLLM proxy's (`--peers`).
        "litellm_throughput_ratio" => Target::AtLeast(60.0),
        // The native dynamic module: close to no filter at all.
        "native_throughput_ratio" => Target::AtLeast(0.93),
        "native_cpu_us_per_request" => Target::AtMost(10.0),
        "native_stream_throughput_ratio" => Target::AtLeast(0.85),
        // The wasm filter within 0.08 of the floor, streams at 0.6 or better.
        "floor_gap" => Target::AtMost(0.08),
        "stream_throughput_ratio" => Target::AtLeast(0.6),
        "ingest_cpu_us_per_row" => Target::AtMost(10.0),
        _ => return None,
    })
}

/// One figure.
#[derive(Debug, Clone)]
struct Figure {
    key: String,
    value: Option<f64>,
    unit: &'static str,
    note: String,
}

/// Figures in the order they were measured, plus raw details per scenario.
#[derive(Debug, Default)]
pub struct Report {
    figures: Vec<Figure>,
    details: Map<String, Value>,
}

impl Report {
    /// A figure measured earlier in the run.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).and_then(|f| f.value)
    }

    /// Records a measured figure; a non-finite value is recorded as not measured.
    pub fn set(&mut self, key: &str, value: f64, unit: &'static str, note: impl Into<String>) {
        let value = value.is_finite().then_some(value);
        self.put(Figure { key: key.into(), value, unit, note: note.into() });
    }

    /// Records a figure that was not measured, and why.
    pub fn not_measured(&mut self, key: &str, unit: &'static str, why: impl Into<String>) {
        self.put(Figure {
            key: key.into(),
            value: None,
            unit,
            note: format!("not measured: {}", why.into()),
        });
    }

    fn put(&mut self, figure: Figure) {
        self.figures.retain(|f| f.key != figure.key);
        self.figures.push(figure);
    }

    /// Keeps a scenario's raw numbers in the report's `details`.
    pub fn detail(&mut self, scenario: &str, value: Value) {
        self.details.insert(scenario.into(), value);
    }

    /// The JSON document: `metrics.<key> = {value, unit, target, met, note}` for every figure.
    pub fn to_json(&self, quick: bool) -> Value {
        let mut figures: Vec<Figure> = self.figures.clone();
        for key in REQUIRED_KEYS {
            if !figures.iter().any(|f| f.key == key) {
                figures.push(Figure {
                    key: key.into(),
                    value: None,
                    unit: "",
                    note: "not measured: scenario did not run".into(),
                });
            }
        }
        let metrics: Map<String, Value> = figures
            .iter()
            .map(|f| {
                let target = target_of(&f.key);
                let met = match (target, f.value) {
                    (Some(t), Some(v)) => json!(t.met(v)),
                    _ => Value::Null,
                };
                let entry = json!({
                    "value": f.value,
                    "unit": f.unit,
                    "target": target.map(Target::json),
                    "met": met,
                    "note": f.note,
                });
                (f.key.clone(), entry)
            })
            .collect();
        json!({
            "quick": quick,
            "machine": machine(),
            "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "metrics": metrics,
            "details": self.details,
        })
    }

    /// The human table.
    pub fn table(&self) -> String {
        let width = self.figures.iter().map(|f| f.key.len()).max().unwrap_or(0).max(26);
        let mut out = format!(
            "{:<width$} {:>14} {:<10} {:<12} {}\n",
            "metric", "value", "unit", "target", "met"
        );
        for f in &self.figures {
            let target = target_of(&f.key);
            let value = f.value.map_or_else(|| "-".to_string(), format_value);
            let met = match (target, f.value) {
                (Some(t), Some(v)) if t.met(v) => "yes",
                (Some(_), Some(_)) => "NO",
                _ => "",
            };
            let target = target.map(Target::text).unwrap_or_default();
            out.push_str(&format!(
                "{:<width$} {:>14} {:<10} {:<12} {:<4} {}\n",
                f.key, value, f.unit, target, met, f.note
            ));
        }
        out
    }
}

fn format_value(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    });
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// Writes the report as pretty JSON, creating the folder.
pub fn write(path: &Path, report: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
    Ok(())
}
