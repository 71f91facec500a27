//! The durable record of one call.

use crate::state::{CallState, Cause};
use crate::time::UnixSeconds;

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
    pub cause: Cause,
    /// Last final (or latest provisional) SIP status code.
    pub sip_code: Option<u16>,
    /// Its reason phrase.
    pub sip_text: Option<String>,
    /// The normalised number dialled.
    pub dialled: String,
    /// The voice-mail item played.
    pub item_id: String,
    /// When the call was accepted.
    pub created_at: UnixSeconds,
    /// When it ended.
    pub ended_at: Option<UnixSeconds>,
}

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Dialled numbers are personal data: only the last two digits are shown.
        let skip = self.dialled.chars().count().saturating_sub(2);
        let tail: String = self.dialled.chars().skip(skip).collect();
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
    /// A call just accepted: `Connecting`, no cause, no SIP status yet, not ended.
    pub fn dialling(
        id: impl Into<String>,
        owner: impl Into<String>,
        node: impl Into<String>,
        dialled: impl Into<String>,
        item_id: impl Into<String>,
        created_at: UnixSeconds,
    ) -> Self {
        Self {
            id: id.into(),
            owner: owner.into(),
            node: node.into(),
            state: CallState::Connecting,
            cause: Cause::None,
            sip_code: None,
            sip_text: None,
            dialled: dialled.into(),
            item_id: item_id.into(),
            created_at,
            ended_at: None,
        }
    }

    /// Whether the call has ended.
    pub fn is_finished(&self) -> bool {
        self.state.is_final()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_only_the_last_two_digits_of_the_number() {
        let record = CallRecord::dialling("id", "alice", "n1", "4255551234", "item", 0);
        let shown = format!("{record:?}");
        assert!(shown.contains("\"…34\""), "{shown}");
        assert!(!shown.contains("4255551234"), "{shown}");
    }
}
