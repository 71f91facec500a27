//! RTCP at a real far end: baresip answers and sends its own RTCP; tcpdump captures the far end's
//! ports and tshark (an independent dissector) judges openum's Sender Reports; the far end's
//! reports show up in openum's /metrics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use support::capture::Capture;
use support::ews::metric;
use support::phone::Phone;
use support::rtcp::{assert_ends_with_bye, assert_periodic_sender_reports, sender_rtcp, ssrc};
use support::serve::Openum;

#[tokio::test]
async fn sender_reports_reach_a_real_phone_every_five_seconds_and_its_reports_reach_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let base = 46000 + (std::process::id() % 8) as u16 * 100;
    let (http, sip, phone_sip, rtp_lo, rtp_hi) = (base, base + 1, base + 2, base + 50, base + 99);
    let phone = Phone::start(dir.path(), phone_sip, rtp_lo, rtp_hi);
    let capture = Capture::start(
        dir.path(),
        "far-end.pcap",
        &format!("udp portrange {rtp_lo}-{rtp_hi}"),
    );
    let openum = Openum::config(dir.path(), http, sip)
        .gateway(&format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\""))
        .tone(17.0)
        .log("info,openum_call_runtime=debug")
        .start()
        .await;
    let info = openum.call_until_ended(Duration::from_secs(60)).await;
    assert!(info.contains(">None<"), "{info}");
    let metrics = openum.metrics().await;
    drop(phone);
    let packets = capture.finish();

    // Our SSRC: the RTP we sent to the phone (to a port in its range, from one outside).
    let ours = packets
        .iter()
        .find(|p| {
            p.is_rtp()
                && (rtp_lo..=rtp_hi).contains(&p.dst_port)
                && !(rtp_lo..=rtp_hi).contains(&p.src_port)
        })
        .map(ssrc)
        .expect("our RTP in the capture");
    // Every RTCP packet we sent, as the capture has it (SR + SDES; the last one with BYE).
    let ours_rtcp = sender_rtcp(&packets, ours);
    assert_ends_with_bye(&ours_rtcp, ours);
    // 17.5 s of media: the first SR after 1.25-3.75 s, then every 2.5-7.5 s (RFC 3550 §6.3.5),
    // and a last one with the BYE.
    assert_periodic_sender_reports(&dir.path().join("far-end.pcap"), ours, &ours_rtcp);
    // The far end's reports about our stream, as /metrics shows them.
    let received = metric(&metrics, "openum_rtcp_reports_received_total ")
        .unwrap_or_else(|| panic!("{metrics}"));
    let sent = metric(&metrics, "openum_rtcp_sender_reports_sent_total ")
        .unwrap_or_else(|| panic!("{metrics}"));
    eprintln!("metrics: {received} reports received, {sent} RTCP packets sent");
    assert!(
        received >= 1,
        "no far-end report reached the metrics\n{metrics}"
    );
    assert!(sent >= 3);
}
