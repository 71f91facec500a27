//! What the runtime needs to know about the SIP side: its own listener and the gateway calls go
//! through. These are the runtime's types; the server maps its configuration file onto them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use call_engine::sdes::SrtpPolicy;

/// The local SIP user agent.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SipSettings {
    /// Address for SIP over UDP and TCP.
    pub listen: SocketAddr,
    /// The address gateways reach this node at (Via, Contact, default From); default `listen`.
    pub public_address: Option<SocketAddr>,
    /// Local address RTP is sent from and advertised in SDP.
    pub rtp_address: IpAddr,
    /// RFC 3261 T1 in milliseconds (Timer B = 64·T1).
    pub t1_ms: u64,
    /// The User-Agent header.
    pub user_agent: String,
    /// RTP ports to use (inclusive; even ports are taken); `None`: any free port.
    pub rtp_port_range: Option<(u16, u16)>,
    /// The address advertised in SDP when it differs from `rtp_address` (behind a NAT).
    pub media_public_address: Option<IpAddr>,
    /// DNS servers gateway host names are resolved with; empty: the system's (resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// A socket pair per call, or per media scheduler shard (see [`crate::media`]).
    pub rtp_sockets: crate::media::RtpSockets,
}

/// SIP transport to a gateway.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// TLS over TCP (RFC 3261 §26); see [`TlsSettings`].
    Tls,
}

/// TLS to a gateway (`transport = "tls"` or a `sips:` URI).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct TlsSettings {
    /// PEM file of the CA certificates the gateway's certificate must chain to; default: the
    /// system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// The gateway calls are placed through.
#[derive(Clone, Eq, PartialEq)]
pub struct GatewaySettings {
    /// For logs and metrics.
    pub name: String,
    /// Request-URI template; `{number}` is replaced by the dialled number.
    pub uri: String,
    /// Where to send requests (`host:port`); default: the URI's host and port.
    pub address: Option<String>,
    /// Transport.
    pub transport: Transport,
    /// The From URI; default `sip:openum@<local address>`.
    pub from: Option<String>,
    /// The From display name.
    pub display_name: String,
    /// Digest credentials for 401/407: (username, password).
    pub credentials: Option<(String, String)>,
    /// How long to let the callee ring, in seconds.
    pub ring_timeout_secs: u64,
    /// Calls in progress through this gateway.
    pub max_concurrent_calls: usize,
    /// New calls per second (a burst of this many is allowed).
    pub calls_per_second: u32,
    /// Extra INVITE headers as (name, value).
    pub headers: Vec<(String, String)>,
    /// Whether calls may use it.
    pub enabled: bool,
    /// The group dial-plan rules route to; calls are tried on the group's gateways in
    /// [`GatewaySettings::priority`] order.
    pub group: String,
    /// Lower is tried first.
    pub priority: u32,
    /// Share of calls among gateways of equal priority (0: only when the others failed).
    pub weight: u32,
    /// Final responses after which the call moves on to the group's next gateway (besides no
    /// response at all and a transport failure, which always do), unless a provisional response
    /// other than 100 already arrived.
    pub failover_codes: Vec<u16>,
    /// OPTIONS pings that mark the gateway up or down; `None`: never pinged, always up.
    pub options: Option<OptionsPing>,
    /// Outbound registration (RFC 3261 §10) the gateway requires before it takes calls.
    pub register: Option<RegisterSettings>,
    /// TLS settings (used when the transport is TLS).
    pub tls: TlsSettings,
    /// SRTP for the call's media.
    pub srtp: SrtpPolicy,
}

impl GatewaySettings {
    /// Whether signalling to this gateway runs over TLS: `transport = tls` or a `sips:` URI
    /// (RFC 3261 §26.2.2: a SIPS URI is reached over TLS).
    pub fn uses_tls(&self) -> bool {
        self.transport == Transport::Tls || self.uri.starts_with("sips:")
    }
}

/// A gateway's outbound registration.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegisterSettings {
    /// The registrar's URI (the REGISTER's Request-URI; the AoR is `sip:<username>@<its host>`).
    pub registrar: String,
    /// The registration lifetime asked for, in seconds.
    pub expires_secs: u32,
    /// How long a new call waits for the first registration to complete.
    pub call_wait: std::time::Duration,
}

/// A gateway's OPTIONS pings.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct OptionsPing {
    /// Time between two pings.
    pub interval: std::time::Duration,
    /// Unanswered (or 5xx-answered) pings in a row that mark an up gateway down.
    pub down_after: u32,
    /// Answered pings in a row that mark a down gateway up.
    pub up_after: u32,
}

/// Credentials never reach logs: the password is redacted.
impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("name", &self.name)
            .field("uri", &self.uri)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("from", &self.from)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("ring_timeout_secs", &self.ring_timeout_secs)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("calls_per_second", &self.calls_per_second)
            .field("enabled", &self.enabled)
            .field("group", &self.group)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("failover_codes", &self.failover_codes)
            .field("options", &self.options)
            .field("register", &self.register)
            .field("tls", &self.tls)
            .field("srtp", &self.srtp)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_gateway_password() {
        let gateway = GatewaySettings {
            name: "pbx".into(),
            uri: "sip:{number}@pbx".into(),
            address: None,
            transport: Transport::Udp,
            from: None,
            display_name: "Voice Mail".into(),
            credentials: Some(("openum".into(), "hunter2".into())),
            ring_timeout_secs: 45,
            max_concurrent_calls: 1,
            calls_per_second: 1,
            headers: Vec::new(),
            enabled: true,
            group: "default".into(),
            priority: 0,
            weight: 1,
            failover_codes: vec![408, 503],
            options: None,
            register: None,
            tls: TlsSettings::default(),
            srtp: SrtpPolicy::Off,
        };
        let shown = format!("{gateway:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("openum"), "{shown}");
    }
}
