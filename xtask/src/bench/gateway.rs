//! The side-by-side arms: one control plane, one mock vLLM, and Envoys from the same binary on
//! the same rendered configuration: one with the wasm filter, one without it (the filter
//! removed and `/v1/` routed straight to the model's cluster), one with the minimal floor
//! filter and one with the native dynamic module. Each scenario alternates two arms (ABBA) so
//! that machine noise hits both.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gateway_e2e::process::ChildGuard;
use serde_json::{json, Value};

use super::cp::ControlPlane;
use super::cpu::{CpuPerRequest, Processes, Snapshot};
use super::report::Report;
use super::wrk::{self, Load, Run};
use super::Settings;
use vllm_gateway_filter::config::DEFAULT_CLUSTER_HEADER;

const MODEL: &str = "bench-model";

/// Pause after each run before its CPU is read, so that the control plane's share of the run
/// is not counted in the next one.
pub(super) const SETTLE: Duration = Duration::from_millis(600);

/// The running arms.
pub struct Arms {
    pub(super) filtered: String,
    pub(super) plain: String,
    /// Envoy with the minimal body-routing filter (see [`super::floor`]).
    floor: String,
    /// Envoy with the native dynamic module in place of the wasm filter.
    native: String,
    /// The mock's own URL (the peer arm, [`super::peers`], goes straight to it).
    pub(super) mock: String,
    pub(super) api_key: String,
    /// The key of an app with limits so generous they never refuse (see [`super::limits`]).
    pub(super) limited_key: String,
    /// The processes of the filtered and the plain arm.
    processes: (Processes, Processes),
    floor_process: Processes,
    native_process: Processes,
    /// The mock's state (to pace its streams like a real server).
    pub(super) mock_state: mock_vllm::MockState,
    _envoys: [ChildGuard; 4],
    _mock_stop: tokio::sync::oneshot::Sender<()>,
}

impl Arms {
    /// Starts the mock and both Envoys next to `cp`, and waits until the filter accepts a key.
    pub async fn start(cp: &ControlPlane, dir: &Path) -> Result<Arms> {
        let (mock, mock_state, mock_stop) = start_mock().await?;
        let spec = gateway_envoy::GatewaySpec {
            listen: ([127, 0, 0, 1], 0).into(),
            admin_port: 0,
            control_plane_http: cp.http,
            control_plane_als: cp.als,
            filter: gateway_envoy::FilterBuild::Wasm(gateway_e2e::paths::filter_wasm()?),
            models: vec![format!("{MODEL}=http://{mock}").parse()?],
            state_token: cp.state_token.clone(),
            state_refresh_ms: 1000,
            cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS
                .iter()
                .map(|o| o.to_string())
                .collect(),
            default_model: None,
            upstream_keys: Default::default(),
            access_log_file: dir.join("access.jsonl"),
        };
        let with_filter = gateway_envoy::render(&spec)?;
        let cluster = gateway_envoy::cluster_name(0, MODEL);
        let without_filter = strip_filter(&with_filter, &cluster)?;
        let floor_wasm = super::floor::build(DEFAULT_CLUSTER_HEADER, &cluster)
            .context("building the floor filter")?;
        let native_dir = gateway_e2e::paths::native_module_dir()?;
        let native_filter = gateway_envoy::render(&gateway_envoy::GatewaySpec {
            filter: gateway_envoy::FilterBuild::Native(native_dir),
            ..spec.clone()
        })?;
        let floor_filter = gateway_envoy::render(&gateway_envoy::GatewaySpec {
            filter: gateway_envoy::FilterBuild::Wasm(floor_wasm),
            ..spec
        })?;
        let (filtered_envoy, filtered) = start_envoy(dir, "with-filter", &with_filter).await?;
        let (plain_envoy, plain) = start_envoy(dir, "without-filter", &without_filter).await?;
        let (floor_envoy, floor) = start_envoy(dir, "floor-filter", &floor_filter).await?;
        let (native_envoy, native) = start_envoy(dir, "native-filter", &native_filter).await?;
        let api_key = cp.create_app_key().await?;
        let limited_key = cp.create_limited_app_key(super::limits::generous()).await?;
        let filtered = format!("http://{filtered}");
        wait_for_key(&filtered, &api_key).await?;
        wait_for_key(&filtered, &limited_key).await?;
        let native = format!("http://{native}");
        wait_for_key(&native, &api_key).await?;
        let control_plane = cp.pid().context("the control plane has exited")?;
        let pid = |envoy: &ChildGuard| envoy.pid().context("an Envoy has exited");
        let processes = (
            Processes { envoy: pid(&filtered_envoy)?, control_plane },
            Processes { envoy: pid(&plain_envoy)?, control_plane },
        );
        let floor_process = Processes { envoy: pid(&floor_envoy)?, control_plane };
        let native_process = Processes { envoy: pid(&native_envoy)?, control_plane };
        Ok(Arms {
            filtered,
            plain: format!("http://{plain}"),
            floor: format!("http://{floor}"),
            native,
            mock: format!("http://{mock}"),
            api_key,
            limited_key,
            processes,
            floor_process,
            native_process,
            mock_state,
            _envoys: [filtered_envoy, plain_envoy, floor_envoy, native_envoy],
            _mock_stop: mock_stop,
        })
    }

    fn load(&self, base: &str, body: &str) -> Load {
        // The plain arm gets the same header: same bytes on the wire, nobody reads it.
        self.load_as(base, body, &self.api_key)
    }

    /// A load on `base` sending `key`.
    pub(super) fn load_as(&self, base: &str, body: &str, key: &str) -> Load {
        Load {
            url: format!("{base}/v1/chat/completions"),
            method: "POST",
            body: Some(body.into()),
            bearer: Some(key.to_owned()),
        }
    }

    /// The arm with the filter: its URL and processes.
    pub(super) fn filtered_arm(&self) -> (&str, Processes) {
        (&self.filtered, self.processes.0)
    }
}

/// The same configuration without the wasm filter: the filter's block is cut out and the `/v1/`
/// route goes to `cluster` instead of the cluster header the filter would have set.
pub fn strip_filter(config: &str, cluster: &str) -> Result<String> {
    let start = config
        .find("          - name: envoy.filters.http.wasm")
        .context("no wasm filter in the rendered config")?;
    let end = config[start..]
        .find("          - name: envoy.filters.http.router")
        .context("no router after the wasm filter")?
        + start;
    let mut out = format!("{}{}", &config[..start], &config[end..]);
    let header_route =
        out.find("cluster_header:").context("no cluster_header route in the rendered config")?;
    let line_end =
        out[header_route..].find('\n').context("unterminated route line")? + header_route;
    out.replace_range(header_route..line_end, &format!("cluster: {cluster}"));
    Ok(out)
}

async fn start_mock() -> Result<(SocketAddr, mock_vllm::MockState, tokio::sync::oneshot::Sender<()>)>
{
    // TCP_NODELAY on the listener is inherited by accepted sockets (Linux): without it, Nagle on
    // the mock's small SSE writes meets Envoy's delayed ACKs and stalls streams by ~40 ms, in
    // whichever arm it happens to hit, which would measure the kernel rather than the filter.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    let state = mock_vllm::MockState::new(mock_vllm::MockConfig {
        models: vec![MODEL.into()],
        ..Default::default()
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(mock_vllm::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok((addr, state, stop))
}

async fn start_envoy(dir: &Path, name: &str, config: &str) -> Result<(ChildGuard, SocketAddr)> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub)?;
    let path = sub.join("envoy.yaml");
    std::fs::write(&path, config)?;
    let (guard, _admin, listener) =
        gateway_e2e::start_envoy_with(&path, sub, ([127, 0, 0, 1], 0).into(), 2, false).await?;
    Ok((guard, listener))
}

async fn wait_for_key(base: &str, key: &str) -> Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        let resp = client.get(format!("{base}/v1/models")).bearer_auth(key).send().await?;
        if resp.status().is_success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the filter never accepted the bench key")
}

pub(super) fn chat_body(stream: bool, max_tokens: u32) -> String {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say something about gateways."}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
    .to_string()
}

/// Both arms' runs for one load shape, alternated ABBA over `settings.rounds`.
fn alternate(
    arms: &Arms,
    s: &Settings,
    body: &str,
    connections: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    alternate_with(arms, (&arms.filtered, arms.processes.0), s, body, connections)
}

/// Runs of the arm `filter` (URL and processes) and of the plain arm, alternated ABBA.
fn alternate_with(
    arms: &Arms,
    filter: (&String, Processes),
    s: &Settings,
    body: &str,
    connections: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..s.rounds {
        let filtered_first = round % 2 == 0;
        for filtered in [filtered_first, !filtered_first] {
            let (base, processes) = if filtered { filter } else { (&arms.plain, arms.processes.1) };
            let before = Snapshot::take(processes)?;
            let mut run =
                wrk::run(&s.wrk, &s.dir, &arms.load(base, body), connections, s.run_time)?;
            // Envoy flushes access-log entries every 0.2 s and the control plane writes them in
            // batches: let the run's last rows land before reading its CPU.
            std::thread::sleep(SETTLE);
            run.cpu = Some(before.per_request(&Snapshot::take(processes)?, run.requests));
            if filtered {
                with.push(run)
            } else {
                without.push(run)
            }
        }
    }
    Ok((with, without))
}

pub(super) fn total_rps(runs: &[Run]) -> f64 {
    runs.iter().map(|r| r.requests).sum::<f64>() / runs.iter().map(|r| r.seconds).sum::<f64>()
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The request-weighted CPU per request of the runs, by process.
fn cpu(runs: &[Run]) -> CpuPerRequest {
    CpuPerRequest::mean(&runs.iter().filter_map(|r| Some((r.cpu?, r.requests))).collect::<Vec<_>>())
}

pub(super) fn arm_summary(runs: &[Run]) -> Value {
    json!({
        "rps": total_rps(runs),
        "p50_ms": median(runs.iter().map(|r| r.p50_ms).collect()),
        "p99_ms": median(runs.iter().map(|r| r.p99_ms).collect()),
        "cpu_us_per_request": cpu(runs).json(),
        "runs": runs.iter().map(Run::json).collect::<Vec<_>>(),
    })
}

fn summary(with: &[Run], without: &[Run]) -> Value {
    json!({"with_filter": arm_summary(with), "without_filter": arm_summary(without)})
}

/// Envoy's CPU per request with the filter minus without it: what the filter itself costs.
fn filter_cpu_us(with: &[Run], without: &[Run]) -> f64 {
    cpu(with).envoy - cpu(without).envoy
}

/// (a) Non-streamed chat completions at concurrency 1 and 32.
pub fn non_streamed(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let body = chat_body(false, 16);
    let mut details = serde_json::Map::new();
    for connections in [1u32, 32] {
        let (with, without) = alternate(arms, s, &body, connections)?;
        let added_p50 = median(with.iter().map(|r| r.p50_ms).collect())
            - median(without.iter().map(|r| r.p50_ms).collect());
        let added_p99 = median(with.iter().map(|r| r.p99_ms).collect())
            - median(without.iter().map(|r| r.p99_ms).collect());
        let ratio = total_rps(&with) / total_rps(&without);
        let mut d = summary(&with, &without);
        d["throughput_ratio"] = json!(ratio);
        d["added_p50_ms"] = json!(added_p50);
        d["added_p99_ms"] = json!(added_p99);
        details.insert(format!("concurrency_{connections}"), d);
        if connections == 1 {
            report.set(
                "added_p50_ms",
                added_p50,
                "ms",
                "non-streamed, concurrency 1, median of rounds",
            );
            report.set(
                "added_p99_ms",
                added_p99,
                "ms",
                "non-streamed, concurrency 1, median of rounds",
            );
            report.set("throughput_ratio_c1", ratio, "ratio", "non-streamed, concurrency 1");
        } else {
            report.set(
                "throughput_ratio",
                ratio,
                "ratio",
                "non-streamed, concurrency 32, with/without filter",
            );
            report.set("filter_cpu_us_per_request", filter_cpu_us(&with, &without), "us", "Envoy's CPU per request, with minus without the filter (non-streamed, concurrency 32)");
            let (stack, plain) = (cpu(&with), cpu(&without));
            report.set("stack_cpu_us_per_request", stack.stack(), "us", stack.stack_note(&plain));
            report.set("added_p50_ms_c32", added_p50, "ms", "non-streamed, concurrency 32");
            report.set("added_p99_ms_c32", added_p99, "ms", "non-streamed, concurrency 32");
        }
    }
    report.detail("non_streamed", Value::Object(details));
    Ok(())
}

/// The floor: the minimal body-routing filter against the plain arm, non-streamed, concurrency 32.
pub fn floor(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let (with, without) =
        alternate_with(arms, (&arms.floor, arms.floor_process), s, &chat_body(false, 16), 32)?;
    report.set("floor_throughput_ratio", total_rps(&with) / total_rps(&without), "ratio", "a minimal proxy-wasm filter (pause, read body, set cluster) vs none: V8's own price, non-streamed, concurrency 32");
    report.set(
        "floor_cpu_us_per_request",
        filter_cpu_us(&with, &without),
        "us",
        "Envoy's CPU per request, minimal filter minus none",
    );
    report.detail("floor", summary(&with, &without));
    Ok(())
}

/// The native dynamic module against the plain arm: non-streamed at concurrency 32 and 256-token
/// streams at concurrency 8, as the wasm filter is measured.
pub fn native(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let arm = (&arms.native, arms.native_process);
    let (with, without) = alternate_with(arms, arm, s, &chat_body(false, 16), 32)?;
    report.set(
        "native_throughput_ratio",
        total_rps(&with) / total_rps(&without),
        "ratio",
        "the native dynamic module vs no filter, non-streamed, concurrency 32",
    );
    report.set(
        "native_cpu_us_per_request",
        filter_cpu_us(&with, &without),
        "us",
        "Envoy's CPU per request, native module minus no filter (non-streamed, concurrency 32)",
    );
    let (streams_with, streams_without) = alternate_with(arms, arm, s, &chat_body(true, 256), 8)?;
    report.set(
        "native_stream_throughput_ratio",
        total_rps(&streams_with) / total_rps(&streams_without),
        "ratio",
        "256-token streams, concurrency 8, native module / no filter",
    );
    report.set(
        "native_cpu_us_per_stream",
        filter_cpu_us(&streams_with, &streams_without),
        "us",
        "Envoy's CPU per 256-token stream, native module minus no filter",
    );
    report.detail("native", json!({"non_streamed": summary(&with, &without), "streamed_256": summary(&streams_with, &streams_without)}));
    Ok(())
}

/// How far the wasm filter is from the floor (a do-almost-nothing wasm filter), in the same run.
pub fn floor_gap(report: &mut Report) {
    if let (Some(floor), Some(ratio)) =
        (report.value("floor_throughput_ratio"), report.value("throughput_ratio"))
    {
        report.set("floor_gap", floor - ratio, "ratio", "floor_throughput_ratio minus throughput_ratio, same run: what the wasm filter costs beyond V8's own price");
    }
}

/// (b) Streamed chat completions of 256 tokens: total time and throughput under load (wrk), and
/// time to first byte one request at a time (curl's `time_starttransfer`).
pub fn streamed(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let body = chat_body(true, 256);
    let (with, without) = alternate(arms, s, &body, 8)?;
    let ratio = total_rps(&with) / total_rps(&without);
    report.set(
        "stream_throughput_ratio",
        ratio,
        "ratio",
        "256-token streams, concurrency 8, with/without filter",
    );
    report.set(
        "filter_cpu_us_per_stream",
        filter_cpu_us(&with, &without),
        "us",
        "Envoy's CPU per 256-token stream, with minus without the filter",
    );
    let total_added = median(with.iter().map(|r| r.p50_ms).collect())
        - median(without.iter().map(|r| r.p50_ms).collect());
    report.set(
        "stream_total_added_p50_ms",
        total_added,
        "ms",
        "256-token stream, whole-response time, concurrency 8",
    );
    let (ttft_with, ttft_without) = super::ttft::first_byte_times(arms, &body, s.ttft_samples)?;
    let ttft_added = median(ttft_with.clone()) - median(ttft_without.clone());
    report.set(
        "first_byte_added_ms_unpaced",
        ttft_added,
        "ms",
        "first response byte (curl), unpaced mock: the whole 256-token stream arrives in Envoy's first read, so this includes the filter's work on all of it",
    );
    let mut d = summary(&with, &without);
    d["ttft_ms_with_filter_p50"] = json!(median(ttft_with));
    d["ttft_ms_without_filter_p50"] = json!(median(ttft_without));
    report.detail("streamed_256", d);
    Ok(())
}

/// The mock's own capacity under the same non-streamed load at concurrency 32 (no Envoy).
pub fn mock_capacity(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let run =
        wrk::run(&s.wrk, &s.dir, &arms.load(&arms.mock, &chat_body(false, 16)), 32, s.run_time)?;
    report.set(
        "mock_rps_c32",
        run.rps(),
        "req/s",
        "the mock alone, non-streamed, concurrency 32 (must exceed the arms)",
    );
    report.detail("mock_alone", run.json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_config_has_no_filter_and_a_fixed_cluster() {
        let spec = gateway_envoy::GatewaySpec {
            listen: ([127, 0, 0, 1], 0).into(),
            admin_port: 0,
            control_plane_http: ([127, 0, 0, 1], 1).into(),
            control_plane_als: ([127, 0, 0, 1], 2).into(),
            filter: gateway_envoy::FilterBuild::Wasm("/x.wasm".into()),
            models: vec!["m=http://127.0.0.1:3".parse().unwrap()],
            state_token: "t".repeat(32),
            state_refresh_ms: 1000,
            cors_origins: vec![],
            default_model: None,
            upstream_keys: Default::default(),
            access_log_file: "/tmp/access.jsonl".into(),
        };
        let config = gateway_envoy::render(&spec).unwrap();
        let plain = strip_filter(&config, "the_cluster").unwrap();
        assert!(!plain.contains("envoy.filters.http.wasm"));
        assert!(!plain.contains("cluster_header"));
        assert!(plain.contains("cluster: the_cluster"));
        assert!(
            plain.contains("envoy.filters.http.router")
                && plain.contains("envoy.filters.http.cors")
        );
    }
}
