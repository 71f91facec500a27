//! Where a call is and why it ended: the domain vocabulary.
//!
//! The SIP engine produces these, the store keeps them by name, and the EWS seam maps them to
//! the wire's `PhoneCallState` / `ConnectionFailureCause`. There is no other copy.

/// Where a call is in its life.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CallState {
    /// INVITE sent (or about to be).
    Connecting,
    /// The callee is ringing (180/183).
    Alerted,
    /// Answered (2xx acknowledged); the message is playing.
    Connected,
    /// Ended.
    Disconnected,
}

/// Why a call ended (or `None` while it has not, or when it ended normally).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Cause {
    /// Not ended, or ended normally (BYE either way, DisconnectPhoneCall, end of message).
    None,
    /// 486, 600.
    UserBusy,
    /// Ring timeout (CANCEL → 487), or 480/408 after ringing.
    NoAnswer,
    /// 404, 410, 484, 485, 604, 5xx, 480/408 without ringing, no response at all (Timer B).
    Unavailable,
    /// 603, authentication failure, 403, codec mismatch, transport failure, anything else.
    Other,
}

/// A storage name that names no state or cause: the row was written by something else.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// `call state` or `failure cause`.
    pub kind: &'static str,
    /// What was found.
    pub name: String,
}

impl CallState {
    /// Every state, in life order.
    pub const ALL: [Self; 4] = [
        Self::Connecting,
        Self::Alerted,
        Self::Connected,
        Self::Disconnected,
    ];

    /// The storage name (also the EWS name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting",
            Self::Alerted => "Alerted",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
        }
    }

    /// Whether the call has ended.
    pub fn is_final(self) -> bool {
        self == Self::Disconnected
    }
}

impl std::str::FromStr for CallState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(Self::ALL, Self::as_str, "call state", s)
    }
}

impl Cause {
    /// Every cause.
    pub const ALL: [Self; 5] = [
        Self::None,
        Self::UserBusy,
        Self::NoAnswer,
        Self::Unavailable,
        Self::Other,
    ];

    /// The storage name (also the EWS name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::UserBusy => "UserBusy",
            Self::NoAnswer => "NoAnswer",
            Self::Unavailable => "Unavailable",
            Self::Other => "Other",
        }
    }
}

impl std::str::FromStr for Cause {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_name(Self::ALL, Self::as_str, "failure cause", s)
    }
}

/// The value of `all` whose storage name is exactly `name`.
fn by_name<T: Copy, const N: usize>(
    all: [T; N],
    storage_name: fn(T) -> &'static str,
    kind: &'static str,
    name: &str,
) -> Result<T, UnknownName> {
    all.into_iter()
        .find(|v| storage_name(*v) == name)
        .ok_or_else(|| UnknownName {
            kind,
            name: name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_causes_round_trip_through_storage_names() {
        for state in CallState::ALL {
            assert_eq!(state.as_str().parse::<CallState>(), Ok(state));
        }
        for cause in Cause::ALL {
            assert_eq!(cause.as_str().parse::<Cause>(), Ok(cause));
        }
    }

    #[test]
    fn unknown_storage_names_are_errors_that_name_what_was_found() {
        let error = "connected".parse::<CallState>().unwrap_err();
        assert_eq!(error.to_string(), "unknown call state \"connected\"");
        assert!("Idle".parse::<CallState>().is_err());
        assert!("Busy".parse::<Cause>().is_err());
    }

    #[test]
    fn only_disconnected_is_final() {
        let finals: Vec<_> = CallState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(finals, [CallState::Disconnected]);
    }
}
