//! The RTP sender for one stream: 12-byte header (RFC 3550 §5.1), G.711 frames paced from a start
//! instant (no drift: packet *n* is due at `start + n·ptime`), the message followed by silence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::g711::{ALAW_SILENCE, ULAW_SILENCE};
use crate::sdp::{Codec, MediaPlan};

/// The message, encoded once in both G.711 laws and shared by every call that plays it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PreparedAudio {
    /// µ-law bytes, 8 kHz mono.
    pub pcmu: Arc<[u8]>,
    /// A-law bytes, 8 kHz mono.
    pub pcma: Arc<[u8]>,
}

impl PreparedAudio {
    /// Encodes 8 kHz mono linear PCM.
    pub fn from_pcm(samples: &[i16]) -> Self {
        Self {
            pcmu: samples
                .iter()
                .map(|&s| crate::g711::linear_to_ulaw(s))
                .collect(),
            pcma: samples
                .iter()
                .map(|&s| crate::g711::linear_to_alaw(s))
                .collect(),
        }
    }

    /// Playing time.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.pcmu.len() as u64 * 125)
    }
}

/// The random starting values RFC 3550 asks for (inputs: the engine has no RNG).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct RtpSeed {
    /// Synchronisation source.
    pub ssrc: u32,
    /// First sequence number.
    pub sequence: u16,
    /// First timestamp.
    pub timestamp: u32,
}

/// One outgoing stream.
#[derive(Debug)]
pub struct RtpStream {
    payload: Arc<[u8]>,
    silence: u8,
    payload_type: u8,
    frame_bytes: usize,
    ptime: Duration,
    seed: RtpSeed,
    start: Instant,
    sent: u32,
}

/// RTP header length.
pub const HEADER_LEN: usize = 12;

impl RtpStream {
    /// A stream for `plan` whose first packet is due at `start`.
    pub fn new(plan: &MediaPlan, audio: &PreparedAudio, seed: RtpSeed, start: Instant) -> Self {
        let (payload, silence) = match plan.codec {
            Codec::Pcmu => (Arc::clone(&audio.pcmu), ULAW_SILENCE),
            Codec::Pcma => (Arc::clone(&audio.pcma), ALAW_SILENCE),
        };
        let ptime_ms = plan.ptime_ms.clamp(10, 60);
        Self {
            payload,
            silence,
            payload_type: plan.payload_type & 0x7F,
            frame_bytes: ptime_ms as usize * 8,
            ptime: Duration::from_millis(u64::from(ptime_ms)),
            seed,
            start,
            sent: 0,
        }
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.start + self.ptime * self.sent
    }

    /// Packets sent so far.
    pub fn packets_sent(&self) -> u32 {
        self.sent
    }

    /// If a packet is due at `now`, writes it into `out` (replacing its contents) and returns
    /// true. Call repeatedly until it returns false to catch up after a late wake-up.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        if now < self.next_due() {
            return false;
        }
        let n = self.sent;
        let sequence = self.seed.sequence.wrapping_add(n as u16);
        let timestamp = self
            .seed
            .timestamp
            .wrapping_add(n.wrapping_mul(self.frame_bytes as u32));
        out.clear();
        out.reserve(HEADER_LEN + self.frame_bytes);
        out.push(0x80); // V=2, no padding, no extension, no CSRC
        let marker = if n == 0 { 0x80 } else { 0 };
        out.push(marker | self.payload_type);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.seed.ssrc.to_be_bytes());
        let offset = n as usize * self.frame_bytes;
        let available = self
            .payload
            .len()
            .saturating_sub(offset)
            .min(self.frame_bytes);
        if available > 0 {
            out.extend_from_slice(&self.payload[offset..offset + available]);
        }
        out.resize(HEADER_LEN + self.frame_bytes, self.silence);
        self.sent += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_clock::base_instant;

    fn plan(codec: Codec, ptime_ms: u32) -> MediaPlan {
        MediaPlan {
            remote: "127.0.0.1:6000".parse().unwrap(),
            codec,
            payload_type: codec.static_payload_type(),
            ptime_ms,
        }
    }

    #[test]
    fn header_fields_marker_and_increments() {
        let audio = PreparedAudio::from_pcm(&vec![1000; 400]);
        let seed = RtpSeed {
            ssrc: 0xDEAD_BEEF,
            sequence: 65535,
            timestamp: u32::MAX - 100,
        };
        let start = base_instant();
        let mut s = RtpStream::new(&plan(Codec::Pcmu, 20), &audio, seed, start);
        let mut p = Vec::new();
        assert!(s.poll_transmit(start, &mut p));
        assert_eq!(p.len(), 172);
        assert_eq!(p[0], 0x80);
        assert_eq!(p[1], 0x80, "marker on the first packet, PT 0");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 65535);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), u32::MAX - 100);
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), 0xDEAD_BEEF);
        assert!(!s.poll_transmit(start, &mut p), "not due again yet");
        assert!(s.poll_transmit(start + Duration::from_millis(20), &mut p));
        assert_eq!(p[1], 0x00, "no marker after the first packet");
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 0, "sequence wraps");
        assert_eq!(
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            59,
            "timestamp wraps by 160"
        );
    }

    #[test]
    fn message_then_silence_with_no_drift() {
        let audio = PreparedAudio::from_pcm(&vec![3000; 250]); // 1.56 frames
        let start = base_instant();
        let seed = RtpSeed {
            ssrc: 1,
            sequence: 0,
            timestamp: 0,
        };
        let mut s = RtpStream::new(&plan(Codec::Pcma, 20), &audio, seed, start);
        let mut p = Vec::new();
        // Wake up late by 65 ms: four packets are due (0, 20, 40, 60 ms) and go out at once.
        let late = start + Duration::from_millis(65);
        let mut n = 0;
        while s.poll_transmit(late, &mut p) {
            n += 1;
            if n == 2 {
                assert_eq!(p[HEADER_LEN + 89], audio.pcma[249]);
                assert_eq!(p[HEADER_LEN + 90], ALAW_SILENCE);
            }
        }
        assert_eq!(n, 4);
        assert!(p[HEADER_LEN..].iter().all(|&b| b == ALAW_SILENCE));
        assert_eq!(s.next_due(), start + Duration::from_millis(80));
        // After 1000 packets, still exactly on the grid.
        while s.packets_sent() < 1000 {
            let due = s.next_due();
            assert!(s.poll_transmit(due, &mut p));
        }
        assert_eq!(s.next_due(), start + Duration::from_secs(20));
    }

    #[test]
    fn ptime_decides_the_frame_size() {
        let audio = PreparedAudio::from_pcm(&[0; 8000]);
        let seed = RtpSeed {
            ssrc: 1,
            sequence: 0,
            timestamp: 0,
        };
        let mut s = RtpStream::new(&plan(Codec::Pcmu, 30), &audio, seed, base_instant());
        let mut p = Vec::new();
        assert!(s.poll_transmit(s.next_due(), &mut p));
        assert!(s.poll_transmit(s.next_due(), &mut p));
        assert_eq!(p.len(), 12 + 240);
        assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 240);
        assert_eq!(audio.duration(), Duration::from_secs(1));
    }
}
