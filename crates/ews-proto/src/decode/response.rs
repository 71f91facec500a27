//! Response decoding (client side): a response to one of the three operations, or a SOAP fault,
//! read as tolerantly as the Microsoft clients read them.

use crate::messages::{
    DisconnectPhoneCallResponse, Fault, FaultMessageXml, GetPhoneCallInformationResponse,
    MessageXmlValue, PlayOnPhoneResponse, Response, ResponseDocument, ResponseEnvelope,
    ResponseMessage,
};
use crate::ns;
use crate::response_code::ResponseCode;
use crate::types::{
    ConnectionFailureCause, PhoneCallId, PhoneCallInformation, PhoneCallState, ResponseClass,
    ServerVersionInfo,
};
use crate::xml::{self, Element, Limits, XmlError};

/// Why a response document could not be decoded (client side).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not well-formed XML.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// Well-formed, but not an EWS response of these operations.
    #[error("unexpected response content: {0}")]
    Unexpected(String),
}

/// Decodes a response document: a response to one of the three operations, or a SOAP fault.
///
/// Like the Microsoft clients, the children of `PhoneCallInformation` are matched by local name
/// in any order and unknown children are skipped; enumeration values are case-sensitive.
pub fn decode_response(input: &[u8]) -> Result<ResponseDocument, ResponseError> {
    let root = xml::parse(xml::document_text(input)?, Limits::default())?;
    if !root.is(ns::SOAP, "Envelope") {
        return Err(unexpected(format!("root element is {}", root.qualified())));
    }
    let mut server_version_info = None;
    let mut body = None;
    for child in &root.children {
        if child.is(ns::SOAP, "Header") {
            if let Some(info) = child
                .children
                .iter()
                .find(|c| c.is(ns::TYPES, "ServerVersionInfo"))
            {
                server_version_info = Some(decode_server_version_info(info)?);
            }
        } else if child.is(ns::SOAP, "Body") {
            body = Some(child);
        }
    }
    let body = body.ok_or_else(|| unexpected("no soap:Body".into()))?;
    let first = body
        .children
        .first()
        .ok_or_else(|| unexpected("empty soap:Body".into()))?;
    if first.is(ns::SOAP, "Fault") {
        return decode_fault(first).map(ResponseDocument::Fault);
    }
    if first.ns != ns::MESSAGES {
        return Err(unexpected(format!("body element {}", first.qualified())));
    }
    let message = decode_response_message(first)?;
    let payload = |name: &str| first.children.iter().find(|c| c.is(ns::MESSAGES, name));
    let response = match first.local.as_str() {
        "PlayOnPhoneResponse" => Response::PlayOnPhone(PlayOnPhoneResponse {
            message,
            phone_call_id: payload("PhoneCallId")
                .map(|p| {
                    p.attribute("Id")
                        .map(|id| PhoneCallId { id: id.to_owned() })
                        .ok_or_else(|| unexpected("PhoneCallId without Id".into()))
                })
                .transpose()?,
        }),
        "GetPhoneCallInformationResponse" => {
            Response::GetPhoneCallInformation(GetPhoneCallInformationResponse {
                message,
                phone_call_information: payload("PhoneCallInformation")
                    .map(decode_phone_call_information)
                    .transpose()?,
            })
        }
        "DisconnectPhoneCallResponse" => {
            Response::DisconnectPhoneCall(DisconnectPhoneCallResponse { message })
        }
        other => return Err(unexpected(format!("unknown response element {other}"))),
    };
    Ok(ResponseDocument::Response(ResponseEnvelope {
        server_version_info,
        body: response,
    }))
}

pub(crate) fn decode_server_version_info(el: &Element) -> Result<ServerVersionInfo, ResponseError> {
    let int = |name: &str| -> Result<i32, ResponseError> {
        el.attribute(name)
            .ok_or_else(|| unexpected(format!("ServerVersionInfo without {name}")))?
            .trim()
            .parse()
            .map_err(|_| unexpected(format!("ServerVersionInfo {name} is not an integer")))
    };
    Ok(ServerVersionInfo {
        major_version: int("MajorVersion")?,
        minor_version: int("MinorVersion")?,
        major_build_number: int("MajorBuildNumber")?,
        minor_build_number: int("MinorBuildNumber")?,
        version: el.attribute("Version").unwrap_or_default().to_owned(),
    })
}

fn decode_response_message(el: &Element) -> Result<ResponseMessage, ResponseError> {
    let class = el
        .attribute("ResponseClass")
        .ok_or_else(|| unexpected("response without ResponseClass".into()))?;
    let response_class = ResponseClass::from_wire(class)
        .ok_or_else(|| unexpected(format!("unknown ResponseClass {class:?}")))?;
    let child = |name: &str| el.children.iter().find(|c| c.is(ns::MESSAGES, name));
    let response_code = child("ResponseCode")
        .map(|c| {
            ResponseCode::from_wire(c.text.trim())
                .ok_or_else(|| unexpected(format!("unknown ResponseCode {:?}", c.text)))
        })
        .transpose()?;
    let descriptive_link_key = child("DescriptiveLinkKey")
        .map(|c| {
            c.text
                .trim()
                .parse()
                .map_err(|_| unexpected("DescriptiveLinkKey is not an integer".into()))
        })
        .transpose()?;
    Ok(ResponseMessage {
        response_class,
        message_text: child("MessageText").map(|c| c.text.clone()),
        response_code,
        descriptive_link_key,
        message_xml: child("MessageXml").map(message_xml_values),
    })
}

pub(crate) fn message_xml_values(el: &Element) -> Vec<MessageXmlValue> {
    el.children
        .iter()
        .filter(|c| c.is(ns::TYPES, "Value"))
        .map(|c| MessageXmlValue {
            name: c.attribute("Name").unwrap_or_default().to_owned(),
            value: c.text.clone(),
        })
        .collect()
}

fn decode_phone_call_information(el: &Element) -> Result<PhoneCallInformation, ResponseError> {
    let mut state = None;
    let mut cause = None;
    let mut text = None;
    let mut code = None;
    for child in &el.children {
        match child.local.as_str() {
            "PhoneCallState" => {
                state = Some(PhoneCallState::from_wire(child.text.trim()).ok_or_else(|| {
                    unexpected(format!("unknown PhoneCallState {:?}", child.text))
                })?);
            }
            "ConnectionFailureCause" => {
                cause = Some(
                    ConnectionFailureCause::from_wire(child.text.trim()).ok_or_else(|| {
                        unexpected(format!("unknown ConnectionFailureCause {:?}", child.text))
                    })?,
                );
            }
            "SIPResponseText" => text = Some(child.text.clone()),
            "SIPResponseCode" => {
                code = Some(
                    child
                        .text
                        .trim()
                        .parse()
                        .map_err(|_| unexpected("SIPResponseCode is not an integer".into()))?,
                );
            }
            _ => {}
        }
    }
    Ok(PhoneCallInformation {
        phone_call_state: state
            .ok_or_else(|| unexpected("PhoneCallInformation without PhoneCallState".into()))?,
        connection_failure_cause: cause.ok_or_else(|| {
            unexpected("PhoneCallInformation without ConnectionFailureCause".into())
        })?,
        sip_response_text: text,
        sip_response_code: code,
    })
}

pub(crate) fn decode_fault(el: &Element) -> Result<Fault, ResponseError> {
    let child = |name: &str| {
        el.children
            .iter()
            .find(|c| c.ns.is_empty() && c.local == name)
    };
    let fault_code = child("faultcode").map(|c| c.text.trim().to_owned());
    let fault_string = child("faultstring")
        .map(|c| c.text.clone())
        .unwrap_or_default();
    let detail = child("detail");
    let detail_child =
        |name: &str| detail.and_then(|d| d.children.iter().find(|c| c.is(ns::ERRORS, name)));
    let code_text = detail_child("ResponseCode")
        .map(|c| c.text.trim().to_owned())
        .or_else(|| fault_code.map(|c| c.rsplit(':').next().unwrap_or_default().to_owned()))
        .ok_or_else(|| unexpected("fault without a code".into()))?;
    let code = ResponseCode::from_wire(&code_text)
        .ok_or_else(|| unexpected(format!("unknown fault code {code_text:?}")))?;
    let message = detail_child("Message")
        .map(|c| c.text.clone())
        .unwrap_or_default();
    let message_xml = detail
        .and_then(|d| d.children.iter().find(|c| c.is(ns::TYPES, "MessageXml")))
        .map(|mx| {
            let field = |name: &str| {
                mx.children
                    .iter()
                    .find(|c| c.is(ns::TYPES, name))
                    .map(|c| c.text.trim().to_owned())
            };
            match (field("LineNumber"), field("LinePosition")) {
                // A server that sends non-numeric positions still sent a schema violation;
                // its text is kept and the position reads 0 (unknown), as .NET does.
                (Some(line), Some(position)) => FaultMessageXml::SchemaViolation {
                    line_number: line.parse().unwrap_or_default(),
                    line_position: position.parse().unwrap_or_default(),
                    violation: field("Violation").unwrap_or_default(),
                },
                _ => FaultMessageXml::Values(message_xml_values(mx)),
            }
        });
    Ok(Fault {
        code,
        fault_string,
        message,
        message_xml,
    })
}

fn unexpected(what: String) -> ResponseError {
    ResponseError::Unexpected(what)
}
