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
    audio: PreparedAudio,
    codec: Codec,
    payload_type: u8,
    frame_bytes: usize,
    ptime: Duration,
    seed: RtpSeed,
    /// The first packet's due instant: timestamps count 8 kHz samples of wall time from it
    /// (RFC 3550 §5.1), across pauses.
    origin: Instant,
    /// When packet number `anchor_sent` is due; later packets follow every `ptime`.
    anchor: Instant,
    anchor_sent: u32,
    /// Packets sent so far (the sequence number's offset).
    sent: u32,
    /// Bytes (samples) of the message played so far: where playback continues after a pause.
    played: usize,
    paused: bool,
    /// The next packet starts a talkspurt (the first, and the first after a pause).
    marker: bool,
}

/// The RTP timestamp (8 kHz) of `at` for a stream whose first packet, due at `origin`, carried
/// `first`: wall time since `origin` in samples, modulo 2^32 (RFC 3550 §5.1). RTCP Sender Reports
/// use it to tie an NTP time to the stream's clock.
pub fn timestamp_at(first: u32, origin: Instant, at: Instant) -> u32 {
    let samples = at.saturating_duration_since(origin).as_nanos() * 8 / 1_000_000;
    // RTP timestamps wrap modulo 2^32: the truncation is the arithmetic.
    #[allow(clippy::cast_possible_truncation)]
    first.wrapping_add(samples as u32)
}

/// RTP header length.
pub const HEADER_LEN: usize = 12;

impl RtpStream {
    /// A stream for `plan` whose first packet is due at `start`.
    pub fn new(plan: &MediaPlan, audio: &PreparedAudio, seed: RtpSeed, start: Instant) -> Self {
        let ptime_ms = plan.ptime_ms.clamp(10, 60);
        Self {
            audio: audio.clone(),
            codec: plan.codec,
            payload_type: plan.payload_type & 0x7F,
            frame_bytes: ptime_ms as usize * 8,
            ptime: Duration::from_millis(u64::from(ptime_ms)),
            seed,
            origin: start,
            anchor: start,
            anchor_sent: 0,
            sent: 0,
            played: 0,
            paused: false,
            marker: true,
        }
    }

    /// When the next packet is due (if not paused).
    pub fn next_due(&self) -> Instant {
        self.anchor + self.ptime * (self.sent - self.anchor_sent)
    }

    /// Packets sent so far.
    pub fn packets_sent(&self) -> u32 {
        self.sent
    }

    /// Whether sending is paused (the far end holds the call).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Bytes of the message (8 kHz samples, silence after the end included) played so far.
    pub fn played(&self) -> usize {
        self.played
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.seed.ssrc
    }

    /// The RTP timestamp of instant `at` on this stream's clock.
    pub fn timestamp_at(&self, at: Instant) -> u32 {
        timestamp_at(self.seed.timestamp, self.origin, at)
    }

    /// Stops sending; [`RtpStream::resume`] continues where it stopped.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Sends again from `now`, from where the message was when it paused, starting a new
    /// talkspurt (marker bit). No-op unless paused.
    pub fn resume(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.anchor = now;
            self.anchor_sent = self.sent;
            self.marker = true;
        }
    }

    /// Follows a renegotiated `plan` (codec, payload type, packet time) from the next packet on,
    /// keeping the place in the message and the pacing grid.
    pub fn change_plan(&mut self, plan: &MediaPlan) {
        let ptime_ms = plan.ptime_ms.clamp(10, 60);
        if !self.paused {
            self.anchor = self.next_due();
            self.anchor_sent = self.sent;
        }
        self.codec = plan.codec;
        self.payload_type = plan.payload_type & 0x7F;
        self.frame_bytes = ptime_ms as usize * 8;
        self.ptime = Duration::from_millis(u64::from(ptime_ms));
    }

    /// If a packet is due at `now`, writes it into `out` (replacing its contents) and returns
    /// true. Call repeatedly until it returns false to catch up after a late wake-up. Never
    /// true while paused.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> bool {
        let due = self.next_due();
        if self.paused || now < due {
            return false;
        }
        let sequence = self.seed.sequence.wrapping_add(self.sent as u16);
        let timestamp = self.timestamp_at(due);
        let (payload, silence) = match self.codec {
            Codec::Pcmu => (&self.audio.pcmu, ULAW_SILENCE),
            Codec::Pcma => (&self.audio.pcma, ALAW_SILENCE),
        };
        out.clear();
        out.reserve(HEADER_LEN + self.frame_bytes);
        out.push(0x80); // V=2, no padding, no extension, no CSRC
        let marker = if self.marker { 0x80 } else { 0 };
        self.marker = false;
        out.push(marker | self.payload_type);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.seed.ssrc.to_be_bytes());
        let offset = self.played;
        let available = payload.len().saturating_sub(offset).min(self.frame_bytes);
        if available > 0 {
            out.extend_from_slice(&payload[offset..offset + available]);
        }
        out.resize(HEADER_LEN + self.frame_bytes, silence);
        self.sent += 1;
        self.played += self.frame_bytes;
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
            rtcp: None,
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

    fn header(p: &[u8]) -> (bool, u8, u16, u32) {
        (
            p[1] & 0x80 != 0,
            p[1] & 0x7F,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        )
    }

    #[test]
    fn a_pause_sends_nothing_and_resume_continues_the_message_where_it_was() {
        let samples: Vec<i16> = (0..8000).map(|i| (i * 7 % 20000) as i16).collect();
        let audio = PreparedAudio::from_pcm(&samples);
        let seed = RtpSeed {
            ssrc: 9,
            sequence: 100,
            timestamp: 1000,
        };
        let start = base_instant();
        let mut s = RtpStream::new(&plan(Codec::Pcmu, 20), &audio, seed, start);
        let mut p = Vec::new();
        for _ in 0..10 {
            assert!(s.poll_transmit(s.next_due(), &mut p));
        }
        s.pause();
        assert!(s.is_paused());
        let later = start + Duration::from_secs(30);
        assert!(!s.poll_transmit(later, &mut p), "nothing while paused");
        assert_eq!(s.packets_sent(), 10);
        s.resume(later);
        assert_eq!(s.next_due(), later);
        assert!(s.poll_transmit(later, &mut p));
        let (marker, pt, sequence, timestamp) = header(&p);
        assert!(marker, "a new talkspurt after the pause");
        assert_eq!(
            (pt, sequence),
            (0, 110),
            "the sequence runs on without a gap"
        );
        assert_eq!(
            timestamp,
            1000 + 30 * 8000,
            "the timestamp follows wall time"
        );
        assert_eq!(
            &p[HEADER_LEN..],
            &audio.pcmu[1600..1760],
            "the eleventh frame of the message, not the one due by the clock"
        );
        assert!(!s.poll_transmit(later, &mut p));
        assert!(s.poll_transmit(later + Duration::from_millis(20), &mut p));
        assert!(!header(&p).0);
    }

    #[test]
    fn a_new_plan_changes_codec_and_packet_time_in_place() {
        let samples: Vec<i16> = (0..8000).map(|i| (i * 13 % 30000) as i16).collect();
        let audio = PreparedAudio::from_pcm(&samples);
        let seed = RtpSeed {
            ssrc: 9,
            sequence: 0,
            timestamp: 0,
        };
        let start = base_instant();
        let mut s = RtpStream::new(&plan(Codec::Pcmu, 20), &audio, seed, start);
        let mut p = Vec::new();
        for _ in 0..5 {
            assert!(s.poll_transmit(s.next_due(), &mut p));
        }
        s.change_plan(&MediaPlan {
            payload_type: 96,
            ..plan(Codec::Pcma, 30)
        });
        assert_eq!(
            s.next_due(),
            start + Duration::from_millis(100),
            "same grid"
        );
        assert!(s.poll_transmit(s.next_due(), &mut p));
        assert_eq!(p.len(), HEADER_LEN + 240);
        assert_eq!(header(&p), (false, 96, 5, 800));
        assert_eq!(&p[HEADER_LEN..], &audio.pcma[800..1040]);
        assert_eq!(s.next_due(), start + Duration::from_millis(130));
    }
}
