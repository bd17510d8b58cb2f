//! The peer arm (`cargo xtask bench --peers`): the LiteLLM proxy
//! ([`crate::litellm::LITELLM_PACKAGE`] from PyPI, in a venv under `.tools/litellm`) in front of
//! the same mock vLLM as the other arms, in its best configuration on this machine: one uvicorn
//! worker per core, no database, a master key (its calls carry a key as ours do), logging at
//! errors only. The arms take turns under the same `wrk` load and body (A-B-C-C-B-A over the
//! rounds): the whole stack as `cargo xtask up` runs it (the Envoy with the build of the filter
//! `up` picks for it, [`gateway_stack::filter_build::best_for`], its real key, access logs
//! flowing to the control plane), LiteLLM, plain Envoy (router only), and, when `up` picks the
//! native module, the same stack with the wasm filter, at concurrency 1 and 32:
//!
//! - `litellm_throughput_ratio`: the stack's requests per second over LiteLLM's, concurrency 32;
//! - `litellm_throughput_ratio_wasm`: the same with the wasm filter;
//! - `litellm_throughput_ratio_c1`: the stack's at concurrency 1;
//! - `litellm_added_p50_ms`: LiteLLM's p50 minus plain Envoy's at concurrency 1, with ours (the
//!   stack's minus plain Envoy's, same runs) in the note.
//!
//! When LiteLLM cannot be installed or started, or fails under load, the three are reported as
//! not measured with the reason, and the rest of the bench goes on.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::arms::{chat_body, Arms};
use crate::cpu::{self, Snapshot, SETTLE};
use crate::litellm::{self, Litellm};
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::{median, total_rps};
use crate::wrk::{self, Load, Run};

/// The figures of this arm and their units.
const KEYS: [(&str, &str); 4] = [
    ("litellm_throughput_ratio", "ratio"),
    ("litellm_throughput_ratio_wasm", "ratio"),
    ("litellm_throughput_ratio_c1", "ratio"),
    ("litellm_added_p50_ms", "ms"),
];

/// Records the figures as not measured because `--peers` was not given.
pub fn skipped(report: &mut Report) {
    for (key, unit) in KEYS {
        report.not_measured(key, unit, "the peer arm runs with `cargo xtask bench --peers`");
    }
}

/// Installs and starts LiteLLM and measures the three arms; on any failure of LiteLLM's, records
/// the figures as not measured with the reason instead of failing the bench.
pub async fn measure(arms: &Arms, s: &Settings, report: &mut Report) {
    if let Err(e) = measure_or_fail(arms, s, report).await {
        eprintln!("gateway-bench: LiteLLM was not measured: {e:#}");
        let why: String = format!("{e:#}").chars().take(300).collect();
        for (key, unit) in KEYS {
            report.not_measured(key, unit, format!("LiteLLM: {why}"));
        }
    }
}

async fn measure_or_fail(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let bin = litellm::ensure_installed().context("installing LiteLLM")?;
    let body = chat_body(false, 16);
    let model: Value = serde_json::from_str(&body)?;
    let model = model["model"].as_str().context("the bench body names no model")?;
    let mut litellm =
        Litellm::start(&bin, &s.dir, &arms.mock, model).await.context("starting LiteLLM")?;
    litellm.wait_ready(&body).await?;
    // Both workers past their first requests, as the Envoys are by now.
    wrk::run(&s.wrk, &s.dir, &litellm.load(&body), 32, s.run_time).context("warming LiteLLM up")?;
    let build = gateway_stack::filter_build::best_for(&gateway_workspace::paths::envoy_bin()?)?;
    let up_runs_native = matches!(build, gateway_envoy::FilterBuild::Native(_));
    let stack = if up_runs_native { &arms.native } else { &arms.filtered };
    let stack_cpu = || -> Result<Duration> { Ok(Snapshot::take(stack.processes)?.stack()) };
    let wasm_cpu = || -> Result<Duration> { Ok(Snapshot::take(arms.filtered.processes)?.stack()) };
    let litellm_cpu = || cpu::group_cpu(litellm.pgid);
    let mut turns = vec![
        Turn {
            name: "stack",
            load: arms.load_as(&stack.url, &body, &arms.api_key),
            cpu: Some(&stack_cpu),
        },
        Turn { name: "litellm", load: litellm.load(&body), cpu: Some(&litellm_cpu) },
        Turn {
            name: "plain",
            load: arms.load_as(&arms.plain.url, &body, &arms.api_key),
            cpu: None,
        },
    ];
    if up_runs_native {
        turns.push(Turn {
            name: "stack_wasm",
            load: arms.load_as(&arms.filtered.url, &body, &arms.api_key),
            cpu: Some(&wasm_cpu),
        });
    }
    let mut details = serde_json::Map::new();
    details.insert("litellm".into(), litellm.describe());
    details.insert("stack_filter".into(), build.describe().into());
    for connections in [1u32, 32] {
        let runs = take_turns(&turns, s, connections)?;
        record(&runs, &litellm, build.describe(), connections, report);
        details.insert(
            format!("concurrency_{connections}"),
            runs.iter()
                .map(|(name, r)| ((*name).to_owned(), r.json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
    }
    report.detail("peers", Value::Object(details));
    Ok(())
}

/// One arm's turn in the rotation: its load, and how to read the CPU its processes used so far.
struct Turn<'a> {
    name: &'static str,
    load: Load,
    cpu: Option<&'a dyn Fn() -> Result<Duration>>,
}

/// An arm's runs and the CPU its processes used during them.
#[derive(Default)]
struct Runs {
    runs: Vec<Run>,
    cpu: Duration,
}

impl Runs {
    fn p50(&self) -> f64 {
        median(self.runs.iter().map(|r| r.p50_ms).collect())
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.runs.iter().map(|r| r.requests).sum::<f64>().max(1.0)
    }

    fn json(&self) -> Value {
        json!({
            "rps": total_rps(&self.runs),
            "p50_ms": self.p50(),
            "p99_ms": median(self.runs.iter().map(|r| r.p99_ms).collect()),
            "cpu_us_per_request": (!self.cpu.is_zero()).then(|| self.cpu_us_per_request()),
            "runs": self.runs.iter().map(Run::json).collect::<Vec<_>>(),
        })
    }
}

/// Every arm's runs at `connections`, in turn: forward on even rounds, backward on odd ones.
fn take_turns(turns: &[Turn], s: &Settings, connections: u32) -> Result<Vec<(&'static str, Runs)>> {
    let mut out: Vec<(&'static str, Runs)> =
        turns.iter().map(|a| (a.name, Runs::default())).collect();
    for round in 0..s.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..turns.len()).collect()
        } else {
            (0..turns.len()).rev().collect()
        };
        for i in order {
            let turn = &turns[i];
            let before = turn.cpu.map(|f| f()).transpose()?;
            let run = wrk::run(&s.wrk, &s.dir, &turn.load, connections, s.run_time)
                .with_context(|| format!("the {} arm", turn.name))?;
            // As in the other scenarios: the stack's last access-log rows land before its CPU is
            // read, and before the next arm runs.
            std::thread::sleep(SETTLE);
            if let (Some(f), Some(before)) = (turn.cpu, before) {
                out[i].1.cpu += f()?.saturating_sub(before);
            }
            out[i].1.runs.push(run);
        }
    }
    Ok(out)
}

/// The figures of one concurrency from its runs (stack, LiteLLM, plain, and the wasm stack when
/// the stack runs the native module); `filter`: the stack's build.
fn record(
    runs: &[(&'static str, Runs)],
    litellm: &Litellm,
    filter: &str,
    connections: u32,
    report: &mut Report,
) {
    let [(_, stack), (_, peer), (_, plain), rest @ ..] = runs else { return };
    let ratio = total_rps(&stack.runs) / total_rps(&peer.runs);
    let what = format!("the whole stack as `cargo xtask up` runs it ({filter}, real key, access logs to the control plane) / {}, non-streamed", litellm.label());
    let figures = format!(
        "{:.0} / {:.0} req/s, CPU {:.0} / {:.0} us per request",
        total_rps(&stack.runs),
        total_rps(&peer.runs),
        stack.cpu_us_per_request(),
        peer.cpu_us_per_request()
    );
    if connections == 1 {
        report.set(
            "litellm_throughput_ratio_c1",
            ratio,
            "ratio",
            format!("{what}, concurrency 1: {figures}"),
        );
        let ours = stack.p50() - plain.p50();
        let note = format!("LiteLLM's p50 minus plain Envoy's, non-streamed, concurrency 1, median of rounds; ours (the stack's) in the same runs: {ours:.3} ms");
        report.set("litellm_added_p50_ms", peer.p50() - plain.p50(), "ms", note);
    } else {
        report.set(
            "litellm_throughput_ratio",
            ratio,
            "ratio",
            format!("{what}, concurrency {connections}: {figures}"),
        );
        let (wasm, note) = match rest {
            [(_, wasm)] => (wasm, format!("the same stack with the proxy-wasm filter, same runs: {:.0} req/s, CPU {:.0} us per request", total_rps(&wasm.runs), wasm.cpu_us_per_request())),
            _ => (stack, "the stack runs the proxy-wasm filter: the same figure".to_owned()),
        };
        report.set(
            "litellm_throughput_ratio_wasm",
            total_rps(&wasm.runs) / total_rps(&peer.runs),
            "ratio",
            format!("{note}, concurrency {connections}"),
        );
    }
}
