//! Every documented example of the three operations decodes to the expected value and re-encodes
//! to a canonically equal document; every fixture is valid against the official schema.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use openum_ews_proto::*;
use testkit::{canonicalize, Validator};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn exchange2010() -> RequestHeader {
    RequestHeader {
        request_server_version: Some(RequestServerVersion {
            version: ExchangeVersion::Exchange2010,
        }),
        ..RequestHeader::default()
    }
}

fn server_14() -> Option<ServerVersionInfo> {
    Some(ServerVersionInfo {
        major_version: 14,
        minor_version: 0,
        major_build_number: 639,
        minor_build_number: 20,
        version: "Exchange2010".into(),
    })
}

fn check_request(name: &str, expected: Request) {
    let xml = fixture(name);
    let decoded = decode_request(xml.as_bytes(), Limits::default()).unwrap();
    assert_eq!(
        decoded,
        RequestEnvelope {
            header: exchange2010(),
            body: expected
        }
    );
    let encoded = encode_request(&decoded);
    assert_eq!(canonicalize(&encoded), canonicalize(&xml), "{name}");
    Validator::shared().assert_valid(&xml);
    Validator::shared().assert_valid(&encoded);
}

fn check_response(name: &str, expected: ResponseDocument) {
    let xml = fixture(name);
    let decoded = decode_response(xml.as_bytes()).unwrap();
    assert_eq!(decoded, expected, "{name}");
    let encoded = encode_document(&decoded);
    assert_eq!(canonicalize(&encoded), canonicalize(&xml), "{name}");
    assert!(encoded.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#));
    Validator::shared().assert_valid(&xml);
    Validator::shared().assert_valid(&encoded);
}

#[test]
fn play_on_phone_request_from_the_docs_round_trips() {
    check_request(
        "PlayOnPhone.request.xml",
        Request::PlayOnPhone(PlayOnPhone {
            item_id: ItemId {
                id: "AkAjzQTbY/i=".into(),
                change_key: None,
            },
            dial_string: "5555551212".into(),
        }),
    );
}

#[test]
fn get_phone_call_information_request_from_the_docs_round_trips() {
    check_request(
        "GetPhoneCallInformation.request.xml",
        Request::GetPhoneCallInformation(GetPhoneCallInformation {
            phone_call_id: PhoneCallId {
                id: "NDDY5uY29y9t".into(),
            },
        }),
    );
}

#[test]
fn disconnect_phone_call_seed_request_round_trips() {
    check_request(
        "DisconnectPhoneCall.request.xml",
        Request::DisconnectPhoneCall(DisconnectPhoneCall {
            phone_call_id: PhoneCallId {
                id: "OWVl4NWb3N29t".into(),
            },
        }),
    );
}

#[test]
fn play_on_phone_response_from_the_docs_round_trips() {
    check_response(
        "PlayOnPhone.response.xml",
        ResponseDocument::Response(ResponseEnvelope {
            server_version_info: server_14(),
            body: Response::PlayOnPhone(PlayOnPhoneResponse {
                message: ResponseMessage::success(),
                phone_call_id: Some(PhoneCallId {
                    id: "ZWMtWYtMY29t".into(),
                }),
            }),
        }),
    );
}

#[test]
fn get_phone_call_information_response_from_the_docs_round_trips() {
    check_response(
        "GetPhoneCallInformation.response.xml",
        ResponseDocument::Response(ResponseEnvelope {
            server_version_info: server_14(),
            body: Response::GetPhoneCallInformation(GetPhoneCallInformationResponse {
                message: ResponseMessage::success(),
                phone_call_information: Some(PhoneCallInformation {
                    phone_call_state: PhoneCallState::Connected,
                    connection_failure_cause: ConnectionFailureCause::None,
                    sip_response_text: None,
                    sip_response_code: None,
                }),
            }),
        }),
    );
}

#[test]
fn disconnect_phone_call_seed_response_round_trips() {
    check_response(
        "DisconnectPhoneCall.response.xml",
        ResponseDocument::Response(ResponseEnvelope {
            server_version_info: server_14(),
            body: Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
                message: ResponseMessage::success(),
            }),
        }),
    );
}

#[test]
fn schema_validation_fault_round_trips() {
    check_response(
        "fault.ErrorSchemaValidation.xml",
        ResponseDocument::Fault(Fault::schema_validation(
            11,
            8,
            "The required attribute 'Id' is missing.",
        )),
    );
}

#[test]
fn invalid_server_version_fault_round_trips() {
    check_response(
        "fault.ErrorInvalidServerVersion.xml",
        ResponseDocument::Fault(Fault::invalid_server_version()),
    );
}

#[test]
fn every_response_code_round_trips_through_its_wire_name() {
    assert_eq!(ResponseCode::ALL.len(), 382);
    assert_eq!(ResponseCode::ALL[0], ResponseCode::NoError);
    for code in ResponseCode::ALL {
        assert_eq!(ResponseCode::from_wire(code.as_str()), Some(*code));
    }
}
