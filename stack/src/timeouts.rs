//! Shortened timeouts for fault tests: every request and stream timeout that the rendered Envoy
//! configuration sets is capped, so that a test can wait for it to fire. Only timeouts the
//! configuration already sets are changed (a timeout it leaves out keeps Envoy's default, and
//! `0s`, "disabled", stays disabled): what fires in a test is what the shipped configuration
//! would fire, sooner.

use std::time::Duration;

use anyhow::Result;
use serde_yaml::Value;

/// Keys whose duration is capped wherever they appear: the connection manager's request and
/// stream timeouts and a retry policy's.
const CAPPED: [&str; 5] = [
    "request_headers_timeout",
    "request_timeout",
    "stream_idle_timeout",
    "per_try_timeout",
    "per_try_idle_timeout",
];

/// Keys capped in a route action only (elsewhere an `idle_timeout` is a connection's, which a
/// fault test never waits for and which would only close the clients' idle connections).
const CAPPED_IN_ROUTE: [&str; 2] = ["timeout", "idle_timeout"];

/// `yaml` (an Envoy configuration) with every set, non-zero timeout of [`CAPPED`] and
/// [`CAPPED_IN_ROUTE`] at most `cap`.
pub fn cap_timeouts(yaml: &str, cap: Duration) -> Result<String> {
    let mut doc: Value = serde_yaml::from_str(yaml)?;
    cap_in(&mut doc, cap);
    Ok(serde_yaml::to_string(&doc)?)
}

fn cap_in(value: &mut Value, cap: Duration) {
    match value {
        Value::Mapping(map) => {
            // A route action names its cluster; its `timeout` is the upstream response timeout.
            let route_action = map.contains_key("cluster") || map.contains_key("cluster_header");
            for (key, item) in map.iter_mut() {
                let key = key.as_str().unwrap_or_default();
                if CAPPED.contains(&key) || (route_action && CAPPED_IN_ROUTE.contains(&key)) {
                    cap_duration(item, cap);
                } else {
                    cap_in(item, cap);
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|item| cap_in(item, cap)),
        _ => {}
    }
}

/// Caps a duration written as Envoy's JSON form (`"30s"`, `"0.5s"`); leaves `0s` and anything
/// else alone.
fn cap_duration(value: &mut Value, cap: Duration) {
    let seconds =
        value.as_str().and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse::<f64>().ok());
    if seconds.is_some_and(|s| s > cap.as_secs_f64()) {
        *value = Value::String(format!("{}s", cap.as_secs_f64()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          request_headers_timeout: 10s
          stream_idle_timeout: 300s
          common_http_protocol_options: { idle_timeout: 300s }
          route_config:
            virtual_hosts:
            - routes:
              - match: { prefix: "/v1/" }
                route: { cluster_header: x-c, timeout: 0s, idle_timeout: 120s }
              - match: { prefix: "/api/" }
                route: { cluster: cp, timeout: 15s, idle_timeout: 1.5s }
          access_log:
          - typed_config:
              common_config: { grpc_service: { envoy_grpc: { cluster_name: als }, timeout: 9s } }
              formatters: &f [ { name: a } ]
          - typed_config: { formatters: *f }
"#;

    fn capped() -> Value {
        serde_yaml::from_str(&cap_timeouts(YAML, Duration::from_secs(2)).unwrap()).unwrap()
    }

    #[test]
    fn set_timeouts_are_capped_and_disabled_ones_stay_disabled() {
        let doc = capped();
        let hcm = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["request_headers_timeout"], "2s");
        assert_eq!(hcm["stream_idle_timeout"], "2s");
        assert_eq!(
            hcm["common_http_protocol_options"]["idle_timeout"], "300s",
            "a connection's: kept"
        );
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["route"]["timeout"], "0s", "disabled stays disabled");
        assert_eq!(routes[0]["route"]["idle_timeout"], "2s");
        assert_eq!(routes[1]["route"]["timeout"], "2s");
        assert_eq!(routes[1]["route"]["idle_timeout"], "1.5s", "already shorter");
    }

    #[test]
    fn other_timeouts_and_aliases_are_kept() {
        let doc = capped();
        let logs = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["access_log"];
        assert_eq!(logs[0]["typed_config"]["common_config"]["grpc_service"]["timeout"], "9s");
        assert_eq!(logs[1]["typed_config"]["formatters"][0]["name"], "a");
    }
}
