//! Log probabilities, made up deterministically, in vLLM's shapes: what makes a reply large
//! (`prompt_logprobs` of a long prompt easily pass a mebibyte).
//!
//! - `prompt_logprobs: k` (chat: top level; completions: per choice): `null` for the first
//!   prompt token, then per position `{"<token id>": {"logprob", "rank", "decoded_token"}}`,
//!   the prompt's own token first, then the top `k` (vLLM `v1/engine/logprobs.py`: the sampled or
//!   prompt token leads the dict; `clamp_prompt_logprobs` in the serving code).
//! - Completions `logprobs: k`: `{"text_offset", "token_logprobs", "tokens", "top_logprobs"}`
//!   (`CompletionLogProbs`, `completion/protocol.py`), `k + 1` entries per token at most.
//! - Chat `logprobs: true` with `top_logprobs: k`: `{"content": [{"token", "logprob", "bytes",
//!   "top_logprobs": [k × {"token", "logprob", "bytes"}]}]}` (`ChatCompletionLogProbs`).
//!
//! The checks are vLLM's `check_logprobs` validators and its engine's `max_logprobs` (20).

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::generate::count;
use crate::lax;

/// vLLM's default `--max-logprobs`.
const MAX_LOGPROBS: i64 = 20;

/// The logprobs fields of a chat or completion request (their types differ per endpoint).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogprobsRequest {
    #[serde(default)]
    logprobs: Value,
    #[serde(default)]
    top_logprobs: Option<i64>,
    #[serde(default)]
    prompt_logprobs: Option<i64>,
}

/// What a reply carries: top-`k` sample logprobs and/or prompt logprobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    sample: Option<u32>,
    prompt: Option<u32>,
}

fn within_max(n: i64, what: &str) -> Result<u32, ApiError> {
    if n > MAX_LOGPROBS || n == -1 {
        return Err(ApiError::BadRequest(format!(
            "Requested {what} logprobs of {n}, which is greater than max allowed: {MAX_LOGPROBS}"
        )));
    }
    Ok(u32::try_from(n).unwrap_or(0))
}

impl LogprobsRequest {
    fn prompt(&self, streamed: bool) -> Result<Option<u32>, ApiError> {
        let Some(k) = self.prompt_logprobs else {
            return Ok(None);
        };
        if streamed && (k > 0 || k == -1) {
            return Err(ApiError::BadRequest(
                "`prompt_logprobs` are not available when `stream=True`.".to_owned(),
            ));
        }
        if k < -1 {
            return Err(ApiError::BadRequest(
                "`prompt_logprobs` must be a positive value or -1.".to_owned(),
            ));
        }
        within_max(k, "prompt").map(Some)
    }

    /// A chat request's: `logprobs` a (lax) boolean, `top_logprobs` its `k`.
    pub(crate) fn chat(&self, streamed: bool) -> Result<Wanted, ApiError> {
        let top = self.top_logprobs.unwrap_or(0);
        if top < -1 {
            return Err(ApiError::BadRequest(
                "`top_logprobs` must be a positive value or -1.".to_owned(),
            ));
        }
        if (top > 0 || top == -1) && !lax::truthy(&self.logprobs) {
            return Err(ApiError::BadRequest(
                "when using `top_logprobs`, `logprobs` must be set to true.".to_owned(),
            ));
        }
        let wanted = lax::optional_bool(&self.logprobs).map_err(|m| {
            ApiError::BadRequest(format!(
                "1 validation error for ChatCompletionRequest\nlogprobs\n  {m}"
            ))
        })?;
        let sample = match wanted {
            Some(true) => Some(within_max(top, "sample")?),
            _ => None,
        };
        Ok(Wanted { sample, prompt: self.prompt(streamed)? })
    }

    /// A completion request's: `logprobs` is `k` itself.
    pub(crate) fn completion(&self, streamed: bool) -> Result<Wanted, ApiError> {
        let sample = match &self.logprobs {
            Value::Null => None,
            Value::Number(n) => match n.as_i64() {
                Some(k) if k < 0 => {
                    return Err(ApiError::BadRequest(
                        "`logprobs` must be a positive value.".to_owned(),
                    ))
                }
                Some(k) => Some(within_max(k, "sample")?),
                None => {
                    return Err(ApiError::BadRequest("`logprobs` must be an integer.".to_owned()))
                }
            },
            _ => return Err(ApiError::BadRequest("`logprobs` must be an integer.".to_owned())),
        };
        Ok(Wanted { sample, prompt: self.prompt(streamed)? })
    }
}

/// A made-up logprob for rank `rank` at position `at`: exact binary fractions, so they print short.
fn logprob(rank: u32, at: usize) -> f64 {
    -0.5 * f64::from(rank - 1) - 0.125 * f64::from(count(at % 4))
}

/// One position's `{token id: Logprob}`, in vLLM's order.
pub(crate) struct Position(Vec<(u32, Entry)>);

#[derive(Serialize)]
pub(crate) struct Entry {
    logprob: f64,
    rank: u32,
    decoded_token: String,
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (id, entry) in &self.0 {
            map.serialize_entry(&id.to_string(), entry)?;
        }
        map.end()
    }
}

/// `prompt_logprobs`: `null`, then one [`Position`] per further prompt token.
pub(crate) type PromptLogprobs = Vec<Option<Position>>;

fn prompt_position(at: usize, k: u32) -> Position {
    let own_rank = 1 + count(at % 5);
    let own_id = 1000 + count(at * 7919 % 30_000);
    let own =
        Entry { logprob: logprob(own_rank, at), rank: own_rank, decoded_token: format!("p{at}") };
    let mut entries = vec![(own_id, own)];
    for rank in (1..=k).filter(|r| *r != own_rank) {
        let entry = Entry { logprob: logprob(rank, at), rank, decoded_token: format!("a{rank}") };
        entries.push((100 + rank, entry));
    }
    Position(entries)
}

/// Completions' `logprobs` of some generated pieces.
#[derive(Serialize)]
pub(crate) struct CompletionLogprobs {
    text_offset: Vec<usize>,
    token_logprobs: Vec<f64>,
    tokens: Vec<&'static str>,
    top_logprobs: Vec<TopTokens>,
}

/// A completion position's `{token: logprob}` (decoded tokens as keys).
pub(crate) struct TopTokens(Vec<(String, f64)>);

impl Serialize for TopTokens {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (token, lp) in &self.0 {
            map.serialize_entry(token, lp)?;
        }
        map.end()
    }
}

/// Chat's `logprobs`.
#[derive(Serialize)]
pub(crate) struct ChatLogprobs {
    content: Vec<ChatToken>,
}

#[derive(Serialize)]
struct ChatToken {
    token: String,
    logprob: f64,
    bytes: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<Vec<ChatToken>>,
}

/// The sampled piece (rank 1) and its alternatives, `k` in all (at least the piece).
fn alternatives(piece: &str, k: u32, at: usize) -> Vec<(String, f64)> {
    let mut out = vec![(piece.to_owned(), logprob(1, at))];
    out.extend((2..=k).map(|rank| (format!("a{rank}"), logprob(rank, at))));
    out
}

impl Wanted {
    /// `prompt_logprobs` of a prompt of `prompt_tokens` tokens, if asked for.
    pub(crate) fn prompt(&self, prompt_tokens: u32) -> Option<PromptLogprobs> {
        let k = self.prompt?;
        let positions = (1..prompt_tokens as usize).map(|at| Some(prompt_position(at, k)));
        Some(std::iter::once(None).chain(positions).collect())
    }

    /// Completions' `logprobs` of `pieces` (the `first`-th generated token on), text offsets
    /// starting at `offset` (in characters, as Python counts them).
    pub(crate) fn completion(
        &self,
        first: usize,
        pieces: impl IntoIterator<Item = &'static str>,
        mut offset: usize,
    ) -> Option<CompletionLogprobs> {
        let k = self.sample?;
        let mut out = CompletionLogprobs {
            text_offset: vec![],
            token_logprobs: vec![],
            tokens: vec![],
            top_logprobs: vec![],
        };
        for (at, piece) in pieces.into_iter().enumerate() {
            let at = first + at;
            out.text_offset.push(offset);
            offset += piece.chars().count();
            out.token_logprobs.push(logprob(1, at));
            out.tokens.push(piece);
            out.top_logprobs.push(TopTokens(alternatives(piece, k + 1, at)));
        }
        Some(out)
    }

    /// Chat's `logprobs` of `pieces` (the `first`-th generated token on).
    pub(crate) fn chat(
        &self,
        first: usize,
        pieces: impl IntoIterator<Item = &'static str>,
    ) -> Option<ChatLogprobs> {
        let k = self.sample?;
        let token = |token: String, logprob: f64, top| ChatToken {
            bytes: token.clone().into_bytes(),
            token,
            logprob,
            top_logprobs: top,
        };
        let content = pieces
            .into_iter()
            .enumerate()
            .map(|(at, piece)| {
                let at = first + at;
                let top = alternatives(piece, k, at).into_iter().take(k as usize);
                let top = top.map(|(t, lp)| token(t, lp, None)).collect();
                token(piece.to_owned(), logprob(1, at), Some(top))
            })
            .collect();
        Some(ChatLogprobs { content })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(json: Value) -> LogprobsRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn prompt_logprobs_lead_with_the_prompt_token() {
        let wanted = request(json!({"prompt_logprobs": 2})).completion(false).unwrap();
        let text = serde_json::to_string(&wanted.prompt(3).unwrap()).unwrap();
        assert!(
            text.starts_with(r#"[null,{"8919":{"logprob":-0.625,"rank":2,"#),
            "own token first: {text}"
        );
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json[0], Value::Null);
        assert_eq!(
            json[1],
            json!({"8919": {"logprob": -0.625, "rank": 2, "decoded_token": "p1"},
                   "101": {"logprob": -0.125, "rank": 1, "decoded_token": "a1"}})
        );
        assert_eq!(json[2].as_object().unwrap().len(), 3, "rank 3 is outside the top 2");
    }

    #[test]
    fn completion_and_chat_logprobs_have_vllm_s_keys() {
        let wanted = request(json!({"logprobs": 2})).completion(false).unwrap();
        let json =
            serde_json::to_value(wanted.completion(0, ["Hello", " 你好"], 0).unwrap()).unwrap();
        assert_eq!(json["text_offset"], json!([0, 5]));
        assert_eq!(json["tokens"], json!(["Hello", " 你好"]));
        assert_eq!(json["top_logprobs"][1].as_object().unwrap().len(), 3);
        let wanted = request(json!({"logprobs": "true", "top_logprobs": 2})).chat(false).unwrap();
        let json = serde_json::to_value(wanted.chat(0, [" é"]).unwrap()).unwrap();
        let token = &json["content"][0];
        assert_eq!(token["bytes"], json!([32, 195, 169]));
        assert_eq!(token["top_logprobs"].as_array().unwrap().len(), 2);
        assert!(token["top_logprobs"][0].get("top_logprobs").is_none());
    }

    #[test]
    fn vllm_s_checks_apply() {
        let chat = |j| request(j).chat(false);
        assert!(chat(json!({"top_logprobs": 2})).is_err(), "top_logprobs without logprobs");
        assert!(chat(json!({"logprobs": true, "top_logprobs": 21})).is_err());
        assert_eq!(chat(json!({"logprobs": false})).unwrap(), Wanted::default());
        assert!(request(json!({"prompt_logprobs": 1})).chat(true).is_err(), "not when streamed");
        assert!(request(json!({"prompt_logprobs": -2})).completion(false).is_err());
        assert!(request(json!({"logprobs": -1})).completion(false).is_err());
        assert!(request(json!({"logprobs": true})).completion(false).is_err());
    }
}
