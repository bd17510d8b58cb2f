//! The per-request facts the filter hands to Envoy's access logger, as the JSON document stored
//! in the filter state `wasm.gw_usage` (read by the control plane's access-log sink).

use serde::{Deserialize, Serialize};

use crate::usage::{Usage, UsageSource};

mod plain;

/// Name of the filter-state property (Envoy logs it as `wasm.gw_usage`).
pub const PROPERTY: &str = "gw_usage";
/// The filter-state key the record is under, as Envoy's access loggers name it
/// (`filter_state_objects_to_log`, `%FILTER_STATE(…)%`): proxy-wasm puts a property under
/// `wasm.` + [`PROPERTY`], and the native module sets this same key, so one access-log
/// configuration serves both builds.
pub const LOG_KEY: &str = "wasm.gw_usage";
/// How many bytes of entries Envoy's gRPC access logger gathers before it sends them as one
/// message (its `buffer_size_bytes`; it also sends every 0.2 s). Envoy's default, 16 KiB, sent a
/// message about every twenty requests: under load, packing and sending those messages cost
/// Envoy several µs per request, and the sink as much again to take them in. A message is at
/// most this plus one entry, far below the sink's limit (which the control plane checks).
pub const ACCESS_LOG_BATCH_BYTES: u64 = 256 * 1024;

/// What one request did, as the access log receives it. Absent facts (`null`, `false`) are left
/// out of the JSON, which keeps what Envoy copies and logs per request short; a reader takes a
/// missing member as its default.
///
/// Read through [`FlatRecord`]: a flattened member makes serde buffer every member of the
/// document before reading it, which was most of the control plane's cost of reading a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, from = "FlatRecord")]
pub struct UsageRecord {
    /// The app whose key was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<i64>,
    /// The key that was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<i64>,
    /// The user whose JWT was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// The requested model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The cluster the request was routed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Whether the response was streamed.
    #[serde(skip_serializing_if = "is_false")]
    pub stream: bool,
    /// HTTP status the client got.
    pub status: u16,
    /// Token counts.
    #[serde(flatten)]
    pub usage: Usage,
    /// Where the counts came from.
    pub usage_source: UsageSource,
    /// Milliseconds from the request to the first response byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// Milliseconds from the request to the end of the response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The client went away before the response ended.
    #[serde(skip_serializing_if = "is_false")]
    pub client_disconnected: bool,
    /// Why the gateway refused the request (`invalid_api_key`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_error: Option<String>,
    /// The error type the upstream reported (`BadRequestError`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    /// The limit that refused the request or cut its stream off (a
    /// [`LimitKind::name`](crate::feed::limits::LimitKind::name), `tokens_per_day`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited: Option<String>,
    /// The gateway ended the stream because it passed its grant of tokens.
    #[serde(skip_serializing_if = "is_false")]
    pub cut_off: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// [`UsageRecord`] as its JSON is laid out (token counts beside the other facts), read without
/// a flattened member.
#[derive(Deserialize, Default)]
#[serde(default)]
struct FlatRecord {
    app_id: Option<i64>,
    key_id: Option<i64>,
    user_id: Option<i64>,
    model: Option<String>,
    cluster: Option<String>,
    stream: bool,
    status: u16,
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    usage_source: UsageSource,
    ttft_ms: Option<u64>,
    duration_ms: Option<u64>,
    client_disconnected: bool,
    gateway_error: Option<String>,
    upstream_error: Option<String>,
    limited: Option<String>,
    cut_off: bool,
}

impl From<FlatRecord> for UsageRecord {
    fn from(f: FlatRecord) -> Self {
        Self {
            app_id: f.app_id,
            key_id: f.key_id,
            user_id: f.user_id,
            model: f.model,
            cluster: f.cluster,
            stream: f.stream,
            status: f.status,
            usage: Usage {
                prompt_tokens: f.prompt_tokens,
                completion_tokens: f.completion_tokens,
                total_tokens: f.total_tokens,
            },
            usage_source: f.usage_source,
            ttft_ms: f.ttft_ms,
            duration_ms: f.duration_ms,
            client_disconnected: f.client_disconnected,
            gateway_error: f.gateway_error,
            upstream_error: f.upstream_error,
            limited: f.limited,
            cut_off: f.cut_off,
        }
    }
}

impl UsageRecord {
    /// The record in `bytes`, read exactly as `serde_json` reads it: without serde when it is
    /// written plainly, as the filter writes it ([`plain`]), else by serde.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        plain::read(bytes).map_or_else(|| serde_json::from_slice(bytes), Ok)
    }

    /// The JSON bytes stored in the filter state.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

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

    #[test]
    fn absent_facts_are_left_out_and_read_back_as_defaults() {
        let record = UsageRecord {
            status: 401,
            gateway_error: Some("invalid_api_key".into()),
            ..Default::default()
        };
        let text = String::from_utf8(record.to_bytes()).unwrap();
        assert_eq!(
            text,
            r#"{"status":401,"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"usage_source":"none","gateway_error":"invalid_api_key"}"#
        );
        assert_eq!(serde_json::from_str::<UsageRecord>(&text).unwrap(), record);
        let full = r#"{"app_id":1,"key_id":2,"user_id":null,"model":"m","cluster":"c","stream":true,"status":200,"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"usage_source":"reported","ttft_ms":4,"duration_ms":5,"client_disconnected":false,"gateway_error":null,"upstream_error":null}"#;
        let older: UsageRecord = serde_json::from_str(full).unwrap();
        assert_eq!(
            (older.app_id, older.stream, older.ttft_ms, older.client_disconnected),
            (Some(1), true, Some(4), false)
        );
        assert_eq!(older.usage, Usage { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
        let unknown =
            r#"{"status":200,"total_tokens":7,"later_fact":{"x":[1]},"usage_source":"estimated"}"#;
        let read: UsageRecord = serde_json::from_str(unknown).unwrap();
        assert_eq!((read.status, read.usage.total_tokens), (200, 7), "unknown members are skipped");
        assert_eq!(read.usage_source, UsageSource::Estimated);
    }
}
