//! The durable file log against real files and a real SQLite file: every line once, whichever
//! path (file or gRPC) delivers a request first; partial and garbage lines; a cursor that
//! survives a restart; rotation with a fake Envoy admin, the test playing Envoy's part.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use control_plane::file_log::{Config, Ingester};
use control_plane::metrics::Metrics;
use control_plane::request_facts::{to_row, RequestFacts};
use control_plane::Db;
use tokio::sync::watch;

/// When the requests of these lines started (the same on the gRPC path: one instant).
const START_MS: i64 = 1_796_018_700_551;

/// One line as Envoy writes it.
fn line(id: &str, prompt: u64) -> String {
    let usage = format!(
        r#"{{"app_id":1,"model":"m","status":200,"prompt_tokens":{prompt},"completion_tokens":2,"total_tokens":{},"usage_source":"reported"}}"#,
        prompt + 2
    );
    let usage = serde_json::to_string(&usage).unwrap();
    format!(
        r#"{{"bytes_sent":2,"client_request_id":"c-{id}","duration_ms":0,"method":"POST","path":"/v1/chat/completions","request_id":"{id}","response_flags":"-","start_ms":"{START_MS}","status":200,"upstream_cluster":"model_0_m","upstream_host":"127.0.0.1:4000","usage":{usage}}}"#
    ) + "\n"
}

fn lines(ids: std::ops::Range<u32>) -> String {
    ids.map(|i| line(&format!("req-{i}"), u64::from(i))).collect()
}

/// Envoy's side of the file: appends to what it opened until told to reopen.
struct Envoy {
    path: PathBuf,
    file: std::fs::File,
}

impl Envoy {
    fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        Self { path: path.to_owned(), file }
    }

    fn write(&mut self, text: &str) {
        self.file.write_all(text.as_bytes()).unwrap();
    }

    fn reopen(&mut self) {
        *self = Self::open(&self.path.clone());
    }
}

struct Setup {
    db: Db,
    dir: tempfile::TempDir,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    _stop_tx: watch::Sender<bool>,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).await;
        let (stop_tx, stop) = watch::channel(false);
        Self { db, dir, metrics: Arc::new(Metrics::default()), stop, _stop_tx: stop_tx }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("access.jsonl")
    }

    fn config(&self) -> Config {
        Config {
            grace: Duration::ZERO,
            idle: Duration::from_millis(100),
            ..Config::new(self.log())
        }
    }

    fn ingester(&self, config: Config) -> Ingester {
        Ingester::new(self.db.clone(), config, self.metrics.clone())
    }

    async fn rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&self.db).await.unwrap()
    }

    fn count(&self, metric: &std::sync::atomic::AtomicU64) -> u64 {
        metric.load(Relaxed)
    }
}

async fn open_db(dir: &Path) -> Db {
    control_plane::db::open(&dir.join("f.db").display().to_string()).await.unwrap()
}

#[tokio::test]
async fn every_line_becomes_one_row_whichever_path_delivers_it_first() {
    let s = Setup::new().await;
    // The gRPC stream delivered 5 of the 20 requests before the file is read.
    let (sender, writer) = control_plane::log_writer::spawn(s.db.clone(), s.metrics.clone());
    for i in 0..5 {
        sender
            .send(to_row(RequestFacts {
                request_id: format!("req-{i}"),
                started_at_ms: START_MS,
                ..RequestFacts::default()
            }))
            .await
            .unwrap();
    }
    drop(sender);
    writer.await.unwrap();
    std::fs::write(s.log(), lines(0..20)).unwrap();
    let mut ingester = s.ingester(s.config());
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 20);
    assert_eq!(
        (s.count(&s.metrics.file_rows_read), s.count(&s.metrics.file_rows_inserted)),
        (20, 15),
        "15 the stream missed"
    );
    let row: (Option<String>, Option<i64>, Option<String>) =
        sqlx::query_as("SELECT client_request_id, prompt_tokens, response_flags FROM access_logs WHERE request_id = 'req-7'").fetch_one(&s.db).await.unwrap();
    assert_eq!(row, (Some("c-req-7".into()), Some(7), None));

    // The same lines again (a second copy appended) and the same ids by the stream: still 20.
    Envoy::open(&s.log()).write(&lines(0..20));
    ingester.pass(&s.stop).await.unwrap();
    ingester.pass(&s.stop).await.unwrap();
    let (sender, writer) = control_plane::log_writer::spawn(s.db.clone(), s.metrics.clone());
    for i in 0..20 {
        sender
            .send(to_row(RequestFacts {
                request_id: format!("req-{i}"),
                started_at_ms: START_MS,
                ..RequestFacts::default()
            }))
            .await
            .unwrap();
    }
    drop(sender);
    writer.await.unwrap();
    assert_eq!(s.rows().await, 20);
    assert_eq!(
        (s.count(&s.metrics.file_rows_read), s.count(&s.metrics.file_rows_inserted)),
        (40, 15)
    );
    assert_eq!(s.metrics.file_lag_bytes.load(Relaxed), 0);
}

#[tokio::test]
async fn a_partial_last_line_waits_and_garbage_is_skipped_and_counted() {
    let s = Setup::new().await;
    let mut envoy = Envoy::open(&s.log());
    let third = line("req-2", 2);
    envoy.write(&(lines(0..2) + &third[..40]));
    let mut ingester = s.ingester(s.config());
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 2);
    assert_eq!(s.metrics.file_lag_bytes.load(Relaxed), 40, "the partial line is lag");
    envoy.write(&third[40..]);
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 3);

    envoy.write("not json\n{\"start_ms\":\"1\"}\n\n");
    envoy.write(&line("req-3", 3));
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 4, "the line after garbage is read");
    assert_eq!(s.count(&s.metrics.file_lines_unparseable), 2, "a blank line is no garbage");
    assert_eq!(s.count(&s.metrics.file_rows_read), 4);
}

#[tokio::test]
async fn the_cursor_survives_a_restart_and_the_file_grown_meanwhile_is_read_on() {
    let s = Setup::new().await;
    let mut envoy = Envoy::open(&s.log());
    envoy.write(&lines(0..30));
    s.ingester(s.config()).pass(&s.stop).await.unwrap();
    s.db.close().await;

    // Down: Envoy goes on writing. Then a new process opens the database again.
    envoy.write(&lines(30..50));
    let db = open_db(s.dir.path()).await;
    let metrics = Arc::new(Metrics::default());
    let mut ingester = Ingester::new(db.clone(), s.config(), metrics.clone());
    ingester.pass(&s.stop).await.unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&db).await.unwrap();
    assert_eq!(rows, 50);
    assert_eq!(metrics.file_rows_read.load(Relaxed), 20, "nothing read twice, nothing skipped");
}

#[tokio::test]
async fn a_file_rewritten_in_place_or_truncated_is_read_from_the_start() {
    let s = Setup::new().await;
    std::fs::write(s.log(), lines(0..3)).unwrap();
    let mut ingester = s.ingester(s.config());
    ingester.pass(&s.stop).await.unwrap();
    // Same inode, another first line, longer than the cursor: a new file.
    std::fs::write(s.log(), lines(10..16)).unwrap();
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 9);
    // Truncated below the cursor.
    std::fs::write(s.log(), lines(20..21)).unwrap();
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 10);
}

/// A fake Envoy admin that counts `POST /reopen_logs`.
async fn fake_admin() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/reopen_logs",
        post(move || {
            counted.fetch_add(1, Relaxed);
            async { "OK\n" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

#[tokio::test]
async fn rotates_past_the_limit_and_reads_the_renamed_file_until_envoy_switched() {
    let s = Setup::new().await;
    let (admin, reopens) = fake_admin().await;
    let config = Config { max_bytes: 2000, envoy_admin: Some(admin), ..s.config() };
    let rotated = config.rotated_path();
    let mut ingester = s.ingester(config);
    let mut envoy = Envoy::open(&s.log());
    envoy.write(&lines(0..10));
    ingester.pass(&s.stop).await.unwrap();
    assert!(rotated.exists() && !s.log().exists(), "renamed");
    assert_eq!((reopens.load(Relaxed), s.count(&s.metrics.file_rotations)), (1, 1));

    // Envoy has not reopened yet: it still writes the renamed file.
    envoy.write(&lines(10..13));
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 13);
    envoy.reopen();
    envoy.write(&lines(13..15));
    ingester.pass(&s.stop).await.unwrap();
    // The renamed file stays unchanged longer than `idle` (100 ms): the time under test.
    tokio::time::sleep(Duration::from_millis(150)).await;
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 15);
    assert_eq!(reopens.load(Relaxed), 1, "asked once");

    // The second rotation replaces the first rotated file, which was read to its end.
    envoy.write(&lines(15..23));
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!((reopens.load(Relaxed), s.count(&s.metrics.file_rotations)), (2, 2));
    envoy.reopen();
    envoy.write(&lines(23..24));
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 24);
    assert_eq!(s.count(&s.metrics.file_rows_read), 24, "every line once");
    let cursors: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM access_log_file_cursors")
        .fetch_one(&s.db)
        .await
        .unwrap();
    assert_eq!(cursors, 2, "the live file and the rotated one");
    assert_eq!(std::fs::read_to_string(&rotated).unwrap(), lines(13..23), "the second live file");
}

#[tokio::test]
async fn without_envoys_admin_address_the_file_is_never_rotated() {
    let s = Setup::new().await;
    let mut ingester = s.ingester(Config { max_bytes: 100, ..s.config() });
    std::fs::write(s.log(), lines(0..5)).unwrap();
    ingester.pass(&s.stop).await.unwrap();
    ingester.pass(&s.stop).await.unwrap();
    assert!(s.log().exists() && !s.config().rotated_path().exists());
    assert_eq!((s.rows().await, s.count(&s.metrics.file_rotations)), (5, 0));
}

#[tokio::test]
async fn lines_wait_out_the_grace_period_so_the_stream_goes_first() {
    let s = Setup::new().await;
    let mut ingester = s.ingester(Config { grace: Duration::from_millis(300), ..s.config() });
    std::fs::write(s.log(), lines(0..3)).unwrap();
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 0);
    assert_eq!(s.metrics.file_lag_bytes.load(Relaxed), lines(0..3).len() as i64);
    tokio::time::sleep(Duration::from_millis(350)).await;
    ingester.pass(&s.stop).await.unwrap();
    assert_eq!(s.rows().await, 3);
}

#[tokio::test]
async fn the_served_control_plane_ingests_the_file_and_shows_it_in_its_metrics() {
    let s = Setup::new().await;
    std::fs::write(s.log(), lines(0..7) + "garbage\n").unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = http.local_addr().unwrap();
    let als = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = control_plane::api::AppState::new(s.db.clone(), "f".repeat(20), "h".into());
    let config = Config { poll: Duration::from_millis(20), ..s.config() };
    let tasks =
        control_plane::Tasks { access_log_file: Some(config), ..control_plane::Tasks::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(control_plane::serve(
        state,
        tasks,
        control_plane::Listeners::new(http, als),
        async {
            let _ = stop_rx.await;
        },
    ));
    let metrics = gateway_stack::eventually(
        "the file's 7 rows inserted",
        Duration::from_secs(10),
        || async {
            let metrics =
                reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
            Ok(metrics
                .contains("gateway_access_log_file_rows_inserted_total 7\n")
                .then_some(metrics))
        },
    )
    .await
    .unwrap();
    for line in [
        "gateway_access_log_file_rows_read_total 7",
        "gateway_access_log_file_rows_inserted_total 7",
        "gateway_access_log_file_lines_unparseable_total 1",
        "gateway_access_log_file_lag_bytes 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown hangs")
        .unwrap()
        .unwrap();
    assert_eq!(s.rows().await, 7);
}
