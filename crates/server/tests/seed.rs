//! The project seed: Microsoft's documented DisconnectPhoneCall exchange, replayed over TCP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

mod support;

use calls::{CallState, Cause};
use server::config::Config;
use server::store::Store as _;
use support::*;
use testkit::{canonicalize, Validator};

const SEED_REQUEST: &str =
    include_str!("../../ews-proto/tests/fixtures/DisconnectPhoneCall.request.xml");
const SEED_RESPONSE: &str =
    include_str!("../../ews-proto/tests/fixtures/DisconnectPhoneCall.response.xml");

#[tokio::test]
async fn seed_disconnect_exchange_matches_the_documented_response_exactly() {
    let mut config = Config::default();
    let v = &mut config.ews.server_version;
    v.major_version = 14;
    v.minor_version = 0;
    v.major_build_number = 639;
    v.minor_build_number = 20;
    v.version = "Exchange2010".into();
    let server = TestServer::start_with(config, true).await;
    server
        .add_call("OWVl4NWb3N29t", "alice", CallState::Connected, Cause::None)
        .await;

    let reply = server.ews(SEED_REQUEST).await;

    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers["content-type"].to_str().unwrap(),
        "text/xml; charset=utf-8"
    );
    assert_eq!(canonicalize(&reply.body), canonicalize(SEED_RESPONSE));
    Validator::shared().assert_valid(&reply.body);
    assert_eq!(
        *server.calls.hung_up.lock().unwrap(),
        vec!["OWVl4NWb3N29t".to_owned()]
    );
    let record = server.sqlite.call("OWVl4NWb3N29t").await.unwrap().unwrap();
    assert_eq!(record.state, CallState::Disconnected);

    // Hanging up again is idempotent: the same documented success, and no second hang-up.
    let again = server.ews(SEED_REQUEST).await;
    assert_eq!(canonicalize(&again.body), canonicalize(SEED_RESPONSE));
    assert_eq!(server.calls.hung_up.lock().unwrap().len(), 1);
    server.stop().await;
}
