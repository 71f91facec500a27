//! Hang-ups the far end can count on, end to end against SIPp: the end of the message reads
//! Disconnected when the BYE is sent, whatever becomes of it (decisions §16), and SIGTERM hangs
//! every live call up before it drains HTTP, even with a slow client holding a connection open
//! (decisions §19). The far end's side is read from its trace or a tcpdump capture.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::capture::Capture;
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(30);

/// BYE requests SIPp has received so far (the first and its retransmissions).
fn byes_received(h: &Harness) -> usize {
    h.sipp_trace()
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message received") && m.contains("BYE sip:"))
        .count()
}

#[tokio::test]
async fn the_end_of_the_message_reads_disconnected_while_its_bye_is_still_unanswered() {
    let options = Options {
        scenario: "uas_deaf_bye.xml",
        audio_seconds: 1.0,
        ..Options::default()
    };
    let h = Harness::start(options).await;
    let id = h.play("2005551234").await;
    let done = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Disconnected)
        .await;
    assert_eq!(done.connection_failure_cause, C::None);
    assert_eq!(done.sip_response_code, Some(200));
    let at_disconnected = byes_received(&h);
    // The BYE transaction is still retransmitting (T1 = 100 ms: for 6.4 s) after the call read
    // Disconnected: the status did not wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while byes_received(&h) <= at_disconnected.max(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "no BYE retransmission after Disconnected ({at_disconnected} BYEs)\n{}",
            h.sipp_trace()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "Disconnected was read after {at_disconnected} BYE(s); {} arrived in the end",
        byes_received(&h)
    );
}

/// Asserts the call reads Disconnected with cause None.
fn assert_disconnected_normally(info: &ews_proto::PhoneCallInformation) {
    assert_eq!(
        (info.phone_call_state, info.connection_failure_cause),
        (S::Disconnected, C::None),
        "{info:?}"
    );
}

/// Places a call to SIPp running `scenario` (over TCP, one call) and hangs it up before any
/// response: the next read already says Disconnected/None (then `at_once` checks the harness),
/// and so does every read until SIPp's trace shows `until` (the far end's late answer handled),
/// and after SIPp exited counting the call passed. Returns SIPp's trace.
async fn hang_up_before_any_response(
    scenario: &'static str,
    at_once: impl FnOnce(&Harness),
    until: &str,
) -> String {
    let options = Options {
        scenario,
        tcp: true,
        sipp_args: vec!["-m".into(), "1".into()],
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let id = h.play("2005551234").await;
    assert_eq!(h.disconnect(&id).await, ews_proto::ResponseCode::NoError);
    // At once: the next read already says Disconnected/None …
    assert_disconnected_normally(&h.info(&id).await);
    at_once(&h);
    // … and forever after, while the far end answers late and is dealt with.
    let deadline = std::time::Instant::now() + CALL;
    while !h.sipp_trace().contains(until) {
        assert_disconnected_normally(&h.info(&id).await);
        assert!(
            std::time::Instant::now() < deadline,
            "no {until:?}\n{}",
            h.sipp_trace()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sipp = h.sipp_exit(Duration::from_secs(10)).await;
    assert!(sipp.success(), "{sipp}\n{}", h.sipp_trace());
    assert_disconnected_normally(&h.info(&id).await);
    h.sipp_trace()
}

#[tokio::test]
async fn a_hang_up_before_any_provisional_reads_disconnected_at_once_and_cancels_after_the_late_180(
) {
    // The far end rings late and gets its CANCEL (and ACKs the 487).
    let trace = hang_up_before_any_response(
        "uas_late_ringing.xml",
        |h| {
            assert!(
                !h.sipp_trace().contains("SIP/2.0 180"),
                "the far end had not rung yet"
            );
        },
        "ACK sip:",
    )
    .await;
    let ringing = trace.find("SIP/2.0 180").unwrap();
    let cancel = trace.find("CANCEL sip:").expect("a CANCEL");
    assert!(
        ringing < cancel,
        "CANCEL only after the provisional (RFC 3261 §9.1)"
    );
}

#[tokio::test]
async fn a_hang_up_before_any_response_acks_and_byes_a_late_200_and_stays_disconnected() {
    // The late 200 is ACKed and BYEd (SIPp fails the call otherwise); EWS never sees it.
    hang_up_before_any_response("uas_late_answer.xml", |_| {}, "BYE sip:").await;
}

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
    if byes.len() != 10 {
        // Which call went without, and what openum and the far end's network said of it.
        let log = std::fs::read_to_string(h.dir.path().join("openum.log")).unwrap_or_default();
        let mut sip_ids: Vec<&str> = log
            .split("sip_call_id=")
            .skip(1)
            .filter_map(|rest| rest.split(['}', ' ', ':']).next())
            .collect();
        sip_ids.sort_unstable();
        sip_ids.dedup();
        let missing: Vec<&str> = sip_ids
            .into_iter()
            .filter(|id| !byes.contains_key(*id))
            .collect();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                missing.iter().any(|id| l.contains(id))
                    || l.contains("shutdown")
                    || l.contains("BYE")
                    || l.contains("WARN")
                    || l.contains("ERROR")
            })
            .collect();
        let seen: Vec<String> = packets
            .iter()
            .filter(|p| missing.iter().any(|id| p.text().contains(id)))
            .map(|p| {
                format!(
                    "{} -> {}: {}",
                    p.src_port,
                    p.dst_port,
                    p.text().lines().next().unwrap_or("")
                )
            })
            .collect();
        // How each call ended, as the store holds it.
        let db = rusqlite::Connection::open(h.dir.path().join("data/openum.db")).unwrap();
        let stored: Vec<(String, String, String, Option<i64>)> = ids
            .iter()
            .map(|id| {
                db.query_row(
                    "SELECT id, state, cause, sip_code FROM calls WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap()
            })
            .collect();
        panic!(
            "BYEs for {} calls: {byes:?}\nwithout one: {missing:?}\nstored: {stored:?}\ncaptured for them: {seen:#?}\nopenum's log about them:\n{}",
            byes.len(),
            lines.join("\n")
        );
    }
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
    // Call changes are written in the background: the process flushed them before it exited,
    // so the store holds each hang-up (a lost one would read Connected, and the next start
    // would close it as Disconnected/Other).
    let db = rusqlite::Connection::open(h.dir.path().join("data/openum.db")).unwrap();
    for id in &ids {
        let (state, cause): (String, String) = db
            .query_row("SELECT state, cause FROM calls WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (state.as_str(), cause.as_str()),
            ("Disconnected", "None"),
            "call {id}"
        );
    }
}
