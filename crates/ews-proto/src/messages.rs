//! Wire types from `messages.xsd` (the `m:` namespace): the three operations, their responses, and
//! the SOAP envelopes and faults that carry them.

use crate::response_code::ResponseCode;
use crate::types::{
    ItemId, PhoneCallId, PhoneCallInformation, RequestHeader, ResponseClass, ServerVersionInfo,
};

/// `m:PlayOnPhone` (`m:PlayOnPhoneType`).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/playonphone-operation-ews>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PlayOnPhone {
    /// `m:ItemId`: the voice-mail item to play.
    pub item_id: ItemId,
    /// `m:DialString`: the number to call, as the user typed it.
    pub dial_string: String,
}

/// `m:GetPhoneCallInformation` (`m:GetPhoneCallInformationType`).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getphonecallinformation-operation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetPhoneCallInformation {
    /// `m:PhoneCallId`.
    pub phone_call_id: PhoneCallId,
}

/// `m:DisconnectPhoneCall` (`m:DisconnectPhoneCallType`).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/disconnectphonecall-operation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DisconnectPhoneCall {
    /// `m:PhoneCallId`.
    pub phone_call_id: PhoneCallId,
}

/// The body of a request: one of the three operations.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Request {
    /// `m:PlayOnPhone`.
    PlayOnPhone(PlayOnPhone),
    /// `m:GetPhoneCallInformation`.
    GetPhoneCallInformation(GetPhoneCallInformation),
    /// `m:DisconnectPhoneCall`.
    DisconnectPhoneCall(DisconnectPhoneCall),
}

impl Request {
    /// The operation's element name.
    pub fn operation_name(&self) -> &'static str {
        match self {
            Self::PlayOnPhone(_) => "PlayOnPhone",
            Self::GetPhoneCallInformation(_) => "GetPhoneCallInformation",
            Self::DisconnectPhoneCall(_) => "DisconnectPhoneCall",
        }
    }
}

/// A request envelope: headers plus one operation.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RequestEnvelope {
    /// The SOAP headers openum understands.
    pub header: RequestHeader,
    /// The operation.
    pub body: Request,
}

/// One `t:Value` of a `m:MessageXml` (e.g. `BackOffMilliseconds`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MessageXmlValue {
    /// The `Name` attribute.
    pub name: String,
    /// The element text.
    pub value: String,
}

/// The common part of every response (`m:ResponseMessageType`).
///
/// Written in the order the clients require: `MessageText`, `ResponseCode`,
/// `DescriptiveLinkKey`, `MessageXml`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ResponseMessage {
    /// `ResponseClass` attribute.
    pub response_class: ResponseClass,
    /// `m:MessageText`.
    pub message_text: Option<String>,
    /// `m:ResponseCode`.
    pub response_code: Option<ResponseCode>,
    /// `m:DescriptiveLinkKey` (always 0 when present).
    pub descriptive_link_key: Option<i32>,
    /// `m:MessageXml` values.
    pub message_xml: Option<Vec<MessageXmlValue>>,
}

impl ResponseMessage {
    /// A success: `ResponseCode` `NoError` and nothing else.
    pub fn success() -> Self {
        Self {
            response_class: ResponseClass::Success,
            message_text: None,
            response_code: Some(ResponseCode::NoError),
            descriptive_link_key: None,
            message_xml: None,
        }
    }

    /// An error in the shape Exchange and its clients use: `MessageText`, `ResponseCode`,
    /// `DescriptiveLinkKey` = 0.
    pub fn error(code: ResponseCode, text: impl Into<String>) -> Self {
        Self {
            response_class: ResponseClass::Error,
            message_text: Some(text.into()),
            response_code: Some(code),
            descriptive_link_key: Some(0),
            message_xml: None,
        }
    }

    /// Whether this is a success.
    pub fn is_success(&self) -> bool {
        self.response_class == ResponseClass::Success
    }
}

/// `m:PlayOnPhoneResponse`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PlayOnPhoneResponse {
    /// Class, code and text.
    pub message: ResponseMessage,
    /// `m:PhoneCallId` of the new call (present on success).
    pub phone_call_id: Option<PhoneCallId>,
}

/// `m:GetPhoneCallInformationResponse`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetPhoneCallInformationResponse {
    /// Class, code and text.
    pub message: ResponseMessage,
    /// `m:PhoneCallInformation` (present on success).
    pub phone_call_information: Option<PhoneCallInformation>,
}

/// `m:DisconnectPhoneCallResponse`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DisconnectPhoneCallResponse {
    /// Class, code and text.
    pub message: ResponseMessage,
}

/// The body of a response to one of the three operations.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Response {
    /// `m:PlayOnPhoneResponse`.
    PlayOnPhone(PlayOnPhoneResponse),
    /// `m:GetPhoneCallInformationResponse`.
    GetPhoneCallInformation(GetPhoneCallInformationResponse),
    /// `m:DisconnectPhoneCallResponse`.
    DisconnectPhoneCall(DisconnectPhoneCallResponse),
}

impl Response {
    /// The response element's name.
    pub fn element_name(&self) -> &'static str {
        match self {
            Self::PlayOnPhone(_) => "PlayOnPhoneResponse",
            Self::GetPhoneCallInformation(_) => "GetPhoneCallInformationResponse",
            Self::DisconnectPhoneCall(_) => "DisconnectPhoneCallResponse",
        }
    }

    /// The common response part.
    pub fn message(&self) -> &ResponseMessage {
        match self {
            Self::PlayOnPhone(r) => &r.message,
            Self::GetPhoneCallInformation(r) => &r.message,
            Self::DisconnectPhoneCall(r) => &r.message,
        }
    }

    /// An error response of the kind that answers `request`.
    pub fn error_for(request: &Request, code: ResponseCode, text: impl Into<String>) -> Self {
        let message = ResponseMessage::error(code, text);
        match request {
            Request::PlayOnPhone(_) => Self::PlayOnPhone(PlayOnPhoneResponse {
                message,
                phone_call_id: None,
            }),
            Request::GetPhoneCallInformation(_) => {
                Self::GetPhoneCallInformation(GetPhoneCallInformationResponse {
                    message,
                    phone_call_information: None,
                })
            }
            Request::DisconnectPhoneCall(_) => {
                Self::DisconnectPhoneCall(DisconnectPhoneCallResponse { message })
            }
        }
    }
}

/// A response envelope: the `ServerVersionInfo` header and the response.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ResponseEnvelope {
    /// `t:ServerVersionInfo` in `s:Header`.
    pub server_version_info: Option<ServerVersionInfo>,
    /// The response element.
    pub body: Response,
}

/// What `t:MessageXml` of a fault's `detail` carries.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum FaultMessageXml {
    /// Where and why schema validation failed.
    SchemaViolation {
        /// `t:LineNumber`.
        line_number: u32,
        /// `t:LinePosition`.
        line_position: u32,
        /// `t:Violation`.
        violation: String,
    },
    /// `t:Value` elements (e.g. `BackOffMilliseconds` of `ErrorServerBusy`).
    Values(Vec<MessageXmlValue>),
}

/// A SOAP 1.1 fault in the shape Exchange sends (HTTP 500).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Fault {
    /// The code, written as `faultcode` (`a:` bound to the types namespace) and
    /// `detail/e:ResponseCode`.
    pub code: ResponseCode,
    /// `faultstring` (with `xml:lang="en-US"`).
    pub fault_string: String,
    /// `detail/e:Message`.
    pub message: String,
    /// `detail/t:MessageXml`.
    pub message_xml: Option<FaultMessageXml>,
}

/// What a response document holds: a response or a fault.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ResponseDocument {
    /// A response element (HTTP 200).
    Response(ResponseEnvelope),
    /// A SOAP fault (HTTP 500).
    Fault(Fault),
}
