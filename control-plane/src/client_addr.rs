//! Which address a request comes from, for login throttling: the TCP peer, unless the peer is
//! a trusted proxy (loopback by default: Envoy beside the control plane) — then the address
//! that proxy put in `x-forwarded-for`. Envoy appends the peer it saw to the right of that
//! header, so the header is read from the right, past every trusted proxy: what a client wrote
//! into it (on the left) is never believed.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// The header proxies append the address they saw to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// A network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is no CIDR network (expected 10.0.0.0/8, fd00::/8 or an address)")]
pub struct BadCidr(String);

impl FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadCidr(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(bad)?,
            None => bits,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => same_prefix(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                same_prefix(u128::from(net), u128::from(a), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` (left-aligned) agree.
fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    prefix == 0 || (a ^ b) >> (128 - u32::from(prefix)) == 0
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The proxies whose `x-forwarded-for` is believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl Default for TrustedProxies {
    /// Loopback only: an Envoy on the same host (or in the same pod).
    fn default() -> Self {
        Self(vec![
            Cidr { network: IpAddr::from([127, 0, 0, 0]), prefix: 8 },
            Cidr { network: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), prefix: 128 },
        ])
    }
}

impl TrustedProxies {
    /// Exactly these networks (none: no proxy is trusted).
    pub fn new(networks: Vec<Cidr>) -> Self {
        Self(networks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// The client of a request from `peer` with `headers`: `peer` itself unless it is a trusted
    /// proxy; then the right-most address of `x-forwarded-for` that is not a trusted proxy (or
    /// the left-most, when all are). An unreadable entry stops the walk at the last address
    /// known good.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let forwarded = headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','));
        let hops: Vec<&str> = forwarded.collect();
        for hop in hops.iter().rev() {
            let Ok(address) = hop.trim().parse::<IpAddr>() else { break };
            client = canonical(address);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")) && !net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(
            v6.contains(ip("fd12::1"))
                && !v6.contains(ip("fe80::1"))
                && !v6.contains(ip("10.1.0.1"))
        );
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("192.0.2.7".parse::<Cidr>().unwrap().contains(ip("192.0.2.7")));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = TrustedProxies::default();
        assert_eq!(
            trusted.client(ip("203.0.113.5"), &forwarded(&["198.51.100.1"])),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::default();
        let peer = ip("127.0.0.1");
        // The client wrote "1.1.1.1" itself; Envoy appended the peer it saw.
        assert_eq!(trusted.client(peer, &forwarded(&["1.1.1.1, 203.0.113.9"])), ip("203.0.113.9"));
        assert_eq!(
            trusted.client(peer, &forwarded(&["1.1.1.1", "203.0.113.9"])),
            ip("203.0.113.9"),
            "several headers"
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.9, 127.0.0.1"])),
            ip("203.0.113.9"),
            "past a trusted hop"
        );
        assert_eq!(trusted.client(peer, &forwarded(&[])), peer, "no header: the proxy itself");
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.9, junk"])),
            peer,
            "unreadable: the last good address"
        );
        assert_eq!(trusted.client(ip("::1"), &forwarded(&["2001:db8::7"])), ip("2001:db8::7"));
        let none = TrustedProxies::new(Vec::new());
        assert_eq!(none.client(peer, &forwarded(&["203.0.113.9"])), peer);
    }
}
