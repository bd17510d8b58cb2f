//! Turning one Envoy HTTP access-log entry into the [`RequestFacts`] every access-log row is
//! made from: Envoy's own facts (request id, the client's `x-client-request-id`, method, path,
//! status, timings, upstream, response flags) plus the filter's usage record, carried in the
//! filter state `wasm.gw_usage`. Entries are read as [`wire`](super::wire) types.

use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address, RequestMethod};
use envoy_types::pb::envoy::data::accesslog::v3::ResponseFlags;
use envoy_types::pb::google::protobuf::{Duration, Timestamp};
use prost::Message;

use super::wire::{AnyValue, Common, HttpEntry, WrappedBytes};
use crate::request_facts::{self, RequestFacts, CLIENT_REQUEST_ID_HEADER};
use crate::store::logs::AccessLog;
use crate::usage_check::LoggedUsage;

/// The filter-state key the filter's record is logged under.
pub const USAGE_STATE_KEY: &str = vllm_gateway_filter::record::LOG_KEY;

/// The row for one entry (see [`request_facts::to_row`]).
pub fn to_row(entry: HttpEntry) -> AccessLog {
    request_facts::to_row(facts(entry))
}

/// The facts of one entry, moved out of it (nothing is copied but the fallback id and the
/// upstream address, which are made). Entries without a request id (a connection cut before
/// its headers were complete) get a stable id made from their start time and the client's
/// address and port ([`request_facts::fallback_request_id`], the same the file log makes), so a
/// replay still maps to the same row and two such connections never share one.
pub fn facts(entry: HttpEntry) -> RequestFacts {
    let common = entry.common.unwrap_or_default();
    let request = entry.request.unwrap_or_default();
    let response = entry.response.unwrap_or_default();
    let started_at_ms = common.start_time.as_ref().map_or(0, timestamp_ms);
    let request_id = if request.request_id.is_empty() {
        let peer = socket_text(common.downstream_remote_address.as_ref())
            .unwrap_or_else(|| common.stream_id.clone());
        request_facts::fallback_request_id(started_at_ms, &peer)
    } else {
        request.request_id
    };
    let client_request_id = request
        .request_headers
        .into_iter()
        .find(|header| header.name.eq_ignore_ascii_case(CLIENT_REQUEST_ID_HEADER))
        .map(|header| header.value);
    let method = RequestMethod::try_from(request.request_method)
        .ok()
        .filter(|m| *m != RequestMethod::MethodUnspecified)
        .map(|m| m.as_str_name().to_owned());
    RequestFacts {
        request_id,
        client_request_id,
        started_at_ms,
        method,
        path: Some(request.path),
        status: response.response_code.map(|c| i64::from(c.value)),
        duration_ms: common.duration.as_ref().map(duration_ms),
        upstream_host: socket_text(common.upstream_remote_address.as_ref()),
        response_flags: common.response_flags.as_ref().and_then(flag_codes),
        bytes_sent: i64::try_from(response.response_body_bytes).ok(),
        usage: usage_state(&common).and_then(usage_record),
        upstream_cluster: Some(common.upstream_cluster),
    }
}

/// The filter's record among the entry's filter state (the last one under its key, as a map
/// would keep it).
fn usage_state(common: &Common) -> Option<&AnyValue> {
    let key = USAGE_STATE_KEY.as_bytes();
    common.filter_state_objects.iter().rev().find(|state| state.key == key)?.value.as_ref()
}

/// The filter's record from the filter-state `Any` (a `BytesValue`; a `StringValue` or raw JSON
/// is accepted too).
pub fn usage_record(any: &AnyValue) -> Option<LoggedUsage> {
    let type_url = any.type_url.as_ref();
    let wrapped = type_url.ends_with(b"google.protobuf.BytesValue")
        || type_url.ends_with(b"google.protobuf.StringValue");
    let bytes = if wrapped {
        WrappedBytes::decode(any.value.clone()).ok()?.value
    } else {
        any.value.clone()
    };
    request_facts::parse_usage(&bytes)
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

/// An address as Envoy's access-log formatters write it: `ip:port`, `[ipv6]:port`.
fn socket_text(address: Option<&Address>) -> Option<String> {
    let address::Address::SocketAddress(socket) = address?.address.as_ref()? else { return None };
    let ip = if socket.address.contains(':') {
        format!("[{}]", socket.address)
    } else {
        socket.address.clone()
    };
    match socket.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(port)) => Some(format!("{ip}:{port}")),
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
