//! `cargo xtask bench [--quick]`: what the gateway costs the requests that pass through it,
//! measured side by side in one run on this machine (see the README's "Performance" section).
//!
//! - [`gateway`]: Envoy with the filter vs the same Envoy configuration without it, same mock,
//!   same load (`wrk`), arms alternated; plus the mock's own capacity, and time to first token
//!   with the mock paced like a real server.
//! - [`floor`]: a minimal body-routing proxy-wasm filter as a third arm: V8's own price.
//!   A fourth arm runs the native dynamic module ([`gateway::native`]).
//! - [`limits`]: the filtered arm with generous limits on the app vs without: what enforcing
//!   limits costs.
//! - [`cpu`]: CPU time per request of each process during a run.
//! - [`sse`], [`sse_wasm`]: the filter's SSE parser and usage extraction alone, native and as
//!   wasm under Node.
//! - [`cp`]: the control plane's access-log sink and `GET /api/logs` over a million rows.
//! - [`peers`] (`--peers` only): the LiteLLM proxy in front of the same mock, against the whole
//!   stack and plain Envoy.
//! - [`scale`]: 100,000 apps and keys and 10,000 users: the state's size, a worker's start,
//!   Envoy's memory, latency while keys change, first use and revocation.
//! - [`report`]: the table and `target/bench/report.json`.
//!
//! A full run builds the wasm filter, the control plane and this xtask in release and re-runs
//! itself from the release build, so that the native parser is measured optimised. `--quick`
//! runs every scenario briefly with what is already built (the shape test uses it).

mod cp;
mod cpu;
mod floor;
mod generated;
mod gateway;
mod limits;
mod peers;
mod report;
mod scale;
mod sse;
mod sse_wasm;
mod ttft;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::build::{cargo, run_checked};

/// `cargo xtask bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Every scenario briefly (about a minute); figures are only indicative.
    #[arg(long)]
    pub quick: bool,
    /// Internal: already re-run from the release build.
    #[arg(long, hide = true)]
    pub in_release: bool,
    /// Only this scenario (`scale`); its report goes to `target/bench/report-<name>.json`.
    #[arg(long, hide = true, value_enum)]
    pub only: Option<Only>,
    /// Also run the LiteLLM proxy (installed from PyPI into `.tools/litellm`) in front of the same
    /// mock vLLM, and compare the whole stack with it.
    #[arg(long)]
    pub peers: bool,
}

/// A scenario that can be run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// The scale scenario ([`scale`]).
    Scale,
    /// The limits arm ([`limits`]) alone.
    Limits,
    /// The wasm filter, the floor and the native module against no filter, non-streamed and
    /// streamed ([`gateway`]) alone.
    Builds,
    /// The peer arm ([`peers`]) alone (implies `--peers`).
    Peers,
}

/// How long and how much each scenario runs.
pub struct Settings {
    /// The wrk binary.
    pub wrk: PathBuf,
    /// Scratch folder (configs, scripts, database).
    pub dir: PathBuf,
    /// ABBA rounds per comparison.
    pub rounds: u32,
    /// Length of each wrk run.
    pub run_time: Duration,
    /// Time-to-first-byte samples per arm.
    pub ttft_samples: u32,
    /// ALS entries replayed.
    pub als_rows: u32,
    /// Rows seeded for the log query.
    pub log_rows: u32,
    /// Time spent in the native parser.
    pub sse_budget: Duration,
    /// Use the release control plane.
    pub release: bool,
    /// The scale scenario's fleet and runs.
    pub scale: scale::Sizes,
    /// Run the peer arm ([`peers`]).
    pub peers: bool,
}

impl Settings {
    fn new(quick: bool, peers: bool, wrk: PathBuf, dir: PathBuf) -> Self {
        if quick {
            Settings {
                wrk,
                dir,
                rounds: 1,
                run_time: Duration::from_secs(1),
                ttft_samples: 5,
                als_rows: 5_000,
                log_rows: 20_000,
                sse_budget: Duration::from_millis(200),
                release: false,
                scale: scale::Sizes::new(true),
                peers,
            }
        } else {
            Settings {
                wrk,
                dir,
                rounds: 4,
                run_time: Duration::from_secs(5),
                ttft_samples: 100,
                als_rows: 100_000,
                log_rows: 1_000_000,
                sse_budget: Duration::from_secs(3),
                release: true,
                scale: scale::Sizes::new(false),
                peers,
            }
        }
    }
}

/// Where the report goes.
pub fn report_path() -> PathBuf {
    gateway_e2e::paths::target_dir().join("bench").join("report.json")
}

/// Where the report of one scenario run alone goes (never over the whole run's report).
fn only_report_path(only: Only) -> PathBuf {
    let name = match only {
        Only::Scale => "scale",
        Only::Limits => "limits",
        Only::Builds => "builds",
        Only::Peers => "peers",
    };
    report_path().with_file_name(format!("report-{name}.json"))
}

/// The command: set up and build, then measure (from the release build for a full run).
pub fn run(args: &BenchArgs) -> Result<()> {
    if !args.in_release {
        crate::setup::run()?;
        crate::build::run()?;
        if !args.quick {
            run_checked(cargo().args([
                "build",
                "--release",
                "--package",
                "control-plane",
                "--package",
                "xtask",
            ]))?;
            let me = gateway_e2e::paths::target_dir().join("release").join("xtask");
            let mut again = std::process::Command::new(me);
            again.args(["bench", "--in-release"]);
            match args.only {
                Some(Only::Scale) => again.args(["--only", "scale"]),
                Some(Only::Limits) => again.args(["--only", "limits"]),
                Some(Only::Builds) => again.args(["--only", "builds"]),
                Some(Only::Peers) => again.args(["--only", "peers"]),
                None => &mut again,
            };
            if args.peers {
                again.arg("--peers");
            }
            return run_checked(&mut again);
        }
    }
    let out = args.only.map_or_else(report_path, only_report_path);
    let report = measure(args.quick, args.only, args.peers, &out)?;
    println!("{}", serde_json::to_string_pretty(&report["metrics"]).unwrap_or_default());
    eprintln!("xtask bench: report written to {}", out.display());
    Ok(())
}

/// Runs every scenario (or only `only`; the peer arm only with `peers`), prints the table, writes
/// the report to `out` and returns it.
pub fn measure(
    quick: bool,
    only: Option<Only>,
    peers: bool,
    out: &std::path::Path,
) -> Result<serde_json::Value> {
    let wrk = wrk::ensure()?;
    let scratch = tempfile::Builder::new().prefix("vllm-gateway-bench-").tempdir()?;
    let settings = Settings::new(quick, peers, wrk, scratch.path().to_path_buf());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut report = report::Report::default();
    match only {
        None => runtime.block_on(scenarios(&settings, &mut report))?,
        Some(Only::Scale) => runtime
            .block_on(scale::measure(&settings, &mut report))
            .context("the scale scenario")?,
        Some(Only::Limits) => {
            runtime.block_on(limits_alone(&settings, &mut report)).context("the limits scenario")?
        }
        Some(Only::Builds) => {
            runtime.block_on(builds_alone(&settings, &mut report)).context("the builds scenario")?
        }
        Some(Only::Peers) => {
            runtime.block_on(peers_alone(&settings, &mut report)).context("the peer arm")?
        }
    }
    let json = report.to_json(quick);
    eprintln!("\n{}", report.table());
    report::write(out, &json)?;
    Ok(json)
}

/// The two builds and the floor against no filter (`--only builds`), on their own control plane
/// and Envoys.
async fn builds_alone(s: &Settings, report: &mut report::Report) -> Result<()> {
    let cp = cp::ControlPlane::start(&cp::binary(s.release)?, &s.dir)
        .await
        .context("starting the control plane")?;
    let arms = gateway::Arms::start(&cp, &s.dir).await.context("starting the Envoys")?;
    gateway::non_streamed(&arms, s, report)?;
    gateway::floor(&arms, s, report)?;
    gateway::floor_gap(report);
    gateway::native(&arms, s, report)?;
    gateway::streamed(&arms, s, report)
}

/// The limits arm alone (`--only limits`), on its own control plane and Envoys.
async fn limits_alone(s: &Settings, report: &mut report::Report) -> Result<()> {
    let cp = cp::ControlPlane::start(&cp::binary(s.release)?, &s.dir)
        .await
        .context("starting the control plane")?;
    let arms = gateway::Arms::start(&cp, &s.dir).await.context("starting the two Envoys")?;
    limits::non_streamed(&arms, s, report)
}

/// The peer arm alone (`--only peers`), on its own control plane and Envoys.
async fn peers_alone(s: &Settings, report: &mut report::Report) -> Result<()> {
    let cp = cp::ControlPlane::start(&cp::binary(s.release)?, &s.dir)
        .await
        .context("starting the control plane")?;
    let arms = gateway::Arms::start(&cp, &s.dir).await.context("starting the two Envoys")?;
    peers::measure(&arms, s, report).await;
    Ok(())
}

async fn scenarios(s: &Settings, report: &mut report::Report) -> Result<()> {
    let wasm = gateway_e2e::paths::filter_wasm()?;
    report.set(
        "wasm_bytes",
        std::fs::metadata(&wasm)?.len() as f64,
        "bytes",
        "the filter, profile wasm (LTO, stripped)",
    );
    sse::native(s.sse_budget, report)?;
    if let Err(e) = sse_wasm::measure(&sse::stream_files()?, s.sse_budget, report) {
        eprintln!("xtask bench: the wasm parser was not measured: {e:#}");
        report.not_measured("sse_mb_per_s_wasm", "MB/s", format!("{e:#}"));
    }
    let cp = cp::ControlPlane::start(&cp::binary(s.release)?, &s.dir)
        .await
        .context("starting the control plane")?;
    cp::als_ingest(&cp, s.als_rows, report).await?;
    {
        let arms = gateway::Arms::start(&cp, &s.dir).await.context("starting the two Envoys")?;
        gateway::mock_capacity(&arms, s, report)?;
        gateway::non_streamed(&arms, s, report)?;
        gateway::floor(&arms, s, report)?;
        gateway::floor_gap(report);
        gateway::native(&arms, s, report)?;
        limits::non_streamed(&arms, s, report)?;
        gateway::streamed(&arms, s, report)?;
        ttft::paced(&arms, s, report).await?;
        if s.peers {
            peers::measure(&arms, s, report).await;
        } else {
            peers::skipped(report);
        }
    }
    cp::logs_query(&cp, s, s.log_rows, report).await?;
    drop(cp);
    scale::measure(s, report).await.context("the scale scenario")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The quick bench end to end (needs Envoy, the built filter and control plane, as the
    //! end-to-end tests do). Checks the report's shape, never its timings.

    use super::report::{target_of, REQUIRED_KEYS};

    #[test]
    fn the_quick_bench_writes_a_complete_report() {
        // Beside the real report, which a test run must not replace.
        let out = super::report_path().with_file_name("report-quick-test.json");
        let report = super::measure(true, None, false, &out).expect("the quick bench runs");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        // Floats may differ in the last digit after a JSON round trip: compare the shape.
        let keys = |v: &serde_json::Value| {
            v["metrics"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>())
        };
        assert_eq!(keys(&written), keys(&report));
        assert_eq!(written["quick"], report["quick"]);
        assert_eq!(report["quick"], true);
        let metrics = &report["metrics"];
        for key in REQUIRED_KEYS {
            let m = &metrics[key];
            assert!(m.is_object(), "{key} missing from {metrics}");
            match m["value"].as_f64() {
                Some(v) => assert!(v.is_finite(), "{key} is not finite"),
                None => assert!(
                    m["value"].is_null()
                        && m["note"].as_str().unwrap_or("").starts_with("not measured"),
                    "{key}: {m}"
                ),
            }
            if target_of(key).is_some() {
                assert!(m["target"]["value"].is_number(), "{key} has no target: {m}");
                assert!(
                    m["met"].is_boolean() || m["value"].is_null(),
                    "{key}: met must be known when measured: {m}"
                );
            }
        }
        for key in [
            "throughput_ratio",
            "added_p50_ms",
            "added_p99_ms",
            "ttft_added_ms",
            "stream_throughput_ratio",
            "sse_mb_per_s_native",
            "als_rows_per_s",
            "logs_query_p99_ms_1m",
            "wasm_bytes",
            "mock_rps_c32",
            "first_byte_added_ms_unpaced",
            "filter_cpu_us_per_request",
            "stack_cpu_us_per_request",
            "filter_cpu_us_per_stream",
            "floor_throughput_ratio",
            "limits_throughput_ratio",
            "state_bytes_100k",
            "adopt_ms_100k",
            "rss_mib_per_worker_100k",
            "rss_mib_per_worker_100k_after_1000_changes",
            "change_p99_ratio_100k",
            "first_use_ms",
            "first_use_retries",
            "revocation_ms_p99",
        ] {
            assert!(metrics[key]["value"].is_number(), "{key} was not measured: {}", metrics[key]);
        }
    }
}
