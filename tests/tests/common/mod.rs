//! Shared set-up of the end-to-end tests: a stack with two mock models and one app.

use gateway_e2e::{CreatedApp, Stack, StackOptions};

/// A started stack and an app whose key the gateway already accepts.
#[allow(dead_code)] // not every test binary uses it
pub async fn stack_with_app() -> (Stack, CreatedApp) {
    stack_with_app_using(StackOptions::for_tests()).await
}

/// The same, with other options.
pub async fn stack_with_app_using(options: StackOptions) -> (Stack, CreatedApp) {
    let stack = Stack::start(options).await.expect("the stack starts");
    let app = stack.create_app("e2e-org").await.expect("an app is created");
    stack.wait_for_key(&app.api_key).await.expect("the key reaches the filter");
    (stack, app)
}

/// The OpenAI client library pointed at the gateway with `key`.
#[allow(dead_code)] // not every test binary uses it
pub fn openai(stack: &Stack, key: &str) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{}/v1", stack.gateway_url))
        .with_api_key(key);
    async_openai::Client::with_config(config)
}

/// A reply read off the wire by [`raw_request`].
#[allow(dead_code)]
#[derive(Debug)]
pub struct RawReply {
    /// HTTP status.
    pub status: u16,
    /// Header lines, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

#[allow(dead_code)]
impl RawReply {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `method target` with `headers` and `body` exactly as written (no client-side clean-up
/// of `..`, `//` or escapes, unlike an HTTP library) and reads the whole reply.
#[allow(dead_code)]
pub async fn raw_request(stack: &Stack, method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack.gateway_url.trim_start_matches("http://");
    let mut request = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to the gateway");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read the reply");
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> RawReply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    RawReply { status, headers, body }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
        rest = &rest[eol + 2 + size + 2..];
    }
    out
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
#[allow(dead_code)]
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim().to_owned()).collect()
}
