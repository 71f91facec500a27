//! Prometheus metrics (`GET /metrics`): EWS requests by operation and outcome, request latency,
//! calls started and ended by cause, live calls, RTP packets sent.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use calls::{CallServiceFigures, CallState};

/// Labels of an EWS request.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct RequestLabels {
    /// `PlayOnPhone`, `GetPhoneCallInformation`, `DisconnectPhoneCall`, or `unknown` (faults
    /// before the operation is known).
    pub operation: &'static str,
    /// `NoError`, the error's ResponseCode, or the fault's code.
    pub outcome: &'static str,
}

/// Labels of `openum_forwarded_requests_total`.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct ForwardLabels {
    /// The SOAP body's first element (an EWS operation, else `other`), or the path.
    pub operation: &'static str,
    /// The HTTP status answered to the client.
    pub status: u16,
}

/// Labels of an ended call.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct CauseLabels {
    /// The ConnectionFailureCause.
    pub cause: String,
}

/// Labels of a mailbox-server step.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct MailboxLabels {
    /// `login` (credential check) or `voice_message` (a PlayOnPhone's item).
    pub step: &'static str,
    /// `login`: `accepted`, `cached`, `refused`, `unavailable`; `voice_message`: `downloaded`,
    /// `cached`, `item_error`, `no_audio`, `undecodable`, `unavailable`.
    pub outcome: &'static str,
}

/// Labels of `openum_auth_failures_total`.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct AuthFailureLabels {
    /// `basic`, `bearer` or `other` (the Authorization header's scheme).
    pub scheme: &'static str,
    /// Why the login failed (see [`crate::auth::FailureReason`]).
    pub reason: &'static str,
}

/// Labels of a gateway's state.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct GatewayLabels {
    /// The gateway's `name`.
    pub gateway: String,
}

/// Labels of a dropped SIP datagram.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct SipDropLabels {
    /// Why it was dropped (`not_sip`, `bad_via`, `socket_error`, `stack_stopped`).
    pub reason: String,
}

/// Labels of live calls.
#[derive(Clone, Debug, EncodeLabelSet, Eq, Hash, PartialEq)]
pub struct StateLabels {
    /// The PhoneCallState.
    pub state: String,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    calls_started: Counter,
    calls_ended: Family<CauseLabels, Counter>,
    mailbox: Family<MailboxLabels, Counter>,
    store_write_failures: Counter,
    unwritten: Gauge,
    forwarded: Family<ForwardLabels, Counter>,
    forward_duration: Histogram,
    forwarding: Gauge,
    pinned: Gauge,
    auth_failures: Family<AuthFailureLabels, Counter>,
    auth_lockouts: Counter,
    // Registration needs `&mut Registry`; scrapes build the text under this lock.
    encode_lock: Mutex<()>,
}

impl Metrics {
    /// Counts one EWS request (static labels: no allocation on the request path).
    pub fn request(&self, operation: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { operation, outcome })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// A forwarded request was answered with `status` (counted when the answer starts).
    pub fn forwarded(&self, operation: &'static str, status: u16) {
        self.forwarded
            .get_or_create(&ForwardLabels { operation, status })
            .inc();
    }

    /// A forwarded exchange ended (answer body sent or abandoned) after `took`.
    pub fn forward_ended(&self, took: Duration) {
        self.forward_duration.observe(took.as_secs_f64());
    }

    /// The gauge of client connections pinned to a mailbox-server connection (NTLM/Negotiate).
    pub fn pinned(&self) -> &Gauge {
        &self.pinned
    }

    /// The gauge of forwarded requests in flight.
    pub fn forwarding(&self) -> &Gauge {
        &self.forwarding
    }

    /// Counts a failed login.
    pub fn auth_failure(&self, scheme: &'static str, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthFailureLabels { scheme, reason })
            .inc();
    }

    /// Counts a lockout started (of an address or a user name).
    pub fn auth_lockout(&self) {
        self.auth_lockouts.inc();
    }

    /// Counts a placed call.
    pub fn call_started(&self) {
        self.calls_started.inc();
    }

    /// Counts a call change the store refused (first attempt or retry).
    pub fn store_write_failed(&self) {
        self.store_write_failures.inc();
    }

    /// How many call changes wait to be written to the store.
    pub fn set_unwritten(&self, n: usize) {
        self.unwritten.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts a mailbox-server step.
    pub fn mailbox(&self, step: &'static str, outcome: &'static str) {
        self.mailbox
            .get_or_create(&MailboxLabels { step, outcome })
            .inc();
    }

    /// Counts an ended call.
    pub fn call_ended(&self, cause: &str) {
        self.calls_ended
            .get_or_create(&CauseLabels {
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition, with the call service's live figures and this node's
    /// live calls by state (`figures.live_calls` is replaced by their sum).
    pub fn render(
        &self,
        figures: &CallServiceFigures,
        live_by_state: &[(CallState, usize)],
    ) -> String {
        let _guard = calls::sync::lock(&self.encode_lock);
        let live_calls: usize = live_by_state.iter().map(|(_, n)| n).sum();
        let mut registry = Registry::with_prefix("openum");
        registry.register(
            "ews_requests",
            "EWS requests by operation and outcome (ResponseCode or fault code)",
            self.requests.clone(),
        );
        registry.register(
            "ews_request_duration_seconds",
            "Time to answer an EWS request",
            self.latency.clone(),
        );
        registry.register(
            "forwarded_requests",
            "Requests forwarded to the mailbox server, by operation and HTTP status",
            self.forwarded.clone(),
        );
        registry.register(
            "forward_duration_seconds",
            "Time from a forwarded request's arrival to the end of its answer",
            self.forward_duration.clone(),
        );
        registry.register(
            "forwarded_in_flight",
            "Forwarded requests in flight",
            self.forwarding.clone(),
        );
        registry.register(
            "pinned_connections",
            "Client connections with a dedicated mailbox-server connection (NTLM, Negotiate)",
            self.pinned.clone(),
        );
        registry.register("calls_started", "Calls placed", self.calls_started.clone());
        registry.register(
            "store_write_failures",
            "Call changes the store refused (they are kept and written again)",
            self.store_write_failures.clone(),
        );
        registry.register(
            "store_unwritten_changes",
            "Call changes waiting to be written to the store",
            self.unwritten.clone(),
        );
        registry.register(
            "mailbox_steps",
            "Requests to the mailbox server by step and outcome",
            self.mailbox.clone(),
        );
        registry.register(
            "calls_ended",
            "Calls ended, by ConnectionFailureCause",
            self.calls_ended.clone(),
        );
        registry.register(
            "calls_live",
            "Calls in progress on this node",
            ConstGauge::new(saturating_i64(live_calls)),
        );
        let by_state = Family::<StateLabels, Gauge>::default();
        for (state, n) in live_by_state {
            by_state
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(saturating_i64(*n));
        }
        registry.register(
            "calls_by_state",
            "Calls in progress on this node, by PhoneCallState",
            by_state,
        );
        registry.register(
            "rtp_packets_sent",
            "RTP packets handed to the kernel",
            ConstCounter::new(figures.rtp_packets_sent),
        );
        registry.register(
            "rtp_send_errors",
            "RTP packets the kernel refused (dropped)",
            ConstCounter::new(figures.rtp_send_errors),
        );
        registry.register(
            "auth_failures",
            "Failed logins by Authorization scheme and reason",
            self.auth_failures.clone(),
        );
        registry.register(
            "auth_lockouts",
            "Lockouts started after repeated failed logins (per address or user name)",
            self.auth_lockouts.clone(),
        );
        let gateways = Family::<GatewayLabels, Gauge>::default();
        for (name, up) in &figures.gateways_up {
            gateways
                .get_or_create(&GatewayLabels {
                    gateway: name.clone(),
                })
                .set(i64::from(*up));
        }
        registry.register(
            "gateway_up",
            "1 while the gateway counts as up (answers OPTIONS pings, or is not pinged), else 0",
            gateways,
        );
        let registered = Family::<GatewayLabels, Gauge>::default();
        for (name, yes) in &figures.gateways_registered {
            registered
                .get_or_create(&GatewayLabels {
                    gateway: name.clone(),
                })
                .set(i64::from(*yes));
        }
        registry.register(
            "gateway_registered",
            "1 while the gateway's outbound registration is accepted, else 0 (registering gateways only)",
            registered,
        );
        registry.register(
            "rtcp_sender_reports_sent",
            "RTCP compound packets sent (Sender Report + SDES, BYE at the end)",
            ConstCounter::new(figures.rtcp_sender_reports_sent),
        );
        registry.register(
            "rtcp_reports_received",
            "RTCP report blocks about openum's streams received from far ends",
            ConstCounter::new(figures.rtcp_reports_received),
        );
        registry.register(
            "rtcp_packets_lost",
            "RTP packets the far ends reported lost (RTCP cumulative loss)",
            ConstCounter::new(figures.rtcp_packets_lost),
        );
        registry.register(
            "rtcp_jitter_seconds",
            "Sum of the interarrival jitter far ends reported (divide by rtcp_reports_received)",
            ConstCounter::new(figures.rtcp_jitter_seconds_total),
        );
        registry.register(
            "rtcp_round_trip_seconds",
            "Sum of the RTCP round-trip times measured (divide by rtcp_round_trips)",
            ConstCounter::new(figures.rtcp_round_trip_seconds_total),
        );
        registry.register(
            "rtcp_round_trips",
            "RTCP round-trip times measured",
            ConstCounter::new(figures.rtcp_round_trips),
        );
        let dropped = Family::<CauseLabels, Counter>::default();
        for (cause, n) in &figures.media_datagrams_dropped {
            dropped
                .get_or_create(&CauseLabels {
                    cause: (*cause).to_owned(),
                })
                .inc_by(*n);
        }
        registry.register(
            "media_datagrams_dropped",
            "Datagrams on the shared RTP/RTCP sockets that belong to no single call (dropped), by cause",
            dropped,
        );
        let rtcp_dropped = Family::<CauseLabels, Counter>::default();
        for (cause, n) in &figures.rtcp_dropped {
            rtcp_dropped
                .get_or_create(&CauseLabels {
                    cause: (*cause).to_owned(),
                })
                .inc_by(*n);
        }
        registry.register(
            "rtcp_dropped",
            "Datagrams calls' RTCP tasks dropped, by cause (not_rtcp; srtcp_auth: SRTCP that failed authentication or replayed an index; srtcp_unencrypted: SRTCP with the E flag clear)",
            rtcp_dropped,
        );
        let sip_dropped = Family::<SipDropLabels, Counter>::default();
        for (reason, n) in &figures.sip_dropped {
            sip_dropped
                .get_or_create(&SipDropLabels {
                    reason: (*reason).to_owned(),
                })
                .inc_by(*n);
        }
        registry.register(
            "sip_dropped",
            "Datagrams on the SIP/UDP port dropped, by reason (each also logged with its source)",
            sip_dropped,
        );
        registry.register(
            "sip_keepalives",
            "SIP keep-alives received over UDP (double-CRLF pings answered, pongs and STUN ignored)",
            ConstCounter::new(figures.sip_keepalives),
        );
        registry.register(
            "sip_contact_repairs",
            "2xx responses to INVITE without a Contact, ACKed to the INVITE's Request-URI",
            ConstCounter::new(figures.sip_contact_repairs),
        );
        let mut out = String::new();
        if let Err(error) = encode(&mut out, &registry) {
            // Writing to a String cannot fail, so this is a metric the encoder refused: say so
            // rather than serve a truncated page.
            tracing::error!(%error, "cannot encode the metrics page");
            out.clear();
        }
        out
    }
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Latency buckets: 0.25 ms to ~4 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics with the latency histogram's buckets.
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            latency: latency_histogram(),
            calls_started: Counter::default(),
            calls_ended: Family::default(),
            mailbox: Family::default(),
            store_write_failures: Counter::default(),
            unwritten: Gauge::default(),
            forwarded: Family::default(),
            forward_duration: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            forwarding: Gauge::default(),
            pinned: Gauge::default(),
            auth_failures: Family::default(),
            auth_lockouts: Counter::default(),
            encode_lock: Mutex::new(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_sip_udp_readers_drops_keepalives_and_contact_repairs() {
        let text = Metrics::new().render(
            &CallServiceFigures {
                sip_dropped: vec![("bad_via", 0), ("not_sip", 4)],
                sip_keepalives: 2,
                sip_contact_repairs: 1,
                ..CallServiceFigures::default()
            },
            &[],
        );
        for needle in [
            "openum_sip_dropped_total{reason=\"not_sip\"} 4",
            "openum_sip_dropped_total{reason=\"bad_via\"} 0",
            "openum_sip_keepalives_total 2",
            "openum_sip_contact_repairs_total 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn renders_counters_histogram_and_live_figures() {
        let m = Metrics::new();
        m.request(
            "GetPhoneCallInformation",
            "NoError",
            Duration::from_millis(2),
        );
        m.request(
            "GetPhoneCallInformation",
            "ErrorInvalidPhoneCallId",
            Duration::from_millis(1),
        );
        m.call_started();
        m.call_ended("UserBusy");
        let text = m.render(
            &CallServiceFigures {
                live_calls: 2,
                rtp_packets_sent: 150,
                rtp_send_errors: 0,
                gateways_up: vec![("pbx".into(), true), ("trunk".into(), false)],
                gateways_registered: vec![("trunk".into(), false)],
                rtcp_reports_received: 3,
                rtcp_round_trip_seconds_total: 0.03,
                media_datagrams_dropped: vec![("ambiguous", 4), ("unknown", 0)],
                rtcp_dropped: vec![("srtcp_auth", 2), ("not_rtcp", 0)],
                ..CallServiceFigures::default()
            },
            &[(CallState::Alerted, 1), (CallState::Connected, 1)],
        );
        for needle in [
            "openum_ews_requests_total{operation=\"GetPhoneCallInformation\",outcome=\"NoError\"} 1",
            "openum_ews_request_duration_seconds_count 2",
            "openum_calls_started_total 1",
            "openum_calls_ended_total{cause=\"UserBusy\"} 1",
            "openum_calls_live 2",
            "openum_rtp_packets_sent_total 150",
            "openum_rtcp_reports_received_total 3",
            "openum_rtcp_round_trip_seconds_total 0.03",
            "openum_media_datagrams_dropped_total{cause=\"ambiguous\"} 4",
            "openum_rtcp_dropped_total{cause=\"srtcp_auth\"} 2",
            "openum_calls_by_state{state=\"Alerted\"} 1",
            "openum_gateway_up{gateway=\"pbx\"} 1",
            "openum_gateway_up{gateway=\"trunk\"} 0",
            "openum_gateway_registered{gateway=\"trunk\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
