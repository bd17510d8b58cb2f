//! What Envoy knows about one request, whichever way it reached the control plane — the gRPC
//! access-log stream ([`crate::als`]) or the durable file log ([`crate::file_log`]) — and the one
//! function, [`to_row`], that turns it into an access-log row. Both paths fill a
//! [`RequestFacts`] and nothing else, so a request logged by both makes the same row whichever
//! arrives first.

use vllm_gateway_filter::credential::strip_token_param;

use crate::store::logs::AccessLog;
use crate::usage_check::{self, LoggedUsage};

/// The request header that carries the client's own request id (Envoy replaces any client
/// `x-request-id` with its own and moves the client's value here).
pub const CLIENT_REQUEST_ID_HEADER: &str = "x-client-request-id";

/// A client's request id is kept to this many bytes at most: it is the client's text, kept for
/// tracing only.
pub const MAX_CLIENT_REQUEST_ID_BYTES: usize = 256;

/// The `model` of a row is kept to this many bytes at most: a request for a model the gateway
/// does not serve is logged with the caller's text (bounded only by the body's limit).
pub const MAX_MODEL_BYTES: usize = 256;

/// One request's facts as logged by Envoy, before normalisation: empty text and `-` (Envoy's
/// "no value") are absent, a status of 0 is no status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestFacts {
    /// The gateway's request id (Envoy's `x-request-id`), the row's key.
    pub request_id: String,
    /// The client's `x-client-request-id`.
    pub client_request_id: Option<String>,
    /// When the request started, Unix milliseconds.
    pub started_at_ms: i64,
    /// HTTP method.
    pub method: Option<String>,
    /// Path; a `token` query parameter is removed.
    pub path: Option<String>,
    /// Status the client got.
    pub status: Option<i64>,
    /// Total duration, milliseconds.
    pub duration_ms: Option<i64>,
    /// Envoy cluster.
    pub upstream_cluster: Option<String>,
    /// Upstream `host:port`.
    pub upstream_host: Option<String>,
    /// Envoy's short response-flag codes, comma-separated.
    pub response_flags: Option<String>,
    /// Response body bytes sent.
    pub bytes_sent: Option<i64>,
    /// The filter's record (`wasm.gw_usage`), when it set one.
    pub usage: Option<LoggedUsage>,
}

/// The access-log row for one request.
/// The id of a request Envoy logged without one (its headers never completed: a slow client
/// cut off, a malformed request): its start and the client's `ip:port`, made the same by the
/// gRPC and the file path so that both record it once.
pub fn fallback_request_id(started_at_ms: i64, downstream_peer: &str) -> String {
    format!("envoy-{started_at_ms}-{downstream_peer}")
}

pub fn to_row(facts: RequestFacts) -> AccessLog {
    let path = text(facts.path).map(|p| strip_token_param(&p).unwrap_or(p));
    let mut row = AccessLog {
        request_id: facts.request_id,
        client_request_id: text(facts.client_request_id)
            .map(|id| truncate(id, MAX_CLIENT_REQUEST_ID_BYTES)),
        started_at_ms: facts.started_at_ms,
        method: text(facts.method),
        path,
        status: facts.status.filter(|s| *s != 0),
        duration_ms: facts.duration_ms,
        upstream_cluster: text(facts.upstream_cluster),
        upstream_host: text(facts.upstream_host),
        response_flags: text(facts.response_flags),
        bytes_sent: facts.bytes_sent,
        ..AccessLog::default()
    };
    if let Some(record) = facts.usage {
        apply_usage(&mut row, record);
    }
    row
}

/// The filter's record from its JSON bytes ([`usage_check::parse`]); unreadable bytes are
/// logged and give `None`.
pub fn parse_usage(bytes: &[u8]) -> Option<LoggedUsage> {
    usage_check::parse(bytes)
}

/// Fills the row from the filter's record; impossible token counts are corrected and the row
/// flagged ([`usage_check::check`]).
fn apply_usage(row: &mut AccessLog, usage: LoggedUsage) {
    let counts = usage_check::check(&usage);
    let r = usage.record;
    row.app_id = r.app_id;
    row.key_id = r.key_id;
    row.user_id = r.user_id;
    row.model = r.model.map(|model| truncate(model, MAX_MODEL_BYTES));
    row.upstream_cluster = r.cluster.or(row.upstream_cluster.take());
    row.stream = Some(r.stream);
    row.prompt_tokens = counts.prompt;
    row.completion_tokens = counts.completion;
    row.total_tokens = counts.total;
    row.anomaly = counts.anomaly;
    row.usage_source =
        serde_json::to_value(r.usage_source).ok().and_then(|v| v.as_str().map(str::to_owned));
    row.ttft_ms = r.ttft_ms.and_then(|v| i64::try_from(v).ok());
    row.client_disconnected = Some(r.client_disconnected);
    row.gateway_error = r.gateway_error;
    row.upstream_error = r.upstream_error;
    row.limited = r.limited;
    row.cut_off = Some(r.cut_off);
    if row.status.is_none() && r.status != 0 {
        row.status = Some(i64::from(r.status));
    }
}

/// Text that is there: not empty, not Envoy's `-`.
fn text(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty() && v != "-")
}

/// The caller's `text`, cut to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_values_are_none_and_the_record_fills_the_rest() {
        let usage = parse_usage(br#"{"app_id":2,"model":"m","status":201,"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"usage_source":"estimated"}"#);
        let facts = RequestFacts {
            request_id: "r".into(),
            client_request_id: Some("-".into()),
            started_at_ms: 5,
            method: Some(String::new()),
            path: Some("/v1/x?token=sk-live-1&a=b".into()),
            status: Some(0),
            response_flags: Some("-".into()),
            upstream_cluster: Some("c".into()),
            usage,
            ..RequestFacts::default()
        };
        let row = to_row(facts);
        assert_eq!((row.client_request_id, row.method, row.response_flags), (None, None, None));
        assert_eq!(row.path.as_deref(), Some("/v1/x?a=b"));
        assert_eq!(row.status, Some(201), "no status from Envoy: the filter's");
        assert_eq!((row.app_id, row.prompt_tokens, row.total_tokens), (Some(2), Some(3), Some(7)));
        assert_eq!(row.usage_source.as_deref(), Some("estimated"));
        assert_eq!(row.upstream_cluster.as_deref(), Some("c"));
        assert!(parse_usage(b"not json").is_none());
        assert_eq!(row.anomaly, None);
        assert_eq!((row.limited, row.cut_off), (None, Some(false)));
    }

    #[test]
    fn the_limit_that_refused_or_cut_off_a_request_is_kept() {
        let usage = parse_usage(br#"{"app_id":2,"status":200,"stream":true,"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"usage_source":"reported","limited":"tokens_per_day","cut_off":true}"#);
        let row = to_row(RequestFacts { request_id: "r".into(), usage, ..RequestFacts::default() });
        assert_eq!((row.limited.as_deref(), row.cut_off), (Some("tokens_per_day"), Some(true)));
    }

    #[test]
    fn impossible_counts_are_corrected_and_the_row_flagged() {
        let usage = parse_usage(br#"{"app_id":2,"status":200,"prompt_tokens":-3,"completion_tokens":9223372036854775807,"total_tokens":4,"usage_source":"reported"}"#);
        let row = to_row(RequestFacts { request_id: "r".into(), usage, ..RequestFacts::default() });
        assert_eq!(
            (row.app_id, row.prompt_tokens, row.completion_tokens, row.total_tokens),
            (Some(2), Some(0), None, Some(4))
        );
        assert_eq!(row.anomaly.as_deref(), Some("prompt_tokens < 0; completion_tokens > 10000000"));
    }

    #[test]
    fn a_long_client_id_is_cut_on_a_character_boundary() {
        let id = "é".repeat(200);
        let row = to_row(RequestFacts {
            request_id: "r".into(),
            client_request_id: Some(id),
            ..RequestFacts::default()
        });
        let kept = row.client_request_id.unwrap();
        assert_eq!(kept.len(), MAX_CLIENT_REQUEST_ID_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_callers_long_model_is_cut_on_a_character_boundary() {
        let model = format!("x{}", "模".repeat(10_000));
        let record = format!(
            r#"{{"model":"{model}","status":404,"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}}"#
        );
        let usage = parse_usage(record.as_bytes());
        let row = to_row(RequestFacts { request_id: "r".into(), usage, ..RequestFacts::default() });
        let kept = row.model.unwrap();
        assert!(kept.len() <= MAX_MODEL_BYTES && kept.len() > MAX_MODEL_BYTES - 3);
        assert!(model.starts_with(&kept));
    }
}
