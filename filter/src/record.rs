//! The per-request facts the filter hands to Envoy's access logger, as the JSON document stored
//! in the filter state `wasm.gw_usage` (read by the control plane's access-log sink).

use serde::{Deserialize, Serialize};

use crate::usage::{Usage, UsageSource};

/// Name of the filter-state property (Envoy logs it as `wasm.gw_usage`).
pub const PROPERTY: &str = "gw_usage";

/// What one request did, as the access log receives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The app whose key was used.
    pub app_id: Option<i64>,
    /// The key that was used.
    pub key_id: Option<i64>,
    /// The user whose JWT was used.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// The requested model.
    pub model: Option<String>,
    /// The cluster the request was routed to.
    pub cluster: Option<String>,
    /// Whether the response was streamed.
    pub stream: bool,
    /// HTTP status the client got.
    pub status: u16,
    /// Token counts.
    #[serde(flatten)]
    pub usage: Usage,
    /// Where the counts came from.
    pub usage_source: UsageSource,
    /// Milliseconds from the request to the first response byte.
    pub ttft_ms: Option<u64>,
    /// Milliseconds from the request to the end of the response.
    pub duration_ms: Option<u64>,
    /// The client went away before the response ended.
    pub client_disconnected: bool,
    /// Why the gateway refused the request (`invalid_api_key`, …).
    pub gateway_error: Option<String>,
    /// The error type the upstream reported (`BadRequestError`, …).
    pub upstream_error: Option<String>,
}

impl UsageRecord {
    /// The JSON bytes stored in the filter state.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_flat_token_fields() {
        let record = UsageRecord {
            app_id: Some(3),
            model: Some("m".into()),
            usage: Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
            usage_source: UsageSource::Reported,
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_slice(&record.to_bytes()).unwrap();
        assert_eq!(json["prompt_tokens"], 1);
        assert_eq!(json["total_tokens"], 3);
        assert_eq!(json["usage_source"], "reported");
        let back: UsageRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }
}
