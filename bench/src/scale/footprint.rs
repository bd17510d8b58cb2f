//! What the fleet weighs: the whole state document's size, an Envoy's start against the seeded
//! control plane (from its start to the first 200 with a seeded key, and until every VM holds the
//! fleet), and its memory with the fleet (minus with an empty state), before and after a burst of
//! changes.

use std::time::Instant;

use anyhow::{bail, Result};
use gateway_stack::Stack;
use serde_json::{json, Value};

use super::envoy::{rss_kib, Envoy};
use super::fleet::{seeded_key, serving_app, thousands, Churn, Sizes};
use super::{Setup, POLL, STEP_TIMEOUT, WORKERS};
use crate::report::Report;

/// Envoy's memory with an empty state (every VM holds it).
pub struct EmptyState {
    rss_kib: u64,
    details: Value,
}

/// `state_bytes_100k`: the whole state document's size, and how long two requests for it took
/// (the stack's Envoy has pulled this version already); returns the details.
pub async fn state_document(stack: &Stack, sizes: &Sizes, report: &mut Report) -> Result<Value> {
    let url = format!("http://{}{}", stack.control_plane, vllm_gateway_filter::feed::STATE_PATH);
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..2 {
        let started = Instant::now();
        let resp = stack.http().get(&url).bearer_auth(stack.state_token()).send().await?;
        if resp.status().as_u16() != 200 {
            bail!("GET {url} answered {}", resp.status());
        }
        size = resp.bytes().await?.len();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let note = format!("GET /internal/state, {}", sizes.fleet());
    report.set("state_bytes_100k", size as f64, "bytes", note);
    Ok(json!({"bytes": size, "get_ms": times}))
}

/// An Envoy started before the seeding: its memory once every VM holds the (empty) state.
pub async fn empty_state(setup: &Setup<'_>) -> Result<EmptyState> {
    let (mut envoy, started) = Envoy::start(&setup.config, setup.dir, "empty", WORKERS).await?;
    let measured = async {
        // Refused, no longer 503: the worker holds a state (an empty one) and looked the key up.
        let first_401_ms =
            first_answer(&setup.client, &envoy.url, &seeded_key(1), 401, started).await?;
        envoy.all_adopted(Some(0), WORKERS).await?;
        let rss_kib = envoy.settled_rss(setup.sizes.settle).await?;
        let details = json!({"envoy_ready_ms": envoy.ready_ms, "first_401_ms": first_401_ms, "rss_kib": rss_kib});
        anyhow::Ok(EmptyState { rss_kib, details })
    }
    .await;
    envoy.stop().await;
    measured
}

/// An Envoy started against the seeded control plane: its start to serving, its memory once every
/// VM holds the state, and again after `sizes.changes` changes. Returns the details of both.
pub async fn seeded_envoy(
    stack: &Stack,
    setup: &Setup<'_>,
    empty: &EmptyState,
    churn: &mut Churn,
    report: &mut Report,
) -> Result<(Value, Value)> {
    let (mut envoy, started) = Envoy::start(&setup.config, setup.dir, "seeded", WORKERS).await?;
    let measured = async {
        let adopt = adoption(&envoy, setup, empty, started, report).await?;
        let memory = memory(stack, &envoy, setup, empty, churn, report).await?;
        anyhow::Ok((adopt, memory))
    }
    .await;
    envoy.stop().await;
    measured
}

/// `adopt_ms_100k`: from the seeded Envoy's start to the first 200 with a seeded key; then until
/// every VM holds the fleet.
async fn adoption(
    envoy: &Envoy,
    setup: &Setup<'_>,
    empty: &EmptyState,
    started: Instant,
    report: &mut Report,
) -> Result<Value> {
    let sizes = setup.sizes;
    let key = seeded_key(serving_app(0));
    let first_200_ms = first_answer(&setup.client, &envoy.url, &key, 200, started).await?;
    let note = format!(
        "Envoy started to the first 200 with a seeded key, fresh connections, {}",
        sizes.fleet()
    );
    report.set("adopt_ms_100k", first_200_ms, "ms", note);
    envoy.all_adopted(Some(sizes.keys), WORKERS).await?;
    let every_vm_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(
        json!({"envoy_ready_ms": envoy.ready_ms, "first_200_ms": first_200_ms, "every_vm_adopted_ms": every_vm_ms, "empty_state": empty.details}),
    )
}

/// `rss_mib_per_worker_100k` (and `…_after_1000_changes`): the seeded Envoy's memory minus the
/// empty one's, per worker, before and after `sizes.changes` changes.
async fn memory(
    stack: &Stack,
    envoy: &Envoy,
    setup: &Setup<'_>,
    empty: &EmptyState,
    churn: &mut Churn,
    report: &mut Report,
) -> Result<Value> {
    let sizes = setup.sizes;
    let per_worker = |kib: u64| (kib as f64 - empty.rss_kib as f64) / 1024.0 / f64::from(WORKERS);
    let rss = envoy.settled_rss(sizes.settle).await?;
    report.set(
        "rss_mib_per_worker_100k",
        per_worker(rss),
        "MiB",
        format!("Envoy's VmRSS with the state minus with an empty one, / {WORKERS} workers (the main thread's VM holds a state too), {}", sizes.fleet()),
    );
    let taken_before = envoy.adoptions(None);
    let changes_started = Instant::now();
    for _ in 0..sizes.changes {
        churn.change(stack).await?;
        tokio::time::sleep(sizes.change_pace).await;
    }
    let changes_seconds = changes_started.elapsed().as_secs_f64();
    let taken = envoy.quiet(sizes.settle).await?.saturating_sub(taken_before);
    let rss_after = rss_kib(envoy.pid)?;
    report.set(
        "rss_mib_per_worker_100k_after_1000_changes",
        per_worker(rss_after),
        "MiB",
        format!("the same after {} changes (an app created, disabled or enabled each) in {changes_seconds:.0} s; its VMs took {taken} states", thousands(sizes.changes)),
    );
    Ok(json!({
        "workers": WORKERS,
        "rss_kib_empty_state": empty.rss_kib,
        "rss_kib_state": rss,
        "rss_kib_after_changes": rss_after,
        "changes": sizes.changes,
        "changes_seconds": changes_seconds,
        "states_taken_during_changes": taken,
    }))
}

/// Milliseconds from `started` until `GET /v1/models` with `key` answers `status`.
async fn first_answer(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    status: u16,
    started: Instant,
) -> Result<f64> {
    let mut last = String::new();
    while started.elapsed() < STEP_TIMEOUT {
        match client.get(format!("{base}/v1/models")).bearer_auth(key).send().await {
            Ok(resp) if resp.status().as_u16() == status => {
                return Ok(started.elapsed().as_secs_f64() * 1e3)
            }
            Ok(resp) => last = resp.status().to_string(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    bail!("{base} never answered {status} within {STEP_TIMEOUT:?}; last: {last}")
}
