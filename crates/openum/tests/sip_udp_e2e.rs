//! openum's own SIP/UDP socket, end to end against SIPp far ends that send what rsipstack's
//! reader could not take: a 180 with an 8 KB reason phrase and a 183 with ~60 KB of headers
//! (RFC 3261 §18.3: any datagram up to 65,535 bytes), a 200 OK without a Contact (ACKed to the
//! INVITE's Request-URI, over TCP too); and datagrams that are not SIP, dropped with a warning and
//! counted.
//! Ports 51000–51099.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(30);
const PORTS: u16 = 51000;

fn options(scenario: &'static str, keys: &[(&str, String)]) -> Options {
    let mut sipp_args = vec!["-m".to_owned(), "1".to_owned()];
    for (key, value) in keys {
        sipp_args.extend(["-key".to_owned(), (*key).to_owned(), value.clone()]);
    }
    Options {
        scenario,
        audio_seconds: 1.0,
        sipp_args,
        port_base: Some(PORTS),
        ..Options::default()
    }
}

/// The value of the first `/metrics` line starting with `prefix` (0 if absent).
fn metric(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Plays the message, expects the call to ring with `ringing` (code), connect, play and hang up
/// normally, and SIPp (run with `-m 1`) to count its call successful: it received the ACK and
/// the BYE its scenario requires.
async fn rings_connects_plays_and_hangs_up(
    h: &mut Harness,
    ringing: i32,
) -> ews_proto::PhoneCallInformation {
    let id = h.play("2005551234").await;
    let alerted = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Alerted)
        .await;
    assert_eq!(alerted.sip_response_code, Some(ringing), "{alerted:?}");
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    let done = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Disconnected)
        .await;
    assert_eq!(done.connection_failure_cause, C::None, "{done:?}");
    assert_eq!(done.sip_response_code, Some(200), "{done:?}");
    let sipp = h.sipp_exit(Duration::from_secs(15)).await;
    assert!(sipp.success(), "{sipp}\n{}", h.sipp_trace());
    let trace = h.sipp_trace();
    assert!(trace.contains("ACK sip:"), "{trace}");
    assert!(trace.contains("BYE sip:"), "{trace}");
    // The message was played: 1 s of audio and 0.5 s of silence, about 75 packets.
    let metrics = h.get("/metrics").await;
    let sent = metric(&metrics, "openum_rtp_packets_sent_total ");
    assert!((70..=80).contains(&sent), "{sent} RTP packets\n{metrics}");
    assert_eq!(
        metric(&metrics, r#"openum_sip_dropped_total{reason="not_sip"} "#),
        0,
        "{metrics}"
    );
    alerted
}

#[tokio::test]
async fn a_180_with_an_8_kb_reason_phrase_rings_and_the_call_plays() {
    let reason = "R".repeat(8 * 1024);
    let mut h = Harness::start(options(
        "uas_long_reason.xml",
        &[("reason", reason.clone())],
    ))
    .await;
    let alerted = rings_connects_plays_and_hangs_up(&mut h, 180).await;
    assert_eq!(alerted.sip_response_text.as_deref(), Some(reason.as_str()));
}

#[tokio::test]
async fn a_183_with_60_kb_of_headers_rings_and_the_call_plays() {
    let mut h = Harness::start(options("uas_big_headers.xml", &[("pad", "p".repeat(1000))])).await;
    rings_connects_plays_and_hangs_up(&mut h, 183).await;
    // SIPp did send the whole 183 (its trace shows the last padding header).
    let trace = h.sipp_trace();
    let start = trace.find("SIP/2.0 183").expect("a 183");
    let end = start + trace[start..].find("X-Padding-60:").expect("60 headers");
    assert!(end - start > 59_000, "{} bytes", end - start);
}

#[tokio::test]
async fn a_200_without_contact_is_acked_to_the_request_uri_and_the_call_plays() {
    let mut h = Harness::start(options("uas_no_contact.xml", &[])).await;
    rings_connects_plays_and_hangs_up(&mut h, 180).await;
    let metrics = h.get("/metrics").await;
    // One per 200 received (a retransmission that reached the stack before the ACK counts too).
    assert!(
        metric(&metrics, "openum_sip_contact_repairs_total ") >= 1,
        "{metrics}"
    );
    let log = std::fs::read_to_string(h.dir.path().join("openum.log")).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("has no Contact") && l.contains("WARN"))
        .unwrap_or_else(|| panic!("no warning\n{log}"));
    assert!(
        warning.contains(&format!("127.0.0.1:{}", h.sipp_port)),
        "the warning names the far end: {warning}"
    );
}

#[tokio::test]
async fn over_tcp_too_a_200_without_contact_is_acked_and_the_call_plays() {
    let mut h = Harness::start(Options {
        tcp: true,
        ..options("uas_no_contact.xml", &[])
    })
    .await;
    rings_connects_plays_and_hangs_up(&mut h, 180).await;
    let metrics = h.get("/metrics").await;
    // One per 200 received (a retransmission that reached the stack before the ACK counts too).
    assert!(
        metric(&metrics, "openum_sip_contact_repairs_total ") >= 1,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_datagram_that_is_not_sip_is_dropped_logged_and_counted_and_a_ping_is_answered() {
    let h = Harness::start(Options {
        port_base: Some(PORTS),
        ..Options::default()
    })
    .await;
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let openum = format!("127.0.0.1:{}", h.sip_port);
    peer.send_to(b"\x16\x03\x01garbage, not SIP\r\n\r\n", &openum)
        .await
        .unwrap();
    // A double-CRLF keep-alive is answered with a CRLF (RFC 5626 §3.5.1), and not counted as a
    // drop.
    peer.send_to(b"\r\n\r\n", &openum).await.unwrap();
    let mut pong = [0_u8; 16];
    let (len, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut pong))
        .await
        .expect("no answer to the keep-alive ping")
        .unwrap();
    assert_eq!(&pong[..len], b"\r\n");
    let metrics = h.get("/metrics").await;
    assert_eq!(
        metric(&metrics, r#"openum_sip_dropped_total{reason="not_sip"} "#),
        1,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "openum_sip_keepalives_total "),
        1,
        "{metrics}"
    );
    let source = peer.local_addr().unwrap().to_string();
    let log = std::fs::read_to_string(h.dir.path().join("openum.log")).unwrap();
    let warning = log
        .lines()
        .find(|l| l.contains("not a SIP message"))
        .unwrap_or_else(|| panic!("no warning\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&source), "names the source: {warning}");
    assert!(
        warning.contains("error"),
        "names the parse error: {warning}"
    );
    // openum still works: a call through the same socket.
    let id = h.play("2005551234").await;
    let done = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Disconnected)
        .await;
    assert_eq!(done.connection_failure_cause, C::None, "{done:?}");
}
