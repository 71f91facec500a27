//! Hostile and malformed requests: each gets the specific EWS fault or error of decisions.md,
//! every fault validates against the schema, and the server still answers a valid request after
//! all of them. Also the benign variations real clients send, which must all be accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

mod support;

use calls::{CallState, Cause};
use ews_proto::{FaultMessageXml, ResponseCode, ResponseDocument};
use support::*;
use testkit::Validator;

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const S: &str = "http://schemas.xmlsoap.org/soap/envelope/";

enum Expect {
    Fault(ResponseCode),
    Error(ResponseCode),
    Status(u16),
}

fn op(body: &str) -> String {
    envelope(Some("Exchange2010"), body)
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    use ResponseCode::*;
    let s = |x: String| x.into_bytes();
    let deep = format!(
        "<soap:Envelope xmlns:soap=\"{S}\"><soap:Header>{}{}</soap:Header><soap:Body/></soap:Envelope>",
        "<x:a xmlns:x=\"urn:x\">".repeat(100),
        "</x:a>".repeat(100)
    );
    let wide = format!(
        "<soap:Envelope xmlns:soap=\"{S}\"><soap:Header>{}</soap:Header><soap:Body/></soap:Envelope>",
        "<a/>".repeat(5000)
    );
    let mut invalid_utf8 = get_info("x").into_bytes();
    let at = invalid_utf8.len() - 60;
    invalid_utf8[at] = 0xC3;
    invalid_utf8[at + 1] = 0x28;
    vec![
        ("empty body", vec![], Fault(ErrorInvalidRequest)),
        ("whitespace only", s("  \n\t ".into()), Fault(ErrorInvalidRequest)),
        ("not XML at all", s("hello, server".into()), Fault(ErrorInvalidRequest)),
        ("truncated document", s(get_info("x")[..200].to_owned()), Fault(ErrorInvalidRequest)),
        ("mismatched end tag", s(get_info("x").replace("</soap:Body>", "</soap:Bogus>")), Fault(ErrorInvalidRequest)),
        (
            "billion laughs",
            s(format!("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><soap:Envelope xmlns:soap=\"{S}\"><soap:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"&lol3;\"/></m:GetPhoneCallInformation></soap:Body></soap:Envelope>")),
            Fault(ErrorInvalidRequest),
        ),
        (
            "external entity (XXE)",
            s(format!("<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><soap:Envelope xmlns:soap=\"{S}\"><soap:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"&xxe;\"/></m:GetPhoneCallInformation></soap:Body></soap:Envelope>")),
            Fault(ErrorInvalidRequest),
        ),
        ("bare DOCTYPE", s(format!("<!DOCTYPE soap:Envelope>{}", get_info("x").replace(r#"<?xml version="1.0" encoding="utf-8"?>"#, ""))), Fault(ErrorInvalidRequest)),
        ("invalid UTF-8", invalid_utf8, Fault(ErrorInvalidRequest)),
        ("UTF-16 declared", s(get_info("x").replace("utf-8", "utf-16")), Fault(ErrorInvalidRequest)),
        ("100 levels of nesting", s(deep), Fault(ErrorInvalidRequest)),
        ("5000 elements", s(wide), Fault(ErrorInvalidRequest)),
        ("undeclared prefix", s(get_info("x").replace("<m:PhoneCallId", "<q:PhoneCallId")), Fault(ErrorInvalidRequest)),
        ("unknown entity", s(get_info("&bogus;")), Fault(ErrorInvalidRequest)),
        ("control character", s(get_info("a\u{1}b")), Fault(ErrorInvalidRequest)),
        ("oversized body (70 KiB)", s(get_info(&"A".repeat(70 * 1024))), Status(413)),
        ("empty soap:Body", s(op("")), Fault(ErrorInvalidRequest)),
        (
            "SOAP 1.2 envelope",
            s(format!("<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body><m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation></env:Body></env:Envelope>")),
            Fault(ErrorSchemaValidation),
        ),
        ("https:// SOAP namespace", s(get_info("x").replace("http://schemas.xmlsoap.org", "https://schemas.xmlsoap.org")), Fault(ErrorSchemaValidation)),
        ("https:// messages namespace", s(get_info("x").replace(M, &M.replace("http:", "https:"))), Fault(ErrorSchemaValidation)),
        ("operation without an envelope", s(format!("<m:GetPhoneCallInformation xmlns:m=\"{M}\"><m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation>")), Fault(ErrorSchemaValidation)),
        ("envelope without a body", s(format!("<soap:Envelope xmlns:soap=\"{S}\"><soap:Header/></soap:Envelope>")), Fault(ErrorSchemaValidation)),
        ("two operations in one body", s(op(r#"<m:DisconnectPhoneCall><m:PhoneCallId Id="a"/></m:DisconnectPhoneCall><m:DisconnectPhoneCall><m:PhoneCallId Id="b"/></m:DisconnectPhoneCall>"#)), Fault(ErrorSchemaValidation)),
        ("DialString before ItemId", s(op(r#"<m:PlayOnPhone><m:DialString>1</m:DialString><m:ItemId Id="a"/></m:PlayOnPhone>"#)), Fault(ErrorSchemaValidation)),
        ("missing DialString", s(op(r#"<m:PlayOnPhone><m:ItemId Id="a"/></m:PlayOnPhone>"#)), Fault(ErrorSchemaValidation)),
        ("PhoneCallId without Id", s(op("<m:DisconnectPhoneCall><m:PhoneCallId/></m:DisconnectPhoneCall>")), Fault(ErrorSchemaValidation)),
        ("t:PhoneCallId instead of m:", s(op(r#"<m:GetPhoneCallInformation><t:PhoneCallId Id="x"/></m:GetPhoneCallInformation>"#)), Fault(ErrorSchemaValidation)),
        ("t:ItemId instead of m:", s(op(r#"<m:PlayOnPhone><t:ItemId Id="a"/><m:DialString>1</m:DialString></m:PlayOnPhone>"#)), Fault(ErrorSchemaValidation)),
        ("undeclared attribute", s(op(r#"<m:GetPhoneCallInformation><m:PhoneCallId Id="x" Extra="1"/></m:GetPhoneCallInformation>"#)), Fault(ErrorSchemaValidation)),
        ("text inside an operation", s(op(r#"<m:GetPhoneCallInformation>oops<m:PhoneCallId Id="x"/></m:GetPhoneCallInformation>"#)), Fault(ErrorSchemaValidation)),
        ("element inside DialString", s(op(r#"<m:PlayOnPhone><m:ItemId Id="a"/><m:DialString><b>1</b></m:DialString></m:PlayOnPhone>"#)), Fault(ErrorSchemaValidation)),
        ("lower-case operation name", s(op(r#"<m:getPhoneCallInformation><m:PhoneCallId Id="x"/></m:getPhoneCallInformation>"#)), Fault(ErrorSchemaValidation)),
        ("unknown element in the body", s(op("<m:MakeCoffee/>")), Fault(ErrorSchemaValidation)),
        ("EWS operation openum does not implement", s(op(r#"<m:GetItem><m:ItemShape/></m:GetItem>"#)), Fault(ErrorInvalidOperation)),
        ("unknown server version", s(get_info("x").replace("Exchange2010", "Exchange2019")), Fault(ErrorInvalidServerVersion)),
        ("server version in the wrong case", s(get_info("x").replace("Exchange2010", "exchange2010")), Fault(ErrorInvalidServerVersion)),
        ("Exchange 2007 SP2 (not a schema version)", s(get_info("x").replace("Exchange2010", "Exchange2007_SP2")), Fault(ErrorInvalidServerVersion)),
        ("Exchange2007 schema", s(get_info("x").replace("Exchange2010", "Exchange2007")), Fault(ErrorIncorrectSchemaVersion)),
        ("RequestServerVersion without Version", s(get_info("x").replace(r#" Version="Exchange2010""#, "")), Fault(ErrorSchemaValidation)),
        ("RequestServerVersion twice", s(get_info("x").replace("</soap:Header>", r#"<t:RequestServerVersion Version="Exchange2013"/></soap:Header>"#)), Fault(ErrorSchemaValidation)),
        ("MailboxCulture that is not a language", s(get_info("x").replace("</soap:Header>", "<t:MailboxCulture>en US!</t:MailboxCulture></soap:Header>")), Fault(ErrorSchemaValidation)),
        ("another user's PhoneCallId", s(get_info("bobs-call")), Error(ErrorInvalidPhoneCallId)),
        ("hang-up of another user's call", s(disconnect("bobs-call")), Error(ErrorInvalidPhoneCallId)),
        (
            "impersonating another user",
            s(get_info("x").replace("</soap:Header>", "<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName>bob</t:PrincipalName></t:ConnectingSID></t:ExchangeImpersonation></soap:Header>")),
            Fault(ErrorImpersonateUserDenied),
        ),
        (
            "ConnectingSID with two principals",
            s(get_info("x").replace("</soap:Header>", "<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName>a</t:PrincipalName><t:SID>b</t:SID></t:ConnectingSID></t:ExchangeImpersonation></soap:Header>")),
            Fault(ErrorSchemaValidation),
        ),
    ]
}

async fn hostile_requests_get_their_specific_fault_and_the_server_survives(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    server
        .add_call("bobs-call", "bob", CallState::Connected, Cause::None)
        .await;
    server
        .add_call("mine", "alice", CallState::Connected, Cause::None)
        .await;
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for (name, body, expected) in cases {
        let reply = server.ews(body).await;
        match expected {
            Expect::Fault(code) => {
                assert_eq!(reply.status, 500, "{name}: {}", reply.body);
                let ResponseDocument::Fault(f) = decode(&reply) else {
                    panic!("{name}: not a fault: {}", reply.body)
                };
                assert_eq!(f.code, code, "{name}: {}", reply.body);
                Validator::shared().assert_valid(&reply.body);
            }
            Expect::Error(code) => {
                assert_eq!(reply.status, 200, "{name}: {}", reply.body);
                assert_eq!(support::code(&reply), code, "{name}");
                Validator::shared().assert_valid(&reply.body);
            }
            Expect::Status(status) => assert_eq!(reply.status, status, "{name}"),
        }
    }
    // Nothing above ended bob's call, and a valid request still works.
    let info = server.ews(get_info("mine")).await;
    assert_eq!(support::code(&info), ResponseCode::NoError);
    assert!(server.calls.hung_up.lock().unwrap().is_empty());
    server.stop().await;
}

async fn schema_violations_report_line_position_and_a_precise_violation(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let body = format!(
        "<soap:Envelope xmlns:soap=\"{S}\" xmlns:m=\"{M}\">\n  <soap:Body>\n    <m:DisconnectPhoneCall>\n      <m:PhoneCallId/>\n    </m:DisconnectPhoneCall>\n  </soap:Body>\n</soap:Envelope>"
    );
    let reply = server.ews(body).await;
    let ResponseDocument::Fault(f) = decode(&reply) else {
        panic!()
    };
    assert_eq!(
        f.message_xml,
        Some(FaultMessageXml::SchemaViolation {
            line_number: 4,
            line_position: 8,
            violation: "The required attribute 'Id' is missing.".into()
        })
    );
    assert_eq!(
        f.fault_string,
        "The request failed schema validation: The required attribute 'Id' is missing."
    );

    let wrong_order = format!(
        "<soap:Envelope xmlns:soap=\"{S}\" xmlns:m=\"{M}\"><soap:Body>\n<m:PlayOnPhone><m:DialString>1</m:DialString><m:ItemId Id=\"a\"/></m:PlayOnPhone></soap:Body></soap:Envelope>"
    );
    let ResponseDocument::Fault(f) = decode(&server.ews(wrong_order).await) else {
        panic!()
    };
    let Some(FaultMessageXml::SchemaViolation {
        line_number,
        line_position,
        violation,
    }) = f.message_xml
    else {
        panic!()
    };
    assert_eq!((line_number, line_position), (2, 17));
    assert_eq!(
        violation,
        format!("The element 'PlayOnPhone' in namespace '{M}' has invalid child element 'DialString' in namespace '{M}'. List of possible elements expected: 'ItemId' in namespace '{M}'.")
    );
    server.stop().await;
}

async fn authentication_failures_get_401_with_challenges_and_no_body(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let wrong_password = TestServer::basic("alice", "guess");
    let unknown_user = TestServer::basic("mallory", PASSWORD);
    for auth in [
        None,
        Some(wrong_password.as_str()),
        Some(unknown_user.as_str()),
        Some("Bearer oum_not-a-real-token"),
        Some("Bearer "),
        Some("Basic not-base64!"),
        Some("Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHgYKKwYBBAGCNwICCqKCBkAEggY8"),
    ] {
        let reply = server.ews_as(auth, get_info("x")).await;
        assert_eq!(reply.status, 401, "{auth:?}");
        assert!(reply.body.is_empty());
        let challenges: Vec<&str> = reply
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(challenges, [r#"Basic realm="openum""#, r#"Bearer realm="openum""#]);
    }
    // Bearer tokens work.
    let bearer = format!("Bearer {}", server.token);
    let reply = server.ews_as(Some(&bearer), get_info("x")).await;
    assert_eq!(support::code(&reply), ResponseCode::ErrorInvalidPhoneCallId);
    server.stop().await;
}

async fn benign_variations_from_real_clients_are_accepted(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    server
        .add_call("c", "alice", CallState::Connected, Cause::None)
        .await;
    let variants = [
        // Default namespaces instead of prefixes, no declaration, no header (version defaults).
        format!("<Envelope xmlns=\"{S}\"><Body><GetPhoneCallInformation xmlns=\"{M}\"><PhoneCallId Id=\"c\"/></GetPhoneCallInformation></Body></Envelope>"),
        // Odd prefixes, declared on inner elements.
        format!("<e:Envelope xmlns:e=\"{S}\"><e:Header><v:RequestServerVersion xmlns:v=\"{T}\" Version=\"V2017_07_11\"/></e:Header><e:Body><q:GetPhoneCallInformation xmlns:q=\"{M}\"><q:PhoneCallId Id=\"c\"/></q:GetPhoneCallInformation></e:Body></e:Envelope>"),
        // BOM, CRLF and indentation, comments, a CDATA-free body, unknown headers to ignore.
        format!("\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<soap:Envelope xmlns:soap=\"{S}\" xmlns:t=\"{T}\" xmlns:m=\"{M}\">\r\n  <!-- a comment -->\r\n  <soap:Header>\r\n    <t:RequestServerVersion Version=\"Exchange2013_SP1\" />\r\n    <t:MailboxCulture>en-US</t:MailboxCulture>\r\n    <t:TimeZoneContext><t:TimeZoneDefinition Id=\"Pacific Standard Time\"/></t:TimeZoneContext>\r\n    <t:DateTimePrecision>Seconds</t:DateTimePrecision>\r\n    <x:Custom xmlns:x=\"urn:x\" soap:mustUnderstand=\"0\">whatever</x:Custom>\r\n  </soap:Header>\r\n  <soap:Body>\r\n    <m:GetPhoneCallInformation>\r\n      <m:PhoneCallId Id=\"c\" />\r\n    </m:GetPhoneCallInformation>\r\n  </soap:Body>\r\n</soap:Envelope>\r\n"),
        // Impersonating oneself is allowed.
        get_info("c").replace("</soap:Header>", "<t:ExchangeImpersonation><t:ConnectingSID><t:PrincipalName>Alice</t:PrincipalName></t:ConnectingSID></t:ExchangeImpersonation></soap:Header>"),
    ];
    for body in variants {
        let reply = server.ews(body.clone()).await;
        assert_eq!(reply.status, 200, "{body}\n{}", reply.body);
        assert_eq!(support::code(&reply), ResponseCode::NoError, "{body}");
    }
    // Path case, SOAPAction (quoted) ignored.
    let reply = server
        .client
        .post(server.url("/ews/exchange.ASMX"))
        .header("Authorization", TestServer::basic("alice", PASSWORD))
        .header("SOAPAction", format!("\"{M}/GetPhoneCallInformation\""))
        .body(get_info("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    server.stop().await;
}

async fn other_paths_and_methods(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let get = server
        .client
        .get(server.url("/EWS/Exchange.asmx"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    for (path, needle) in [
        ("/EWS/Services.wsdl", "wsdl:definitions"),
        ("/ews/messages.xsd", "PlayOnPhoneType"),
        ("/EWS/types.xsd", "PhoneCallStateType"),
    ] {
        let r = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "text/xml; charset=utf-8");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = server.client.get(server.url("/owa")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

over_http_and_https!(
    hostile_requests_get_their_specific_fault_and_the_server_survives,
    schema_violations_report_line_position_and_a_precise_violation,
    authentication_failures_get_401_with_challenges_and_no_body,
    benign_variations_from_real_clients_are_accepted,
    other_paths_and_methods,
);
