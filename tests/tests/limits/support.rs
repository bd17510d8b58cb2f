//! What the limit tests share: a stack with several Envoy workers, requests as a client sends
//! them (one, or a burst at once), the 429 as OpenAI answers it, rows, Prometheus samples, and
//! keeping a test clear of the calendar's window ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gateway_e2e::eventually;
use gateway_e2e::reply_body::read_body;
use gateway_stack::{Stack, StackOptions};
use mock_vllm::Fault;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

/// The longest a test waits for something the gateway should do. Only a failing test waits this
/// long.
pub const WAIT: Duration = Duration::from_secs(30);

/// The model most tests use; `OTHER` is the second mock.
pub const MODEL: &str = "model-a";
/// The other mock model.
pub const OTHER: &str = "model-b";

/// Envoy worker threads: each runs its own wasm VM, so a burst is spread over several of them.
pub const WORKERS: u16 = 4;

/// A stack whose Envoy runs [`WORKERS`] workers.
pub async fn stack() -> Stack {
    let options = StackOptions { envoy_workers: WORKERS, ..StackOptions::for_tests() };
    Stack::start(options).await.expect("the stack starts")
}

/// A chat request for `model` asking for `max_tokens`; streamed when `stream`.
pub fn chat(model: &str, max_tokens: u64, stream: bool) -> Value {
    let mut body = json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]});
    if stream {
        body["stream"] = json!(true);
    }
    body
}

/// A reply as the client saw it, body read to the end (or to a break).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Every header.
    pub headers: HeaderMap,
    /// The body read.
    pub body: String,
    /// The body ended in an error.
    pub broke: bool,
}

impl Reply {
    /// Header `name`, if any (and text).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `data:` payloads of a streamed body, parsed (`[DONE]` left out).
    pub fn events(&self) -> Vec<Value> {
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap_or(Value::Null))
            .collect()
    }

    /// The events that carry generated text.
    pub fn content_events(&self) -> usize {
        let text =
            |e: &Value| e["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty());
        self.events().iter().filter(|e| text(e)).count()
    }
}

/// Sends `body` to `/v1/chat/completions` of the gateway at `base` with `token`.
pub async fn send(http: &reqwest::Client, base: &str, token: &str, body: &Value) -> Reply {
    let url = format!("{base}/v1/chat/completions");
    let resp = tokio::time::timeout(WAIT, http.post(url).bearer_auth(token).json(body).send())
        .await
        .unwrap_or_else(|_| panic!("no answer within {WAIT:?}"))
        .expect("the request is answered");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let read = read_body(resp, WAIT).await;
    let body = String::from_utf8_lossy(&read.bytes).into_owned();
    assert!(!read.timed_out, "the body did not end within {WAIT:?}: {body}");
    Reply { status, headers, body, broke: read.broke }
}

/// `count` copies of `body` sent at once (each on its own connection) to the gateway at `base`.
pub async fn burst(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
    count: usize,
) -> Vec<Reply> {
    join_all((0..count).map(|_| send(http, base, token, body))).await
}

/// Sends `count` copies of `body` at once while the upstream holds every request it gets; once
/// each request is either answered (refused) or held at the upstream, lets the held ones go.
/// Returns the replies and how many the upstream held.
pub async fn burst_held(
    stack: &gateway_stack::Stack,
    token: &str,
    model: &str,
    count: usize,
) -> (Vec<Reply>, usize) {
    let mock = &stack.mock(model).state;
    mock.clear_seen();
    mock.set_fault(Fault::HoldBeforeHeaders);
    let answered = Arc::new(AtomicUsize::new(0));
    let sends: Vec<_> = (0..count)
        .map(|_| {
            let (http, base, token, answered) = (
                stack.http().clone(),
                stack.gateway_url.clone(),
                token.to_owned(),
                answered.clone(),
            );
            let body = chat(model, 2, false);
            tokio::spawn(async move {
                let reply = send(&http, &base, &token, &body).await;
                answered.fetch_add(1, Ordering::SeqCst);
                reply
            })
        })
        .collect();
    let answered_ref = &answered;
    let settled =
        eventually("every request answered or held at the upstream", WAIT, || async move {
            let (done, held) = (answered_ref.load(Ordering::SeqCst), mock.seen().len());
            Ok((done + held >= count).then_some(held))
        })
        .await;
    let held = mock.seen().len();
    mock.set_fault(Fault::None);
    settled.unwrap_or_else(|e| {
        panic!("{e}: {} answered, {held} held", answered.load(Ordering::SeqCst))
    });
    let mut replies = Vec::new();
    for send in sends {
        replies.push(send.await.unwrap());
    }
    (replies, held)
}

/// The statuses of `replies`, counted: `(200s, 429s)`; panics on any other status.
pub fn split(replies: &[Reply]) -> (usize, usize) {
    let other: Vec<&Reply> =
        replies.iter().filter(|r| (r.status != 200 && r.status != 429) || r.broke).collect();
    assert!(other.is_empty(), "only whole 200s and 429s are expected: {other:#?}");
    let ok = replies.iter().filter(|r| r.status == 200).count();
    (ok, replies.len() - ok)
}

/// Asserts a 429 as OpenAI answers it: `{"error":{message,type,param,code}}` with `code`,
/// a message naming the limit (`mentions`, any case), an integer `Retry-After` of at least 1
/// second, and OpenAI's rate-limit headers of the requests or tokens family.
pub fn assert_limited(reply: &Reply, code: &str, mentions: &str, family: &str) {
    assert_eq!(reply.status, 429, "{reply:?}");
    let error = &reply.json()["error"];
    assert_eq!(error["code"], code, "{reply:?}");
    assert!(error["type"].is_string() && error.get("param").is_some(), "{reply:?}");
    let message = error["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        message.contains(&mentions.to_lowercase()),
        "the message names the limit ({mentions}): {reply:?}"
    );
    let retry_after = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After in whole seconds: {reply:?}");
    assert_rate_headers(reply, family);
}

/// Asserts OpenAI's `x-ratelimit-{limit,remaining,reset}-{family}` headers.
pub fn assert_rate_headers(reply: &Reply, family: &str) {
    for name in ["limit", "remaining", "reset"] {
        let header = format!("x-ratelimit-{name}-{family}");
        assert!(reply.header(&header).is_some_and(|v| !v.is_empty()), "{header} on {reply:?}");
    }
}

/// The header `name` of `reply` as a number.
pub fn header_number(reply: &Reply, name: &str) -> Option<u64> {
    reply.header(name)?.parse().ok()
}

/// Every row of a chat completion of the app (or user) `id` once there are at least `count`
/// (all pages; the rows of `GET /v1/models`, which waiting for a key leaves, are left out).
pub async fn rows_of(stack: &Stack, id: i64, user: bool, count: usize) -> Vec<Value> {
    let field = if user { "userId" } else { "appId" };
    let chat = |r: &Value| r[field] == id && r["path"] == "/v1/chat/completions";
    eventually(&format!("{count} rows of {field} {id}"), WAIT, || async {
        let rows: Vec<Value> = stack.all_logs().await?.into_iter().filter(chat).collect();
        Ok((rows.len() >= count).then_some(rows))
    })
    .await
    .unwrap()
}

/// The sum of `totalTokens` over `rows`.
pub fn total_tokens(rows: &[Value]) -> i64 {
    rows.iter().map(|r| r["totalTokens"].as_i64().unwrap_or(0)).sum()
}

/// The sum of the samples of `metric` whose labels include `label` (`reason="…"`), at the
/// Prometheus endpoint of the Envoy whose admin is `admin`.
pub async fn prometheus_sum(admin: std::net::SocketAddr, metric: &str, label: &str) -> f64 {
    let text = gateway_stack::envoy::prometheus(admin).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `vllm_gateway_limited_total{reason}` at Envoy `admin` reaches `count`; returns
/// it (a higher count is returned too, for the caller to compare).
pub async fn limited_total(admin: std::net::SocketAddr, reason: &str, count: f64) -> f64 {
    let label = format!("reason=\"{reason}\"");
    let reached =
        eventually(&format!("{count} refusals by {reason} in Prometheus"), WAIT, || async {
            let value = prometheus_sum(admin, "vllm_gateway_limited_total", &label).await;
            Ok((value >= count).then_some(value))
        })
        .await;
    match reached {
        Ok(value) => value,
        Err(e) => panic!(
            "{e}; the exposition has: {}",
            prometheus_sum(admin, "vllm_gateway_limited_total", "").await
        ),
    }
}

/// Seconds into the current UTC minute.
fn seconds_into_minute() -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.as_secs() % 60
}

/// Per-minute limits count in calendar minutes: a burst that straddles a minute's end meets two
/// windows. Waits, when the minute is close to its end, until the next one has begun (the only
/// sleep of these tests: it waits for the calendar, not for the gateway).
pub async fn clear_of_minute_end() {
    let into = seconds_into_minute();
    if into >= 40 {
        tokio::time::sleep(Duration::from_secs(61 - into)).await;
    }
}

/// An IANA zone (`Etc/GMT±h`) where it is now around noon, so that a daily budget's window does
/// not end during a test (and budgets in a zone other than UTC are exercised).
pub fn noon_time_zone() -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let utc_hour = i64::try_from(now.as_secs() / 3600 % 24).unwrap_or(0);
    // Local = UTC + offset; `Etc/GMT-5` is UTC+5 (POSIX signs are inverted).
    let offset = (12 - utc_hour).clamp(-12, 14);
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// The `max_tokens` the upstream saw in `request` (`max_completion_tokens` first, as vLLM reads
/// them).
pub fn upstream_max_tokens(request: &mock_vllm::SeenRequest) -> Option<u64> {
    let body: Value = serde_json::from_slice(&request.body).ok()?;
    body["max_completion_tokens"].as_u64().or_else(|| body["max_tokens"].as_u64())
}
