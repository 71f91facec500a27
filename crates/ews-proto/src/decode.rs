//! Decoding: requests (server side, schema-checked) and responses (client side, tolerant the way
//! the Microsoft clients are).

use crate::messages::{
    DisconnectPhoneCall, DisconnectPhoneCallResponse, Fault, FaultMessageXml,
    GetPhoneCallInformation, GetPhoneCallInformationResponse, MessageXmlValue, PlayOnPhone,
    PlayOnPhoneResponse, Request, RequestEnvelope, Response, ResponseDocument, ResponseEnvelope,
    ResponseMessage,
};
use crate::ns;
use crate::response_code::ResponseCode;
use crate::types::{
    ConnectingSid, ConnectionFailureCause, ExchangeVersion, ItemId, PhoneCallId,
    PhoneCallInformation, PhoneCallState, RequestHeader, RequestServerVersion, ResponseClass,
    ServerVersionInfo,
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
        }
    }
}

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

/// A request problem found while walking the tree; schema violations carry a byte offset that
/// is turned into a line and column only when reported.
enum Problem {
    Request(RequestError),
    Violation { offset: usize, violation: String },
}

impl From<RequestError> for Problem {
    fn from(e: RequestError) -> Self {
        Self::Request(e)
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
    let body = required(parts[1])?;
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
                let sid = required(parts[0])?;
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
                let valid = !culture.is_empty()
                    && culture.split('-').all(|part| {
                        (1..=8).contains(&part.len())
                            && part.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                if !valid {
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
                let (item, dial) = (required(parts[0])?, required(parts[1])?);
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
    let id = required(parts[0])?;
    attributes(id, &["Id"], &["Id"])?;
    empty_content(id)?;
    Ok(PhoneCallId {
        id: id.attribute("Id").unwrap_or_default().to_owned(),
    })
}

/// `sequence` never returns `None` for a required particle; this keeps that invariant explicit
/// without a panic.
fn required(found: Option<&Element>) -> Result<&Element, Problem> {
    found.ok_or(Problem::Request(RequestError::NoOperation))
}

/// One element of an `xs:sequence` (every particle here has maxOccurs = 1).
struct Particle {
    ns: &'static str,
    name: &'static str,
    required: bool,
}

impl Particle {
    const fn required(ns: &'static str, name: &'static str) -> Self {
        Self {
            ns,
            name,
            required: true,
        }
    }

    const fn optional(ns: &'static str, name: &'static str) -> Self {
        Self {
            ns,
            name,
            required: false,
        }
    }
}

/// Matches `parent`'s children against a sequence, returning the element for each particle.
fn sequence<'a>(
    parent: &'a Element,
    particles: &[Particle],
) -> Result<Vec<Option<&'a Element>>, Problem> {
    no_text(parent)?;
    let mut found = vec![None; particles.len()];
    let mut next = 0;
    for child in &parent.children {
        let matched = particles[next..]
            .iter()
            .position(|p| child.is(p.ns, p.name))
            .map(|offset| next + offset);
        let skipped_required = matched
            .map(|m| particles[next..m].iter().any(|p| p.required))
            .unwrap_or(true);
        match matched {
            Some(m) if !skipped_required => {
                found[m] = Some(child);
                next = m + 1;
            }
            _ => {
                return Err(violation(
                    child,
                    format!(
                        "The element '{}' in namespace '{}' has invalid child element {}.{}{}",
                        parent.local,
                        parent.ns,
                        describe(child),
                        expected(&particles[next..]),
                        https_hint(&child.ns)
                    ),
                ))
            }
        }
    }
    if particles[next..].iter().any(|p| p.required) {
        return Err(Problem::Violation {
            offset: parent.at,
            violation: format!(
                "The element '{}' in namespace '{}' has incomplete content.{}",
                parent.local,
                parent.ns,
                expected(&particles[next..])
            ),
        });
    }
    Ok(found)
}

fn expected(rest: &[Particle]) -> String {
    let mut names = Vec::new();
    for p in rest {
        names.push(p);
        if p.required {
            break;
        }
    }
    match names.as_slice() {
        [] => String::new(),
        [first, ..] => format!(
            " List of possible elements expected: '{}' in namespace '{}'.",
            names.iter().map(|p| p.name).collect::<Vec<_>>().join(", "),
            first.ns
        ),
    }
}

fn attributes(el: &Element, allowed: &[&str], required: &[&str]) -> Result<(), Problem> {
    for attr in &el.attributes {
        let foreign_ok = attr.ns == ns::XSI || attr.ns == ns::XML;
        let declared = attr.ns.is_empty() && allowed.contains(&attr.local.as_str());
        if !(foreign_ok || declared) {
            let name = if attr.ns.is_empty() {
                attr.local.clone()
            } else {
                format!("{}:{}", attr.ns, attr.local)
            };
            return Err(violation(
                el,
                format!("The '{name}' attribute is not declared."),
            ));
        }
    }
    for name in required {
        if el.attribute(name).is_none() {
            return Err(violation(
                el,
                format!("The required attribute '{name}' is missing."),
            ));
        }
    }
    Ok(())
}

fn no_text(el: &Element) -> Result<(), Problem> {
    match el.text_at {
        Some(offset) => Err(Problem::Violation {
            offset,
            violation: format!(
                "The element '{}' in namespace '{}' cannot contain text.",
                el.local, el.ns
            ),
        }),
        None => Ok(()),
    }
}

fn empty_content(el: &Element) -> Result<(), Problem> {
    no_text(el)?;
    match el.children.first() {
        Some(child) => Err(violation(
            child,
            format!(
                "The element '{}' in namespace '{}' cannot contain child element {} because the parent element's content model is empty.",
                el.local,
                el.ns,
                describe(child)
            ),
        )),
        None => Ok(()),
    }
}

fn text_only(el: &Element) -> Result<&str, Problem> {
    attributes(el, &[], &[])?;
    match el.children.first() {
        Some(child) => Err(violation(
            child,
            format!(
                "The element '{}' in namespace '{}' cannot contain child element {} because the parent element's content model is text only.",
                el.local,
                el.ns,
                describe(child)
            ),
        )),
        None => Ok(&el.text),
    }
}

fn violation(el: &Element, violation: String) -> Problem {
    Problem::Violation {
        offset: el.at,
        violation,
    }
}

fn text_violation(el: &Element, violation: String) -> Problem {
    Problem::Violation {
        offset: el.text_at.unwrap_or(el.at),
        violation,
    }
}

fn describe(el: &Element) -> String {
    if el.ns.is_empty() {
        format!("'{}' (no namespace)", el.local)
    } else {
        format!("'{}' in namespace '{}'", el.local, el.ns)
    }
}

fn https_hint(namespace: &str) -> &'static str {
    if namespace.starts_with("https://schemas.microsoft.com/exchange/services/2006/")
        || namespace.starts_with("https://schemas.xmlsoap.org/")
    {
        " EWS and SOAP namespace URIs start with 'http://', not 'https://'."
    } else {
        ""
    }
}

// ---------------------------------------------------------------------------------------------
// Responses (client side)

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

fn decode_server_version_info(el: &Element) -> Result<ServerVersionInfo, ResponseError> {
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

fn message_xml_values(el: &Element) -> Vec<MessageXmlValue> {
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

fn decode_fault(el: &Element) -> Result<Fault, ResponseError> {
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
