//! Hang-ups the far end can count on, end to end against SIPp: SIGTERM hangs every live call up
//! before it drains HTTP, even with a slow client holding a connection open (decisions §19). The
//! far end's side is read from a tcpdump capture.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ews_proto::PhoneCallState as S;
use support::capture::Capture;
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(30);

#[tokio::test]
async fn sigterm_with_a_slow_client_and_ten_live_calls_hangs_every_call_up_at_once() {
    let options = Options {
        audio_seconds: 30.0,
        // Ten calls for one user: lift the per-user cap (default 3).
        sip_config: "[admission]\nmax_calls_per_user = 20\n".into(),
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(h.play("2005551234").await);
    }
    for id in &ids {
        h.wait_for(id, CALL, |i| i.phone_call_state == S::Connected)
            .await;
    }
    // A client that sent half a request and went quiet: the HTTP drain waits for it.
    let address = h.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(
        b"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: openum\r\nContent-Type: text/xml\r\nContent-Length: 1000\r\n\r\n<s:Envelope",
    )
    .unwrap();
    let capture = Capture::start(
        h.dir.path(),
        "sigterm.pcap",
        &format!("udp port {}", h.sipp_port),
    );
    let sent_us = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let status = h.signal("TERM");
    assert!(status.success(), "openum exited with {status}");
    drop(slow);
    let packets = capture.finish();
    // The first BYE of each call, as the far end's network saw it.
    let mut byes: BTreeMap<String, u64> = BTreeMap::new();
    for p in packets.iter().filter(|p| p.dst_port == h.sipp_port) {
        let text = p.text();
        if !text.starts_with("BYE sip:") {
            continue;
        }
        let call_id = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap()
            .trim()
            .to_owned();
        byes.entry(call_id).or_insert(p.at_us);
    }
    assert_eq!(byes.len(), 10, "BYEs for {} calls: {byes:?}", byes.len());
    let last_ms = byes
        .values()
        .map(|at| at.saturating_sub(sent_us) / 1000)
        .max()
        .unwrap();
    eprintln!("every far end saw its BYE within {last_ms} ms of SIGTERM");
    // The issue measured 9.5–10 s (the HTTP drain first); the bound is 1 s, asserted with a
    // generous margin for a loaded two-core machine.
    assert!(
        last_ms < 5_000,
        "the last BYE left {last_ms} ms after SIGTERM"
    );
}
