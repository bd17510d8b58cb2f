//! Turning one Envoy HTTP access-log entry into an access-log row: Envoy's own facts (request
//! id, method, path, status, timings, upstream, response flags) plus the filter's usage record,
//! carried in the filter state `wasm.gw_usage`.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, RequestMethod};
use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpAccessLogEntry, ResponseFlags};
use envoy_types::pb::google::protobuf::{Any, BytesValue, Duration, StringValue, Timestamp};
use prost::Message;
use vllm_gateway_filter::credential::strip_token_param;
use vllm_gateway_filter::record::UsageRecord;

use crate::store::logs::AccessLog;

/// The filter-state key the filter's record is logged under.
pub const USAGE_STATE_KEY: &str = "wasm.gw_usage";

/// The row for one entry. Entries without a request id get a stable id made from their start
/// time and stream id, so a replay still maps to the same row.
pub fn to_row(entry: &HttpAccessLogEntry) -> AccessLog {
    let common = entry.common_properties.clone().unwrap_or_default();
    let request = entry.request.clone().unwrap_or_default();
    let response = entry.response.clone().unwrap_or_default();
    let started_at_ms = common.start_time.as_ref().map_or(0, timestamp_ms);
    let request_id = if request.request_id.is_empty() {
        format!("envoy-{started_at_ms}-{}", common.stream_id)
    } else {
        request.request_id.clone()
    };
    let path = strip_token_param(&request.path).unwrap_or(request.path.clone());
    let mut row = AccessLog {
        request_id,
        started_at_ms,
        method: RequestMethod::try_from(request.request_method).ok().map(|m| m.as_str_name().to_owned()),
        path: Some(path),
        status: response.response_code.map(|c| i64::from(c.value)),
        duration_ms: common.duration.as_ref().map(duration_ms),
        upstream_cluster: non_empty(&common.upstream_cluster),
        upstream_host: upstream_host(&common),
        response_flags: common.response_flags.as_ref().and_then(flag_codes),
        bytes_sent: i64::try_from(response.response_body_bytes).ok(),
        ..AccessLog::default()
    };
    if let Some(record) = common.filter_state_objects.get(USAGE_STATE_KEY).and_then(usage_record) {
        apply_usage(&mut row, record);
    }
    row
}

fn apply_usage(row: &mut AccessLog, r: UsageRecord) {
    let tokens = |n: u64| i64::try_from(n).ok();
    row.app_id = r.app_id;
    row.key_id = r.key_id;
    row.user_id = r.user_id;
    row.model = r.model;
    row.upstream_cluster = r.cluster.or(row.upstream_cluster.take());
    row.stream = Some(r.stream);
    row.prompt_tokens = tokens(r.usage.prompt_tokens);
    row.completion_tokens = tokens(r.usage.completion_tokens);
    row.total_tokens = tokens(r.usage.total_tokens);
    row.usage_source = serde_json::to_value(r.usage_source).ok().and_then(|v| v.as_str().map(str::to_owned));
    row.ttft_ms = r.ttft_ms.and_then(|v| i64::try_from(v).ok());
    row.client_disconnected = Some(r.client_disconnected);
    row.gateway_error = r.gateway_error;
    row.upstream_error = r.upstream_error;
    if row.status.is_none() && r.status != 0 {
        row.status = Some(i64::from(r.status));
    }
}

/// The filter's record from the filter-state `Any` (a `BytesValue`; a `StringValue` or raw JSON
/// is accepted too).
pub fn usage_record(any: &Any) -> Option<UsageRecord> {
    let bytes = if any.type_url.ends_with("google.protobuf.BytesValue") {
        BytesValue::decode(any.value.as_slice()).ok()?.value
    } else if any.type_url.ends_with("google.protobuf.StringValue") {
        StringValue::decode(any.value.as_slice()).ok()?.value.into_bytes()
    } else {
        any.value.clone()
    };
    match serde_json::from_slice(&bytes) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable usage record in the access log");
            None
        }
    }
}

fn timestamp_ms(t: &Timestamp) -> i64 {
    t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000))
}

fn duration_ms(d: &Duration) -> i64 {
    d.seconds.saturating_mul(1000).saturating_add(i64::from(d.nanos / 1_000_000))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn upstream_host(common: &AccessLogCommon) -> Option<String> {
    let address = common.upstream_remote_address.as_ref()?.address.as_ref()?;
    let address::Address::SocketAddress(socket) = address else { return None };
    match socket.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(port)) => Some(format!("{}:{port}", socket.address)),
        _ => non_empty(&socket.address),
    }
}

/// Envoy's short response-flag codes for the flags set.
fn flag_codes(f: &ResponseFlags) -> Option<String> {
    let flags = [
        (f.upstream_connection_failure, "UF"),
        (f.upstream_retry_limit_exceeded, "URX"),
        (f.no_healthy_upstream, "UH"),
        (f.upstream_connection_termination, "UC"),
        (f.upstream_request_timeout, "UT"),
        (f.upstream_remote_reset, "UR"),
        (f.local_reset, "LR"),
        (f.no_route_found, "NR"),
        (f.no_cluster_found, "NC"),
        (f.upstream_overflow, "UO"),
        (f.downstream_connection_termination, "DC"),
        (f.downstream_remote_reset, "DR"),
        (f.stream_idle_timeout, "SI"),
        (f.duration_timeout, "DT"),
        (f.rate_limited, "RL"),
        (f.upstream_protocol_error, "UPE"),
        (f.downstream_protocol_error, "DPE"),
    ];
    let set: Vec<&str> = flags.iter().filter(|(on, _)| *on).map(|(_, code)| *code).collect();
    (!set.is_empty()).then(|| set.join(","))
}

#[cfg(test)]
mod tests;
