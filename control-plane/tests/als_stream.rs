//! The access-log sink over real gRPC: stream `StreamAccessLogsMessage`s the way Envoy does and
//! read the rows back from SQLite, including a repeated entry that must not count twice, and
//! see the ingestion in `/metrics`.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::RequestMethod;
use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties};
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{HttpAccessLogEntries, LogEntries};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use envoy_types::pb::google::protobuf::{Any, BytesValue, Timestamp};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn entry(id: &str, n: i64) -> HttpAccessLogEntry {
    let usage = format!(r#"{{"app_id":1,"key_id":1,"model":"m","cluster":"c","stream":false,"status":200,"prompt_tokens":{n},"completion_tokens":1,"total_tokens":{},"usage_source":"reported","ttft_ms":null,"duration_ms":null,"client_disconnected":false,"gateway_error":null,"upstream_error":null}}"#, n + 1);
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

#[tokio::test]
async fn streamed_entries_become_rows_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let db = control_plane::db::open(&dir.path().join("als.db").display().to_string()).await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let als = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let als_addr = als.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = control_plane::api::AppState::new(db.clone(), "f".repeat(20), "h".into());
    // The entries are from 2023: retention by age would race the test for them.
    let keep_all = control_plane::Retention { max_age_days: 0, ..control_plane::Retention::default() };
    let server = tokio::spawn(control_plane::serve(state, keep_all, http, als, async {
        let _ = stop_rx.await;
    }));

    let mut client = AccessLogServiceClient::connect(format!("http://{als_addr}")).await.unwrap();
    let batches: Vec<StreamAccessLogsMessage> = (0..10)
        .map(|b| StreamAccessLogsMessage {
            identifier: None,
            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries {
                log_entry: (0..100).map(|i| entry(&format!("req-{}", b * 100 + i), i64::from(b * 100 + i))).collect(),
            })),
        })
        .collect();
    let mut repeated = batches.clone();
    repeated.push(batches[3].clone());
    // Envoy keeps the stream open; the sink must not wait for its end to write.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let call = tokio::spawn(async move { client.stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    for message in repeated {
        tx.send(message).await.unwrap();
    }
    // A deadline for eventual consistency, not a speed check: loaded CI machines write slowly.
    let mut count = 0i64;
    for _ in 0..1200 {
        count = sqlx::query_scalar("SELECT COUNT(*) FROM access_logs").fetch_one(&db).await.unwrap();
        if count == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, 1000, "every entry once, the repeated batch ignored");
    let tokens: i64 = sqlx::query_scalar("SELECT prompt_tokens FROM access_logs WHERE request_id = 'req-345'").fetch_one(&db).await.unwrap();
    assert_eq!(tokens, 345);

    // Ingestion shows in the metrics: 1,100 entries received, 1,000 new rows, 100 repeats.
    let mut metrics = String::new();
    for _ in 0..1200 {
        metrics = get(http_addr, "/metrics").await;
        if metrics.contains("gateway_access_log_rows_duplicate_total 100\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in [
        "gateway_access_log_rows_received_total 1100",
        "gateway_access_log_rows_written_total 1000",
        "gateway_access_log_rows_duplicate_total 100",
        "gateway_access_log_rows_lost_total 0",
        "gateway_access_log_queue_depth 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(!metrics.contains("gateway_access_log_batch_write_seconds_count 0\n"), "batches were timed");

    // Shut down while the stream is still open, as it is with Envoy: the server must still stop.
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("shutdown hangs").unwrap().unwrap();
    drop(tx);
    let _ = call.await;
}

/// The body of a plain HTTP/1.0 GET.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}
