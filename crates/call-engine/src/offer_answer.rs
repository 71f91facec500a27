//! Offer/answer inside the dialog (RFC 3264 §8, RFC 6337): the far end's re-INVITE or UPDATE
//! offers, openum's answers, openum's own offer for a re-INVITE without SDP, and the media
//! direction that decides whether openum sends.
//!
//! [`crate::sdp`] writes the first offer and reads the first answer; this module reads any
//! session description into [`Description`] (every media section, with its direction) and writes
//! the SDP openum sends afterwards from its [`LocalSession`], whose `o=` version goes up by one
//! each time the description changes (RFC 3264 §8).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::sdp::{Codec, MediaPlan, TELEPHONE_EVENT_PT};

/// The direction attribute of a media stream (RFC 3264 §5.1, §6.1).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum Direction {
    /// `a=sendrecv` (the default).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    fn parse(attribute: &str) -> Option<Self> {
        Some(match attribute {
            "sendrecv" => Self::SendRecv,
            "sendonly" => Self::SendOnly,
            "recvonly" => Self::RecvOnly,
            "inactive" => Self::Inactive,
            _ => return None,
        })
    }

    /// The attribute's name.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    /// The answerer's direction for an offered one, when the answerer would send and receive
    /// (RFC 3264 §6.1): `sendonly` → `recvonly`, `recvonly` → `sendonly`, the rest unchanged.
    pub fn mirrored(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// Whether the side with this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }
}

/// One `m=` section, as far as openum needs it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MediaSection {
    /// Media type (`audio`, `video` …).
    pub media: String,
    /// Port (0: rejected or disabled).
    pub port: u16,
    /// Transport protocol (`RTP/AVP` …).
    pub proto: String,
    /// The formats, as written.
    pub formats: Vec<String>,
    /// Media-level connection address.
    pub address: Option<IpAddr>,
    /// `a=rtpmap` (payload type, upper-case encoding name).
    pub rtpmap: Vec<(u8, String)>,
    /// `a=ptime`.
    pub ptime: Option<u32>,
    /// Media-level direction attribute.
    pub direction: Option<Direction>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// `a=rtcp` (RFC 3605): the port the far end receives RTCP on, and its address if given.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
}

impl MediaSection {
    /// The G.711 codec a payload type stands for here (static numbers, or `a=rtpmap`).
    pub fn codec_of(&self, pt: u8) -> Option<Codec> {
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

    /// The payload types among the formats, in order.
    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok())
    }

    /// The first G.711 format, with its payload type.
    pub fn first_g711(&self) -> Option<(Codec, u8)> {
        self.payload_types()
            .find_map(|pt| self.codec_of(pt).map(|c| (c, pt)))
    }

    /// The payload type of telephone-event/8000, if listed.
    pub fn telephone_event(&self) -> Option<u8> {
        self.payload_types().find(|pt| {
            self.rtpmap
                .iter()
                .any(|(p, name)| p == pt && name == "TELEPHONE-EVENT")
        })
    }

    fn is_usable_audio(&self) -> bool {
        self.media == "audio" && self.port != 0 && self.proto == "RTP/AVP"
    }
}

/// A session description, as far as openum needs it.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Description {
    /// Session-level connection address.
    pub address: Option<IpAddr>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// Session-level `a=ptime`.
    pub ptime: Option<u32>,
    /// The media sections, in order.
    pub media: Vec<MediaSection>,
}

/// Why a description cannot be read.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DescriptionError {
    /// Not UTF-8 text.
    #[error("the SDP is not text")]
    NotText,
    /// A media line without a port; the line's value (after `m=`).
    #[error("malformed SDP media line: m={0}")]
    MalformedMedia(String),
    /// A `c=` line is not `IN <family> <address>`; the line's value (after `c=`).
    #[error("malformed SDP connection line: c={0}")]
    MalformedConnection(String),
    /// No media section at all.
    #[error("the SDP has no media section")]
    NoMedia,
}

impl Description {
    /// Reads a session description.
    pub fn parse(sdp: &[u8]) -> Result<Self, DescriptionError> {
        let text = std::str::from_utf8(sdp).map_err(|_| DescriptionError::NotText)?;
        let mut description = Self::default();
        for line in text.lines().map(str::trim_end) {
            let Some((kind, value)) = line.split_once('=') else {
                continue;
            };
            match kind {
                "m" => {
                    let mut parts = value.split_whitespace();
                    let media = parts.next().unwrap_or_default().to_owned();
                    let port = parts
                        .next()
                        .and_then(|p| p.split('/').next())
                        .and_then(|p| p.parse().ok())
                        .ok_or_else(|| DescriptionError::MalformedMedia(value.to_owned()))?;
                    let proto = parts.next().unwrap_or_default().to_owned();
                    description.media.push(MediaSection {
                        media,
                        port,
                        proto,
                        formats: parts.map(str::to_owned).collect(),
                        address: None,
                        rtpmap: Vec::new(),
                        ptime: None,
                        direction: None,
                        rtcp_mux: false,
                        rtcp: None,
                    });
                }
                "c" => {
                    let address = parse_connection(value)?;
                    match description.media.last_mut() {
                        Some(m) => m.address = Some(address),
                        None => description.address = Some(address),
                    }
                }
                "a" => {
                    // An attribute openum does not understand, or cannot read, is ignored
                    // (RFC 8866 §5.13).
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    let section = description.media.last_mut();
                    match (name, section) {
                        ("ptime", Some(m)) => m.ptime = arg.trim().parse().ok(),
                        ("ptime", None) => description.ptime = arg.trim().parse().ok(),
                        ("rtpmap", Some(m)) => {
                            if let Some(entry) = parse_rtpmap(arg) {
                                m.rtpmap.push(entry);
                            }
                        }
                        ("rtcp-mux", Some(m)) => m.rtcp_mux = true,
                        ("rtcp", Some(m)) => m.rtcp = crate::sdp::parse_rtcp_attribute(arg),
                        (other, section) => {
                            if let Some(direction) = Direction::parse(other) {
                                match section {
                                    Some(m) => m.direction = Some(direction),
                                    None => description.direction = Some(direction),
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if description.media.is_empty() {
            return Err(DescriptionError::NoMedia);
        }
        Ok(description)
    }

    /// The effective direction of a media section (media level, else session level, else
    /// sendrecv).
    pub fn direction_of(&self, section: &MediaSection) -> Direction {
        section
            .direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    fn address_of(&self, section: &MediaSection) -> Option<IpAddr> {
        section.address.or(self.address)
    }

    /// The first audio section openum can use, with its index.
    fn audio(&self) -> Option<(usize, &MediaSection)> {
        self.media
            .iter()
            .enumerate()
            .find(|(_, m)| m.is_usable_audio() && m.first_g711().is_some())
    }

    fn plan_for(&self, section: &MediaSection, codec: Codec, payload_type: u8) -> MediaPlan {
        // A hold written the RFC 2543 way (c=0.0.0.0) keeps the address; the caller does not
        // send to it (see [`Negotiated::we_send`]).
        let ip = self
            .address_of(section)
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let ptime_ms = section
            .ptime
            .or(self.ptime)
            .filter(|p| (10..=60).contains(p) && p % 10 == 0)
            .unwrap_or(20);
        MediaPlan {
            remote: SocketAddr::new(ip, section.port),
            rtcp: crate::sdp::rtcp_address(ip, section.rtcp),
            codec,
            payload_type,
            ptime_ms,
        }
    }

    /// The media this description, taken as the answer to openum's offer, sets up: the first
    /// audio stream that lists PCMU or PCMA, and whether openum may send on it.
    pub fn as_answer(&self) -> Option<Negotiated> {
        let (_, section) = self.audio()?;
        let (codec, payload_type) = section.first_g711()?;
        let plan = self.plan_for(section, codec, payload_type);
        let remote_direction = self.direction_of(section);
        Some(Negotiated {
            plan,
            // Their recvonly is our sendonly, their sendonly our recvonly (RFC 3264 §6.1).
            direction: remote_direction.mirrored(),
            rtcp_mux: section.rtcp_mux,
        })
    }
}

/// What one offer/answer exchange settled.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Negotiated {
    /// Where and how to send.
    pub plan: MediaPlan,
    /// openum's direction for the stream.
    pub direction: Direction,
    /// Whether RTCP shares the RTP port (RFC 5761).
    pub rtcp_mux: bool,
}

impl Negotiated {
    /// Whether openum sends RTP: its direction sends and the far end gave an address to send to
    /// (`c=0.0.0.0` is the RFC 2543 way of holding).
    pub fn we_send(&self) -> bool {
        self.direction.sends() && !self.plan.remote.ip().is_unspecified()
    }
}

/// Why an offer is refused (the request is answered 488 and the session stays as it was,
/// RFC 3261 §14.2).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The offer cannot be read.
    #[error(transparent)]
    Unreadable(#[from] DescriptionError),
    /// No audio stream with PCMU or PCMA over RTP/AVP.
    #[error("the offer has no audio stream with PCMU or PCMA over RTP/AVP")]
    NoUsableAudio,
}

/// openum's side of the session: what it advertises, and the `o=` line's numbers.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LocalSession {
    /// The address and RTP port advertised in `c=`/`m=`.
    pub address: SocketAddr,
    /// `o=` session id.
    pub session_id: u64,
    /// `o=` version of the last description sent.
    version: u64,
    /// The body of the last description sent, without the `o=` line (to tell a change).
    last_body: Option<String>,
}

impl LocalSession {
    /// The session whose first offer ([`crate::sdp::offer`]) went out with version 1.
    pub fn new(address: SocketAddr, session_id: u64) -> Self {
        Self {
            address,
            session_id,
            version: 1,
            last_body: None,
        }
    }

    /// The `o=` version of the last description sent.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn family_and_ip(&self) -> (&'static str, String) {
        match self.address.ip() {
            IpAddr::V4(ip) => ("IP4", ip.to_string()),
            IpAddr::V6(ip) => ("IP6", ip.to_string()),
        }
    }

    /// Wraps `media` (the sections) in a session description; the version goes up by one if
    /// anything differs from the last description sent (RFC 3264 §8).
    fn describe(&mut self, media: &str) -> String {
        let (family, ip) = self.family_and_ip();
        let body = format!("s=openum\r\nc=IN {family} {ip}\r\nt=0 0\r\n{media}");
        match &self.last_body {
            // The first description after the initial offer is always a new version.
            Some(last) if *last == body => {}
            _ => self.version += 1,
        }
        self.last_body = Some(body.clone());
        format!(
            "v=0\r\no=openum {} {} IN {family} {ip}\r\n{body}",
            self.session_id, self.version
        )
    }

    /// Answers `offer` (RFC 3264 §6): every offered stream gets a section, in order; the first
    /// usable audio stream is accepted with its first PCMU/PCMA format (and telephone-event, if
    /// offered), the direction mirrored; every other stream is rejected with port 0.
    pub fn answer(&mut self, offer: &[u8]) -> Result<(String, Negotiated), OfferError> {
        let offer = Description::parse(offer)?;
        let (accepted, section) = offer.audio().ok_or(OfferError::NoUsableAudio)?;
        let (codec, payload_type) = section.first_g711().ok_or(OfferError::NoUsableAudio)?;
        let plan = offer.plan_for(section, codec, payload_type);
        let offered = offer.direction_of(section);
        // A stream offered with c=0.0.0.0 (RFC 2543 hold) is answered as if offered sendonly.
        let offered = if plan.remote.ip().is_unspecified() && offered.sends() {
            Direction::SendOnly
        } else {
            offered
        };
        let direction = offered.mirrored();
        let mut media = String::with_capacity(200);
        for (i, m) in offer.media.iter().enumerate() {
            if i != accepted {
                // Rejected: port 0 and the offered formats (RFC 3264 §6).
                let formats = if m.formats.is_empty() {
                    "0".to_owned()
                } else {
                    m.formats.join(" ")
                };
                let _ = write!(media, "m={} 0 {} {formats}\r\n", m.media, m.proto);
                continue;
            }
            let event = m.telephone_event();
            let _ = write!(
                media,
                "m=audio {} RTP/AVP {payload_type}",
                self.address.port()
            );
            if let Some(te) = event {
                let _ = write!(media, " {te}");
            }
            media.push_str("\r\n");
            let _ = write!(
                media,
                "a=rtpmap:{payload_type} {}/8000\r\n",
                codec.encoding_name()
            );
            if let Some(te) = event {
                let _ = write!(
                    media,
                    "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
                );
            }
            let _ = write!(media, "a=ptime:{}\r\n", plan.ptime_ms);
            if m.rtcp_mux {
                media.push_str("a=rtcp-mux\r\n");
            }
            let _ = write!(media, "a={}\r\n", direction.attribute());
        }
        let sdp = self.describe(&media);
        Ok((
            sdp,
            Negotiated {
                plan,
                direction,
                rtcp_mux: section.rtcp_mux,
            },
        ))
    }

    /// openum's offer for a re-INVITE that carried none (RFC 3261 §14.2): the first offer's
    /// codecs, sendrecv, with the next version.
    pub fn offer(&mut self) -> String {
        let media = format!(
            "m=audio {} RTP/AVP 0 8 {TELEPHONE_EVENT_PT}\r\n\
             a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\na=fmtp:{TELEPHONE_EVENT_PT} 0-16\r\n\
             a=ptime:20\r\na=rtcp-mux\r\na=sendrecv\r\n",
            self.address.port()
        );
        // Always a new version: the offer follows whatever was answered last.
        self.last_body = None;
        self.describe(&media)
    }
}

fn parse_rtpmap(arg: &str) -> Option<(u8, String)> {
    let (pt, rest) = arg.split_once(' ')?;
    let name = rest.trim().split('/').next()?.to_ascii_uppercase();
    Some((pt.trim().parse().ok()?, name))
}

fn parse_connection(value: &str) -> Result<IpAddr, DescriptionError> {
    let mut parts = value.split_whitespace();
    let (Some("IN"), Some(_family), Some(addr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(DescriptionError::MalformedConnection(value.to_owned()));
    };
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| DescriptionError::MalformedConnection(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> LocalSession {
        LocalSession::new("192.0.2.10:40000".parse().unwrap(), 77)
    }

    fn offer_sdp(media: &str) -> Vec<u8> {
        format!("v=0\r\no=pbx 5 2 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}")
            .into_bytes()
    }

    fn version_of(sdp: &str) -> u64 {
        sdp.lines()
            .find_map(|l| l.strip_prefix("o=openum 77 "))
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Offered direction → answered direction, and whether openum then sends.
    #[test]
    fn directions_are_mirrored_and_decide_whether_openum_sends() {
        let cases = [
            ("", "a=sendrecv", true),
            ("a=sendrecv\r\n", "a=sendrecv", true),
            ("a=sendonly\r\n", "a=recvonly", false),
            ("a=recvonly\r\n", "a=sendonly", true),
            ("a=inactive\r\n", "a=inactive", false),
        ];
        for (attribute, answered, sends) in cases {
            let mut s = session();
            let (sdp, negotiated) = s
                .answer(&offer_sdp(&format!(
                    "m=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{attribute}"
                )))
                .unwrap();
            assert!(
                sdp.contains(&format!("{answered}\r\n")),
                "{attribute}: {sdp}"
            );
            assert_eq!(negotiated.we_send(), sends, "{attribute}");
        }
        // Session-level direction applies to the stream.
        let mut s = session();
        let offer = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\na=sendonly\r\nm=audio 7000 RTP/AVP 8\r\n";
        let (sdp, negotiated) = s.answer(offer).unwrap();
        assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
        assert!(!negotiated.we_send());
    }

    #[test]
    fn an_rfc_2543_hold_with_a_zero_address_is_answered_recvonly() {
        let mut s = session();
        let offer = b"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
        let (sdp, negotiated) = s.answer(offer).unwrap();
        assert!(sdp.contains("a=recvonly\r\n"), "{sdp}");
        assert!(!negotiated.we_send());
    }

    #[test]
    fn only_codecs_from_the_offer_with_its_payload_numbers() {
        let mut s = session();
        let (sdp, negotiated) = s
            .answer(&offer_sdp(
                "m=audio 7000 RTP/AVP 18 96 97\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 PCMA/8000\r\na=rtpmap:97 telephone-event/8000\r\na=ptime:30\r\n",
            ))
            .unwrap();
        assert!(sdp.contains("m=audio 40000 RTP/AVP 96 97\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 PCMA/8000\r\n"), "{sdp}");
        assert!(
            sdp.contains("a=rtpmap:97 telephone-event/8000\r\n"),
            "{sdp}"
        );
        assert!(!sdp.contains("PCMU") && !sdp.contains(" 101"), "{sdp}");
        assert!(sdp.contains("a=ptime:30\r\n"), "{sdp}");
        assert_eq!(
            negotiated.plan,
            MediaPlan {
                remote: "198.51.100.7:7000".parse().unwrap(),
                rtcp: None,
                codec: Codec::Pcma,
                payload_type: 96,
                ptime_ms: 30,
            }
        );
        // No telephone-event offered: none answered.
        let (sdp, _) = s.answer(&offer_sdp("m=audio 7000 RTP/AVP 0\r\n")).unwrap();
        assert!(!sdp.contains("telephone-event"), "{sdp}");
    }

    #[test]
    fn other_streams_are_rejected_with_port_zero_in_order() {
        let mut s = session();
        let (sdp, negotiated) = s
            .answer(&offer_sdp(
                "m=video 9000 RTP/AVP 31\r\nm=audio 7000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5\r\nm=audio 7002 RTP/AVP 8\r\n",
            ))
            .unwrap();
        let media: Vec<&str> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            media,
            [
                "m=video 0 RTP/AVP 31",
                "m=audio 40000 RTP/AVP 0",
                "m=audio 0 RTP/AVP 8"
            ]
        );
        assert_eq!(negotiated.plan.remote, "203.0.113.5:7000".parse().unwrap());
    }

    #[test]
    fn the_version_goes_up_by_one_when_the_description_changes() {
        let mut s = session();
        let hold = offer_sdp("m=audio 7000 RTP/AVP 0\r\na=sendonly\r\n");
        let resume = offer_sdp("m=audio 7000 RTP/AVP 0\r\na=sendrecv\r\n");
        let (a, _) = s.answer(&hold).unwrap();
        assert_eq!(version_of(&a), 2, "the first offer was version 1");
        let (b, _) = s.answer(&hold).unwrap();
        assert_eq!(version_of(&b), 2, "a refresh changes nothing");
        let (c, _) = s.answer(&resume).unwrap();
        assert_eq!(version_of(&c), 3);
        let o = s.offer();
        assert_eq!(version_of(&o), 4);
        assert!(o.contains("m=audio 40000 RTP/AVP 0 8 101\r\n") && o.contains("a=sendrecv"));
        assert!(o.contains("c=IN IP4 192.0.2.10\r\n"));
    }

    #[test]
    fn unusable_offers_are_refused_with_a_reason() {
        let cases: &[(&[u8], OfferError)] = &[
            (
                &offer_sdp("m=audio 7000 RTP/AVP 18\r\n"),
                OfferError::NoUsableAudio,
            ),
            (
                &offer_sdp("m=audio 0 RTP/AVP 0\r\n"),
                OfferError::NoUsableAudio,
            ),
            (
                &offer_sdp("m=audio 7000 RTP/SAVP 0\r\n"),
                OfferError::NoUsableAudio,
            ),
            (
                b"v=0\r\n",
                OfferError::Unreadable(DescriptionError::NoMedia),
            ),
            (b"\xff", OfferError::Unreadable(DescriptionError::NotText)),
            (
                b"v=0\r\nc=IN IP4 x\r\nm=audio 1 RTP/AVP 0\r\n",
                OfferError::Unreadable(DescriptionError::MalformedConnection("IN IP4 x".into())),
            ),
        ];
        for (sdp, expected) in cases {
            let mut s = session();
            assert_eq!(&s.answer(sdp).unwrap_err(), expected);
            assert_eq!(s.version(), 1, "a refused offer changes nothing");
        }
    }

    #[test]
    fn an_answer_to_our_offer_gives_the_plan_and_direction() {
        let d = Description::parse(
            b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\na=rtcp-mux\r\n",
        )
        .unwrap();
        let n = d.as_answer().unwrap();
        assert_eq!(n.plan.codec, Codec::Pcma);
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(n.we_send() && n.rtcp_mux);
        let d =
            Description::parse(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 6000 RTP/AVP 9\r\n").unwrap();
        assert_eq!(d.as_answer(), None);
    }

    #[test]
    fn garbage_never_panics() {
        for junk in [
            &b"m=audio"[..],
            b"m=audio 1",
            b"m=audio 1 RTP/AVP\r\na=rtpmap:\r\na=ptime:x\r\na=",
            b"a=sendonly\r\nc=IN IP4 1.2.3.4\r\n",
            b"===\r\n\r\n",
        ] {
            let mut s = session();
            let _ = s.answer(junk);
            let _ = Description::parse(junk).map(|d| d.as_answer());
        }
    }
}
