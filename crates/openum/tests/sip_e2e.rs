//! End to end through the EWS API (HTTP over TCP) with a real SIPp far end: every outcome of
//! the SIP dialogue shows up in GetPhoneCallInformation as decisions §9 maps it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S, ResponseCode};
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(20);

fn ended(i: &ews_proto::PhoneCallInformation) -> bool {
    i.phone_call_state == S::Disconnected
}

async fn outcome(dial: &str, options: Options) -> (Harness, ews_proto::PhoneCallInformation) {
    let h = Harness::start(options).await;
    let id = h.play(dial).await;
    let info = h.wait_for(&id, CALL, ended).await;
    (h, info)
}

/// Starts the harness with `options`, plays the message to `dial` and waits until the call is
/// Connected; the harness and the PhoneCallId.
async fn connected(dial: &str, options: Options) -> (Harness, String) {
    let h = Harness::start(options).await;
    let id = h.play(dial).await;
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    (h, id)
}

#[tokio::test]
async fn answered_call_plays_the_message_then_hangs_up_normally() {
    let h = Harness::start(Options::default()).await;
    let id = h.play("2005551234").await;
    let first = h.info(&id).await;
    assert!(
        matches!(first.phone_call_state, S::Connecting | S::Alerted),
        "{first:?}"
    );
    let alerted = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Alerted)
        .await;
    assert_eq!(alerted.sip_response_code, Some(180));
    let connected = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    assert_eq!(connected.sip_response_code, Some(200));
    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
    assert_eq!(done.sip_response_code, Some(200));
    h.wait_for_trace("BYE sip:", Duration::from_secs(5)).await;
    // 2 s of message and 0.5 s of silence: 125 packets (± the stream's phase), in /metrics.
    let metrics = h.get("/metrics").await;
    let sent = support::ews::metric(&metrics, "openum_rtp_packets_sent_total ")
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!((124..=126).contains(&sent), "{sent} packets");
    assert!(
        metrics.contains(r#"openum_calls_ended_total{cause="None"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("openum_calls_started_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn busy_486_is_user_busy() {
    let (_h, info) = outcome("4865551234", Options::default()).await;
    assert_eq!(info.connection_failure_cause, C::UserBusy);
    assert_eq!(info.sip_response_code, Some(486));
    assert_eq!(info.sip_response_text.as_deref(), Some("Busy Here"));
}

#[tokio::test]
async fn unavailable_404_and_503_and_no_answer_480_after_ringing() {
    for (dial, cause, code) in [
        ("4045551234", C::Unavailable, 404),
        ("5035551234", C::Unavailable, 503),
        // SIPp rings (180) before its 480: a 480 after alerting is NoAnswer.
        ("4805551234", C::NoAnswer, 480),
        ("6035551234", C::Other, 603),
    ] {
        let (_h, info) = outcome(dial, Options::default()).await;
        assert_eq!(info.connection_failure_cause, cause, "{dial}");
        assert_eq!(info.sip_response_code, Some(code), "{dial}");
    }
}

#[tokio::test]
async fn ring_timeout_cancels_and_reports_no_answer() {
    let options = Options {
        ring_timeout_secs: 2,
        ..Options::default()
    };
    let (h, info) = outcome("4085551234", options).await;
    assert_eq!(info.connection_failure_cause, C::NoAnswer);
    assert_eq!(info.sip_response_code, Some(487));
    assert!(h.sipp_trace().contains("CANCEL sip:"));
}

#[tokio::test]
async fn early_media_183_then_answer() {
    let h = Harness::start(Options::default()).await;
    let id = h.play("1835551234").await;
    let early = h
        .wait_for(&id, CALL, |i| i.phone_call_state == S::Alerted)
        .await;
    assert_eq!(early.sip_response_code, Some(183));
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
}

#[tokio::test]
async fn far_end_bye_mid_playback_ends_the_call_normally() {
    let options = Options {
        audio_seconds: 8.0,
        ..Options::default()
    };
    let (h, id) = connected("9995551234", options).await;
    let started = std::time::Instant::now();
    let done = h.wait_for(&id, CALL, ended).await;
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "ended by the far end's BYE, not by the end of the 8 s message"
    );
    assert_eq!(done.connection_failure_cause, C::None);
    // Our 200 to SIPp's BYE.
    h.wait_for_trace("SIP/2.0 200 OK", Duration::from_secs(2))
        .await;
}

#[tokio::test]
async fn digest_401_with_the_right_password_connects() {
    let options = Options {
        gateway_password: Some("secret"),
        ..Options::default()
    };
    let (h, _) = connected("4015551234", options).await;
    assert!(h.sipp_trace().contains("Authorization: Digest"));
}

#[tokio::test]
async fn digest_with_a_wrong_password_is_other_403() {
    let options = Options {
        gateway_password: Some("wrong"),
        ..Options::default()
    };
    let (_h, info) = outcome("4015551234", options).await;
    assert_eq!(info.connection_failure_cause, C::Other);
    assert_eq!(info.sip_response_code, Some(403));
}

#[tokio::test]
async fn disconnect_while_ringing_sends_cancel() {
    let h = Harness::start(Options::default()).await;
    let id = h.play("4085551234").await;
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Alerted)
        .await;
    assert_eq!(h.disconnect(&id).await, ResponseCode::NoError);
    h.wait_for_trace("CANCEL sip:", Duration::from_secs(5))
        .await;
    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
    assert_eq!(done.sip_response_code, Some(487));
    // Idempotent.
    assert_eq!(h.disconnect(&id).await, ResponseCode::NoError);
}

#[tokio::test]
async fn disconnect_while_connected_sends_bye() {
    let options = Options {
        audio_seconds: 10.0,
        ..Options::default()
    };
    let (h, id) = connected("2005551234", options).await;
    assert_eq!(h.disconnect(&id).await, ResponseCode::NoError);
    h.wait_for_trace("BYE sip:", Duration::from_secs(5)).await;
    let done = h.info(&id).await;
    assert_eq!(done.phone_call_state, S::Disconnected);
    assert_eq!(done.connection_failure_cause, C::None);
}

#[tokio::test]
async fn no_response_at_all_is_unavailable_after_timer_b() {
    // T1 is 100 ms in the harness, so Timer B fires after 6.4 s. SIPp stays silent for numbers
    // starting 000, which the dial plan would treat as international: the harness's dial plan
    // rewrites 7xxxxxxxxx into 000xxxxxxxxx, so this also checks rewriting end to end.
    let (h, info) = outcome("7005551234", Options::default()).await;
    assert!(h.sipp_trace().contains("INVITE sip:0000055512"));
    assert_eq!(info.connection_failure_cause, C::Unavailable);
    // No peer sent a status: none is shown (not a "408" nobody sent).
    assert_eq!(info.sip_response_code, None);
    assert_eq!(info.sip_response_text, None);
}

#[tokio::test]
async fn tcp_transport_answer_and_busy() {
    let options = Options {
        tcp: true,
        ..Options::default()
    };
    let (h, id) = connected("2005551234", options).await;
    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
    let busy = h.play("4865551234").await;
    let info = h.wait_for(&busy, CALL, ended).await;
    assert_eq!(info.connection_failure_cause, C::UserBusy);
    assert!(h.sipp_trace().contains("SIP/2.0/TCP"));
}

#[tokio::test]
async fn sigterm_mid_call_hangs_up_within_two_seconds_and_records_the_end() {
    let options = Options {
        audio_seconds: 20.0,
        ..Options::default()
    };
    let (mut h, id) = connected("2005551234", options).await;
    let sent = std::time::Instant::now();
    let status = h.signal("TERM");
    assert!(status.success(), "openum exited with {status}");
    h.wait_for_trace("BYE sip:", Duration::from_secs(2)).await;
    assert!(sent.elapsed() < Duration::from_secs(3));
    h.restart().await;
    let info = h.info(&id).await;
    assert_eq!(info.phone_call_state, S::Disconnected);
    assert_eq!(info.connection_failure_cause, C::None);
}

#[tokio::test]
async fn a_crash_mid_call_leaves_no_zombie_after_restart() {
    let options = Options {
        audio_seconds: 20.0,
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let other = h.play("4865551234").await;
    h.wait_for(&other, CALL, ended).await;
    let id = h.play("2005551234").await;
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    h.signal("KILL");
    h.restart().await;
    let info = h.info(&id).await;
    assert_eq!(info.phone_call_state, S::Disconnected);
    assert_eq!(info.connection_failure_cause, C::Other);
    // Nothing else is lost: the finished call is still there, unchanged.
    let busy = h.info(&other).await;
    assert_eq!(busy.connection_failure_cause, C::UserBusy);
    assert_eq!(busy.sip_response_code, Some(486));
}

#[tokio::test]
async fn in_dialog_options_reinvite_and_update_are_answered_and_the_call_goes_on() {
    let options = Options {
        scenario: "uas_reinvite.xml",
        audio_seconds: 4.0,
        ..Options::default()
    };
    let (h, id) = connected("2005551234", options).await;
    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
    let trace = h.sipp_trace();
    for request in ["OPTIONS sip:", "UPDATE sip:", "CSeq: 2 INVITE"] {
        assert!(
            trace.contains(request),
            "SIPp did not send {request}\n{trace}"
        );
    }
    // openum's answers, as SIPp received them: a 200 for each, the re-INVITE's with our SDP.
    // SIPp's trace has one entry per message, each starting with a line of dashes.
    let received: Vec<&str> = trace
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message received"))
        .collect();
    for cseq in ["CSeq: 1 OPTIONS", "CSeq: 2 INVITE", "CSeq: 3 UPDATE"] {
        assert!(
            received
                .iter()
                .any(|m| m.contains("SIP/2.0 200 OK") && m.contains(cseq)),
            "no 200 for {cseq}\n{trace}"
        );
    }
    let reinvite_ok = received
        .iter()
        .find(|m| m.contains("SIP/2.0 200 OK") && m.contains("CSeq: 2 INVITE"))
        .unwrap();
    assert!(
        reinvite_ok.contains("o=openum "),
        "the re-INVITE's 200 carries openum's SDP"
    );
    h.wait_for_trace("BYE sip:", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn admission_caps_refuse_extra_calls_with_a_clear_message() {
    // Default per-user cap: 3 live calls.
    let options = Options {
        audio_seconds: 20.0,
        ..Options::default()
    };
    let h = Harness::start(options).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.play("4085551234").await);
    }
    let refused = h
        .ews(&format!(
            "<m:PlayOnPhone><m:ItemId Id=\"{}\"/><m:DialString>4085551234</m:DialString></m:PlayOnPhone>",
            h.item
        ))
        .await;
    let ews_proto::ResponseDocument::Response(r) = refused else {
        panic!()
    };
    let m = r.body.message();
    assert_eq!(
        m.response_code,
        Some(ResponseCode::ErrorUnifiedMessagingRequestFailed)
    );
    assert!(
        m.message_text.as_deref().unwrap().contains("per-user"),
        "{m:?}"
    );
    // Hanging one up frees a place.
    assert_eq!(h.disconnect(&ids[0]).await, ResponseCode::NoError);
    h.wait_for(&ids[0], CALL, ended).await;
    let fourth = h.play("4085551234").await;
    for id in ids.iter().skip(1).chain([&fourth]) {
        h.disconnect(id).await;
    }
}
