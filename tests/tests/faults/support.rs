//! What the fault tests share: requests as a client sends them (a stream read to its end or to
//! its break), the OpenAI error shape, finding a request's one access-log row, and naming the
//! timeouts Envoy runs with (for failure messages).

use std::time::Duration;

use gateway_e2e::eventually;
use gateway_e2e::reply_body::read_body;
use gateway_stack::{CreatedApp, FaultKnobs, Stack, StackOptions};
use serde_json::{json, Value};

/// The longest a test waits for something the gateway should do (a timeout to fire, rows to
/// arrive). Only a failing test waits this long.
pub const WAIT: Duration = Duration::from_secs(20);

/// What fault tests cap every configured request and stream timeout at, so they can wait for
/// one to fire ([`gateway_stack::FaultKnobs::short_timeouts`]).
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A stack whose configured timeouts are short, with an app.
pub async fn stack_with_short_timeouts() -> (Stack, CreatedApp) {
    let knobs = FaultKnobs { short_timeouts: Some(SHORT_TIMEOUT), ..FaultKnobs::default() };
    let stack =
        Stack::start_with(StackOptions::for_tests(), knobs).await.expect("the stack starts");
    let app = stack.create_app("faults").await.expect("an app is created");
    stack.wait_for_key(&app.api_key).await.expect("the key reaches the filter");
    (stack, app)
}

/// A chat request for `model` generating `max_tokens`; streamed when `stream`, then asking for
/// the usage (so the client knows the exact counts).
pub fn chat(model: &str, max_tokens: u32, stream: bool) -> Value {
    let mut body = json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// A reply as the client saw it, its body read to the end, to a break, or for [`WAIT`] at most.
#[derive(Debug)]
pub struct Seen {
    /// HTTP status.
    pub status: u16,
    /// `content-type`.
    pub content_type: String,
    /// The gateway's request id (`x-request-id`), which keys the access-log row.
    pub request_id: String,
    /// The body read.
    pub body: String,
    /// The body ended in an error (the connection closed before the body's end).
    pub broke: bool,
}

impl Seen {
    /// The `data:` payloads of a streamed body.
    pub fn events(&self) -> Vec<String> {
        crate::common::sse_data(&self.body)
    }

    /// The payloads that carry generated text (a choice with a non-empty `delta.content`).
    pub fn content_events(&self) -> usize {
        self.events()
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|t| !t.is_empty()))
            .count()
    }

    /// The `usage` a stream ended with, or a whole reply's.
    pub fn usage(&self) -> Option<Value> {
        if let Ok(whole) = serde_json::from_str::<Value>(&self.body) {
            return Some(whole["usage"].clone()).filter(|u| !u.is_null());
        }
        self.events()
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find(|c| !c["usage"].is_null())
            .map(|c| c["usage"].clone())
    }
}

/// Sends `body` to `/v1/chat/completions` with `key`; `Err` when no answer came within [`WAIT`].
pub async fn send_chat(
    http: &reqwest::Client,
    gateway_url: &str,
    key: &str,
    body: &Value,
) -> Result<Seen, String> {
    let url = format!("{gateway_url}/v1/chat/completions");
    let resp = tokio::time::timeout(WAIT, http.post(url).bearer_auth(key).json(body).send())
        .await
        .map_err(|_| format!("no answer within {WAIT:?}"))?
        .map_err(|e| format!("the request failed: {e:?}"))?;
    let header = |name: &str| {
        resp.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let (status, content_type, request_id) =
        (resp.status().as_u16(), header("content-type"), header("x-request-id"));
    let read = read_body(resp, WAIT).await;
    let body = String::from_utf8_lossy(&read.bytes).into_owned();
    if read.timed_out {
        return Err(format!(
            "status {status}; the body did not end within {WAIT:?}; read so far: {body}"
        ));
    }
    Ok(Seen { status, content_type, request_id, body, broke: read.broke })
}

/// The gateway's `host:port`, for raw connections.
pub fn gateway_address(stack: &Stack) -> String {
    stack.gateway_url.trim_start_matches("http://").to_owned()
}

/// `count` requests from a well-behaved client, one after another: each is answered 200 and
/// has its one row. Returns their request ids.
pub async fn assert_served(stack: &Stack, key: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let seen =
            send_chat(stack.http(), &stack.gateway_url, key, &chat("model-a", 2, i % 2 == 0))
                .await
                .unwrap();
        assert_eq!(
            (seen.status, seen.broke),
            (200, false),
            "a well-behaved client is served: {seen:?}"
        );
        ids.push(seen.request_id);
    }
    for id in &ids {
        assert_eq!(row_of(stack, id).await["status"], 200);
    }
    ids
}

/// Asserts an OpenAI-shaped error reply: JSON `{"error":{"message","type","param","code"}}`
/// with a string message, type and code.
pub fn assert_openai_error(what: &str, content_type: &str, body: &str) {
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type `{content_type}`, body `{body}`"
    );
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|_| panic!("{what}: the body is not JSON: `{body}`"));
    let error = &v["error"];
    assert!(error["message"].is_string(), "{what}: {v}");
    assert!(error["type"].is_string(), "{what}: {v}");
    assert!(error["code"].is_string(), "{what}: {v}");
    assert!(error.as_object().is_some_and(|e| e.contains_key("param")), "{what}: {v}");
}

/// The one access-log row of request `request_id` (waits for it; fails if there are two).
pub async fn row_of(stack: &Stack, request_id: &str) -> Value {
    let rows = eventually(&format!("the row of {request_id}"), WAIT, || async {
        let rows: Vec<Value> =
            stack.all_logs().await?.into_iter().filter(|r| r["requestId"] == request_id).collect();
        Ok((!rows.is_empty()).then_some(rows))
    })
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "one row per request: {rows:#?}");
    rows[0].clone()
}

/// Whether the row's response flags include one of `flags`.
pub fn has_flag(row: &Value, flags: &[&str]) -> bool {
    row["responseFlags"].as_str().is_some_and(|f| f.split(',').any(|f| flags.contains(&f.trim())))
}

/// Every `*timeout*` setting of Envoy's running configuration, `key=value`, for failure
/// messages ("what the configuration sets" when a timeout did not fire).
pub async fn configured_timeouts(stack: &Stack) -> String {
    fn walk(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains("timeout")
                        && !key.starts_with("connect")
                        && (item.is_string() || item.is_number())
                    {
                        out.push(format!("{path}.{key}={item}"));
                    }
                    walk(item, key, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, path, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match stack.envoy_config_dump().await {
        Ok(dump) => walk(&dump, "", &mut out),
        Err(e) => out.push(format!("(no config dump: {e})")),
    }
    if out.is_empty() {
        "none (Envoy's defaults: no request or header timeout, stream_idle_timeout 300 s)"
            .to_owned()
    } else {
        out.join(", ")
    }
}
