//! Configuration: one TOML file, every key optional, unknown keys refused by name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration could not be loaded; always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid for openum; the problem names the key.
    #[error("invalid config file {path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        #[source]
        problem: ConfigProblem,
    },
}

/// What is wrong with a configuration's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// Not TOML, an unknown key, or a value of the wrong type; toml names the key, line and
    /// column.
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// A value out of range or inconsistent with another.
    #[error("{0}")]
    Value(#[from] InvalidValue),
}

/// A key whose value openum cannot use, and what it must be.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("{key} {requirement}")]
pub struct InvalidValue {
    /// The key, as written in the file (`gateway[0].uri`).
    pub key: String,
    /// What its value must be, as the rest of a sentence after the key.
    pub requirement: String,
}

impl InvalidValue {
    /// `key` `requirement`.
    pub fn new(key: impl Into<String>, requirement: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            requirement: requirement.into(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: HTTP listener, limits, data directory.
    pub server: ServerConfig,
    /// `[ews]`: what the EWS endpoint reports and keeps.
    pub ews: EwsConfig,
    /// `[sip]`: the SIP user agent (used only when a gateway is configured).
    pub sip: SipConfig,
    /// `[[gateway]]`: SIP gateways (PBX, trunk, phone) calls are placed through. The first
    /// enabled one is used.
    #[serde(rename = "gateway")]
    pub gateways: Vec<GatewayConfig>,
    /// `[dialplan]`: which numbers users may dial, and how they are rewritten.
    pub dialplan: crate::dialplan::DialPlanConfig,
    /// `[store]`: where state lives.
    pub store: StoreConfig,
    /// `[admission]`: concurrency caps.
    pub admission: AdmissionConfig,
    /// `[client]`: defaults for `openum call/status/watch/hangup`.
    pub client: ClientConfig,
    /// `[mailbox]`: the Exchange/grommunio EWS server whose voice mail openum plays. Absent: only
    /// imported items play.
    pub mailbox: Option<MailboxConfig>,
    /// `[auth]`: throttling of failed logins.
    pub auth: AuthConfig,
    /// `[privacy]`: what call records keep of the numbers dialled.
    pub privacy: PrivacyConfig,
    /// `[voicemail]`: how long imported voice-mail items are kept.
    pub voicemail: VoicemailConfig,
    /// `[cluster]`: heartbeats and failure bounds when several nodes share PostgreSQL.
    pub cluster: ClusterConfig,
}

/// `[auth]`: failed logins are counted per client address and per user name; a key that fails
/// `max_failures` times is locked out (answered 401 without checking its credentials) for
/// `lockout_secs`, doubling with each further lockout up to `max_lockout_secs`. See
/// [`crate::throttle`].
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `max_failures`: failed logins of one address or user name before a lockout. Default 5.
    pub max_failures: u32,
    /// `failure_window_secs`: a key's failures are forgotten this long after its last one.
    /// Default 900.
    pub failure_window_secs: u64,
    /// `lockout_secs`: the first lockout. Default 60.
    pub lockout_secs: u64,
    /// `max_lockout_secs`: the longest lockout. Default 3600.
    pub max_lockout_secs: u64,
    /// `max_tracked`: addresses and user names tracked at once (memory bound; the ones that
    /// failed longest ago are forgotten first). Default 100000.
    pub max_tracked: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        let d = crate::throttle::ThrottleSettings::default();
        Self {
            max_failures: d.max_failures,
            failure_window_secs: d.failure_window.as_secs(),
            lockout_secs: d.lockout.as_secs(),
            max_lockout_secs: d.max_lockout.as_secs(),
            max_tracked: d.max_tracked,
        }
    }
}

impl From<&AuthConfig> for crate::throttle::ThrottleSettings {
    fn from(c: &AuthConfig) -> Self {
        Self {
            max_failures: c.max_failures,
            failure_window: std::time::Duration::from_secs(c.failure_window_secs),
            lockout: std::time::Duration::from_secs(c.lockout_secs),
            max_lockout: std::time::Duration::from_secs(c.max_lockout_secs),
            max_tracked: c.max_tracked,
        }
    }
}

/// `[privacy]`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// `store_dialled_numbers`: `"full"` (default) or `"masked"` — see
    /// [`crate::privacy::DialledNumbers`].
    pub store_dialled_numbers: crate::privacy::DialledNumbers,
}

/// `[voicemail]`.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VoicemailConfig {
    /// `retention_days`: imported items (row and audio file) older than this are deleted by the
    /// retention task. Default 0: kept until deleted with `openum voicemail delete`.
    pub retention_days: u64,
}

/// `[cluster]`: how nodes sharing PostgreSQL watch each other (unused with SQLite).
///
/// A node writes a heartbeat every `heartbeat_secs`. A node that has not managed to write one
/// for `fence_after_secs` hangs up its own calls (it may be cut off from the database, and its
/// peers are about to declare it dead); its peers close the calls of a node whose last heartbeat
/// is older than `dead_after_secs` as Disconnected/Other. `fence_after_secs` is shorter than
/// `dead_after_secs` so that a call is never reported Disconnected while its owner still plays it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `heartbeat_secs`: how often a node writes its heartbeat (and looks for dead peers).
    /// Default 2.
    pub heartbeat_secs: u64,
    /// `fence_after_secs`: a node whose heartbeat has not been written for this long hangs up
    /// its own calls. Default 6; at least twice `heartbeat_secs`.
    pub fence_after_secs: u64,
    /// `dead_after_secs`: a node whose heartbeat is older than this is dead; another node closes
    /// its live calls. Default 12; at least `fence_after_secs + heartbeat_secs`.
    pub dead_after_secs: u64,
    /// `hangup_wait_secs`: how long a node waits for another node to confirm a hang-up it
    /// forwarded before answering DisconnectPhoneCall with an error. Default 3.
    pub hangup_wait_secs: u64,
    /// `audio_cache_mb`: voice-mail audio read from PostgreSQL is kept on this node's disk
    /// (`<data_dir>/voicemail-cache/`) up to this size, least recently used evicted first.
    /// Default 256 (8 kHz 16-bit audio: ~1 MB per minute).
    pub audio_cache_mb: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 2,
            fence_after_secs: 6,
            dead_after_secs: 12,
            hangup_wait_secs: 3,
            audio_cache_mb: 256,
        }
    }
}

/// `store.postgres_sslmode`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum PgSslMode {
    /// Plain TCP (a database on the same host or a trusted network).
    #[default]
    Disable,
    /// TLS, the server's certificate checked against `postgres_ca_file` (or the system's roots)
    /// and its name against the URL's host — libpq's `verify-full`. openum has no unverified
    /// TLS mode.
    VerifyFull,
}

/// `[mailbox]`: the mailbox server. Its users log in to openum with their own credentials, which
/// openum passes through to it, so a user plays only what their mailbox lets them read.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// `ews_url`: the mailbox server's EWS endpoint, e.g.
    /// `https://mail.example.com/EWS/Exchange.asmx`. Required.
    pub ews_url: String,
    /// `ca_file`: a PEM file of extra trusted roots (a private CA); system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// `allow_plain_http`: allow an `http://` URL to a host other than loopback (credentials
    /// would cross the network in clear). Default false.
    pub allow_plain_http: bool,
    /// `timeout_secs`: bound on each request to the mailbox server. Default 8: a PlayOnPhone
    /// may make three (credential check, GetItem, GetAttachment), and all three must fit in
    /// `server.request_timeout_secs` so the client gets `ErrorMailboxStoreUnavailable`, not a
    /// bare HTTP 408.
    pub timeout_secs: u64,
    /// `max_attachment_mb`: the largest voice-message attachment fetched. Default 64 (10 minutes
    /// of 44.1 kHz stereo PCM WAV is ~100 MB; voice mail is 8–16 kHz mono, ~10–20 MB).
    pub max_attachment_mb: u64,
    /// `audio_cache_mb`: decoded audio kept in memory (8 kHz 16-bit: ~1 MB per minute).
    /// Default 256.
    pub audio_cache_mb: u64,
    /// `credential_cache_secs`: how long a mailbox login the server accepted is trusted without
    /// asking again (keyed by a digest of the header, never the secret). Default 60.
    pub credential_cache_secs: u64,
    /// `forward`: answer only the three UM operations and forward every other EWS and
    /// Autodiscover request to the mailbox server, so clients need only openum's URL. Default
    /// true.
    pub forward: bool,
    /// `public_url`: openum's own EWS URL as clients see it, e.g.
    /// `https://openum.example.com/EWS/Exchange.asmx`; forwarded Autodiscover answers name it
    /// instead of the mailbox server's EWS URL. Unset: Autodiscover answers pass unchanged.
    pub public_url: Option<String>,
    /// `max_forward_mb`: the largest forwarded request body. Default 100.
    pub max_forward_mb: u64,
    /// `forward_timeout_secs`: bound on a whole forwarded exchange (request, answer and its
    /// body). Default 120.
    pub forward_timeout_secs: u64,
    /// `max_forwarded_requests`: forwarded requests in flight before HTTP 503. Default 256.
    pub max_forwarded_requests: usize,
    /// `forward_pool_size`: idle connections to the mailbox server kept open. Default 32.
    pub forward_pool_size: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self {
            ews_url: String::new(),
            ca_file: None,
            allow_plain_http: false,
            timeout_secs: 8,
            max_attachment_mb: 64,
            audio_cache_mb: 256,
            credential_cache_secs: 60,
            forward: true,
            public_url: None,
            max_forward_mb: 100,
            forward_timeout_secs: 120,
            max_forwarded_requests: 256,
            forward_pool_size: 32,
        }
    }
}

impl MailboxConfig {
    fn validate(&self) -> Result<(), InvalidValue> {
        let url = self.ews_url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let host = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit_once('@')
            .map_or(
                rest.split(['/', '?', '#']).next().unwrap_or_default(),
                |(_, h)| h,
            );
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.split_once(']'))
            .map_or_else(|| host.split(':').next().unwrap_or_default(), |(h, _)| h);
        match scheme.to_ascii_lowercase().as_str() {
            _ if host.is_empty() => Err(InvalidValue::new(
                "mailbox.ews_url",
                format!("must be an http(s) URL of the EWS endpoint, got {url:?}"),
            )),
            "https" => Ok(()),
            "http" if self.allow_plain_http || is_loopback_host(host) => Ok(()),
            "http" => Err(InvalidValue::new(
                "mailbox.ews_url",
                "is plain http to another host: users' credentials would cross the network in clear; use https, or set mailbox.allow_plain_http = true",
            )),
            _ => Err(InvalidValue::new(
                "mailbox.ews_url",
                format!("must be an http(s) URL of the EWS endpoint, got {url:?}"),
            )),
        }?;
        for (key, value) in [
            ("mailbox.timeout_secs", self.timeout_secs),
            ("mailbox.max_attachment_mb", self.max_attachment_mb),
            ("mailbox.audio_cache_mb", self.audio_cache_mb),
            ("mailbox.max_forward_mb", self.max_forward_mb),
            ("mailbox.forward_timeout_secs", self.forward_timeout_secs),
            (
                "mailbox.max_forwarded_requests",
                self.max_forwarded_requests as u64,
            ),
        ] {
            if value == 0 {
                return Err(InvalidValue::new(key, "must be at least 1"));
            }
        }
        if let Some(public) = &self.public_url {
            let lower = public.trim().to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://"))
                || lower.len() <= "https://".len()
            {
                return Err(InvalidValue::new(
                    "mailbox.public_url",
                    format!("must be an http(s) URL of openum's EWS endpoint, got {public:?}"),
                ));
            }
        }
        Ok(())
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `[client]`: where and as whom the `openum` call commands talk EWS (flags and `OPENUM_URL`,
/// `OPENUM_USER`, `OPENUM_PASSWORD`, `OPENUM_TOKEN` take precedence).
#[derive(Clone, Default, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// `url`: the EWS endpoint.
    pub url: Option<String>,
    /// `user` for Basic authentication.
    pub user: Option<String>,
    /// `password` for Basic authentication.
    pub password: Option<String>,
    /// `token` for Bearer authentication.
    pub token: Option<String>,
    /// `ca_file`: a PEM file of extra trusted roots (a private CA), trusted besides the system's
    /// root store; `--ca-file` and `OPENUM_CA_FILE` take precedence.
    pub ca_file: Option<PathBuf>,
}

/// Credentials never reach logs.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `[admission]`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// `max_calls_per_user`: live calls one user may have (with PostgreSQL, on all nodes
    /// together). Default 3.
    pub max_calls_per_user: usize,
    /// `max_calls_per_node`: live calls on this node. Default 2000.
    pub max_calls_per_node: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_calls_per_user: 3,
            max_calls_per_node: 2000,
        }
    }
}

/// `[store]`.
#[derive(Clone, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres_url`: use PostgreSQL (`postgres://user:password@host:port/db`) instead of the
    /// embedded SQLite file, so that several nodes share calls. `OPENUM_POSTGRES_URL` overrides.
    pub postgres_url: Option<String>,
    /// `postgres_sslmode`: `disable` (default) or `verify-full` (TLS with rustls; the server's
    /// certificate and host name are checked).
    pub postgres_sslmode: PgSslMode,
    /// `postgres_ca_file`: a PEM file of the CA(s) that sign the PostgreSQL server's certificate;
    /// the system's roots otherwise.
    pub postgres_ca_file: Option<PathBuf>,
    /// `postgres_pool_size`: connections to PostgreSQL for queries (one more is kept for
    /// `LISTEN`). Default 16.
    pub postgres_pool_size: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            postgres_url: None,
            postgres_sslmode: PgSslMode::Disable,
            postgres_ca_file: None,
            postgres_pool_size: 16,
        }
    }
}

/// `[sip]`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// `listen`: address for SIP over UDP and TCP (Contact and Via use it). Default
    /// `127.0.0.1:5060`.
    pub listen: SocketAddr,
    /// `public_address`: the address gateways reach this node at (Via, Contact, default From),
    /// when `listen` is a wildcard or behind NAT. Default: `listen`.
    pub public_address: Option<SocketAddr>,
    /// `rtp_address`: local address RTP is sent from and advertised in SDP. Default `127.0.0.1`.
    pub rtp_address: std::net::IpAddr,
    /// `t1_ms`: RFC 3261 T1 (Timer B = 64·T1). Default 500.
    pub t1_ms: u64,
    /// `user_agent`: the User-Agent header. Default `openum/<version>`.
    pub user_agent: String,
    /// `rtp_port_range`: `"LOW-HIGH"`, the UDP ports RTP may use (an even one per call), for a
    /// firewall to open. Default: any free port.
    pub rtp_port_range: Option<String>,
    /// `media_public_address`: the address advertised in SDP when RTP reaches this node through
    /// a NAT (RTP is still bound to `rtp_address`). Default: `rtp_address`.
    pub media_public_address: Option<std::net::IpAddr>,
    /// `dns_servers`: DNS servers (`ip:port`) gateway host names are resolved with (RFC 3263:
    /// NAPTR, SRV, A/AAAA). Default empty: the system's, from /etc/resolv.conf.
    pub dns_servers: Vec<SocketAddr>,
    /// `rtp_sockets`: `per-call` (default: an RTP/RTCP socket pair per call) or `shared` (one
    /// pair per media scheduler shard, batched I/O; see README "Media sockets").
    pub rtp_sockets: RtpSocketsMode,
}

/// `[sip] rtp_sockets`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum RtpSocketsMode {
    /// A socket pair per call.
    #[default]
    PerCall,
    /// A socket pair per media scheduler shard.
    Shared,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            public_address: None,
            rtp_address: std::net::IpAddr::from([127, 0, 0, 1]),
            t1_ms: 500,
            user_agent: format!("openum/{}", env!("CARGO_PKG_VERSION")),
            rtp_port_range: None,
            media_public_address: None,
            dns_servers: Vec::new(),
            rtp_sockets: RtpSocketsMode::PerCall,
        }
    }
}

/// SIP transport to a gateway.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS (RFC 3261 §26); also implied by a `sips:` URI.
    Tls,
}

/// `srtp` of a `[[gateway]]`: whether the call's media is protected (RFC 3711, keyed by SDES).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP.
    #[default]
    Off,
    /// SRTP offered (`RTP/AVP` with `a=crypto`); plain RTP if the far end does not take it.
    Optional,
    /// SRTP or no call (`RTP/SAVP`).
    Mandatory,
}

/// One `[[gateway]]`.
#[derive(Clone, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// `name`: for logs and metrics.
    pub name: String,
    /// `uri`: the Request-URI template; `{number}` is replaced by the dialled number, e.g.
    /// `sip:{number}@pbx.example.com:5060`.
    pub uri: String,
    /// `address`: where to send requests (`host:port`); default: the URI's host and port.
    pub address: Option<String>,
    /// `transport`: `udp`, `tcp` or `tls`. Default `udp` (`tls` for a `sips:` URI).
    pub transport: SipTransport,
    /// `from`: the From URI. Default `sip:openum@<sip.listen>`.
    pub from: Option<String>,
    /// `display_name`: the From display name. Default `Voice Mail`.
    pub display_name: String,
    /// `username` for digest authentication (401/407).
    pub username: Option<String>,
    /// `password` for digest authentication.
    pub password: Option<String>,
    /// `ring_timeout_secs`: how long to let the callee ring. Default 45.
    pub ring_timeout_secs: u64,
    /// `max_concurrent_calls`: calls in progress through this gateway. Default 100.
    pub max_concurrent_calls: usize,
    /// `calls_per_second`: new calls per second through this gateway (a burst of this many is
    /// allowed). Default 10.
    pub calls_per_second: u32,
    /// `headers`: extra headers on every INVITE, as `"Name: value"` strings.
    pub headers: Vec<String>,
    /// `enabled`. Default true.
    pub enabled: bool,
    /// `group`: the gateway group dial-plan rules route to (`gateway_group` on a rule). Default
    /// `default`. Calls no rule routes go to the group of the first enabled gateway.
    pub group: String,
    /// `priority`: within a group, lower is tried first. Default: the gateway's position among
    /// the `[[gateway]]` tables (0, 1, 2 …), so gateways without one are tried in file order.
    pub priority: Option<u32>,
    /// `weight`: share of calls among gateways of equal priority; 0 is tried only after the
    /// others of its priority. Default 1.
    pub weight: u32,
    /// `failover_codes`: final responses (300-699) after which a call moves on to the group's
    /// next gateway, unless a provisional response other than 100 came first. No response at
    /// all (Timer B) and a transport failure always move on. Default `[408, 503]`.
    pub failover_codes: Vec<u16>,
    /// `options_interval_secs`: seconds between OPTIONS pings marking the gateway up or down;
    /// 0 (the default) sends none and the gateway counts as up.
    pub options_interval_secs: u64,
    /// `options_down_after`: unanswered pings in a row that mark the gateway down. Default 2.
    pub options_down_after: u32,
    /// `options_up_after`: answered pings in a row that mark a down gateway up again. Default 1.
    pub options_up_after: u32,
    /// `register`: register with the gateway (RFC 3261 §10) using `username`/`password`, and
    /// send calls through it only while registered. Default false.
    pub register: bool,
    /// `registrar`: the REGISTER's Request-URI. Default `sip:<host:port of uri>` (`sips:` for a `sips:` uri).
    pub registrar: Option<String>,
    /// `register_expires_secs`: the registration lifetime asked for. Default 600.
    pub register_expires_secs: u32,
    /// `register_wait_secs`: how long a new call waits for the first registration. Default 5.
    pub register_wait_secs: u64,
    /// `ca_file`: PEM CA certificates the gateway's TLS certificate must chain to. Default: the
    /// system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// `client_cert`: PEM certificate chain openum presents for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// `client_key`: PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// `srtp`: `off`, `optional` or `mandatory`. Default `off`.
    pub srtp: SrtpMode,
}

/// Credentials never reach logs: the password is redacted.
impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("name", &self.name)
            .field("uri", &self.uri)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ring_timeout_secs", &self.ring_timeout_secs)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("calls_per_second", &self.calls_per_second)
            .field("enabled", &self.enabled)
            .field("group", &self.group)
            .field("priority", &self.priority)
            .field("weight", &self.weight)
            .field("failover_codes", &self.failover_codes)
            .field("options_interval_secs", &self.options_interval_secs)
            .field("register", &self.register)
            .field("registrar", &self.registrar)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("srtp", &self.srtp)
            .finish_non_exhaustive()
    }
}

/// The URL may carry a password: only its host part is shown.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self
            .postgres_url
            .as_deref()
            .map(|u| u.rsplit_once('@').map_or("<redacted>", |(_, host)| host));
        f.debug_struct("StoreConfig")
            .field("postgres_url", &shown)
            .field("postgres_sslmode", &self.postgres_sslmode)
            .field("postgres_ca_file", &self.postgres_ca_file)
            .field("postgres_pool_size", &self.postgres_pool_size)
            .finish()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            uri: String::new(),
            address: None,
            transport: SipTransport::Udp,
            from: None,
            display_name: "Voice Mail".into(),
            username: None,
            password: None,
            ring_timeout_secs: 45,
            max_concurrent_calls: 100,
            calls_per_second: 10,
            headers: Vec::new(),
            enabled: true,
            group: "default".into(),
            priority: None,
            weight: 1,
            failover_codes: vec![408, 503],
            options_interval_secs: 0,
            options_down_after: 2,
            options_up_after: 1,
            register: false,
            registrar: None,
            register_expires_secs: 600,
            register_wait_secs: 5,
            ca_file: None,
            client_cert: None,
            client_key: None,
            srtp: SrtpMode::Off,
        }
    }
}

impl From<&SipConfig> for call_runtime::settings::SipSettings {
    fn from(c: &SipConfig) -> Self {
        Self {
            listen: c.listen,
            public_address: c.public_address,
            rtp_address: c.rtp_address,
            t1_ms: c.t1_ms,
            user_agent: c.user_agent.clone(),
            // Checked by `Config::validate`; an unreadable range never gets here.
            rtp_port_range: c
                .rtp_port_range
                .as_deref()
                .and_then(|r| call_runtime::ports::parse_port_range(r).ok()),
            media_public_address: c.media_public_address,
            dns_servers: c.dns_servers.clone(),
            rtp_sockets: match c.rtp_sockets {
                RtpSocketsMode::PerCall => call_runtime::media::RtpSockets::PerCall,
                RtpSocketsMode::Shared => call_runtime::media::RtpSockets::Shared,
            },
        }
    }
}

impl From<&GatewayConfig> for call_runtime::settings::GatewaySettings {
    fn from(g: &GatewayConfig) -> Self {
        use call_runtime::settings::Transport;
        Self {
            name: g.name.clone(),
            uri: g.uri.clone(),
            address: g.address.clone(),
            transport: match g.transport {
                SipTransport::Tcp => Transport::Tcp,
                SipTransport::Udp => Transport::Udp,
                SipTransport::Tls => Transport::Tls,
            },
            from: g.from.clone(),
            display_name: g.display_name.clone(),
            // Config::parse refuses one without the other.
            credentials: g.username.clone().zip(g.password.clone()),
            ring_timeout_secs: g.ring_timeout_secs,
            max_concurrent_calls: g.max_concurrent_calls,
            calls_per_second: g.calls_per_second,
            // Config::parse refuses a header without ':'.
            headers: g
                .headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .collect(),
            enabled: g.enabled,
            group: g.group.clone(),
            priority: g.priority.unwrap_or(0),
            weight: g.weight,
            failover_codes: g.failover_codes.clone(),
            options: (g.options_interval_secs > 0).then(|| call_runtime::settings::OptionsPing {
                interval: std::time::Duration::from_secs(g.options_interval_secs),
                down_after: g.options_down_after,
                up_after: g.options_up_after,
            }),
            register: g
                .register
                .then(|| call_runtime::settings::RegisterSettings {
                    // A sips: gateway registers over TLS with a sips: registrar.
                    registrar: g.registrar.clone().unwrap_or_else(|| {
                        format!(
                            "{}:{}",
                            if g.uri.starts_with("sips:") {
                                "sips"
                            } else {
                                "sip"
                            },
                            call_runtime::gateways::uri_host_port(&g.uri.replace("{number}", ""))
                        )
                    }),
                    expires_secs: g.register_expires_secs,
                    call_wait: std::time::Duration::from_secs(g.register_wait_secs),
                }),
            tls: call_runtime::settings::TlsSettings {
                ca_file: g.ca_file.clone(),
                client_cert: g.client_cert.clone(),
                client_key: g.client_key.clone(),
            },
            srtp: match g.srtp {
                SrtpMode::Off => call_runtime::settings::SrtpPolicy::Off,
                SrtpMode::Optional => call_runtime::settings::SrtpPolicy::Optional,
                SrtpMode::Mandatory => call_runtime::settings::SrtpPolicy::Mandatory,
            },
        }
    }
}

impl GatewayConfig {
    /// Whether signalling runs over TLS: `transport = "tls"` or a `sips:` URI.
    pub fn uses_tls(&self) -> bool {
        self.transport == SipTransport::Tls || self.uri.starts_with("sips:")
    }

    /// The TLS keys of `[[gateway]]` number `i`: consistent with the transport, and naming
    /// files that can be read.
    fn validate_tls(&self, i: usize) -> Result<(), InvalidValue> {
        if self.uri.starts_with("sips:") && self.transport == SipTransport::Tcp {
            return Err(InvalidValue::new(
                format!("gateway[{i}].transport"),
                "must be \"tls\" (or left out) for a sips: URI: SIPS runs over TLS",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(InvalidValue::new(
                format!("gateway[{i}].client_cert"),
                format!("and gateway[{i}].client_key must be given together"),
            ));
        }
        for (key, path) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            let Some(path) = path else { continue };
            if !self.uses_tls() {
                return Err(InvalidValue::new(
                    format!("gateway[{i}].{key}"),
                    "is only used with transport = \"tls\" or a sips: URI",
                ));
            }
            if let Err(error) = std::fs::File::open(path) {
                return Err(InvalidValue::new(
                    format!("gateway[{i}].{key}"),
                    format!("names {} which cannot be read: {error}", path.display()),
                ));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The gateway calls go through: the first enabled one.
    pub fn active_gateway(&self) -> Option<&GatewayConfig> {
        self.gateways.iter().find(|g| g.enabled)
    }

    /// Every enabled gateway as the runtime takes it, in file order; a gateway without a
    /// `priority` gets its position among the `[[gateway]]` tables.
    pub fn gateway_settings(&self) -> Vec<call_runtime::settings::GatewaySettings> {
        self.gateways
            .iter()
            .enumerate()
            .filter(|(_, g)| g.enabled)
            .map(|(i, g)| {
                let mut settings = call_runtime::settings::GatewaySettings::from(g);
                settings.priority = g
                    .priority
                    .unwrap_or_else(|| u32::try_from(i).unwrap_or(u32::MAX));
                settings
            })
            .collect()
    }
}

/// `[server]`.
#[derive(Clone, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `listen`: address and port of the HTTP endpoint. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `data_dir`: where the SQLite database lives. Default `openum-data`.
    pub data_dir: PathBuf,
    /// `node_name`: this node's name in PhoneCallIds. Default: the host name.
    pub node_name: Option<String>,
    /// `max_body_bytes`: request body cap; larger requests get HTTP 413. Default 65536.
    pub max_body_bytes: usize,
    /// `header_read_timeout_secs`: time allowed to send the request headers. Default 10.
    pub header_read_timeout_secs: u64,
    /// `request_timeout_secs`: time allowed for a whole request. Default 30.
    pub request_timeout_secs: u64,
    /// `max_concurrent_requests`: EWS requests in flight before `ErrorServerBusy`. Default 512.
    pub max_concurrent_requests: usize,
    /// `max_xml_depth`: deepest element nesting accepted in a request. Default 32.
    pub max_xml_depth: usize,
    /// `tls_cert`: PEM file of the server certificate, then its intermediates (full chain).
    /// With `tls_key`, the endpoint speaks HTTPS only. Re-read on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key`: PEM file of the certificate's private key (PKCS#8, RSA or EC).
    pub tls_key: Option<PathBuf>,
    /// `allow_plain_http`: serve Basic credentials over plain HTTP on an address other than
    /// loopback (e.g. behind a TLS-terminating proxy on a private network). Default false.
    pub allow_plain_http: bool,
    /// `metrics_listen`: serve `/metrics` (and `/healthz`, `/readyz`) on this address instead;
    /// the main listener then answers 404 for `/metrics`. Default: on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// `metrics_token`: require `Authorization: Bearer <token>` on `/metrics`. Default: none.
    pub metrics_token: Option<String>,
    /// `trusted_proxies`: reverse proxies (addresses or CIDR networks) whose
    /// `X-Forwarded-For` is believed: the client is the right-most untrusted address in it
    /// (logs, login throttling). Default none: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
}

/// The metrics token never reaches logs.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("node_name", &self.node_name)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_xml_depth", &self.max_xml_depth)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("allow_plain_http", &self.allow_plain_http)
            .field("metrics_listen", &self.metrics_listen)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl ServerConfig {
    /// The certificate and key files, when TLS is configured (validation refuses one without
    /// the other).
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        self.tls_cert.as_deref().zip(self.tls_key.as_deref())
    }

    /// Refuses plain HTTP on `listen` (the effective listen address: `--listen` or
    /// `server.listen`) when it is not loopback, unless TLS is configured or
    /// `server.allow_plain_http` is set: every login would cross the network in clear.
    pub fn check_plain_http(&self, listen: SocketAddr) -> Result<(), InvalidValue> {
        if self.tls_files().is_some() || self.allow_plain_http || listen.ip().is_loopback() {
            return Ok(());
        }
        Err(InvalidValue::new(
            "server.allow_plain_http",
            format!(
                "is false, and {listen} is not a loopback address: Basic credentials would cross the network in clear over plain HTTP; set server.tls_cert and server.tls_key, listen on loopback behind a TLS-terminating proxy, or set server.allow_plain_http = true"
            ),
        ))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("openum-data"),
            node_name: None,
            max_body_bytes: 64 * 1024,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            max_concurrent_requests: 512,
            max_xml_depth: 32,
            tls_cert: None,
            tls_key: None,
            allow_plain_http: false,
            metrics_listen: None,
            metrics_token: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[ews]`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EwsConfig {
    /// `call_retention_hours`: how long finished calls stay queryable. Default 24.
    pub call_retention_hours: u64,
    /// `[ews.server_version]`: the `ServerVersionInfo` header.
    pub server_version: ServerVersionConfig,
    /// `history_retention_days`: ended calls older than this are deleted from the store (call
    /// history, dialled numbers included). Default 90; 0 keeps them forever.
    pub history_retention_days: u64,
}

impl Default for EwsConfig {
    fn default() -> Self {
        Self {
            call_retention_hours: 24,
            server_version: ServerVersionConfig::default(),
            history_retention_days: 90,
        }
    }
}

/// `[ews.server_version]`; defaults per decisions §3 (15.1.2507.6, `V2017_07_11`).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerVersionConfig {
    /// `major_version`.
    pub major_version: i32,
    /// `minor_version`.
    pub minor_version: i32,
    /// `major_build_number`.
    pub major_build_number: i32,
    /// `minor_build_number`.
    pub minor_build_number: i32,
    /// `version`.
    pub version: String,
}

impl Default for ServerVersionConfig {
    fn default() -> Self {
        let d = ews_proto::ServerVersionInfo::default();
        Self {
            major_version: d.major_version,
            minor_version: d.minor_version,
            major_build_number: d.major_build_number,
            minor_build_number: d.minor_build_number,
            version: d.version,
        }
    }
}

impl From<&ServerVersionConfig> for ews_proto::ServerVersionInfo {
    fn from(c: &ServerVersionConfig) -> Self {
        Self {
            major_version: c.major_version,
            minor_version: c.minor_version,
            major_build_number: c.major_build_number,
            minor_build_number: c.minor_build_number,
            version: c.version.clone(),
        }
    }
}

impl Config {
    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|problem| ConfigError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// Parses TOML text (errors name key, line and column).
    pub fn parse(text: &str) -> Result<Self, ConfigProblem> {
        let config: Self = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types cannot: ranges and keys that depend on each other.
    fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |key: &str, requirement: &str| Err(InvalidValue::new(key, requirement));
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes", "must be at least 1024");
        }
        if self.server.max_xml_depth < 8 {
            return bad("server.max_xml_depth", "must be at least 8");
        }
        if self.server.max_concurrent_requests == 0 {
            return bad("server.max_concurrent_requests", "must be at least 1");
        }
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                return bad(
                    "server.tls_key",
                    "is missing: server.tls_cert is set, and TLS needs both (or neither)",
                )
            }
            (None, Some(_)) => {
                return bad(
                    "server.tls_cert",
                    "is missing: server.tls_key is set, and TLS needs both (or neither)",
                )
            }
            _ => {}
        }
        if self
            .server
            .metrics_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return bad("server.metrics_token", "must not be empty");
        }
        crate::dialplan::DialPlan::new(self.dialplan.clone())?;
        if let Err(error) =
            crate::client_address::TrustedProxies::parse(&self.server.trusted_proxies)
        {
            return Err(InvalidValue::new(
                format!("server.trusted_proxies[{}]", error.index),
                format!(
                    "({:?}) must be an IP address or CIDR network (e.g. 10.0.0.0/8): {}",
                    error.value, error.source
                ),
            ));
        }
        for (key, value) in [
            ("auth.max_failures", u64::from(self.auth.max_failures)),
            ("auth.failure_window_secs", self.auth.failure_window_secs),
            ("auth.lockout_secs", self.auth.lockout_secs),
            ("auth.max_tracked", self.auth.max_tracked as u64),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.auth.max_lockout_secs < self.auth.lockout_secs {
            return bad(
                "auth.max_lockout_secs",
                "must be at least auth.lockout_secs",
            );
        }
        const CENTURY_DAYS: u64 = 36_500;
        if self.ews.history_retention_days > CENTURY_DAYS {
            return bad(
                "ews.history_retention_days",
                "must be at most 36500 (0 keeps call history forever)",
            );
        }
        if self.voicemail.retention_days > CENTURY_DAYS {
            return bad(
                "voicemail.retention_days",
                "must be at most 36500 (0 keeps voice mail forever)",
            );
        }
        if self.ews.history_retention_days > 0
            && self.ews.history_retention_days.saturating_mul(24) < self.ews.call_retention_hours
        {
            return Err(InvalidValue::new(
                "ews.history_retention_days",
                format!(
                    "({} days) must cover ews.call_retention_hours ({} h): calls are deleted only after clients stop asking about them",
                    self.ews.history_retention_days, self.ews.call_retention_hours
                ),
            ));
        }
        if self.admission.max_calls_per_user == 0 {
            return bad("admission.max_calls_per_user", "must be at least 1");
        }
        if self.admission.max_calls_per_node == 0 {
            return bad("admission.max_calls_per_node", "must be at least 1");
        }
        self.cluster.validate()?;
        if self.store.postgres_pool_size == 0 {
            return bad("store.postgres_pool_size", "must be at least 1");
        }
        if self.sip.listen.ip().is_unspecified() && self.sip.public_address.is_none() {
            return Err(InvalidValue::new(
                "sip.listen",
                format!(
                    "is {} (every interface): set sip.public_address to the address gateways reach this node at",
                    self.sip.listen
                ),
            ));
        }
        if self
            .sip
            .public_address
            .is_some_and(|a| a.ip().is_unspecified())
        {
            return bad(
                "sip.public_address",
                "must be a concrete address, not a wildcard",
            );
        }
        if self.sip.rtp_address.is_unspecified() {
            return bad(
                "sip.rtp_address",
                "must be a concrete address: it is advertised in SDP",
            );
        }
        if let Some(range) = &self.sip.rtp_port_range {
            if let Err(reason) = call_runtime::ports::parse_port_range(range) {
                return Err(InvalidValue::new("sip.rtp_port_range", reason));
            }
        }
        if self
            .sip
            .media_public_address
            .is_some_and(|a| a.is_unspecified())
        {
            return bad(
                "sip.media_public_address",
                "must be a concrete address: it is advertised in SDP",
            );
        }
        if let Some(mailbox) = &self.mailbox {
            mailbox.validate()?;
            if mailbox.timeout_secs.saturating_mul(3) >= self.server.request_timeout_secs {
                return Err(InvalidValue::new(
                    "mailbox.timeout_secs",
                    format!(
                        "({}) times three must be below server.request_timeout_secs ({}): a PlayOnPhone may wait for three requests to the mailbox server",
                        mailbox.timeout_secs, self.server.request_timeout_secs
                    ),
                ));
            }
        }
        for (i, g) in self.gateways.iter().enumerate() {
            if !(g.uri.starts_with("sip:") || g.uri.starts_with("sips:"))
                || !g.uri.contains("{number}")
            {
                return Err(InvalidValue::new(
                    format!("gateway[{i}].uri"),
                    format!(
                        "must be a sip: or sips: URI containing {{number}}, got {:?}",
                        g.uri
                    ),
                ));
            }
            g.validate_tls(i)?;
            if g.username.is_some() != g.password.is_some() {
                return Err(InvalidValue::new(
                    format!("gateway[{i}].username"),
                    format!("and gateway[{i}].password must be given together"),
                ));
            }
            if let Some(h) = g.headers.iter().find(|h| !h.contains(':')) {
                return Err(InvalidValue::new(
                    format!("gateway[{i}].headers"),
                    format!("entry {h:?} is not \"Name: value\""),
                ));
            }
            crate::gateways::validate(i, g, &self.sip)?;
            for (key, value) in [
                ("ring_timeout_secs", g.ring_timeout_secs),
                ("max_concurrent_calls", g.max_concurrent_calls as u64),
                ("calls_per_second", u64::from(g.calls_per_second)),
            ] {
                if value == 0 {
                    return Err(InvalidValue::new(
                        format!("gateway[{i}].{key}"),
                        "must be at least 1",
                    ));
                }
            }
        }
        crate::gateways::validate_routes(self)?;
        Ok(())
    }

    /// The PostgreSQL connection settings of `[store]` (the URL aside).
    pub fn postgres_options(&self) -> crate::store::PgOptions {
        crate::store::PgOptions {
            sslmode: self.store.postgres_sslmode,
            ca_file: self.store.postgres_ca_file.clone(),
            pool_size: self.store.postgres_pool_size,
            hangup_wait: std::time::Duration::from_secs(self.cluster.hangup_wait_secs),
        }
    }

    /// This node's name: configured, else the host name, else `openum`.
    pub fn node_name(&self) -> String {
        self.server
            .node_name
            .clone()
            // No readable /etc/hostname: the documented fallback name applies.
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "openum".into())
    }
}

impl ClusterConfig {
    fn validate(&self) -> Result<(), InvalidValue> {
        if self.heartbeat_secs == 0 {
            return Err(InvalidValue::new(
                "cluster.heartbeat_secs",
                "must be at least 1",
            ));
        }
        if self.hangup_wait_secs == 0 {
            return Err(InvalidValue::new(
                "cluster.hangup_wait_secs",
                "must be at least 1",
            ));
        }
        if self.fence_after_secs < 2 * self.heartbeat_secs {
            return Err(InvalidValue::new(
                "cluster.fence_after_secs",
                format!(
                    "({}) must be at least twice cluster.heartbeat_secs ({}): one slow heartbeat must not make a node hang up its calls",
                    self.fence_after_secs, self.heartbeat_secs
                ),
            ));
        }
        if self.dead_after_secs < self.fence_after_secs + self.heartbeat_secs {
            return Err(InvalidValue::new(
                "cluster.dead_after_secs",
                format!(
                    "({}) must be at least cluster.fence_after_secs + cluster.heartbeat_secs ({}): a node cut off from the database must hang up its calls before its peers declare them Disconnected",
                    self.dead_after_secs,
                    self.fence_after_secs + self.heartbeat_secs
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_bounds_that_allow_split_brain_are_refused_naming_the_key() {
        let problem = Config::parse("[cluster]\nfence_after_secs = 12\ndead_after_secs = 12\n")
            .unwrap_err()
            .to_string();
        assert!(problem.contains("cluster.dead_after_secs"), "{problem}");
        let problem = Config::parse("[cluster]\nheartbeat_secs = 4\n")
            .unwrap_err()
            .to_string();
        assert!(problem.contains("cluster.fence_after_secs"), "{problem}");
        let problem = Config::parse("[store]\npostgres_sslmode = \"require\"\n")
            .unwrap_err()
            .to_string();
        assert!(problem.contains("postgres_sslmode"), "{problem}");
    }

    #[test]
    fn rtp_sockets_is_per_call_or_shared_and_a_bad_value_is_named() {
        let config = Config::parse("[sip]\nrtp_sockets = \"shared\"\n").unwrap();
        let settings = call_runtime::settings::SipSettings::from(&config.sip);
        assert_eq!(
            settings.rtp_sockets,
            call_runtime::media::RtpSockets::Shared
        );
        let config = Config::parse("[sip]\nrtp_sockets = \"per-call\"\n").unwrap();
        assert_eq!(config.sip.rtp_sockets, RtpSocketsMode::PerCall);
        let err = Config::parse("[sip]\nrtp_sockets = \"pooled\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rtp_sockets"), "{err}");
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = include_str!("../../../contrib/openum.example.toml");
        assert_eq!(Config::parse(example).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:9\"\nmax_body = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_body"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::parse("[ews]\ncall_retention_hours = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("call_retention_hours"), "{err}");
    }

    #[test]
    fn gateways_parse_and_bad_ones_are_named() {
        let c = Config::parse(
            "[[gateway]]\nuri = \"sip:{number}@127.0.0.1:5070\"\ntransport = \"tcp\"\n",
        )
        .unwrap();
        let g = c.active_gateway().unwrap();
        assert_eq!((g.transport, g.ring_timeout_secs), (SipTransport::Tcp, 45));
        let err = Config::parse("[[gateway]]\nuri = \"tel:123\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway[0].uri"), "{err}");
        let err = Config::parse("[[gateway]]\nuri = \"sip:{number}@x\"\ntransport = \"sctp\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("transport"), "{err}");
    }

    #[test]
    fn tls_and_srtp_keys_parse_and_mistakes_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let c = Config::parse(&format!(
            "[[gateway]]\nuri = \"sips:{{number}}@sbc.example.com\"\nca_file = {:?}\nsrtp = \"mandatory\"\n",
            ca.display().to_string()
        ))
        .unwrap();
        let g = c.active_gateway().unwrap();
        assert!(g.uses_tls());
        assert_eq!(g.srtp, SrtpMode::Mandatory);
        let settings = call_runtime::settings::GatewaySettings::from(g);
        assert!(settings.uses_tls());
        assert_eq!(settings.tls.ca_file.as_deref(), Some(ca.as_path()));
        assert_eq!(settings.srtp, call_runtime::settings::SrtpPolicy::Mandatory);
        let missing = dir.path().join("missing.pem");
        for (text, key) in [
            (
                format!(
                    "[[gateway]]\nuri = \"sip:{{number}}@x\"\ntransport = \"tls\"\nca_file = {:?}\n",
                    missing.display().to_string()
                ),
                "gateway[0].ca_file",
            ),
            (
                format!(
                    "[[gateway]]\nuri = \"sip:{{number}}@x\"\nca_file = {:?}\n",
                    ca.display().to_string()
                ),
                "gateway[0].ca_file",
            ),
            (
                format!(
                    "[[gateway]]\nuri = \"sip:{{number}}@x\"\ntransport = \"tls\"\nclient_cert = {:?}\n",
                    ca.display().to_string()
                ),
                "gateway[0].client_cert",
            ),
            (
                "[[gateway]]\nuri = \"sips:{number}@x\"\ntransport = \"tcp\"\n".to_owned(),
                "gateway[0].transport",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@x\"\nsrtp = \"always\"\n".to_owned(),
                "srtp",
            ),
        ] {
            let err = Config::parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = Config::parse(&format!(
            "[[gateway]]\nuri = \"sips:{{number}}@x\"\nca_file = {:?}\n",
            missing.display().to_string()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = Config::parse(
            "[store]\npostgres_url = \"postgres://u:hunter2@db:5432/x\"\n[[gateway]]\nuri = \"sip:{number}@x\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("db:5432/x"));
    }

    #[test]
    fn wildcard_sip_addresses_need_a_public_address() {
        let err = Config::parse("[sip]\nlisten = \"0.0.0.0:5060\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sip.public_address"), "{err}");
        assert!(Config::parse(
            "[sip]\nlisten = \"0.0.0.0:5060\"\npublic_address = \"192.0.2.10:5060\"\n"
        )
        .is_ok());
        let err = Config::parse("[sip]\nrtp_address = \"0.0.0.0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sip.rtp_address"), "{err}");
    }

    #[test]
    fn rtp_port_range_and_media_public_address_are_checked_and_passed_on() {
        let config = Config::parse(
            "[sip]\nrtp_port_range = \"20000-29999\"\nmedia_public_address = \"203.0.113.7\"\n",
        )
        .unwrap();
        let settings = call_runtime::settings::SipSettings::from(&config.sip);
        assert_eq!(settings.rtp_port_range, Some((20000, 29999)));
        assert_eq!(
            settings.media_public_address,
            Some(std::net::IpAddr::from([203, 0, 113, 7]))
        );
        for bad in ["\"20000\"", "\"30000-20000\"", "\"100-200\""] {
            let err = Config::parse(&format!("[sip]\nrtp_port_range = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("sip.rtp_port_range"), "{err}");
        }
        let err = Config::parse("[sip]\nmedia_public_address = \"0.0.0.0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sip.media_public_address"), "{err}");
    }

    #[test]
    fn a_mailbox_url_must_be_https_unless_loopback_or_allowed() {
        let parse = |toml: &str| Config::parse(toml).map_err(|e| e.to_string());
        let c =
            parse("[mailbox]\news_url = \"https://mail.example.com/EWS/Exchange.asmx\"\n").unwrap();
        assert_eq!(c.mailbox.unwrap().timeout_secs, 8);
        let err = parse("[mailbox]\news_url = \"https://m/EWS\"\ntimeout_secs = 10\n").unwrap_err();
        assert!(err.contains("server.request_timeout_secs"), "{err}");
        assert!(parse("[mailbox]\news_url = \"http://127.0.0.1:9/EWS/Exchange.asmx\"\n").is_ok());
        assert!(parse("[mailbox]\news_url = \"http://[::1]:9/EWS/Exchange.asmx\"\n").is_ok());
        let err = parse("[mailbox]\news_url = \"http://mail.example.com/EWS/Exchange.asmx\"\n")
            .unwrap_err();
        assert!(err.contains("mailbox.allow_plain_http"), "{err}");
        assert!(parse(
            "[mailbox]\news_url = \"http://mail.example.com/EWS/Exchange.asmx\"\nallow_plain_http = true\n"
        )
        .is_ok());
        for bad in ["", "mail.example.com", "ftp://x/EWS", "https:///EWS"] {
            let err = parse(&format!("[mailbox]\news_url = {bad:?}\n")).unwrap_err();
            assert!(err.contains("mailbox.ews_url"), "{bad}: {err}");
        }
        let err = parse("[mailbox]\news_url = \"https://m/EWS\"\ntimeout_secs = 0\n").unwrap_err();
        assert!(err.contains("mailbox.timeout_secs"), "{err}");
    }

    #[test]
    fn tls_needs_both_files_and_names_the_missing_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openum.toml");
        std::fs::write(&path, "[server]\ntls_cert = \"/etc/openum/cert.pem\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.tls_key") && err.contains("openum.toml"),
            "{err}"
        );
        std::fs::write(&path, "[server]\ntls_key = \"/etc/openum/key.pem\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("server.tls_cert") && err.contains("openum.toml"),
            "{err}"
        );
        let both = Config::parse("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").unwrap();
        assert_eq!(
            both.server.tls_files(),
            Some((Path::new("c.pem"), Path::new("k.pem")))
        );
    }

    #[test]
    fn plain_http_on_a_public_address_is_refused_unless_allowed_or_tls() {
        let listen: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = ServerConfig::default()
            .check_plain_http(listen)
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.allow_plain_http"), "{err}");
        for loopback in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:1"] {
            assert!(ServerConfig::default()
                .check_plain_http(loopback.parse().unwrap())
                .is_ok());
        }
        let allowed = ServerConfig {
            allow_plain_http: true,
            ..ServerConfig::default()
        };
        assert!(allowed.check_plain_http(listen).is_ok());
        let tls = ServerConfig {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            ..ServerConfig::default()
        };
        assert!(tls.check_plain_http(listen).is_ok());
    }

    #[test]
    fn the_metrics_token_is_redacted_and_must_not_be_empty() {
        let c = Config::parse("[server]\nmetrics_token = \"s3cret-token\"\n").unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret-token"), "{debug}");
        let err = Config::parse("[server]\nmetrics_token = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.metrics_token"), "{err}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openum.toml");
        std::fs::write(&path, "[server]\nlisten = 7\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("openum.toml") && err.contains("listen"),
            "{err}"
        );
        let missing = Config::load(Some(&dir.path().join("nope.toml")))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("nope.toml"), "{missing}");
    }
}
