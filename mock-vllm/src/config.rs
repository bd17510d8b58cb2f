//! What a mock server is told at start: the models it serves and its knobs.

use std::time::Duration;

/// Configuration of one mock vLLM server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// The model names it serves (`GET /v1/models` lists them; any other model is a 404). A
    /// request without `model` gets the first one, as vLLM does.
    pub models: Vec<String>,
    /// Pause between two frames of a streamed body (0 = send them as fast as possible). The first
    /// frame goes out at once. A non-streamed reply waits this long per generated token before
    /// it is sent, as a real server generates the whole reply first.
    pub token_delay: Duration,
    /// When set, a streamed body is re-cut into frames at pseudo-random byte positions drawn
    /// from this seed (also inside UTF-8 characters and lines) instead of one frame per event.
    pub split_seed: Option<u64>,
    /// The context window: a prompt of this many tokens or more, or a prompt plus `max_tokens`
    /// over it, is refused with 400 as vLLM does.
    pub max_model_len: u32,
    /// Completion tokens generated when the request sets no `max_tokens` (finish reason `stop`).
    pub default_max_tokens: u32,
}

impl Default for MockConfig {
    /// One model, `mock-model`; no delay, no splitting; a 4096-token context; 16 tokens by default.
    fn default() -> Self {
        Self {
            models: vec!["mock-model".to_owned()],
            token_delay: Duration::ZERO,
            split_seed: None,
            max_model_len: 4096,
            default_max_tokens: 16,
        }
    }
}
