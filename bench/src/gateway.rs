//! The gateway's cost side by side: the filtered arm against the plain arm (the same Envoy
//! configuration without the filter), non-streamed and streamed; the floor filter and the native
//! module against the same plain arm; and the mock's own capacity. Each comparison alternates
//! the two arms over the rounds (ABBA) so that machine noise hits both.

use anyhow::Result;
use serde_json::{json, Value};

use crate::arms::{chat_body, Arm, Arms};
use crate::cpu::abba;
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::{cpu, filter_cpu_us, median, summary, total_rps};
use crate::wrk::{self, Run};

/// Both arms' runs for one load shape, alternated ABBA over `settings.rounds`.
fn alternate(
    arms: &Arms,
    s: &Settings,
    body: &str,
    connections: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    alternate_with(arms, &arms.filtered, s, body, connections)
}

/// Runs of the arm `filter` and of the plain arm, alternated ABBA.
fn alternate_with(
    arms: &Arms,
    filter: &Arm,
    s: &Settings,
    body: &str,
    connections: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    let arm = |filtered: bool| if filtered { filter } else { &arms.plain };
    abba(
        s.rounds,
        |filtered| arm(filtered).processes,
        |filtered| {
            wrk::run(&s.wrk, &s.dir, &arms.load(&arm(filtered).url, body), connections, s.run_time)
        },
    )
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
    let (with, without) = alternate_with(arms, &arms.floor, s, &chat_body(false, 16), 32)?;
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
    let arm = &arms.native;
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
    let (ttft_with, ttft_without) = crate::ttft::first_byte_times(arms, &body, s.ttft_samples)?;
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
