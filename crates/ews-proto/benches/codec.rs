//! Decode + encode cost of each operation (criterion).

#![allow(
    missing_docs,
    reason = "criterion's macros generate undocumented items"
)]
#![expect(
    clippy::expect_used,
    reason = "a fixture that fails to decode should abort the bench"
)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use openum_ews_proto::{
    decode_request, encode_response, ConnectionFailureCause, DisconnectPhoneCallResponse,
    GetPhoneCallInformationResponse, Limits, PhoneCallId, PhoneCallInformation, PhoneCallState,
    PlayOnPhoneResponse, Request, Response, ResponseEnvelope, ResponseMessage, ServerVersionInfo,
};

const PLAY: &str = include_str!("../tests/fixtures/PlayOnPhone.request.xml");
const GET: &str = include_str!("../tests/fixtures/GetPhoneCallInformation.request.xml");
const DISCONNECT: &str = include_str!("../tests/fixtures/DisconnectPhoneCall.request.xml");

fn respond(request: &Request) -> Response {
    match request {
        Request::PlayOnPhone(_) => Response::PlayOnPhone(PlayOnPhoneResponse {
            message: ResponseMessage::success(),
            phone_call_id: Some(PhoneCallId {
                id: "ZWMtWYtMY29tZWMtWYtMY29t".into(),
            }),
        }),
        Request::GetPhoneCallInformation(_) => {
            Response::GetPhoneCallInformation(GetPhoneCallInformationResponse {
                message: ResponseMessage::success(),
                phone_call_information: Some(PhoneCallInformation {
                    phone_call_state: PhoneCallState::Connected,
                    connection_failure_cause: ConnectionFailureCause::None,
                    sip_response_text: Some("OK".into()),
                    sip_response_code: Some(200),
                }),
            })
        }
        Request::DisconnectPhoneCall(_) => {
            Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
                message: ResponseMessage::success(),
            })
        }
    }
}

fn codec(c: &mut Criterion) {
    for (name, doc) in [
        ("PlayOnPhone", PLAY),
        ("GetPhoneCallInformation", GET),
        ("DisconnectPhoneCall", DISCONNECT),
    ] {
        c.bench_function(&format!("{name}/decode+encode"), |b| {
            b.iter(|| {
                let request = decode_request(black_box(doc.as_bytes()), Limits::default())
                    .expect("fixture decodes");
                let out = encode_response(&ResponseEnvelope {
                    server_version_info: Some(ServerVersionInfo::default()),
                    body: respond(&request.body),
                });
                black_box(out)
            });
        });
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
