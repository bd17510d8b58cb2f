//! `POST /v1/responses` as vLLM serves it: the response object, the named event stream, token
//! counts that agree between the two, and the request forms vLLM accepts.

mod common;

use common::{
    keys_at, named_event_data, named_events, post, shape, shape_at, state, state_with, MODEL,
};
use mock_vllm::{completion_text, MockConfig};
use serde_json::{json, Value};

/// The keys of `ResponsesResponse` in vLLM's field order (`responses/protocol.py`).
const RESPONSE_KEYS: [&str; 28] = [
    "id",
    "created_at",
    "incomplete_details",
    "instructions",
    "metadata",
    "model",
    "object",
    "output",
    "parallel_tool_calls",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
    "background",
    "max_output_tokens",
    "max_tool_calls",
    "previous_response_id",
    "prompt",
    "reasoning",
    "service_tier",
    "status",
    "text",
    "top_logprobs",
    "truncation",
    "usage",
    "user",
    "input_messages",
    "output_messages",
];

/// `ResponseTextDeltaEvent` (openai-python).
const DELTA_KEYS: [&str; 7] =
    ["content_index", "delta", "item_id", "logprobs", "output_index", "sequence_number", "type"];
/// `ResponseTextDoneEvent` (openai-python).
const TEXT_DONE_KEYS: [&str; 7] =
    ["content_index", "item_id", "logprobs", "output_index", "sequence_number", "text", "type"];
/// `ResponseOutputMessage` with the extras vLLM passes in `output_item.done`.
const DONE_ITEM_KEYS: [&str; 7] =
    ["id", "content", "role", "status", "type", "annotations", "logprobs"];
/// `ResponseUsage` (vLLM `responses/protocol.py`).
const USAGE_KEYS: [&str; 5] = [
    "input_tokens",
    "input_tokens_details",
    "output_tokens",
    "output_tokens_details",
    "total_tokens",
];

#[tokio::test]
async fn a_response_has_vllm_s_object_keys_and_usage() {
    let body = json!({"model": MODEL, "input": "讲 一个 短故事", "max_output_tokens": 9});
    let reply = post(&state(), "/v1/responses", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "application/json");
    let text = reply.text();
    let v = reply.json();
    // Compact, every field present, raw UTF-8 (FastAPI's JSONResponse of `model_dump()`).
    assert!(!text.contains(": ") && !text.contains("\\u"), "{text}");
    assert_eq!(keys_at(&text, &[]), RESPONSE_KEYS);
    assert!(
        v["id"].as_str().unwrap().starts_with("resp_") && v["id"].as_str().unwrap().len() == 37
    );
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("response"), Some(MODEL)));
    assert_eq!(v["status"], "incomplete", "stopped on max_output_tokens");
    assert_eq!(v["incomplete_details"], json!({"reason": "max_output_tokens"}));
    assert_eq!(v["max_output_tokens"], 9);
    let message = &v["output"][0];
    assert_eq!(keys_at(&text, &["output", "0"]), ["id", "content", "role", "status", "type"]);
    assert_eq!(
        keys_at(&text, &["output", "0", "content", "0"]),
        ["annotations", "text", "type", "logprobs"]
    );
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        message["content"],
        json!([{"annotations": [], "text": completion_text(9), "type": "output_text", "logprobs": null}])
    );
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 4, "input_tokens_details": {"cached_tokens": 0, "input_tokens_per_turn": [], "cached_tokens_per_turn": []},
               "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0, "tool_output_tokens": 0, "output_tokens_per_turn": [], "tool_output_tokens_per_turn": []},
               "total_tokens": 13})
    );
    assert_eq!(keys_at(&text, &["usage"]), USAGE_KEYS);
}

#[tokio::test]
async fn without_max_output_tokens_it_completes_with_the_default_length() {
    let config = MockConfig { default_max_tokens: 5, max_model_len: 100, ..MockConfig::default() };
    let body = json!({"input": [{"role": "user", "content": "hi there"},
                                {"role": "user", "content": [{"type": "input_text", "text": "and you"}]}],
                      "instructions": "Be brief.", "temperature": 0.5, "metadata": {"k": "v"}, "user": "u1"});
    let v = post(&state_with(config), "/v1/responses", &body).await.json();
    assert_eq!(v["status"], "completed");
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["usage"]["input_tokens"], 3 + 3 + 3, "instructions and two messages");
    assert_eq!(v["usage"]["output_tokens"], 5);
    assert_eq!(v["max_output_tokens"], 100 - 9, "the room left, as the sampling params have it");
    assert_eq!((v["instructions"].as_str(), v["user"].as_str()), (Some("Be brief."), Some("u1")));
    assert_eq!((v["temperature"].as_f64(), v["top_p"].as_f64()), (Some(0.5), Some(1.0)));
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["output"][0]["content"][0]["text"], completion_text(5));
}

/// A streamed 6-token response: each event's raw `data` and its parsed JSON.
async fn six_token_stream() -> (Vec<String>, Vec<Value>) {
    let body = json!({"model": MODEL, "input": "three small words", "max_output_tokens": 6, "stream": true});
    let reply = post(&state(), "/v1/responses", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "text/event-stream; charset=utf-8");
    assert!(!reply.text().contains("[DONE]"));
    (named_event_data(&reply.text()), named_events(&reply.text()))
}

#[tokio::test]
async fn a_streamed_response_sends_vllm_s_named_events_in_order() {
    let (data, events) = six_token_stream().await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(std::iter::repeat_n("response.output_text.delta", 6));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, expected);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], i, "{event}");
        let keys = keys_at(&data[i], &[]);
        assert_eq!(keys.last().map(String::as_str), Some("type"), "{event}");
    }
    assert_eq!(keys_at(&data[0], &["response"]), RESPONSE_KEYS);
    assert_eq!(keys_at(&data[13], &["response"]), RESPONSE_KEYS);
    assert_eq!(keys_at(&data[4], &[]), DELTA_KEYS);
    assert_eq!(keys_at(&data[10], &[]), TEXT_DONE_KEYS);
    assert_eq!(keys_at(&data[12], &["item"]), DONE_ITEM_KEYS, "vLLM's extras last");
}

#[tokio::test]
async fn a_streamed_response_carries_the_text_and_the_usage() {
    let (_, events) = six_token_stream().await;
    let created = &events[0]["response"];
    assert_eq!(
        (created["status"].as_str(), &created["usage"]),
        (Some("in_progress"), &Value::Null)
    );
    assert_eq!(created["output"], json!([]));
    let item_id = events[2]["item"]["id"].clone();
    let announced = json!({"id": item_id, "content": [], "role": "assistant", "status": "in_progress", "type": "message"});
    assert_eq!(events[2]["item"], announced);
    assert!(events[3..13].iter().all(|e| e["item_id"] == item_id || e["item"]["id"] == item_id));
    let deltas: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
    assert_eq!(deltas, completion_text(6));
    assert_eq!(events[10]["text"], completion_text(6));
    let part = json!({"annotations": [], "text": completion_text(6), "type": "output_text", "logprobs": null});
    assert_eq!(events[11]["part"], part);
    let completed = &events[13]["response"];
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["usage"]["input_tokens"], 4);
    assert_eq!(completed["usage"]["output_tokens"], 6);
    assert_eq!(completed["usage"]["total_tokens"], 10);
    assert!(completed["output"][0]["id"].as_str().unwrap().starts_with("msg_"));
}

#[tokio::test]
async fn the_streamed_and_the_plain_response_agree() {
    let body = json!({"model": MODEL, "input": "你好 🚀", "max_output_tokens": 12});
    let plain = post(&state(), "/v1/responses", &body).await.json();
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = named_events(&post(&state(), "/v1/responses", &streamed).await.text());
    let completed = &events.last().unwrap()["response"];
    let completed_text =
        named_event_data(&post(&state(), "/v1/responses", &streamed).await.text()).pop().unwrap();
    let plain_text = post(&state(), "/v1/responses", &body).await.text();
    assert_eq!(shape_at(&completed_text, &["response"]), shape(&plain_text));
    assert_eq!(completed["usage"], plain["usage"]);
    assert_eq!(completed["output"][0]["content"], plain["output"][0]["content"]);
}

#[tokio::test]
async fn stream_is_a_lax_boolean() {
    for stream in [json!("true"), json!(1), json!("yes"), json!("on"), json!("1"), json!("TRUE")] {
        let body = json!({"input": "hi", "max_output_tokens": 2, "stream": stream});
        let reply = post(&state(), "/v1/responses", &body).await;
        assert_eq!(reply.content_type(), "text/event-stream; charset=utf-8", "{stream}");
    }
    for stream in [json!("false"), json!(0), json!("off"), json!(null)] {
        let body = json!({"input": "hi", "max_output_tokens": 2, "stream": stream});
        let reply = post(&state(), "/v1/responses", &body).await;
        assert_eq!(reply.json()["object"], "response", "{stream}");
    }
    let reply =
        post(&state(), "/v1/responses", &json!({"input": "hi", "stream": "sometimes"})).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn bad_requests_are_refused_as_vllm_refuses_them() {
    let state = state_with(MockConfig { max_model_len: 10, ..MockConfig::default() });
    let cases = [
        (json!({"model": "other", "input": "x"}), 404),
        (json!({"model": MODEL}), 400),
        (json!({"model": MODEL, "input": "word ".repeat(9)}), 400),
        (json!({"model": MODEL, "input": "x", "max_output_tokens": 0}), 400),
    ];
    for (body, status) in cases {
        let reply = post(&state, "/v1/responses", &body).await;
        assert_eq!(reply.status, status, "{body}");
        assert!(reply.json()["error"]["message"].is_string());
    }
    let capped =
        post(&state, "/v1/responses", &json!({"input": "two words", "max_output_tokens": 100}))
            .await;
    assert_eq!(capped.status, 200, "max_output_tokens is capped, not refused");
    assert_eq!(capped.json()["usage"]["output_tokens"], 10 - 3);
}
