//! SRTP for one call (RFC 3711), keyed by SDES ([`call_engine::sdes`]): the offer's keys, the
//! answer's choice, and the context that protects each RTP packet the media scheduler sends.
//!
//! # Which implementation
//!
//! The transform is webrtc-rs's `rtc-srtp` (sans-I/O, pure Rust, on `ring` — the provider rustls
//! already brings into the build), not our own crypto. The other candidates:
//! - `srtp` (crates.io) wraps libsrtp2, the reference implementation (Debian `libsrtp2-dev`),
//!   but pulls in a C library and OpenSSL at build time and its Rust wrapper is maintained by
//!   one person with few releases; the project builds no C today.
//! - `webrtc-srtp` is the same code as `rtc-srtp` tied to tokio and webrtc-util's async
//!   connection types; `rtc-srtp` is its maintained sans-I/O successor, which fits a scheduler
//!   that only needs "protect this packet".
//!
//! Interoperability is the test that matters: `secure_e2e` has baresip (libre's own SRTP) decode
//! what openum sends.

use call_engine::call::SipEvent;
use call_engine::sdes::{
    CryptoAttribute, CryptoSuite, MasterKey, SdesError, SdesOffer, SrtpKeys, SrtpPolicy,
};
use rtc_srtp::context::Context;
use rtc_srtp::crypto::providers::RingProvider;
use rtc_srtp::crypto::RTCCryptoProvider as _;
use rtc_srtp::protection_profile::ProtectionProfile;

/// Why SRTP could not be set up or a packet not protected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// The answer's SRTP cannot be used (the call ends).
    #[error("the far end's SRTP answer is unusable")]
    Answer(#[from] SdesError),
    /// The SRTP library refused the keys or a packet.
    #[error("the SRTP transform failed")]
    Transform(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Protects the RTP packets of one outgoing stream.
pub struct SrtpSender {
    /// Boxed: the context is large and rides in the media scheduler's commands.
    context: Box<Context>,
}

/// The `rtc-srtp` context for `key` under `suite`; `replay_window`: packets (SRTCP indexes)
/// remembered to refuse replays (RFC 3711 §3.3.2), for what the far end sends.
fn context(
    suite: CryptoSuite,
    key: &MasterKey,
    replay_window: Option<usize>,
) -> Result<Box<Context>, SrtpError> {
    let profile = match suite {
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    };
    let provider = RingProvider::new();
    let context = Context::new(
        &key.key,
        &key.salt,
        profile,
        None,
        replay_window.map(rtc_srtp::option::srtcp_replay_protection),
        provider.crypto(),
    )
    .map_err(|e| SrtpError::Transform(Box::new(e)))?;
    Ok(Box::new(context))
}

impl SrtpSender {
    /// A context for `keys` (openum's own key protects what it sends).
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Ok(Self {
            context: context(keys.suite, &keys.local, None)?,
        })
    }

    /// The SRTP packet for the RTP packet `rtp`.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<impl AsRef<[u8]>, SrtpError> {
        self.context
            .encrypt_rtp(rtp)
            .map_err(|e| SrtpError::Transform(Box::new(e)))
    }
}

/// SRTCP octets after the RTCP packet: the E flag with the 31-bit SRTCP index (RFC 3711 §3.4).
const SRTCP_INDEX_LEN: usize = 4;
/// The SRTCP authentication tag: 80 bits for both SDES suites openum offers (RFC 4568 §6.2.2:
/// `AES_CM_128_HMAC_SHA1_32` shortens only SRTP's tag).
const SRTCP_TAG_LEN: usize = 10;
/// Replayed SRTCP indexes are recognised within this window (RFC 3711 §3.3.2's 64 minimum).
const SRTCP_REPLAY_WINDOW: usize = 64;

/// SRTCP for one call (RFC 3711 §3.4): protects the RTCP openum sends with its own key (the
/// same master key and salt as its SRTP stream; the library derives the SRTCP session keys and
/// keeps the SRTCP index, sending with the E flag set) and authenticates and decrypts what the
/// far end sends with the key of its answer. Two `rtc-srtp` contexts: the far end's key is
/// another master key, and the RTCP task owns both while the media scheduler owns the SRTP one.
pub struct Srtcp {
    ours: Box<Context>,
    theirs: Box<Context>,
}

/// Why a datagram that arrived as SRTCP was not taken (it is dropped, logged and counted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtcpRefusal {
    /// The E flag is clear. RFC 3711 allows unencrypted SRTCP, but it must still be
    /// authenticated, and `rtc-srtp` 0.21 returns such packets without checking their tag: openum
    /// takes only encrypted SRTCP, which it can authenticate.
    #[error(
        "SRTCP without encryption (E flag clear) is not accepted: it could not be authenticated"
    )]
    Unencrypted,
    /// Too short, a wrong authentication tag, or an SRTCP index seen before (a replay).
    #[error("SRTCP authentication failed")]
    Authentication(#[source] SrtpError),
}

impl SrtcpRefusal {
    /// The `cause` label of openum's drop counter.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Unencrypted => "srtcp_unencrypted",
            Self::Authentication(_) => "srtcp_auth",
        }
    }
}

impl Srtcp {
    /// The contexts for `keys`: openum's key protects, the far end's key unprotects.
    pub fn new(keys: &SrtpKeys) -> Result<Self, SrtpError> {
        Ok(Self {
            ours: context(keys.suite, &keys.local, None)?,
            theirs: context(keys.suite, &keys.remote, Some(SRTCP_REPLAY_WINDOW))?,
        })
    }

    /// The SRTCP packet for the compound RTCP packet `rtcp` (encrypted after the first
    /// packet's SSRC; index with E flag; 80-bit tag).
    pub fn protect(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.ours
            .encrypt_rtcp(rtcp)
            .map(|p| p.to_vec())
            .map_err(|e| SrtpError::Transform(Box::new(e)))
    }

    /// The compound RTCP packet inside the far end's SRTCP packet `srtcp`, once its tag is
    /// authenticated and its index is not a replay.
    pub fn unprotect(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, SrtcpRefusal> {
        // The E flag is the top bit of the index word before the tag; a datagram too short to
        // have one is left to the library, which refuses it.
        if let Some(flag_at) = srtcp.len().checked_sub(SRTCP_TAG_LEN + SRTCP_INDEX_LEN) {
            if flag_at >= 8 && srtcp[flag_at] & 0x80 == 0 {
                return Err(SrtcpRefusal::Unencrypted);
            }
        }
        self.theirs
            .decrypt_rtcp(srtcp)
            .map(|p| p.to_vec())
            .map_err(|e| SrtcpRefusal::Authentication(SrtpError::Transform(Box::new(e))))
    }
}

/// Sends `packet` from `socket` to `remote`, through `srtp` when the call has it: the media
/// scheduler's one hook. A packet that cannot be protected is never sent in the clear.
pub(crate) fn send(
    srtp: Option<&mut SrtpSender>,
    socket: &crate::udp::MediaSocket,
    packet: &[u8],
    remote: std::net::SocketAddr,
) -> std::io::Result<usize> {
    match srtp {
        None => socket.try_send_to(packet, remote),
        Some(srtp) => match srtp.protect(packet) {
            Ok(protected) => socket.try_send_to(protected.as_ref(), remote),
            Err(error) => Err(std::io::Error::other(error)),
        },
    }
}

/// One call's SRTP negotiation: the SDES offer made, and the sender its answer allows.
pub(crate) struct CallSrtp {
    offer: SdesOffer,
    sender: Option<SrtpSender>,
    /// SRTCP for the call's RTCP task, once the answer accepted SRTP.
    rtcp: Option<Srtcp>,
    /// The suite and openum's key in use, once the answer accepted SRTP.
    negotiated: Option<(CryptoSuite, MasterKey)>,
    /// In-dialog offers (re-INVITE, UPDATE) still to be answered: the tag their crypto
    /// attribute for our suite has (`None`: they carry none).
    offers: std::collections::HashMap<u64, Option<u32>>,
}

impl CallSrtp {
    /// A fresh offer for `policy`, with random keys.
    pub(crate) fn new(policy: SrtpPolicy) -> Self {
        use rand::RngCore as _;
        let mut material = [[0_u8; call_engine::sdes::KEY_MATERIAL_LEN]; 2];
        for key in &mut material {
            // The OS-seeded CSPRNG (ChaCha) behind thread_rng is fit for key material.
            rand::thread_rng().fill_bytes(key);
        }
        Self {
            offer: SdesOffer::new(policy, material),
            sender: None,
            rtcp: None,
            negotiated: None,
            offers: std::collections::HashMap::new(),
        }
    }

    /// No SRTP.
    #[cfg(test)]
    pub(crate) fn off() -> Self {
        Self::new(SrtpPolicy::Off)
    }

    /// The SDP offer `sdp` with this call's SRTP profile and keys.
    pub(crate) fn offer(&self, sdp: &str) -> String {
        self.offer.apply(sdp)
    }

    /// Looks at the answer of an `Answered` event before the engine does: keeps the SRTP
    /// sender it allows, or — if the answer's SRTP is unusable — logs why and hands the engine
    /// an answer without SDP, which ends the call with cause Other and the 2xx's code after a
    /// BYE (nothing may be sent in the clear, nor with keys the far end does not know).
    pub(crate) fn screen(&mut self, event: SipEvent) -> SipEvent {
        if let SipEvent::Offer {
            request,
            update,
            sdp,
        } = event
        {
            let Some((suite, _)) = &self.negotiated else {
                return SipEvent::Offer {
                    request,
                    update,
                    sdp,
                };
            };
            let tag = sdp
                .as_deref()
                .map(|sdp| call_engine::sdes::offered_tag(sdp, *suite));
            // An offerless re-INVITE: openum's answer is an offer, tag 1.
            self.offers.insert(request, tag.unwrap_or(Some(1)));
            // The engine negotiates the stream (codec, address, direction) as RTP/AVP; the
            // profile and crypto attribute are this module's, put back into the answer.
            let sdp = sdp.map(|sdp| {
                String::from_utf8_lossy(&sdp)
                    .replacen(" RTP/SAVP ", " RTP/AVP ", 1)
                    .into_bytes()
            });
            return SipEvent::Offer {
                request,
                update,
                sdp,
            };
        }
        let SipEvent::Answered {
            status,
            sdp: Some(sdp),
        } = event
        else {
            return event;
        };
        let negotiated = self
            .offer
            .negotiate(&sdp)
            .map_err(SrtpError::from)
            .and_then(|keys| match keys {
                Some(keys) => Ok(Some((
                    keys.suite,
                    SrtpSender::new(&keys)?,
                    Srtcp::new(&keys)?,
                    keys.local,
                ))),
                None => Ok(None),
            });
        match negotiated {
            Ok(Some((suite, sender, rtcp, local))) => {
                tracing::info!(suite = suite.name(), "SRTP negotiated");
                self.sender = Some(sender);
                self.rtcp = Some(rtcp);
                self.negotiated = Some((suite, local));
                // The engine reads the stream as RTP/AVP, as it does in-dialog offers (see
                // above): the SRTP profile is this module's. With RTP/SAVP it would not see
                // the answer's direction or `a=rtcp-mux`.
                let sdp = String::from_utf8_lossy(&sdp)
                    .replacen(" RTP/SAVP ", " RTP/AVP ", 1)
                    .into_bytes();
                return SipEvent::Answered {
                    status,
                    sdp: Some(sdp),
                };
            }
            Ok(None) => {
                if self.offer.policy() == SrtpPolicy::Optional {
                    tracing::info!("SRTP offered, the far end answered plain RTP");
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = %calls::error_chain(&error),
                    policy = ?self.offer.policy(),
                    "SRTP refused: ending the call"
                );
                return SipEvent::Answered { status, sdp: None };
            }
        }
        SipEvent::Answered {
            status,
            sdp: Some(sdp),
        }
    }

    /// The engine's answer `sdp` to in-dialog offer `request`, with the crypto attribute that
    /// keeps the call's SRTP (same suite and key: the stream goes on under the same context).
    /// An offer without a crypto attribute for that suite gets the engine's answer unchanged,
    /// and the log says so.
    pub(crate) fn answer(&mut self, request: u64, sdp: Option<String>) -> Option<String> {
        let tag = self.offers.remove(&request);
        let sdp = sdp?;
        let Some((suite, key)) = &self.negotiated else {
            return Some(sdp);
        };
        match tag.flatten() {
            Some(tag) => Some(call_engine::sdes::with_crypto(
                &sdp,
                &[CryptoAttribute {
                    tag,
                    suite: *suite,
                    key: key.clone(),
                }],
                self.offer.policy() == SrtpPolicy::Mandatory,
            )),
            None => {
                tracing::warn!(
                    suite = suite.name(),
                    "the far end's new offer has no a=crypto for the call's SRTP suite: answered without one"
                );
                Some(sdp)
            }
        }
    }

    /// The sender for the media about to start (`None`: plain RTP).
    pub(crate) fn take_sender(&mut self) -> Option<SrtpSender> {
        self.sender.take()
    }

    /// SRTCP for the RTCP task about to start (`None`: plain RTCP).
    pub(crate) fn take_rtcp(&mut self) -> Option<Srtcp> {
        self.rtcp.take()
    }
}

#[cfg(test)]
mod tests {
    use call_engine::call::SipStatus;
    use call_engine::sdes::MasterKey;

    use super::*;

    fn rtp_packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44]);
        p.extend_from_slice(&[0x55; 160]);
        p
    }

    fn keys(suite: CryptoSuite) -> SrtpKeys {
        SrtpKeys {
            suite,
            local: MasterKey::from_material(&[1; 30]),
            remote: MasterKey::from_material(&[2; 30]),
        }
    }

    #[test]
    fn protected_packets_keep_the_header_hide_the_payload_and_carry_the_suites_tag() {
        for (suite, tag) in [
            (CryptoSuite::AesCm128HmacSha1_80, 10),
            (CryptoSuite::AesCm128HmacSha1_32, 4),
        ] {
            let mut sender = SrtpSender::new(&keys(suite)).unwrap();
            let plain = rtp_packet(7);
            let protected = sender.protect(&plain).unwrap();
            let protected = protected.as_ref();
            assert_eq!(protected.len(), plain.len() + tag, "{suite:?}");
            assert_eq!(&protected[..12], &plain[..12]);
            assert_ne!(&protected[12..12 + 160], &plain[12..]);
        }
    }

    #[test]
    fn what_openum_protects_the_far_end_decrypts_with_the_offered_key() {
        let keys = keys(CryptoSuite::AesCm128HmacSha1_80);
        let mut sender = SrtpSender::new(&keys).unwrap();
        let provider = RingProvider::new();
        let mut receiver = Context::new(
            &keys.local.key,
            &keys.local.salt,
            ProtectionProfile::Aes128CmHmacSha1_80,
            None,
            None,
            provider.crypto(),
        )
        .unwrap();
        for seq in [65_534, 65_535, 0, 1] {
            let plain = rtp_packet(seq);
            let protected = sender.protect(&plain).unwrap();
            let decrypted = receiver.decrypt_rtp(protected.as_ref()).unwrap();
            assert_eq!(&decrypted[..], &plain[..], "sequence {seq}");
        }
    }

    #[test]
    fn an_unusable_mandatory_answer_reaches_the_engine_without_sdp() {
        let mut srtp = CallSrtp::new(SrtpPolicy::Mandatory);
        let plain = b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\n".to_vec();
        let event = srtp.screen(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(plain),
        });
        assert_eq!(
            event,
            SipEvent::Answered {
                status: SipStatus::new(200, "OK"),
                sdp: None
            }
        );
        assert!(srtp.take_sender().is_none());
    }

    #[test]
    fn in_dialog_answers_keep_the_negotiated_suite_and_key_under_the_offers_tag() {
        let mut srtp = CallSrtp::new(SrtpPolicy::Mandatory);
        let offered = srtp.offer("v=0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n");
        let our_line = offered
            .lines()
            .find(|l| l.starts_with("a=crypto:2 "))
            .unwrap()
            .to_owned();
        let our_key = our_line.rsplit_once("inline:").unwrap().1.to_owned();
        let answer = format!(
            "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/SAVP 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{THEIRS}\r\n"
        );
        srtp.screen(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(answer.into_bytes()),
        });
        assert!(srtp.take_sender().is_some());
        // A re-INVITE (hold) offering the suite under tag 4.
        let reoffer = format!(
            "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/SAVP 0\r\na=sendonly\r\na=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:{THEIRS}\r\n"
        );
        let seen = srtp.screen(SipEvent::Offer {
            request: 1,
            update: false,
            sdp: Some(reoffer.into_bytes()),
        });
        // The engine sees the stream as RTP/AVP (it does not know SRTP).
        let SipEvent::Offer {
            sdp: Some(seen), ..
        } = seen
        else {
            panic!("{seen:?}")
        };
        assert!(String::from_utf8_lossy(&seen).contains("m=audio 6000 RTP/AVP 0\r\n"));
        let engine_answer = "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=recvonly\r\n".to_owned();
        let answered = srtp.answer(1, Some(engine_answer)).unwrap();
        assert!(
            answered.contains("m=audio 4000 RTP/SAVP 0\r\n"),
            "{answered}"
        );
        assert!(
            answered.contains(&format!(
                "a=crypto:4 AES_CM_128_HMAC_SHA1_32 inline:{our_key}\r\n"
            )),
            "{answered}"
        );
        // Without SRTP nothing changes.
        let mut off = CallSrtp::off();
        assert_eq!(
            off.answer(1, Some("v=0\r\n".into())).as_deref(),
            Some("v=0\r\n")
        );
    }

    const THEIRS: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC";

    #[test]
    fn an_accepting_answer_yields_a_sender_and_srtcp_and_reaches_the_engine_as_rtp_avp() {
        let mut srtp = CallSrtp::new(SrtpPolicy::Mandatory);
        let offered = srtp.offer("v=0\r\nm=audio 4000 RTP/AVP 0 8 101\r\n");
        let tag1 = offered
            .lines()
            .find(|l| l.starts_with("a=crypto:1 "))
            .unwrap()
            .to_owned();
        // The far end answers with tag 1 and a key of its own.
        let their = tag1.rsplit_once("inline:").unwrap().0.to_owned()
            + "inline:"
            + "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC";
        let answer = format!("v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/SAVP 0\r\n{their}\r\n")
            .into_bytes();
        let event = SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(answer),
        };
        let seen = srtp.screen(event);
        let SipEvent::Answered {
            sdp: Some(seen), ..
        } = seen
        else {
            panic!("{seen:?}")
        };
        let seen = String::from_utf8(seen).unwrap();
        assert!(seen.contains("m=audio 6000 RTP/AVP 0\r\n"), "{seen}");
        assert!(seen.contains(&their), "{seen}");
        assert!(srtp.take_sender().is_some());
        assert!(srtp.take_rtcp().is_some());
    }

    fn srtcp_pair(suite: CryptoSuite) -> (Srtcp, Srtcp) {
        let ours = keys(suite);
        let theirs = SrtpKeys {
            suite,
            local: ours.remote.clone(),
            remote: ours.local.clone(),
        };
        (Srtcp::new(&ours).unwrap(), Srtcp::new(&theirs).unwrap())
    }

    fn sender_report_and_bye() -> Vec<u8> {
        let info = call_engine::rtcp::SenderInfo {
            ssrc: 0x1122_3344,
            ntp: 0xdead_beef_0000_0001,
            rtp_timestamp: 160,
            packets: 50,
            octets: 8000,
        };
        call_engine::rtcp::goodbye(&info, "openum@127.0.0.1")
    }

    #[test]
    fn srtcp_keeps_the_first_header_and_ssrc_encrypts_the_rest_and_adds_index_and_80_bit_tag() {
        for suite in [
            CryptoSuite::AesCm128HmacSha1_80,
            CryptoSuite::AesCm128HmacSha1_32,
        ] {
            let (mut ours, mut theirs) = srtcp_pair(suite);
            let plain = sender_report_and_bye();
            let first = ours.protect(&plain).unwrap();
            let second = ours.protect(&plain).unwrap();
            assert_eq!(first.len(), plain.len() + 4 + 10, "{suite:?}");
            assert_eq!(first[..8], plain[..8]);
            assert_ne!(first[8..plain.len()], plain[8..]);
            // E flag set, index 1 then 2.
            let index =
                |p: &[u8]| u32::from_be_bytes(p[plain.len()..plain.len() + 4].try_into().unwrap());
            assert_eq!(index(&first), 0x8000_0001);
            assert_eq!(index(&second), 0x8000_0002);
            // The far end (the mirrored key pair) reads both back.
            assert_eq!(theirs.unprotect(&first).unwrap(), plain);
            assert_eq!(theirs.unprotect(&second).unwrap(), plain);
        }
    }

    #[test]
    fn corrupted_replayed_unencrypted_or_short_srtcp_is_refused_with_its_cause() {
        let (mut far_end, mut openum) = srtcp_pair(CryptoSuite::AesCm128HmacSha1_80);
        let plain = sender_report_and_bye();
        let good = far_end.protect(&plain).unwrap();
        // One flipped bit anywhere (header, encrypted part, index, tag): authentication fails.
        for at in [1, 9, plain.len() - 1, plain.len() + 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x01;
            let refusal = openum.unprotect(&bad).unwrap_err();
            assert_eq!(
                refusal.cause(),
                "srtcp_auth",
                "bit flipped at {at}: {refusal:?}"
            );
        }
        // The genuine packet is still taken once, and refused as a replay after that.
        assert_eq!(openum.unprotect(&good).unwrap(), plain);
        assert_eq!(openum.unprotect(&good).unwrap_err().cause(), "srtcp_auth");
        // E flag cleared: the library would take it unauthenticated; openum does not.
        let mut clear = far_end.protect(&plain).unwrap();
        clear[plain.len()] &= 0x7f;
        assert_eq!(
            openum.unprotect(&clear).unwrap_err().cause(),
            "srtcp_unencrypted"
        );
        // Plain RTCP (no index, no tag) and runts never pass.
        assert!(openum.unprotect(&plain).is_err());
        for len in [0, 4, 8, 21] {
            assert_eq!(
                openum.unprotect(&good[..len]).unwrap_err().cause(),
                "srtcp_auth",
                "{len} octets"
            );
        }
        // Signed with another key: refused.
        let (mut stranger, _) = srtcp_pair(CryptoSuite::AesCm128HmacSha1_80);
        let forged = stranger.protect(&plain).unwrap();
        assert_eq!(openum.unprotect(&forged).unwrap_err().cause(), "srtcp_auth");
    }
}
