//! Answering a 401/407 digest challenge to the INVITE: whether to answer it, and with what.
//!
//! The rules (the same the runtime applied before they moved here):
//!
//! - answer only when [`Credentials`] are configured for the gateway;
//! - never while the call is being hung up (the 401/407 ends the call instead);
//! - at most [`MAX_ANSWERED_CHALLENGES`] challenges per call (one proxy's, one UAS's): a further
//!   one means the gateway refused the credentials;
//! - answer the strongest challenge [`digest::choose`] accepts; none acceptable ends the call.
//!
//! A challenge that is not answered ends the call exactly as a [`SipEvent::Rejected`] with the
//! same status would (Disconnected, cause Other for a 401/407), and the reason is reported as an
//! [`Output::ChallengeRefused`] for the log.
//!
//! Sans-I/O: the client nonces are random values drawn by the runtime and passed in with the
//! credentials ([`DigestAuth::cnonces`]), one per answerable challenge, as [`crate::rtp::RtpSeed`]
//! is for RTP.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use openum_call_engine::auth::{Credentials, DigestAuth};
//! use openum_call_engine::call::{Call, CallConfig, Command, Output, SipEvent, SipStatus};
//!
//! let now = Instant::now(); // the runtime's clock
//! let cnonces = [0x5eed_u128, 0xf00d]; // the runtime's CSPRNG
//! let auth = DigestAuth::new(Credentials::new("alice", "secret"), "sip:123@gw", cnonces);
//! let mut call = Call::with_auth(now, CallConfig::new(Duration::from_secs(5)), Some(auth));
//! call.handle_sip(now, SipEvent::Challenged {
//!     status: SipStatus::new(407, "Proxy Authentication Required"),
//!     proxy: true,
//!     challenges: vec![r#"Digest realm="gw", nonce="abc", algorithm=SHA-256"#.into()],
//! });
//! while let Some(output) = call.poll_output() {
//!     match output {
//!         Output::Command(Command::Resend { authorization, .. }) => {
//!             // Send the INVITE again with this header.
//!             assert_eq!(authorization.header_name(), "Proxy-Authorization");
//!         }
//!         Output::ChallengeRefused(why) => println!("not answered: {why}"),
//!         _ => {}
//!     }
//! }
//! assert!(!call.is_done());
//! ```
//!
//! [`SipEvent::Rejected`]: crate::call::SipEvent::Rejected
//! [`Output::ChallengeRefused`]: crate::call::Output::ChallengeRefused

use std::fmt;

use crate::digest::{self, Algorithm, DigestError};

/// How many digest challenges one call answers at most (one proxy's, one UAS's).
pub const MAX_ANSWERED_CHALLENGES: usize = 2;

/// The SIP method the answers are computed for.
const METHOD: &str = "INVITE";

/// The nonce count of every answer: each answer is the first use of its challenge's nonce.
const NONCE_COUNT: u32 = 1;

/// A gateway's digest user name and password. `Debug` does not show the password.
#[derive(Clone, Eq, PartialEq)]
pub struct Credentials {
    /// Digest user name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl Credentials {
    /// Credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a call needs to answer digest challenges to its INVITE.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DigestAuth {
    /// The gateway's credentials.
    pub credentials: Credentials,
    /// The INVITE's Request-URI, exactly as sent (the digest `uri`).
    pub request_uri: String,
    /// One client nonce per answerable challenge, in order, drawn at random by the runtime (a
    /// CSPRNG); written as 32 lowercase hex digits (`{:032x}`).
    pub cnonces: [u128; MAX_ANSWERED_CHALLENGES],
}

impl DigestAuth {
    /// Settings for answering challenges to an INVITE sent to `request_uri`.
    pub fn new(
        credentials: Credentials,
        request_uri: impl Into<String>,
        cnonces: [u128; MAX_ANSWERED_CHALLENGES],
    ) -> Self {
        Self {
            credentials,
            request_uri: request_uri.into(),
            cnonces,
        }
    }
}

/// The answer to a challenge, for the header of the new INVITE it goes in.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Authorization {
    /// `Authorization` (answering a 401's `WWW-Authenticate`).
    Www(String),
    /// `Proxy-Authorization` (answering a 407's `Proxy-Authenticate`).
    Proxy(String),
}

impl Authorization {
    /// The header name.
    pub fn header_name(&self) -> &'static str {
        match self {
            Self::Www(_) => "Authorization",
            Self::Proxy(_) => "Proxy-Authorization",
        }
    }

    /// The header value (`Digest username="…", …`).
    pub fn value(&self) -> &str {
        match self {
            Self::Www(value) | Self::Proxy(value) => value,
        }
    }

    /// Whether this answers a proxy's challenge (407).
    pub fn is_proxy(&self) -> bool {
        matches!(self, Self::Proxy(_))
    }
}

/// Why a 401/407 challenge was not answered (the call ends with the challenge's status).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeRefusal {
    /// The gateway has no user name and password configured.
    #[error("no credentials are configured for the gateway")]
    NoCredentials,
    /// The call is being hung up; no new INVITE is sent for it.
    #[error("the call is being hung up")]
    HangingUp,
    /// [`MAX_ANSWERED_CHALLENGES`] challenges were answered already: the gateway refuses the
    /// credentials.
    #[error("credentials refused by the gateway")]
    CredentialsRefused,
    /// No challenge in the response can be answered (unknown algorithm, malformed, not Digest).
    #[error("cannot answer the digest challenge: {0}")]
    Unanswerable(DigestError),
}

/// An answered challenge.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Answer {
    pub(crate) authorization: Authorization,
    pub(crate) algorithm: Algorithm,
}

/// One call's challenge answering: the settings and how many challenges were answered.
#[derive(Clone, Debug, Eq, PartialEq)]
pub(crate) struct Authenticator {
    auth: Option<DigestAuth>,
    answered: usize,
}

impl Authenticator {
    pub(crate) fn new(auth: Option<DigestAuth>) -> Self {
        Self { auth, answered: 0 }
    }

    /// Answers the challenge values of a 401 (`proxy == false`) or 407 (`proxy == true`), or
    /// says why not. The caller checks for a hang-up first.
    pub(crate) fn answer(
        &mut self,
        proxy: bool,
        challenges: &[String],
    ) -> Result<Answer, ChallengeRefusal> {
        let auth = self.auth.as_ref().ok_or(ChallengeRefusal::NoCredentials)?;
        let cnonce = *auth
            .cnonces
            .get(self.answered)
            .ok_or(ChallengeRefusal::CredentialsRefused)?;
        self.answered += 1;
        let challenge = digest::choose(challenges.iter().map(String::as_str))
            .map_err(ChallengeRefusal::Unanswerable)?;
        let cnonce = format!("{cnonce:032x}");
        let value = digest::answer(
            &challenge,
            &digest::Request {
                method: METHOD,
                uri: &auth.request_uri,
                username: &auth.credentials.username,
                password: &auth.credentials.password,
                cnonce: &cnonce,
                nonce_count: NONCE_COUNT,
            },
        );
        let authorization = if proxy {
            Authorization::Proxy(value)
        } else {
            Authorization::Www(value)
        };
        Ok(Answer {
            authorization,
            algorithm: challenge.algorithm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_the_password() {
        let auth = DigestAuth::new(Credentials::new("alice", "s3cret-pa55"), "sip:1@gw", [1, 2]);
        let shown = format!("{auth:?} {:#?}", Authenticator::new(Some(auth.clone())));
        assert!(!shown.contains("s3cret-pa55"), "{shown}");
        assert!(shown.contains("alice"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn the_header_name_follows_the_challenge_kind() {
        let www = Authorization::Www("Digest x".into());
        let proxy = Authorization::Proxy("Digest y".into());
        assert_eq!(
            (www.header_name(), www.value()),
            ("Authorization", "Digest x")
        );
        assert_eq!(
            (proxy.header_name(), proxy.value()),
            ("Proxy-Authorization", "Digest y")
        );
        assert!(proxy.is_proxy() && !www.is_proxy());
    }

    #[test]
    fn refusals_read_as_the_runtime_logged_them() {
        assert_eq!(
            ChallengeRefusal::CredentialsRefused.to_string(),
            "credentials refused by the gateway"
        );
        assert_eq!(
            ChallengeRefusal::Unanswerable(DigestError::UnsupportedAlgorithm("SHA-1".into()))
                .to_string(),
            "cannot answer the digest challenge: unsupported digest algorithm \"SHA-1\""
        );
    }
}
