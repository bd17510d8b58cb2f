//! A `host:port` the rendered configuration connects to: an IP address (an Envoy `STATIC`
//! cluster) or a host name resolved through DNS (`STRICT_DNS`), such as a docker-compose service.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Why a `host:port` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected HOST:PORT (a host name or IP address and a port number), got `{0}`")]
pub struct EndpointError(pub String);

/// A host (name or IP address, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// Whether the host is an IP address (no DNS needed).
    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }

    /// The Envoy cluster discovery type that reaches it.
    pub fn cluster_type(&self) -> &'static str {
        if self.is_ip() {
            "STATIC"
        } else {
            "STRICT_DNS"
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint { host: addr.ip().to_string(), port: addr.port() }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(addr.into());
        }
        let bad = || EndpointError(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let valid = !host.is_empty()
            && !host.starts_with(['-', '.'])
            && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !valid {
            return Err(bad());
        }
        Ok(Endpoint { host: host.to_owned(), port })
    }
}
