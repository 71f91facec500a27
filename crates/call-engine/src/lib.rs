//! openum's call engine, sans-I/O: no sockets, clock, RNG, spawning or filesystem. Time,
//! randomness and SIP dialogue events are inputs; commands and status records are outputs.
//!
//! # Layout
//!
//! - [`call`]: the call state machine and the SIP-to-EWS state/cause mapping.
//! - [`auth`]: whether and how a 401/407 to the INVITE is answered (credentials, the limit of
//!   two answered challenges, the new INVITE's `Authorization` / `Proxy-Authorization`).
//! - [`sdes`]: SRTP keying by SDES (`a=crypto`, RFC 4568): the offer's attributes per gateway
//!   policy, and the answer's choice.
//! - [`sdp`]: the offer (PCMU, PCMA, telephone-event) and answer parsing.
//! - [`offer_answer`]: offer/answer inside the dialog (re-INVITE, UPDATE, hold): answers,
//!   openum's re-offer, media direction.
//! - [`rtp`]: the paced RTP sender for one stream, and the shared prepared audio.
//! - [`rtcp`]: Sender Reports, SDES, BYE for that stream; the far end's reports about it.
//! - [`g711`]: µ-law and A-law.
//! - [`digest`]: Digest authentication (MD5, SHA-256, SHA-512/256) for 401/407.
//!
//! # Driving a call
//!
//! ```
//! use std::time::{Duration, Instant};
//! use openum_call_engine::call::{Call, CallConfig, Output, SipEvent, SipStatus};
//!
//! let start = Instant::now(); // the runtime's clock, passed in
//! let mut call = Call::new(start, CallConfig::new(Duration::from_secs(5)));
//! call.handle_sip(start, SipEvent::Rejected(SipStatus::new(486, "Busy Here")));
//! while let Some(output) = call.poll_output() {
//!     if let Output::Status(status) = output {
//!         println!("{:?} {:?}", status.state, status.cause); // record it
//!     }
//! }
//! assert!(call.is_done());
//! ```

pub mod auth;
pub mod call;
pub mod digest;
pub mod g711;
pub mod offer_answer;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
pub mod sdp;

#[cfg(test)]
mod test_clock {
    use std::time::Instant;

    /// Any instant will do: the engine only adds durations to the one it is given.
    #[allow(
        clippy::disallowed_methods,
        reason = "tests need an arbitrary base instant"
    )]
    pub(crate) fn base_instant() -> Instant {
        Instant::now()
    }
}
