//! Locating a gateway given by host name (RFC 3263 §4), with hickory-resolver.
//!
//! - an IP address is used as it is (port: the given one, else 5060, or 5061 over TLS);
//! - a name with a port: its A/AAAA records, at that port;
//! - a name without a port: NAPTR records offering the gateway's transport (`SIP+D2U` for UDP,
//!   `SIP+D2T` for TCP, `SIPS+D2T` for TLS — a `sips:` URI or `transport = "tls"`) point at
//!   SRV names, in order/preference order; without such NAPTRs, the SRV records
//!   `_sip._udp.<name>` (or `_sip._tcp.`, or `_sips._tcp.` over TLS); each SRV target's A/AAAA
//!   records, in priority order with weighted random order within a priority (RFC 2782);
//!   without SRV records, the name's own A/AAAA records at 5060 (5061 over TLS).
//!
//! Over TLS the certificate is checked against the gateway's configured host, never an SRV
//! target's name (see [`crate::tls`]).
//!
//! The addresses come back in the order a call tries them; a call that gets no answer or a
//! failover response from one moves on to the next (see [`crate::gateways`]).

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::Rng;

use crate::gateways::split_host_port;
use crate::settings::Transport;

/// Why a gateway host could not be located.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The resolver could not be set up (no usable /etc/resolv.conf).
    #[error("no DNS resolver")]
    Setup(#[source] ResolveError),
    /// The host text is not `host[:port]`.
    #[error("invalid gateway host {0}")]
    Host(String),
    /// Every address the host resolved to is one the SIP listener cannot send to.
    #[error(
        "gateway host {host} resolves to {target}, which sip.listen {local} cannot reach ({why})"
    )]
    Unreachable {
        /// The host name.
        host: String,
        /// The last address it resolved to.
        target: SocketAddr,
        /// The SIP listener's address.
        local: IpAddr,
        /// Why not.
        why: &'static str,
    },
    /// The lookups found no address.
    #[error("cannot resolve gateway host {host}")]
    Lookup {
        /// The host name.
        host: String,
        /// The last lookup's error.
        #[source]
        source: ResolveError,
    },
}

/// The resolver gateways are located with.
#[derive(Clone)]
pub struct Resolver {
    inner: Result<TokioResolver, std::sync::Arc<ResolveError>>,
}

impl Resolver {
    /// Asks `servers` (UDP then TCP), or the system's resolvers (/etc/resolv.conf) when empty.
    /// A system configuration that cannot be read is reported on every lookup, not here: a
    /// node whose gateways are all given by address needs none.
    pub fn new(servers: &[SocketAddr]) -> Self {
        let inner = if servers.is_empty() {
            TokioResolver::builder_tokio().map(|b| b.build())
        } else {
            let mut config = ResolverConfig::new();
            for server in servers {
                config.add_name_server(NameServerConfig::new(*server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(*server, Protocol::Tcp));
            }
            Ok(
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                    .build(),
            )
        };
        Self {
            inner: inner.map_err(std::sync::Arc::new),
        }
    }

    /// The addresses of `host_port` (`host`, `host:port`, `[v6]:port`) for `transport`, in the
    /// order to try them.
    pub async fn locate(
        &self,
        host_port: &str,
        transport: Transport,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        let (host, port) = split_host_port(host_port).map_err(DnsError::Host)?;
        let default_port = default_port(transport);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port.unwrap_or(default_port))]);
        }
        let resolver = self
            .inner
            .as_ref()
            .map_err(|e| DnsError::Setup((**e).clone()))?;
        let lookup_error = |source| DnsError::Lookup {
            host: host.clone(),
            source,
        };
        if let Some(port) = port {
            return addresses(resolver, &host, port).await.map_err(lookup_error);
        }
        let mut srv_names = naptr_services(resolver, &host, transport).await;
        if srv_names.is_empty() {
            let service = match transport {
                Transport::Udp => "_sip._udp",
                Transport::Tcp => "_sip._tcp",
                Transport::Tls => "_sips._tcp",
            };
            srv_names.push(format!("{service}.{host}"));
        }
        let mut found = Vec::new();
        for name in &srv_names {
            let Ok(srv) = resolver.srv_lookup(name.as_str()).await else {
                continue;
            };
            let mut records: Vec<(u16, u16, u16, String)> = srv
                .iter()
                .map(|r| (r.priority(), r.weight(), r.port(), r.target().to_utf8()))
                .collect();
            // A single "." target means the service is not offered here (RFC 2782).
            records.retain(|r| r.3 != ".");
            let ordered = srv_order(records, &mut rand::thread_rng());
            for (target, port) in ordered {
                match addresses(resolver, target.trim_end_matches('.'), port).await {
                    Ok(addrs) => found.extend(addrs),
                    Err(error) => {
                        tracing::warn!(srv = %name, %target, error = %error, "SRV target does not resolve");
                    }
                }
            }
            if !found.is_empty() {
                return Ok(found);
            }
        }
        addresses(resolver, &host, default_port)
            .await
            .map_err(lookup_error)
    }
}

/// RFC 3263 §4.2: 5060, or 5061 over TLS.
fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Udp | Transport::Tcp => 5060,
        Transport::Tls => 5061,
    }
}

/// The SRV names of `host`'s NAPTR records offering `transport`, in order/preference order.
async fn naptr_services(resolver: &TokioResolver, host: &str, transport: Transport) -> Vec<String> {
    let service = match transport {
        Transport::Udp => "SIP+D2U",
        Transport::Tcp => "SIP+D2T",
        Transport::Tls => "SIPS+D2T",
    };
    let Ok(lookup) = resolver.lookup(host, RecordType::NAPTR).await else {
        return Vec::new();
    };
    let mut records: Vec<(u16, u16, String)> = lookup
        .iter()
        .filter_map(|rdata| match rdata {
            RData::NAPTR(n)
                if n.flags().eq_ignore_ascii_case(b"s")
                    && n.services().eq_ignore_ascii_case(service.as_bytes()) =>
            {
                Some((n.order(), n.preference(), n.replacement().to_utf8()))
            }
            _ => None,
        })
        .collect();
    records.sort_by_key(|r| (r.0, r.1));
    records
        .into_iter()
        .map(|r| r.2.trim_end_matches('.').to_owned())
        .collect()
}

async fn addresses(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let ips = resolver.lookup_ip(host).await?;
    Ok(ips.iter().map(|ip| SocketAddr::new(ip, port)).collect())
}

/// SRV records `(priority, weight, port, target)` in the order RFC 2782 tries them: by
/// priority, then a weighted random order (weight 0 last) within a priority.
pub fn srv_order(
    mut records: Vec<(u16, u16, u16, String)>,
    rng: &mut impl Rng,
) -> Vec<(String, u16)> {
    records.sort_by_key(|r| r.0);
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let end = rest
            .iter()
            .position(|r| r.0 != first.0)
            .unwrap_or(rest.len());
        let (class, tail) = rest.split_at(end);
        rest = tail;
        let (mut weighted, zero): (Vec<_>, Vec<_>) = class.iter().cloned().partition(|r| r.1 > 0);
        while !weighted.is_empty() {
            let total: u32 = weighted.iter().map(|r| u32::from(r.1)).sum();
            let mut pick = rng.gen_range(0..total);
            let index = weighted
                .iter()
                .position(|r| {
                    if pick < u32::from(r.1) {
                        true
                    } else {
                        pick -= u32::from(r.1);
                        false
                    }
                })
                .unwrap_or(0);
            let r = weighted.remove(index);
            ordered.push((r.3, r.2));
        }
        ordered.extend(zero.into_iter().map(|r| (r.3, r.2)));
    }
    ordered
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn srv_records_go_by_priority_then_weight() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let records = vec![
            (20, 1, 5062, "backup.".to_owned()),
            (10, 0, 5061, "spare.".to_owned()),
            (10, 5, 5060, "main.".to_owned()),
        ];
        assert_eq!(
            srv_order(records, &mut rng),
            [
                ("main.".to_owned(), 5060),
                ("spare.".to_owned(), 5061),
                ("backup.".to_owned(), 5062)
            ]
        );
    }

    #[tokio::test]
    async fn addresses_need_no_lookup() {
        let resolver = Resolver::new(&[]);
        assert_eq!(
            resolver.locate("127.0.0.2", Transport::Udp).await.unwrap(),
            [SocketAddr::from(([127, 0, 0, 2], 5060))]
        );
        assert_eq!(
            resolver.locate("[::1]:5070", Transport::Udp).await.unwrap(),
            ["[::1]:5070".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolver.locate("127.0.0.2", Transport::Tls).await.unwrap(),
            [SocketAddr::from(([127, 0, 0, 2], 5061))],
            "RFC 3263 §4.2: TLS defaults to 5061"
        );
    }
}
