//! The control plane under load: its access-log sink fed by a gRPC client replaying realistic
//! entries (`envoy-types`), and `GET /api/logs` with a million rows seeded straight into SQLite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use envoy_types::pb::envoy::config::core::v3::RequestMethod;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::google::protobuf::{Any, BytesValue, Timestamp, UInt32Value};
use gateway_stack::control_plane::wait_until_listening;
use gateway_stack::process::ChildGuard;
use gateway_workspace::paths;
use prost::Message;
use serde_json::json;

use crate::cpu::{Processes, Snapshot};
use crate::report::Report;
use crate::settings::Settings;
use crate::summary::median;
use crate::wrk::{self, Load};

/// A control-plane process on its own database.
pub struct ControlPlane {
    /// HTTP API.
    pub http: SocketAddr,
    /// ALS gRPC sink.
    pub als: SocketAddr,
    /// The state feed's secret.
    pub state_token: String,
    admin_token: String,
    db_url: String,
    process: ChildGuard,
}

impl ControlPlane {
    /// Starts `binary` on a fresh SQLite file in `dir`.
    pub async fn start(binary: &Path, dir: &Path) -> Result<ControlPlane> {
        let db_url = format!("sqlite://{}", dir.join("bench.db").display());
        let (admin_token, state_token) = (gateway_os::new_token(), gateway_os::new_token());
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["--http-addr", "127.0.0.1:0", "--als-addr", "127.0.0.1:0", "--db", &db_url])
            .env("GATEWAY_ADMIN_TOKEN", &admin_token)
            .env("GATEWAY_STATE_TOKEN", &state_token)
            .env("RUST_LOG", "warn,control_plane=info");
        let mut process = ChildGuard::spawn("control-plane", command, false)?;
        let (http, als) = wait_until_listening(&mut process).await?;
        Ok(ControlPlane { http, als, state_token, admin_token, db_url, process })
    }

    /// Creates an app and returns its API key.
    pub async fn create_app_key(&self) -> Result<String> {
        self.create_app_key_with(json!({"orgName": "bench", "remark": "cargo xtask bench"})).await
    }

    /// Creates an app with `limits` (the admin API's `limits` object) and returns its API key.
    pub async fn create_limited_app_key(&self, limits: serde_json::Value) -> Result<String> {
        self.create_app_key_with(
            json!({"orgName": "bench", "remark": "cargo xtask bench, limited", "limits": limits}),
        )
        .await
    }

    async fn create_app_key_with(&self, app: serde_json::Value) -> Result<String> {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/api/apps", self.http))
            .bearer_auth(&self.admin_token)
            .json(&app)
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if status.as_u16() != 201 {
            bail!("creating the bench app answered {status}: {body}");
        }
        body["apiKey"].as_str().map(str::to_owned).context("no apiKey in the reply")
    }

    /// The control plane's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    async fn db(&self) -> Result<sqlx::SqlitePool> {
        Ok(sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&self.db_url).await?)
    }
}

fn entry(id: &str, now_ms: i64, n: i64) -> HttpAccessLogEntry {
    let usage = format!(
        r#"{{"app_id":{},"key_id":{},"user_id":null,"model":"bench-model","cluster":"model_0_bench_model","stream":{},"status":200,"prompt_tokens":{n},"completion_tokens":256,"total_tokens":{},"usage_source":"reported","ttft_ms":12,"duration_ms":830,"client_disconnected":false,"gateway_error":null,"upstream_error":null}}"#,
        1 + n % 20,
        1 + n % 20,
        n % 2 == 0,
        n + 256
    );
    let mut common = AccessLogCommon {
        start_time: Some(Timestamp {
            seconds: now_ms / 1000,
            nanos: i32::try_from((now_ms % 1000) * 1_000_000).unwrap_or(0),
        }),
        upstream_cluster: "model_0_bench_model".into(),
        ..Default::default()
    };
    let value = BytesValue { value: usage.into_bytes() }.encode_to_vec();
    common.filter_state_objects.insert(
        "wasm.gw_usage".into(),
        Any { type_url: "type.googleapis.com/google.protobuf.BytesValue".into(), value },
    );
    HttpAccessLogEntry {
        common_properties: Some(common),
        request: Some(HttpRequestProperties {
            request_id: id.into(),
            request_method: RequestMethod::Post as i32,
            path: "/v1/chat/completions".into(),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 200 }),
            response_body_bytes: 4096,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The control plane's CPU so far ([`Snapshot`] is per run; only its control-plane figure is
/// read here, so the control plane stands in for Envoy too).
fn cp_cpu(cp: &ControlPlane) -> Result<Snapshot> {
    let pid = cp.pid().context("the control plane has no pid")?;
    Snapshot::take(Processes { envoy: pid, control_plane: pid })
}

/// The rows in `access_logs`, read from the count the control plane's triggers keep (a
/// `COUNT(*)` every 10 ms would scan an index and take CPU from the process under test).
async fn stored_rows(db: &sqlx::SqlitePool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT rows FROM access_log_count WHERE id = 1").fetch_one(db).await?)
}

/// How long the replayed entries may take to be in SQLite.
const INGEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Milliseconds since the Unix epoch.
fn now_ms() -> Result<i64> {
    Ok(i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis(),
    )?)
}

/// The `n`th entry's request id, shaped and spread as Envoy's are (random version-4 UUIDs: a
/// store keyed by them alone would write each row to a random page), but the same every run.
fn request_id(n: u32) -> String {
    // splitmix64: two well-mixed words from `n`.
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (mix(u64::from(n)), mix(u64::from(n) | 1 << 32));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// Requests that start per millisecond in the replayed log (a gateway serving 32,000 requests
/// a second): entries come in the order they started, as Envoy logs a saturated, uniform load.
const STARTS_PER_MS: u32 = 32;

/// `rows` entries (requests `first` on) in messages of 100 entries, as Envoy batches them, the
/// last started at `now_ms`.
fn batches(rows: u32, first: u32, now_ms: i64) -> Vec<StreamAccessLogsMessage> {
    let first_ms = now_ms - i64::from(rows / STARTS_PER_MS);
    let started = |n: u32| first_ms + i64::from(n / STARTS_PER_MS);
    (0..rows.div_ceil(100))
        .map(|b| StreamAccessLogsMessage {
            identifier: None,
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: (0..100)
                    .filter(|i| b * 100 + i < rows)
                    .map(|i| {
                        let n = b * 100 + i;
                        entry(&request_id(first + n), started(n), i64::from(n))
                    })
                    .collect(),
            })),
        })
        .collect()
}

/// Waits until `rows` more than `before` are stored, polling every 10 ms until `deadline`.
async fn wait_for_rows(
    db: &sqlx::SqlitePool,
    before: i64,
    rows: u32,
    deadline: Instant,
) -> Result<()> {
    loop {
        let count = stored_rows(db).await?;
        if count >= before + i64::from(rows) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {} of {rows} ALS rows arrived within {INGEST_TIMEOUT:?}", count - before);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Times the ALS ingest is measured in one run; the median is reported (one 100,000-row replay
/// takes about two seconds, and this machine's noise moves a single one by a tenth).
const INGEST_ROUNDS: u32 = 3;

/// (d) ALS ingest: `rows` entries in batches of 100 over one stream, as Envoy sends them; the
/// clock stops when the last row is in SQLite. The control plane's CPU time over the same span,
/// per row, is `ingest_cpu_us_per_row`: the median of [`INGEST_ROUNDS`] replays, each of
/// requests of its own.
pub async fn als_ingest(cp: &ControlPlane, rows: u32, report: &mut Report) -> Result<()> {
    let db = cp.db().await?;
    let mut rounds = Vec::new();
    for round in 0..INGEST_ROUNDS {
        rounds.push(ingest_round(cp, &db, rows, round).await?);
    }
    let rows_per_s = median(rounds.iter().map(|r| f64::from(r.rows) / r.seconds).collect());
    let cpu_us_per_row = median(rounds.iter().map(|r| r.cpu_us_per_row).collect());
    report.set(
        "als_rows_per_s",
        rows_per_s,
        "rows/s",
        format!("{rows} entries, batches of 100, one gRPC stream, until all are in SQLite (median of {INGEST_ROUNDS})"),
    );
    let how = format!("the control plane's user+system CPU (/proc/<pid>/stat) from the first entry sent until all {rows} rows are in SQLite, per row (median of {INGEST_ROUNDS})");
    report.set("ingest_cpu_us_per_row", cpu_us_per_row, "µs", how);
    let runs: Vec<_> = rounds
        .iter()
        .map(|r| json!({"rows": r.rows, "seconds": r.seconds, "cpu_us_per_row": r.cpu_us_per_row}))
        .collect();
    report.detail("als", json!({"rows": rows, "rounds": runs, "cpu_us_per_row": cpu_us_per_row}));
    Ok(())
}

/// What one replay measured.
struct IngestRound {
    rows: u32,
    seconds: f64,
    cpu_us_per_row: f64,
}

/// One replay of `rows` entries (round `round`'s requests) on a stream of its own.
async fn ingest_round(
    cp: &ControlPlane,
    db: &sqlx::SqlitePool,
    rows: u32,
    round: u32,
) -> Result<IngestRound> {
    let before = stored_rows(db).await?;
    let batches = batches(rows, round * rows, now_ms()?);
    let mut client = AccessLogServiceClient::connect(format!("http://{}", cp.als)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let cpu_before = cp_cpu(cp)?;
    let started = Instant::now();
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    // The sink takes only streams that carry the state token, as Envoy's do.
    request.metadata_mut().insert("authorization", format!("Bearer {}", cp.state_token).parse()?);
    let call = tokio::spawn(async move { client.stream_access_logs(request).await });
    for batch in batches {
        tx.send(batch).await.map_err(|_| anyhow!("the ALS stream closed early"))?;
    }
    wait_for_rows(db, before, rows, started + INGEST_TIMEOUT).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_us_per_row = cpu_before.per_request(&cp_cpu(cp)?, f64::from(rows)).control_plane;
    drop(tx);
    call.abort();
    Ok(IngestRound { rows, seconds, cpu_us_per_row })
}

/// Seeds `rows` access-log rows in one transaction (one `INSERT … SELECT` over a recursive CTE),
/// and accounts for them (row count, usage by minute) as the control plane's writer does.
async fn seed_logs(cp: &ControlPlane, rows: u32) -> Result<f64> {
    let db = cp.db().await?;
    let now = now_ms()?;
    let started = Instant::now();
    let mut tx = db.begin().await?;
    let seeded = sqlx::query(
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?1)
         INSERT INTO access_logs (request_id, started_at_ms, method, path, status, duration_ms, upstream_cluster,
             upstream_host, bytes_sent, app_id, key_id, model, stream, prompt_tokens, completion_tokens,
             total_tokens, usage_source, ttft_ms, client_disconnected)
         SELECT 'seed-' || n, ?2 - n * 7, 'POST', '/v1/chat/completions', CASE WHEN n % 50 = 0 THEN 429 ELSE 200 END,
             40 + n % 900, 'model_' || (n % 4), '127.0.0.1:8000', 2048 + n % 4096, 1 + n % 50, 1 + n % 50,
             'model-' || (n % 4), n % 2, 10 + n % 300, 1 + n % 512, 11 + n % 300 + n % 512, 'reported', n % 90, 0
         FROM seq",
    )
    .bind(i64::from(rows))
    .bind(now - 60_000)
    .execute(&mut *tx)
    .await
    .context("seeding access_logs")?
    .rows_affected();
    control_plane::store::logs::account_written(&mut tx, seeded).await?;
    tx.commit().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// (d) `GET /api/logs` first pages (unfiltered and by app) with `rows` rows, wrk at concurrency 1.
pub async fn logs_query(
    cp: &ControlPlane,
    s: &Settings,
    rows: u32,
    report: &mut Report,
) -> Result<()> {
    let seed_seconds = seed_logs(cp, rows).await?;
    let mut details = serde_json::Map::new();
    details.insert("rows".into(), json!(rows));
    details.insert("seed_seconds".into(), json!(seed_seconds));
    let queries = [
        ("first_page", "/api/logs?page=1&size=20"),
        ("by_app", "/api/logs?page=1&size=20&appId=7"),
    ];
    let mut worst_p99 = 0f64;
    for (name, path) in queries {
        let load = Load {
            url: format!("http://{}{path}", cp.http),
            method: "GET",
            body: None,
            bearer: Some(cp.admin_token.clone()),
        };
        let run = wrk::run(&s.wrk, &s.dir, &load, 1, s.run_time)?;
        worst_p99 = worst_p99.max(run.p99_ms);
        details.insert(name.into(), run.json());
    }
    let note = if rows == 1_000_000 {
        "worst p99 of the first page, unfiltered and by app, 1,000,000 rows".to_string()
    } else {
        format!("worst p99 of two queries, only {rows} rows (quick run)")
    };
    report.set("logs_query_p99_ms_1m", worst_p99, "ms", note);
    report.detail("logs_query", serde_json::Value::Object(details));
    Ok(())
}

/// The control-plane binary the bench runs: release for a full run, as built for a quick one.
pub fn binary(release: bool) -> Result<PathBuf> {
    if release {
        let path = paths::release_control_plane();
        return if path.is_file() {
            Ok(path)
        } else {
            bail!("no release control plane at {}", path.display())
        };
    }
    paths::control_plane_bin()
}
