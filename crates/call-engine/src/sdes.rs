//! SRTP keying by SDES (RFC 4568): the `a=crypto` lines openum offers, and the choice the answer
//! makes among them.
//!
//! openum offers two crypto attributes, each with its own random master key (the caller supplies
//! the bytes: the engine has no RNG): tag 1 `AES_CM_128_HMAC_SHA1_80` (preferred) and tag 2
//! `AES_CM_128_HMAC_SHA1_32`. The answer accepts one by echoing its tag and suite with the
//! answerer's own key. The key that protects what openum sends is the one in openum's offer
//! (RFC 4568 §6.1: each side's key protects the media it sends).
//!
//! Per gateway policy ([`SrtpPolicy`]):
//! - `Mandatory`: the media line says `RTP/SAVP` (RFC 3711 §12), and an answer without an
//!   acceptable crypto attribute is refused (the call ends; far ends that cannot do SRTP usually
//!   answer 488 instead).
//! - `Optional`: the media line says `RTP/AVP` and carries the crypto attributes ("best-effort
//!   SRTP", as Asterisk, FreeSWITCH and baresip's `srtp` mode do it): an answer with a crypto
//!   attribute gets SRTP, one without gets plain RTP. RFC 5939 capability negotiation would be the
//!   standard way, but trunks and PBXs rarely implement it; this is what they accept.
//! - `Off`: nothing changes.

use base64::Engine as _;

/// Whether a gateway's media is protected with SRTP.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum SrtpPolicy {
    /// Plain RTP only.
    #[default]
    Off,
    /// SRTP if the answer accepts it, else plain RTP (`RTP/AVP` with `a=crypto`).
    Optional,
    /// SRTP or no call (`RTP/SAVP`).
    Mandatory,
}

/// An SDES crypto suite openum implements (RFC 4568 §6.2).
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum CryptoSuite {
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag.
    AesCm128HmacSha1_32,
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
}

impl CryptoSuite {
    /// The suite's name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        }
    }

    /// The suite named `name` (case-sensitive, as RFC 4568's grammar is).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::AesCm128HmacSha1_32, Self::AesCm128HmacSha1_80]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// Length of an AES-128 master key.
pub const MASTER_KEY_LEN: usize = 16;
/// Length of a master salt (both suites).
pub const MASTER_SALT_LEN: usize = 14;
/// Random bytes one offered crypto attribute needs (key ‖ salt).
pub const KEY_MATERIAL_LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;

/// A master key and salt. Never shown in logs.
#[derive(Clone, Eq, PartialEq)]
pub struct MasterKey {
    /// The master key.
    pub key: [u8; MASTER_KEY_LEN],
    /// The master salt.
    pub salt: [u8; MASTER_SALT_LEN],
}

impl MasterKey {
    /// Splits 30 bytes into key and salt.
    pub fn from_material(material: &[u8; KEY_MATERIAL_LEN]) -> Self {
        let mut key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        key.copy_from_slice(&material[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&material[MASTER_KEY_LEN..]);
        Self { key, salt }
    }

    fn inline(&self) -> String {
        let mut material = Vec::with_capacity(KEY_MATERIAL_LEN);
        material.extend_from_slice(&self.key);
        material.extend_from_slice(&self.salt);
        base64::engine::general_purpose::STANDARD.encode(material)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// One `a=crypto` attribute (only the parts openum uses).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CryptoAttribute {
    /// The tag that names it in the offer/answer exchange.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The (first) inline key.
    pub key: MasterKey,
}

impl CryptoAttribute {
    /// The attribute line, `a=crypto:<tag> <suite> inline:<key‖salt base64>`.
    pub fn line(&self) -> String {
        format!(
            "a=crypto:{} {} inline:{}",
            self.tag,
            self.suite.name(),
            self.key.inline()
        )
    }

    /// Parses the value after `a=crypto:`.
    pub fn parse(value: &str) -> Result<Self, SdesError> {
        let malformed = || SdesError::Malformed(value.to_owned());
        let mut parts = value.split_whitespace();
        let tag = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .filter(|t| *t <= 999_999_999)
            .ok_or_else(malformed)?;
        let suite_name = parts.next().ok_or_else(malformed)?;
        let suite = CryptoSuite::from_name(suite_name)
            .ok_or_else(|| SdesError::UnknownSuite(suite_name.to_owned()))?;
        // Several key-params may be given (`;`-separated); the first is used. Its lifetime and
        // MKI (`|2^31|1:4`) concern the packets the answerer sends, which openum never decrypts.
        let key_params = parts.next().ok_or_else(malformed)?;
        let first = key_params.split(';').next().unwrap_or(key_params);
        let inline = first.strip_prefix("inline:").ok_or_else(malformed)?;
        let encoded = inline.split('|').next().unwrap_or(inline);
        let material = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| malformed())?;
        let material: [u8; KEY_MATERIAL_LEN] = material
            .as_slice()
            .try_into()
            .map_err(|_| SdesError::KeyLength(material.len()))?;
        // Session parameters (UNENCRYPTED_SRTP, KDR, FEC_ORDER …) change how SRTP works; openum
        // implements none, so it cannot honour an attribute that carries one (RFC 4568 §6.3).
        if let Some(parameter) = parts.next() {
            return Err(SdesError::SessionParameter(parameter.to_owned()));
        }
        Ok(Self {
            tag,
            suite,
            key: MasterKey::from_material(&material),
        })
    }
}

/// Why an answer's SRTP cannot be used.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SdesError {
    /// SRTP is mandatory and the answer's audio has no crypto attribute.
    #[error("SRTP is mandatory and the answer has no a=crypto attribute")]
    NotAccepted,
    /// SRTP is mandatory and the answer's audio is not `RTP/SAVP`.
    #[error("SRTP is mandatory and the answer's media profile is {0:?}, not RTP/SAVP")]
    Profile(String),
    /// The answer picks a tag that was not offered, or changes its suite.
    #[error("the answer's a=crypto tag {tag} ({suite}) matches no offered attribute")]
    NotOffered {
        /// Its tag.
        tag: u32,
        /// Its suite.
        suite: &'static str,
    },
    /// The answer accepts more than one crypto attribute.
    #[error("the answer has more than one a=crypto attribute")]
    SeveralAccepted,
    /// An attribute does not follow RFC 4568's grammar.
    #[error("malformed a=crypto attribute {0:?}")]
    Malformed(String),
    /// A suite openum does not implement.
    #[error("unsupported crypto suite {0}")]
    UnknownSuite(String),
    /// The inline key is not 30 bytes.
    #[error("the inline key is {0} bytes, not 30")]
    KeyLength(usize),
    /// A session parameter openum does not implement.
    #[error("unsupported SDES session parameter {0}")]
    SessionParameter(String),
}

/// `sdp` with `attributes` after its audio media line, whose profile becomes `RTP/SAVP` when
/// `savp` (openum's SDP: one audio stream).
pub fn with_crypto(sdp: &str, attributes: &[CryptoAttribute], savp: bool) -> String {
    let mut out = String::with_capacity(sdp.len() + 80 * attributes.len());
    for line in sdp.split_inclusive('\n') {
        match line.strip_prefix("m=audio ") {
            Some(rest) => {
                let rest = if savp {
                    rest.replacen(" RTP/AVP ", " RTP/SAVP ", 1)
                } else {
                    rest.to_owned()
                };
                out.push_str("m=audio ");
                out.push_str(&rest);
                for attribute in attributes {
                    out.push_str(&attribute.line());
                    out.push_str("\r\n");
                }
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The tag of the first crypto attribute of `suite` in the first audio stream of the far end's
/// offer `sdp` (attributes openum cannot read are skipped).
pub fn offered_tag(sdp: &[u8], suite: CryptoSuite) -> Option<u32> {
    let text = String::from_utf8_lossy(sdp);
    let mut audio_seen = false;
    let mut in_audio = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            in_audio = !audio_seen && media.starts_with("audio ");
            audio_seen |= in_audio;
        } else if let Some(value) = line.strip_prefix("a=crypto:") {
            if in_audio {
                match CryptoAttribute::parse(value) {
                    Ok(attribute) if attribute.suite == suite => return Some(attribute.tag),
                    _ => {}
                }
            }
        }
    }
    None
}

/// The keys of a call whose answer accepted SRTP.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SrtpKeys {
    /// The suite both sides use.
    pub suite: CryptoSuite,
    /// openum's key: protects what openum sends (RTP and RTCP).
    pub local: MasterKey,
    /// The far end's key: protects what the far end sends.
    pub remote: MasterKey,
}

/// openum's SDES offer for one call.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SdesOffer {
    policy: SrtpPolicy,
    offered: Vec<CryptoAttribute>,
}

impl SdesOffer {
    /// The offer for `policy`, keyed with `material` (one random 30-byte key per suite, 80-bit
    /// tag suite first). With [`SrtpPolicy::Off`] it offers nothing.
    pub fn new(policy: SrtpPolicy, material: [[u8; KEY_MATERIAL_LEN]; 2]) -> Self {
        let offered = match policy {
            SrtpPolicy::Off => Vec::new(),
            SrtpPolicy::Optional | SrtpPolicy::Mandatory => vec![
                CryptoAttribute {
                    tag: 1,
                    suite: CryptoSuite::AesCm128HmacSha1_80,
                    key: MasterKey::from_material(&material[0]),
                },
                CryptoAttribute {
                    tag: 2,
                    suite: CryptoSuite::AesCm128HmacSha1_32,
                    key: MasterKey::from_material(&material[1]),
                },
            ],
        };
        Self { policy, offered }
    }

    /// The policy.
    pub fn policy(&self) -> SrtpPolicy {
        self.policy
    }

    /// The attributes offered.
    pub fn offered(&self) -> &[CryptoAttribute] {
        &self.offered
    }

    /// `sdp` (an offer from [`crate::sdp::offer`]) with this offer's profile and crypto
    /// attributes on its audio media line.
    pub fn apply(&self, sdp: &str) -> String {
        if self.policy == SrtpPolicy::Off {
            return sdp.to_owned();
        }
        with_crypto(sdp, &self.offered, self.policy == SrtpPolicy::Mandatory)
    }

    /// What the answer `sdp` decided: `Ok(Some(keys))` for SRTP, `Ok(None)` for plain RTP
    /// (SRTP off, or optional and not taken up), `Err` when the call cannot go on.
    pub fn negotiate(&self, sdp: &[u8]) -> Result<Option<SrtpKeys>, SdesError> {
        if self.policy == SrtpPolicy::Off {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(sdp);
        let mut profile: Option<String> = None;
        let mut in_audio = false;
        let mut accepted = Vec::new();
        for line in text.lines().map(str::trim_end) {
            if let Some(media) = line.strip_prefix("m=") {
                if profile.is_some() {
                    // Only the first audio stream is used (as in crate::sdp).
                    in_audio = false;
                    continue;
                }
                let mut parts = media.split_whitespace();
                in_audio = parts.next() == Some("audio");
                if in_audio {
                    profile = Some(parts.nth(1).unwrap_or_default().to_owned());
                }
            } else if let Some(value) = line.strip_prefix("a=crypto:") {
                if in_audio {
                    accepted.push(CryptoAttribute::parse(value)?);
                }
            }
        }
        let profile = profile.unwrap_or_default();
        let Some(answer) = accepted.first() else {
            return match self.policy {
                SrtpPolicy::Mandatory => Err(SdesError::NotAccepted),
                _ => Ok(None),
            };
        };
        if accepted.len() > 1 {
            return Err(SdesError::SeveralAccepted);
        }
        if self.policy == SrtpPolicy::Mandatory && profile != "RTP/SAVP" {
            return Err(SdesError::Profile(profile));
        }
        let ours = self
            .offered
            .iter()
            .find(|o| o.tag == answer.tag && o.suite == answer.suite)
            .ok_or(SdesError::NotOffered {
                tag: answer.tag,
                suite: answer.suite.name(),
            })?;
        Ok(Some(SrtpKeys {
            suite: ours.suite,
            local: ours.key.clone(),
            remote: answer.key.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIAL: [[u8; KEY_MATERIAL_LEN]; 2] = [[7; KEY_MATERIAL_LEN], [9; KEY_MATERIAL_LEN]];

    fn offer(policy: SrtpPolicy) -> SdesOffer {
        SdesOffer::new(policy, MATERIAL)
    }

    fn plain_offer() -> String {
        crate::sdp::offer("127.0.0.1:40000".parse().unwrap(), 1)
    }

    fn answer(profile: &str, crypto: &[&str]) -> Vec<u8> {
        let mut sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 {profile} 0\r\n"
        );
        for c in crypto {
            sdp.push_str(&format!("a=crypto:{c}\r\n"));
        }
        sdp.into_bytes()
    }

    fn inline(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; KEY_MATERIAL_LEN])
    }

    #[test]
    fn mandatory_offers_savp_with_both_suites_each_with_its_own_key() {
        let sdp = offer(SrtpPolicy::Mandatory).apply(&plain_offer());
        assert!(sdp.contains("m=audio 40000 RTP/SAVP 0 8 101\r\n"), "{sdp}");
        let first = format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
            inline(7)
        );
        let second = format!(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
            inline(9)
        );
        let m = sdp.find("m=audio").unwrap();
        assert!(sdp[m..].contains(&first), "{sdp}");
        assert!(sdp[m..].contains(&second), "{sdp}");
        assert!(sdp.find(&first) < sdp.find(&second));
    }

    #[test]
    fn optional_offers_avp_with_crypto_and_off_changes_nothing() {
        let sdp = offer(SrtpPolicy::Optional).apply(&plain_offer());
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{sdp}");
        assert_eq!(sdp.matches("a=crypto:").count(), 2, "{sdp}");
        assert_eq!(offer(SrtpPolicy::Off).apply(&plain_offer()), plain_offer());
    }

    #[test]
    fn the_accepted_tag_picks_our_key_and_the_answer_gives_theirs() {
        let a = answer(
            "RTP/SAVP",
            &[&format!(
                "2 AES_CM_128_HMAC_SHA1_32 inline:{}|2^31|1:4",
                inline(3)
            )],
        );
        let keys = offer(SrtpPolicy::Mandatory).negotiate(&a).unwrap().unwrap();
        assert_eq!(keys.suite, CryptoSuite::AesCm128HmacSha1_32);
        assert_eq!(keys.local, MasterKey::from_material(&[9; 30]));
        assert_eq!(keys.remote, MasterKey::from_material(&[3; 30]));
    }

    #[test]
    fn mandatory_refuses_answers_without_usable_srtp() {
        let o = offer(SrtpPolicy::Mandatory);
        let good = format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", inline(3));
        let cases: Vec<(Vec<u8>, SdesError)> = vec![
            (answer("RTP/SAVP", &[]), SdesError::NotAccepted),
            (answer("RTP/AVP", &[]), SdesError::NotAccepted),
            (
                answer("RTP/AVP", &[&good]),
                SdesError::Profile("RTP/AVP".into()),
            ),
            (
                answer(
                    "RTP/SAVP",
                    &[&format!("1 AES_CM_128_HMAC_SHA1_32 inline:{}", inline(3))],
                ),
                SdesError::NotOffered {
                    tag: 1,
                    suite: "AES_CM_128_HMAC_SHA1_32",
                },
            ),
            (
                answer(
                    "RTP/SAVP",
                    &[&format!("1 AES_256_CM_HMAC_SHA1_80 inline:{}", inline(3))],
                ),
                SdesError::UnknownSuite("AES_256_CM_HMAC_SHA1_80".into()),
            ),
            (
                answer("RTP/SAVP", &["1 AES_CM_128_HMAC_SHA1_80 inline:AAAA"]),
                SdesError::KeyLength(3),
            ),
            (
                answer("RTP/SAVP", &[&format!("{good} UNENCRYPTED_SRTP")]),
                SdesError::SessionParameter("UNENCRYPTED_SRTP".into()),
            ),
            (
                answer("RTP/SAVP", &[&good, &good]),
                SdesError::SeveralAccepted,
            ),
            (
                answer("RTP/SAVP", &["x AES_CM_128_HMAC_SHA1_80 inline:AAAA"]),
                SdesError::Malformed("x AES_CM_128_HMAC_SHA1_80 inline:AAAA".into()),
            ),
        ];
        for (sdp, expected) in cases {
            assert_eq!(
                o.negotiate(&sdp),
                Err(expected),
                "{}",
                String::from_utf8_lossy(&sdp)
            );
        }
    }

    #[test]
    fn optional_falls_back_to_plain_rtp_only_when_the_answer_has_no_crypto() {
        let o = offer(SrtpPolicy::Optional);
        assert_eq!(o.negotiate(&answer("RTP/AVP", &[])), Ok(None));
        let taken = answer(
            "RTP/AVP",
            &[&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", inline(3))],
        );
        assert!(o.negotiate(&taken).unwrap().is_some());
        assert_eq!(offer(SrtpPolicy::Off).negotiate(&taken), Ok(None));
    }

    #[test]
    fn crypto_lines_of_other_media_are_ignored() {
        let mut a = answer("RTP/AVP", &[]);
        a.extend_from_slice(
            format!(
                "m=video 6002 RTP/SAVP 96\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
                inline(3)
            )
            .as_bytes(),
        );
        assert_eq!(offer(SrtpPolicy::Optional).negotiate(&a), Ok(None));
    }

    #[test]
    fn a_later_offer_is_answered_with_the_tag_of_its_attribute_for_our_suite() {
        let offer = format!(
            "v=0\r\nm=audio 6000 RTP/SAVP 0\r\na=crypto:5 AES_CM_128_HMAC_SHA1_80 inline:{}\r\na=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:{}\r\nm=video 1 RTP/SAVP 96\r\na=crypto:9 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
            inline(1),
            inline(2),
            inline(3)
        );
        assert_eq!(
            offered_tag(offer.as_bytes(), CryptoSuite::AesCm128HmacSha1_32),
            Some(7)
        );
        assert_eq!(
            offered_tag(
                b"v=0\r\nm=audio 6000 RTP/AVP 0\r\n",
                CryptoSuite::AesCm128HmacSha1_32
            ),
            None
        );
        let attribute = CryptoAttribute {
            tag: 7,
            suite: CryptoSuite::AesCm128HmacSha1_32,
            key: MasterKey::from_material(&[9; 30]),
        };
        let answer = with_crypto(&plain_offer(), std::slice::from_ref(&attribute), true);
        assert!(
            answer.contains("m=audio 40000 RTP/SAVP 0 8 101\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("{}\r\n", attribute.line())),
            "{answer}"
        );
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let shown = format!("{:?}", offer(SrtpPolicy::Mandatory));
        assert!(!shown.contains(&inline(7)), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn garbage_never_panics() {
        let o = offer(SrtpPolicy::Mandatory);
        for junk in [
            &b"a=crypto:"[..],
            b"m=audio\r\na=crypto:1",
            b"m=audio 1 RTP/SAVP\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
            b"m=audio 1 RTP/SAVP\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:!!!",
            b"\xff\xfe",
        ] {
            assert!(o.negotiate(junk).is_err());
        }
    }
}
