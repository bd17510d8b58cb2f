//! The plugin configuration: parsed once in `on_configure` into a validated [`PluginConfig`].
//!
//! An invalid configuration makes `on_configure` return false, so Envoy refuses the filter, and the
//! error names the field that is wrong (`models.qwen.cluster: must not be empty`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default cap on a buffered request body (8 MiB).
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default cap on the request bytes one worker buffers at once (128 MiB).
pub const DEFAULT_MAX_BUFFERED_REQUEST_BYTES: usize = 128 * 1024 * 1024;
/// Default header the route table reads the upstream cluster from.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-gateway-cluster";
/// The `/v1/*` paths forwarded by default: the ones the gateway can account for.
pub const DEFAULT_ENDPOINTS: [&str; 4] =
    ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"];

/// Default of `state.long_poll_ms`.
pub const DEFAULT_LONG_POLL_MS: u64 = 20_000;
/// Default of `state.lookup_negative_ttl_ms`.
pub const DEFAULT_LOOKUP_NEGATIVE_TTL_MS: u64 = 2_000;
/// Default of `state.lookups_per_second`.
pub const DEFAULT_LOOKUPS_PER_SECOND: u32 = 20;

/// Why a plugin configuration was refused; the message starts with the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid plugin configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The validated plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Model name (as clients send it in `model`) → where requests for it go.
    pub models: BTreeMap<String, ModelRoute>,
    /// Where the credentials come from (the control plane's state feed).
    pub state: StateFeed,
    /// Request bodies larger than this are refused with 413.
    #[serde(default = "default_max_body")]
    pub max_request_body_bytes: usize,
    /// The request bytes one worker buffers at once, all requests together; a body that would
    /// pass it is refused with 503 `overloaded` (so many large or slow uploads cannot exhaust
    /// Envoy's memory). At least `max_request_body_bytes`.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_request_bytes: usize,
    /// The header the route table reads the cluster from; always overwritten by the filter.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// What the filter asks upstreams for in streamed requests so it can count tokens.
    #[serde(default)]
    pub usage_injection: UsageInjection,
    /// Where requests to a listed endpoint that are not a `POST` (so have no body to read a
    /// `model` from) go; without it they get 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_model: Option<String>,
    /// The `/v1/*` paths forwarded upstream, compared exactly (case matters) with the request
    /// path without its query string; default [`DEFAULT_ENDPOINTS`]. Every other `/v1/*` path —
    /// vLLM's `/v1/load_lora_adapter` and `/v1/unload_lora_adapter` included — is refused with
    /// 404 `unknown_url` after the credential is checked, and never reaches an upstream.
    /// `GET /v1/models` is always answered by the gateway itself. Each entry starts with `/v1/`
    /// and is a normalised path (no `?`, `#`, `//`, `/./`, `/../`); no entry is listed twice.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<String>,
    /// How callers' limits are enforced (the limits themselves come with the credentials).
    #[serde(default, skip_serializing_if = "LimitsConfig::is_default")]
    pub limits: LimitsConfig,
}

/// Default of `limits.default_max_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// How callers' limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The completion tokens a request that sets no `max_tokens` is granted at most (per choice),
    /// when its caller has a token limit; the request's `max_tokens` is then set to its grant.
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u64,
}

impl LimitsConfig {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { default_max_tokens: DEFAULT_MAX_TOKENS }
    }
}

fn default_max_tokens() -> u64 {
    DEFAULT_MAX_TOKENS
}

/// What a streamed request is made to ask the upstream for; the caller never sees the difference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageInjection {
    /// `include_usage` and `continuous_usage_stats` (vLLM): even a cut-off stream is counted.
    #[default]
    Continuous,
    /// `include_usage` only, for upstreams that refuse vLLM's `continuous_usage_stats`.
    Final,
    /// Nothing: streams without reported usage are estimated.
    Off,
}

/// Where one model's requests are sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRoute {
    /// The Envoy cluster serving this model.
    pub cluster: String,
    /// Sent upstream as `Authorization: Bearer …` (vLLM's `--api-key`); the caller's own
    /// credential is never forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

/// The control plane's state feed (pulled by one worker at a time and shared with the others) and
/// the lookup of one credential that a worker's state refuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFeed {
    /// Envoy cluster of the control plane's HTTP API.
    pub cluster: String,
    /// `:authority` sent with the pull.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Path of the state endpoint; the lookup of one credential goes to the same prefix with
    /// [`crate::feed::LOOKUP_PATH`] instead of [`crate::feed::STATE_PATH`].
    #[serde(default = "default_state_path")]
    pub path: String,
    /// Shared secret sent as a bearer token.
    pub token: String,
    /// How often the state is pulled once it has arrived, in milliseconds.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// Timeout of one pull or lookup, in milliseconds (a long poll adds `long_poll_ms`).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Once a state is held, how long the control plane may hold a pull open until something
    /// changes (`?wait_ms=`), in milliseconds; 0 turns long polling off (a pull every
    /// `refresh_ms`).
    #[serde(default = "default_long_poll_ms")]
    pub long_poll_ms: u64,
    /// How long a credential the control plane said does not exist is refused without asking it
    /// again, in milliseconds; 0 keeps no such memory.
    #[serde(default = "default_lookup_negative_ttl_ms")]
    pub lookup_negative_ttl_ms: u64,
    /// How many refused credentials one worker may look up at the control plane per second;
    /// beyond it they are refused at once. 0 turns lookups off.
    #[serde(default = "default_lookups_per_second")]
    pub lookups_per_second: u32,
}

/// [`DEFAULT_ENDPOINTS`] as the configuration holds them.
pub fn default_endpoints() -> Vec<String> {
    DEFAULT_ENDPOINTS.iter().map(|e| (*e).to_owned()).collect()
}

fn default_max_body() -> usize {
    DEFAULT_MAX_REQUEST_BODY_BYTES
}
fn default_max_buffered() -> usize {
    DEFAULT_MAX_BUFFERED_REQUEST_BYTES
}
fn default_cluster_header() -> String {
    DEFAULT_CLUSTER_HEADER.to_owned()
}
fn default_authority() -> String {
    "control-plane".to_owned()
}
fn default_state_path() -> String {
    crate::feed::STATE_PATH.to_owned()
}
fn default_refresh_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_long_poll_ms() -> u64 {
    DEFAULT_LONG_POLL_MS
}
fn default_lookup_negative_ttl_ms() -> u64 {
    DEFAULT_LOOKUP_NEGATIVE_TTL_MS
}
fn default_lookups_per_second() -> u32 {
    DEFAULT_LOOKUPS_PER_SECOND
}

impl PluginConfig {
    /// Parses and validates the configuration bytes Envoy hands to `on_configure`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: PluginConfig =
            serde_json::from_slice(bytes).map_err(|e| ConfigError(format!("not valid: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, why: &str| Err(ConfigError(format!("{field}: {why}")));
        if self.models.is_empty() {
            return fail("models", "at least one model is required");
        }
        for (name, route) in &self.models {
            if name.trim().is_empty() {
                return fail("models", "a model name must not be empty");
            }
            if route.cluster.trim().is_empty() {
                return fail(&format!("models.{name}.cluster"), "must not be empty");
            }
            if route.api_key.as_deref().is_some_and(|k| k.is_empty() || k.contains(['\r', '\n'])) {
                return fail(&format!("models.{name}.api_key"), "must be a non-empty single line");
            }
        }
        if let Some(model) = &self.default_model {
            if !self.models.contains_key(model) {
                return fail("default_model", "must be one of the configured models");
            }
        }
        if self.max_request_body_bytes == 0 {
            return fail("max_request_body_bytes", "must be greater than 0");
        }
        if self.max_buffered_request_bytes < self.max_request_body_bytes {
            return fail("max_buffered_request_bytes", "must be at least max_request_body_bytes");
        }
        if !is_header_name(&self.cluster_header) {
            return fail("cluster_header", "must be a lowercase HTTP header name");
        }
        if self.limits.default_max_tokens == 0 {
            return fail("limits.default_max_tokens", "must be greater than 0");
        }
        self.validate_endpoints()?;
        self.state.validate()
    }

    fn validate_endpoints(&self) -> Result<(), ConfigError> {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let why = endpoint_problem(endpoint).or_else(|| {
                let first = self.endpoints.iter().position(|e| e == endpoint)?;
                (first < i).then(|| format!("duplicate of endpoints[{first}]"))
            });
            if let Some(why) = why {
                return Err(ConfigError(format!("endpoints[{i}]: {why}")));
            }
        }
        Ok(())
    }

    /// Whether requests to `path` (without its query string) are forwarded.
    pub fn forwards(&self, path: &str) -> bool {
        self.endpoints.iter().any(|e| e == path)
    }

    /// The route of a model, if it is configured.
    pub fn route(&self, model: &str) -> Option<&ModelRoute> {
        self.models.get(model)
    }
}

impl StateFeed {
    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &str, why: &str| Err(ConfigError(format!("state.{field}: {why}")));
        if self.cluster.trim().is_empty() {
            return fail("cluster", "must not be empty");
        }
        if !self.path.starts_with('/') {
            return fail("path", "must start with '/'");
        }
        if self.token.len() < 16 {
            return fail("token", "must be at least 16 characters");
        }
        if !(100..=3_600_000).contains(&self.refresh_ms) {
            return fail("refresh_ms", "must be between 100 and 3600000");
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return fail("timeout_ms", "must be between 100 and 60000");
        }
        if self.long_poll_ms != 0 && !(1_000..=30_000).contains(&self.long_poll_ms) {
            return fail("long_poll_ms", "must be 0 (off) or between 1000 and 30000");
        }
        if self.lookup_negative_ttl_ms > 60_000 {
            return fail("lookup_negative_ttl_ms", "must be between 0 and 60000");
        }
        if self.lookups_per_second > 10_000 {
            return fail("lookups_per_second", "must be between 0 (off) and 10000");
        }
        Ok(())
    }
}

/// What is wrong with one `endpoints` entry, if anything.
fn endpoint_problem(endpoint: &str) -> Option<String> {
    let why = if !endpoint.starts_with("/v1/") {
        "must start with /v1/"
    } else if endpoint.len() == "/v1/".len() {
        "must name an endpoint after /v1/"
    } else if endpoint.contains(['?', '#']) {
        "must not contain '?' or '#' (it is compared without the query string)"
    } else if endpoint.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        "must not contain whitespace or control characters"
    } else if ["//", "/./", "/../"].iter().any(|s| endpoint.contains(s))
        || endpoint.ends_with("/.")
        || endpoint.ends_with("/..")
    {
        "must be a normalised path (no //, /./ or /../)"
    } else {
        return None;
    };
    Some(why.to_owned())
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Configurations for the core's tests.
#[cfg(test)]
impl PluginConfig {
    /// `models` routed, request bodies capped at `body_bytes` (read and buffered), clusters named
    /// in `cluster_header`, the state feed at `state_path` (refreshed each second); everything
    /// else as configured by default.
    pub(crate) fn for_tests(
        models: BTreeMap<String, ModelRoute>,
        body_bytes: usize,
        cluster_header: &str,
        state_path: &str,
    ) -> Self {
        Self {
            models,
            state: StateFeed {
                cluster: "cp".into(),
                authority: "cp".into(),
                path: state_path.into(),
                token: "0123456789abcdef".into(),
                refresh_ms: 1000,
                timeout_ms: 1000,
                long_poll_ms: DEFAULT_LONG_POLL_MS,
                lookup_negative_ttl_ms: DEFAULT_LOOKUP_NEGATIVE_TTL_MS,
                lookups_per_second: DEFAULT_LOOKUPS_PER_SECOND,
            },
            max_request_body_bytes: body_bytes,
            max_buffered_request_bytes: body_bytes,
            cluster_header: cluster_header.into(),
            usage_injection: Default::default(),
            default_model: None,
            endpoints: default_endpoints(),
            limits: LimitsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests;
