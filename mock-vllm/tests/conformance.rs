//! The mock's replies against real vLLM recordings (`shared/fixtures/`): the same keys in the same
//! order at every level, the same kinds of values; only ids, texts, times and numbers differ.

mod common;

use common::{chunk_kind, fixture, get, keys_at, post, shape, shape_at, state, MODEL};
use serde_json::{json, Value};

#[tokio::test]
async fn a_chat_completion_has_the_recorded_shape() {
    let body = json!({"model": MODEL, "max_tokens": 100, "temperature": 0.7,
                      "messages": [{"role": "user", "content": "Give me a short introduction to large language models."}]});
    let reply = post(&state(), "/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(shape(&reply.text()), shape(&fixture("vllm-chat.json")));
    let v = reply.json();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
}

#[tokio::test]
async fn a_completion_has_the_recorded_shape() {
    let body =
        json!({"model": MODEL, "prompt": "What is AWS ECS?", "max_tokens": 100, "temperature": 0});
    let reply = post(&state(), "/v1/completions", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(shape(&reply.text()), shape(&fixture("vllm-completions.json")));
    let v = reply.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["prompt_tokens"], 4, "the words of the prompt");
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
}

#[tokio::test]
async fn embeddings_have_the_recorded_shape() {
    let body = json!({"model": MODEL, "input": "Follow the white rabbit.", "encoding_format": "float", "dimensions": 32});
    let reply = post(&state(), "/v1/embeddings", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(shape(&reply.text()), shape(&fixture("vllm-embeddings.json")));
    let again = post(&state(), "/v1/embeddings", &body).await.json();
    assert_eq!(reply.json()["data"], again["data"], "the vector depends on the input alone");
    assert!(reply.json()["id"].as_str().unwrap().starts_with("embd-"));
}

#[tokio::test]
async fn the_model_list_has_the_recorded_shape() {
    let reply = get(&state(), "/v1/models").await;
    assert_eq!(reply.status, 200);
    assert_eq!(shape(&reply.text()), shape(&fixture("vllm-models.json")));
    let v = reply.json();
    assert_eq!(v["data"][0]["id"], MODEL);
    assert_eq!(v["data"][0]["root"], MODEL);
    assert_eq!(v["data"][0]["owned_by"], "vllm");
}

#[tokio::test]
async fn errors_have_the_recorded_shape() {
    let recorded = shape(&fixture("vllm-error.json"));
    let bad = post(&state(), "/v1/chat/completions", &json!({"model": MODEL})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(shape(&bad.text()), recorded);
    assert_eq!(bad.json()["error"]["type"], "BadRequestError");
    assert_eq!(bad.json()["error"]["code"], 400);

    let unknown =
        post(&state(), "/v1/chat/completions", &json!({"model": "nope", "messages": []})).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(shape(&unknown.text()), recorded);
    let error = &unknown.json()["error"];
    assert_eq!(error["type"], "NotFoundError");
    assert_eq!(error["message"], "The model `nope` does not exist.");
    assert_eq!(error["code"], 404);
}

#[tokio::test]
async fn a_streamed_chat_with_usage_has_the_recorded_shape_chunk_by_chunk() {
    let recorded: Vec<String> = common::events(&fixture("vllm-chat-stream-include-usage.sse"));
    let recorded_kind = |kind: &str| {
        let payload = recorded
            .iter()
            .find(|p| *p != "[DONE]" && chunk_kind(&serde_json::from_str(p).unwrap()) == kind);
        shape(payload.unwrap_or_else(|| panic!("the recording has a {kind} chunk")))
    };
    let body = json!({"model": MODEL, "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Count from 1 to 5, comma separated."}]});
    let reply = post(&state(), "/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type(), "text/event-stream; charset=utf-8");
    let events = reply.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(recorded.last().map(String::as_str), Some("[DONE]"));

    let chunks = &events[..events.len() - 1];
    let kinds: Vec<&str> =
        chunks.iter().map(|c| chunk_kind(&serde_json::from_str(c).unwrap())).collect();
    let mut expected = vec!["first"];
    expected.extend(std::iter::repeat_n("content", kinds.len() - 3));
    expected.extend(["finish", "usage"]);
    assert_eq!(kinds, expected);
    for (chunk, kind) in chunks.iter().zip(&kinds) {
        assert_eq!(shape(chunk), recorded_kind(kind), "a {kind} chunk: {chunk}");
    }
    let ids: Vec<Value> =
        chunks.iter().map(|c| serde_json::from_str::<Value>(c).unwrap()["id"].clone()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one id for the whole stream");
}

#[tokio::test]
async fn every_choice_of_a_batch_and_every_input_has_the_recorded_shape() {
    let recorded = fixture("vllm-completions.json");
    let body = json!({"model": MODEL, "prompt": ["What is AWS ECS?", "And EKS?"], "n": 2, "max_tokens": 5});
    let text = post(&state(), "/v1/completions", &body).await.text();
    assert_eq!(keys_at(&text, &[]), keys_at(&recorded, &[]));
    assert_eq!(shape_at(&text, &["usage"]), shape_at(&recorded, &["usage"]));
    for i in ["0", "1", "2", "3"] {
        assert_eq!(
            shape_at(&text, &["choices", i]),
            shape_at(&recorded, &["choices", "0"]),
            "choice {i}"
        );
    }
    let recorded = fixture("vllm-embeddings.json");
    let body =
        json!({"model": MODEL, "input": ["Follow the white rabbit.", "Another"], "dimensions": 32});
    let text = post(&state(), "/v1/embeddings", &body).await.text();
    for i in ["0", "1"] {
        assert_eq!(shape_at(&text, &["data", i]), shape_at(&recorded, &["data", "0"]), "item {i}");
    }
    assert_eq!(shape_at(&text, &["usage"]), shape_at(&recorded, &["usage"]));
}

#[tokio::test]
async fn a_streamed_chat_with_several_choices_has_the_recorded_chunk_shapes() {
    let recorded: Vec<String> = common::events(&fixture("vllm-chat-stream-include-usage.sse"));
    let recorded_kind = |kind: &str| {
        let payload = recorded
            .iter()
            .find(|p| *p != "[DONE]" && chunk_kind(&serde_json::from_str(p).unwrap()) == kind);
        shape(payload.unwrap())
    };
    let body = json!({"model": MODEL, "stream": true, "n": 3, "max_tokens": 4, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Count from 1 to 5, comma separated."}]});
    let events = post(&state(), "/v1/chat/completions", &body).await.events();
    for chunk in &events[..events.len() - 1] {
        let kind = chunk_kind(&serde_json::from_str(chunk).unwrap());
        assert_eq!(shape(chunk), recorded_kind(kind), "a {kind} chunk: {chunk}");
    }
}

#[tokio::test]
async fn non_ascii_text_is_written_raw() {
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]});
    let text = post(&state(), "/v1/chat/completions", &body).await.text();
    assert!(text.contains("你好") && text.contains("🚀"), "{text}");
    assert!(!text.contains("\\u"), "{text}");
}

#[test]
fn the_shape_comparison_has_teeth() {
    assert_ne!(shape(r#"{"a":1,"b":2}"#), shape(r#"{"b":2,"a":1}"#), "key order counts");
    assert_ne!(shape(r#"{"a":null}"#), shape(r#"{"a":"x"}"#), "value kinds count");
    assert_eq!(shape(r#"{"a":[1,"x"]}"#), shape(r#"{"a":[2.5,"y"]}"#), "values do not");
    let openai = common::events(&fixture("openai-chat-stream-usage.sse"));
    let vllm = common::events(&fixture("vllm-chat-stream-include-usage.sse"));
    assert_ne!(shape(&openai[0]), shape(&vllm[0]), "OpenAI's chunks are not vLLM's");
}
