//! Shared set-up of the end-to-end tests: a stack with two mock models and one app.

use gateway_stack::{CreatedApp, Stack, StackOptions};

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
pub fn openai(
    stack: &Stack,
    key: &str,
) -> async_openai::Client<async_openai::config::OpenAIConfig> {
    let config = async_openai::config::OpenAIConfig::new()
        .with_api_base(format!("{}/v1", stack.gateway_url))
        .with_api_key(key);
    async_openai::Client::with_config(config)
}

/// A reply read off the wire by [`raw_request`].
#[allow(unused_imports)]
pub use gateway_e2e::http_wire::WireReply as RawReply;

/// Sends `method target` with `headers` and `body` exactly as written (no client-side clean-up
/// of `..`, `//` or escapes, unlike an HTTP library) and reads the whole reply.
#[allow(dead_code)]
pub async fn raw_request(
    stack: &Stack,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> RawReply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = stack.gateway_url.trim_start_matches("http://");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect to the gateway");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.expect("read the reply");
    gateway_e2e::http_wire::parse_reply(&raw).expect("a complete reply")
}

/// The `data:` payloads of an SSE body, `[DONE]` included.
#[allow(dead_code)]
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim().to_owned()).collect()
}
