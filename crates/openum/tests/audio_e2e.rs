//! Audio fidelity and RTP pacing, measured at a real far end: baresip auto-answers and records
//! what it hears (sndfile); tcpdump captures the RTP on the loopback interface.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use support::capture::{Capture, Udp};
use support::phone::Phone;
use support::serve::Openum;

#[tokio::test]
async fn the_message_reaches_a_real_phone_intact_and_evenly_paced() {
    let dir = tempfile::tempdir().unwrap();
    let base = 30000 + (std::process::id() % 200) as u16 * 100;
    let (http, sip, phone_sip, rtp_lo, rtp_hi) = (base, base + 1, base + 2, base + 50, base + 99);
    // baresip: auto-answer, no sound card, record what it decodes (telephony.md §5.3).
    let phone = Phone::start(dir.path(), phone_sip, rtp_lo, rtp_hi);
    let capture = Capture::start(
        dir.path(),
        "rtp.pcap",
        &format!("udp dst portrange {rtp_lo}-{rtp_hi}"),
    );
    let openum = Openum::config(dir.path(), http, sip)
        .gateway(&format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\""))
        .start()
        .await;
    let info = openum.call_until_ended(Duration::from_secs(30)).await;
    assert!(info.contains(">None<"), "{info}");
    // Let baresip close its recording and tcpdump flush.
    let (score, lag) = openum.heard(&phone);
    assert!(score > 0.9, "correlation {score:.4} at lag {lag} samples");

    // --- pacing: our RTP as it arrived at the phone ---
    let packets: Vec<Udp> = capture
        .finish()
        .into_iter()
        .filter(|p| p.payload.len() == 172 && p.payload[0] == 0x80)
        .collect();
    // The message is 2.5 s and 0.5 s of silence follows: 150 packets of 20 ms.
    let ours: Vec<&Udp> = packets
        .iter()
        .filter(|p| p.src_port != p.dst_port)
        .collect();
    assert!(ours.len() >= 149, "only {} RTP packets arrived", ours.len());
    let seqs: Vec<u16> = ours.iter().map(|p| p.sequence()).collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "loss or reordering on loopback");
    }
    let intervals: Vec<f64> = ours
        .windows(2)
        .map(|w| (w[1].at_us - w[0].at_us) as f64 / 1000.0)
        .collect();
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    assert!((mean - 20.0).abs() <= 0.5, "mean interval {mean:.3} ms");
    assert!(ours[0].marker(), "marker bit on the first packet");
    eprintln!(
        "correlation {score:.4} (lag {lag}), {} packets, mean interval {mean:.3} ms, max {:.3} ms",
        ours.len(),
        intervals.iter().cloned().fold(0.0, f64::max)
    );
}
