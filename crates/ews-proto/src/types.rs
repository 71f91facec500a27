//! Wire types from `types.xsd` (the `t:` namespace) used by the three Play-on-Phone operations.
//!
//! Names follow the schema exactly; each type links its Microsoft reference page.

/// `t:PhoneCallIdType`: an opaque call identifier, compared as an exact string.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/phonecallid>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct PhoneCallId {
    /// The `Id` attribute (required).
    pub id: String,
}

/// `t:ItemIdType`: identifies the voice-mail item to play.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/itemid>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct ItemId {
    /// The `Id` attribute (required).
    pub id: String,
    /// The optional `ChangeKey` attribute.
    pub change_key: Option<String>,
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in schema order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// Parses a wire value (case-sensitive, like the schema enumeration).
            pub fn from_wire(value: &str) -> Option<Self> {
                match value { $(stringify!($variant) => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum! {
    /// `t:PhoneCallStateType`.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/phonecallstate>
    PhoneCallState {
        /// No call yet (queued).
        Idle,
        /// Dialing.
        Connecting,
        /// Ringing.
        Alerted,
        /// Answered.
        Connected,
        /// Ended.
        Disconnected,
        /// Incoming (not used by Play on Phone).
        Incoming,
        /// Being transferred (not used by Play on Phone).
        Transferring,
        /// Being forwarded (not used by Play on Phone).
        Forwarding,
    }
}

wire_enum! {
    /// `t:ConnectionFailureCauseType`.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/connectionfailurecause>
    ConnectionFailureCause {
        /// Not disconnected, or a normal end.
        None,
        /// The callee was busy.
        UserBusy,
        /// The callee did not answer.
        NoAnswer,
        /// The number is not available.
        Unavailable,
        /// Any other failure.
        Other,
    }
}

wire_enum! {
    /// `t:ResponseClassType`.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responseclass>
    ResponseClass {
        /// The request succeeded.
        Success,
        /// Partial success (openum never sends it).
        Warning,
        /// The request failed.
        Error,
    }
}

/// `t:PhoneCallInformationType`: the state of a call.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/phonecallinformation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PhoneCallInformation {
    /// `t:PhoneCallState`.
    pub phone_call_state: PhoneCallState,
    /// `t:ConnectionFailureCause`.
    pub connection_failure_cause: ConnectionFailureCause,
    /// `t:SIPResponseText`, omitted while no SIP response was received.
    pub sip_response_text: Option<String>,
    /// `t:SIPResponseCode` (`xs:int`).
    pub sip_response_code: Option<i32>,
}

/// `t:ServerVersionInfo`: the response header naming the server's version.
///
/// All four numbers are always written: the .NET client parses them without a null check.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/serverversioninfo>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerVersionInfo {
    /// `MajorVersion`.
    pub major_version: i32,
    /// `MinorVersion`.
    pub minor_version: i32,
    /// `MajorBuildNumber`.
    pub major_build_number: i32,
    /// `MinorBuildNumber`.
    pub minor_build_number: i32,
    /// `Version`, the server's schema version name.
    pub version: String,
}

impl Default for ServerVersionInfo {
    /// openum's default (decisions §3): Exchange 2016 CU build numbers, schema `V2017_07_11`.
    fn default() -> Self {
        Self {
            major_version: 15,
            minor_version: 1,
            major_build_number: 2507,
            minor_build_number: 6,
            version: "V2017_07_11".into(),
        }
    }
}

wire_enum! {
    /// `t:ExchangeVersionType`, as extended by every later schema up to `V2017_07_11`.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/requestserverversion>
    #[allow(non_camel_case_types, reason = "the schema's enumeration values, verbatim")]
    ExchangeVersion {
        /// Exchange 2007 RTM.
        Exchange2007,
        /// Exchange 2007 SP1.
        Exchange2007_SP1,
        /// Exchange 2009 (pre-release 2010 schema).
        Exchange2009,
        /// Exchange 2010.
        Exchange2010,
        /// Exchange 2010 SP1.
        Exchange2010_SP1,
        /// Exchange 2010 SP2 (also used by SP3).
        Exchange2010_SP2,
        /// Exchange 2012.
        Exchange2012,
        /// Exchange 2013.
        Exchange2013,
        /// Exchange 2013 SP1.
        Exchange2013_SP1,
        /// Exchange 2015.
        Exchange2015,
        /// Exchange 2016.
        Exchange2016,
        /// Schema of 2015-10-05.
        V2015_10_05,
        /// Schema of 2016-01-06.
        V2016_01_06,
        /// Schema of 2016-04-13.
        V2016_04_13,
        /// Schema of 2016-07-13.
        V2016_07_13,
        /// Schema of 2016-10-10.
        V2016_10_10,
        /// Schema of 2017-01-07.
        V2017_01_07,
        /// Schema of 2017-04-14.
        V2017_04_14,
        /// Schema of 2017-07-11.
        V2017_07_11,
    }
}

impl ExchangeVersion {
    /// Whether the Play-on-Phone operations exist in this schema version (Exchange2010 and later).
    pub fn supports_unified_messaging(self) -> bool {
        !matches!(
            self,
            Self::Exchange2007 | Self::Exchange2007_SP1 | Self::Exchange2009
        )
    }
}

/// `t:RequestServerVersion` request header.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RequestServerVersion {
    /// The requested schema version.
    pub version: ExchangeVersion,
}

/// The principal named by `t:ExchangeImpersonation/t:ConnectingSID` (`t:ConnectingSIDType`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ConnectingSid {
    /// `t:PrincipalName`.
    PrincipalName(String),
    /// `t:SID`.
    Sid(String),
    /// `t:PrimarySmtpAddress`.
    PrimarySmtpAddress(String),
    /// `t:SmtpAddress`.
    SmtpAddress(String),
}

impl ConnectingSid {
    /// The element name of this choice.
    pub fn element_name(&self) -> &'static str {
        match self {
            Self::PrincipalName(_) => "PrincipalName",
            Self::Sid(_) => "SID",
            Self::PrimarySmtpAddress(_) => "PrimarySmtpAddress",
            Self::SmtpAddress(_) => "SmtpAddress",
        }
    }

    /// The named principal.
    pub fn value(&self) -> &str {
        match self {
            Self::PrincipalName(v)
            | Self::Sid(v)
            | Self::PrimarySmtpAddress(v)
            | Self::SmtpAddress(v) => v,
        }
    }
}

/// The SOAP headers of a request that openum reads. Other headers are accepted and ignored.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct RequestHeader {
    /// `t:RequestServerVersion`; absent means Exchange2010 (decisions §3).
    pub request_server_version: Option<RequestServerVersion>,
    /// `t:ExchangeImpersonation`.
    pub exchange_impersonation: Option<ConnectingSid>,
    /// `t:MailboxCulture` (an RFC 3066 culture name).
    pub mailbox_culture: Option<String>,
    /// `t:TimeZoneContext/t:TimeZoneDefinition/@Id`, accepted and ignored by these operations.
    pub time_zone_id: Option<String>,
}
