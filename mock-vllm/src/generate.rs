//! The "model": deterministic generated text, token counts, usage blocks and ids.
//!
//! Text is [`PIECES`] repeated in order; each piece is one token (one streamed chunk). A request
//! gets `max_tokens` (or `max_completion_tokens`) tokens and finish reason `length`, or, without
//! either, [`MockConfig::default_max_tokens`] tokens and `stop`.
//!
//! With `n > 1`, choice `i` is the same text cut `i` tokens shorter (see [`Plan::choice`]).
//!
//! Prompt tokens are a deterministic count, at least 1: for chat, one per message plus the
//! whitespace-separated words of its text (string content, or the `text` of its content parts);
//! for completions and embeddings, the words of the prompt (or the length of a token-id prompt).

use serde::Serialize;

use crate::config::MockConfig;
use crate::error::ApiError;

/// The generated text's tokens, in order: multi-byte UTF-8 (2, 3 and 4 bytes), a newline and
/// quotes, so that escaping and re-framing show up in tests.
pub const PIECES: [&str; 16] = [
    "Hello", " world", ",", " 你好", " 世界", " —", " é", " 🚀", ".", "\n", "Mock", " vLLM",
    " says", " \"hi\"", " ü", "!",
];

/// The `system_fingerprint` of the final usage chunk (vLLM sends `vllm-<version>-…`).
pub(crate) const SYSTEM_FINGERPRINT: &str = concat!("vllm-mock-", env!("CARGO_PKG_VERSION"));

/// The first `tokens` tokens of the generated text, concatenated.
pub fn completion_text(tokens: usize) -> String {
    PIECES.iter().cycle().take(tokens).copied().collect()
}

/// Prompt tokens of a plain-text prompt: its whitespace-separated words, at least 1.
pub fn prompt_tokens_of_text(text: &str) -> u32 {
    count(text.split_whitespace().count()).max(1)
}

/// A count as `u32`, saturating.
pub(crate) fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A JSON `null` that is always sent (a field vLLM sets to `None`).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Null;

/// What one request will generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub finish_reason: &'static str,
}

impl Plan {
    /// Checks the prompt and `max_tokens` against the context window, as vLLM does.
    pub fn new(
        prompt_tokens: u32,
        max_tokens: Option<i64>,
        config: &MockConfig,
    ) -> Result<Self, ApiError> {
        let max_len = config.max_model_len;
        if prompt_tokens >= max_len {
            return Err(ApiError::prompt_too_long(max_len, prompt_tokens));
        }
        let room = max_len - prompt_tokens;
        let (completion_tokens, finish_reason) = match max_tokens {
            Some(n) if n < 1 => {
                return Err(ApiError::BadRequest(format!(
                    "max_tokens must be at least 1, got {n}."
                )))
            }
            Some(n) => {
                let n = u32::try_from(n).unwrap_or(u32::MAX);
                if n > room {
                    return Err(ApiError::max_tokens_too_large(n, max_len, prompt_tokens));
                }
                (n, "length")
            }
            None if config.default_max_tokens > room => (room, "length"),
            None => (config.default_max_tokens, "stop"),
        };
        Ok(Self { prompt_tokens, completion_tokens, finish_reason })
    }

    /// Choice `output_index` when `n` choices are sampled from this plan: choice 0 is the plan
    /// itself, choice `i` ends `i` tokens earlier on a `stop` (at least 1 token), as independent
    /// samples do; so a sum over the choices differs from `n` times one of them.
    pub fn choice(&self, output_index: u32) -> Self {
        let completion_tokens =
            self.completion_tokens.saturating_sub(output_index).max(1).min(self.completion_tokens);
        let finish_reason =
            if completion_tokens == self.completion_tokens { self.finish_reason } else { "stop" };
        Self { completion_tokens, finish_reason, ..*self }
    }

    /// The generated tokens, one piece each.
    pub fn pieces(&self) -> impl Iterator<Item = &'static str> {
        PIECES.iter().cycle().take(self.completion_tokens as usize).copied()
    }

    /// The whole generated text.
    pub fn text(&self) -> String {
        completion_text(self.completion_tokens as usize)
    }
}

/// `{"cached_tokens":…}`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CachedTokens {
    cached_tokens: u32,
}

/// vLLM's `usage`, keys in its order: `prompt_tokens`, `total_tokens`, `completion_tokens`, then
/// `prompt_tokens_details` when set.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Usage {
    prompt_tokens: u32,
    total_tokens: u32,
    completion_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<Option<CachedTokens>>,
}

impl Usage {
    fn new(
        prompt_tokens: u32,
        completion_tokens: u32,
        details: Option<Option<CachedTokens>>,
    ) -> Self {
        let total_tokens = prompt_tokens.saturating_add(completion_tokens);
        Self { prompt_tokens, total_tokens, completion_tokens, prompt_tokens_details: details }
    }

    /// The usage of a non-streamed reply: `"prompt_tokens_details":null` (as recorded).
    pub fn reply(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self::new(prompt_tokens, completion_tokens, Some(None))
    }

    /// The running usage of `continuous_usage_stats`: no `prompt_tokens_details` key.
    pub fn running(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self::new(prompt_tokens, completion_tokens, None)
    }

    /// The usage of the final usage-only chunk: `{"cached_tokens":0}` (as recorded).
    pub fn final_chunk(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self::new(prompt_tokens, completion_tokens, Some(Some(CachedTokens { cached_tokens: 0 })))
    }
}

/// SplitMix64: a tiny PRNG whose sequence depends on the seed alone (not on a crate version).
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A fresh id: `prefix` + 16 lowercase hex digits (`chatcmpl-…`, `cmpl-…`, `embd-…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cycles_through_the_pieces() {
        assert_eq!(completion_text(3), "Hello world,");
        assert_eq!(completion_text(PIECES.len() + 1), format!("{}Hello", PIECES.concat()));
        assert!(PIECES.concat().chars().any(|c| c.len_utf8() == 4));
    }

    #[test]
    fn prompt_tokens_count_words_and_are_never_zero() {
        assert_eq!(prompt_tokens_of_text("What is AWS ECS?"), 4);
        assert_eq!(prompt_tokens_of_text("  "), 1);
        assert_eq!(prompt_tokens_of_text("你好, gateway"), 2);
    }

    #[test]
    fn plan_follows_max_tokens_and_the_context_window() {
        let config =
            MockConfig { max_model_len: 100, default_max_tokens: 16, ..MockConfig::default() };
        assert_eq!(Plan::new(5, Some(7), &config).unwrap().finish_reason, "length");
        let default = Plan::new(5, None, &config).unwrap();
        assert_eq!((default.completion_tokens, default.finish_reason), (16, "stop"));
        assert_eq!(Plan::new(90, None, &config).unwrap().completion_tokens, 10);
        assert!(Plan::new(100, None, &config).is_err());
        assert!(Plan::new(5, Some(96), &config).is_err());
        assert!(Plan::new(5, Some(0), &config).is_err());
    }

    #[test]
    fn later_choices_stop_earlier() {
        let plan = Plan::new(5, Some(4), &MockConfig::default()).unwrap();
        assert_eq!(plan.choice(0), plan);
        let second = plan.choice(1);
        assert_eq!((second.completion_tokens, second.finish_reason), (3, "stop"));
        assert_eq!(plan.choice(9).completion_tokens, 1);
        let one = Plan::new(5, Some(1), &MockConfig::default()).unwrap();
        assert_eq!(one.choice(3).finish_reason, "length", "still the whole budget");
    }

    #[test]
    fn usage_keys_come_in_vllm_order() {
        let json = |u: Usage| serde_json::to_string(&u).unwrap();
        assert_eq!(
            json(Usage::reply(2, 3)),
            r#"{"prompt_tokens":2,"total_tokens":5,"completion_tokens":3,"prompt_tokens_details":null}"#
        );
        assert_eq!(
            json(Usage::running(2, 1)),
            r#"{"prompt_tokens":2,"total_tokens":3,"completion_tokens":1}"#
        );
        assert!(json(Usage::final_chunk(2, 3))
            .ends_with(r#""prompt_tokens_details":{"cached_tokens":0}}"#));
    }

    #[test]
    fn ids_have_16_hex_digits() {
        let id = new_id("chatcmpl-");
        let hex = id.strip_prefix("chatcmpl-").unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
