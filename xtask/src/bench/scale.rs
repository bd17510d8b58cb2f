//! The gateway at scale: 100,000 apps with a key each and 10,000 users (2,000 and 200 in a quick
//! run), a mixed fleet seeded straight into the control plane's SQLite file the way
//! `control-plane/tests/feed_scale.rs` does. One stack (`gateway_e2e::Stack`: the control plane,
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

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway_e2e::process::ChildGuard;
use gateway_e2e::{Stack, StackOptions, Upstreams};
use reqwest::Method;
use serde_json::{json, Value};
use vllm_gateway_filter::feed::hash_key;

use super::gateway::{chat_body, median};
use super::report::Report;
use super::wrk::{self, Load, Run};
use super::Settings;

/// The model the mock serves: the one [`chat_body`] asks for.
const MODEL: &str = "bench-model";
/// Workers of the Envoys whose memory, start and latency are measured.
const WORKERS: u16 = 2;
/// Workers of the Envoy that first uses and revocations are timed on.
const REVOCATION_WORKERS: u16 = 4;
/// Refusals in a row that show every worker of the four knows (a worker is missed by twenty
/// fresh connections about 0.3% of the time).
const REFUSALS_IN_A_ROW: u32 = 20;
/// Connections of the load while keys change.
const CONNECTIONS: u32 = 8;
/// The longest any one step may take before the scenario gives up (not a measurement bound).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause between polls of a credential.
const POLL: Duration = Duration::from_millis(5);

/// How big the fleet is and how long each part runs.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Apps, one live key each.
    pub keys: u32,
    /// Users.
    pub users: u32,
    /// Changes made before memory is read again.
    pub changes: u32,
    /// Pause between those changes.
    pub change_pace: Duration,
    /// Length of each load run, quiet or changing.
    pub run_time: Duration,
    /// Quiet-changing pairs, alternated.
    pub rounds: u32,
    /// New keys timed to their first 200.
    pub first_uses: u32,
    /// Apps disabled and timed until every worker refuses them.
    pub revocations: u32,
    /// How long an Envoy must take no new state to count as settled.
    pub settle: Duration,
}

impl Sizes {
    /// The fleet for a full run; a small one, briefly, for `--quick`.
    pub fn new(quick: bool) -> Self {
        if quick {
            Sizes {
                keys: 2_000,
                users: 200,
                changes: 30,
                change_pace: Duration::ZERO,
                run_time: Duration::from_secs(1),
                rounds: 1,
                first_uses: 5,
                revocations: 3,
                settle: Duration::from_millis(300),
            }
        } else {
            Sizes {
                keys: 100_000,
                users: 10_000,
                changes: 1_000,
                change_pace: Duration::from_millis(25),
                run_time: Duration::from_secs(15),
                rounds: 2,
                first_uses: 20,
                revocations: 20,
                settle: Duration::from_secs(1),
            }
        }
    }

    /// How the figures' notes name the fleet.
    fn fleet(&self) -> String {
        let full = self.keys == 100_000 && self.users == 10_000;
        format!(
            "{} apps/keys, {} users{}",
            thousands(self.keys),
            thousands(self.users),
            if full { "" } else { " (quick run)" }
        )
    }
}

/// The plaintext of the key of seeded app `n` (apps are numbered from 1), shaped like a real one.
fn seeded_key(n: u32) -> String {
    format!("sk-live-{n:08x}-5ca1-4e00-8000-{n:012x}")
}

/// The `k`-th seeded app whose key may call any model, without limits, never expires and is
/// enabled (see [`seed`]: every app whose number is 1 modulo 60). App 1 carries the load.
fn serving_app(k: u32) -> u32 {
    1 + 60 * k
}

/// The `k`-th app the changes disable and enable again (2 modulo 60: like the serving apps, and
/// never used for requests).
fn churned_app(k: u32, keys: u32) -> u32 {
    2 + 60 * (k % (keys / 60).max(1))
}

/// The scenario: starts everything it needs, records the figures, stops everything.
pub async fn measure(s: &Settings, report: &mut Report) -> Result<()> {
    let sizes = s.scale;
    let dir = s.dir.join("scale");
    std::fs::create_dir_all(&dir)?;
    let db_url = format!("sqlite://{}", dir.join("scale.db").display());
    // The stack's control plane binds its access-log sink here, so that the Envoys started below
    // can be pointed at it too (the stack reports only its HTTP address).
    let als = free_port()?;
    let mut options = StackOptions::for_tests();
    options.db = Some(db_url.clone());
    options.control_plane_bin = Some(super::cp::binary(s.release)?);
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
    let result = scenario(&mut stack, s, &sizes, &dir, &db_url, als, report).await;
    stack.stop().await;
    result
}

async fn scenario(
    stack: &mut Stack,
    s: &Settings,
    sizes: &Sizes,
    dir: &Path,
    db_url: &str,
    als: SocketAddr,
    report: &mut Report,
) -> Result<()> {
    let mut details = serde_json::Map::new();
    details.insert("keys".into(), json!(sizes.keys));
    details.insert("users".into(), json!(sizes.users));
    let state_token = stack.state_token().to_owned();
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, render(stack, &state_token, als, dir)?)?;
    let setup = Setup { config, dir, sizes, client: fresh_connections()? };
    // The control plane has migrated the database and holds nothing yet.
    let empty = empty_state(&setup).await?;

    stack.stop_control_plane().await;
    details.insert("seed_seconds".into(), json!(seed(db_url, sizes).await?));
    stack.restart_control_plane().await?;
    // The stack's Envoy takes the seeded state now; let it finish before anything is timed.
    eventually_adopted("the stack's Envoy", || stack.envoy_output(), Some(sizes.keys), WORKERS)
        .await?;

    let (bytes, state_details) = state_document(stack, &state_token).await?;
    report.set(
        "state_bytes_100k",
        bytes as f64,
        "bytes",
        format!("GET /internal/state, {}", sizes.fleet()),
    );
    details.insert("state_document".into(), state_details);

    let mut churn = Churn::new(sizes.keys);
    let (adopt, memory) = seeded_envoy(stack, &setup, &empty, &mut churn, report).await?;
    details.insert("adopt".into(), adopt);
    details.insert("memory".into(), memory);
    // Only the stack's Envoy runs from here on while keys change under load.
    details.insert("change_p99".into(), change_ratio(stack, s, sizes, &mut churn, report).await?);

    let (mut envoy, _) =
        Envoy::start(&setup.config, dir, "four-workers", REVOCATION_WORKERS).await?;
    let timed = async {
        envoy.all_adopted(None, REVOCATION_WORKERS).await?;
        details.insert("first_use".into(), first_uses(stack, &setup, &envoy, report).await?);
        details.insert("revocation".into(), revocations(stack, &setup, &envoy, report).await?);
        anyhow::Ok(())
    }
    .await;
    envoy.stop().await;
    timed?;
    report.detail("scale", serde_json::Value::Object(details));
    Ok(())
}

/// What the steps share.
struct Setup<'a> {
    /// The configuration every scale Envoy runs.
    config: std::path::PathBuf,
    /// The scenario's folder.
    dir: &'a Path,
    sizes: &'a Sizes,
    /// A new connection per request.
    client: reqwest::Client,
}

/// Envoy's memory with an empty state (every VM holds it).
struct EmptyState {
    rss_kib: u64,
    details: Value,
}

async fn empty_state(setup: &Setup<'_>) -> Result<EmptyState> {
    let (mut envoy, started) = Envoy::start(&setup.config, setup.dir, "empty", WORKERS).await?;
    let measured = async {
        // Refused, no longer 503: the worker holds a state (an empty one) and looked the key up.
        let first_401_ms = first_answer(&setup.client, &envoy.url, &seeded_key(1), 401, started).await?;
        envoy.all_adopted(Some(0), WORKERS).await?;
        let rss_kib = envoy.settled_rss(setup.sizes.settle).await?;
        anyhow::Ok(EmptyState { rss_kib, details: json!({"envoy_ready_ms": envoy.ready_ms, "first_401_ms": first_401_ms, "rss_kib": rss_kib}) })
    }
    .await;
    envoy.stop().await;
    measured
}

/// An Envoy started against the seeded control plane: its start to serving, its memory once every
/// VM holds the state, and again after `sizes.changes` changes. Returns the details of both.
async fn seeded_envoy(
    stack: &Stack,
    setup: &Setup<'_>,
    empty: &EmptyState,
    churn: &mut Churn,
    report: &mut Report,
) -> Result<(Value, Value)> {
    let sizes = setup.sizes;
    let (mut envoy, started) = Envoy::start(&setup.config, setup.dir, "seeded", WORKERS).await?;
    let measured = async {
        let first_200_ms = first_answer(&setup.client, &envoy.url, &seeded_key(serving_app(0)), 200, started).await?;
        report.set("adopt_ms_100k", first_200_ms, "ms", format!("Envoy started to the first 200 with a seeded key, fresh connections, {}", sizes.fleet()));
        envoy.all_adopted(Some(sizes.keys), WORKERS).await?;
        let every_vm_ms = started.elapsed().as_secs_f64() * 1e3;
        let adopt = json!({"envoy_ready_ms": envoy.ready_ms, "first_200_ms": first_200_ms, "every_vm_adopted_ms": every_vm_ms, "empty_state": empty.details});

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
        let memory = json!({
            "workers": WORKERS,
            "rss_kib_empty_state": empty.rss_kib,
            "rss_kib_state": rss,
            "rss_kib_after_changes": rss_after,
            "changes": sizes.changes,
            "changes_seconds": changes_seconds,
            "states_taken_during_changes": taken,
        });
        anyhow::Ok((adopt, memory))
    }
    .await;
    envoy.stop().await;
    measured
}

/// An Envoy of the scenario's own, on the scale configuration.
struct Envoy {
    url: String,
    pid: u32,
    /// From its start until its admin answered ready and its listener was known, ms.
    ready_ms: f64,
    guard: ChildGuard,
}

impl Envoy {
    /// Starts Envoy with `workers` in its own folder under `dir`; returns it and when it was
    /// started.
    async fn start(
        config: &Path,
        dir: &Path,
        name: &str,
        workers: u16,
    ) -> Result<(Envoy, Instant)> {
        let sub = dir.join(format!("envoy-{name}"));
        std::fs::create_dir_all(&sub)?;
        let started = Instant::now();
        let (guard, _admin, listener) =
            gateway_e2e::start_envoy_with(config, sub, ([127, 0, 0, 1], 0).into(), workers, false)
                .await?;
        let pid = guard.pid().context("Envoy exited at start")?;
        let ready_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((Envoy { url: format!("http://{listener}"), pid, ready_ms, guard }, started))
    }

    /// States its VMs have taken so far (see [`adoptions`]).
    fn adoptions(&self, keys: Option<u32>) -> usize {
        adoptions(&self.guard.output_text(), keys)
    }

    /// Waits until each of its VMs (the workers' and the main thread's) holds a state of `keys`.
    async fn all_adopted(&self, keys: Option<u32>, workers: u16) -> Result<()> {
        eventually_adopted("Envoy", || self.guard.output_text(), keys, workers).await
    }

    /// Waits until its VMs have taken no new state for `window`; returns how many they took.
    async fn quiet(&self, window: Duration) -> Result<usize> {
        no_new_state(|| self.guard.output_text(), window).await
    }

    /// `VmRSS` in KiB once its VMs have taken no new state for `window`.
    async fn settled_rss(&self, window: Duration) -> Result<u64> {
        self.quiet(window).await?;
        rss_kib(self.pid)
    }

    async fn stop(&mut self) {
        self.guard.stop(Duration::from_secs(5)).await;
    }
}

/// Lines of an Envoy's output where one of its VMs took a key state (a whole one, or a change)
/// of `keys` keys, or of any size.
fn adoptions(output: &str, keys: Option<u32>) -> usize {
    let size = keys.map(|k| format!(": {k} keys,"));
    output
        .lines()
        .filter(|line| line.contains("key state adopted: ") || line.contains("key state changed: "))
        .filter(|line| size.as_ref().is_none_or(|s| line.contains(s.as_str())))
        .count()
}

/// Waits until `output` shows a state of `keys` taken by each of `workers` VMs and the main
/// thread's.
async fn eventually_adopted(
    what: &str,
    output: impl Fn() -> String,
    keys: Option<u32>,
    workers: u16,
) -> Result<()> {
    let vms = usize::from(workers) + 1;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while adoptions(&output(), keys) < vms {
        if Instant::now() > deadline {
            bail!(
                "{what}: not every VM took a state of {keys:?} keys within {STEP_TIMEOUT:?}\n{}",
                output()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until `output` shows no new state taken for `window` (the changes made so far have
/// reached every VM); returns how many states it shows.
async fn no_new_state(output: impl Fn() -> String, window: Duration) -> Result<usize> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let (mut last, mut since) = (adoptions(&output(), None), Instant::now());
    while since.elapsed() < window {
        if Instant::now() > deadline {
            bail!("new key states kept coming for {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Output is kept bounded: older lines may go, so any difference counts as a change.
        let now = adoptions(&output(), None);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last)
}

/// The resident memory of a process, KiB (`VmRSS` in `/proc/<pid>/status`).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_rss_kib(&status).context("no VmRSS in /proc/<pid>/status")
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// A client that opens a new connection per request, so that requests spread over the workers.
fn fresh_connections() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()?)
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

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The scale Envoys' configuration: the stack's control plane and mock, the stack's template.
fn render(stack: &Stack, state_token: &str, als: SocketAddr, dir: &Path) -> Result<String> {
    let models = stack
        .models
        .iter()
        .map(|(name, url)| format!("{name}={url}").parse())
        .collect::<Result<Vec<_>, _>>()?;
    let spec = gateway_envoy::GatewaySpec {
        listen: ([127, 0, 0, 1], 0).into(),
        admin_port: 0,
        control_plane_http: stack.control_plane,
        control_plane_als: als,
        filter: gateway_envoy::FilterBuild::Wasm(gateway_e2e::paths::filter_wasm()?),
        models,
        state_token: state_token.into(),
        state_refresh_ms: 1000,
        cors_origins: gateway_envoy::DEFAULT_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        default_model: None,
        upstream_keys: Default::default(),
        access_log_file: dir.join("access.jsonl"),
    };
    Ok(gateway_envoy::render(&spec)?)
}

/// Seeds the fleet in one transaction (the control plane is stopped): `sizes.keys` apps with a
/// live key each and `sizes.users` users. A third of the apps list models, a quarter have
/// limits, a tenth expire (one in fifty has expired), one in twenty is disabled; one user in ten
/// is disabled. Returns the seconds it took.
async fn seed(db_url: &str, sizes: &Sizes) -> Result<f64> {
    let db = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(db_url).await?;
    let started = Instant::now();
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
    )?;
    let mut tx = db.begin().await?;
    sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO apps (id, org_name, remark, status, expire_time, expires_at, created_at, updated_at,
             models, limits)
         SELECT n, 'scale-org-' || n, 'seeded by cargo xtask bench',
             CASE WHEN n % 20 = 0 THEN 'disabled' ELSE 'enabled' END,
             CASE WHEN n % 50 = 0 THEN '2020-09-13T12:26:40Z' WHEN n % 10 = 0 THEN '2100-01-01T00:00:00Z' END,
             CASE WHEN n % 50 = 0 THEN 1600000000 WHEN n % 10 = 0 THEN 4102444800 END,
             ?2, ?2,
             CASE WHEN n % 3 = 0 THEN '[\"Qwen3-32B\",\"Qwen3-235B\"]' ELSE '[]' END,
             CASE WHEN n % 4 = 0 THEN '{\"requestsPerMinute\":1000000000,\"tokensPerMinute\":1000000000}' END
         FROM seq",
    )
    .bind(i64::from(sizes.keys))
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("seeding apps")?;
    let apps: Vec<u32> = (1..=sizes.keys).collect();
    // 4 values a row, well under SQLite's 32,766 variables a statement.
    for chunk in apps.chunks(2_000) {
        let mut insert =
            sqlx::QueryBuilder::new("INSERT INTO api_keys (app_id, hash, prefix, created_at) ");
        insert.push_values(chunk, |mut row, &n| {
            let key = seeded_key(n);
            row.push_bind(i64::from(n))
                .push_bind(hash_key(&key))
                .push_bind(key[..12].to_owned())
                .push_bind(now);
        });
        insert.build().execute(&mut *tx).await.context("seeding keys")?;
    }
    sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO users (email, password_hash, status, token_version, created_at, updated_at)
         SELECT 'scale-user-' || n || '@example.com', 'not-a-password-hash',
             CASE WHEN n % 10 = 0 THEN 'disabled' ELSE 'enabled' END, 1 + n % 3, ?2, ?2
         FROM seq",
    )
    .bind(i64::from(sizes.users))
    .bind(now)
    .execute(&mut *tx)
    .await
    .context("seeding users")?;
    tx.commit().await?;
    db.close().await;
    Ok(started.elapsed().as_secs_f64())
}

/// The whole state document's size, and how long two requests for it took (the stack's Envoy has
/// pulled this version already).
async fn state_document(stack: &Stack, token: &str) -> Result<(usize, Value)> {
    let url = format!("http://{}{}", stack.control_plane, vllm_gateway_filter::feed::STATE_PATH);
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..2 {
        let started = Instant::now();
        let resp = stack.http().get(&url).bearer_auth(token).send().await?;
        if resp.status().as_u16() != 200 {
            bail!("GET {url} answered {}", resp.status());
        }
        size = resp.bytes().await?.len();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok((size, json!({"bytes": size, "get_ms": times})))
}

/// Changes through the admin API, in turn: an app created, a seeded app disabled, the same app
/// enabled again.
struct Churn {
    keys: u32,
    made: u32,
    /// How long each admin call took, ms.
    call_ms: Vec<f64>,
}

impl Churn {
    fn new(keys: u32) -> Self {
        Churn { keys, made: 0, call_ms: Vec::new() }
    }

    async fn change(&mut self, stack: &Stack) -> Result<()> {
        let started = Instant::now();
        let app = churned_app(self.made / 3, self.keys);
        match self.made % 3 {
            0 => drop(stack.create_app(&format!("scale-churn-{}", self.made)).await?),
            1 => set_status(stack, app, "disabled").await?,
            _ => set_status(stack, app, "enabled").await?,
        }
        self.call_ms.push(started.elapsed().as_secs_f64() * 1e3);
        self.made += 1;
        Ok(())
    }
}

async fn set_status(stack: &Stack, app: u32, status: &str) -> Result<()> {
    let (code, body) = stack
        .admin(Method::PATCH, &format!("/api/apps/{app}/status"), Some(json!({"status": status})))
        .await?;
    if code != 200 {
        bail!("setting app {app} {status} answered {code}: {body}");
    }
    Ok(())
}

/// Quiet and changing runs on the stack's Envoy, alternated; the median p99 of each.
async fn change_ratio(
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
    let (mut quiet, mut changing) = (Vec::new(), Vec::new());
    let mut changes_per_run = Vec::new();
    for round in 0..sizes.rounds {
        let quiet_first = round % 2 == 0;
        for changes in [!quiet_first, quiet_first] {
            // No run starts while the last run's changes are still on their way.
            no_new_state(|| stack.envoy_output(), sizes.settle).await?;
            let (wrk, dir, load, run_time) =
                (s.wrk.clone(), s.dir.clone(), load.clone(), sizes.run_time);
            let mut run = tokio::task::spawn_blocking(move || {
                wrk::run(&wrk, &dir, &load, CONNECTIONS, run_time)
            });
            if !changes {
                quiet.push(run.await??);
                continue;
            }
            let before = churn.made;
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
            changing.push(done??);
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
    let rps = |runs: &[Run]| {
        runs.iter().map(|r| r.requests).sum::<f64>() / runs.iter().map(|r| r.seconds).sum::<f64>()
    };
    let details = json!({
        "connections": CONNECTIONS,
        "quiet": {"p99_ms": p99(&quiet), "rps": rps(&quiet), "runs": quiet.iter().map(Run::json).collect::<Vec<_>>()},
        "changing": {"p99_ms": p99(&changing), "rps": rps(&changing), "changes_per_run": changes_per_run, "runs": changing.iter().map(Run::json).collect::<Vec<_>>()},
        "throughput_ratio": rps(&changing) / rps(&quiet),
        "admin_call_ms_median": median(churn.call_ms.clone()),
    });
    Ok(details)
}

/// New apps, each key used at once on a fresh connection to `envoy`.
async fn first_uses(
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
async fn revocations(
    stack: &Stack,
    setup: &Setup<'_>,
    envoy: &Envoy,
    report: &mut Report,
) -> Result<Value> {
    let (base, client, sizes) = (&envoy.url, &setup.client, setup.sizes);
    let mut times = Vec::new();
    let mut requests = Vec::new();
    for k in 1..=sizes.revocations {
        // Each change is timed alone, not behind the states of earlier ones still on their way
        // to either Envoy.
        no_new_state(|| envoy.guard.output_text() + &stack.envoy_output(), sizes.settle).await?;
        let app = serving_app(k);
        let key = seeded_key(app);
        let status = |resp: &reqwest::Response| resp.status().as_u16();
        let first = client.get(format!("{base}/v1/models")).bearer_auth(&key).send().await?;
        if status(&first) != 200 {
            bail!("seeded app {app} is not served before its revocation: {}", first.status());
        }
        let started = Instant::now();
        set_status(stack, app, "disabled").await?;
        let (mut streak, mut streak_started, mut sent) = (0u32, 0.0f64, 0u32);
        while streak < REFUSALS_IN_A_ROW {
            if started.elapsed() > STEP_TIMEOUT {
                bail!("app {app}: not refused {REFUSALS_IN_A_ROW} times in a row within {STEP_TIMEOUT:?}");
            }
            let sent_at = started.elapsed().as_secs_f64() * 1e3;
            let resp = client.get(format!("{base}/v1/models")).bearer_auth(&key).send().await?;
            sent += 1;
            if matches!(status(&resp), 401 | 403) {
                if streak == 0 {
                    streak_started = sent_at;
                }
                streak += 1;
            } else {
                streak = 0;
            }
        }
        times.push(streak_started);
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

/// `100000` as `100,000`.
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_look_like_real_ones_and_the_chosen_apps_are_plain() {
        let key = seeded_key(100_000);
        let rest = key.strip_prefix("sk-live-").unwrap();
        assert_eq!(rest.split('-').map(str::len).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert_ne!(seeded_key(1), seeded_key(2));
        // The seeding's CASEs: models every 3rd, limits every 4th, expiry every 10th, disabled
        // every 20th; the apps that carry requests or get churned have none of these.
        for n in (0..20).map(serving_app).chain((0..40).map(|k| churned_app(k, 2_000))) {
            assert!(n % 3 != 0 && n % 4 != 0 && n % 10 != 0 && n % 20 != 0, "{n}");
            assert!(n <= 2_000);
        }
    }

    #[test]
    fn rss_percentiles_and_counts_read_as_expected() {
        assert_eq!(
            parse_rss_kib("Name:\tenvoy\nVmRSS:\t  123456 kB\nVmData:\t1 kB\n"),
            Some(123_456)
        );
        assert_eq!(parse_rss_kib("Name:\tenvoy\n"), None);
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.99), 20.0);
        assert_eq!(percentile(&values, 0.5), 10.0);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(200), "200");
        let log = "[info] wasm log: key state changed: 2000 keys, 1 JWT keys, version 9\n[info] wasm log: key state adopted: 2000 keys, 1 JWT keys, version 3\nkey state adopted: 0 keys, 1 JWT keys, version 1\nother";
        assert_eq!(adoptions(log, Some(2_000)), 2);
        assert_eq!(adoptions(log, Some(0)), 1);
        assert_eq!(adoptions(log, None), 3);
    }
}
