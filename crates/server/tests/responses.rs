//! Every response the server can produce — each success, each per-message error, each fault —
//! checked for its code and validated against the official messages.xsd/types.xsd (xmllint).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

mod support;

use calls::{CallState, Cause};
use ews_proto::{PhoneCallState, ResponseCode, ResponseDocument};
use server::config::Config;
use server::store::Store as _;
use support::*;
use testkit::Validator;

fn valid(reply: &Reply) {
    Validator::shared().assert_valid(&reply.body);
}

async fn expect(server: &TestServer, body: String, status: u16, expected: ResponseCode) -> Reply {
    let reply = server.ews(body).await;
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(code(&reply), expected, "{}", reply.body);
    valid(&reply);
    reply
}

async fn play_on_phone_success_and_every_error_validate(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let item = server.add_item("alice", true).await;
    let silent = server.add_item("alice", false).await;
    let bobs = server.add_item("bob", true).await;

    let ok = expect(
        &server,
        play(&item, "(555) 555-1212"),
        200,
        ResponseCode::NoError,
    )
    .await;
    let ResponseDocument::Response(r) = decode(&ok) else {
        unreachable!()
    };
    let ews_proto::Response::PlayOnPhone(p) = r.body else {
        unreachable!()
    };
    let id = p.phone_call_id.unwrap().id;
    assert_eq!(
        *server.calls.placed.lock().unwrap(),
        vec!["5555551212".to_owned()]
    );
    let record = server.sqlite.call(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.owner.as_str(), record.state),
        ("alice", CallState::Connecting)
    );

    expect(
        &server,
        play("", "5551212"),
        200,
        ResponseCode::ErrorInvalidIdEmpty,
    )
    .await;
    expect(
        &server,
        play("AkAjzQTbY/i=", "5551212"),
        200,
        ResponseCode::ErrorInvalidIdMalformed,
    )
    .await;
    expect(
        &server,
        play(&server::voicemail::mint_item_id(), "5551212"),
        200,
        ResponseCode::ErrorItemNotFound,
    )
    .await;
    expect(
        &server,
        play(&bobs, "5551212"),
        200,
        ResponseCode::ErrorItemNotFound,
    )
    .await;
    expect(
        &server,
        play(&silent, "5551212"),
        200,
        ResponseCode::ErrorContentConversionFailed,
    )
    .await;
    expect(
        &server,
        play(&item, ""),
        200,
        ResponseCode::ErrorInvalidPhoneNumber,
    )
    .await;
    expect(
        &server,
        play(&item, "call me maybe"),
        200,
        ResponseCode::ErrorInvalidPhoneNumber,
    )
    .await;
    let capped = expect(
        &server,
        play(&item, "555-0000"),
        200,
        ResponseCode::ErrorUnifiedMessagingRequestFailed,
    )
    .await;
    assert!(
        capped.body.contains("concurrent-call cap"),
        "{}",
        capped.body
    );
    expect(
        &server,
        play(&item, "555-0001"),
        200,
        ResponseCode::ErrorUnifiedMessagingRequestFailed,
    )
    .await;

    // Play on Phone disabled for carol.
    let reply = server
        .ews_as(
            Some(&TestServer::basic("carol", PASSWORD)),
            play(&item, "5551212"),
        )
        .await;
    assert_eq!(
        code(&reply),
        ResponseCode::ErrorUserNotUnifiedMessagingEnabled
    );
    valid(&reply);
    server.stop().await;
}

async fn play_on_phone_without_a_gateway_says_so(scheme: Scheme) {
    let server = TestServer::start_over(scheme, Config::default(), false).await;
    let item = server.add_item("alice", true).await;
    expect(
        &server,
        play(&item, "5551212"),
        200,
        ResponseCode::ErrorUnifiedMessagingServerNotFound,
    )
    .await;
    assert!(server.calls.placed.lock().unwrap().is_empty());
    server.stop().await;
}

async fn get_phone_call_information_reports_every_state_and_validates(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let states = [
        (
            CallState::Connecting,
            Cause::None,
            PhoneCallState::Connecting,
        ),
        (CallState::Alerted, Cause::None, PhoneCallState::Alerted),
        (CallState::Connected, Cause::None, PhoneCallState::Connected),
        (
            CallState::Disconnected,
            Cause::UserBusy,
            PhoneCallState::Disconnected,
        ),
        (
            CallState::Disconnected,
            Cause::NoAnswer,
            PhoneCallState::Disconnected,
        ),
        (
            CallState::Disconnected,
            Cause::Unavailable,
            PhoneCallState::Disconnected,
        ),
        (
            CallState::Disconnected,
            Cause::Other,
            PhoneCallState::Disconnected,
        ),
    ];
    for (i, (state, cause, wire)) in states.into_iter().enumerate() {
        let id = format!("call-{i}");
        server.add_call(&id, "alice", state, cause).await;
        if cause == Cause::UserBusy {
            let mut r = server.sqlite.call(&id).await.unwrap().unwrap();
            r.sip_code = Some(486);
            r.sip_text = Some("Busy Here & <gone>".into());
            r.ended_at = Some(now());
            server.sqlite.update_call(&r).await.unwrap();
        }
        let reply = expect(&server, get_info(&id), 200, ResponseCode::NoError).await;
        let ResponseDocument::Response(r) = decode(&reply) else {
            unreachable!()
        };
        let ews_proto::Response::GetPhoneCallInformation(g) = r.body else {
            unreachable!()
        };
        let info = g.phone_call_information.unwrap();
        assert_eq!(info.phone_call_state, wire);
        assert_eq!(info.connection_failure_cause.as_str(), cause.as_str());
        if cause == Cause::UserBusy {
            assert_eq!(info.sip_response_code, Some(486));
            assert_eq!(
                info.sip_response_text.as_deref(),
                Some("Busy Here & <gone>")
            );
        } else {
            assert_eq!(info.sip_response_code, None);
        }
    }
    let unknown = expect(
        &server,
        get_info("never-issued"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    assert!(unknown.body.contains("The phone call ID isn't valid"));
    // Another user's call is invisible.
    server
        .add_call("bobs-call", "bob", CallState::Connected, Cause::None)
        .await;
    expect(
        &server,
        get_info("bobs-call"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    // Ids are exact strings.
    expect(
        &server,
        get_info("CALL-0"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    // A store failure is an internal error, not a fault, and leaks no detail.
    let boom = expect(
        &server,
        get_info("boom"),
        200,
        ResponseCode::ErrorInternalServerError,
    )
    .await;
    assert!(!boom.body.contains("disk on fire"));
    server.stop().await;
}

async fn finished_calls_expire_after_the_retention_period(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    server
        .add_call("old", "alice", CallState::Disconnected, Cause::None)
        .await;
    let mut r = server.sqlite.call("old").await.unwrap().unwrap();
    r.ended_at = Some(now() - 25 * 3600);
    server.sqlite.update_call(&r).await.unwrap();
    expect(
        &server,
        get_info("old"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    expect(
        &server,
        disconnect("old"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    server.stop().await;
}

async fn disconnect_phone_call_success_idempotence_and_errors_validate(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    server
        .add_call("live", "alice", CallState::Alerted, Cause::None)
        .await;
    expect(&server, disconnect("live"), 200, ResponseCode::NoError).await;
    let info = expect(&server, get_info("live"), 200, ResponseCode::NoError).await;
    assert!(info.body.contains(">Disconnected<"));
    expect(&server, disconnect("live"), 200, ResponseCode::NoError).await;
    assert_eq!(server.calls.hung_up.lock().unwrap().len(), 1);

    // A call in the registry that no engine runs is closed as the user asked.
    server
        .add_call("orphan", "alice", CallState::Connected, Cause::None)
        .await;
    server.calls.live.lock().unwrap().remove("orphan");
    expect(&server, disconnect("orphan"), 200, ResponseCode::NoError).await;
    let record = server.sqlite.call("orphan").await.unwrap().unwrap();
    assert_eq!(record.state, CallState::Disconnected);

    server
        .add_call("bobs", "bob", CallState::Connected, Cause::None)
        .await;
    expect(
        &server,
        disconnect("bobs"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    assert_eq!(
        server.sqlite.call("bobs").await.unwrap().unwrap().state,
        CallState::Connected,
        "another user's call must not be ended"
    );
    expect(
        &server,
        disconnect("nope"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    server.stop().await;
}

async fn every_fault_validates_and_is_http_500(scheme: Scheme) {
    let server = TestServer::over(scheme).await;
    let cases: Vec<(String, ResponseCode)> = vec![
        ("<not xml".into(), ResponseCode::ErrorInvalidRequest),
        (envelope(Some("Exchange2010"), r#"<m:PlayOnPhone><m:DialString>1</m:DialString></m:PlayOnPhone>"#), ResponseCode::ErrorSchemaValidation),
        (envelope(Some("Exchange2010"), "<m:GetItem/>"), ResponseCode::ErrorInvalidOperation),
        (disconnect("x").replace("Exchange2010", "Exchange2007_SP3"), ResponseCode::ErrorInvalidServerVersion),
        (disconnect("x").replace("Exchange2010", "Exchange2007_SP1"), ResponseCode::ErrorIncorrectSchemaVersion),
        (
            disconnect("x").replace(
                "</soap:Header>",
                "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>ceo@example.com</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation></soap:Header>",
            ),
            ResponseCode::ErrorImpersonateUserDenied,
        ),
    ];
    for (body, expected) in cases {
        let reply = expect(&server, body, 500, expected).await;
        assert!(!reply.body.contains("<s:Header"), "faults carry no header");
    }
    server.stop().await;
}

async fn a_request_flood_gets_server_busy_with_a_back_off_hint(scheme: Scheme) {
    let mut config = Config::default();
    config.server.max_concurrent_requests = 1;
    let server = TestServer::start_over(scheme, config, true).await;
    let item = server.add_item("alice", true).await;
    // Warm the credential cache so the held request is inside the handler quickly.
    expect(
        &server,
        get_info("warm"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    let held = {
        let client = server.client.clone();
        let url = server.url("/EWS/Exchange.asmx");
        let body = play(&item, "999");
        tokio::spawn(async move {
            client
                .post(url)
                .header("Authorization", TestServer::basic("alice", PASSWORD))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    while server.calls.placed.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let busy = expect(&server, get_info("x"), 500, ResponseCode::ErrorServerBusy).await;
    let ResponseDocument::Fault(f) = decode(&busy) else {
        unreachable!()
    };
    assert_eq!(
        f.message_xml,
        Some(ews_proto::FaultMessageXml::Values(vec![
            ews_proto::MessageXmlValue {
                name: "BackOffMilliseconds".into(),
                value: "1000".into()
            }
        ]))
    );
    server.calls.gate.notify_one();
    assert_eq!(held.await.unwrap(), 200);
    expect(
        &server,
        get_info("x"),
        200,
        ResponseCode::ErrorInvalidPhoneCallId,
    )
    .await;
    server.stop().await;
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    // Guards the guard: a validator that accepts everything would make every test above vacuous.
    let bad = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><GetPhoneCallInformationResponse ResponseClass="Success" xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"><ResponseCode>NoError</ResponseCode><PhoneCallInformation><PhoneCallState xmlns="http://schemas.microsoft.com/exchange/services/2006/types">connected</PhoneCallState></PhoneCallInformation></GetPhoneCallInformationResponse></s:Body></s:Envelope>"#;
    assert!(Validator::shared().validate(bad).is_err());
}

over_http_and_https!(
    play_on_phone_success_and_every_error_validate,
    play_on_phone_without_a_gateway_says_so,
    get_phone_call_information_reports_every_state_and_validates,
    finished_calls_expire_after_the_retention_period,
    disconnect_phone_call_success_idempotence_and_errors_validate,
    every_fault_validates_and_is_http_500,
    a_request_flood_gets_server_busy_with_a_back_off_hint,
);
