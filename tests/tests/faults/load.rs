//! A thousand streams at once through the stack's Envoy: every one is answered and completes
//! with the right usage, and the log has one row per stream with the same counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gateway_e2e::eventually;
use gateway_stack::{Stack, StackOptions, Upstreams};
use tokio::sync::Barrier;

use super::support::{chat, Seen, WAIT};

/// Streams open at once.
const STREAMS: usize = 1000;
/// Tokens each generates.
const TOKENS: u64 = 5;

/// Sends one streamed request; once its first bytes have arrived, waits at `opened` until every
/// stream has its first bytes (so all of them are open at once), then reads the rest.
async fn one_stream(
    http: reqwest::Client,
    url: String,
    key: String,
    opened: Arc<Barrier>,
) -> Result<Seen, String> {
    use futures::StreamExt;
    let started = async {
        let resp = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat("model-a", TOKENS as u32, true))
            .send()
            .await;
        let resp = resp.map_err(|e| format!("the request failed: {e:?}"))?;
        let (status, request_id) = (
            resp.status().as_u16(),
            resp.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
        let mut body = resp.bytes_stream();
        let first = body
            .next()
            .await
            .transpose()
            .map_err(|e| format!("status {status}, no first bytes: {e:?}"))?
            .unwrap_or_default();
        Ok::<_, String>((status, request_id, first.to_vec(), body))
    }
    .await;
    opened.wait().await;
    let (status, request_id, mut read, mut body) = started?;
    let mut broke = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(bytes) => read.extend_from_slice(&bytes),
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    let body = String::from_utf8_lossy(&read).into_owned();
    Ok(Seen { status, content_type: String::new(), request_id, body, broke })
}

// Several threads: the thousand clients and the mock upstream share the test's runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_all_complete_with_their_usage_and_one_row_each() {
    let mut options = StackOptions::for_tests();
    // Each stream lasts a while (7 frames, a pause between two), so they overlap in Envoy too.
    options.upstreams = Upstreams::Mock {
        models: vec!["model-a".into()],
        token_delay: Duration::from_millis(100),
        split_seed: None,
    };
    let (stack, app) = crate::common::stack_with_app_using(options).await;
    let opened = Arc::new(Barrier::new(STREAMS));
    let streams: Vec<_> = (0..STREAMS)
        .map(|_| {
            tokio::spawn(one_stream(
                stack.http().clone(),
                stack.gateway_url.clone(),
                app.api_key.clone(),
                opened.clone(),
            ))
        })
        .collect();
    let mut seen = Vec::new();
    for stream in streams {
        let done = tokio::time::timeout(WAIT * 3, stream)
            .await
            .expect("every stream ends (all reached their first bytes)");
        seen.push(done.unwrap());
    }
    let failed: Vec<&String> = seen.iter().filter_map(|s| s.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {STREAMS} streams failed: {:#?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let mut usage = BTreeMap::new();
    for s in seen.into_iter().map(Result::unwrap) {
        assert_eq!((s.status, s.broke, s.content_events() as u64), (200, false, TOKENS), "{s:?}");
        assert!(s.body.ends_with("data: [DONE]\n\n"), "{s:?}");
        let u = s.usage().unwrap_or_else(|| panic!("no usage: {s:?}"));
        assert_eq!(u["completion_tokens"], TOKENS, "{s:?}");
        usage.insert(s.request_id, u["prompt_tokens"].as_u64().unwrap());
    }
    assert_eq!(usage.len(), STREAMS, "every stream has its own request id");
    assert_one_row_each(&stack, &usage).await;
    stack.stop().await;
}

/// Every stream's row, once, with the counts its client got.
async fn assert_one_row_each(stack: &Stack, prompt_tokens: &BTreeMap<String, u64>) {
    let rows = eventually("a row for every stream", WAIT * 2, || async {
        let rows = stack.all_logs().await?;
        let ours: Vec<_> = rows
            .into_iter()
            .filter(|r| r["requestId"].as_str().is_some_and(|id| prompt_tokens.contains_key(id)))
            .collect();
        Ok((ours.len() >= prompt_tokens.len()).then_some(ours))
    })
    .await
    .unwrap();
    assert_eq!(rows.len(), STREAMS, "one row per stream");
    for row in &rows {
        let id = row["requestId"].as_str().unwrap();
        assert_eq!(
            (row["status"].as_u64(), row["stream"].as_bool(), row["usageSource"].as_str()),
            (Some(200), Some(true), Some("reported")),
            "{row}"
        );
        assert_eq!(
            (row["promptTokens"].as_u64(), row["completionTokens"].as_u64()),
            (Some(prompt_tokens[id]), Some(TOKENS)),
            "{row}"
        );
    }
}
