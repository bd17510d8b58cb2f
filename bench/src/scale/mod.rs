//! The gateway at scale: 100,000 apps with a key each and 10,000 users (2,000 and 200 in a quick
//! run), a mixed fleet seeded straight into the control plane's SQLite file the way
//! `control-plane/tests/feed_scale.rs` does. One stack (`gateway_stack::Stack`: the control plane,
//! a mock vLLM and an Envoy with two workers) is started on an empty database, so that the control
//! plane migrates it; the control plane is stopped, the fleet is seeded, and it is started again
//! on the same addresses. Beside the stack's Envoy, the scenario starts Envoys of its own on one
//! rendered configuration (the same template, the same control plane), so that it owns their
//! start, their process id and their worker count.
//!
//! - `state_bytes_100k`: the whole state document (`GET /internal/state`, the state token).
//! - `adopt_ms_100k`: an Envoy started against the seeded control plane, from its start until a
//!   request with a seeded key gets 200 (a fresh connection per request; a worker answers 503
//!   until it holds a state, and its first state is the whole fleet).
//! - `rss_mib_per_worker_100k`: that Envoy's `VmRSS` once every VM holds the state, minus the
//!   same configuration's `VmRSS` with an empty state (an Envoy started before the seeding), per
//!   worker; and the same after a burst of changes (`…_after_1000_changes`: one app created,
//!   disabled or enabled per change, through the admin API).
//! - `change_p99_ratio_100k`: `wrk` p99 of non-streamed chat completions with a seeded key on the
//!   stack's Envoy while one key changes per second, over the p99 of quiet runs of the same
//!   length (alternated quiet-changing-changing-quiet, each started once the last change has
//!   reached every VM), with no other Envoy running.
//! - `first_use_ms`, `first_use_retries`: `POST /api/apps`, then at once a chat completion with the
//!   new key on a fresh connection to an Envoy with four workers: time to the first 200, median,
//!   and how many keys needed more than one request.
//! - `revocation_ms_p99`: an app disabled, then `GET /v1/models` with its key on a fresh
//!   connection per request to the four-worker Envoy until twenty in a row are refused; the time
//!   from sending the change to the first request of that run, p99 over the apps (each disabled
//!   once both Envoys have taken no new state for [`Sizes::settle`]).
//!
//! Whether a VM holds a state, and how many changes it has taken, is read from the filter's own
//! log lines (`key state adopted: N keys` for a whole state, `key state changed: N keys` for a
//! delta, at Envoy's `wasm:info`). The figures
//! are printed with their targets; nothing here checks a timing.

//!
//! - [`fleet`]: the fleet, seeded straight into SQLite, and the changes made to it.
//! - [`envoy`]: the scenario's own Envoys, and reading from their output which states their VMs
//!   took.
//! - [`footprint`]: the state document's size, an Envoy's start against the fleet, its memory.
//! - [`latency`]: latency while keys change, a new key's first use, a revocation's reach.

mod envoy;
mod fleet;
mod footprint;
mod latency;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use gateway_stack::{Stack, StackOptions, Upstreams};
use serde_json::{json, Map, Value};

use self::envoy::{eventually_adopted, Envoy};
use self::fleet::Churn;
pub use self::fleet::Sizes;
use crate::arms::MODEL;
use crate::report::Report;
use crate::settings::Settings;

/// Workers of the Envoys whose memory, start and latency are measured.
const WORKERS: u16 = 2;
/// Workers of the Envoy that first uses and revocations are timed on.
const REVOCATION_WORKERS: u16 = 4;
/// The longest any one step may take before the scenario gives up (not a measurement bound).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between polls of a credential.
const POLL: Duration = Duration::from_millis(5);

/// The scenario: starts everything it needs, records the figures, stops everything.
pub async fn measure(s: &Settings, report: &mut Report) -> Result<()> {
    let dir = s.dir.join("scale");
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}", dir.join("scale.db").display());
    // The stack's control plane binds its access-log sink here, so that the Envoys started below
    // can be pointed at it too (the stack reports only its HTTP address).
    let als = free_port()?;
    let mut options = StackOptions::for_tests();
    options.db = Some(db_url.clone());
    options.control_plane_bin = Some(crate::cp::binary(s.release)?);
    options.control_plane_als = als;
    options.upstreams = Upstreams::Mock {
        models: vec![MODEL.into()],
        token_delay: Duration::ZERO,
        split_seed: None,
    };
    options.envoy_workers = WORKERS;
    options.state_refresh_ms = 1000;
    options.reconcile_interval_secs = 3600;
    let mut stack = Stack::start(options).await.context("starting the scale stack")?;
    let config = dir.join("envoy.yaml");
    let setup = async {
        std::fs::write(&config, envoy::render(&stack, als, &dir)?)?;
        anyhow::Ok(Setup { config, dir: &dir, sizes: &s.scale, client: fresh_connections()? })
    }
    .await;
    let result = match setup {
        Ok(setup) => scenario(&mut stack, s, &setup, &db_url, report).await,
        Err(e) => Err(e),
    };
    stack.stop().await;
    result
}

/// The steps in order, on the stack and Envoys of the scenario's own; the details go to the
/// report under `scale`.
async fn scenario(
    stack: &mut Stack,
    s: &Settings,
    setup: &Setup<'_>,
    db_url: &str,
    report: &mut Report,
) -> Result<()> {
    let sizes = setup.sizes;
    let mut details = Map::new();
    details.insert("keys".into(), json!(sizes.keys));
    details.insert("users".into(), json!(sizes.users));
    // The control plane has migrated the database and holds nothing yet.
    let empty = footprint::empty_state(setup).await?;
    details.insert("seed_seconds".into(), json!(seed_fleet(stack, sizes, db_url).await?));
    details.insert("state_document".into(), footprint::state_document(stack, sizes, report).await?);
    let mut churn = Churn::new(sizes.keys);
    let (adopt, memory) = footprint::seeded_envoy(stack, setup, &empty, &mut churn, report).await?;
    details.insert("adopt".into(), adopt);
    details.insert("memory".into(), memory);
    // Only the stack's Envoy runs from here on while keys change under load.
    let change_p99 = latency::change_ratio(stack, s, sizes, &mut churn, report).await?;
    details.insert("change_p99".into(), change_p99);
    four_workers(stack, setup, &mut details, report).await?;
    report.detail("scale", Value::Object(details));
    Ok(())
}

/// Seeds the fleet with the control plane stopped, starts it again and waits until the stack's
/// Envoy holds the fleet; returns how long the seeding took, in seconds.
async fn seed_fleet(stack: &mut Stack, sizes: &Sizes, db_url: &str) -> Result<f64> {
    stack.stop_control_plane().await;
    let seconds = fleet::seed(db_url, sizes).await?;
    stack.restart_control_plane().await?;
    // The stack's Envoy takes the seeded state now; let it finish before anything is timed.
    eventually_adopted("the stack's Envoy", || stack.envoy_output(), Some(sizes.keys), WORKERS)
        .await?;
    Ok(seconds)
}

/// First uses and revocations, timed on an Envoy with [`REVOCATION_WORKERS`] workers.
async fn four_workers(
    stack: &Stack,
    setup: &Setup<'_>,
    details: &mut Map<String, Value>,
    report: &mut Report,
) -> Result<()> {
    let (mut envoy, _) =
        Envoy::start(&setup.config, setup.dir, "four-workers", REVOCATION_WORKERS).await?;
    let timed = async {
        envoy.all_adopted(None, REVOCATION_WORKERS).await?;
        details
            .insert("first_use".into(), latency::first_uses(stack, setup, &envoy, report).await?);
        details
            .insert("revocation".into(), latency::revocations(stack, setup, &envoy, report).await?);
        anyhow::Ok(())
    }
    .await;
    envoy.stop().await;
    timed
}

/// What the steps share.
struct Setup<'a> {
    /// The configuration every scale Envoy runs.
    config: PathBuf,
    /// The scenario's folder.
    dir: &'a Path,
    sizes: &'a Sizes,
    /// A new connection per request.
    client: reqwest::Client,
}

/// A client that opens a new connection per request, so that requests spread over the workers.
fn fresh_connections() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
