//! Streamed and non-streamed replies through a real OpenAI client library, and the access-log
//! rows they leave: app, model, status and exactly the token counts the upstream reported.

mod common;

use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, ChatCompletionStreamOptions,
    CreateChatCompletionRequestArgs,
};
use futures::StreamExt;
use serde_json::{json, Value};

fn request(
    model: &str,
    stream_usage: Option<bool>,
) -> async_openai::types::chat::CreateChatCompletionRequest {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(model).max_tokens(12u32).messages([ChatCompletionRequestUserMessageArgs::default()
        .content("你好, gateway")
        .build()
        .unwrap()
        .into()]);
    if let Some(include_usage) = stream_usage {
        args.stream_options(ChatCompletionStreamOptions {
            include_usage: Some(include_usage),
            ..Default::default()
        });
    }
    args.build().unwrap()
}

/// What the upstream itself answers to the same request, asked directly (not through the gateway).
async fn direct(stack: &gateway_stack::Stack, model: &str) -> Value {
    let url = format!("http://{}/v1/chat/completions", stack.mock(model).addr);
    let body = json!({"model": model, "max_tokens": 12, "messages": [{"role": "user", "content": "你好, gateway"}]});
    let v = stack.http().post(url).json(&body).send().await.unwrap().json().await.unwrap();
    stack.mock(model).state.clear_seen();
    v
}

#[tokio::test]
async fn a_non_streamed_reply_arrives_intact_and_is_logged_with_its_usage() {
    let (stack, app) = common::stack_with_app().await;
    let expected = direct(&stack, "model-a").await;
    let reply =
        common::openai(&stack, &app.api_key).chat().create(request("model-a", None)).await.unwrap();
    let text = reply.choices[0].message.content.clone().unwrap();
    assert_eq!(text, expected["choices"][0]["message"]["content"].as_str().unwrap());
    let usage = reply.usage.unwrap();
    assert_eq!(u64::from(usage.total_tokens), expected["usage"]["total_tokens"].as_u64().unwrap());

    let row = stack.wait_for_log("the chat completion", |r| r["model"] == "model-a").await.unwrap();
    assert_eq!(row["appId"], app.id);
    assert_eq!(row["status"], 200);
    assert_eq!(row["stream"], false);
    assert_eq!(row["promptTokens"], usage.prompt_tokens);
    assert_eq!(row["completionTokens"], usage.completion_tokens);
    assert_eq!(row["totalTokens"], usage.total_tokens);
    assert_eq!(row["usageSource"], "reported");
    assert!(row["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    stack.stop().await;
}

#[tokio::test]
async fn a_streamed_reply_arrives_chunk_by_chunk_and_is_logged_with_its_usage() {
    let (stack, app) = common::stack_with_app().await;
    let expected = direct(&stack, "model-b").await;
    let mut stream = common::openai(&stack, &app.api_key)
        .chat()
        .create_stream(request("model-b", Some(true)))
        .await
        .unwrap();
    let (mut text, mut chunks, mut usage) = (String::new(), 0, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        chunks += 1;
        if let Some(choice) = chunk.choices.first() {
            text.push_str(choice.delta.content.as_deref().unwrap_or(""));
        }
        if chunk.usage.is_some() {
            usage = chunk.usage;
        }
    }
    assert_eq!(
        text,
        expected["choices"][0]["message"]["content"].as_str().unwrap(),
        "multi-byte text intact"
    );
    assert!(chunks > 3, "one chunk per token, not one blob: {chunks}");
    let usage = usage.expect("the caller asked for usage and got it");
    assert_eq!(
        u64::from(usage.completion_tokens),
        expected["usage"]["completion_tokens"].as_u64().unwrap()
    );

    let row = stack.wait_for_log("the streamed chat", |r| r["model"] == "model-b").await.unwrap();
    assert_eq!(row["appId"], app.id);
    assert_eq!(row["status"], 200);
    assert_eq!(row["stream"], true);
    assert_eq!(row["promptTokens"], usage.prompt_tokens);
    assert_eq!(row["completionTokens"], usage.completion_tokens);
    assert_eq!(row["totalTokens"], usage.total_tokens);
    assert_eq!(row["usageSource"], "reported");
    assert!(row["ttftMs"].is_number());
    stack.stop().await;
}

#[tokio::test]
async fn the_caller_gets_exactly_the_stream_it_asked_for_while_usage_is_counted() {
    let (stack, app) = common::stack_with_app().await;
    let asks = [
        json!(null),
        json!({"include_usage": true}),
        json!({"include_usage": true, "continuous_usage_stats": true}),
    ];
    for (i, stream_options) in asks.into_iter().enumerate() {
        let mut body = json!({"model": "model-a", "max_tokens": 8 + i, "stream": true,
                              "messages": [{"role": "user", "content": "bytes, 字节"}]});
        if !stream_options.is_null() {
            body["stream_options"] = stream_options.clone();
        }
        let via_gateway = stack
            .gateway_post("/v1/chat/completions", &app.api_key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(via_gateway.status(), 200);
        assert!(via_gateway.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        let via_gateway = via_gateway.text().await.unwrap();
        let direct = stack
            .http()
            .post(format!("http://{}/v1/chat/completions", stack.mock("model-a").addr))
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(normalize(&via_gateway), normalize(&direct), "asked {stream_options}");
        assert!(via_gateway.ends_with("data: [DONE]\n\n"));
        assert_eq!(via_gateway.contains("usage"), !stream_options.is_null());

        let row =
            stack.wait_for_log("the stream", |r| r["completionTokens"] == 8 + i).await.unwrap();
        assert_eq!(row["usageSource"], "reported", "counted from the injected usage");
        assert_eq!(row["stream"], true);
    }
    stack.stop().await;
}

/// The stream with its per-request id and timestamp blanked out.
fn normalize(stream: &str) -> String {
    stream
        .split("\n\n")
        .map(|event| match event.strip_prefix("data: ").map(serde_json::from_str::<Value>) {
            Some(Ok(mut v)) => {
                v["id"] = json!("ID");
                v["created"] = json!(0);
                format!("data: {v}")
            }
            _ => event.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}
