//! Every endpoint vLLM serves is counted exactly, through the real Envoy: the Responses API
//! (streamed and not), batched prompts and inputs, `n > 1` (also when the client leaves half-way),
//! replies far over a mebibyte, and an OpenAI-style upstream whose stream passes byte for byte.

mod common;

use std::time::Duration;

use futures::StreamExt;
use gateway_stack::{Stack, StackOptions, Upstreams};
use serde_json::{json, Value};

async fn post(stack: &Stack, key: &str, path: &str, body: &Value) -> (String, reqwest::Response) {
    let resp = stack
        .http()
        .post(format!("{}{path}", stack.gateway_url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path} {body}");
    (resp.headers()["x-request-id"].to_str().unwrap().to_owned(), resp)
}

async fn row_of(stack: &Stack, id: &str) -> Value {
    stack.wait_for_log(id, |r| r["requestId"] == id).await.unwrap()
}

fn assert_counted(row: &Value, prompt: &Value, completion: &Value) {
    assert_eq!(row["usageSource"], "reported", "{row}");
    assert_eq!(&row["promptTokens"], prompt, "{row}");
    assert_eq!(&row["completionTokens"], completion, "{row}");
}

#[tokio::test]
async fn the_responses_api_is_counted_with_its_input_and_output_split() {
    let (stack, app) = common::stack_with_app().await;
    let body = json!({"model": "model-a", "input": "讲一个短故事", "max_output_tokens": 9});
    let (id, resp) = post(&stack, &app.api_key, "/v1/responses", &body).await;
    let reply: Value = resp.json().await.unwrap();
    let usage = &reply["usage"];
    assert!(usage["output_tokens"].as_u64().unwrap() > 0, "{reply}");
    assert_counted(&row_of(&stack, &id).await, &usage["input_tokens"], &usage["output_tokens"]);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (id, resp) = post(&stack, &app.api_key, "/v1/responses", &streamed).await;
    let text = resp.text().await.unwrap();
    let completed = common::sse_data(&text)
        .into_iter()
        .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
        .find(|e| e["type"] == "response.completed")
        .expect("a response.completed event");
    let usage = &completed["response"]["usage"];
    assert_counted(&row_of(&stack, &id).await, &usage["input_tokens"], &usage["output_tokens"]);

    // A background response would be generated after the reply, out of the gateway's sight.
    let before = stack.mock("model-a").state.seen().len();
    let mut background = body.clone();
    background["background"] = json!(true);
    let resp =
        stack.gateway_post("/v1/responses", &app.api_key).json(&background).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(
        (error["error"]["param"].as_str(), error["error"]["code"].as_str()),
        (Some("background"), Some("unsupported_parameter"))
    );
    assert_eq!(stack.mock("model-a").state.seen().len(), before, "nothing reached the upstream");
    stack.stop().await;
}

#[tokio::test]
async fn batched_prompts_inputs_and_several_choices_are_summed() {
    let (stack, app) = common::stack_with_app().await;
    let completions = json!({"model": "model-a", "prompt": ["one two", "three four five"], "n": 2, "max_tokens": 4});
    let (id, resp) = post(&stack, &app.api_key, "/v1/completions", &completions).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["choices"].as_array().unwrap().len(), 4, "{reply}");
    assert_counted(
        &row_of(&stack, &id).await,
        &reply["usage"]["prompt_tokens"],
        &reply["usage"]["completion_tokens"],
    );

    // Streamed, with the usage the caller asked for and without (then injected, invisibly).
    for include_usage in [true, false] {
        let mut body = completions.clone();
        body["stream"] = json!(true);
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let (id, resp) = post(&stack, &app.api_key, "/v1/completions", &body).await;
        let text = resp.text().await.unwrap();
        assert_eq!(text.contains("usage"), include_usage, "{text}");
        assert_counted(
            &row_of(&stack, &id).await,
            &reply["usage"]["prompt_tokens"],
            &reply["usage"]["completion_tokens"],
        );
    }

    let embeddings =
        json!({"model": "model-b", "input": ["first input", "a second, longer input"]});
    let (id, resp) = post(&stack, &app.api_key, "/v1/embeddings", &embeddings).await;
    let reply: Value = resp.json().await.unwrap();
    assert_eq!(reply["data"].as_array().unwrap().len(), 2);
    assert_counted(&row_of(&stack, &id).await, &reply["usage"]["prompt_tokens"], &json!(0));
    stack.stop().await;
}

#[tokio::test]
async fn a_stream_of_several_choices_cut_anywhere_counts_every_choice_so_far() {
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Mock {
        models: vec!["slow".into()],
        token_delay: Duration::from_millis(40),
        split_seed: None,
    };
    let (stack, app) = common::stack_with_app_using(options).await;
    let body = json!({"model": "slow", "stream": true, "n": 3, "max_tokens": 300, "messages": [{"role": "user", "content": "long"}]});
    let (id, resp) = post(&stack, &app.api_key, "/v1/chat/completions", &body).await;
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut per_choice = [0u64; 3];
    while per_choice.iter().any(|n| *n < 4) {
        text.push_str(&String::from_utf8_lossy(&stream.next().await.unwrap().unwrap()));
        per_choice = [0; 3];
        for chunk in
            common::sse_data(&text).iter().filter_map(|d| serde_json::from_str::<Value>(d).ok())
        {
            let choice = &chunk["choices"][0];
            if choice["delta"]["content"].as_str().is_some_and(|c| !c.is_empty()) {
                per_choice[choice["index"].as_u64().unwrap() as usize] += 1;
            }
        }
    }
    drop(stream); // the client goes away
    let row = row_of(&stack, &id).await;
    assert_eq!(row["clientDisconnected"], true, "{row}");
    assert_eq!(row["usageSource"], "reported", "{row}");
    let received: u64 = per_choice.iter().sum();
    let counted = row["completionTokens"].as_u64().unwrap();
    assert!(
        counted >= received,
        "every choice is counted: {counted} < {received} received ({per_choice:?})"
    );
    assert!(counted < 900, "not the whole request: {counted}");
    assert!(!text.contains("usage"), "the caller never saw the injected usage");
    stack.stop().await;
}

#[tokio::test]
async fn a_reply_of_several_mebibytes_is_counted_exactly() {
    let (stack, app) = common::stack_with_app().await;
    let prompt = (0..3000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let body =
        json!({"model": "model-a", "prompt": prompt, "max_tokens": 8, "prompt_logprobs": 20});
    let (id, resp) = post(&stack, &app.api_key, "/v1/completions", &body).await;
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() > 1024 * 1024, "the reply is over 1 MiB: {}", bytes.len());
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    assert_counted(
        &row_of(&stack, &id).await,
        &reply["usage"]["prompt_tokens"],
        &reply["usage"]["completion_tokens"],
    );

    stack.stop().await;
}

#[tokio::test]
async fn a_non_streamed_request_whose_client_leaves_is_logged_and_marked() {
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Mock {
        models: vec!["slow".into()],
        token_delay: Duration::from_millis(40),
        split_seed: None,
    };
    let (stack, app) = common::stack_with_app_using(options).await;
    let body = json!({"model": "slow", "max_tokens": 100, "messages": [{"role": "user", "content": "take your time"}]});
    let gone = tokio::time::timeout(
        Duration::from_millis(600),
        stack.gateway_post("/v1/chat/completions", &app.api_key).json(&body).send(),
    )
    .await;
    assert!(gone.is_err(), "the reply takes longer than the client waits");
    let row = stack.wait_for_log("the abandoned request", |r| r["model"] == "slow").await.unwrap();
    assert_eq!(row["clientDisconnected"], true, "{row}");
    assert_eq!(row["stream"], false, "{row}");
    assert_eq!(row["appId"], app.id, "{row}");
    assert_eq!(row["usageSource"], "none", "nothing was reported, and the row says so: {row}");
    stack.stop().await;
}

/// An OpenAI-compatible upstream that is not vLLM: replays OpenAI's own recorded stream
/// (`shared/fixtures/openai-chat-stream-usage.sse`, with `"usage":null` on every chunk).
async fn openai_replay() -> (std::net::SocketAddr, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixture = gateway_workspace::paths::workspace_root()
        .join("../shared/fixtures/openai-chat-stream-usage.sse");
    let body = std::fs::read(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reply = body.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                // Headers, then the announced body.
                while let Ok(n) = tcp.read(&mut buf).await {
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                    if n == 0 {
                        return;
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncontent-length: {}\r\n\r\n", reply.len());
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(&reply).await;
            });
        }
    });
    (addr, body)
}

#[tokio::test]
async fn an_openai_style_stream_passes_byte_for_byte_when_the_caller_asked_for_usage() {
    let (addr, fixture) = openai_replay().await;
    let mut options = StackOptions::for_tests();
    options.upstreams = Upstreams::Real(vec![format!("gpt-5.4=http://{addr}").parse().unwrap()]);
    let (stack, app) = common::stack_with_app_using(options).await;
    let mut body = json!({"model": "gpt-5.4", "stream": true, "messages": [{"role": "user", "content": "What is 1 + 1?"}]});
    body["stream_options"] = json!({"include_usage": true});
    let (id, resp) = post(&stack, &app.api_key, "/v1/chat/completions", &body).await;
    assert_eq!(
        resp.bytes().await.unwrap(),
        fixture,
        "the caller asked for this stream: nothing is removed"
    );
    assert_counted(&row_of(&stack, &id).await, &json!(26), &json!(4));

    // Without include_usage, what only the injection caused is removed: the `"usage":null`
    // members and the usage-only chunk.
    body.as_object_mut().unwrap().remove("stream_options");
    let (id, resp) = post(&stack, &app.api_key, "/v1/chat/completions", &body).await;
    let text = String::from_utf8(resp.bytes().await.unwrap().to_vec()).unwrap();
    let expected: String = String::from_utf8(fixture)
        .unwrap()
        .split_inclusive("\n\n")
        .filter(|event| !event.contains("\"choices\":[]"))
        .map(|event| event.replace(",\"usage\":null", ""))
        .collect();
    assert_eq!(text, expected);
    assert_counted(&row_of(&stack, &id).await, &json!(26), &json!(4));
    stack.stop().await;
}
