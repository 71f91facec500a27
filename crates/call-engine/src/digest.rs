//! HTTP Digest authentication for SIP (RFC 3261 §22.4, RFC 7616, RFC 8760): parsing
//! `WWW-Authenticate` / `Proxy-Authenticate` challenges and computing the `Authorization` /
//! `Proxy-Authorization` answer, for MD5, SHA-256 and SHA-512/256 (and their `-sess` forms).
//!
//! openum does digest itself rather than through rsipstack because rsipstack 0.7.14 rejects the
//! RFC 8760 token `SHA-256` (it only knows `SHA256`). Pure: the client nonce is an input.

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512_256};

/// A digest algorithm (RFC 8760 §2.3 names).
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Algorithm {
    /// `MD5` (the default when a challenge names none).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
}

impl Algorithm {
    fn parse(token: &str) -> Option<Self> {
        // `SHA256` is accepted too: some stacks (rsipstack among them) print it that way.
        Some(match token.to_ascii_uppercase().as_str() {
            "MD5" => Self::Md5,
            "MD5-SESS" => Self::Md5Sess,
            "SHA-256" | "SHA256" => Self::Sha256,
            "SHA-256-SESS" | "SHA256-SESS" => Self::Sha256Sess,
            "SHA-512-256" | "SHA512-256" => Self::Sha512_256,
            "SHA-512-256-SESS" | "SHA512-256-SESS" => Self::Sha512_256Sess,
            _ => return None,
        })
    }

    /// The token written back in the answer.
    pub fn token(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
            Self::Sha512_256 => "SHA-512-256",
            Self::Sha512_256Sess => "SHA-512-256-sess",
        }
    }

    fn is_session(self) -> bool {
        matches!(
            self,
            Self::Md5Sess | Self::Sha256Sess | Self::Sha512_256Sess
        )
    }

    /// Preference: stronger hashes first (RFC 7616 §3.7).
    fn strength(self) -> u8 {
        match self {
            Self::Sha512_256 | Self::Sha512_256Sess => 3,
            Self::Sha256 | Self::Sha256Sess => 2,
            Self::Md5 | Self::Md5Sess => 1,
        }
    }

    fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Self::Md5 | Self::Md5Sess => Md5::digest(data.as_bytes()).to_vec(),
            Self::Sha256 | Self::Sha256Sess => Sha256::digest(data.as_bytes()).to_vec(),
            Self::Sha512_256 | Self::Sha512_256Sess => Sha512_256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A parsed `Digest` challenge.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// Whether `qop` offers `auth` (openum never uses `auth-int`).
    pub qop_auth: bool,
}

/// Why a challenge cannot be answered.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Not a `Digest` challenge.
    #[error("not a Digest challenge")]
    NotDigest,
    /// A required parameter is missing.
    #[error("the challenge has no {0}")]
    Missing(&'static str),
    /// The algorithm is not one openum implements.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// Only `qop=auth-int` was offered.
    #[error("the challenge only offers qop=auth-int")]
    AuthIntOnly,
}

/// Parses one challenge header value (`Digest realm="…", nonce="…", …`).
pub fn parse_challenge(value: &str) -> Result<Challenge, DigestError> {
    let value = value.trim();
    let rest = value
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("digest"))
        .map(|_| &value[6..])
        .ok_or(DigestError::NotDigest)?;
    let params = parse_params(rest);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a))?,
    };
    let qop = get("qop");
    let qop_auth = qop
        .as_deref()
        .is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    if qop.is_some() && !qop_auth {
        return Err(DigestError::AuthIntOnly);
    }
    Ok(Challenge {
        realm: get("realm").ok_or(DigestError::Missing("realm"))?,
        nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
        opaque: get("opaque"),
        algorithm,
        qop_auth,
    })
}

/// The strongest answerable challenge among several header values.
pub fn choose<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge, DigestError> {
    let mut best: Option<Challenge> = None;
    let mut last_error = DigestError::NotDigest;
    for value in values {
        match parse_challenge(value) {
            Ok(c) => {
                if best
                    .as_ref()
                    .is_none_or(|b| c.algorithm.strength() > b.algorithm.strength())
                {
                    best = Some(c);
                }
            }
            Err(e) => last_error = e,
        }
    }
    best.ok_or(last_error)
}

/// What the answer is computed over.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// SIP method (`INVITE`).
    pub method: &'a str,
    /// The Request-URI as sent.
    pub uri: &'a str,
    /// Digest user name.
    pub username: &'a str,
    /// Password.
    pub password: &'a str,
    /// Client nonce (random, from the caller).
    pub cnonce: &'a str,
    /// Nonce count (1 for the first use of a nonce).
    pub nonce_count: u32,
}

/// The `Authorization` (or `Proxy-Authorization`) header value answering `challenge`.
pub fn answer(challenge: &Challenge, request: &Request<'_>) -> String {
    let alg = challenge.algorithm;
    let nc = format!("{:08x}", request.nonce_count);
    let mut ha1 = alg.hash(&format!(
        "{}:{}:{}",
        request.username, challenge.realm, request.password
    ));
    if alg.is_session() {
        ha1 = alg.hash(&format!("{ha1}:{}:{}", challenge.nonce, request.cnonce));
    }
    let ha2 = alg.hash(&format!("{}:{}", request.method, request.uri));
    let response = if challenge.qop_auth {
        alg.hash(&format!(
            "{ha1}:{}:{nc}:{}:auth:{ha2}",
            challenge.nonce, request.cnonce
        ))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    };
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm={}",
        quote(request.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(request.uri),
        alg.token()
    );
    if challenge.qop_auth {
        out.push_str(&format!(
            ", qop=auth, nc={nc}, cnonce=\"{}\"",
            quote(request.cnonce)
        ));
    }
    if let Some(opaque) = &challenge.opaque {
        out.push_str(&format!(", opaque=\"{}\"", quote(opaque)));
    }
    out
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `k=v` / `k="v"` pairs, comma-separated, quoted strings may contain commas and escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_owned();
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1 example.
    const CHALLENGE: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    fn request() -> Request<'static> {
        Request {
            method: "GET",
            uri: "/dir/index.html",
            username: "Mufasa",
            password: "Circle of Life",
            cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nonce_count: 1,
        }
    }

    #[test]
    fn rfc7616_md5_example() {
        let c = parse_challenge(CHALLENGE).unwrap();
        assert_eq!(c.algorithm, Algorithm::Md5);
        let a = answer(&c, &request());
        assert!(
            a.contains(r#"response="8ca523f5e9506fed4657c9700eebdbec""#),
            "{a}"
        );
        assert!(a.contains("qop=auth, nc=00000001"));
        assert!(a.contains(r#"opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#));
    }

    #[test]
    fn rfc7616_sha256_example_with_the_rfc8760_token() {
        let c = parse_challenge(&format!("{CHALLENGE}, algorithm=SHA-256")).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let a = answer(&c, &request());
        assert!(
            a.contains(
                r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#
            ),
            "{a}"
        );
        assert!(a.contains("algorithm=SHA-256"));
    }

    #[test]
    fn the_strongest_offered_algorithm_is_chosen() {
        let md5 = r#"Digest realm="r", nonce="n", algorithm=MD5"#;
        let sha = r#"Digest realm="r", nonce="n", algorithm=SHA-256"#;
        let bogus = r#"Digest realm="r", nonce="n", algorithm=SHA-1"#;
        assert_eq!(
            choose([md5, sha, bogus]).unwrap().algorithm,
            Algorithm::Sha256
        );
        assert_eq!(
            choose([bogus]).unwrap_err(),
            DigestError::UnsupportedAlgorithm("SHA-1".into())
        );
    }

    #[test]
    fn without_qop_the_rfc2069_form_is_used() {
        let c = parse_challenge(r#"Digest realm="asterisk", nonce="abc""#).unwrap();
        let a = answer(&c, &request());
        assert!(!a.contains("qop="));
        assert!(!a.contains("cnonce"));
    }

    #[test]
    fn malformed_challenges_are_refused() {
        assert_eq!(
            parse_challenge("Basic realm=\"x\"").unwrap_err(),
            DigestError::NotDigest
        );
        assert_eq!(
            parse_challenge("Digest nonce=\"n\"").unwrap_err(),
            DigestError::Missing("realm")
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap_err(),
            DigestError::AuthIntOnly
        );
        for junk in ["Digest", "Digest ,,,", "Digest a=\"unterminated", ""] {
            let _ = parse_challenge(junk);
        }
    }
}
