//! A storm of 200 concurrent bad logins — one account guessed from many addresses, many
//! e-mails from one address, many e-mails from many addresses — against a real control plane
//! on loopback, while every password-check permit is held, so that the storm is still in
//! flight by construction (no timing is assumed). Meanwhile a key change reaches a held
//! state-feed long poll and an access-log stream's row is written: neither waits for logins.
//! Then the permits are released and every login is answered, 401 or 429, none unbounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use control_plane::api::AppState;
use control_plane::password::PasswordChecks;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties,
};
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::google::protobuf::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;

const ADMIN: &str = "storm-admin-token-0001";
const STATE: &str = "storm-state-token-0001";
const LOGINS: usize = 200;
const PERMITS: usize = 2;
const QUEUE: usize = 64;
/// How long a wait for eventual consistency may take (not a speed check).
const WAIT: Duration = Duration::from_secs(30);

struct Running {
    db: control_plane::Db,
    http: SocketAddr,
    als: SocketAddr,
    checks: Arc<PasswordChecks>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db =
        control_plane::db::open(&dir.path().join("storm.db").display().to_string()).await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let als = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http_addr, als_addr) = (http.local_addr().unwrap(), als.local_addr().unwrap());
    let state = AppState::new(db.clone(), STATE.into(), control_plane::secrets::hash(ADMIN))
        .with_password_checks(PasswordChecks::new(PERMITS, QUEUE));
    let checks = Arc::clone(state.password_checks());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = control_plane::Listeners::new(http, als);
    tokio::spawn(control_plane::serve(
        state,
        control_plane::Retention::default(),
        listeners,
        async {
            let _ = stopped.await;
        },
    ));
    Running { db, http: http_addr, als: als_addr, checks, _stop: stop, _dir: dir }
}

/// Login `i` of the storm: (e-mail, the client address Envoy forwards).
fn storm_login(i: usize) -> (String, String) {
    match i % 4 {
        0 => ("victim@example.com".to_owned(), format!("10.1.{}.{}", i / 256, i % 256)),
        1 => (format!("sprayed-{i}@example.com"), "192.0.2.1".to_owned()),
        _ => (format!("random-{i}@example.com"), format!("10.2.{}.{}", i / 256, i % 256)),
    }
}

/// Starts the storm; each answer's status is sent on the returned channel.
fn storm(
    client: &reqwest::Client,
    http: SocketAddr,
    answered: &Arc<AtomicUsize>,
) -> tokio::sync::mpsc::UnboundedReceiver<u16> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..LOGINS {
        let (email, forwarded) = storm_login(i);
        let request = client
            .post(format!("http://{http}/user/user_login"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": email, "password": "not-the-password"}));
        let (tx, answered) = (tx.clone(), Arc::clone(answered));
        tokio::spawn(async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["success"], false, "{body}");
            answered.fetch_add(1, SeqCst);
            tx.send(status).unwrap();
        });
    }
    rx
}

/// The state feed's current ETag.
async fn etag(client: &reqwest::Client, http: SocketAddr) -> String {
    let response = client
        .get(format!("http://{http}/internal/state"))
        .bearer_auth(STATE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// Streams one access-log entry, authenticated as Envoy.
async fn stream_one_entry(als: SocketAddr, request_id: &str) {
    let entry = HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            start_time: Some(Timestamp { seconds: 1_800_000_000, nanos: 0 }),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_id: request_id.into(),
            path: "/v1/models".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let message = StreamAccessLogsMessage {
        identifier: None,
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: vec![entry] })),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![message]));
    request.metadata_mut().insert("authorization", format!("Bearer {STATE}").parse().unwrap());
    let mut client = AccessLogServiceClient::connect(format!("http://{als}")).await.unwrap();
    client.stream_access_logs(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_starves_neither_the_state_feed_nor_log_ingest() {
    let cp = start().await;
    let client = reqwest::Client::new();
    // Every permit is held: each admitted login waits for a check until they are released.
    let mut held = Vec::new();
    for _ in 0..PERMITS {
        held.push(cp.checks.acquire().await.unwrap());
    }
    let answered = Arc::new(AtomicUsize::new(0));
    let mut statuses = storm(&client, cp.http, &answered);
    gateway_stack::eventually("every login answered or waiting for a check", WAIT, || async {
        Ok((answered.load(SeqCst) + cp.checks.waiting() == LOGINS).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(cp.checks.waiting(), QUEUE, "the queue is full; the rest were answered at once");

    // (a) A key change reaches a held long poll while the logins are in flight.
    let before = etag(&client, cp.http).await;
    let poll = client
        .get(format!("http://{}/internal/state?wait_ms=30000", cp.http))
        .bearer_auth(STATE)
        .header("if-none-match", &before)
        .send();
    let poll = tokio::spawn(poll);
    let created = client
        .post(format!("http://{}/api/apps", cp.http))
        .bearer_auth(ADMIN)
        .json(&json!({"orgName": "storm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let changed = poll.await.unwrap().unwrap();
    assert_eq!(changed.status(), 200, "the long poll is answered with the change");
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), before);

    // (b) An access-log row is written while the logins are in flight.
    stream_one_entry(cp.als, "during-the-storm").await;
    let written: i64 = gateway_stack::eventually("the access-log row written", WAIT, || async {
        let written: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM access_logs WHERE request_id = 'during-the-storm'",
        )
        .fetch_one(&cp.db)
        .await
        .unwrap();
        Ok((written >= 1).then_some(written))
    })
    .await
    .unwrap();
    assert_eq!(written, 1);

    assert_eq!(
        (cp.checks.waiting(), answered.load(SeqCst)),
        (QUEUE, LOGINS - QUEUE),
        "the storm is still in flight"
    );
    drop(held);
    let mut by_status = std::collections::BTreeMap::new();
    for _ in 0..LOGINS {
        *by_status.entry(statuses.recv().await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        by_status,
        [(401, QUEUE), (429, LOGINS - QUEUE)].into_iter().collect(),
        "each waiting check ran once"
    );
    let metrics = client
        .get(format!("http://{}/metrics", cp.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let throttled: usize = ["account", "address", "busy"]
        .iter()
        .map(|scope| {
            counter(&metrics, &format!("gateway_login_throttled_total{{scope=\"{scope}\"}}"))
        })
        .sum();
    assert_eq!(throttled, LOGINS - QUEUE, "{metrics}");
    assert!(counter(&metrics, "gateway_login_throttled_total{scope=\"busy\"}") > 0, "{metrics}");
}

fn counter(metrics: &str, series: &str) -> usize {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap()
}
