//! Envoy's access-log messages as the sink reads them off the wire: `StreamAccessLogsMessage`
//! (`envoy.service.accesslog.v3`) with only the fields a row is made from, under the same field
//! numbers. prost skips every other field without keeping it (Envoy sends many: addresses,
//! timings, TLS, headers), maps are read as the lists of entries they are on the wire (no
//! hashing), and the filter state's bytes stay slices of the received message (no copy). A test
//! holds these to `envoy-types`' full messages.

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::data::accesslog::v3::ResponseFlags;
use envoy_types::pb::google::protobuf::{Duration, Timestamp, UInt32Value};

/// One message of the stream; only HTTP entries are read (TCP entries are skipped).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogsMessage {
    /// `http_logs`, of the `log_entries` oneof.
    #[prost(message, optional, tag = "2")]
    pub http_logs: Option<HttpEntries>,
}

/// `HTTPAccessLogEntries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpEntries {
    /// The entries, one per request.
    #[prost(message, repeated, tag = "1")]
    pub log_entry: Vec<HttpEntry>,
}

/// `HTTPAccessLogEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpEntry {
    /// `common_properties`.
    #[prost(message, optional, tag = "1")]
    pub common: Option<Common>,
    /// `request`.
    #[prost(message, optional, tag = "3")]
    pub request: Option<Request>,
    /// `response`.
    #[prost(message, optional, tag = "4")]
    pub response: Option<Response>,
}

/// `AccessLogCommon`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Common {
    /// The client's address (names an entry that has no request id).
    #[prost(message, optional, tag = "2")]
    pub downstream_remote_address: Option<Address>,
    /// When the request started.
    #[prost(message, optional, tag = "5")]
    pub start_time: Option<Timestamp>,
    /// The upstream host.
    #[prost(message, optional, tag = "13")]
    pub upstream_remote_address: Option<Address>,
    /// The cluster routed to.
    #[prost(string, tag = "15")]
    pub upstream_cluster: String,
    /// Envoy's response flags.
    #[prost(message, optional, tag = "16")]
    pub response_flags: Option<ResponseFlags>,
    /// `filter_state_objects` (a `map<string, Any>`): the filter's record is one of them.
    #[prost(message, repeated, tag = "21")]
    pub filter_state_objects: Vec<FilterState>,
    /// The request's total duration.
    #[prost(message, optional, tag = "23")]
    pub duration: Option<Duration>,
    /// Envoy's id of the stream (names an entry without an address or request id).
    #[prost(string, tag = "26")]
    pub stream_id: String,
}

/// One entry of `filter_state_objects`: a key and its `google.protobuf.Any`, unpacked.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FilterState {
    /// The filter-state key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

/// `google.protobuf.Any`, its type and bytes kept as slices of the message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    /// `type_url`.
    #[prost(bytes = "bytes", tag = "1")]
    pub type_url: Bytes,
    /// `value`.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Bytes,
}

/// `google.protobuf.BytesValue` or `StringValue` (both have their content in field 1).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WrappedBytes {
    /// `value`.
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
}

/// `HTTPRequestProperties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// `request_method` (an `envoy.config.core.v3.RequestMethod`).
    #[prost(int32, tag = "1")]
    pub request_method: i32,
    /// The path as the client sent it.
    #[prost(string, tag = "5")]
    pub path: String,
    /// Envoy's request id (`x-request-id`, which Envoy makes).
    #[prost(string, tag = "9")]
    pub request_id: String,
    /// `request_headers` (a `map<string, string>`): the headers the logger was told to log.
    #[prost(message, repeated, tag = "13")]
    pub request_headers: Vec<Header>,
}

/// One entry of a `map<string, string>` of headers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// The header's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `HTTPResponseProperties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// The status the client got.
    #[prost(message, optional, tag = "1")]
    pub response_code: Option<UInt32Value>,
    /// The response body's size.
    #[prost(uint64, tag = "3")]
    pub response_body_bytes: u64,
}
