//! SDP offer/answer for one audio stream (RFC 3264, RFC 8866).
//!
//! openum offers PCMU, PCMA and telephone-event/8000 and sends whichever of the two G.711 codecs
//! the answer lists first, with the answer's `ptime`. This is hand-written because the whole job is
//! one offer template and a few lines of answer parsing; a general SDP model would add more than it
//! saves.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A G.711 codec.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Codec {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn static_payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    /// The encoding name in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }
}

/// Dynamic payload type openum offers for telephone-event (RFC 4733).
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// What to send, decided from the answer.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct MediaPlan {
    /// Where to send RTP.
    pub remote: SocketAddr,
    /// Where to send RTCP, when the far end's `a=rtcp` names it (RFC 3605); `None`: the RTP
    /// port + 1 (RFC 3550 §11), or the RTP port itself with `rtcp-mux`.
    pub rtcp: Option<SocketAddr>,
    /// The codec.
    pub codec: Codec,
    /// The payload type to put in RTP headers (the answer's number for the codec).
    pub payload_type: u8,
    /// Packetisation time in milliseconds.
    pub ptime_ms: u32,
}

/// Why an answer cannot be used (the call ends with cause Other).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Not UTF-8 text.
    #[error("the SDP answer is not text")]
    NotText,
    /// No `m=audio` line.
    #[error("the SDP answer has no audio stream")]
    NoAudio,
    /// The audio stream was rejected (port 0).
    #[error("the SDP answer rejected the audio stream (port 0)")]
    Rejected,
    /// No G.711 codec in common; the payload types the answer lists, in its order.
    #[error("no codec in common (the answer offers {})", PayloadTypes(.0))]
    NoCommonCodec(Vec<u8>),
    /// No usable `c=` address.
    #[error("the SDP answer has no usable connection address")]
    NoAddress,
    /// The audio `m=` line has no port number; the line's value (after `m=`).
    #[error("malformed SDP media line: m={0}")]
    MalformedMedia(String),
    /// A `c=` line is not `IN <family> <address>`; the line's value (after `c=`).
    #[error("malformed SDP connection line: c={0}")]
    MalformedConnection(String),
}

/// Payload type numbers, space-separated (`none` for none).
struct PayloadTypes<'a>(&'a [u8]);

impl std::fmt::Display for PayloadTypes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, pt) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{pt}")?;
        }
        Ok(())
    }
}

/// Builds openum's offer: `addr:port` is where openum receives (and sends) RTP — symmetric RTP.
pub fn offer(local: SocketAddr, session_id: u64) -> String {
    let (family, ip) = match local.ip() {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut s = String::with_capacity(300);
    // Writing into a String never fails: the fmt::Results are dropped.
    let _ = write!(
        s,
        "v=0\r\no=openum {session_id} 1 IN {family} {ip}\r\ns=openum\r\n"
    );
    let _ = write!(s, "c=IN {family} {ip}\r\nt=0 0\r\n");
    let _ = write!(
        s,
        "m=audio {} RTP/AVP 0 8 {TELEPHONE_EVENT_PT}\r\n",
        local.port()
    );
    s.push_str("a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n");
    let _ = write!(
        s,
        "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT_PT} 0-16\r\n"
    );
    // RTCP may share the RTP port if the answer accepts it (RFC 5761); openum listens on both.
    s.push_str("a=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n");
    s
}

/// Reads the value of an `a=rtcp` attribute (RFC 3605): `<port> [IN IP4|IP6 <address>]`, the
/// port where the far end receives RTCP and, if given, its address (else the stream's). `None`
/// for one that cannot be read: like any unreadable attribute it is ignored (RFC 8866 §5.13),
/// and RTCP goes to the RTP port + 1.
pub fn parse_rtcp_attribute(value: &str) -> Option<(u16, Option<IpAddr>)> {
    let mut parts = value.split_whitespace();
    let port: u16 = parts.next()?.parse().ok().filter(|&p| p != 0)?;
    let address = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (None, ..) => None,
        (Some("IN"), Some("IP4" | "IP6"), Some(address), None) => Some(
            address
                .parse::<IpAddr>()
                .ok()
                .filter(|a| !a.is_unspecified())?,
        ),
        _ => return None,
    };
    Some((port, address))
}

/// Where RTCP goes for a stream at `rtp` whose section carried `a=rtcp` as `attribute`.
pub fn rtcp_address(rtp: IpAddr, attribute: Option<(u16, Option<IpAddr>)>) -> Option<SocketAddr> {
    attribute.map(|(port, address)| SocketAddr::new(address.unwrap_or(rtp), port))
}

/// Parses an answer into a [`MediaPlan`].
pub fn parse_answer(sdp: &[u8]) -> Result<MediaPlan, AnswerError> {
    let text = std::str::from_utf8(sdp).map_err(|_| AnswerError::NotText)?;
    let mut session_addr: Option<IpAddr> = None;
    let mut session_ptime: Option<u32> = None;
    let mut audio: Option<AudioSection> = None;
    let mut in_other_media = false;
    for line in text.lines().map(str::trim_end) {
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "m" => {
                if audio.is_some() {
                    // Only the first audio stream is used; later media sections are ignored.
                    in_other_media = true;
                    continue;
                }
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or_default();
                if media != "audio" {
                    in_other_media = true;
                    continue;
                }
                in_other_media = false;
                let port: u16 = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| AnswerError::MalformedMedia(value.to_owned()))?;
                let _proto = parts.next();
                // A format that is not a payload-type number is not one openum can send; the
                // codec choice below only looks at the numbers.
                let formats = parts.filter_map(|f| f.parse::<u8>().ok()).collect();
                audio = Some(AudioSection {
                    port,
                    formats,
                    rtpmap: Vec::new(),
                    addr: None,
                    ptime: None,
                    rtcp: None,
                });
            }
            "c" => {
                let addr = parse_connection(value)?;
                match audio.as_mut() {
                    Some(a) if !in_other_media => a.addr = Some(addr),
                    Some(_) => {}
                    None => session_addr = Some(addr),
                }
            }
            "a" => {
                // An unreadable ptime or rtpmap attribute is ignored like an unknown attribute
                // (RFC 4566 §5.13): the defaults (20 ms, static payload types) then apply.
                let ptime = value
                    .strip_prefix("ptime:")
                    .and_then(|p| p.trim().parse::<u32>().ok());
                let rtcp = value.strip_prefix("rtcp:").and_then(parse_rtcp_attribute);
                let rtpmap = value.strip_prefix("rtpmap:").and_then(|r| {
                    let (pt, rest) = r.split_once(' ')?;
                    let name = rest.split('/').next()?.to_ascii_uppercase();
                    Some((pt.parse::<u8>().ok()?, name))
                });
                match audio.as_mut() {
                    Some(a) if !in_other_media => {
                        if let Some(p) = ptime {
                            a.ptime = Some(p);
                        }
                        if let Some(r) = rtpmap {
                            a.rtpmap.push(r);
                        }
                        if rtcp.is_some() {
                            a.rtcp = rtcp;
                        }
                    }
                    Some(_) => {}
                    None => {
                        if ptime.is_some() {
                            session_ptime = ptime;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let audio = audio.ok_or(AnswerError::NoAudio)?;
    if audio.port == 0 {
        return Err(AnswerError::Rejected);
    }
    let (codec, payload_type) = audio
        .formats
        .iter()
        .find_map(|&pt| audio.codec_of(pt).map(|c| (c, pt)))
        .ok_or_else(|| AnswerError::NoCommonCodec(audio.formats.clone()))?;
    let ip = audio.addr.or(session_addr).ok_or(AnswerError::NoAddress)?;
    if ip.is_unspecified() {
        return Err(AnswerError::NoAddress);
    }
    let ptime_ms = audio
        .ptime
        .or(session_ptime)
        .filter(|p| (10..=60).contains(p) && p % 10 == 0)
        .unwrap_or(20);
    Ok(MediaPlan {
        remote: SocketAddr::new(ip, audio.port),
        rtcp: rtcp_address(ip, audio.rtcp),
        codec,
        payload_type,
        ptime_ms,
    })
}

struct AudioSection {
    port: u16,
    formats: Vec<u8>,
    rtpmap: Vec<(u8, String)>,
    addr: Option<IpAddr>,
    ptime: Option<u32>,
    /// `a=rtcp` (RFC 3605): port, and address if given.
    rtcp: Option<(u16, Option<IpAddr>)>,
}

impl AudioSection {
    fn codec_of(&self, pt: u8) -> Option<Codec> {
        let mapped = self
            .rtpmap
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, name)| name.as_str());
        match (pt, mapped) {
            (_, Some("PCMU")) | (0, None) => Some(Codec::Pcmu),
            (_, Some("PCMA")) | (8, None) => Some(Codec::Pcma),
            _ => None,
        }
    }
}

fn parse_connection(value: &str) -> Result<IpAddr, AnswerError> {
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(_family), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AnswerError::MalformedConnection(value.to_owned()));
    };
    // Multicast TTL suffixes ("/127") are not used for unicast telephony but parse anyway.
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| AnswerError::MalformedConnection(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_pcmu_pcma_and_telephone_event_on_the_symmetric_port() {
        let o = offer("127.0.0.1:40000".parse().unwrap(), 42);
        assert!(o.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
        assert!(o.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(o.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(o.contains("a=ptime:20\r\n"));
        let v6 = offer("[::1]:40000".parse().unwrap(), 1);
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn answer_codec_order_ptime_and_media_level_address_are_honoured() {
        let a = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\nc=IN IP4 127.0.0.2\r\na=ptime:30\r\n";
        let plan = parse_answer(a).unwrap();
        assert_eq!(plan.codec, Codec::Pcma);
        assert_eq!(plan.payload_type, 8);
        assert_eq!(plan.ptime_ms, 30);
        assert_eq!(plan.remote, "127.0.0.2:6000".parse().unwrap());
    }

    #[test]
    fn session_level_address_and_default_ptime() {
        let a = b"v=0\nc=IN IP4 127.0.0.1\nm=audio 6000 RTP/AVP 0\n";
        let plan = parse_answer(a).unwrap();
        assert_eq!((plan.codec, plan.ptime_ms), (Codec::Pcmu, 20));
    }

    #[test]
    fn dynamic_payload_type_mapped_to_g711_by_rtpmap() {
        let a =
            b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 96\r\na=rtpmap:96 pcma/8000\r\n";
        let plan = parse_answer(a).unwrap();
        assert_eq!((plan.codec, plan.payload_type), (Codec::Pcma, 96));
    }

    #[test]
    fn unusable_answers_are_refused_with_a_reason() {
        let cases: &[(&[u8], AnswerError)] = &[
            (b"v=0\r\n", AnswerError::NoAudio),
            (
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n",
                AnswerError::Rejected,
            ),
            (
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 18 9\r\n",
                AnswerError::NoCommonCodec(vec![18, 9]),
            ),
            (b"v=0\r\nm=audio 6000 RTP/AVP 0\r\n", AnswerError::NoAddress),
            (
                b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 6000 RTP/AVP 0\r\n",
                AnswerError::NoAddress,
            ),
            (b"\xff\xfe", AnswerError::NotText),
            (
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio x RTP/AVP 0\r\n",
                AnswerError::MalformedMedia("audio x RTP/AVP 0".into()),
            ),
            (
                b"v=0\r\nc=IN IP4 nowhere\r\nm=audio 6000 RTP/AVP 0\r\n",
                AnswerError::MalformedConnection("IN IP4 nowhere".into()),
            ),
            (
                b"v=0\r\nc=IN\r\nm=audio 6000 RTP/AVP 0\r\n",
                AnswerError::MalformedConnection("IN".into()),
            ),
        ];
        for (sdp, expected) in cases {
            assert_eq!(&parse_answer(sdp).unwrap_err(), expected);
        }
    }

    #[test]
    fn refusals_read_well_in_a_log() {
        assert_eq!(
            AnswerError::NoCommonCodec(vec![18, 9]).to_string(),
            "no codec in common (the answer offers 18 9)"
        );
        assert_eq!(
            AnswerError::NoCommonCodec(vec![]).to_string(),
            "no codec in common (the answer offers none)"
        );
        assert_eq!(
            AnswerError::MalformedConnection("IN".into()).to_string(),
            "malformed SDP connection line: c=IN"
        );
    }

    #[test]
    fn a_rtcp_names_the_far_ends_rtcp_port_and_address_and_an_unreadable_one_is_ignored() {
        let answer = |attribute: &str| {
            let sdp = format!(
                "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\n{attribute}a=ptime:20\r\n"
            );
            parse_answer(sdp.as_bytes()).unwrap().rtcp
        };
        assert_eq!(answer(""), None);
        assert_eq!(
            answer("a=rtcp:6009\r\n"),
            Some("127.0.0.1:6009".parse().unwrap())
        );
        assert_eq!(
            answer("a=rtcp:53020 IN IP4 126.16.64.4\r\n"),
            Some("126.16.64.4:53020".parse().unwrap())
        );
        assert_eq!(
            answer("a=rtcp:7001 IN IP6 ::1\r\n"),
            Some("[::1]:7001".parse().unwrap())
        );
        for unreadable in [
            "a=rtcp:\r\n",
            "a=rtcp:0\r\n",
            "a=rtcp:70000\r\n",
            "a=rtcp:x\r\n",
            "a=rtcp:6009 IN\r\n",
            "a=rtcp:6009 IN IP4 nowhere\r\n",
            "a=rtcp:6009 IN IP4 0.0.0.0\r\n",
            "a=rtcp:6009 IN IP4 1.2.3.4 extra\r\n",
        ] {
            assert_eq!(answer(unreadable), None, "{unreadable}");
        }
        // Session level or another media section's: not the audio stream's.
        let other = b"v=0\r\nc=IN IP4 127.0.0.1\r\na=rtcp:5000\r\nm=audio 6000 RTP/AVP 0\r\nm=video 6002 RTP/AVP 31\r\na=rtcp:6005\r\n";
        assert_eq!(parse_answer(other).unwrap().rtcp, None);
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [
            &b"m=audio"[..],
            b"m=audio x RTP/AVP 0",
            b"c=IN",
            b"a=rtpmap:",
            b"m=video 5 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n",
            b"===\r\n\r\n",
        ] {
            let _ = parse_answer(junk);
        }
    }
}
