//! The client's address behind trusted reverse proxies (`[server] trusted_proxies`).
//!
//! Without trusted proxies, the client is the TCP peer. When the peer is a trusted proxy, the
//! client is the right-most address of `X-Forwarded-For` (all such headers, in order) that is
//! not itself a trusted proxy: every proxy appends the address it received the request from, so
//! the entries right of that one were written by trusted proxies and the ones left of it by
//! the client, who can write anything. A request whose chain holds only trusted proxies comes
//! from the left-most of them; an entry that is not an IP address ends the walk (the last
//! address read stands). `X-Forwarded-For` from an untrusted peer is ignored.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The trusted proxies' networks.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An entry of `server.trusted_proxies` that is neither an address nor a CIDR network.
#[derive(Debug, thiserror::Error)]
#[error("server.trusted_proxies[{index}] ({value:?}) is not an IP address or CIDR network (e.g. 10.0.0.0/8, 2001:db8::/32, 192.0.2.7)")]
pub struct BadProxy {
    /// Its position in the list.
    pub index: usize,
    /// As written.
    pub value: String,
    /// Why it did not parse.
    #[source]
    pub source: ipnet::AddrParseError,
}

impl TrustedProxies {
    /// Parses `server.trusted_proxies`: CIDR networks, or single addresses.
    pub fn parse(list: &[String]) -> Result<Self, BadProxy> {
        list.iter()
            .enumerate()
            .map(|(index, value)| {
                let text = value.trim();
                text.parse::<IpNet>()
                    .or_else(|e| text.parse::<IpAddr>().map(IpNet::from).map_err(|_| e))
                    .map(|net| net.trunc())
                    .map_err(|source| BadProxy {
                        index,
                        value: value.clone(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `address` is a trusted proxy.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            // A header that is not visible ASCII carries no address openum could use.
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for entry in entries.iter().rev() {
            let Some(address) = parse_entry(entry) else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:5000`,
/// `[2001:db8::1]:5000`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_right_most_untrusted_forwarded_address_is_the_client() {
        let proxies = TrustedProxies::parse(&[
            "10.0.0.0/8".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
        ])
        .unwrap();
        let proxy = ip("10.1.2.3");
        // The client wrote a fake entry first; the proxies appended the real ones.
        let h = headers(&["6.6.6.6, 198.51.100.9", "10.9.9.9"]);
        assert_eq!(proxies.client(proxy, &h), ip("198.51.100.9"));
        // From an untrusted peer the header is ignored.
        assert_eq!(proxies.client(ip("203.0.113.5"), &h), ip("203.0.113.5"));
        // Only trusted entries: the left-most of them.
        assert_eq!(
            proxies.client(proxy, &headers(&["10.0.0.5, 192.0.2.7"])),
            ip("10.0.0.5")
        );
        // No header: the proxy itself.
        assert_eq!(proxies.client(proxy, &HeaderMap::new()), proxy);
        // Garbage ends the walk at the last address read.
        assert_eq!(
            proxies.client(proxy, &headers(&["198.51.100.1, unknown, 10.0.0.6"])),
            ip("10.0.0.6")
        );
        // Ports and IPv4-mapped peers.
        assert_eq!(
            proxies.client(ip("::ffff:10.1.2.3"), &headers(&["[2001:db9::1]:4711"])),
            ip("2001:db9::1")
        );
        assert_eq!(
            proxies.client(ip("2001:db8::1"), &headers(&["198.51.100.2:80"])),
            ip("198.51.100.2")
        );
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("127.0.0.1"), &headers(&["198.51.100.9"])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_its_index() {
        let error =
            TrustedProxies::parse(&["10.0.0.0/8".into(), "10.0.0.0/33".into()]).unwrap_err();
        assert_eq!(error.index, 1);
        assert!(
            error.to_string().contains("server.trusted_proxies[1]"),
            "{error}"
        );
    }
}
