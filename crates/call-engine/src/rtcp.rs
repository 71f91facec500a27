//! RTCP for one outgoing stream (RFC 3550 §6): the compound packets openum sends (Sender Report
//! and SDES CNAME every few seconds, BYE at the end) and what it reads from the far end's
//! reports about that stream (loss, jitter, round-trip time).
//!
//! Hand-written like [`crate::rtp`]: openum sends one stream and reads one report block, a few
//! dozen lines of fixed layouts. Time comes in as NTP timestamps (RFC 3550 §4); the engine reads
//! no clock.

use std::time::Duration;

/// Seconds from 1900-01-01 (NTP's epoch) to 1970-01-01 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The nominal interval between reports (RFC 3550 §6.2: 5 s minimum).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

/// A 64-bit NTP timestamp (seconds since 1900 in the high half, fraction in the low half) of a
/// time given as a duration since the Unix epoch.
pub fn ntp_timestamp(since_unix_epoch: Duration) -> u64 {
    let seconds = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix_epoch.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// What the sender side of the stream has done, for a Sender Report.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SenderInfo {
    /// Our SSRC.
    pub ssrc: u32,
    /// Wall-clock time of the report, NTP format.
    pub ntp: u64,
    /// The RTP timestamp of that same instant.
    pub rtp_timestamp: u32,
    /// RTP packets sent so far.
    pub packets: u32,
    /// RTP payload octets sent so far.
    pub octets: u32,
}

fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    // A packet of openum's is a few dozen bytes: the length always fits.
    out.extend_from_slice(
        &u16::try_from(words_after_header)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
}

fn sender_report(out: &mut Vec<u8>, info: &SenderInfo) {
    header(out, 0, SR, 6);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packets.to_be_bytes());
    out.extend_from_slice(&info.octets.to_be_bytes());
}

fn source_description(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    // SSRC, CNAME item (type, length, text), then at least one zero octet ending the item list,
    // padded to a 32-bit boundary (RFC 3550 §6.5).
    let items = 2 + cname.len() + 1;
    let padded = items.div_ceil(4) * 4;
    header(out, 1, SDES, 1 + padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    // At most 255 by the slice above.
    out.push(u8::try_from(cname.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(cname);
    out.resize(out.len() + (padded - items + 1), 0);
}

/// The periodic compound packet: SR (no report blocks: openum only sends) and SDES CNAME.
pub fn report(info: &SenderInfo, cname: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    sender_report(&mut out, info);
    source_description(&mut out, info.ssrc, cname);
    out
}

/// The last compound packet: SR, SDES CNAME and BYE (RFC 3550 §6.6).
pub fn goodbye(info: &SenderInfo, cname: &str) -> Vec<u8> {
    let mut out = report(info, cname);
    header(&mut out, 1, BYE, 1);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out
}

/// What the far end reports about openum's stream (one report block, RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReceptionReport {
    /// Fraction of packets lost since its previous report, 0..=1.
    pub fraction_lost: f64,
    /// Packets lost since the start (may be negative with duplicates).
    pub cumulative_lost: i32,
    /// Interarrival jitter, in RTP timestamp units (8 kHz for G.711).
    pub jitter: u32,
    /// Round-trip time, when the block answers one of our Sender Reports.
    pub round_trip: Option<Duration>,
}

impl ReceptionReport {
    /// Jitter as a duration, for an 8 kHz clock.
    pub fn jitter_duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.jitter) * 125)
    }
}

/// Reads a compound RTCP packet that arrived at `arrival` (NTP format) and returns the report
/// blocks about `ssrc` (openum's stream) it carries, in SRs or RRs. Anything malformed is
/// skipped: a report is advisory.
pub fn reports_about(packet: &[u8], ssrc: u32, arrival: u64) -> Vec<ReceptionReport> {
    compound(packet, 4)
        .flat_map(|part| part.blocks)
        .filter(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) == ssrc)
        .map(|b| read_block(b, arrival))
        .collect()
}

/// One packet of a compound RTCP packet.
struct Part<'a> {
    /// Where it starts in the compound packet.
    at: usize,
    packet_type: u8,
    /// Its report blocks (SRs and RRs only; those overrunning the packet left out).
    blocks: std::iter::Take<std::slice::ChunksExact<'a, u8>>,
}

/// The packets of the compound RTCP packet `packet`, up to the first malformed one (or the
/// first that starts less than `min` octets before the end).
fn compound(packet: &[u8], min: usize) -> impl Iterator<Item = Part<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + min > packet.len() {
            return None;
        }
        let first = packet[at];
        let packet_type = packet[at + 1];
        let words = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        let end = at + 4 + words * 4;
        if first >> 6 != 2 || end > packet.len() {
            return None;
        }
        let blocks_at = match packet_type {
            SR => at + 28,
            RR => at + 8,
            _ => end,
        };
        let blocks = packet[blocks_at.min(end)..end]
            .chunks_exact(24)
            .take(usize::from(first & 0x1f));
        let part = Part {
            at,
            packet_type,
            blocks,
        };
        at = end;
        Some(part)
    })
}

fn read_block(b: &[u8], arrival: u64) -> ReceptionReport {
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    // 24-bit two's complement, sign-extended.
    let lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
    let (lsr, dlsr) = (word(16), word(20));
    // RFC 3550 §6.4.1: RTT = A − LSR − DLSR, in 1/65536 s, A the middle 32 bits of the arrival.
    #[allow(clippy::cast_possible_truncation)]
    let middle = (arrival >> 16) as u32;
    let round_trip = (lsr != 0).then(|| {
        let units = middle.wrapping_sub(lsr).wrapping_sub(dlsr);
        Duration::from_micros(u64::from(units) * 1_000_000 / 65_536)
    });
    ReceptionReport {
        fraction_lost: f64::from(b[4]) / 256.0,
        cumulative_lost: lost,
        jitter: word(12),
        round_trip,
    }
}

/// The SSRCs a compound RTCP packet says something about: its first packet's sender (the
/// far end's stream), then the source of every report block in its SRs and RRs (streams the far
/// end receives — ours). For attributing RTCP that arrives on a socket shared by many calls.
/// Stops at the first malformed packet.
pub fn ssrcs(packet: &[u8]) -> (Option<u32>, Vec<u32>) {
    let word = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut sender = None;
    let mut reported = Vec::new();
    for part in compound(packet, 8) {
        if part.at == 0 && matches!(part.packet_type, SR | RR) {
            sender = Some(word(packet, 4));
        }
        reported.extend(part.blocks.map(|b| word(b, 0)));
    }
    (sender, reported)
}

/// The SSRC of an RTP packet (RFC 3550 §5.1), if it is long enough to have one.
pub fn rtp_ssrc(packet: &[u8]) -> Option<u32> {
    packet
        .get(8..12)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether a datagram on a shared RTP/RTCP port is RTCP (RFC 5761 §4: payload types 64–95).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SenderInfo {
        SenderInfo {
            ssrc: 0x0102_0304,
            ntp: ntp_timestamp(Duration::from_millis(1_700_000_000_500)),
            rtp_timestamp: 160_000,
            packets: 1000,
            octets: 160_000,
        }
    }

    #[test]
    fn ntp_time_of_a_unix_time() {
        assert_eq!(ntp_timestamp(Duration::ZERO), NTP_UNIX_OFFSET << 32);
        let half = ntp_timestamp(Duration::from_millis(500));
        assert_eq!(half & 0xffff_ffff, 0x8000_0000);
    }

    /// The layout, word by word (RFC 3550 §6.4.1, §6.5, §6.6).
    #[test]
    fn sender_report_sdes_and_bye_are_laid_out_as_the_rfc_says() {
        let p = report(&info(), "openum@node1");
        // SR: V=2, RC=0, PT=200, length 6 (28 bytes).
        assert_eq!(&p[0..4], &[0x80, 200, 0, 6]);
        assert_eq!(&p[4..8], &[1, 2, 3, 4]);
        assert_eq!(u64::from_be_bytes(p[8..16].try_into().unwrap()), info().ntp);
        assert_eq!(u32::from_be_bytes(p[16..20].try_into().unwrap()), 160_000);
        assert_eq!(u32::from_be_bytes(p[20..24].try_into().unwrap()), 1000);
        assert_eq!(u32::from_be_bytes(p[24..28].try_into().unwrap()), 160_000);
        // SDES: SC=1, PT=202; SSRC, CNAME(1) len 12 "openum@node1", END, padding: 4 + 16 bytes.
        assert_eq!(&p[28..32], &[0x81, 202, 0, 5]);
        assert_eq!(&p[32..36], &[1, 2, 3, 4]);
        assert_eq!(&p[36..38], &[1, 12]);
        assert_eq!(&p[38..50], b"openum@node1");
        assert_eq!(&p[50..], &[0, 0]);
        assert_eq!(p.len() % 4, 0);
        let b = goodbye(&info(), "openum@node1");
        assert_eq!(&b[..p.len()], &p[..]);
        assert_eq!(&b[p.len()..], &[0x81, 203, 0, 1, 1, 2, 3, 4]);
        // A CNAME whose items fill a word exactly still gets a terminating word.
        let q = report(&info(), "a");
        assert_eq!(&q[28..32], &[0x81, 202, 0, 2]);
        assert_eq!(&q[36..], &[1, 1, b'a', 0]);
    }

    fn receiver_report(blocks: &[[u8; 24]]) -> Vec<u8> {
        let mut p = vec![0x80 | u8::try_from(blocks.len()).unwrap(), RR];
        p.extend_from_slice(&u16::try_from(1 + 6 * blocks.len()).unwrap().to_be_bytes());
        p.extend_from_slice(&[9, 9, 9, 9]);
        for b in blocks {
            p.extend_from_slice(b);
        }
        p
    }

    fn block(ssrc: u32, fraction: u8, lost: i32, jitter: u32, lsr: u32, dlsr: u32) -> [u8; 24] {
        let mut b = [0_u8; 24];
        b[0..4].copy_from_slice(&ssrc.to_be_bytes());
        b[4] = fraction;
        b[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&1234_u32.to_be_bytes());
        b[12..16].copy_from_slice(&jitter.to_be_bytes());
        b[16..20].copy_from_slice(&lsr.to_be_bytes());
        b[20..24].copy_from_slice(&dlsr.to_be_bytes());
        b
    }

    #[test]
    fn the_far_ends_report_about_our_stream_gives_loss_jitter_and_round_trip() {
        let ours = info().ssrc;
        // Our SR went out at NTP middle word M; the far end held it 0.25 s; it arrives 0.3 s
        // after we sent it: RTT 50 ms.
        let sent = info().ntp;
        #[allow(clippy::cast_possible_truncation)]
        let lsr = (sent >> 16) as u32;
        let dlsr = 65_536 / 4;
        let arrival = sent + (3 << 32) / 10;
        let packet = receiver_report(&[
            block(0xdead, 0, 0, 0, 0, 0),
            block(ours, 64, 12, 80, lsr, dlsr),
        ]);
        let reports = reports_about(&packet, ours, arrival);
        assert_eq!(reports.len(), 1);
        let r = reports[0];
        assert!((r.fraction_lost - 0.25).abs() < 1e-9);
        assert_eq!(r.cumulative_lost, 12);
        assert_eq!(r.jitter_duration(), Duration::from_millis(10));
        let rtt = r.round_trip.unwrap().as_micros();
        assert!((49_900..=50_100).contains(&rtt), "{rtt} µs");
        // Negative cumulative loss (duplicates), and no SR answered yet: no RTT.
        let packet = receiver_report(&[block(ours, 0, -3, 0, 0, 0)]);
        let r = reports_about(&packet, ours, arrival)[0];
        assert_eq!((r.cumulative_lost, r.round_trip), (-3, None));
        // Blocks inside an SR are read too, after the sender info.
        let mut sr = report(&info(), "far");
        sr[0] = 0x81;
        sr[3] = 12;
        sr.splice(28..28, block(ours, 0, 1, 0, 0, 0));
        assert_eq!(reports_about(&sr, ours, arrival).len(), 1);
    }

    #[test]
    fn junk_and_truncation_give_no_report_and_never_panic() {
        let ours = 7;
        let good = receiver_report(&[block(ours, 0, 0, 0, 0, 0)]);
        for cut in 0..good.len() {
            assert!(reports_about(&good[..cut], ours, 0).is_empty(), "{cut}");
        }
        for junk in [&[0xff_u8; 40][..], &[], &[0x80, 201, 0xff, 0xff]] {
            assert!(reports_about(junk, ours, 0).is_empty());
        }
        assert!(is_rtcp(&good) && !is_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 0]));
    }

    #[test]
    fn the_ssrcs_of_a_compound_packet_are_its_sender_and_its_report_blocks() {
        let ours = report(&info(), "openum@127.0.0.1");
        assert_eq!(ssrcs(&ours), (Some(0x0102_0304), vec![]));
        // An RR from 0x0a0b0c0d with blocks about 0x11 and 0x22, then an SDES.
        let mut rr = vec![0x82, RR, 0, 13];
        rr.extend_from_slice(&0x0a0b_0c0d_u32.to_be_bytes());
        for ssrc in [0x11_u32, 0x22] {
            rr.extend_from_slice(&ssrc.to_be_bytes());
            rr.extend_from_slice(&[0; 20]);
        }
        rr.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 0]);
        assert_eq!(ssrcs(&rr), (Some(0x0a0b_0c0d), vec![0x11, 0x22]));
        // Truncated: what was whole is kept, the rest ignored.
        assert_eq!(ssrcs(&rr[..20]), (None, vec![]));
        assert_eq!(rtp_ssrc(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]), Some(9));
        assert_eq!(rtp_ssrc(&[0x80, 0]), None);
    }
}
