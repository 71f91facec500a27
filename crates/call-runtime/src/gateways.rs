//! Gateway groups: which gateways a call may use and in which order, when a failed attempt
//! moves on to the next one, and each gateway's live state (up/down, calls, rate bucket).
//!
//! Order within a group: ascending `priority`; among equal priorities a weighted random order
//! (a gateway is picked first with probability weight/sum, as RFC 2782 does for SRV), weight-0
//! gateways last. Gateways marked down by OPTIONS pings are left out, unless every gateway of
//! the group is down: then all are tried in order, since a lost ping must not turn into an
//! outage.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use call_engine::call::SipEvent;
use calls::service::Capacity;
use calls::sync::lock;
use rand::Rng;

use crate::settings::GatewaySettings;
use crate::tls::{TlsClient, TlsSetupError};

/// Where a gateway's outbound registration stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Registration {
    /// The gateway needs none.
    NotRequired,
    /// The first REGISTER is under way.
    Pending,
    /// The registrar accepted the binding (and it has not lapsed).
    Registered,
    /// The last REGISTER failed; it is retried with back-off.
    Failed,
}

/// No gateway of a call's route is registered.
#[derive(Debug, thiserror::Error)]
#[error("gateway {gateway} requires registration and is not registered ({state:?})")]
pub struct NotRegistered {
    /// The first gateway of the route.
    pub gateway: String,
    /// Its registration state.
    pub state: Registration,
}

/// One gateway and its live state.
pub struct Gateway {
    /// Its settings.
    pub settings: Arc<GatewaySettings>,
    /// Its TLS client, when signalling to it runs over TLS (`transport = "tls"` or `sips:`):
    /// every attempt through it, first or after a failover, opens or reuses its connections.
    pub tls: Option<Arc<TlsClient>>,
    up: AtomicBool,
    registration: tokio::sync::watch::Sender<Registration>,
    /// Call attempts in progress through it.
    live: AtomicUsize,
    /// Token bucket of its calls-per-second cap: (tokens, last refill).
    rate: Mutex<(f64, std::time::Instant)>,
}

impl Gateway {
    /// The gateway and, over TLS, its client (unusable TLS files are refused naming the
    /// gateway, the key and the path).
    fn new(settings: GatewaySettings) -> Result<Self, TlsSetupError> {
        let tls = if settings.uses_tls() {
            let client = TlsClient::new(
                &settings.name,
                &crate::sip::gateway_host(&settings),
                &settings.tls,
            )?;
            Some(Arc::new(client))
        } else {
            None
        };
        let cps = f64::from(settings.calls_per_second);
        let registration = if settings.register.is_some() {
            Registration::Pending
        } else {
            Registration::NotRequired
        };
        Ok(Self {
            settings: Arc::new(settings),
            tls,
            up: AtomicBool::new(true),
            registration: tokio::sync::watch::Sender::new(registration),
            live: AtomicUsize::new(0),
            rate: Mutex::new((cps, std::time::Instant::now())),
        })
    }

    /// The gateway's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether calls may be sent to it (not marked down by OPTIONS pings).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Marks it up or down; whether that changed anything.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::SeqCst) != up
    }

    /// Where its registration stands.
    pub fn registration(&self) -> Registration {
        *self.registration.borrow()
    }

    /// Records where its registration stands; whether that changed anything.
    pub(crate) fn set_registration(&self, state: Registration) -> bool {
        self.registration.send_replace(state) != state
    }

    /// Whether a call may be sent through it now, waiting up to `within` while its first
    /// registration is under way.
    pub(crate) async fn ready_for_calls(&self, within: std::time::Duration) -> Registration {
        let mut changes = self.registration.subscribe();
        let settled = tokio::time::timeout(
            within,
            changes.wait_for(|state| *state != Registration::Pending),
        )
        .await;
        match settled {
            Ok(Ok(state)) => *state,
            // Still pending after `within` (or the sender is gone, which cannot happen while
            // `self` lives): the current state says it.
            _ => self.registration(),
        }
    }

    /// Call attempts in progress through it.
    pub fn live_calls(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Counts an attempt through this gateway until the returned guard is dropped.
    pub(crate) fn attempt(self: &Arc<Self>) -> AttemptGuard {
        self.live.fetch_add(1, Ordering::SeqCst);
        AttemptGuard(Arc::clone(self))
    }

    /// Refuses a new call when the concurrent-call cap is reached.
    pub(crate) fn check_calls_cap(&self) -> Result<(), Capacity> {
        let cap = self.settings.max_concurrent_calls;
        if self.live_calls() >= cap {
            return Err(Capacity::GatewayCalls {
                gateway: self.settings.name.clone(),
                cap,
            });
        }
        Ok(())
    }

    /// Spends one token of the calls-per-second bucket, or says when to retry.
    pub(crate) fn take_rate_token(&self) -> Result<(), Capacity> {
        let cps = f64::from(self.settings.calls_per_second);
        let mut bucket = lock(&self.rate);
        let now = std::time::Instant::now();
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * cps).min(cps);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            // At most 1000 ms (cps ≥ 1 and tokens ≥ 0): the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let retry_in_ms = ((1.0 - tokens) / cps * 1000.0).ceil() as u64;
            return Err(Capacity::GatewayRate {
                gateway: self.settings.name.clone(),
                per_second: self.settings.calls_per_second,
                retry_in_ms,
            });
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }
}

/// An attempt in progress through a gateway (counted in its live calls until dropped).
pub(crate) struct AttemptGuard(Arc<Gateway>);

impl AttemptGuard {
    /// The gateway.
    pub(crate) fn gateway(&self) -> &Arc<Gateway> {
        &self.0
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every enabled gateway, in configuration order.
pub struct Gateways {
    all: Vec<Arc<Gateway>>,
}

impl Gateways {
    /// The gateways, in configuration order (the first one's group takes unrouted calls), each
    /// TLS one with its client; the first unusable TLS setting is refused.
    pub fn new(settings: Vec<GatewaySettings>) -> Result<Self, TlsSetupError> {
        Ok(Self {
            all: settings
                .into_iter()
                .filter(|g| g.enabled)
                .map(|g| Gateway::new(g).map(Arc::new))
                .collect::<Result<_, _>>()?,
        })
    }

    /// All of them.
    pub fn all(&self) -> &[Arc<Gateway>] {
        &self.all
    }

    /// Whether there is any.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The gateways of `group` (`None`: the first gateway's) in the order a call tries them.
    pub fn route(&self, group: Option<&str>, rng: &mut impl Rng) -> Vec<Arc<Gateway>> {
        let Some(group) = group.or_else(|| self.all.first().map(|g| g.settings.group.as_str()))
        else {
            return Vec::new();
        };
        let members: Vec<&Arc<Gateway>> = self
            .all
            .iter()
            .filter(|g| g.settings.group == group)
            .collect();
        let up: Vec<Arc<Gateway>> = members
            .iter()
            .filter(|g| g.is_up())
            .map(|g| Arc::clone(g))
            .collect();
        let candidates = if up.is_empty() {
            if !members.is_empty() {
                tracing::warn!(
                    group,
                    "every gateway of the group is marked down; trying them all"
                );
            }
            members.into_iter().cloned().collect()
        } else {
            up
        };
        order(candidates, rng)
    }
}

/// The rest of a call's route: gateways still to try, and the resolved addresses of the
/// current one still to try.
pub(crate) struct Route {
    pub(crate) resolver: crate::dns::Resolver,
    /// The local SIP address (a resolved address it cannot reach is skipped, with the reason).
    pub(crate) local: IpAddr,
    pub(crate) gateways: std::collections::VecDeque<Arc<Gateway>>,
    /// The gateway being tried, its host name and its resolved addresses not yet tried.
    current: Option<(
        Arc<Gateway>,
        String,
        std::collections::VecDeque<std::net::SocketAddr>,
    )>,
}

impl Route {
    pub(crate) fn new(
        resolver: crate::dns::Resolver,
        local: IpAddr,
        gateways: impl IntoIterator<Item = Arc<Gateway>>,
    ) -> Self {
        Self {
            resolver,
            local,
            gateways: gateways.into_iter().collect(),
            current: None,
        }
    }

    /// The next attempt: a gateway, and its settings with `address` set to the resolved
    /// target when its host is a name. `Err` when nothing is left and the last gateway's host
    /// did not resolve (each failure is logged with the host).
    pub(crate) async fn next(
        &mut self,
    ) -> Result<Option<(Arc<Gateway>, Arc<GatewaySettings>)>, crate::dns::DnsError> {
        let mut last_error = None;
        loop {
            if let Some((gateway, host, targets)) = &mut self.current {
                while let Some(target) = targets.pop_front() {
                    if let Some(why) = unreachable_from(self.local, target.ip()) {
                        let error = crate::dns::DnsError::Unreachable {
                            host: host.clone(),
                            target,
                            local: self.local,
                            why,
                        };
                        tracing::warn!(gateway = %gateway.name(), error = %error, "skipping a gateway address: set sip.listen to an address of the interface that reaches it");
                        last_error = Some(error);
                        continue;
                    }
                    let settings = GatewaySettings {
                        address: Some(target.to_string()),
                        ..(*gateway.settings).clone()
                    };
                    return Ok(Some((Arc::clone(gateway), Arc::new(settings))));
                }
            }
            self.current = None;
            let Some(gateway) = self.gateways.pop_front() else {
                return match last_error {
                    Some(error) => Err(error),
                    None => Ok(None),
                };
            };
            let destination = gateway
                .settings
                .address
                .clone()
                .unwrap_or_else(|| uri_host_port(&gateway.settings.uri).to_owned());
            let is_address =
                split_host_port(&destination).is_ok_and(|(host, _)| host.parse::<IpAddr>().is_ok());
            if is_address {
                let settings = Arc::clone(&gateway.settings);
                return Ok(Some((gateway, settings)));
            }
            match self
                .resolver
                .locate(&destination, transport_of(&gateway.settings))
                .await
            {
                Ok(targets) => {
                    tracing::info!(gateway = %gateway.name(), host = %destination, ?targets, "gateway host resolved");
                    self.current = Some((gateway, destination, targets.into()));
                }
                Err(error) => {
                    tracing::warn!(gateway = %gateway.name(), host = %destination, error = %calls::error_chain(&error), "cannot resolve the gateway host");
                    last_error = Some(error);
                }
            }
        }
    }
}

/// The transport a gateway's host is located for (RFC 3263): TLS for `transport = "tls"` and
/// `sips:` URIs.
fn transport_of(settings: &GatewaySettings) -> crate::settings::Transport {
    if settings.uses_tls() {
        crate::settings::Transport::Tls
    } else {
        settings.transport
    }
}

/// `gateways` in trying order: ascending priority; within a priority, a weighted random order
/// with weight-0 gateways last (in their given order).
pub fn order(mut gateways: Vec<Arc<Gateway>>, rng: &mut impl Rng) -> Vec<Arc<Gateway>> {
    gateways.sort_by_key(|g| g.settings.priority);
    let mut ordered = Vec::with_capacity(gateways.len());
    let mut rest = gateways.as_slice();
    while let Some(first) = rest.first() {
        let end = rest
            .iter()
            .position(|g| g.settings.priority != first.settings.priority)
            .unwrap_or(rest.len());
        let (class, tail) = rest.split_at(end);
        rest = tail;
        let (mut weighted, zero): (Vec<_>, Vec<_>) =
            class.iter().cloned().partition(|g| g.settings.weight > 0);
        while !weighted.is_empty() {
            let total: u64 = weighted.iter().map(|g| u64::from(g.settings.weight)).sum();
            let mut pick = rng.gen_range(0..total);
            let index = weighted
                .iter()
                .position(|g| {
                    let w = u64::from(g.settings.weight);
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            ordered.push(weighted.remove(index));
        }
        ordered.extend(zero);
    }
    ordered
}

/// Whether an INVITE that ended with `event` may be sent to the next gateway: no response at
/// all (Timer B), a transport failure, or a final response whose code is in `codes`. The caller
/// also makes sure no provisional response other than 100 (an early dialog) nor an answer came
/// first, and that the call is not being hung up (RFC 3261: a call with an early dialog is not
/// re-routed).
pub fn fails_over(event: &SipEvent, codes: &[u16]) -> bool {
    match event {
        SipEvent::NoResponse | SipEvent::TransportFailed => true,
        SipEvent::Rejected(status) => codes.contains(&status.code),
        _ => false,
    }
}

/// A gateway setting `check` refuses: which one (`uri`, `address`, `from`) and why.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BadSetting {
    /// The key, without the gateway's prefix.
    pub key: &'static str,
    /// What is wrong, as the rest of a sentence after the key.
    pub problem: String,
}

impl BadSetting {
    fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self {
            key,
            problem: problem.into(),
        }
    }
}

/// `host` and optional port of a `host[:port]` or `[v6][:port]` text.
pub fn split_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{text:?} has no closing ]"))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("{text:?}: unexpected {after:?} after ]")),
            },
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    if host.contains(['@', '/', ' ', ';', '?', ':']) && host.parse::<IpAddr>().is_err() {
        return Err(format!("{text:?}: {host:?} is not a host name or address"));
    }
    let port = port
        .map(|p| match p.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(u16::try_from(n).unwrap_or(u16::MAX)),
            _ => Err(format!("{text:?}: port {p:?} is not in 1-65535")),
        })
        .transpose()?;
    Ok((host.to_owned(), port))
}

/// Parses a SIP URI as the stack will.
pub fn parse_uri(uri: &str) -> Result<(), String> {
    rsipstack::sip::Uri::try_from(uri)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `host[:port]` of a `sip:user@host:port;params` URI.
pub fn uri_host_port(uri: &str) -> &str {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split([';', '?']).next().unwrap_or(rest)
}

/// Checks what a gateway's `uri`, `address` and `from` must be for calls to reach it, and that
/// the local SIP and RTP addresses can reach it when it is given by address: a loopback
/// listener cannot send to another host, nor an IPv4 socket to an IPv6 address. Host names are
/// not resolved here (config check works offline); an unreachable resolved address fails the
/// attempt with that cause at call time.
pub fn check(
    gateway: &GatewaySettings,
    sip_listen: IpAddr,
    rtp_address: IpAddr,
) -> Result<(), BadSetting> {
    let scheme_ok = gateway.uri.starts_with("sip:") || gateway.uri.starts_with("sips:");
    if !scheme_ok || !gateway.uri.contains("{number}") {
        return Err(BadSetting::new(
            "uri",
            format!(
                "must be a sip: or sips: URI containing {{number}}, got {:?}",
                gateway.uri
            ),
        ));
    }
    let sample = gateway.uri.replace("{number}", "5551234");
    rsipstack::sip::Uri::try_from(sample.as_str())
        .map_err(|e| BadSetting::new("uri", format!("{:?} does not parse: {e}", gateway.uri)))?;
    let (uri_host, _) = split_host_port(uri_host_port(&sample))
        .map_err(|problem| BadSetting::new("uri", problem))?;
    let (key, host) = match &gateway.address {
        Some(address) => {
            let (host, port) =
                split_host_port(address).map_err(|problem| BadSetting::new("address", problem))?;
            if port.is_none() {
                return Err(BadSetting::new(
                    "address",
                    format!("{address:?} must be host:port"),
                ));
            }
            ("address", host)
        }
        None => ("uri", uri_host),
    };
    if let Some(from) = &gateway.from {
        if !from.starts_with("sip:") && !from.starts_with("sips:") {
            return Err(BadSetting::new(
                "from",
                format!("must be a sip: or sips: URI, got {from:?}"),
            ));
        }
        rsipstack::sip::Uri::try_from(from.as_str())
            .map_err(|e| BadSetting::new("from", format!("{from:?} does not parse: {e}")))?;
        split_host_port(uri_host_port(from)).map_err(|problem| BadSetting::new("from", problem))?;
    }
    if let Ok(target) = host.parse::<IpAddr>() {
        for (what, local) in [("sip.listen", sip_listen), ("sip.rtp_address", rtp_address)] {
            if let Some(why) = unreachable_from(local, target) {
                return Err(BadSetting::new(
                    key,
                    format!(
                        "targets {target}, which {what} {local} cannot reach ({why}): set {what} to an address of the interface that reaches the gateway"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Why a socket bound to `local` cannot send to `target`, if it cannot.
pub fn unreachable_from(local: IpAddr, target: IpAddr) -> Option<&'static str> {
    if local.is_unspecified() {
        return (local.is_ipv4() != target.is_ipv4()).then_some("another address family");
    }
    if local.is_ipv4() != target.is_ipv4() {
        return Some("another address family");
    }
    (local.is_loopback() && !target.is_loopback()).then_some("a loopback address")
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    fn gateway(name: &str, group: &str, priority: u32, weight: u32) -> GatewaySettings {
        GatewaySettings {
            name: name.into(),
            uri: "sip:{number}@127.0.0.1:5070".into(),
            address: None,
            transport: crate::settings::Transport::Udp,
            from: None,
            display_name: "Voice Mail".into(),
            credentials: None,
            ring_timeout_secs: 45,
            max_concurrent_calls: 1,
            calls_per_second: 1,
            headers: Vec::new(),
            enabled: true,
            group: group.into(),
            priority,
            weight,
            failover_codes: vec![408, 503],
            options: None,
            register: None,
            tls: crate::settings::TlsSettings::default(),
            srtp: crate::settings::SrtpPolicy::Off,
        }
    }

    fn names(route: &[Arc<Gateway>]) -> Vec<&str> {
        route.iter().map(|g| g.name()).collect()
    }

    #[test]
    fn a_group_is_tried_by_priority_and_down_gateways_are_left_out_unless_all_are() {
        let gateways = Gateways::new(vec![
            gateway("b", "pstn", 2, 1),
            gateway("a", "pstn", 1, 1),
            gateway("other", "lab", 0, 1),
            gateway("c", "pstn", 3, 1),
        ])
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(
            names(&gateways.route(Some("pstn"), &mut rng)),
            ["a", "b", "c"]
        );
        // Unrouted calls go to the first gateway's group.
        assert_eq!(names(&gateways.route(None, &mut rng)), ["a", "b", "c"]);
        assert_eq!(names(&gateways.route(Some("lab"), &mut rng)), ["other"]);
        assert!(gateways.route(Some("nowhere"), &mut rng).is_empty());
        let a = &gateways.all()[1];
        assert!(a.set_up(false));
        assert!(!a.set_up(false), "no change the second time");
        assert_eq!(names(&gateways.route(Some("pstn"), &mut rng)), ["b", "c"]);
        for g in gateways.all() {
            g.set_up(false);
        }
        assert_eq!(
            names(&gateways.route(Some("pstn"), &mut rng)),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn each_tls_gateway_gets_its_client_and_an_unusable_file_of_any_gateway_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let tls = |name: &str, ca_file: Option<std::path::PathBuf>| GatewaySettings {
            uri: "sips:{number}@sbc.example.com".into(),
            tls: crate::settings::TlsSettings {
                ca_file,
                ..crate::settings::TlsSettings::default()
            },
            ..gateway(name, "g", 0, 1)
        };
        // A CA certificate the repository already has as a test fixture.
        let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../mailbox/tests/fixtures/ca.pem");
        let gateways =
            Gateways::new(vec![gateway("plain", "g", 0, 1), tls("sbc", Some(ca))]).unwrap();
        assert!(gateways.all()[0].tls.is_none());
        assert!(gateways.all()[1].tls.is_some());
        let error = Gateways::new(vec![
            gateway("plain", "g", 0, 1),
            tls("second", Some(junk.clone())),
        ])
        .err()
        .expect("an unusable ca_file fails the start")
        .to_string();
        assert!(error.contains("\"second\""), "{error}");
        assert!(error.contains("ca_file"), "{error}");
        assert!(error.contains(&junk.display().to_string()), "{error}");
    }

    #[test]
    fn equal_priorities_share_calls_by_weight_and_weight_zero_comes_last() {
        let gateways = Gateways::new(vec![
            gateway("heavy", "g", 0, 3),
            gateway("light", "g", 0, 1),
            gateway("spare", "g", 0, 0),
        ])
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut heavy_first = 0;
        for _ in 0..4000 {
            let route = gateways.route(Some("g"), &mut rng);
            assert_eq!(route.len(), 3);
            assert_eq!(route[2].name(), "spare");
            if route[0].name() == "heavy" {
                heavy_first += 1;
            }
        }
        // 3:1 weights: heavy first in about 3000 of 4000 routes.
        assert!((2800..=3200).contains(&heavy_first), "{heavy_first}");
    }

    #[test]
    fn which_outcomes_move_a_call_on() {
        use call_engine::call::SipStatus;
        let codes = [408, 503];
        assert!(fails_over(&SipEvent::NoResponse, &codes));
        assert!(fails_over(&SipEvent::TransportFailed, &codes));
        assert!(fails_over(
            &SipEvent::Rejected(SipStatus::new(503, "Service Unavailable")),
            &codes
        ));
        assert!(fails_over(
            &SipEvent::Rejected(SipStatus::new(408, "Request Timeout")),
            &codes
        ));
        assert!(!fails_over(
            &SipEvent::Rejected(SipStatus::new(486, "Busy Here")),
            &codes
        ));
        assert!(!fails_over(
            &SipEvent::Provisional(SipStatus::new(180, "Ringing")),
            &codes
        ));
        assert!(!fails_over(&SipEvent::RemoteBye, &codes));
    }

    #[test]
    fn gateway_addresses_are_checked_in_full() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let lan = IpAddr::from([192, 0, 2, 1]);
        let ok = gateway("pbx", "g", 0, 1);
        assert_eq!(check(&ok, loopback, loopback), Ok(()));
        let bad = |edit: &dyn Fn(&mut GatewaySettings), listen: IpAddr| {
            let mut g = ok.clone();
            edit(&mut g);
            check(&g, listen, listen).unwrap_err()
        };
        let e = bad(&|g| g.uri = "sip:{number}@".into(), loopback);
        assert_eq!(e.key, "uri");
        let e = bad(&|g| g.uri = "sip:{number}@pbx:99999".into(), loopback);
        assert_eq!(e.key, "uri");
        let e = bad(&|g| g.uri = "sip:{number}@pbx:0".into(), loopback);
        assert_eq!(e.key, "uri");
        let e = bad(&|g| g.address = Some("pbx".into()), loopback);
        assert_eq!(e.key, "address");
        let e = bad(&|g| g.address = Some(":5060".into()), loopback);
        assert_eq!(e.key, "address");
        let e = bad(&|g| g.from = Some("openum@x".into()), loopback);
        assert_eq!(e.key, "from");
        let e = bad(&|g| g.from = Some("sip:openum@".into()), loopback);
        assert_eq!(e.key, "from");
        // A remote gateway from a loopback listener, named with the key to change.
        let e = bad(&|g| g.uri = "sip:{number}@198.51.100.7".into(), loopback);
        assert_eq!(e.key, "uri");
        assert!(e.problem.contains("sip.listen 127.0.0.1"), "{}", e.problem);
        let e = bad(&|g| g.address = Some("198.51.100.7:5060".into()), loopback);
        assert_eq!(e.key, "address");
        let e = bad(&|g| g.uri = "sip:{number}@[2001:db8::1]:5060".into(), lan);
        assert!(e.problem.contains("address family"), "{}", e.problem);
        // Reachable: a LAN listener to a LAN gateway, any listener to a host name.
        let mut remote = ok.clone();
        remote.uri = "sip:{number}@198.51.100.7:5060".into();
        assert_eq!(check(&remote, lan, lan), Ok(()));
        remote.uri = "sip:{number}@pbx.example.com".into();
        assert_eq!(check(&remote, loopback, loopback), Ok(()));
        assert_eq!(
            split_host_port("[::1]:5070"),
            Ok(("::1".into(), Some(5070)))
        );
    }
}
