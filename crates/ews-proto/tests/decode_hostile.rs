//! Hostile and malformed requests, at the decoder: every input that the server's HTTP-level
//! hostile suite (`crates/server/tests/hostile.rs`) sends is given here straight to
//! [`decode_request`] with the default [`Limits`], and the exact [`RequestError`] is checked
//! together with the EWS fault code it maps to. Schema violations are checked down to their
//! line, position and wording. The benign variations real clients send must decode.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use openum_ews_proto::*;

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const S: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";

// ---------------------------------------------------------------------------------------------
// Documents

/// A request the way the Microsoft clients lay it out: declaration, one long envelope start tag
/// on line 2, then header and body on line 3.
fn envelope(version: Option<&str>, body: &str) -> String {
    let header = version
        .map(|v| format!(r#"<soap:Header><t:RequestServerVersion Version="{v}"/></soap:Header>"#))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="{M}" xmlns:t="{T}" xmlns:soap="{S}">
{header}<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

/// An operation in an Exchange2010 envelope.
fn op(body: &str) -> String {
    envelope(Some("Exchange2010"), body)
}

fn get_info(id: &str) -> String {
    op(&format!(
        r#"<m:GetPhoneCallInformation><m:PhoneCallId Id="{id}"/></m:GetPhoneCallInformation>"#
    ))
}

fn disconnect(id: &str) -> String {
    op(&format!(
        r#"<m:DisconnectPhoneCall><m:PhoneCallId Id="{id}"/></m:DisconnectPhoneCall>"#
    ))
}

/// `get_info("x")` with `extra` added at the end of its SOAP header.
fn with_header(extra: &str) -> String {
    get_info("x").replace("</soap:Header>", &format!("{extra}</soap:Header>"))
}

// ---------------------------------------------------------------------------------------------
// Positions: 1-based line and column (in characters) of a byte offset, computed independently of
// the decoder so the tests say *where* a problem is in terms of the document text.

fn position_at(doc: &str, offset: usize) -> Position {
    let before = &doc[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = doc[line_start..offset].chars().count() + 1;
    Position {
        line: u32::try_from(line).unwrap(),
        column: u32::try_from(column).unwrap(),
    }
}

/// Where the first `needle` starts.
fn start_of(doc: &str, needle: &str) -> Position {
    position_at(doc, doc.find(needle).expect(needle))
}

/// Where the name of the first start tag `<name` is (one past the `<`), which is where Exchange
/// reports a violation by an element.
fn name_of_tag(doc: &str, name: &str) -> Position {
    let needle = format!("<{name}");
    position_at(doc, doc.find(&needle).expect(name) + 1)
}

/// Like [`name_of_tag`], for the last such start tag.
fn name_of_last_tag(doc: &str, name: &str) -> Position {
    let needle = format!("<{name}");
    position_at(doc, doc.rfind(&needle).expect(name) + 1)
}

// ---------------------------------------------------------------------------------------------
// Assertions

fn decode(doc: impl AsRef<[u8]>) -> RequestEnvelope {
    let doc = doc.as_ref();
    decode_request(doc, Limits::default())
        .unwrap_or_else(|e| panic!("refused: {e}\n{}", String::from_utf8_lossy(doc)))
}

/// The error the decoder refuses `doc` with, after checking it maps to `code`.
fn refusal(doc: impl AsRef<[u8]>, code: ResponseCode) -> RequestError {
    let doc = doc.as_ref();
    let Err(error) = decode_request(doc, Limits::default()) else {
        panic!("accepted: {}", String::from_utf8_lossy(doc))
    };
    assert_eq!(error.to_fault().code, code, "{error}");
    error
}

/// The XML-level error `doc` is refused with (always `ErrorInvalidRequest`).
fn xml_refusal(doc: impl AsRef<[u8]>) -> XmlError {
    match refusal(doc, ResponseCode::ErrorInvalidRequest) {
        RequestError::Xml(e) => e,
        other => panic!("not an XML error: {other:?}"),
    }
}

/// Checks `doc` is refused with `ErrorSchemaValidation`, at `at`, with exactly `violation`, and
/// that the fault carries the same line, position and text.
fn assert_schema_violation(doc: &str, at: Position, violation: &str) {
    let error = refusal(doc, ResponseCode::ErrorSchemaValidation);
    assert_eq!(
        error,
        RequestError::Schema(SchemaViolation {
            at,
            violation: violation.to_owned(),
        }),
        "{doc}"
    );
    let fault = error.to_fault();
    assert_eq!(
        fault.message_xml,
        Some(FaultMessageXml::SchemaViolation {
            line_number: at.line,
            line_position: at.column,
            violation: violation.to_owned(),
        })
    );
    assert_eq!(
        fault.fault_string,
        format!("The request failed schema validation: {violation}")
    );
}

fn exchange2010() -> RequestHeader {
    RequestHeader {
        request_server_version: Some(RequestServerVersion {
            version: ExchangeVersion::Exchange2010,
        }),
        ..RequestHeader::default()
    }
}

fn get_info_of(id: &str) -> Request {
    Request::GetPhoneCallInformation(GetPhoneCallInformation {
        phone_call_id: PhoneCallId { id: id.into() },
    })
}

const BODY_CHOICES: &str = "List of possible elements expected: 'PlayOnPhone, GetPhoneCallInformation, DisconnectPhoneCall' in namespace 'http://schemas.microsoft.com/exchange/services/2006/messages'.";

// ---------------------------------------------------------------------------------------------
// Not XML, or not acceptable XML: ErrorInvalidRequest

#[test]
fn an_empty_request_is_refused_as_an_empty_document() {
    assert_eq!(xml_refusal(b""), XmlError::Empty);
}

#[test]
fn a_whitespace_only_request_is_refused_as_an_empty_document() {
    assert_eq!(xml_refusal("  \n\t "), XmlError::Empty);
}

#[test]
fn plain_text_is_refused_as_malformed_text_outside_the_root() {
    assert_eq!(
        xml_refusal("hello, server"),
        XmlError::Malformed {
            at: Position { line: 1, column: 1 },
            reason: "text outside the root element".into(),
        }
    );
}

#[test]
fn a_truncated_document_is_refused_as_malformed_at_the_unclosed_tag() {
    let full = get_info("x");
    let doc = &full[..200];
    let XmlError::Malformed { at, .. } = xml_refusal(doc) else {
        panic!()
    };
    assert_eq!(at, start_of(doc, "<soap:Envelope"));
}

#[test]
fn a_mismatched_end_tag_is_refused_as_malformed_where_it_is() {
    let doc = get_info("x").replace("</soap:Body>", "</soap:Bogus>");
    let XmlError::Malformed { at, reason } = xml_refusal(&doc) else {
        panic!()
    };
    assert_eq!(at, start_of(&doc, "</soap:Bogus>"));
    assert!(reason.contains("</soap:Bogus>"), "{reason}");
}

#[test]
fn billion_laughs_is_refused_as_a_doctype_before_any_entity_expands() {
    let doc = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><soap:Envelope xmlns:soap=\"{S}\"><soap:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"&lol3;\"/></m:GetPhoneCallInformation></soap:Body></soap:Envelope>"
    );
    assert_eq!(
        xml_refusal(&doc),
        XmlError::Doctype(start_of(&doc, "<!DOCTYPE"))
    );
}

#[test]
fn an_external_entity_is_refused_as_a_doctype_and_never_resolved() {
    let doc = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><soap:Envelope xmlns:soap=\"{S}\"><soap:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"&xxe;\"/></m:GetPhoneCallInformation></soap:Body></soap:Envelope>"
    );
    assert_eq!(
        xml_refusal(&doc),
        XmlError::Doctype(start_of(&doc, "<!DOCTYPE"))
    );
}

#[test]
fn doctype_is_refused_as_invalid_request() {
    let doc = format!(
        "<!DOCTYPE soap:Envelope>{}",
        get_info("x").replace(r#"<?xml version="1.0" encoding="utf-8"?>"#, "")
    );
    assert_eq!(
        xml_refusal(doc),
        XmlError::Doctype(Position { line: 1, column: 1 })
    );
}

#[test]
fn invalid_utf8_is_refused_with_the_offset_of_the_first_bad_byte() {
    let mut doc = get_info("x").into_bytes();
    let at = doc.len() - 60;
    doc[at] = 0xC3;
    doc[at + 1] = 0x28;
    assert_eq!(xml_refusal(doc), XmlError::InvalidUtf8 { offset: at });
}

#[test]
fn a_declared_utf16_encoding_is_refused_as_unsupported() {
    assert_eq!(
        xml_refusal(get_info("x").replace("utf-8", "utf-16")),
        XmlError::UnsupportedEncoding("utf-16".into())
    );
}

#[test]
fn nesting_deeper_than_32_levels_is_refused_where_the_limit_is_crossed() {
    let doc = format!(
        "<soap:Envelope xmlns:soap=\"{S}\"><soap:Header>{}{}</soap:Header><soap:Body/></soap:Envelope>",
        "<x:a xmlns:x=\"urn:x\">".repeat(100),
        "</x:a>".repeat(100)
    );
    // Envelope and Header are depths 1 and 2, so the 31st `x:a` is the 33rd level.
    let offset = doc.match_indices("<x:a").nth(30).unwrap().0 + 1;
    assert_eq!(
        xml_refusal(&doc),
        XmlError::TooDeep {
            limit: 32,
            at: position_at(&doc, offset),
        }
    );
}

#[test]
fn a_custom_depth_limit_is_honoured() {
    let doc = get_info("x");
    let shallow = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let error = decode_request(doc.as_bytes(), shallow).unwrap_err();
    assert_eq!(
        error,
        RequestError::Xml(XmlError::TooDeep {
            limit: 3,
            // Envelope, Body, GetPhoneCallInformation, PhoneCallId: the fourth level.
            at: name_of_tag(&doc, "m:PhoneCallId"),
        })
    );
    let enough = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    assert!(decode_request(doc.as_bytes(), enough).is_ok());
}

#[test]
fn more_than_4096_elements_are_refused_as_too_many() {
    let doc = format!(
        "<soap:Envelope xmlns:soap=\"{S}\"><soap:Header>{}</soap:Header><soap:Body/></soap:Envelope>",
        "<a/>".repeat(5000)
    );
    assert_eq!(xml_refusal(doc), XmlError::TooManyElements(4096));
}

#[test]
fn an_undeclared_prefix_is_refused_as_malformed() {
    let doc = get_info("x").replace("<m:PhoneCallId", "<q:PhoneCallId");
    assert_eq!(
        xml_refusal(&doc),
        XmlError::Malformed {
            at: start_of(&doc, "<q:PhoneCallId"),
            reason: "namespace prefix 'q' is not declared".into(),
        }
    );
}

#[test]
fn an_unknown_entity_is_refused_as_malformed_at_its_tag() {
    let doc = get_info("&bogus;");
    let XmlError::Malformed { at, reason } = xml_refusal(&doc) else {
        panic!()
    };
    assert_eq!(at, start_of(&doc, "<m:PhoneCallId"));
    assert!(reason.contains("bogus"), "{reason}");
}

#[test]
fn a_control_character_is_refused_as_malformed_where_it_is() {
    let doc = get_info("a\u{1}b");
    assert_eq!(
        xml_refusal(&doc),
        XmlError::Malformed {
            at: start_of(&doc, "\u{1}"),
            reason: "control character not allowed in XML".into(),
        }
    );
}

#[test]
fn an_empty_soap_body_is_refused_as_having_no_operation() {
    assert_eq!(
        refusal(op(""), ResponseCode::ErrorInvalidRequest),
        RequestError::NoOperation
    );
}

// ---------------------------------------------------------------------------------------------
// Wrong envelope or namespace: ErrorSchemaValidation

#[test]
fn a_soap12_envelope_is_a_schema_violation_with_a_soap11_hint() {
    let doc = format!(
        "<env:Envelope xmlns:env=\"{SOAP12}\"><env:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation></env:Body></env:Envelope>"
    );
    assert_schema_violation(
        &doc,
        Position { line: 1, column: 2 },
        &format!("The root element must be 'Envelope' in namespace '{S}', not 'Envelope' in namespace '{SOAP12}'. SOAP 1.2 is not supported; send a SOAP 1.1 envelope."),
    );
}

#[test]
fn an_https_soap_namespace_is_a_schema_violation_with_an_http_hint() {
    let doc = get_info("x").replace("http://schemas.xmlsoap.org", "https://schemas.xmlsoap.org");
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "soap:Envelope"),
        &format!("The root element must be 'Envelope' in namespace '{S}', not 'Envelope' in namespace 'https://schemas.xmlsoap.org/soap/envelope/'. EWS and SOAP namespace URIs start with 'http://', not 'https://'."),
    );
}

#[test]
fn an_https_messages_namespace_is_a_schema_violation_with_an_http_hint() {
    let https = M.replace("http:", "https:");
    let doc = get_info("x").replace(M, &https);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:GetPhoneCallInformation"),
        &format!("The element 'Body' in namespace '{S}' has invalid child element 'GetPhoneCallInformation' in namespace '{https}'. {BODY_CHOICES} EWS and SOAP namespace URIs start with 'http://', not 'https://'."),
    );
}

#[test]
fn an_operation_without_an_envelope_is_a_schema_violation_at_the_root() {
    let doc = format!(
        "<m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation>"
    );
    assert_schema_violation(
        &doc,
        Position { line: 1, column: 2 },
        &format!("The root element must be 'Envelope' in namespace '{S}', not 'GetPhoneCallInformation' in namespace '{M}'."),
    );
}

#[test]
fn an_envelope_without_a_body_has_incomplete_content() {
    let doc = format!("<soap:Envelope xmlns:soap=\"{S}\"><soap:Header/></soap:Envelope>");
    assert_schema_violation(
        &doc,
        Position { line: 1, column: 2 },
        &format!("The element 'Envelope' in namespace '{S}' has incomplete content. List of possible elements expected: 'Body' in namespace '{S}'."),
    );
}

#[test]
fn two_operations_in_one_body_are_refused_at_the_second() {
    let doc = op(
        r#"<m:DisconnectPhoneCall><m:PhoneCallId Id="a"/></m:DisconnectPhoneCall><m:DisconnectPhoneCall><m:PhoneCallId Id="b"/></m:DisconnectPhoneCall>"#,
    );
    assert_schema_violation(
        &doc,
        name_of_last_tag(&doc, "m:DisconnectPhoneCall"),
        &format!("The element 'Body' in namespace '{S}' has invalid child element 'DisconnectPhoneCall' in namespace '{M}'. A request carries exactly one operation."),
    );
}

// ---------------------------------------------------------------------------------------------
// Operation content: ErrorSchemaValidation

#[test]
fn dial_string_before_item_id_is_out_of_sequence() {
    let doc =
        op(r#"<m:PlayOnPhone><m:DialString>1</m:DialString><m:ItemId Id="a"/></m:PlayOnPhone>"#);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:DialString"),
        &format!("The element 'PlayOnPhone' in namespace '{M}' has invalid child element 'DialString' in namespace '{M}'. List of possible elements expected: 'ItemId' in namespace '{M}'."),
    );
}

#[test]
fn a_missing_dial_string_is_incomplete_content_of_play_on_phone() {
    let doc = op(r#"<m:PlayOnPhone><m:ItemId Id="a"/></m:PlayOnPhone>"#);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:PlayOnPhone"),
        &format!("The element 'PlayOnPhone' in namespace '{M}' has incomplete content. List of possible elements expected: 'DialString' in namespace '{M}'."),
    );
}

#[test]
fn a_phone_call_id_without_id_misses_a_required_attribute() {
    let doc = op("<m:DisconnectPhoneCall><m:PhoneCallId/></m:DisconnectPhoneCall>");
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:PhoneCallId"),
        "The required attribute 'Id' is missing.",
    );
}

#[test]
fn a_types_namespace_phone_call_id_is_an_invalid_child() {
    let doc =
        op(r#"<m:GetPhoneCallInformation><t:PhoneCallId Id="x"/></m:GetPhoneCallInformation>"#);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "t:PhoneCallId"),
        &format!("The element 'GetPhoneCallInformation' in namespace '{M}' has invalid child element 'PhoneCallId' in namespace '{T}'. List of possible elements expected: 'PhoneCallId' in namespace '{M}'."),
    );
}

#[test]
fn a_types_namespace_item_id_is_an_invalid_child() {
    let doc =
        op(r#"<m:PlayOnPhone><t:ItemId Id="a"/><m:DialString>1</m:DialString></m:PlayOnPhone>"#);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "t:ItemId"),
        &format!("The element 'PlayOnPhone' in namespace '{M}' has invalid child element 'ItemId' in namespace '{T}'. List of possible elements expected: 'ItemId' in namespace '{M}'."),
    );
}

#[test]
fn an_undeclared_attribute_is_a_schema_violation() {
    let doc = op(
        r#"<m:GetPhoneCallInformation><m:PhoneCallId Id="x" Extra="1"/></m:GetPhoneCallInformation>"#,
    );
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:PhoneCallId"),
        "The 'Extra' attribute is not declared.",
    );
}

#[test]
fn text_inside_an_operation_is_reported_where_the_text_starts() {
    let doc =
        op(r#"<m:GetPhoneCallInformation>oops<m:PhoneCallId Id="x"/></m:GetPhoneCallInformation>"#);
    assert_schema_violation(
        &doc,
        start_of(&doc, "oops"),
        &format!("The element 'GetPhoneCallInformation' in namespace '{M}' cannot contain text."),
    );
}

#[test]
fn an_element_inside_dial_string_breaks_its_text_only_content() {
    let doc = op(
        r#"<m:PlayOnPhone><m:ItemId Id="a"/><m:DialString><b>1</b></m:DialString></m:PlayOnPhone>"#,
    );
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "b"),
        &format!("The element 'DialString' in namespace '{M}' cannot contain child element 'b' (no namespace) because the parent element's content model is text only."),
    );
}

#[test]
fn a_lower_case_operation_name_is_an_invalid_body_child() {
    let doc =
        op(r#"<m:getPhoneCallInformation><m:PhoneCallId Id="x"/></m:getPhoneCallInformation>"#);
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:getPhoneCallInformation"),
        &format!("The element 'Body' in namespace '{S}' has invalid child element 'getPhoneCallInformation' in namespace '{M}'. {BODY_CHOICES}"),
    );
}

#[test]
fn an_unknown_operation_is_an_invalid_body_child() {
    let doc = op("<m:MakeCoffee/>");
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "m:MakeCoffee"),
        &format!("The element 'Body' in namespace '{S}' has invalid child element 'MakeCoffee' in namespace '{M}'. {BODY_CHOICES}"),
    );
}

#[test]
fn a_real_ews_operation_openum_does_not_implement_is_an_invalid_operation() {
    assert_eq!(
        refusal(
            op("<m:GetItem><m:ItemShape/></m:GetItem>"),
            ResponseCode::ErrorInvalidOperation
        ),
        RequestError::UnsupportedOperation("GetItem".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Headers

#[test]
fn an_unknown_server_version_is_an_invalid_server_version() {
    assert_eq!(
        refusal(
            get_info("x").replace("Exchange2010", "Exchange2019"),
            ResponseCode::ErrorInvalidServerVersion
        ),
        RequestError::InvalidServerVersion("Exchange2019".into())
    );
}

#[test]
fn a_server_version_in_the_wrong_case_is_an_invalid_server_version() {
    assert_eq!(
        refusal(
            get_info("x").replace("Exchange2010", "exchange2010"),
            ResponseCode::ErrorInvalidServerVersion
        ),
        RequestError::InvalidServerVersion("exchange2010".into())
    );
}

#[test]
fn exchange2007_sp2_is_not_a_schema_version_and_so_an_invalid_server_version() {
    assert_eq!(
        refusal(
            get_info("x").replace("Exchange2010", "Exchange2007_SP2"),
            ResponseCode::ErrorInvalidServerVersion
        ),
        RequestError::InvalidServerVersion("Exchange2007_SP2".into())
    );
}

#[test]
fn the_exchange2007_schema_is_too_old_for_unified_messaging() {
    assert_eq!(
        refusal(
            get_info("x").replace("Exchange2010", "Exchange2007"),
            ResponseCode::ErrorIncorrectSchemaVersion
        ),
        RequestError::IncorrectSchemaVersion(ExchangeVersion::Exchange2007)
    );
}

#[test]
fn request_server_version_without_version_misses_a_required_attribute() {
    let doc = get_info("x").replace(r#" Version="Exchange2010""#, "");
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "t:RequestServerVersion"),
        "The required attribute 'Version' is missing.",
    );
}

#[test]
fn request_server_version_twice_is_refused_at_the_second() {
    let doc = with_header(r#"<t:RequestServerVersion Version="Exchange2013"/>"#);
    assert_schema_violation(
        &doc,
        name_of_last_tag(&doc, "t:RequestServerVersion"),
        "The SOAP header 'RequestServerVersion' appears more than once.",
    );
}

#[test]
fn a_mailbox_culture_that_is_not_a_language_is_reported_at_its_text() {
    let doc = with_header("<t:MailboxCulture>en US!</t:MailboxCulture>");
    assert_schema_violation(
        &doc,
        start_of(&doc, "en US!"),
        "The 'MailboxCulture' element is invalid - The value 'en US!' is invalid according to its datatype 'http://www.w3.org/2001/XMLSchema:language'.",
    );
}

#[test]
fn connecting_sid_with_two_principals_is_refused_at_the_second() {
    let doc = with_header("<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName>a</t:PrincipalName><t:SID>b</t:SID></t:ConnectingSID></t:ExchangeImpersonation>");
    assert_schema_violation(
        &doc,
        name_of_tag(&doc, "t:SID"),
        &format!("The element 'ConnectingSID' in namespace '{T}' has invalid child element 'SID' in namespace '{T}'."),
    );
}

// ---------------------------------------------------------------------------------------------
// Refused by the server, not by the decoder: these decode, and the decoded value is what the
// server's size, ownership and impersonation checks act on.

#[test]
fn a_70_kib_request_decodes_because_its_size_is_capped_by_the_http_layer() {
    let id = "A".repeat(70 * 1024);
    let decoded = decode(get_info(&id));
    assert_eq!(decoded.body, get_info_of(&id));
}

#[test]
fn another_users_phone_call_id_decodes_for_the_server_to_refuse() {
    let decoded = decode(get_info("bobs-call"));
    assert_eq!(
        decoded,
        RequestEnvelope {
            header: exchange2010(),
            body: get_info_of("bobs-call"),
        }
    );
}

#[test]
fn a_hang_up_of_another_users_call_decodes_for_the_server_to_refuse() {
    let decoded = decode(disconnect("bobs-call"));
    assert_eq!(
        decoded.body,
        Request::DisconnectPhoneCall(DisconnectPhoneCall {
            phone_call_id: PhoneCallId {
                id: "bobs-call".into()
            },
        })
    );
}

#[test]
fn impersonation_decodes_to_the_named_principal_for_the_server_to_check() {
    let decoded = decode(with_header(
        "<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName> bob </t:PrincipalName></t:ConnectingSID></t:ExchangeImpersonation>",
    ));
    assert_eq!(
        decoded.header.exchange_impersonation,
        Some(ConnectingSid::PrincipalName("bob".into()))
    );
}

// ---------------------------------------------------------------------------------------------
// Line and position, on small multi-line documents (the server suite checks the same values
// through HTTP).

#[test]
fn schema_violations_report_line_and_position_of_the_offending_element() {
    let missing_id = format!(
        "<soap:Envelope xmlns:soap=\"{S}\" xmlns:m=\"{M}\">\n  <soap:Body>\n    <m:DisconnectPhoneCall>\n      <m:PhoneCallId/>\n    </m:DisconnectPhoneCall>\n  </soap:Body>\n</soap:Envelope>"
    );
    assert_schema_violation(
        &missing_id,
        Position { line: 4, column: 8 },
        "The required attribute 'Id' is missing.",
    );
    let wrong_order = format!(
        "<soap:Envelope xmlns:soap=\"{S}\" xmlns:m=\"{M}\"><soap:Body>\n<m:PlayOnPhone><m:DialString>1</m:DialString><m:ItemId Id=\"a\"/></m:PlayOnPhone></soap:Body></soap:Envelope>"
    );
    assert_schema_violation(
        &wrong_order,
        Position {
            line: 2,
            column: 17,
        },
        &format!("The element 'PlayOnPhone' in namespace '{M}' has invalid child element 'DialString' in namespace '{M}'. List of possible elements expected: 'ItemId' in namespace '{M}'."),
    );
}

#[test]
fn positions_count_characters_not_bytes() {
    let doc = format!(
        "<soap:Envelope xmlns:soap=\"{S}\" xmlns:m=\"{M}\"><!-- é€😀 --><soap:Body><m:DisconnectPhoneCall><m:PhoneCallId/></m:DisconnectPhoneCall></soap:Body></soap:Envelope>"
    );
    let at = name_of_tag(&doc, "m:PhoneCallId");
    let bytes_column = doc.find("<m:PhoneCallId").unwrap() + 2;
    assert!(usize::try_from(at.column).unwrap() < bytes_column);
    assert_schema_violation(&doc, at, "The required attribute 'Id' is missing.");
}

// ---------------------------------------------------------------------------------------------
// Benign variations real clients send

#[test]
fn default_namespaces_and_no_header_decode_with_the_default_version() {
    let doc = format!(
        "<Envelope xmlns=\"{S}\"><Body><GetPhoneCallInformation xmlns=\"{M}\"><PhoneCallId Id=\"c\"/></GetPhoneCallInformation></Body></Envelope>"
    );
    assert_eq!(
        decode(doc),
        RequestEnvelope {
            header: RequestHeader::default(),
            body: get_info_of("c"),
        }
    );
}

#[test]
fn odd_prefixes_declared_on_inner_elements_decode() {
    let doc = format!(
        "<e:Envelope xmlns:e=\"{S}\"><e:Header><v:RequestServerVersion xmlns:v=\"{T}\" Version=\"V2017_07_11\"/></e:Header><e:Body><q:GetPhoneCallInformation xmlns:q=\"{M}\"><q:PhoneCallId Id=\"c\"/></q:GetPhoneCallInformation></e:Body></e:Envelope>"
    );
    let decoded = decode(doc);
    assert_eq!(
        decoded.header.request_server_version,
        Some(RequestServerVersion {
            version: ExchangeVersion::V2017_07_11
        })
    );
    assert_eq!(decoded.body, get_info_of("c"));
}

#[test]
fn bom_crlf_comments_and_unknown_headers_are_accepted_and_known_headers_read() {
    let doc = format!("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<soap:Envelope xmlns:soap=\"{S}\" xmlns:t=\"{T}\" xmlns:m=\"{M}\">\r\n  <!-- a comment -->\r\n  <soap:Header>\r\n    <t:RequestServerVersion Version=\"Exchange2013_SP1\" />\r\n    <t:MailboxCulture>en-US</t:MailboxCulture>\r\n    <t:TimeZoneContext><t:TimeZoneDefinition Id=\"Pacific Standard Time\"/></t:TimeZoneContext>\r\n    <t:DateTimePrecision>Seconds</t:DateTimePrecision>\r\n    <x:Custom xmlns:x=\"urn:x\" soap:mustUnderstand=\"0\">whatever</x:Custom>\r\n  </soap:Header>\r\n  <soap:Body>\r\n    <m:GetPhoneCallInformation>\r\n      <m:PhoneCallId Id=\"c\" />\r\n    </m:GetPhoneCallInformation>\r\n  </soap:Body>\r\n</soap:Envelope>\r\n");
    assert_eq!(
        decode(doc),
        RequestEnvelope {
            header: RequestHeader {
                request_server_version: Some(RequestServerVersion {
                    version: ExchangeVersion::Exchange2013_SP1
                }),
                exchange_impersonation: None,
                mailbox_culture: Some("en-US".into()),
                time_zone_id: Some("Pacific Standard Time".into()),
            },
            body: get_info_of("c"),
        }
    );
}

#[test]
fn play_on_phone_with_a_change_key_decodes() {
    let doc = envelope(
        Some("Exchange2010_SP1"),
        r#"<m:PlayOnPhone><m:ItemId Id="AAMk=" ChangeKey="CQAA"/><m:DialString>+1 (555) 0100</m:DialString></m:PlayOnPhone>"#,
    );
    assert_eq!(
        decode(doc).body,
        Request::PlayOnPhone(PlayOnPhone {
            item_id: ItemId {
                id: "AAMk=".into(),
                change_key: Some("CQAA".into()),
            },
            dial_string: "+1 (555) 0100".into(),
        })
    );
}
