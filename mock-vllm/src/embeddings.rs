//! `POST /v1/embeddings`: one deterministic vector per input (`vllm-embeddings.json`); a batch
//! (`input` a list of texts or token lists) gets one item per input, in order, and `usage` sums
//! the inputs' tokens (`entrypoints/openai/serving_embedding.py`). Each input is a pooling
//! request whose prompt counts in `vllm:prompt_tokens_total`.
//!
//! The vector depends on the input alone: `dimensions` values (32 by default, as recorded), each
//! a multiple of 1/1024 in [-0.5, 0.5), so they print short and exactly. `encoding_format`
//! `base64` sends the little-endian `f32` bytes in base64, as vLLM does.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::generate::{count, new_id, prompt_tokens_of_text, SplitMix64, Usage};
use crate::prompt::Prompt;
use crate::request::parse;
use crate::state::{unix_now, MockState};

/// Vector length when the request sets no `dimensions`.
const DEFAULT_DIMENSIONS: usize = 32;
/// Largest `dimensions` accepted.
const MAX_DIMENSIONS: usize = 8192;

#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    #[serde(default)]
    model: Option<String>,
    input: Prompt,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Serialize)]
struct Embeddings {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    data: Vec<Item>,
    usage: Usage,
}

#[derive(Serialize)]
struct Item {
    index: u32,
    object: &'static str,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f64>),
    Base64(String),
}

/// One input: its prompt tokens and the seed of its vector.
struct Input {
    tokens: u32,
    seed: u64,
}

/// The handler.
pub(crate) async fn handle(
    State(state): State<MockState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: EmbeddingRequest = parse(&body, "EmbeddingCompletionRequest")?;
    let model = state.resolve_model(request.model.as_deref())?;
    let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    if !(1..=MAX_DIMENSIONS).contains(&dimensions) {
        return Err(ApiError::BadRequest(format!(
            "dimensions must be between 1 and {MAX_DIMENSIONS}, got {dimensions}."
        )));
    }
    let base64 = is_base64(request.encoding_format.as_deref())?;
    let inputs = inputs(&request.input);
    let max_len = state.config().max_model_len;
    if let Some(long) = inputs.iter().find(|i| i.tokens > max_len) {
        return Err(ApiError::prompt_too_long(max_len, long.tokens));
    }
    let data = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let values = vector(input.seed, dimensions);
            let embedding = if base64 {
                Vector::Base64(encode_base64(&values))
            } else {
                Vector::Floats(widen(&values))
            };
            Item { index: count(i), object: "embedding", embedding }
        })
        .collect();
    let prompt_tokens = inputs.iter().map(|i| i.tokens).fold(0, u32::saturating_add);
    state.meter(&model).add_prompt(u64::from(prompt_tokens));
    let usage = Usage::reply(prompt_tokens, 0);
    Ok(Json(Embeddings {
        id: new_id("embd-"),
        object: "list",
        created: unix_now(),
        model,
        data,
        usage,
    })
    .into_response())
}

/// Whether `encoding_format` asks for base64 (else floats).
fn is_base64(encoding_format: Option<&str>) -> Result<bool, ApiError> {
    match encoding_format {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!("Unsupported encoding_format `{other}`."))),
    }
}

/// Every input of a request (embeddings take batches).
fn inputs(prompt: &Prompt) -> Vec<Input> {
    let text = |t: &String| Input { tokens: prompt_tokens_of_text(t), seed: fnv1a(t.bytes()) };
    let ids = |ids: &Vec<i64>| Input {
        tokens: count(ids.len()).max(1),
        seed: fnv1a(ids.iter().flat_map(|id| id.to_le_bytes())),
    };
    match prompt {
        Prompt::Text(t) => vec![text(t)],
        Prompt::Texts(texts) => texts.iter().map(text).collect(),
        Prompt::Tokens(list) => vec![ids(list)],
        Prompt::TokenLists(lists) => lists.iter().map(ids).collect(),
    }
}

/// FNV-1a, 64 bits.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes
        .into_iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `dimensions` values from `seed`, multiples of 1/1024 in [-0.5, 0.5).
fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    (0..dimensions)
        .map(|_| {
            let step = i16::try_from(rng.next_u64() % 1024).unwrap_or(0) - 512;
            f32::from(step) / 1024.0
        })
        .collect()
}

/// The values as `f64`, which JSON prints exactly (`-0.1806640625`, as vLLM does), not as the
/// shortest `f32` text (`-0.18066406`).
fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().copied().map(f64::from).collect()
}

/// Standard base64 (with padding) of the values' little-endian bytes.
fn encode_base64(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_exact() {
        let a = vector(fnv1a("Follow the white rabbit.".bytes()), 32);
        assert_eq!(a, vector(fnv1a("Follow the white rabbit.".bytes()), 32));
        assert_ne!(a, vector(fnv1a("Another text".bytes()), 32));
        assert!(a.iter().all(|v| (-0.5..0.5).contains(v) && (v * 1024.0).fract() == 0.0));
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 = 00 00 80 3f; 0.5f32 = 00 00 00 3f.
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, 0.5]), "AACAPwAAAD8=");
        assert_eq!(encode_base64(&[1.0, 0.5, 1.0]), "AACAPwAAAD8AAIA/");
    }
}
