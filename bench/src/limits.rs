//! Limits on: the filtered arm's non-streamed load (concurrency 32) sent with the key of an app
//! whose limits are so generous that they never refuse, against the same load with the key of an
//! app without limits, on the same Envoy, alternated ABBA. The difference is what admission and
//! settlement cost (the ledger's compare-and-swap in shared data, the lease calls):
//! `limits_throughput_ratio` = with limits / without. A refusal would fail the run (wrk fails on
//! any status >= 400), so the ratio never counts fast 429s.

use anyhow::Result;
use serde_json::json;

use crate::arms::{chat_body, Arms};
use crate::cpu::abba;
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::{arm_summary, total_rps};
use crate::wrk::{self, Run};

/// Runs of the filtered arm with the limited key and with the plain key, alternated ABBA.
fn alternate(
    arms: &Arms,
    s: &Settings,
    body: &str,
    connections: u32,
) -> Result<(Vec<Run>, Vec<Run>)> {
    let base = &arms.filtered.url;
    abba(
        s.rounds,
        |_| arms.filtered.processes,
        |limited| {
            let key = if limited { &arms.limited_key } else { &arms.api_key };
            wrk::run(&s.wrk, &s.dir, &arms.load_as(base, body, key), connections, s.run_time)
        },
    )
}

/// Non-streamed chat completions at concurrency 32, with and without limits on the app.
pub fn non_streamed(arms: &Arms, s: &Settings, report: &mut Report) -> Result<()> {
    let (with, without) = alternate(arms, s, &chat_body(false, 16), 32)?;
    let ratio = total_rps(&with) / total_rps(&without);
    report.set(
        "limits_throughput_ratio",
        ratio,
        "ratio",
        "non-streamed, concurrency 32, the app with generous limits / without, same Envoy",
    );
    report.detail(
        "limits",
        json!({"with_limits": arm_summary(&with), "without_limits": arm_summary(&without)}),
    );
    Ok(())
}
