//! NTLM (MS-NLMP) messages for tests: both the client side (a test that does the handshake by
//! hand builds `NEGOTIATE_MESSAGE` and `AUTHENTICATE_MESSAGE` with [`negotiate`] and
//! [`authenticate`]) and the server side the mailbox double uses ([`challenge`],
//! [`parse_authenticate`], [`verify_ntlmv2`]).
//!
//! Only NTLMv2 with Unicode strings is spoken (what Windows and exchangelib send). No signing,
//! sealing or MIC: the double authenticates connections, it does not protect them. The hash
//! primitives are RustCrypto's (`md4`, `md-5`, `hmac`).

use hmac::{Hmac, Mac};
use md4::{Digest as _, Md4};
use md5::Md5;

type HmacMd5 = Hmac<Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
/// UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | EXTENDED_SESSIONSECURITY | TARGET_INFO
/// | 128 | 56.
const FLAGS: u32 = 0x0000_0001
    | 0x0000_0004
    | 0x0000_0200
    | 0x0000_8000
    | 0x0008_0000
    | 0x0080_0000
    | 0x2000_0000
    | 0x8000_0000;
/// The challenge message's flags: those plus TARGET_TYPE_DOMAIN.
const CHALLENGE_FLAGS: u32 = FLAGS | 0x0001_0000;

/// Why an NTLM message was not understood.
#[derive(Debug, PartialEq, Eq)]
pub struct NtlmError {
    expected: &'static str,
    reason: &'static str,
}

impl std::fmt::Display for NtlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not an NTLM {} message: {}", self.expected, self.reason)
    }
}

impl std::error::Error for NtlmError {}

fn err(expected: &'static str, reason: &'static str) -> NtlmError {
    NtlmError { expected, reason }
}

/// The message type of an NTLMSSP token (1 negotiate, 2 challenge, 3 authenticate), if `token`
/// is one.
pub fn message_type(token: &[u8]) -> Option<u32> {
    if token.len() < 12 || &token[..8] != SIGNATURE {
        return None;
    }
    Some(u32_at(token, 8))
}

/// A `NEGOTIATE_MESSAGE` (type 1) without domain or workstation.
pub fn negotiate() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&FLAGS.to_le_bytes());
    // Empty domain and workstation fields.
    out.extend_from_slice(&[0; 16]);
    out
}

/// What a `CHALLENGE_MESSAGE` (type 2) carries for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The server challenge.
    pub server_challenge: [u8; 8],
    /// The target info (AV pairs), echoed in the NTLMv2 blob.
    pub target_info: Vec<u8>,
    /// The NetBIOS domain name from the target info, if present.
    pub domain: Option<String>,
}

/// A `CHALLENGE_MESSAGE` (type 2) with `server_challenge` and target info naming `domain` and
/// the computer `computer`.
pub fn challenge(server_challenge: [u8; 8], domain: &str, computer: &str) -> Vec<u8> {
    let target_name = utf16(&domain.to_uppercase());
    let mut info = Vec::new();
    for (id, value) in [(2u16, domain.to_uppercase()), (1, computer.to_uppercase())] {
        let value = utf16(&value);
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(&value);
    }
    info.extend_from_slice(&[0; 4]); // MsvAvEOL
    let header = 48;
    let mut out = Vec::with_capacity(header + target_name.len() + info.len());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&2u32.to_le_bytes());
    push_field(&mut out, target_name.len(), header);
    out.extend_from_slice(&CHALLENGE_FLAGS.to_le_bytes());
    out.extend_from_slice(&server_challenge);
    out.extend_from_slice(&[0; 8]);
    push_field(&mut out, info.len(), header + target_name.len());
    out.extend_from_slice(&target_name);
    out.extend_from_slice(&info);
    out
}

/// Reads a `CHALLENGE_MESSAGE` (type 2).
pub fn parse_challenge(token: &[u8]) -> Result<Challenge, NtlmError> {
    const WHAT: &str = "CHALLENGE";
    if message_type(token) != Some(2) || token.len() < 48 {
        return Err(err(WHAT, "wrong signature, type or length"));
    }
    let mut server_challenge = [0; 8];
    server_challenge.copy_from_slice(&token[24..32]);
    let target_info = field(token, 40).ok_or(err(WHAT, "target info out of bounds"))?;
    let mut domain = None;
    let mut at = 0;
    while at + 4 <= target_info.len() {
        let id = u16::from_le_bytes([target_info[at], target_info[at + 1]]);
        let len = usize::from(u16::from_le_bytes([
            target_info[at + 2],
            target_info[at + 3],
        ]));
        let value = target_info
            .get(at + 4..at + 4 + len)
            .ok_or(err(WHAT, "an AV pair is out of bounds"))?;
        match id {
            0 => break,
            2 => domain = Some(from_utf16(value).ok_or(err(WHAT, "the domain is not UTF-16"))?),
            _ => {}
        }
        at += 4 + len;
    }
    Ok(Challenge {
        server_challenge,
        target_info: target_info.to_vec(),
        domain,
    })
}

/// An `AUTHENTICATE_MESSAGE` (type 3) answering `challenge` with an NTLMv2 response for
/// `user` in `domain` with `password`; `client_challenge` and `timestamp` (Windows FILETIME)
/// are the client's nonce and clock.
pub fn authenticate(
    challenge: &Challenge,
    user: &str,
    domain: &str,
    password: &str,
    client_challenge: [u8; 8],
    timestamp: u64,
) -> Vec<u8> {
    let key = ntowfv2(password, user, domain);
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&timestamp.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0; 4]);
    blob.extend_from_slice(&challenge.target_info);
    blob.extend_from_slice(&[0; 4]);
    let mut nt = hmac_md5(&key, &[&challenge.server_challenge, &blob]).to_vec();
    nt.extend_from_slice(&blob);
    let mut lm = hmac_md5(&key, &[&challenge.server_challenge, &client_challenge]).to_vec();
    lm.extend_from_slice(&client_challenge);
    let (domain, user, workstation) = (utf16(domain), utf16(user), utf16("TESTCLIENT"));
    let header = 64;
    let mut out = Vec::new();
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = header;
    for len in [
        lm.len(),
        nt.len(),
        domain.len(),
        user.len(),
        workstation.len(),
        0,
    ] {
        push_field(&mut out, len, offset);
        offset += len;
    }
    out.extend_from_slice(&FLAGS.to_le_bytes());
    for part in [&lm, &nt, &domain, &user, &workstation] {
        out.extend_from_slice(part);
    }
    out
}

/// What an `AUTHENTICATE_MESSAGE` (type 3) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticate {
    /// The user name as sent.
    pub user: String,
    /// The domain as sent (may be empty).
    pub domain: String,
    /// The NT challenge response (NTLMv2: NTProofStr followed by the blob).
    pub nt_response: Vec<u8>,
}

/// Reads an `AUTHENTICATE_MESSAGE` (type 3).
pub fn parse_authenticate(token: &[u8]) -> Result<Authenticate, NtlmError> {
    const WHAT: &str = "AUTHENTICATE";
    if message_type(token) != Some(3) || token.len() < 64 {
        return Err(err(WHAT, "wrong signature, type or length"));
    }
    let flags = u32_at(token, 60);
    if flags & 1 == 0 {
        return Err(err(WHAT, "only Unicode strings are supported"));
    }
    let text = |at| {
        field(token, at)
            .and_then(from_utf16)
            .ok_or(err(WHAT, "a name is out of bounds or not UTF-16"))
    };
    Ok(Authenticate {
        nt_response: field(token, 20)
            .ok_or(err(WHAT, "the NT response is out of bounds"))?
            .to_vec(),
        domain: text(28)?,
        user: text(36)?,
    })
}

/// Whether `response` is a valid NTLMv2 answer to `server_challenge` for `password`:
/// NTProofStr = HMAC-MD5(NTOWFv2, server challenge ‖ blob) equals the response's first 16
/// bytes (compared in constant time).
pub fn verify_ntlmv2(response: &Authenticate, server_challenge: &[u8; 8], password: &str) -> bool {
    if response.nt_response.len() <= 16 + 28 {
        // An NTLMv1 response (24 bytes) or a truncated blob.
        return false;
    }
    let (proof, blob) = response.nt_response.split_at(16);
    let key = ntowfv2(password, &response.user, &response.domain);
    let Ok(mut mac) = HmacMd5::new_from_slice(&key) else {
        return false;
    };
    mac.update(server_challenge);
    mac.update(blob);
    mac.verify_slice(proof).is_ok()
}

/// NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) ‖ domain)).
fn ntowfv2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash = Md4::digest(utf16(password));
    let identity = utf16(&format!("{}{domain}", user.to_uppercase()));
    hmac_md5(&nt_hash, &[&identity])
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = match HmacMd5::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn utf16(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn from_utf16(bytes: &[u8]) -> Option<String> {
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// A security buffer (length, maximum length, offset).
fn push_field(out: &mut Vec<u8>, len: usize, offset: usize) {
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&(offset as u32).to_le_bytes());
}

/// The payload a security buffer at `at` points to.
fn field(token: &[u8], at: usize) -> Option<&[u8]> {
    let header = token.get(at..at + 8)?;
    let len = usize::from(u16::from_le_bytes([header[0], header[1]]));
    let offset = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    token.get(offset..offset.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn a_handshake_verifies_with_the_right_password_only() {
        assert_eq!(message_type(&negotiate()), Some(1));
        let server = challenge([1, 2, 3, 4, 5, 6, 7, 8], "example", "mail");
        let parsed = parse_challenge(&server).unwrap();
        assert_eq!(parsed.domain.as_deref(), Some("EXAMPLE"));
        let token = authenticate(&parsed, "alice", "EXAMPLE", "pw", [9; 8], 1);
        let answer = parse_authenticate(&token).unwrap();
        assert_eq!(
            (answer.user.as_str(), answer.domain.as_str()),
            ("alice", "EXAMPLE")
        );
        assert!(verify_ntlmv2(&answer, &parsed.server_challenge, "pw"));
        assert!(!verify_ntlmv2(&answer, &parsed.server_challenge, "PW"));
        assert!(!verify_ntlmv2(&answer, &[0; 8], "pw"));
    }

    #[test]
    fn ntowfv2_matches_the_ms_nlmp_example() {
        // MS-NLMP 4.2.4.1.1: User "User", UserDom "Domain", Password "Password".
        let key = ntowfv2("Password", "User", "Domain");
        assert_eq!(
            key,
            [
                0x0c, 0x86, 0x8a, 0x40, 0x3b, 0xfd, 0x7a, 0x93, 0xa3, 0x00, 0x1e, 0xf2, 0x2e, 0xf0,
                0x2e, 0x3f
            ]
        );
    }
}
