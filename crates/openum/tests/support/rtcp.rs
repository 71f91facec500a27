//! Judging openum's RTCP as a far end's network saw it: the packets of one SSRC picked from a
//! [`Capture`](super::capture::Capture), and tshark (an independent dissector) reading the same
//! pcap file.

use std::path::Path;
use std::process::Command;

use super::capture::Udp;

/// The SSRC of an RTP packet.
pub fn ssrc(p: &Udp) -> u32 {
    u32::from_be_bytes(p.payload[8..12].try_into().unwrap())
}

/// The RTCP packets sent by `ssrc` (compounds starting with its Sender Report), in capture order.
pub fn sender_rtcp(packets: &[Udp], ssrc: u32) -> Vec<&Udp> {
    packets
        .iter()
        .filter(|p| {
            p.payload.len() >= 16
                && p.payload[1] == 200
                && u32::from_be_bytes(p.payload[4..8].try_into().unwrap()) == ssrc
        })
        .collect()
}

/// Asserts that the last of `rtcp` (from [`sender_rtcp`]) ends with an RTCP BYE of `ssrc`
/// (RFC 3550 §6.6): SR, SDES, then BYE (PT 203).
pub fn assert_ends_with_bye(rtcp: &[&Udp], ssrc: u32) {
    let last = rtcp.last().expect("our RTCP in the capture");
    let bye = &last.payload[last.payload.len() - 8..];
    assert_eq!(bye[..4], [0x81, 203, 0, 1], "no RTCP BYE at the end");
    assert_eq!(u32::from_be_bytes(bye[4..].try_into().unwrap()), ssrc);
}

/// `(time, sender SSRC, malformed?)` of every RTCP Sender Report tshark finds in `pcap`.
pub fn sender_reports(pcap: &Path) -> Vec<(f64, u32, bool)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-n",
            "--enable-heuristic",
            "rtcp_udp",
            "-Y",
            "rtcp.pt == 200",
        ])
        .args(["-T", "fields", "-E", "separator=;"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "rtcp.senderssrc",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .expect("tshark is required (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            let ssrc = f[1].split(',').next().unwrap();
            let ssrc = u32::from_str_radix(ssrc.trim_start_matches("0x"), 16)
                .unwrap_or_else(|e| panic!("{l}: {e}"));
            (f[0].parse().unwrap(), ssrc, !f[2].is_empty())
        })
        .collect()
}

/// Asserts what tshark makes of `ssrc`'s Sender Reports in `pcap`, of which the capture has
/// `rtcp` (from [`sender_rtcp`]): none malformed, every one taken for RTCP, at least three, and
/// all but the last (sent early with the BYE) 2.5-7.5 s apart (RFC 3550 §6.3.5, ±0.1 s for the
/// capture). Returns the gaps, in seconds.
pub fn assert_periodic_sender_reports(pcap: &Path, ssrc: u32, rtcp: &[&Udp]) -> Vec<f64> {
    let reports: Vec<(f64, u32, bool)> = sender_reports(pcap)
        .into_iter()
        .filter(|r| r.1 == ssrc)
        .collect();
    assert!(
        reports.iter().all(|r| !r.2),
        "tshark finds malformed RTCP: {reports:?}"
    );
    let gaps: Vec<f64> = reports.windows(2).map(|w| w[1].0 - w[0].0).collect();
    eprintln!(
        "our Sender Reports at the far end: {} in the capture, {} dissected by tshark ({gaps:.2?} s apart)",
        rtcp.len(),
        reports.len()
    );
    assert_eq!(
        reports.len(),
        rtcp.len(),
        "tshark does not take every one for RTCP"
    );
    assert!(reports.len() >= 3, "{} sender reports", reports.len());
    assert!(
        gaps[..gaps.len() - 1]
            .iter()
            .all(|g| (2.4..=7.6).contains(g)),
        "intervals {gaps:?}"
    );
    gaps
}
