//! Encoding: responses and faults in the exact shape Exchange sends (server side), requests in
//! the shape the EWS Managed API sends (client side).
//!
//! Written with plain string building rather than a serializer: the output is small, its shape is
//! fixed byte for byte by what the Microsoft clients accept (declaration first, non-self-closing
//! `s:Header` and `detail`, prefixes and default namespaces as Exchange places them), and a
//! serializer would only get in the way of that control.
//!
//! Every `write!` here writes into a `String`, whose `fmt::Write` never fails, so their
//! `fmt::Result`s are dropped (`let _ =`) rather than threaded through.

use std::fmt::Write as _;

use quick_xml::escape::{escape, partial_escape};

use crate::messages::{
    Fault, FaultMessageXml, MessageXmlValue, Request, RequestEnvelope, Response, ResponseDocument,
    ResponseEnvelope, ResponseMessage,
};
use crate::ns;
use crate::response_code::ResponseCode;
use crate::types::{ExchangeVersion, PhoneCallInformation, ServerVersionInfo};

pub(crate) const DECLARATION: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Encodes a response document (a response or a fault).
pub fn encode_document(doc: &ResponseDocument) -> String {
    match doc {
        ResponseDocument::Response(r) => encode_response(r),
        ResponseDocument::Fault(f) => encode_fault(f),
    }
}

/// Encodes a response envelope as Exchange does.
pub fn encode_response(envelope: &ResponseEnvelope) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(DECLARATION);
    let _ = write!(out, r#"<s:Envelope xmlns:s="{}">"#, ns::SOAP);
    if let Some(info) = &envelope.server_version_info {
        out.push_str("<s:Header>");
        write_server_version_info(&mut out, info);
        out.push_str("</s:Header>");
    }
    let _ = write!(
        out,
        r#"<s:Body xmlns:xsi="{}" xmlns:xsd="{}">"#,
        ns::XSI,
        ns::XSD
    );
    let body = &envelope.body;
    let message = body.message();
    let _ = write!(
        out,
        r#"<{} ResponseClass="{}" xmlns="{}">"#,
        body.element_name(),
        message.response_class.as_str(),
        ns::MESSAGES
    );
    write_response_message(&mut out, message);
    match body {
        Response::PlayOnPhone(r) => {
            if let Some(id) = &r.phone_call_id {
                let _ = write!(out, r#"<PhoneCallId Id="{}"/>"#, escape(&id.id));
            }
        }
        Response::GetPhoneCallInformation(r) => {
            if let Some(info) = &r.phone_call_information {
                write_phone_call_information(&mut out, info);
            }
        }
        Response::DisconnectPhoneCall(_) => {}
    }
    let _ = write!(out, "</{}></s:Body></s:Envelope>", body.element_name());
    out
}

pub(crate) fn write_server_version_info(out: &mut String, info: &ServerVersionInfo) {
    let _ = write!(
        out,
        r#"<h:ServerVersionInfo MajorVersion="{}" MinorVersion="{}" MajorBuildNumber="{}" MinorBuildNumber="{}" Version="{}" xmlns:h="{t}" xmlns="{t}" xmlns:xsi="{}" xmlns:xsd="{}"/>"#,
        info.major_version,
        info.minor_version,
        info.major_build_number,
        info.minor_build_number,
        escape(&info.version),
        ns::XSI,
        ns::XSD,
        t = ns::TYPES,
    );
}

fn write_response_message(out: &mut String, message: &ResponseMessage) {
    if let Some(text) = &message.message_text {
        let _ = write!(out, "<MessageText>{}</MessageText>", partial_escape(text));
    }
    if let Some(code) = message.response_code {
        let _ = write!(out, "<ResponseCode>{}</ResponseCode>", code.as_str());
    }
    if let Some(key) = message.descriptive_link_key {
        let _ = write!(out, "<DescriptiveLinkKey>{key}</DescriptiveLinkKey>");
    }
    if let Some(values) = &message.message_xml {
        out.push_str("<MessageXml>");
        write_values(out, values, &format!(r#" xmlns:t="{}""#, ns::TYPES));
        out.push_str("</MessageXml>");
    }
}

pub(crate) fn write_values(out: &mut String, values: &[MessageXmlValue], ns_decl: &str) {
    for v in values {
        let _ = write!(
            out,
            r#"<t:Value Name="{}"{ns_decl}>{}</t:Value>"#,
            escape(&v.name),
            partial_escape(&v.value)
        );
    }
}

fn write_phone_call_information(out: &mut String, info: &PhoneCallInformation) {
    // Shape of Microsoft's documented response: `m:` on the container, `t:` on each child.
    let _ = write!(
        out,
        r#"<m:PhoneCallInformation xmlns:m="{}">"#,
        ns::MESSAGES
    );
    let t = ns::TYPES;
    let _ = write!(
        out,
        r#"<t:PhoneCallState xmlns:t="{t}">{}</t:PhoneCallState>"#,
        info.phone_call_state.as_str()
    );
    let _ = write!(
        out,
        r#"<t:ConnectionFailureCause xmlns:t="{t}">{}</t:ConnectionFailureCause>"#,
        info.connection_failure_cause.as_str()
    );
    if let Some(text) = &info.sip_response_text {
        let _ = write!(
            out,
            r#"<t:SIPResponseText xmlns:t="{t}">{}</t:SIPResponseText>"#,
            partial_escape(text)
        );
    }
    if let Some(code) = info.sip_response_code {
        let _ = write!(
            out,
            r#"<t:SIPResponseCode xmlns:t="{t}">{code}</t:SIPResponseCode>"#
        );
    }
    out.push_str("</m:PhoneCallInformation>");
}

/// Encodes a SOAP fault exactly as Exchange shapes it: no header, unqualified `faultcode`
/// (prefix `a` bound to the types namespace), `faultstring xml:lang="en-US"`, and a `detail`
/// with `e:ResponseCode`, `e:Message` and optionally `t:MessageXml`.
pub fn encode_fault(fault: &Fault) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(DECLARATION);
    let code = fault.code.as_str();
    let _ = write!(
        out,
        r#"<s:Envelope xmlns:s="{}"><s:Body><s:Fault><faultcode xmlns:a="{}">a:{code}</faultcode><faultstring xml:lang="en-US">{}</faultstring><detail><e:ResponseCode xmlns:e="{e}">{code}</e:ResponseCode><e:Message xmlns:e="{e}">{}</e:Message>"#,
        ns::SOAP,
        ns::TYPES,
        partial_escape(&fault.fault_string),
        partial_escape(&fault.message),
        e = ns::ERRORS,
    );
    match &fault.message_xml {
        Some(FaultMessageXml::SchemaViolation {
            line_number,
            line_position,
            violation,
        }) => {
            let _ = write!(
                out,
                r#"<t:MessageXml xmlns:t="{}"><t:LineNumber>{line_number}</t:LineNumber><t:LinePosition>{line_position}</t:LinePosition><t:Violation>{}</t:Violation></t:MessageXml>"#,
                ns::TYPES,
                partial_escape(violation)
            );
        }
        Some(FaultMessageXml::Values(values)) => {
            let _ = write!(out, r#"<t:MessageXml xmlns:t="{}">"#, ns::TYPES);
            write_values(&mut out, values, "");
            out.push_str("</t:MessageXml>");
        }
        None => {}
    }
    out.push_str("</detail></s:Fault></s:Body></s:Envelope>");
    out
}

/// Encodes a request as the EWS Managed API does (prefixes `soap`, `m`, `t`).
pub fn encode_request(envelope: &RequestEnvelope) -> String {
    let mut out = String::with_capacity(768);
    out.push_str(DECLARATION);
    let _ = write!(
        out,
        r#"<soap:Envelope xmlns:xsi="{}" xmlns:m="{}" xmlns:t="{}" xmlns:soap="{}">"#,
        ns::XSI,
        ns::MESSAGES,
        ns::TYPES,
        ns::SOAP
    );
    let h = &envelope.header;
    out.push_str("<soap:Header>");
    let version = h
        .request_server_version
        .as_ref()
        .map_or(ExchangeVersion::Exchange2010, |v| v.version);
    let _ = write!(
        out,
        r#"<t:RequestServerVersion Version="{}"/>"#,
        version.as_str()
    );
    if let Some(culture) = &h.mailbox_culture {
        let _ = write!(
            out,
            "<t:MailboxCulture>{}</t:MailboxCulture>",
            partial_escape(culture)
        );
    }
    if let Some(sid) = &h.exchange_impersonation {
        let name = sid.element_name();
        let _ = write!(
            out,
            "<t:ExchangeImpersonation><t:ConnectingSID><t:{name}>{}</t:{name}></t:ConnectingSID></t:ExchangeImpersonation>",
            partial_escape(sid.value())
        );
    }
    if let Some(id) = &h.time_zone_id {
        let _ = write!(
            out,
            r#"<t:TimeZoneContext><t:TimeZoneDefinition Id="{}"/></t:TimeZoneContext>"#,
            escape(id)
        );
    }
    out.push_str("</soap:Header><soap:Body>");
    match &envelope.body {
        Request::PlayOnPhone(r) => {
            let _ = write!(
                out,
                r#"<m:PlayOnPhone><m:ItemId Id="{}""#,
                escape(&r.item_id.id)
            );
            if let Some(ck) = r.item_id.change_key.as_deref().filter(|c| !c.is_empty()) {
                let _ = write!(out, r#" ChangeKey="{}""#, escape(ck));
            }
            let _ = write!(
                out,
                "/><m:DialString>{}</m:DialString></m:PlayOnPhone>",
                partial_escape(&r.dial_string)
            );
        }
        Request::GetPhoneCallInformation(r) => {
            let _ = write!(
                out,
                r#"<m:GetPhoneCallInformation><m:PhoneCallId Id="{}"/></m:GetPhoneCallInformation>"#,
                escape(&r.phone_call_id.id)
            );
        }
        Request::DisconnectPhoneCall(r) => {
            let _ = write!(
                out,
                r#"<m:DisconnectPhoneCall><m:PhoneCallId Id="{}"/></m:DisconnectPhoneCall>"#,
                escape(&r.phone_call_id.id)
            );
        }
    }
    out.push_str("</soap:Body></soap:Envelope>");
    out
}

impl Fault {
    fn new(code: ResponseCode, text: &str) -> Self {
        Self {
            code,
            fault_string: text.to_owned(),
            message: text.to_owned(),
            message_xml: None,
        }
    }

    /// `ErrorInvalidRequest`: not well-formed XML, an empty body, a DOCTYPE.
    pub fn invalid_request() -> Self {
        Self::new(ResponseCode::ErrorInvalidRequest, "The request is invalid.")
    }

    /// `ErrorSchemaValidation` with the position and text of the violation.
    pub fn schema_validation(line: u32, position: u32, violation: &str) -> Self {
        Self {
            code: ResponseCode::ErrorSchemaValidation,
            fault_string: format!("The request failed schema validation: {violation}"),
            message: "The request failed schema validation.".into(),
            message_xml: Some(FaultMessageXml::SchemaViolation {
                line_number: line,
                line_position: position,
                violation: violation.to_owned(),
            }),
        }
    }

    /// `ErrorInvalidOperation`: an EWS operation openum does not implement.
    pub fn invalid_operation(name: &str) -> Self {
        Self::new(
            ResponseCode::ErrorInvalidOperation,
            &format!(
                "The operation '{name}' is not supported by this server. Supported operations: PlayOnPhone, GetPhoneCallInformation, DisconnectPhoneCall."
            ),
        )
    }

    /// `ErrorInternalServerError`: the server failed, not the request (details only in the
    /// server's log).
    pub fn internal_server_error() -> Self {
        Self::new(
            ResponseCode::ErrorInternalServerError,
            "An internal server error occurred. The operation failed.",
        )
    }

    /// `ErrorInvalidServerVersion`: the requested version is not a schema version.
    pub fn invalid_server_version() -> Self {
        Self::new(
            ResponseCode::ErrorInvalidServerVersion,
            "The specified server version is invalid.",
        )
    }

    /// `ErrorIncorrectSchemaVersion`: a schema version too old for these operations.
    pub fn incorrect_schema_version(requested: ExchangeVersion) -> Self {
        Self::new(
            ResponseCode::ErrorIncorrectSchemaVersion,
            &format!(
                "The request is valid but does not specify the correct server version in the RequestServerVersion SOAP header: this operation requires Exchange2010 or later, not {}.",
                requested.as_str()
            ),
        )
    }

    /// `ErrorServerBusy` with a `BackOffMilliseconds` hint.
    pub fn server_busy(back_off_ms: u64) -> Self {
        Self {
            code: ResponseCode::ErrorServerBusy,
            fault_string: "The server cannot service this request right now. Try again later."
                .into(),
            message: "The server cannot service this request right now. Try again later.".into(),
            message_xml: Some(FaultMessageXml::Values(vec![MessageXmlValue {
                name: "BackOffMilliseconds".into(),
                value: back_off_ms.to_string(),
            }])),
        }
    }

    /// A fault for a header-processing failure (e.g. `ErrorImpersonateUserDenied`).
    pub fn header_refused(code: ResponseCode, text: &str) -> Self {
        Self::new(code, text)
    }
}
