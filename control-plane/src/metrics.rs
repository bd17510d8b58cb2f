//! The control plane's own Prometheus metrics, kept in atomics and rendered by hand in the text
//! exposition format (`GET /metrics`): access-log ingestion from the gRPC stream (rows received,
//! written, ignored as repeats, lost; batch write latency; queue depth) and from the durable file
//! log (rows read, rows the stream had not delivered, unparseable lines, lag, rotations),
//! retention, refused access-log streams and flagged rows, login throttling, vLLM scrapes for
//! reconciliation, the filter's state feed (builds, deltas, long
//! polls, credential lookups), the limits' lease calls, and API requests by route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use vllm_gateway_filter::feed::limits::{LeaseAsk, LeaseGrant, LimitKind};

/// Upper bounds (seconds) of the batch-latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Every metric of the process. Shared as an `Arc` by the API, the sink and the writer.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Access-log rows handed over by the gRPC sink.
    pub rows_received: AtomicU64,
    /// Rows written as new.
    pub rows_written: AtomicU64,
    /// Rows ignored because their request id was already stored.
    pub rows_duplicate: AtomicU64,
    /// Rows given up after every retry failed.
    pub rows_lost: AtomicU64,
    /// New rows (from either path) whose token counts could not be true, stored corrected and
    /// flagged.
    pub rows_flagged: AtomicU64,
    /// Access-log streams refused for want of the state token.
    pub als_streams_refused: AtomicU64,
    /// Rows queued for the writer (or waiting to be), not written yet.
    pub queue_depth: AtomicI64,
    /// Rows deleted by retention.
    pub rows_pruned: AtomicU64,
    /// Rows read from the durable file log (each line that made a row).
    pub file_rows_read: AtomicU64,
    /// Rows from the file log that were new: the gRPC stream had not delivered them (dropped).
    pub file_rows_inserted: AtomicU64,
    /// Lines of the file log that could not be read as a request, skipped.
    pub file_lines_unparseable: AtomicU64,
    /// Bytes of the file log (live and rotated file) not ingested yet.
    pub file_lag_bytes: AtomicI64,
    /// Rotations of the file log done by the control plane.
    pub file_rotations: AtomicU64,
    /// Scrapes of an upstream's `/metrics` that gave samples.
    pub upstream_scrapes_ok: AtomicU64,
    /// Scrapes of an upstream's `/metrics` that failed or had no series for the model.
    pub upstream_scrapes_failed: AtomicU64,
    /// The state feed and the filter's lookups.
    pub feed: FeedMetrics,
    /// The limits' lease calls.
    pub limits: LimitMetrics,
    /// Logins answered 429 because the account had failed too often.
    pub login_throttled_account: AtomicU64,
    /// Logins answered 429 because their client address had failed too often.
    pub login_throttled_address: AtomicU64,
    /// Logins answered 429 because too many password checks were running and waiting.
    pub login_throttled_busy: AtomicU64,
    batch_latency: Histogram,
    requests: Mutex<BTreeMap<RequestLabels, u64>>,
}

/// What the filter asks of the control plane: whole states, long polls, single credentials.
#[derive(Debug, Default)]
pub struct FeedMetrics {
    /// Whole states built (at most one per state version).
    pub builds: AtomicU64,
    /// How long the last build took, microseconds.
    pub last_build_micros: AtomicU64,
    /// Pulls answered with a delta.
    pub deltas: AtomicU64,
    /// Pulls that asked for a delta and got the whole state (another epoch, a version ahead,
    /// or changes pruned from the log).
    pub delta_fallbacks: AtomicU64,
    /// How long the last delta build took, microseconds.
    pub last_delta_micros: AtomicU64,
    /// Long polls held now.
    pub long_polls_waiting: AtomicI64,
    /// Long polls answered with a new state.
    pub long_polls_changed: AtomicU64,
    /// Long polls answered 304 because their time was up.
    pub long_polls_timed_out: AtomicU64,
    /// Long polls answered 304 at once: too many held already, or shutting down.
    pub long_polls_refused: AtomicU64,
    /// Lookups of an API key hash that found a live key.
    pub key_lookups_found: AtomicU64,
    /// Lookups of an API key hash that found none.
    pub key_lookups_absent: AtomicU64,
    /// Lookups of a user id that found the user.
    pub user_lookups_found: AtomicU64,
    /// Lookups of a user id that found none.
    pub user_lookups_absent: AtomicU64,
}

impl FeedMetrics {
    fn render(&self, out: &mut String) {
        let name = "gateway_state_feed_builds_total";
        header(out, name, "Whole filter states built (one per state version).", "counter");
        let _ = writeln!(out, "{name} {}", self.builds.load(Relaxed));
        let name = "gateway_state_feed_last_build_seconds";
        header(out, name, "How long the last whole-state build took.", "gauge");
        let _ = writeln!(out, "{name} {}", self.last_build_micros.load(Relaxed) as f64 / 1e6);
        let name = "gateway_state_feed_deltas_total";
        header(
            out,
            name,
            "State pulls answered with a delta (what changed since the puller's version).",
            "counter",
        );
        let _ = writeln!(out, "{name} {}", self.deltas.load(Relaxed));
        let name = "gateway_state_feed_delta_fallbacks_total";
        header(out, name, "State pulls that asked for a delta and got the whole state (another epoch, a version ahead, or changes pruned from the log).", "counter");
        let _ = writeln!(out, "{name} {}", self.delta_fallbacks.load(Relaxed));
        let name = "gateway_state_feed_last_delta_seconds";
        header(out, name, "How long the last delta build took.", "gauge");
        let _ = writeln!(out, "{name} {}", self.last_delta_micros.load(Relaxed) as f64 / 1e6);
        let name = "gateway_state_long_polls_waiting";
        header(out, name, "State-feed long polls held now.", "gauge");
        let _ = writeln!(out, "{name} {}", self.long_polls_waiting.load(Relaxed).max(0));
        let name = "gateway_state_long_polls_total";
        header(out, name, "State-feed long polls by outcome: a new state, time up, or refused at once (too many held, or shutting down).", "counter");
        let outcomes = [
            ("changed", &self.long_polls_changed),
            ("timeout", &self.long_polls_timed_out),
            ("refused", &self.long_polls_refused),
        ];
        for (result, n) in outcomes {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", n.load(Relaxed));
        }
        let name = "gateway_credential_lookups_total";
        header(
            out,
            name,
            "Single-credential lookups by the filter (/internal/lookup), by kind and result.",
            "counter",
        );
        let lookups = [
            ("key", "found", &self.key_lookups_found),
            ("key", "absent", &self.key_lookups_absent),
            ("user", "found", &self.user_lookups_found),
            ("user", "absent", &self.user_lookups_absent),
        ];
        for (kind, result, n) in lookups {
            let _ =
                writeln!(out, "{name}{{kind=\"{kind}\",result=\"{result}\"}} {}", n.load(Relaxed));
        }
    }
}

/// The limits' lease calls (`POST /internal/limits/lease`), per limit kind (in the order of
/// [`LimitKind::ALL`]).
#[derive(Debug, Default)]
pub struct LimitMetrics {
    /// Lease calls answered.
    pub leases: AtomicU64,
    granted: [AtomicU64; 5],
    charged: [AtomicU64; 5],
    given_back: [AtomicU64; 5],
    short: [AtomicU64; 5],
}

impl LimitMetrics {
    /// Counts one ask and its grant.
    pub fn count(&self, ask: &LeaseAsk, grant: &LeaseGrant) {
        let Some(i) = LimitKind::ALL.iter().position(|k| *k == ask.key.kind) else { return };
        self.granted[i].fetch_add(grant.granted, Relaxed);
        self.charged[i].fetch_add(ask.charge, Relaxed);
        self.given_back[i].fetch_add(ask.give_back, Relaxed);
        if grant.granted < ask.take {
            self.short[i].fetch_add(1, Relaxed);
        }
    }

    fn render(&self, out: &mut String) {
        let name = "gateway_limit_leases_total";
        header(
            out,
            name,
            "Lease calls of the Envoys answered (POST /internal/limits/lease).",
            "counter",
        );
        let _ = writeln!(out, "{name} {}", self.leases.load(Relaxed));
        let families = [
            ("gateway_limit_units_granted_total", "Units of limits leased out to Envoys, by limit kind (requests, tokens or concurrency slots).", &self.granted),
            ("gateway_limit_units_charged_total", "Units charged beyond a lease (replies that overran their grant), by limit kind.", &self.charged),
            ("gateway_limit_units_given_back_total", "Units leased and not spent, given back by Envoys, by limit kind.", &self.given_back),
            ("gateway_limit_asks_short_total", "Asks granted less than they took: the limit's window is (nearly) used up, by limit kind.", &self.short),
        ];
        for (name, help, values) in families {
            header(out, name, help, "counter");
            for (kind, n) in LimitKind::ALL.iter().zip(values) {
                let _ = writeln!(out, "{name}{{kind=\"{}\"}} {}", kind.name(), n.load(Relaxed));
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestLabels {
    method: String,
    route: String,
    class: &'static str,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Metrics {
    /// Records how long one batch write took.
    pub fn observe_batch(&self, took: Duration) {
        let h = &self.batch_latency;
        let secs = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound) {
            h.buckets[i].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Counts one API request: `route` is the matched route template (`/api/apps/{id}`).
    pub fn count_request(&self, method: &str, route: &str, status: u16) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let labels = RequestLabels { method: method.to_owned(), route: route.to_owned(), class };
        let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests.entry(labels).or_default() += 1;
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counters = [
            ("gateway_access_log_rows_received_total", "Access-log rows received from Envoy.", &self.rows_received),
            ("gateway_access_log_rows_written_total", "Access-log rows written as new rows.", &self.rows_written),
            ("gateway_access_log_rows_duplicate_total", "Access-log rows ignored as repeats of a stored request id.", &self.rows_duplicate),
            ("gateway_access_log_rows_lost_total", "Access-log rows given up after every write retry failed.", &self.rows_lost),
            ("gateway_access_log_rows_pruned_total", "Access-log rows deleted by retention.", &self.rows_pruned),
            ("gateway_access_log_rows_flagged_total", "New access-log rows whose token counts cannot be true (negative, absurd or inconsistent), stored corrected and flagged.", &self.rows_flagged),
            ("gateway_als_streams_refused_total", "Access-log gRPC streams refused: no or a wrong state token in their authorization metadata.", &self.als_streams_refused),
            ("gateway_access_log_file_rows_read_total", "Access-log rows read from the durable file log.", &self.file_rows_read),
            ("gateway_access_log_file_rows_inserted_total", "Rows first recorded from the file log: entries the gRPC stream dropped (or delivered later than the file).", &self.file_rows_inserted),
            ("gateway_access_log_file_lines_unparseable_total", "Lines of the file log that are no request record, skipped.", &self.file_lines_unparseable),
            ("gateway_access_log_file_rotations_total", "Rotations of the file log (live file renamed to .1, Envoy told to reopen).", &self.file_rotations),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        let gauges = [
            (
                "gateway_access_log_queue_depth",
                "Access-log rows waiting for the writer.",
                &self.queue_depth,
            ),
            (
                "gateway_access_log_file_lag_bytes",
                "Bytes of the file log (live and rotated file) not ingested yet.",
                &self.file_lag_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {}", value.load(Relaxed).max(0));
        }
        let name = "gateway_upstream_scrapes_total";
        header(
            &mut out,
            name,
            "Scrapes of an upstream's /metrics for reconciliation, by result.",
            "counter",
        );
        let _ = writeln!(out, "{name}{{result=\"ok\"}} {}", self.upstream_scrapes_ok.load(Relaxed));
        let _ = writeln!(
            out,
            "{name}{{result=\"error\"}} {}",
            self.upstream_scrapes_failed.load(Relaxed)
        );
        let name = "gateway_login_throttled_total";
        header(&mut out, name, "Logins answered 429 at once: the account or the client address failed too often, or too many password checks were running and waiting.", "counter");
        let scopes = [
            ("account", &self.login_throttled_account),
            ("address", &self.login_throttled_address),
            ("busy", &self.login_throttled_busy),
        ];
        for (scope, n) in scopes {
            let _ = writeln!(out, "{name}{{scope=\"{scope}\"}} {}", n.load(Relaxed));
        }
        self.feed.render(&mut out);
        self.limits.render(&mut out);
        self.render_latency(&mut out);
        self.render_requests(&mut out);
        out
    }

    fn render_latency(&self, out: &mut String) {
        let name = "gateway_access_log_batch_write_seconds";
        header(out, name, "Time to write one access-log batch (one transaction).", "histogram");
        let h = &self.batch_latency;
        let mut cumulative = 0;
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
            cumulative += bucket.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = h.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", h.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }

    fn render_requests(&self, out: &mut String) {
        let name = "gateway_api_requests_total";
        header(out, name, "HTTP API requests by method, route and status class.", "counter");
        let requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (l, n) in requests.iter() {
            let (method, route) = (escape(&l.method), escape(&l.route));
            let _ = writeln!(
                out,
                "{name}{{method=\"{method}\",route=\"{route}\",status=\"{}\"}} {n}",
                l.class
            );
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_requests() {
        let m = Metrics::default();
        m.rows_received.fetch_add(3, Relaxed);
        m.queue_depth.fetch_add(2, Relaxed);
        m.observe_batch(Duration::from_millis(3));
        m.observe_batch(Duration::from_secs(60));
        m.count_request("GET", "/api/apps/{id}", 404);
        m.count_request("GET", "/api/apps/{id}", 404);
        m.count_request("POST", "/api/\"x\"", 201);
        let text = m.render();
        for line in [
            "gateway_access_log_rows_received_total 3",
            "gateway_access_log_queue_depth 2",
            "gateway_access_log_batch_write_seconds_bucket{le=\"0.0025\"} 0",
            "gateway_access_log_batch_write_seconds_bucket{le=\"0.005\"} 1",
            "gateway_access_log_batch_write_seconds_bucket{le=\"5\"} 1",
            "gateway_access_log_batch_write_seconds_bucket{le=\"+Inf\"} 2",
            "gateway_access_log_batch_write_seconds_count 2",
            "gateway_api_requests_total{method=\"GET\",route=\"/api/apps/{id}\",status=\"4xx\"} 2",
            "gateway_api_requests_total{method=\"POST\",route=\"/api/\\\"x\\\"\",status=\"2xx\"} 1",
            "# TYPE gateway_access_log_batch_write_seconds histogram",
            "gateway_access_log_file_rows_inserted_total 0",
            "gateway_access_log_file_lag_bytes 0",
            "gateway_upstream_scrapes_total{result=\"error\"} 0",
            "gateway_credential_lookups_total{kind=\"key\",result=\"absent\"} 0",
            "gateway_state_long_polls_total{result=\"timeout\"} 0",
            "gateway_state_long_polls_waiting 0",
            "gateway_state_feed_deltas_total 0",
            "gateway_state_feed_delta_fallbacks_total 0",
            "gateway_login_throttled_total{scope=\"busy\"} 0",
            "gateway_als_streams_refused_total 0",
            "gateway_access_log_rows_flagged_total 0",
            "# TYPE gateway_state_feed_last_delta_seconds gauge",
            "gateway_limit_leases_total 0",
            "gateway_limit_units_granted_total{kind=\"tokens_per_day\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
