//! Log probabilities in vLLM's shapes; `prompt_logprobs` of a long prompt make a reply of
//! several mebibytes, the case where a gateway must still find the top-level `usage`.

mod common;

use common::{chunks, keys_at, post, state, MODEL};
use serde_json::{json, Value};

#[tokio::test]
async fn prompt_logprobs_of_a_long_prompt_make_a_reply_of_mebibytes() {
    let prompt = (0..3000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
    let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 8, "prompt_logprobs": 20});
    let reply = post(&state(), "/v1/completions", &body).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body().len() > 1024 * 1024, "{} bytes", reply.body().len());
    let text = reply.text();
    assert!(text.ends_with(r#""usage":{"prompt_tokens":3000,"total_tokens":3008,"completion_tokens":8,"prompt_tokens_details":null},"kv_transfer_params":null}"#));
    let v: Value = serde_json::from_str(&text).unwrap();
    let positions = v["choices"][0]["prompt_logprobs"].as_array().unwrap();
    assert_eq!(positions.len(), 3000);
    assert_eq!(positions[0], Value::Null);
    let first = keys_at(&text, &["choices", "0", "prompt_logprobs", "1"]);
    assert_eq!(first.len(), 20, "rank 2 is in the top 20: {first:?}");
    let entry = &positions[1][&first[0]];
    assert_eq!(
        keys_at(&text, &["choices", "0", "prompt_logprobs", "1", &first[0]]),
        ["logprob", "rank", "decoded_token"]
    );
    assert_eq!(entry["rank"], 2, "the prompt's own token leads");
}

#[tokio::test]
async fn completion_logprobs_follow_the_text_also_when_streamed() {
    let body = json!({"model": MODEL, "prompt": "x", "max_tokens": 5, "logprobs": 2});
    let v = post(&state(), "/v1/completions", &body).await.json();
    let logprobs = &v["choices"][0]["logprobs"];
    assert_eq!(logprobs["tokens"], json!(["Hello", " world", ",", " 你好", " 世界"]));
    assert_eq!(logprobs["text_offset"], json!([0, 5, 11, 12, 15]), "offsets in characters");
    assert_eq!(logprobs["top_logprobs"][0].as_object().unwrap().len(), 3);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = chunks(&post(&state(), "/v1/completions", &streamed).await);
    let offsets: Vec<Value> =
        chunks[..5].iter().map(|c| c["choices"][0]["logprobs"]["text_offset"][0].clone()).collect();
    assert_eq!(offsets, logprobs["text_offset"].as_array().unwrap().clone());
    assert_eq!(chunks[5]["choices"][0]["logprobs"], Value::Null, "the finish chunk has none");
}

#[tokio::test]
async fn chat_logprobs_and_prompt_logprobs_have_vllm_s_keys() {
    let body = json!({"model": MODEL, "max_tokens": 2, "logprobs": true, "top_logprobs": 3, "prompt_logprobs": 1,
                      "messages": [{"role": "user", "content": "three more words"}]});
    let reply = post(&state(), "/v1/chat/completions", &body).await;
    let text = reply.text();
    let v = reply.json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(
        keys_at(&text, &["choices", "0", "logprobs", "content", "0"]),
        ["token", "logprob", "bytes", "top_logprobs"]
    );
    assert_eq!(content[1]["token"], " world");
    assert_eq!(content[1]["top_logprobs"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["prompt_logprobs"].as_array().unwrap().len(),
        4,
        "top level, one per prompt token"
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    assert_eq!(
        post(&state(), "/v1/chat/completions", &streamed).await.status,
        400,
        "prompt_logprobs are not streamed"
    );
    streamed.as_object_mut().unwrap().remove("prompt_logprobs");
    let chunks = chunks(&post(&state(), "/v1/chat/completions", &streamed).await);
    assert_eq!(chunks[1]["choices"][0]["logprobs"]["content"][0]["token"], "Hello");
    assert_eq!(chunks[0]["choices"][0]["logprobs"], Value::Null, "the role chunk has none");
}
