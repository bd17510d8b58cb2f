//! Nothing is lost while the control plane is down or slow: Envoy's gRPC access logger drops
//! entries then, and the durable file log that the control plane ingests (idempotent by the
//! gateway's request id) fills every gap, without ever counting a request twice.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_e2e::eventually;
use gateway_stack::Stack;
use serde_json::{json, Value};

/// What one request's row must say.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    stream: bool,
    prompt: u64,
    completion: u64,
}

/// Sends `count` requests, every other one streamed (asking for usage, so the client knows the
/// exact counts), `concurrency` at a time; returns request id → what its row must say.
async fn send(
    stack: &Arc<Stack>,
    key: &str,
    count: usize,
    concurrency: usize,
) -> BTreeMap<String, Expected> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..count {
        let (stack, key, semaphore) = (stack.clone(), key.to_owned(), semaphore.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.unwrap();
            one_request(&stack, &key, i).await
        }));
    }
    let mut sent = BTreeMap::new();
    for task in tasks {
        let (id, expected) = task.await.unwrap();
        sent.insert(id, expected);
    }
    sent
}

async fn one_request(stack: &Stack, key: &str, i: usize) -> (String, Expected) {
    let stream = i.is_multiple_of(2);
    let mut body = json!({"model": "model-a", "max_tokens": 1 + i % 7, "messages": [{"role": "user", "content": format!("request {i}")}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let resp = stack.gateway_post("/v1/chat/completions", key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    let usage = if stream {
        common::sse_data(&text)
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|c| !c["usage"].is_null())
            .unwrap()["usage"]
            .clone()
    } else {
        serde_json::from_str::<Value>(&text).unwrap()["usage"].clone()
    };
    let tokens = |k: &str| usage[k].as_u64().unwrap();
    (
        id,
        Expected {
            stream,
            prompt: tokens("prompt_tokens"),
            completion: tokens("completion_tokens"),
        },
    )
}

/// Waits until every sent request has its row; checks each row's counts and that no request
/// has two rows.
async fn assert_recorded_once(stack: &Stack, sent: &BTreeMap<String, Expected>) {
    eventually("every request's row", Duration::from_secs(30), || async {
        let rows = stack.all_logs().await?;
        let found: std::collections::BTreeSet<&str> = rows
            .iter()
            .filter_map(|r| r["requestId"].as_str())
            .filter(|id| sent.contains_key(*id))
            .collect();
        Ok((found.len() == sent.len()).then_some(()))
    })
    .await
    .unwrap();
    // Pages shift while rows arrive; once every row is in, a listing is a stable snapshot.
    let rows = stack.all_logs().await.unwrap();
    let mut seen = BTreeMap::new();
    for row in
        rows.iter().filter(|r| r["requestId"].as_str().is_some_and(|id| sent.contains_key(id)))
    {
        let id = row["requestId"].as_str().unwrap().to_owned();
        let got = Expected {
            stream: row["stream"].as_bool().unwrap_or(false),
            prompt: row["promptTokens"].as_u64().unwrap_or(0),
            completion: row["completionTokens"].as_u64().unwrap_or(0),
        };
        assert_eq!(row["usageSource"], "reported", "{row}");
        assert!(row["startedAtMs"].as_i64().unwrap() > 1_700_000_000_000, "{row}");
        assert_eq!(&got, &sent[&id], "{row}");
        assert!(seen.insert(id, ()).is_none(), "two rows for one request: {row}");
    }
    // The usage summary counts each request once.
    let (status, usage) = stack.admin(reqwest::Method::GET, "/api/usage", None).await.unwrap();
    assert_eq!(status, 200);
    let total: u64 = usage["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["completionTokens"].as_u64().unwrap())
        .sum();
    let expected: u64 = sent.values().map(|e| e.completion).sum();
    assert_eq!(total, expected, "the usage summary: {usage}");
}

#[tokio::test]
async fn requests_served_while_the_control_plane_is_down_are_all_recorded_once() {
    let (mut stack, app) = common::stack_with_app().await;
    stack.stop_control_plane().await;
    let stack = Arc::new(stack);
    let sent = send(&stack, &app.api_key, 500, 16).await;
    let mut stack = Arc::into_inner(stack).unwrap();
    stack.restart_control_plane().await.unwrap();
    assert_recorded_once(&stack, &sent).await;
    stack.stop().await;
}

#[tokio::test]
async fn a_control_plane_killed_right_after_a_start_counts_no_request_twice() {
    let (mut stack, app) = common::stack_with_app().await;
    stack.kill_control_plane().await;
    let stack = Arc::new(stack);
    let sent = send(&stack, &app.api_key, 400, 16).await;
    let mut stack = Arc::into_inner(stack).unwrap();
    // Started, then killed right after its start (with the file's backlog still to read), then
    // started again.
    stack.restart_control_plane().await.unwrap();
    // A fixed pause, not a wait: no sign of "some rows in, not all" exists to wait for. The
    // backlog (fewer than 512 lines, the control plane's batch) is written in one transaction,
    // and only once its lines are 3 s old as seen by this process (the file ingest's grace), so
    // the API shows none of its rows or all of them (and 150 ms after a start, none: this kill
    // lands before the file is read, not within its transaction).
    tokio::time::sleep(Duration::from_millis(150)).await;
    stack.kill_control_plane().await;
    stack.restart_control_plane().await.unwrap();
    assert_recorded_once(&stack, &sent).await;
    let rows = stack.all_logs().await.unwrap();
    let distinct: std::collections::BTreeSet<&str> =
        rows.iter().filter_map(|r| r["requestId"].as_str()).collect();
    assert_eq!(distinct.len(), rows.len(), "no row twice");
    stack.stop().await;
}

#[tokio::test]
async fn under_load_every_request_is_recorded_once_and_drops_are_visible() {
    let (stack, app) = common::stack_with_app().await;
    let stack = Arc::new(stack);
    let sent = send(&stack, &app.api_key, 1000, 32).await;
    assert_recorded_once(&stack, &sent).await;
    // What the gRPC stream missed and the file filled is counted in the control plane's metrics.
    let metrics = stack.control_plane_metrics().await.unwrap();
    assert!(metrics.contains("gateway_access_log_file_rows_inserted_total"), "{metrics}");
    Arc::into_inner(stack).unwrap().stop().await;
}

#[tokio::test]
async fn envoys_access_log_stream_carries_the_secret_the_sink_requires() {
    let (stack, app) = common::stack_with_app().await;
    let stack = Arc::new(stack);
    send(&stack, &app.api_key, 4, 2).await;
    // The rows come over the gRPC stream (not only from the file), and no stream was refused.
    eventually("rows received over the gRPC stream", Duration::from_secs(10), || async {
        Ok((stack.control_plane_metric("gateway_access_log_rows_received_total").await.unwrap()
            >= 4.0)
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(stack.control_plane_metric("gateway_als_streams_refused_total").await.unwrap(), 0.0);
    // A stream without the secret (anyone who reaches the port) is refused and writes nothing:
    // its entry never becomes a row, while a request sent after it does.
    use envoy_types::pb::envoy::data::accesslog::v3::{
        AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties,
    };
    use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
        HttpAccessLogEntries, LogEntries,
    };
    use envoy_types::pb::envoy::service::accesslog::v3::{
        access_log_service_client::AccessLogServiceClient, StreamAccessLogsMessage,
    };
    let entry = HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon::default()),
        request: Some(HttpRequestProperties {
            request_id: "forged-request-id".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let forged = StreamAccessLogsMessage {
        identifier: None,
        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: vec![entry] })),
    };
    let mut client =
        AccessLogServiceClient::connect(format!("http://{}", stack.control_plane_als()))
            .await
            .unwrap();
    let answer = client.stream_access_logs(tokio_stream::iter([forged])).await;
    assert_eq!(answer.map_err(|s| s.code()).err(), Some(tonic::Code::Unauthenticated));
    assert_eq!(stack.control_plane_metric("gateway_als_streams_refused_total").await.unwrap(), 1.0);
    let after = send(&stack, &app.api_key, 1, 1).await;
    let after_id = after.keys().next().cloned().unwrap();
    let rows = eventually("the request after it logged", Duration::from_secs(10), || async {
        let rows = stack.all_logs().await?;
        Ok(rows.iter().any(|r| r["requestId"] == after_id.as_str()).then_some(rows))
    })
    .await
    .unwrap();
    assert!(
        !rows.iter().any(|r| r["requestId"] == "forged-request-id"),
        "the refused stream wrote a row"
    );
    Arc::try_unwrap(stack).ok().unwrap().stop().await;
}
