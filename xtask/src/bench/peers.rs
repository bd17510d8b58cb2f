//! The peer arm (`cargo xtask bench --peers`): the LiteLLM proxy
//! ([`crate::setup::LITELLM_PACKAGE`] from PyPI, in a venv under `.tools/litellm`) in front of
//! the same mock vLLM as the other arms, in its best configuration on this machine: one uvicorn
//! worker per core, no database, a master key (its calls carry a key as ours do), logging at
//! errors only. Three arms take turns under the same `wrk` load and body (A-B-C-C-B-A over the
//! rounds): the whole stack (the filtered Envoy with its real key, access logs flowing to the
//! control plane), LiteLLM, and plain Envoy (router only), at concurrency 1 and 32:
//!
//! - `litellm_throughput_ratio`: the stack's requests per second over LiteLLM's, concurrency 32;
//! - `litellm_throughput_ratio_c1`: the same at concurrency 1;
//! - `litellm_added_p50_ms`: LiteLLM's p50 minus plain Envoy's at concurrency 1, with ours (the
//!   stack's minus plain Envoy's, same runs) in the note.
//!
//! When LiteLLM cannot be installed or started, or fails under load, the three are reported as
//! not measured with the reason, and the rest of the bench goes on.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_e2e::process::ChildGuard;
use serde_json::{json, Value};

use super::cpu::{self, Snapshot};
use super::gateway::{chat_body, median, total_rps, Arms, SETTLE};
use super::report::Report;
use super::wrk::{self, Load, Run};
use super::Settings;

/// The figures of this arm and their units.
const KEYS: [(&str, &str); 3] = [
    ("litellm_throughput_ratio", "ratio"),
    ("litellm_throughput_ratio_c1", "ratio"),
    ("litellm_added_p50_ms", "ms"),
];

/// How long LiteLLM may take to answer its first request (it imports for ~15 s per worker).
const START_TIMEOUT: Duration = Duration::from_secs(180);

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
        eprintln!("xtask bench: LiteLLM was not measured: {e:#}");
        let why: String = format!("{e:#}").chars().take(300).collect();
        for (key, unit) in KEYS {
            report.not_measured(key, unit, format!("LiteLLM: {why}"));
        }
    }
}

async fn measure_or_fail(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let bin = crate::setup::ensure_litellm().context("installing LiteLLM")?;
    let body = chat_body(false, 16);
    let model: Value = serde_json::from_str(&body)?;
    let model = model["model"].as_str().context("the bench body names no model")?;
    let mut litellm =
        Litellm::start(&bin, &s.dir, &arms.mock, model).await.context("starting LiteLLM")?;
    litellm.wait_ready(&body).await?;
    // Both workers past their first requests, as the Envoys are by now.
    wrk::run(&s.wrk, &s.dir, &litellm.load(&body), 32, s.run_time).context("warming LiteLLM up")?;
    let (stack_url, stack_processes) = arms.filtered_arm();
    let stack_cpu = move || -> Result<Duration> { Ok(Snapshot::take(stack_processes)?.stack()) };
    let litellm_cpu = || cpu::group_cpu(litellm.pgid);
    let turns = [
        Arm {
            name: "stack",
            load: arms.load_as(stack_url, &body, &arms.api_key),
            cpu: Some(&stack_cpu),
        },
        Arm { name: "litellm", load: litellm.load(&body), cpu: Some(&litellm_cpu) },
        Arm { name: "plain", load: arms.load_as(&arms.plain, &body, &arms.api_key), cpu: None },
    ];
    let mut details = serde_json::Map::new();
    details.insert("litellm".into(), litellm.describe());
    for connections in [1u32, 32] {
        let runs = take_turns(&turns, s, connections)?;
        record(&runs, &litellm, connections, report);
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

/// One arm of the rotation: its load, and how to read the CPU its processes used so far.
struct Arm<'a> {
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
fn take_turns(arms: &[Arm], s: &Settings, connections: u32) -> Result<Vec<(&'static str, Runs)>> {
    let mut out: Vec<(&'static str, Runs)> =
        arms.iter().map(|a| (a.name, Runs::default())).collect();
    for round in 0..s.rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..arms.len()).collect()
        } else {
            (0..arms.len()).rev().collect()
        };
        for i in order {
            let arm = &arms[i];
            let before = arm.cpu.map(|f| f()).transpose()?;
            let run = wrk::run(&s.wrk, &s.dir, &arm.load, connections, s.run_time)
                .with_context(|| format!("the {} arm", arm.name))?;
            // As in the other scenarios: the stack's last access-log rows land before its CPU is
            // read, and before the next arm runs.
            std::thread::sleep(SETTLE);
            if let (Some(f), Some(before)) = (arm.cpu, before) {
                out[i].1.cpu += f()?.saturating_sub(before);
            }
            out[i].1.runs.push(run);
        }
    }
    Ok(out)
}

/// The figures of one concurrency from its runs (stack, LiteLLM, plain).
fn record(runs: &[(&'static str, Runs)], litellm: &Litellm, connections: u32, report: &mut Report) {
    let [(_, stack), (_, peer), (_, plain)] = runs else { return };
    let ratio = total_rps(&stack.runs) / total_rps(&peer.runs);
    let what = format!("the whole stack (filtered Envoy, real key, access logs to the control plane) / {}, non-streamed", litellm.label());
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
    }
}

/// A running LiteLLM proxy, in a process group of its own that is killed whole on drop (its
/// uvicorn workers would outlive a killed parent).
struct Litellm {
    url: String,
    key: String,
    workers: usize,
    pgid: u32,
    process: ChildGuard,
}

impl Litellm {
    /// Starts `bin` in front of the mock at `mock` (`http://addr`), serving `model`.
    async fn start(bin: &Path, dir: &Path, mock: &str, model: &str) -> Result<Litellm> {
        let sub = dir.join("litellm");
        std::fs::create_dir_all(&sub)?;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let key = format!("sk-bench-{}-{nanos:08x}", std::process::id());
        let config = sub.join("config.yaml");
        std::fs::write(&config, config_yaml(model, mock, &key))?;
        // LiteLLM's uvicorn reports the port it bound on stderr only: pick a free one first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut command = tokio::process::Command::new(bin);
        command
            .arg("--config")
            .arg(&config)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--num_workers",
                &workers.to_string(),
            ])
            .current_dir(&sub)
            // Errors only (this also keeps uvicorn's access log off); the bundled model price
            // list instead of fetching one; never a database.
            .env("LITELLM_LOG", "ERROR")
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env_remove("DATABASE_URL")
            .process_group(0);
        let process = ChildGuard::spawn("litellm", command, false)?;
        let pgid = process.pid().context("LiteLLM exited at once")?;
        Ok(Litellm { url: format!("http://127.0.0.1:{port}"), key, workers, pgid, process })
    }

    /// Waits until a chat completion with the master key succeeds.
    async fn wait_ready(&mut self, body: &str) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            if self.process.has_exited() {
                bail!("LiteLLM exited:\n{}", self.process.output_text());
            }
            let sent = client
                .post(self.load(body).url)
                .bearer_auth(&self.key)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    last = format!("{}: {}", resp.status(), resp.text().await.unwrap_or_default())
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "LiteLLM did not answer a chat completion within {START_TIMEOUT:?} (last: {last})\n{}",
            self.process.output_text()
        )
    }

    fn load(&self, body: &str) -> Load {
        Load {
            url: format!("{}/v1/chat/completions", self.url),
            method: "POST",
            body: Some(body.into()),
            bearer: Some(self.key.clone()),
        }
    }

    fn version() -> &'static str {
        let package = crate::setup::LITELLM_PACKAGE;
        package.rsplit_once("==").map_or(package, |(_, v)| v)
    }

    fn label(&self) -> String {
        format!("LiteLLM {} ({} uvicorn workers, no database)", Self::version(), self.workers)
    }

    fn describe(&self) -> Value {
        json!({"package": crate::setup::LITELLM_PACKAGE, "workers": self.workers, "command": format!("litellm --config config.yaml --host 127.0.0.1 --port <free port> --num_workers {}", self.workers), "env": {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
    }
}

impl Drop for Litellm {
    fn drop(&mut self) {
        // The group is LiteLLM's own (`process_group(0)`): its parent, workers and helpers.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pgid)])
            .status();
    }
}

/// LiteLLM's configuration: `model` routed to the mock as an OpenAI-compatible server.
fn config_yaml(model: &str, mock: &str, key: &str) -> String {
    format!(
        "model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {mock}/v1
      api_key: unused
general_settings:
  master_key: {key}
  disable_spend_logs: true
litellm_settings:
  set_verbose: false
  suppress_debug_info: true
  telemetry: false
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_routes_the_model_to_the_mock_with_a_master_key() {
        let yaml = config_yaml("m", "http://127.0.0.1:9", "sk-x");
        assert!(yaml.contains("model_name: m\n") && yaml.contains("model: openai/m\n"));
        assert!(
            yaml.contains("api_base: http://127.0.0.1:9/v1\n")
                && yaml.contains("master_key: sk-x\n")
        );
        assert!(!yaml.contains("database_url"));
    }
}
