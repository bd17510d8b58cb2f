//! The access-log sink over real gRPC: stream `StreamAccessLogsMessage`s the way Envoy does and
//! read the rows back from SQLite, including a repeated entry that must not count twice, and
//! see the ingestion in `/metrics`; a stream without the state token is refused and writes
//! nothing; impossible token counts are stored corrected and flagged.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::RequestMethod;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties,
};
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, LogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::google::protobuf::{Any, BytesValue, Timestamp};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::metadata::MetadataValue;

/// The state token of these tests' control planes.
const STATE_TOKEN: &str = "als-test-state-token-0001";

fn entry(id: &str, n: i64) -> HttpAccessLogEntry {
    entry_with_usage(
        id,
        n,
        &format!(r#""prompt_tokens":{n},"completion_tokens":1,"total_tokens":{}"#, n + 1),
    )
}

/// An entry whose usage record reports `counts` (the three token fields, as JSON members).
fn entry_with_usage(id: &str, n: i64, counts: &str) -> HttpAccessLogEntry {
    let usage = format!(
        r#"{{"app_id":1,"key_id":1,"model":"m","cluster":"c","stream":false,"status":200,{counts},"usage_source":"reported","ttft_ms":null,"duration_ms":null,"client_disconnected":false,"gateway_error":null,"upstream_error":null}}"#
    );
    let mut common = AccessLogCommon {
        start_time: Some(Timestamp { seconds: 1_700_000_000 + n, nanos: 0 }),
        ..Default::default()
    };
    common.filter_state_objects.insert(
        "wasm.gw_usage".into(),
        Any {
            type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
            value: BytesValue { value: usage.into_bytes() }.encode_to_vec(),
        },
    );
    HttpAccessLogEntry {
        common_properties: Some(common),
        request: Some(HttpRequestProperties {
            request_id: id.into(),
            request_method: RequestMethod::Post as i32,
            path: "/v1/completions".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A control plane on ephemeral loopback ports, its database, and what stops it.
struct Running {
    db: control_plane::Db,
    http_addr: std::net::SocketAddr,
    als_addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), control_plane::ServeError>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db =
        control_plane::db::open(&dir.path().join("als.db").display().to_string()).await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let als = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let als_addr = als.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = control_plane::api::AppState::new(
        db.clone(),
        STATE_TOKEN.into(),
        control_plane::secrets::hash(ADMIN_TOKEN),
    );
    // The entries are from 2023: retention by age would race the test for them.
    let keep_all =
        control_plane::Retention { max_age_days: 0, ..control_plane::Retention::default() };
    let listeners = control_plane::Listeners::new(http, als);
    let server = tokio::spawn(control_plane::serve(state, keep_all, listeners, async {
        let _ = stop_rx.await;
    }));
    Running { db, http_addr, als_addr, stop, server, _dir: dir }
}

const ADMIN_TOKEN: &str = "als-test-admin-token-0001";

/// A streaming call carrying `authorization` (none: no metadata).
fn call<S>(messages: S, authorization: Option<&str>) -> tonic::Request<S> {
    let mut request = tonic::Request::new(messages);
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", MetadataValue::try_from(value).unwrap());
    }
    request
}

fn batch(entries: Vec<HttpAccessLogEntry>) -> StreamAccessLogsMessage {
    StreamAccessLogsMessage {
        identifier: None,
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: entries })),
    }
}

/// How long a wait for eventual consistency may take (not a speed check).
const WAIT: Duration = Duration::from_secs(60);

/// Waits until `sql` (a count) gives at least `want`; returns the count then.
async fn count_until(db: &control_plane::Db, sql: &str, want: i64) -> i64 {
    gateway_stack::eventually(&format!("{want} from {sql}"), WAIT, || async {
        let count: i64 = sqlx::query_scalar(sql).fetch_one(db).await.unwrap();
        Ok((count >= want).then_some(count))
    })
    .await
    .unwrap()
}

/// Waits until the control plane's `/metrics` at `http` has the line `line`; returns them.
async fn metrics_with(http: std::net::SocketAddr, line: &str) -> String {
    gateway_stack::eventually(&format!("{line:?} in /metrics"), WAIT, || async {
        let metrics = get(http, "/metrics").await;
        Ok(metrics.lines().any(|l| l == line).then_some(metrics))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn streamed_entries_become_rows_once_each() {
    let Running { db, http_addr, als_addr, stop: stop_tx, server, _dir } = start().await;
    let mut client = AccessLogServiceClient::connect(format!("http://{als_addr}")).await.unwrap();
    let batches: Vec<StreamAccessLogsMessage> = (0..10)
        .map(|b| StreamAccessLogsMessage {
            identifier: None,
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: (0..100)
                    .map(|i| entry(&format!("req-{}", b * 100 + i), i64::from(b * 100 + i)))
                    .collect(),
            })),
        })
        .collect();
    let mut repeated = batches.clone();
    repeated.push(batches[3].clone());
    // Envoy keeps the stream open; the sink must not wait for its end to write.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let bearer = format!("Bearer {STATE_TOKEN}");
    let request = call(tokio_stream::wrappers::ReceiverStream::new(rx), Some(&bearer));
    let call = tokio::spawn(async move { client.stream_access_logs(request).await });
    for message in repeated {
        tx.send(message).await.unwrap();
    }
    let count = count_until(&db, "SELECT COUNT(*) FROM access_logs", 1000).await;
    assert_eq!(count, 1000, "every entry once, the repeated batch ignored");
    let tokens: i64 =
        sqlx::query_scalar("SELECT prompt_tokens FROM access_logs WHERE request_id = 'req-345'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(tokens, 345);

    // Ingestion shows in the metrics: 1,100 entries received, 1,000 new rows, 100 repeats.
    let metrics = metrics_with(http_addr, "gateway_access_log_rows_duplicate_total 100").await;
    for line in [
        "gateway_access_log_rows_received_total 1100",
        "gateway_access_log_rows_written_total 1000",
        "gateway_access_log_rows_duplicate_total 100",
        "gateway_access_log_rows_lost_total 0",
        "gateway_access_log_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(
        !metrics.contains("gateway_access_log_batch_write_seconds_count 0\n"),
        "batches were timed"
    );

    // Shut down while the stream is still open, as it is with Envoy: the server must still stop.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("shutdown hangs")
        .unwrap()
        .unwrap();
    drop(tx);
    let _ = call.await;
}

#[tokio::test]
async fn a_stream_without_the_state_token_is_refused_and_writes_nothing() {
    let running = start().await;
    let mut client =
        AccessLogServiceClient::connect(format!("http://{}", running.als_addr)).await.unwrap();
    let wrong = format!("Bearer {STATE_TOKEN}x");
    for authorization in [None, Some("Bearer "), Some(wrong.as_str()), Some(STATE_TOKEN)] {
        let messages = tokio_stream::iter(vec![batch(vec![entry("forged", 1)])]);
        let status = client.stream_access_logs(call(messages, authorization)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{authorization:?}");
    }
    // An authenticated stream after them is written: the refused ones did not take its id.
    let bearer = format!("Bearer {STATE_TOKEN}");
    let messages = tokio_stream::iter(vec![batch(vec![entry("forged", 2)])]);
    client.stream_access_logs(call(messages, Some(&bearer))).await.unwrap();
    let count = count_until(&running.db, "SELECT COUNT(*) FROM access_logs", 1).await;
    assert_eq!(count, 1);
    let tokens: i64 =
        sqlx::query_scalar("SELECT prompt_tokens FROM access_logs WHERE request_id = 'forged'")
            .fetch_one(&running.db)
            .await
            .unwrap();
    assert_eq!(tokens, 2, "Envoy's entry, not a refused stream's");
    let metrics = get(running.http_addr, "/metrics").await;
    assert!(metrics.lines().any(|l| l == "gateway_als_streams_refused_total 4"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "gateway_access_log_rows_received_total 1"), "{metrics}");
    stop(running).await;
}

#[tokio::test]
async fn impossible_counts_are_kept_flagged_and_never_break_the_usage_summary() {
    let running = start().await;
    let mut client =
        AccessLogServiceClient::connect(format!("http://{}", running.als_addr)).await.unwrap();
    let max = i64::MAX;
    let entries = vec![
        entry_with_usage(
            "negative",
            1,
            r#""prompt_tokens":-7,"completion_tokens":2,"total_tokens":-5"#,
        ),
        entry_with_usage(
            "absurd-1",
            2,
            &format!(r#""prompt_tokens":{max},"completion_tokens":{max},"total_tokens":{max}"#),
        ),
        entry_with_usage(
            "absurd-2",
            3,
            &format!(r#""prompt_tokens":{max},"completion_tokens":1,"total_tokens":{max}"#),
        ),
        entry("plain", 4),
    ];
    let bearer = format!("Bearer {STATE_TOKEN}");
    client
        .stream_access_logs(call(tokio_stream::iter(vec![batch(entries)]), Some(&bearer)))
        .await
        .unwrap();
    assert_eq!(
        count_until(&running.db, "SELECT COUNT(*) FROM access_logs", 4).await,
        4,
        "flagged rows are kept"
    );

    let logs = admin_get(running.http_addr, "/api/logs?size=10").await;
    let records = logs["records"].as_array().unwrap();
    let by_id = |id: &str| records.iter().find(|r| r["requestId"] == id).unwrap().clone();
    let negative = by_id("negative");
    assert_eq!(
        (negative["promptTokens"].as_i64(), negative["totalTokens"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(negative["anomaly"], "prompt_tokens < 0; total_tokens < 0");
    let absurd = by_id("absurd-2");
    assert_eq!(
        (absurd["promptTokens"].is_null(), absurd["completionTokens"].as_i64()),
        (true, Some(1))
    );
    assert!(absurd["anomaly"].as_str().unwrap().contains("prompt_tokens > 10000000"), "{absurd}");
    assert!(by_id("plain")["anomaly"].is_null());

    let usage = admin_get(
        running.http_addr,
        "/api/usage?from=2023-01-01T00:00:00Z&to=2023-12-31T00:00:00Z",
    )
    .await;
    assert_eq!(usage["totals"]["requests"], 4, "{usage}");
    assert_eq!(usage["totals"]["promptTokens"], 4, "only the plain row's count: {usage}");
    // Counted just after the rows' commit: eventually, not necessarily by now.
    let metrics = metrics_with(running.http_addr, "gateway_access_log_rows_flagged_total 3").await;
    assert!(metrics.lines().any(|l| l == "gateway_access_log_rows_flagged_total 3"), "{metrics}");
    stop(running).await;
}

async fn stop(running: Running) {
    running.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running.server)
        .await
        .expect("shutdown hangs")
        .unwrap()
        .unwrap();
}

/// The JSON body of an admin GET.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let body = request(
        addr,
        &format!(
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
        ),
    )
    .await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The body of a plain HTTP/1.0 GET.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    request(addr, &format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")).await
}

/// The body of the answer to a raw HTTP/1.0 request.
async fn request(addr: std::net::SocketAddr, text: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}
