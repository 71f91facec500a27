//! The call service: what the server asks of whatever places calls.

use async_trait::async_trait;

use crate::audio::AudioError;
use crate::record::CallRecord;

/// Which cap of the call service refused a call.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Capacity {
    /// The gateway's concurrent calls reached its `max_concurrent_calls`.
    GatewayCalls {
        /// The gateway's name.
        gateway: String,
        /// The cap.
        cap: usize,
    },
    /// The gateway's `calls_per_second` bucket is empty.
    GatewayRate {
        /// The gateway's name.
        gateway: String,
        /// The cap in calls per second.
        per_second: u32,
        /// When a token will be available again.
        retry_in_ms: u64,
    },
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // These texts reach EWS clients as MessageText.
        match self {
            Self::GatewayCalls { gateway, cap } => {
                write!(f, "The concurrent-call cap of gateway {gateway} ({cap}) is reached.")
            }
            Self::GatewayRate {
                gateway,
                per_second,
                retry_in_ms,
            } => write!(
                f,
                "The calls-per-second cap of gateway {gateway} ({per_second}/s) is reached; retry in {retry_in_ms} ms."
            ),
        }
    }
}

/// Why the call service could not take a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// No gateway is configured or every gateway is disabled.
    #[error("no SIP gateway is configured")]
    NoGateway,
    /// A cap is reached.
    #[error("{0}")]
    OverCapacity(Capacity),
    /// The item's audio cannot be played.
    #[error("the message audio cannot be played")]
    Audio(#[from] AudioError),
    /// No local media socket could be opened.
    #[error("cannot open an RTP socket")]
    MediaSocket(#[source] std::io::Error),
    /// The node is shutting down and places no new call.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The SIP layer could not send the INVITE.
    #[error("the INVITE could not be sent")]
    Signalling(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a hang-up request found.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Hangup {
    /// The call was live here and is being ended; the service records the final state.
    Ending,
    /// The service has no live call with that id (it ended, or was never running here).
    NotLive,
}

/// Figures of a call service for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct CallServiceFigures {
    /// Calls in progress.
    pub live_calls: u64,
    /// RTP packets sent since start.
    pub rtp_packets_sent: u64,
    /// RTP packets the kernel refused.
    pub rtp_send_errors: u64,
    /// Each gateway by name, and whether it is up (OPTIONS pings).
    pub gateways_up: Vec<(String, bool)>,
    /// Each gateway that registers, by name, and whether it is registered.
    pub gateways_registered: Vec<(String, bool)>,
    /// RTCP compound packets sent (each with a Sender Report).
    pub rtcp_sender_reports_sent: u64,
    /// Report blocks about our streams received from far ends.
    pub rtcp_reports_received: u64,
    /// Packets the far ends reported lost.
    pub rtcp_packets_lost: u64,
    /// Sum of the reported interarrival jitter, seconds.
    pub rtcp_jitter_seconds_total: f64,
    /// Sum of the measured round-trip times, seconds.
    pub rtcp_round_trip_seconds_total: f64,
    /// Round-trip times measured.
    pub rtcp_round_trips: u64,
    /// Datagrams the shared media sockets dropped (`rtp_sockets = "shared"`), by cause:
    /// `unknown` (no call expects it), `ambiguous` (several could own it), `malformed`.
    pub media_datagrams_dropped: Vec<(&'static str, u64)>,
    /// Datagrams on the SIP/UDP port dropped, by reason.
    pub sip_dropped: Vec<(&'static str, u64)>,
    /// SIP keep-alives received on UDP (pings answered, pongs and STUN ignored).
    pub sip_keepalives: u64,
    /// 2xx responses to INVITE without a Contact, given the INVITE's Request-URI.
    pub sip_contact_repairs: u64,
    /// Datagrams a call's RTCP task dropped, by cause: `not_rtcp`, `srtcp_auth` (SRTCP that
    /// failed authentication or replayed an index), `srtcp_unencrypted` (E flag clear).
    pub rtcp_dropped: Vec<(&'static str, u64)>,
}

/// Places and ends calls. The SIP runtime implements it; so do test doubles.
#[async_trait]
pub trait CallService: Send + Sync + 'static {
    /// Whether a gateway is available at all (checked before any other work is done).
    fn available(&self) -> bool;
    /// Starts dialling `call` (whose record is already stored in state `Connecting`).
    /// Returns at once; progress is written through the runtime's recorder as the dialogue
    /// advances.
    async fn place(&self, call: &CallRecord) -> Result<(), PlaceError>;
    /// [`CallService::place`] through the gateway group `group` (a dial-plan rule's
    /// `gateway_group`); `None`: the default group. Services without groups ignore it.
    async fn place_via(&self, call: &CallRecord, _group: Option<&str>) -> Result<(), PlaceError> {
        self.place(call).await
    }
    /// Ends the call with this id (CANCEL before answer, BYE after).
    async fn hangup(&self, id: &str) -> Hangup;
    /// Figures for `/metrics`.
    fn figures(&self) -> CallServiceFigures {
        CallServiceFigures::default()
    }
}

/// The call service of a node with no SIP gateway configured: it never pretends to dial.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoGateway;

#[async_trait]
impl CallService for NoGateway {
    fn available(&self) -> bool {
        false
    }

    async fn place(&self, _call: &CallRecord) -> Result<(), PlaceError> {
        Err(PlaceError::NoGateway)
    }

    async fn hangup(&self, _id: &str) -> Hangup {
        Hangup::NotLive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_texts_name_the_gateway_and_the_cap() {
        let calls = Capacity::GatewayCalls {
            gateway: "pbx".into(),
            cap: 3,
        };
        assert_eq!(
            PlaceError::OverCapacity(calls).to_string(),
            "The concurrent-call cap of gateway pbx (3) is reached."
        );
        let rate = Capacity::GatewayRate {
            gateway: "pbx".into(),
            per_second: 10,
            retry_in_ms: 100,
        };
        assert_eq!(
            rate.to_string(),
            "The calls-per-second cap of gateway pbx (10/s) is reached; retry in 100 ms."
        );
    }

    #[tokio::test]
    async fn a_node_without_gateway_never_pretends_to_dial() {
        let service = NoGateway;
        assert!(!service.available());
        assert_eq!(service.hangup("x").await, Hangup::NotLive);
    }
}
