//! Latency at scale: `wrk` p99 on the stack's Envoy while one key changes per second against
//! quiet runs; a new key used at once on a fresh connection (first use); and an app disabled,
//! timed until every worker refuses its key (revocation).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use gateway_stack::Stack;
use serde_json::{json, Value};

use super::envoy::{no_new_state, Envoy};
use super::fleet::{seeded_key, serving_app, set_status, Churn, Sizes};
use super::{Setup, POLL, REVOCATION_WORKERS, STEP_TIMEOUT};
use crate::arms::chat_body;
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::{median, total_rps};
use crate::wrk::{self, Load, Run};

/// Refusals in a row that show every worker of the four knows (a worker is missed by twenty
/// fresh connections about 0.3% of the time).
const REFUSALS_IN_A_ROW: u32 = 20;
/// Connections of the load while keys change.
const CONNECTIONS: u32 = 8;

/// Quiet and changing runs on the stack's Envoy, alternated; the median p99 of each.
pub async fn change_ratio(
    stack: &Stack,
    s: &Settings,
    sizes: &Sizes,
    churn: &mut Churn,
    report: &mut Report,
) -> Result<Value> {
    let load = Load {
        url: format!("{}/v1/chat/completions", stack.gateway_url),
        method: "POST",
        body: Some(chat_body(false, 16)),
        bearer: Some(seeded_key(serving_app(0))),
    };
    let wrk = Wrk { bin: s.wrk.clone(), dir: s.dir.clone(), load, run_time: sizes.run_time };
    let (mut quiet, mut changing) = (Vec::new(), Vec::new());
    let mut changes_per_run = Vec::new();
    for round in 0..sizes.rounds {
        let quiet_first = round % 2 == 0;
        for changes in [!quiet_first, quiet_first] {
            // No run starts while the last run's changes are still on their way.
            no_new_state(|| stack.envoy_output(), sizes.settle).await?;
            if !changes {
                quiet.push(wrk.start().await??);
                continue;
            }
            let before = churn.made;
            changing.push(run_while_changing(stack, &wrk, churn).await?);
            changes_per_run.push(churn.made - before);
        }
    }
    let p99 = |runs: &[Run]| median(runs.iter().map(|r| r.p99_ms).collect());
    report.set(
        "change_p99_ratio_100k",
        p99(&changing) / p99(&quiet),
        "ratio",
        format!("wrk p99 while one key changes per second / quiet p99, non-streamed, concurrency {CONNECTIONS}, {} s runs, {}", sizes.run_time.as_secs(), sizes.fleet()),
    );
    Ok(json!({
        "connections": CONNECTIONS,
        "quiet": {"p99_ms": p99(&quiet), "rps": total_rps(&quiet), "runs": quiet.iter().map(Run::json).collect::<Vec<_>>()},
        "changing": {"p99_ms": p99(&changing), "rps": total_rps(&changing), "changes_per_run": changes_per_run, "runs": changing.iter().map(Run::json).collect::<Vec<_>>()},
        "throughput_ratio": total_rps(&changing) / total_rps(&quiet),
        "admin_call_ms_median": median(churn.call_ms.clone()),
    }))
}

/// One load run of the change scenario.
struct Wrk {
    bin: PathBuf,
    dir: PathBuf,
    load: Load,
    run_time: Duration,
}

impl Wrk {
    /// Starts the run on a blocking thread.
    fn start(&self) -> tokio::task::JoinHandle<Result<Run>> {
        let (bin, dir, load, run_time) =
            (self.bin.clone(), self.dir.clone(), self.load.clone(), self.run_time);
        tokio::task::spawn_blocking(move || wrk::run(&bin, &dir, &load, CONNECTIONS, run_time))
    }
}

/// A load run during which `churn` makes one change per second (the first half a second in).
async fn run_while_changing(stack: &Stack, wrk: &Wrk, churn: &mut Churn) -> Result<Run> {
    let mut run = wrk.start();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(500),
        Duration::from_secs(1),
    );
    // A failed change stops the changes, not the run: wrk is waited for either way.
    let mut failed = None;
    let done = loop {
        tokio::select! {
            done = &mut run => break done,
            _ = tick.tick(), if failed.is_none() => failed = churn.change(stack).await.err(),
        }
    };
    if let Some(e) = failed {
        return Err(e.context("a change during a load run"));
    }
    done?
}

/// New apps, each key used at once on a fresh connection to `envoy`.
pub async fn first_uses(
    stack: &Stack,
    setup: &Setup<'_>,
    envoy: &Envoy,
    report: &mut Report,
) -> Result<Value> {
    let (base, client, sizes) = (&envoy.url, &setup.client, setup.sizes);
    let (mut times, mut attempts) = (Vec::new(), Vec::new());
    let body = chat_body(false, 16);
    for i in 0..sizes.first_uses {
        let started = Instant::now();
        let app = stack.create_app(&format!("scale-first-use-{i}")).await?;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let resp = client
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(&app.api_key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await?;
            if resp.status().as_u16() == 200 {
                break;
            }
            if started.elapsed() > STEP_TIMEOUT {
                bail!("a new key was never accepted: last answer {}", resp.status());
            }
            tokio::time::sleep(POLL).await;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        attempts.push(tries);
    }
    let retried = attempts.iter().filter(|&&n| n > 1).count();
    let details = json!({"keys": sizes.first_uses, "ms": times, "requests": attempts, "max_ms": times.iter().copied().fold(0.0, f64::max)});
    report.set("first_use_ms", median(times), "ms", format!("POST /api/apps to the first 200 with the new key, median of {} keys, {REVOCATION_WORKERS} workers, fresh connections", sizes.first_uses));
    report.set(
        "first_use_retries",
        retried as f64,
        "keys",
        format!("of {} new keys, how many needed more than one request", sizes.first_uses),
    );
    Ok(details)
}

/// Apps disabled one at a time, each timed until every worker of `envoy` refuses its key.
pub async fn revocations(
    stack: &Stack,
    setup: &Setup<'_>,
    envoy: &Envoy,
    report: &mut Report,
) -> Result<Value> {
    let sizes = setup.sizes;
    let (mut times, mut requests) = (Vec::new(), Vec::new());
    for k in 1..=sizes.revocations {
        // Each change is timed alone, not behind the states of earlier ones still on their way
        // to either Envoy.
        no_new_state(|| envoy.guard.output_text() + &stack.envoy_output(), sizes.settle).await?;
        let (ms, sent) = revocation(stack, &setup.client, &envoy.url, serving_app(k)).await?;
        times.push(ms);
        requests.push(sent);
    }
    report.set(
        "revocation_ms_p99",
        percentile(&times, 0.99),
        "ms",
        format!("app disabled to the first of {REFUSALS_IN_A_ROW} refusals in a row, fresh connections, {REVOCATION_WORKERS} workers, p99 (nearest rank) of {}", sizes.revocations),
    );
    Ok(
        json!({"apps": sizes.revocations, "ms": times, "requests": requests, "p50_ms": percentile(&times, 0.5)}),
    )
}

/// Disables seeded app `app` and asks `base` with its key until [`REFUSALS_IN_A_ROW`] refusals
/// in a row; returns the milliseconds from the change to the first request of that run, and the
/// requests sent.
async fn revocation(
    stack: &Stack,
    client: &reqwest::Client,
    base: &str,
    app: u32,
) -> Result<(f64, u32)> {
    let key = seeded_key(app);
    let url = format!("{base}/v1/models");
    let first = client.get(&url).bearer_auth(&key).send().await?;
    if first.status().as_u16() != 200 {
        bail!("seeded app {app} is not served before its revocation: {}", first.status());
    }
    let started = Instant::now();
    set_status(stack, app, "disabled").await?;
    let (mut streak, mut streak_started, mut sent) = (0u32, 0.0f64, 0u32);
    while streak < REFUSALS_IN_A_ROW {
        if started.elapsed() > STEP_TIMEOUT {
            bail!(
                "app {app}: not refused {REFUSALS_IN_A_ROW} times in a row within {STEP_TIMEOUT:?}"
            );
        }
        let sent_at = started.elapsed().as_secs_f64() * 1e3;
        let resp = client.get(&url).bearer_auth(&key).send().await?;
        sent += 1;
        if matches!(resp.status().as_u16(), 401 | 403) {
            if streak == 0 {
                streak_started = sent_at;
            }
            streak += 1;
        } else {
            streak = 0;
        }
    }
    Ok((streak_started, sent))
}

/// The nearest-rank percentile `p` (0..=1) of `values`; NaN when there are none.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.99), 20.0);
        assert_eq!(percentile(&values, 0.5), 10.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
