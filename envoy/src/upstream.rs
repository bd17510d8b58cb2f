//! Model upstreams as users give them (`NAME=URL`, URL a vLLM base such as
//! `http://127.0.0.1:8000`), and the Envoy cluster that serves each.

use std::str::FromStr;

/// Why a `NAME=URL` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Not `NAME=URL`.
    #[error("expected NAME=URL, got `{0}`")]
    NotNameUrl(String),
    /// The URL is not `http(s)://host[:port]`.
    #[error("model `{model}`: {why} (expected a vLLM base URL such as http://127.0.0.1:8000)")]
    BadUrl {
        /// The model.
        model: String,
        /// What is wrong.
        why: String,
    },
}

/// A vLLM server's base address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Whether to speak TLS to it.
    pub tls: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// One `--model NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUpstream {
    /// The model name clients send.
    pub name: String,
    /// Where it is served.
    pub upstream: Upstream,
}

impl FromStr for ModelUpstream {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, url) =
            s.split_once('=').ok_or_else(|| UpstreamError::NotNameUrl(s.to_owned()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(UpstreamError::NotNameUrl(s.to_owned()));
        }
        let bad = |why: &str| UpstreamError::BadUrl { model: name.to_owned(), why: why.to_owned() };
        let url = url.trim();
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("the URL must start with http:// or https://"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') || authority.contains('?') || authority.contains('@') {
            return Err(bad(
                "only scheme, host and port are allowed; request paths are kept as sent",
            ));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| bad("the port is not a number"))?;
        let valid_host = !host.is_empty()
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !valid_host {
            return Err(bad("the host is empty or has characters a host name cannot have"));
        }
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        Ok(ModelUpstream {
            name: name.to_owned(),
            upstream: Upstream { tls, host: host.to_owned(), port },
        })
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        return match rest.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// The YAML of the Envoy cluster named `name` that serves `upstream`.
pub(crate) fn cluster_yaml(name: &str, upstream: &Upstream) -> String {
    let is_ip = upstream.host.parse::<std::net::IpAddr>().is_ok();
    let kind = if is_ip { "STATIC" } else { "STRICT_DNS" };
    let tls = if upstream.tls {
        format!(
            "    transport_socket:\n      name: envoy.transport_sockets.tls\n      typed_config:\n        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext\n        sni: {}\n",
            upstream.host
        )
    } else {
        String::new()
    };
    format!(
        "  - name: {name}\n    type: {kind}\n    connect_timeout: 2s\n{tls}    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: \"{}\", port_value: {} }}\n",
        upstream.host, upstream.port
    )
}
