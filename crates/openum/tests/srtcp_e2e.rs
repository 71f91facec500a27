//! SRTCP (RFC 3711 §3.4) and `a=rtcp` (RFC 3605) against real peers.
//!
//! baresip demands SRTP (`mediaenc=srtp-mand`); tcpdump captures the SIP and media between it and
//! openum. The test takes openum's key from its own SDP offer in the capture (the `a=crypto` line
//! whose tag baresip's answer chose) and authenticates and decrypts every SRTCP packet openum sent
//! with `rtc-srtp`: Sender Reports about openum's RTP stream, ~5 s apart, with plausible counts,
//! and an RTCP BYE in the last one. baresip's own SRTCP reports reach `/metrics`, with round-trip
//! times — which baresip can only report if it authenticated and decrypted openum's SRs. Both
//! with a socket per call and with `rtp_sockets = "shared"`.
//!
//! A SIPp far end (`tests/peers/uas_rtcp_port.xml`) answers with `a=rtcp` naming a port that is
//! not the RTP port + 1, then re-offers another: openum's RTCP follows, and none goes to RTP + 1.
//!
//! Ports 54000-54499.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::protection_profile::ProtectionProfile;
use support::capture::{Capture, Udp};
use support::phone::Phone;
use support::serve::Openum;
use support::{Harness, Options};

/// The value of the metric line starting with `name ` (0 if absent).
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `(tag, suite, key material)` of every `a=crypto` line in `sdp` (RFC 4568).
fn crypto_lines(sdp: &str) -> Vec<(u32, String, Vec<u8>)> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=crypto:"))
        .map(|value| {
            let mut parts = value.split_whitespace();
            let tag = parts.next().unwrap().parse().unwrap();
            let suite = parts.next().unwrap().to_owned();
            let key = parts.next().unwrap().strip_prefix("inline:").unwrap();
            let key = key.split('|').next().unwrap();
            let material = base64::engine::general_purpose::STANDARD
                .decode(key)
                .unwrap();
            assert_eq!(material.len(), 30, "{value}");
            (tag, suite, material)
        })
        .collect()
}

/// An `rtc-srtp` context for `material` (key ‖ salt) under `suite`, to read what it protected.
fn reader(suite: &str, material: &[u8]) -> Context {
    let profile = match suite {
        "AES_CM_128_HMAC_SHA1_80" => ProtectionProfile::Aes128CmHmacSha1_80,
        "AES_CM_128_HMAC_SHA1_32" => ProtectionProfile::Aes128CmHmacSha1_32,
        other => panic!("unexpected suite {other}"),
    };
    Context::new(
        &material[..16],
        &material[16..],
        profile,
        None,
        None,
        RingProvider::new().crypto(),
    )
    .unwrap()
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// A Sender Report as decrypted: `(capture time s, NTP s, packets, octets, has BYE for ssrc)`.
type Report = (f64, f64, u32, u32, bool);

/// Reads the plain compound packet `rtcp` openum sent for `ssrc`: SR first, then SDES, and
/// perhaps a BYE; panics on anything else.
fn read_compound(rtcp: &[u8], ssrc: u32, at_us: u64) -> Report {
    assert_eq!(rtcp[0] >> 6, 2, "{rtcp:02x?}");
    assert_eq!(rtcp[1], 200, "not an SR first: {rtcp:02x?}");
    assert_eq!(word(rtcp, 4), ssrc, "SR about another SSRC");
    let ntp = u64::from(word(rtcp, 8)) << 32 | u64::from(word(rtcp, 12));
    #[allow(clippy::cast_precision_loss)]
    let ntp_s = ntp as f64 / 4_294_967_296.0;
    let (packets, octets) = (word(rtcp, 20), word(rtcp, 24));
    let mut bye = false;
    let mut at = 0;
    while at + 4 <= rtcp.len() {
        let words = usize::from(u16::from_be_bytes([rtcp[at + 2], rtcp[at + 3]]));
        let end = at + 4 + words * 4;
        assert!(end <= rtcp.len(), "truncated compound packet {rtcp:02x?}");
        if rtcp[at + 1] == 203 {
            assert_eq!(word(rtcp, at + 4), ssrc, "BYE for another SSRC");
            bye = true;
        }
        at = end;
    }
    assert_eq!(at, rtcp.len(), "trailing octets in {rtcp:02x?}");
    #[allow(clippy::cast_precision_loss)]
    (at_us as f64 / 1e6, ntp_s, packets, octets, bye)
}

/// Whether `datagram` is plain RTCP: a compound packet whose lengths add up to the datagram (an
/// SRTCP packet has its index and tag after them, and its later headers are encrypted).
fn is_plain_rtcp(datagram: &[u8]) -> bool {
    let mut at = 0;
    while at + 4 <= datagram.len() {
        if datagram[at] >> 6 != 2 || !(200..=206).contains(&datagram[at + 1]) {
            return false;
        }
        at += 4 + usize::from(u16::from_be_bytes([datagram[at + 2], datagram[at + 3]])) * 4;
    }
    at == datagram.len() && at > 0
}

/// Which far end [`srtcp_call`] calls.
#[derive(Clone, Copy, PartialEq)]
enum FarEnd {
    /// support's `Phone` with `srtp-mand`: RTCP on RTP port + 1.
    Phone,
    /// The same with `rtcp_mux`: RTCP on the RTP port (RFC 5761).
    Muxing,
}

/// One SRTP call from openum to a baresip that demands SRTP, with `sip_extra` in `[sip]`;
/// checks openum's SRTCP in the capture and baresip's reports in `/metrics`.
async fn srtcp_call(ports: u16, sip_extra: &str, far_end: FarEnd) {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip) = (ports, ports + 1, ports + 2);
    let (rtp_lo, rtp_hi) = (ports + 50, ports + 99);
    let phone = Phone::start_configured(
        dir.path(),
        phone_sip,
        rtp_lo,
        rtp_hi,
        Some("srtp-mand"),
        far_end == FarEnd::Muxing,
    );
    let capture = Capture::start(
        dir.path(),
        "srtcp.pcap",
        &format!("udp port {phone_sip} or udp portrange {rtp_lo}-{rtp_hi}"),
    );
    let openum = Openum::config(dir.path(), http, sip)
        .sip(sip_extra)
        .gateway(&format!(
            "uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\nsrtp = \"mandatory\""
        ))
        // 14 s: the first SR after 1.25-3.75 s, then every 2.5-7.5 s: at least three with the BYE.
        .tone(14.0)
        .log("info,openum_call_runtime=debug")
        .start()
        .await;
    let info = openum.call_until_ended(Duration::from_secs(60)).await;
    assert!(info.contains(">None<"), "{info}\n{}", openum.log_text());
    let metrics = openum.metrics().await;
    drop(phone);
    let packets = capture.finish();
    let log = openum.log_text();
    assert!(log.contains("SRTP negotiated"), "{log}");

    // openum's key: the a=crypto line of its offer whose tag baresip's answer chose.
    let invite = packets
        .iter()
        .find(|p| p.dst_port == phone_sip && p.text().starts_with("INVITE "))
        .expect("the INVITE in the capture")
        .text();
    let answer = packets
        .iter()
        .find(|p| {
            p.src_port == phone_sip
                && p.text().starts_with("SIP/2.0 200")
                && p.text().contains("a=crypto:")
        })
        .expect("baresip's SRTP answer in the capture")
        .text();
    let (tag, suite, _) = crypto_lines(&answer).remove(0);
    let (_, _, ours_key) = crypto_lines(&invite)
        .into_iter()
        .find(|(t, s, _)| *t == tag && *s == suite)
        .unwrap_or_else(|| panic!("answer's tag {tag} {suite} not in our offer\n{invite}"));
    let in_range = |port: u16| (rtp_lo..=rtp_hi).contains(&port);
    // Our SRTP stream's SSRC: the header stays clear.
    let ssrc = packets
        .iter()
        .find(|p| p.is_rtp() && in_range(p.dst_port) && !in_range(p.src_port))
        .map(|p| word(&p.payload, 8))
        .expect("our SRTP in the capture");
    // Everything we sent as RTCP: PT 200 with our SSRC in the clear header.
    let ours: Vec<&Udp> = packets
        .iter()
        .filter(|p| {
            in_range(p.dst_port)
                && !in_range(p.src_port)
                && p.payload.len() >= 8
                && p.payload[1] == 200
                && word(&p.payload, 4) == ssrc
        })
        .collect();
    // Port + 1, or (rtcp-mux) the RTP ports themselves, both ways.
    let rtp_ports = packets
        .iter()
        .find(|p| p.is_rtp() && in_range(p.dst_port) && !in_range(p.src_port))
        .map(|p| (p.src_port, p.dst_port))
        .unwrap();
    let expected = match far_end {
        FarEnd::Phone => (rtp_ports.0 + 1, rtp_ports.1 + 1),
        FarEnd::Muxing => rtp_ports,
    };
    assert!(
        ours.iter().all(|p| (p.src_port, p.dst_port) == expected),
        "our SRTCP not between {expected:?} (RTP {rtp_ports:?})"
    );
    if far_end == FarEnd::Muxing {
        assert!(log.contains("mux=true"), "{log}");
    }
    let mut context = reader(&suite, &ours_key);
    let mut reports = Vec::new();
    for (i, p) in ours.iter().enumerate() {
        // SRTCP: the index word with the E flag, then the 80-bit tag (both SDES suites).
        let index = word(&p.payload, p.payload.len() - 14);
        assert_eq!(index >> 31, 1, "SRTCP {i} not encrypted (E flag clear)");
        let plain = context.decrypt_rtcp(&p.payload).unwrap_or_else(|e| {
            panic!(
                "SRTCP {i} of {} does not authenticate with our offered key: {e}",
                ours.len()
            )
        });
        assert_ne!(
            plain[8..],
            p.payload[8..plain.len()],
            "SRTCP {i} sent in the clear"
        );
        reports.push(read_compound(&plain, ssrc, p.at_us));
    }
    eprintln!(
        "our SRTCP: {} packets ({suite}): {reports:?}",
        reports.len()
    );
    assert!(reports.len() >= 3, "{} SRTCP packets\n{log}", reports.len());
    // The last one carries the BYE, no other does.
    let (last, periodic) = reports.split_last().unwrap();
    assert!(last.4, "no RTCP BYE in the last SRTCP packet");
    assert!(periodic.iter().all(|r| !r.4), "BYE before the end");
    // ~5 s apart (RFC 3550 §6.3.5: 0.5-1.5 × 5 s), by the capture and by the SRs' own clock.
    for w in periodic.windows(2) {
        let (capture_gap, ntp_gap) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
        assert!((2.4..=7.6).contains(&capture_gap), "{reports:?}");
        assert!((capture_gap - ntp_gap).abs() < 0.1, "{reports:?}");
    }
    // Plausible counts: 20 ms PCMU packets of 160 octets, 50 a second, growing.
    for w in reports.windows(2) {
        let (seconds, sent) = (w[1].1 - w[0].1, f64::from(w[1].2 - w[0].2));
        assert!(
            (sent - 50.0 * seconds).abs() <= 5.0 + 5.0 * seconds,
            "{sent} packets in {seconds:.2} s: {reports:?}"
        );
    }
    for r in &reports {
        assert!(r.2 > 0 && r.3 == r.2 * 160, "{reports:?}");
    }

    // baresip's SRTCP: it reached openum, was authenticated and its reports recorded; baresip
    // measured round trips from our SRs, so it could read them too.
    let theirs = packets
        .iter()
        .filter(|p| {
            in_range(p.src_port)
                && !in_range(p.dst_port)
                && p.payload.len() >= 8
                && matches!(p.payload[1], 200 | 201)
        })
        .count();
    let received = metric(&metrics, "openum_rtcp_reports_received_total ");
    let round_trips = metric(&metrics, "openum_rtcp_round_trips_total ");
    let refused = metric(&metrics, "openum_rtcp_dropped_total{cause=\"srtcp_auth\"} ");
    eprintln!("baresip sent {theirs} SRTCP packets; metrics: {received} reports, {round_trips} round trips, {refused} refused");
    assert!(theirs >= 1, "baresip sent no RTCP");
    assert!(
        received >= 1.0,
        "no far-end report reached the metrics\n{metrics}\n{log}"
    );
    assert!(
        round_trips >= 1.0,
        "baresip never answered an SR of ours\n{metrics}"
    );
    assert!(metric(&metrics, "openum_rtcp_round_trip_seconds_total ") > 0.0);
    // What openum refused is exactly what baresip sent unprotected: libre sends one plain RTCP
    // APP "PING" when the call starts, which no SRTCP receiver may take (it is not authenticated).
    // Every refusal is logged with the datagram's length; none is one of baresip's SRTCP packets.
    let plain: Vec<usize> = packets
        .iter()
        .filter(|p| in_range(p.src_port) && !in_range(p.dst_port) && is_plain_rtcp(&p.payload))
        .map(|p| p.payload.len())
        .collect();
    let refusals: Vec<usize> = log
        .lines()
        .filter(|l| l.contains("SRTCP from the far end dropped"))
        .map(|l| {
            l.split(" len=")
                .nth(1)
                .and_then(|v| v.split(' ').next())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let unencrypted = metric(
        &metrics,
        "openum_rtcp_dropped_total{cause=\"srtcp_unencrypted\"} ",
    );
    eprintln!("baresip's plain RTCP: {plain:?} octets; openum refused {refusals:?}");
    #[allow(clippy::cast_precision_loss)]
    let logged = refusals.len() as f64;
    assert_eq!(refused + unencrypted, logged, "{metrics}");
    assert!(
        refusals.iter().all(|len| plain.contains(len)),
        "openum refused SRTCP that baresip protected: {refusals:?} (plain: {plain:?})\n{log}"
    );
}

#[tokio::test]
async fn srtcp_with_a_socket_per_call_authenticates_with_our_offered_key_and_baresips_reaches_metrics(
) {
    srtcp_call(54100, "", FarEnd::Phone).await;
}

#[tokio::test]
async fn srtcp_multiplexed_on_the_rtp_port_authenticates_with_our_offered_key_and_baresips_reaches_metrics(
) {
    srtcp_call(54300, "", FarEnd::Muxing).await;
}

#[tokio::test]
async fn srtcp_multiplexed_on_the_shared_sockets_authenticates_and_baresips_reaches_metrics() {
    srtcp_call(
        54400,
        "rtp_sockets = \"shared\"\nrtp_port_range = \"54410-54449\"",
        FarEnd::Muxing,
    )
    .await;
}

#[tokio::test]
async fn srtcp_through_the_shared_sockets_authenticates_with_our_offered_key_and_baresips_reaches_metrics(
) {
    srtcp_call(
        54200,
        "rtp_sockets = \"shared\"\nrtp_port_range = \"54210-54249\"",
        FarEnd::Phone,
    )
    .await;
}

#[tokio::test]
async fn rtcp_goes_to_the_port_the_far_ends_a_rtcp_names_and_follows_a_re_offer() {
    // The only harness of this test binary: its first block of ports, SIPp's media on 54004.
    let mp = 54004;
    let (rtp_plus_one, first, second) = (mp + 1, mp + 3, mp + 5);
    let options = Options {
        scenario: "uas_rtcp_port.xml",
        audio_seconds: 14.0,
        sipp_args: [
            "-m",
            "1",
            "-key",
            "rtcp1",
            &first.to_string(),
            "-key",
            "rtcp2",
            &second.to_string(),
        ]
        .map(str::to_owned)
        .to_vec(),
        port_base: Some(54000),
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    assert_eq!(h.sipp_media_port, mp);
    let capture = Capture::start(
        h.dir.path(),
        "a-rtcp.pcap",
        &format!("udp port {} or udp portrange {mp}-{second}", h.sipp_port),
    );
    let id = h.play("2005551234").await;
    let done = h
        .wait_for(&id, Duration::from_secs(40), |i| {
            i.phone_call_state == ews_proto::PhoneCallState::Disconnected
        })
        .await;
    assert_eq!(
        done.connection_failure_cause,
        ews_proto::ConnectionFailureCause::None
    );
    let sipp = h.sipp_exit(Duration::from_secs(10)).await;
    assert!(
        sipp.success(),
        "SIPp counted the call as failed\n{}",
        h.sipp_trace()
    );
    let packets = capture.finish();
    let reinvite = packets
        .iter()
        .find(|p| {
            p.src_port == h.sipp_port
                && p.text().starts_with("INVITE ")
                && p.text().contains("CSeq: 2 INVITE")
        })
        .expect("SIPp's re-INVITE in the capture")
        .at_us;
    let rtcp_to = |port: u16| -> Vec<u64> {
        packets
            .iter()
            .filter(|p| {
                p.dst_port == port
                    && p.payload.len() >= 8
                    && p.payload[0] >> 6 == 2
                    && p.payload[1] == 200
            })
            .map(|p| p.at_us)
            .collect()
    };
    let (to_first, to_second, to_default) =
        (rtcp_to(first), rtcp_to(second), rtcp_to(rtp_plus_one));
    eprintln!(
        "RTCP: {} to a=rtcp {first}, {} to the re-offer's {second}, {} to RTP + 1",
        to_first.len(),
        to_second.len(),
        to_default.len()
    );
    assert!(
        to_default.is_empty(),
        "RTCP went to the RTP port + 1\n{}",
        h.log_tail()
    );
    assert!(
        !to_first.is_empty(),
        "no RTCP to the answer's a=rtcp port\n{}",
        h.log_tail()
    );
    assert!(
        to_first.iter().all(|&t| t < reinvite),
        "RTCP to the old port after the re-offer"
    );
    // After the re-offer: the periodic SRs (if one fell due) and the BYE go to the new port.
    assert!(
        !to_second.is_empty(),
        "no RTCP to the re-offer's a=rtcp port\n{}",
        h.log_tail()
    );
    assert!(to_second.iter().all(|&t| t > reinvite));
    let last = packets.iter().rfind(|p| p.dst_port == second).unwrap();
    assert!(
        last.payload.windows(2).any(|w| w == [0x81, 203]),
        "the last RTCP (to the new port) has no BYE"
    );
}
