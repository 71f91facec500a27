//! Calls in domain terms: records, states, the call service that places them, and id minting.
//!
//! These types never appear on the wire; `ews.rs` is the one place that maps them to
//! `PhoneCallInformation`.

use async_trait::async_trait;
use base64::Engine as _;

/// Where a call is in its life.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CallState {
    /// Accepted, not dialled yet.
    Idle,
    /// INVITE sent.
    Connecting,
    /// The callee is ringing (180/183).
    Alerted,
    /// Answered; the message is playing.
    Connected,
    /// Ended.
    Disconnected,
}

impl CallState {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connecting => "Connecting",
            Self::Alerted => "Alerted",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Idle,
            Self::Connecting,
            Self::Alerted,
            Self::Connected,
            Self::Disconnected,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Why a call ended (or `None` while it has not, or when it ended normally).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum FailureCause {
    /// No failure.
    None,
    /// 486 / 600.
    UserBusy,
    /// Ring timeout, 487, 480/408 after alerting.
    NoAnswer,
    /// 404, 410, 484, 485, 604, 5xx, Timer B.
    Unavailable,
    /// Anything else.
    Other,
}

impl FailureCause {
    /// Storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::UserBusy => "UserBusy",
            Self::NoAnswer => "NoAnswer",
            Self::Unavailable => "Unavailable",
            Self::Other => "Other",
        }
    }

    /// Parses a storage name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::UserBusy,
            Self::NoAnswer,
            Self::Unavailable,
            Self::Other,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The durable record of one call. Its `Debug` output redacts the dialled number.
#[derive(Clone, Eq, PartialEq)]
pub struct CallRecord {
    /// The PhoneCallId, compared as an exact string.
    pub id: String,
    /// The user who placed it.
    pub owner: String,
    /// The node that owns its signalling.
    pub node: String,
    /// Current state.
    pub state: CallState,
    /// Failure cause.
    pub cause: FailureCause,
    /// Last final (or latest provisional) SIP status code.
    pub sip_code: Option<u16>,
    /// Its reason phrase.
    pub sip_text: Option<String>,
    /// The normalised number dialled.
    pub dialled: String,
    /// The voice-mail item played.
    pub item_id: String,
    /// Unix seconds when the call was accepted.
    pub created_at: i64,
    /// Unix seconds when it ended.
    pub ended_at: Option<i64>,
}

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Dialled numbers are personal data: only the last two digits are shown.
        let tail: String = self
            .dialled
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        f.debug_struct("CallRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("node", &self.node)
            .field("state", &self.state)
            .field("cause", &self.cause)
            .field("sip_code", &self.sip_code)
            .field("sip_text", &self.sip_text)
            .field("dialled", &format!("…{tail}"))
            .field("item_id", &self.item_id)
            .field("created_at", &self.created_at)
            .field("ended_at", &self.ended_at)
            .finish()
    }
}

impl CallRecord {
    /// Whether the call has ended.
    pub fn is_finished(&self) -> bool {
        self.state == CallState::Disconnected
    }
}

/// Why the call service could not take a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// No gateway is configured or every gateway is disabled.
    #[error("no SIP gateway is configured")]
    NoGateway,
    /// A concurrency cap is reached; the text names the cap.
    #[error("{0}")]
    OverCapacity(String),
    /// The item's audio cannot be played.
    #[error("the message audio cannot be played: {0}")]
    Audio(String),
    /// The engine failed to start the call.
    #[error("the call could not be started: {0}")]
    Failed(String),
}

/// What a hang-up request found.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Hangup {
    /// The call was live here and is being ended; the service records the final state.
    Ending,
    /// The service has no live call with that id (it ended, or was never running here).
    NotLive,
}

/// Places and ends calls. The SIP engine implements it; so do test doubles.
#[async_trait]
pub trait CallService: Send + Sync + 'static {
    /// Whether a gateway is available at all (checked before any other work is done).
    fn available(&self) -> bool;
    /// Starts dialling `call` (whose record is already stored in state `Connecting`).
    /// Returns at once; progress is written to the store as the dialogue advances.
    async fn place(&self, call: &CallRecord) -> Result<(), PlaceError>;
    /// Ends the call with this id (CANCEL before answer, BYE after).
    async fn hangup(&self, id: &str) -> Hangup;
    /// Figures for `/metrics` (RTP counters; live calls are counted by the registry).
    fn figures(&self) -> crate::metrics::CallServiceFigures {
        crate::metrics::CallServiceFigures::default()
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

/// Mints a PhoneCallId: URL-safe unpadded base64 of `<uuid-v4>@<node>` (decisions §7) — 122
/// random bits, XML- and URL-safe, and naming the owning node.
pub fn mint_phone_call_id(node: &str) -> String {
    let raw = format!("{}@{node}", uuid::Uuid::new_v4());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// The node named in a PhoneCallId minted by [`mint_phone_call_id`], if it is one.
pub fn phone_call_id_node(id: &str) -> Option<String> {
    split_phone_call_id(id).map(|(_, node)| node)
}

/// The UUID part of a PhoneCallId minted by [`mint_phone_call_id`], if it is one.
pub fn phone_call_id_uuid(id: &str) -> Option<String> {
    split_phone_call_id(id).map(|(uuid, _)| uuid)
}

fn split_phone_call_id(id: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (uuid, node) = raw.split_once('@')?;
    uuid::Uuid::parse_str(uuid).ok()?;
    Some((uuid.to_owned(), node.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_call_ids_are_unique_url_safe_and_name_their_node() {
        let a = mint_phone_call_id("node-1");
        let b = mint_phone_call_id("node-1");
        assert_ne!(a, b);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(phone_call_id_node(&a).as_deref(), Some("node-1"));
        assert_eq!(phone_call_id_node("OWVl4NWb3N29t"), None);
    }

    #[test]
    fn states_and_causes_round_trip_through_storage_names() {
        for s in ["Idle", "Connecting", "Alerted", "Connected", "Disconnected"] {
            assert_eq!(CallState::parse(s).unwrap().as_str(), s);
        }
        for c in ["None", "UserBusy", "NoAnswer", "Unavailable", "Other"] {
            assert_eq!(FailureCause::parse(c).unwrap().as_str(), c);
        }
        assert!(CallState::parse("connected").is_none());
    }
}
