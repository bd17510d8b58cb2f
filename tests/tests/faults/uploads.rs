//! Many large uploads in flight at once, sent slowly and held open: the gateway keeps answering
//! other clients and stays up, whether the uploads fit in a worker's budget of buffered request
//! bytes (`max_buffered_request_bytes`) or together exceed Envoy's heap cap; every upload is
//! answered, refused with an OpenAI-shaped error (503 `overloaded` past the budget), or shed.
//!
//! The uploads go to `sink`, an upstream that reads any body and answers one canned
//! completion (a mock parsing megabytes of JSON per upload, in a debug build, would be what the
//! test measures); the other clients use a mock vLLM.

use std::net::SocketAddr;
use std::sync::Arc;

use gateway_stack::{CreatedApp, Stack, StackOptions, Upstreams};
use mock_vllm::{MockConfig, MockState};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Barrier;

use super::raw::{self, Ending};
use super::support::{
    assert_openai_error, assert_served, chat, gateway_address, row_of, send_chat, WAIT,
};

/// Each upload's body, just under the gateway's 8 MiB limit.
const UPLOAD_BYTES: usize = 7 * 1024 * 1024;
/// Concurrent large uploads that fit in one worker's budget of buffered request bytes (so in
/// any worker's, wherever they land).
const UPLOADS: usize =
    vllm_gateway_filter::config::DEFAULT_MAX_BUFFERED_REQUEST_BYTES / UPLOAD_BYTES;
/// Concurrent large uploads that together are a tenth more than the heap cap of the rendered
/// Envoy configuration (its overload manager's `fixed_heap`).
const UPLOADS_OVER_CAP: usize =
    (gateway_envoy::MAX_HEAP_BYTES as usize * 11 / 10).div_ceil(UPLOAD_BYTES);
/// Bytes an upload sends at a time, with a pause in between.
const PIECE: usize = 64 * 1024;
/// Small requests served while the uploads are held.
const SMALL: usize = 20;

/// The sink's one answer: a chat completion with its usage.
const SINK_REPLY: &str = r#"{"id":"chatcmpl-sink","object":"chat.completion","created":0,"model":"sink","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"total_tokens":2,"completion_tokens":1}}"#;

/// An upstream on 127.0.0.1 that reads each request's body and answers [`SINK_REPLY`]
/// (keep-alive). Its tasks end with the test's runtime.
async fn start_sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(sink_connection(tcp));
        }
    });
    addr
}

async fn sink_connection(tcp: tokio::net::TcpStream) {
    let mut conn = BufReader::new(tcp);
    loop {
        let mut length = 0u64;
        loop {
            let mut line = String::new();
            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        if tokio::io::copy(&mut (&mut conn).take(length), &mut tokio::io::sink()).await.is_err() {
            return;
        }
        let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{SINK_REPLY}", SINK_REPLY.len());
        if conn.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A stack with `model-a` (a mock vLLM) and `sink`, and an app.
async fn upload_stack() -> (Stack, CreatedApp) {
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mock_addr = mock.local_addr().unwrap();
    let state =
        MockState::new(MockConfig { models: vec!["model-a".into()], ..MockConfig::default() });
    tokio::spawn(mock_vllm::serve(mock, state, std::future::pending()));
    let sink = start_sink().await;
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Real(vec![
        format!("model-a=http://{mock_addr}").parse().unwrap(),
        format!("sink=http://{sink}").parse().unwrap(),
    ]);
    crate::common::stack_with_app_using(options).await
}

/// A chat request for `sink` whose one message makes it `UPLOAD_BYTES` long.
fn large_body() -> Vec<u8> {
    let frame =
        json!({"model": "sink", "max_tokens": 1, "messages": [{"role": "user", "content": ""}]})
            .to_string();
    let padding = UPLOAD_BYTES - frame.len();
    frame
        .replace(r#""content":"""#, &format!(r#""content":"{}""#, "a".repeat(padding)))
        .into_bytes()
}

/// The two points every upload and the test meet at: all uploads nearly sent (all but their
/// last piece), and the test letting them finish.
struct Hold {
    nearly_sent: Barrier,
    release: Barrier,
}

impl Hold {
    async fn meet(&self) {
        self.nearly_sent.wait().await;
        self.release.wait().await;
    }
}

/// Sends `body` slowly, all but its last piece, then holds (so every upload is in flight at
/// once) until released, then sends the rest and reads the answer.
async fn slow_upload(addr: String, key: String, body: Arc<Vec<u8>>, hold: Arc<Hold>) -> Ending {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
        hold.meet().await;
        return Ending::Closed;
    };
    let (most, last) = body.split_at(body.len() - PIECE);
    let mut open = tcp.write_all(head.as_bytes()).await.is_ok();
    for piece in most.chunks(PIECE) {
        open = open && tcp.write_all(piece).await.is_ok();
        // The pace of a slow client.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    hold.meet().await;
    if open && tcp.write_all(last).await.is_ok() {
        return raw::read_rest(tcp, Vec::new()).await;
    }
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw).await;
    raw::parse(&raw).map_or(Ending::Closed, Ending::Answered)
}

/// `count` uploads held in flight at once (all but their last piece sent).
async fn hold_uploads(
    stack: &Stack,
    key: &str,
    count: usize,
) -> (Vec<tokio::task::JoinHandle<Ending>>, Arc<Hold>) {
    let body = Arc::new(large_body());
    let hold =
        Arc::new(Hold { nearly_sent: Barrier::new(count + 1), release: Barrier::new(count + 1) });
    let uploads = (0..count)
        .map(|_| {
            tokio::spawn(slow_upload(
                gateway_address(stack),
                key.to_owned(),
                body.clone(),
                hold.clone(),
            ))
        })
        .collect();
    tokio::time::timeout(WAIT * 3, hold.nearly_sent.wait())
        .await
        .expect("every upload got its body nearly sent");
    (uploads, hold)
}

/// How the uploads ended.
#[derive(Debug, Default)]
struct Outcomes {
    answered: usize,
    refused: Vec<u16>,
    shed: usize,
}

/// Lets the uploads finish. Each is answered (with its usage), refused with an OpenAI-shaped
/// error, or shed (closed without an answer); an answer or refusal has its one row.
async fn finish_uploads(
    stack: &Stack,
    uploads: Vec<tokio::task::JoinHandle<Ending>>,
    hold: &Hold,
) -> Outcomes {
    hold.release.wait().await;
    let mut outcomes = Outcomes::default();
    for upload in uploads {
        let reply = match upload.await.unwrap() {
            Ending::Answered(reply) => reply,
            Ending::Closed => {
                outcomes.shed += 1;
                continue;
            }
            Ending::StillOpen => panic!("an upload got no answer"),
        };
        if reply.status == 200 {
            let v: Value =
                serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("{reply:?}"));
            assert_eq!(v["usage"]["completion_tokens"], 1, "{v}");
            outcomes.answered += 1;
        } else {
            assert_openai_error("a refused upload", reply.header("content-type"), &reply.body);
            outcomes.refused.push(reply.status);
        }
        let row = row_of(stack, reply.header("x-request-id")).await;
        assert_eq!(row["status"].as_u64(), Some(u64::from(reply.status)), "{row}");
    }
    outcomes
}

#[tokio::test]
async fn many_slow_large_uploads_do_not_stop_the_gateway_answering_others() {
    let (stack, app) = upload_stack().await;
    let (uploads, hold) = hold_uploads(&stack, &app.api_key, UPLOADS).await;
    assert_served(&stack, &app.api_key, SMALL).await;
    assert!(stack.envoy_ready().await, "Envoy is up");
    let outcomes = finish_uploads(&stack, uploads, &hold).await;
    assert_eq!(
        outcomes.answered, UPLOADS,
        "within the budget every upload is answered: {outcomes:?}"
    );
    assert!(stack.envoy_ready().await, "Envoy is still up");
    stack.stop().await;
}

#[tokio::test]
async fn uploads_beyond_the_heap_cap_do_not_stop_the_gateway_answering_others() {
    let (stack, app) = upload_stack().await;
    let (uploads, hold) = hold_uploads(&stack, &app.api_key, UPLOADS_OVER_CAP).await;
    let (served, refused) = serve_beside_held_uploads(&stack, &app.api_key).await;
    assert!(stack.envoy_ready().await, "Envoy is up");
    let outcomes = finish_uploads(&stack, uploads, &hold).await;
    assert_eq!(outcomes.answered + outcomes.refused.len() + outcomes.shed, UPLOADS_OVER_CAP);
    // Past the workers' budgets the uploads are refused (503 `overloaded`), before the heap fills.
    assert!(outcomes.answered >= UPLOADS && !outcomes.refused.is_empty(), "{outcomes:?}");
    assert!(outcomes.refused.iter().all(|status| *status == 503), "{outcomes:?}");
    for id in &served {
        assert_eq!(row_of(&stack, id).await["status"], 200);
    }
    assert!(
        stack.envoy_ready().await,
        "Envoy is still up (small requests refused meanwhile: {refused})"
    );
    stack.stop().await;
}

/// Small requests until [`SMALL`] are answered 200, for [`WAIT`] at most; every refusal
/// meanwhile must be an OpenAI-shaped error. The served requests' ids, and how many were
/// refused.
async fn serve_beside_held_uploads(stack: &Stack, key: &str) -> (Vec<String>, usize) {
    let (mut served, mut refused) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + WAIT;
    while served.len() < SMALL {
        let seen = send_chat(stack.http(), &stack.gateway_url, key, &chat("model-a", 2, false))
            .await
            .unwrap();
        if seen.status == 200 {
            served.push(seen.request_id);
            continue;
        }
        assert_openai_error(
            &format!("a small request refused with {}", seen.status),
            &seen.content_type,
            &seen.body,
        );
        refused.push(seen.status);
        assert!(
            tokio::time::Instant::now() < deadline,
            "other clients are not served while the uploads are held: {} served, {} refused (statuses {:?}) in {WAIT:?}",
            served.len(),
            refused.len(),
            refused.iter().collect::<std::collections::BTreeSet<_>>()
        );
        // A client's pause before it tries again.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (served, refused.len())
}
