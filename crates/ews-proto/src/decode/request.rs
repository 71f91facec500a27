//! Request decoding (server side): the SOAP envelope, its headers, the body's single operation,
//! and the three operations `PlayOnPhone`, `GetPhoneCallInformation` and `DisconnectPhoneCall`.
//!
//! The tree is walked with the schema rules of [`super::rules`]; the first rule broken ends the
//! walk and becomes a [`RequestError`], which maps to exactly one EWS fault.

use super::rules::{
    attributes, describe, empty_content, https_hint, no_text, required, sequence, text_only,
    text_violation, violation, xs_language, Particle, Problem,
};
use crate::messages::{
    DisconnectPhoneCall, Fault, GetPhoneCallInformation, PlayOnPhone, Request, RequestEnvelope,
};
use crate::ns;
use crate::types::{
    ConnectingSid, ExchangeVersion, ItemId, PhoneCallId, RequestHeader, RequestServerVersion,
};
use crate::wsdl_ops::WSDL_OPERATIONS;
use crate::xml::{self, Element, Limits, LineIndex, Position, XmlError};

/// A schema rule the request broke, with where it broke it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SchemaViolation {
    /// Where (the offending element's name, or its text).
    pub at: Position,
    /// What, in the style of the .NET schema validator Exchange uses.
    pub violation: String,
}

/// Why a request cannot be processed; each maps to one SOAP fault ([`RequestError::to_fault`]).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not well-formed XML, empty, DOCTYPE, too deep: `ErrorInvalidRequest`.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// `soap:Body` has no operation element: `ErrorInvalidRequest`.
    #[error("the SOAP body contains no operation")]
    NoOperation,
    /// The body breaks the schema: `ErrorSchemaValidation`.
    #[error("schema violation at line {}, position {}: {}", .0.at.line, .0.at.column, .0.violation)]
    Schema(SchemaViolation),
    /// A real EWS operation that openum does not implement: `ErrorInvalidOperation`.
    #[error("the operation {0} is not supported")]
    UnsupportedOperation(String),
    /// `RequestServerVersion/@Version` is not a schema version name: `ErrorInvalidServerVersion`.
    #[error("invalid server version {0:?}")]
    InvalidServerVersion(String),
    /// A version older than Exchange2010: `ErrorIncorrectSchemaVersion`.
    #[error("the operation needs Exchange2010 or later; the request asked for {0:?}")]
    IncorrectSchemaVersion(ExchangeVersion),
    /// The decoder broke its own invariant (a required element its sequence check accepted is
    /// missing): a bug in openum, answered `ErrorInternalServerError`, never blamed on the client.
    #[error("decoder invariant broken: required element {0} missing after the sequence check")]
    Invariant(&'static str),
}

impl RequestError {
    /// The SOAP fault that answers this error.
    pub fn to_fault(&self) -> Fault {
        match self {
            Self::Xml(_) | Self::NoOperation => Fault::invalid_request(),
            Self::Schema(v) => Fault::schema_validation(v.at.line, v.at.column, &v.violation),
            Self::UnsupportedOperation(name) => Fault::invalid_operation(name),
            Self::InvalidServerVersion(_) => Fault::invalid_server_version(),
            Self::IncorrectSchemaVersion(v) => Fault::incorrect_schema_version(*v),
            Self::Invariant(_) => Fault::internal_server_error(),
        }
    }
}

/// Decodes a request, checking the schema rules of the three operations.
pub fn decode_request(input: &[u8], limits: Limits) -> Result<RequestEnvelope, RequestError> {
    let text = xml::document_text(input)?;
    let root = xml::parse(text, limits)?;
    decode_envelope(&root).map_err(|problem| match problem {
        Problem::Request(e) => e,
        Problem::Violation { offset, violation } => RequestError::Schema(SchemaViolation {
            at: LineIndex::new(text).position(offset),
            violation,
        }),
    })
}

fn decode_envelope(root: &Element) -> Result<RequestEnvelope, Problem> {
    if !root.is(ns::SOAP, "Envelope") {
        let hint = if root.is(ns::SOAP12, "Envelope") {
            " SOAP 1.2 is not supported; send a SOAP 1.1 envelope."
        } else {
            ""
        };
        return Err(violation(
            root,
            format!(
                "The root element must be 'Envelope' in namespace '{}', not {}.{hint}{}",
                ns::SOAP,
                describe(root),
                https_hint(&root.ns)
            ),
        ));
    }
    let parts = sequence(
        root,
        &[
            Particle::optional(ns::SOAP, "Header"),
            Particle::required(ns::SOAP, "Body"),
        ],
    )?;
    let header = match parts[0] {
        Some(h) => decode_header(h)?,
        None => RequestHeader::default(),
    };
    if let Some(RequestServerVersion { version }) = header.request_server_version {
        if !version.supports_unified_messaging() {
            return Err(RequestError::IncorrectSchemaVersion(version).into());
        }
    }
    let body = required(parts[1], "Body")?;
    no_text(body)?;
    let operation = match body.children.as_slice() {
        [] => return Err(RequestError::NoOperation.into()),
        [one] => one,
        [_, second, ..] => {
            return Err(violation(
                second,
                format!(
                    "The element 'Body' in namespace '{}' has invalid child element {}. A request carries exactly one operation.",
                    ns::SOAP,
                    describe(second)
                ),
            ))
        }
    };
    let body = decode_operation(operation)?;
    Ok(RequestEnvelope { header, body })
}

fn decode_header(header: &Element) -> Result<RequestHeader, Problem> {
    no_text(header)?;
    let mut out = RequestHeader::default();
    let mut seen_version = false;
    for child in &header.children {
        if child.ns != ns::TYPES {
            continue; // Foreign headers (WS-Security, user headers, ...) are accepted and ignored.
        }
        match child.local.as_str() {
            "RequestServerVersion" => {
                if std::mem::replace(&mut seen_version, true) {
                    return Err(violation(
                        child,
                        "The SOAP header 'RequestServerVersion' appears more than once.".into(),
                    ));
                }
                attributes(child, &["Version"], &["Version"])?;
                empty_content(child)?;
                let value = child.attribute("Version").unwrap_or_default();
                let version = ExchangeVersion::from_wire(value)
                    .ok_or_else(|| RequestError::InvalidServerVersion(value.to_owned()))?;
                out.request_server_version = Some(RequestServerVersion { version });
            }
            "ExchangeImpersonation" => {
                let parts = sequence(child, &[Particle::required(ns::TYPES, "ConnectingSID")])?;
                let sid = required(parts[0], "ConnectingSID")?;
                no_text(sid)?;
                let choice = match sid.children.as_slice() {
                    [one] => one,
                    [] => {
                        return Err(violation(
                            sid,
                            format!(
                                "The element 'ConnectingSID' in namespace '{}' has incomplete content. List of possible elements expected: 'PrincipalName, SID, PrimarySmtpAddress, SmtpAddress' in namespace '{}'.",
                                ns::TYPES, ns::TYPES
                            ),
                        ))
                    }
                    [_, extra, ..] => {
                        return Err(violation(
                            extra,
                            format!(
                                "The element 'ConnectingSID' in namespace '{}' has invalid child element {}.",
                                ns::TYPES,
                                describe(extra)
                            ),
                        ))
                    }
                };
                let value = text_only(choice)?.trim().to_owned();
                let sid = match (choice.ns.as_ref(), choice.local.as_str()) {
                    (ns::TYPES, "PrincipalName") => ConnectingSid::PrincipalName(value),
                    (ns::TYPES, "SID") => ConnectingSid::Sid(value),
                    (ns::TYPES, "PrimarySmtpAddress") => ConnectingSid::PrimarySmtpAddress(value),
                    (ns::TYPES, "SmtpAddress") => ConnectingSid::SmtpAddress(value),
                    _ => {
                        return Err(violation(
                            choice,
                            format!(
                                "The element 'ConnectingSID' in namespace '{}' has invalid child element {}. List of possible elements expected: 'PrincipalName, SID, PrimarySmtpAddress, SmtpAddress' in namespace '{}'.",
                                ns::TYPES,
                                describe(choice),
                                ns::TYPES
                            ),
                        ))
                    }
                };
                out.exchange_impersonation = Some(sid);
            }
            "MailboxCulture" => {
                let culture = text_only(child)?.trim().to_owned();
                if !xs_language(&culture) {
                    return Err(text_violation(
                        child,
                        format!(
                            "The 'MailboxCulture' element is invalid - The value '{culture}' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:language'."
                        ),
                    ));
                }
                out.mailbox_culture = Some(culture);
            }
            "TimeZoneContext" => {
                let id = child
                    .children
                    .iter()
                    .find(|c| c.is(ns::TYPES, "TimeZoneDefinition"))
                    .map(|d| d.attribute("Id").unwrap_or_default().to_owned());
                out.time_zone_id = Some(id.unwrap_or_default());
            }
            _ => {}
        }
    }
    Ok(out)
}

fn decode_operation(op: &Element) -> Result<Request, Problem> {
    if op.ns == ns::MESSAGES {
        match op.local.as_str() {
            "PlayOnPhone" => {
                attributes(op, &[], &[])?;
                let parts = sequence(
                    op,
                    &[
                        Particle::required(ns::MESSAGES, "ItemId"),
                        Particle::required(ns::MESSAGES, "DialString"),
                    ],
                )?;
                let (item, dial) = (
                    required(parts[0], "ItemId")?,
                    required(parts[1], "DialString")?,
                );
                attributes(item, &["Id", "ChangeKey"], &["Id"])?;
                empty_content(item)?;
                let dial_string = text_only(dial)?.to_owned();
                return Ok(Request::PlayOnPhone(PlayOnPhone {
                    item_id: ItemId {
                        id: item.attribute("Id").unwrap_or_default().to_owned(),
                        change_key: item.attribute("ChangeKey").map(str::to_owned),
                    },
                    dial_string,
                }));
            }
            "GetPhoneCallInformation" => {
                let phone_call_id = phone_call_id_child(op)?;
                return Ok(Request::GetPhoneCallInformation(GetPhoneCallInformation {
                    phone_call_id,
                }));
            }
            "DisconnectPhoneCall" => {
                let phone_call_id = phone_call_id_child(op)?;
                return Ok(Request::DisconnectPhoneCall(DisconnectPhoneCall {
                    phone_call_id,
                }));
            }
            name if WSDL_OPERATIONS.contains(&name) => {
                return Err(RequestError::UnsupportedOperation(name.to_owned()).into())
            }
            _ => {}
        }
    }
    Err(violation(
        op,
        format!(
            "The element 'Body' in namespace '{}' has invalid child element {}. List of possible elements expected: 'PlayOnPhone, GetPhoneCallInformation, DisconnectPhoneCall' in namespace '{}'.{}",
            ns::SOAP,
            describe(op),
            ns::MESSAGES,
            https_hint(&op.ns)
        ),
    ))
}

fn phone_call_id_child(op: &Element) -> Result<PhoneCallId, Problem> {
    attributes(op, &[], &[])?;
    let parts = sequence(op, &[Particle::required(ns::MESSAGES, "PhoneCallId")])?;
    let id = required(parts[0], "PhoneCallId")?;
    attributes(id, &["Id"], &["Id"])?;
    empty_content(id)?;
    Ok(PhoneCallId {
        id: id.attribute("Id").unwrap_or_default().to_owned(),
    })
}

#[cfg(test)]
mod invariant_tests {
    use super::*;
    use crate::ResponseCode;

    #[test]
    fn a_broken_decoder_invariant_is_the_servers_fault_not_the_clients() {
        let error = RequestError::Invariant("Body");
        assert_eq!(
            error.to_fault().code,
            ResponseCode::ErrorInternalServerError
        );
        assert!(error.to_string().contains("Body"), "{error}");
    }
}
