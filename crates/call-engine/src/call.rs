//! The call state machine: one outbound Play-on-Phone call, from "dialling" to "disconnected".
//!
//! Sans-I/O: SIP dialogue events, user requests and time are inputs; commands for the SIP and
//! media layers and status records are outputs.
//!
//! # The drive contract
//!
//! - Create the call when its INVITE is sent: [`Call::new`], or [`Call::with_auth`] when the
//!   gateway has credentials (the [`DigestAuth`] carries them, the Request-URI, and the random
//!   client nonces — the engine draws no randomness).
//! - After every input ([`Call::handle_sip`], [`Call::hang_up`], [`Call::handle_timeout`]), drain
//!   [`Call::poll_output`] until it returns `None`, then arm a timer for [`Call::poll_timeout`] and
//!   call [`Call::handle_timeout`] when it fires.
//! - Report every final response to the INVITE: a 401/407 carrying digest challenges as
//!   [`SipEvent::Challenged`] (never answer it yourself), any other non-2xx as
//!   [`SipEvent::Rejected`].
//! - Execute each [`Command`]. [`Command::Resend`] means: send the INVITE again (same Call-ID and
//!   offer, a new transaction) with the given [`Authorization`] header, forget the old
//!   transaction, and report the new one's events from then on. If the new INVITE cannot be sent,
//!   call [`Call::resend_failed`]: the call ends as the unanswered challenge would have ended it.
//! - Record each [`Output::Status`]. [`Output::ChallengeRefused`] says why a challenge was not
//!   answered (for the log); the status ending the call follows it.
//!
//! An answered challenge changes no status: the status record stays what it was (the 401/407 is
//! never shown), the ring timer keeps running, and a hang-up waits for a provisional response to
//! the new INVITE before it CANCELs.
//!
//! The mapping from the SIP dialogue to EWS states and causes (decisions §9, telephony §2) lives
//! here and nowhere else: see [`cause_of_final_response`]. Which challenges are answered: see
//! [`crate::auth`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use calls::{CallState, Cause};

use crate::auth::{Authenticator, Authorization, ChallengeRefusal, DigestAuth};
use crate::digest::Algorithm;
use crate::offer_answer::{Description, LocalSession, Negotiated, OfferError};
use crate::sdp::{self, MediaPlan};

/// A SIP status line.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SipStatus {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
}

impl SipStatus {
    /// A status line. Control characters in the far end's reason phrase (RFC 3261 allows none
    /// but HTAB) become U+FFFD: the phrase is shown in EWS responses, where XML 1.0 cannot carry
    /// them, and stored, where PostgreSQL refuses a NUL.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.contains(|c: char| c.is_control()) {
            reason = reason
                .chars()
                .map(|c| match c {
                    '\t' => ' ',
                    c if c.is_control() => char::REPLACEMENT_CHARACTER,
                    c => c,
                })
                .collect();
        }
        Self { code, reason }
    }
}

/// What EWS shows for the call.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Status {
    /// State.
    pub state: CallState,
    /// Failure cause.
    pub cause: Cause,
    /// The last final response, or the latest provisional one; `None` while nothing arrived.
    pub sip: Option<SipStatus>,
}

/// Events from the SIP dialogue (the SIP layer runs transactions and reports these).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum SipEvent {
    /// A provisional response (100, 180, 181, 183 …).
    Provisional(SipStatus),
    /// A 2xx to the INVITE, acknowledged; `sdp` is the answer body.
    Answered {
        /// The status line.
        status: SipStatus,
        /// The SDP answer, if any.
        sdp: Option<Vec<u8>>,
    },
    /// A final non-2xx response to the INVITE (the transaction ACKs it).
    Rejected(SipStatus),
    /// A final 401 or 407 to the INVITE carrying digest challenges (the transaction ACKs it).
    /// The engine answers it with [`Command::Resend`] or ends the call as for
    /// [`SipEvent::Rejected`] (see [`crate::auth`]).
    Challenged {
        /// The status line.
        status: SipStatus,
        /// Whether it is a proxy's challenge (407, `Proxy-Authenticate`) rather than the UAS's
        /// (401, `WWW-Authenticate`).
        proxy: bool,
        /// The `WWW-Authenticate` (401) or `Proxy-Authenticate` (407) header values.
        challenges: Vec<String>,
    },
    /// No response at all before Timer B (64·T1).
    NoResponse,
    /// The transport failed (connection refused, DNS, TLS …).
    TransportFailed,
    /// The far end sent BYE (answered 200 by the SIP layer).
    RemoteBye,
    /// A re-INVITE or UPDATE in the confirmed dialog (RFC 3264 §8): answer it with
    /// [`Command::Respond`] carrying the same `request` number (the SIP layer's, any value that
    /// tells its open requests apart).
    Offer {
        /// Which request.
        request: u64,
        /// UPDATE (RFC 3311) rather than re-INVITE.
        update: bool,
        /// The offer, if the request carried one.
        sdp: Option<Vec<u8>>,
    },
    /// The ACK to a re-INVITE answered 2xx; it carries the answer when that 2xx carried
    /// openum's offer (a re-INVITE without SDP, RFC 3261 §14.2).
    Ack {
        /// The re-INVITE it acknowledges.
        request: u64,
        /// The answer, if any.
        sdp: Option<Vec<u8>>,
    },
}

/// Commands for the SIP and media layers.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Command {
    /// CANCEL the pending INVITE (only ever emitted after a provisional response).
    Cancel,
    /// BYE the confirmed dialog.
    Bye,
    /// Start sending the message to the far end.
    StartMedia(MediaPlan),
    /// Stop sending media.
    StopMedia,
    /// Start RTCP for the stream just started (RFC 3550): on the RTP port when `mux` (the answer
    /// accepted `a=rtcp-mux`, RFC 5761), else on the next port. It ends with the media.
    StartRtcp {
        /// RTCP shares the RTP port.
        mux: bool,
    },
    /// Follow a renegotiated plan (address, codec, payload type, packet time) from the next
    /// packet on, keeping the place in the message.
    UpdateMedia(MediaPlan),
    /// Stop sending for now (the far end holds the call); the stream keeps its place.
    PauseMedia,
    /// Send again from where the paused stream stopped.
    ResumeMedia,
    /// Answer the in-dialog request [`SipEvent::Offer`] numbered `request` with `code`, carrying
    /// `sdp` (as `application/sdp`) if given.
    Respond {
        /// Which request.
        request: u64,
        /// Status code: 200, 488 (offer refused), 491 (an offer of openum's is pending).
        code: u16,
        /// The body.
        sdp: Option<String>,
    },
    /// Send the INVITE again (same Call-ID and offer, a new transaction) carrying
    /// `authorization`, answering the 401/407 just reported; report the new transaction's events
    /// from now on.
    Resend {
        /// The header answering the challenge.
        authorization: Authorization,
        /// The digest algorithm answered (for the log).
        algorithm: Algorithm,
    },
}

/// An output of the state machine.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Output {
    /// Do this.
    Command(Command),
    /// The call's EWS-visible status changed; record it.
    Status(Status),
    /// A 401/407 challenge is not answered, for this reason (log it); the [`Output::Status`]
    /// ending the call follows.
    ChallengeRefused(ChallengeRefusal),
    /// An offer in the dialog is refused (488), for this reason (log it); the session goes on
    /// as it was.
    OfferRefused(OfferError),
    /// The far end put the call on hold (`true`) or took it off hold (`false`) (log it).
    Hold(bool),
}

/// Per-call settings.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct CallConfig {
    /// How long to let the callee ring before giving up (CANCEL, cause NoAnswer).
    pub ring_timeout: Duration,
    /// How long the message takes to play.
    pub message_duration: Duration,
    /// Silence sent after the message before BYE.
    pub trailing_silence: Duration,
    /// How long to wait for the final response after CANCEL before giving up locally (64·T1).
    pub cancel_timeout: Duration,
    /// How long the far end may hold the call before openum hangs up.
    pub hold_timeout: Duration,
}

impl CallConfig {
    /// Defaults of decisions §10 for a message of `message_duration`.
    pub fn new(message_duration: Duration) -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            message_duration,
            trailing_silence: Duration::from_millis(500),
            cancel_timeout: Duration::from_secs(32),
            hold_timeout: Duration::from_secs(600),
        }
    }
}

/// Why the call is being ended while the INVITE is still pending.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum CancelReason {
    RingTimeout,
    User,
}

#[derive(Clone, Debug, Eq, PartialEq)]
enum State {
    /// INVITE pending; `ring_deadline` fires the ring timeout.
    Dialing {
        ring_deadline: Instant,
        alerted: bool,
        provisional_seen: bool,
        /// A hang-up waiting for the first provisional response (RFC 3261 §9.1).
        cancel_wanted: Option<CancelReason>,
    },
    /// CANCEL sent; waiting for the final response (487, or a 2xx that crossed it).
    Cancelling {
        reason: CancelReason,
        deadline: Instant,
    },
    /// Answered; the message is playing and BYE is due at `playback_end`, or the far end holds
    /// the call since `held_since` (the message is paused; `playback_end` moves on resume).
    Connected {
        playback_end: Instant,
        held_since: Option<Instant>,
    },
    /// Ended.
    Done,
}

/// One outbound call.
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    state: State,
    status: Status,
    outputs: VecDeque<Output>,
    authenticator: Authenticator,
    /// The status of the challenge answered by the latest [`Command::Resend`].
    last_answered: Option<SipStatus>,
    /// The final status already reported while the SIP side is still being cleaned up (a user
    /// hang-up before any provisional response): what EWS shows no longer changes.
    reported: Option<Status>,
    /// openum's side of the SDP session (answers and offers in the dialog); without it, offers
    /// in the dialog are refused.
    session: Option<LocalSession>,
    /// The media plan in force, once answered.
    plan: Option<MediaPlan>,
    /// The re-INVITE whose 2xx carries openum's offer, until its ACK brings the answer.
    offer_pending: Option<u64>,
}

impl Call {
    /// A call whose INVITE the SIP layer is sending at `now`, without credentials: a digest
    /// challenge ends it.
    pub fn new(now: Instant, config: CallConfig) -> Self {
        Self::with_auth(now, config, None)
    }

    /// A call whose INVITE the SIP layer is sending at `now`, answering digest challenges with
    /// `auth` when given (see [`crate::auth`]).
    pub fn with_auth(now: Instant, config: CallConfig, auth: Option<DigestAuth>) -> Self {
        let status = Status {
            state: CallState::Connecting,
            cause: Cause::None,
            sip: None,
        };
        let mut outputs = VecDeque::new();
        outputs.push_back(Output::Status(status.clone()));
        Self {
            config,
            state: State::Dialing {
                ring_deadline: now + config.ring_timeout,
                alerted: false,
                provisional_seen: false,
                cancel_wanted: None,
            },
            status,
            outputs,
            authenticator: Authenticator::new(auth),
            last_answered: None,
            reported: None,
            session: None,
            plan: None,
            offer_pending: None,
        }
    }

    /// Sets openum's side of the SDP session (the address and `o=` session id of the first
    /// offer), so that re-INVITEs and UPDATEs get RFC 3264 answers.
    #[must_use]
    pub fn with_session(mut self, session: LocalSession) -> Self {
        self.session = Some(session);
        self
    }

    /// Whether the far end holds the call (nothing is sent).
    pub fn is_held(&self) -> bool {
        matches!(
            self.state,
            State::Connected {
                held_since: Some(_),
                ..
            }
        )
    }

    /// The current status.
    pub fn status(&self) -> &Status {
        self.reported.as_ref().unwrap_or(&self.status)
    }

    /// Whether a hang-up is in progress or pending (no new INVITE should be sent for the call).
    pub fn is_hanging_up(&self) -> bool {
        matches!(
            self.state,
            State::Cancelling { .. }
                | State::Dialing {
                    cancel_wanted: Some(_),
                    ..
                }
                | State::Done
        )
    }

    /// Whether the call has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Call::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Dialing { ring_deadline, .. } => Some(*ring_deadline),
            State::Cancelling { deadline, .. } => Some(*deadline),
            State::Connected {
                held_since: Some(since),
                ..
            } => Some(*since + self.config.hold_timeout),
            State::Connected { playback_end, .. } => Some(*playback_end),
            State::Done => None,
        }
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state.clone() {
            State::Dialing { ring_deadline, .. } if now >= ring_deadline => {
                self.hang_up_pending(now, CancelReason::RingTimeout);
            }
            State::Cancelling { reason, deadline } if now >= deadline => {
                // No final response to our CANCEL in 64·T1: the transaction is gone.
                self.finish(Self::cancel_cause(reason), None);
            }
            State::Connected {
                held_since: Some(since),
                ..
            } if now >= since + self.config.hold_timeout => {
                // Held for longer than anyone waits for a voice-mail message: end it.
                self.command(Command::StopMedia);
                self.command(Command::Bye);
                self.finish(Cause::None, None);
            }
            State::Connected {
                playback_end,
                held_since: None,
            } if now >= playback_end => {
                self.command(Command::StopMedia);
                self.command(Command::Bye);
                self.finish(Cause::None, None);
            }
            _ => {}
        }
    }

    /// The INVITE asked for by the latest [`Command::Resend`] could not be sent: the call ends as
    /// that challenge would have ended it unanswered (a [`SipEvent::Rejected`] with its status).
    /// Call it while executing the command, before any event of a new transaction.
    pub fn resend_failed(&mut self, now: Instant) {
        if let Some(status) = self.last_answered.take() {
            self.handle_sip(now, SipEvent::Rejected(status));
        }
    }

    /// The user asked to hang up (DisconnectPhoneCall, or the node is shutting down).
    pub fn hang_up(&mut self, now: Instant) {
        match self.state {
            State::Dialing { .. } => self.hang_up_pending(now, CancelReason::User),
            State::Cancelling { ref mut reason, .. } => *reason = CancelReason::User,
            State::Connected { .. } => {
                self.command(Command::StopMedia);
                self.command(Command::Bye);
                self.finish(Cause::None, None);
            }
            State::Done => {}
        }
    }

    /// A dialogue event arrived.
    pub fn handle_sip(&mut self, now: Instant, event: SipEvent) {
        match (self.state.clone(), event) {
            (
                State::Dialing {
                    ring_deadline,
                    alerted,
                    cancel_wanted,
                    ..
                },
                SipEvent::Provisional(status),
            ) => {
                let ringing = status.code != 100;
                self.status.sip = Some(status);
                if ringing {
                    self.status.state = CallState::Alerted;
                }
                match cancel_wanted {
                    Some(reason) => self.send_cancel(now, reason),
                    None => {
                        self.state = State::Dialing {
                            ring_deadline,
                            alerted: alerted || ringing,
                            provisional_seen: true,
                            cancel_wanted: None,
                        };
                    }
                }
                self.emit_status();
            }
            (State::Cancelling { .. }, SipEvent::Provisional(_)) => {}
            (
                State::Dialing {
                    cancel_wanted: None,
                    ..
                },
                SipEvent::Answered { status, sdp },
            ) => {
                self.status.sip = Some(status);
                let plan = sdp.as_deref().map(sdp::parse_answer);
                match plan {
                    Some(Ok(plan)) => {
                        // An answer that puts the call on hold from the start (sendonly or
                        // inactive on the far side) is followed too.
                        let negotiated = sdp
                            .as_deref()
                            .and_then(|s| Description::parse(s).ok())
                            .and_then(|d| d.as_answer());
                        let sends = negotiated.is_none_or(|n| n.we_send());
                        let mux = negotiated.is_some_and(|n| n.rtcp_mux);
                        self.status.state = CallState::Connected;
                        self.state = State::Connected {
                            playback_end: now
                                + self.config.message_duration
                                + self.config.trailing_silence,
                            held_since: None,
                        };
                        self.plan = Some(plan);
                        self.command(Command::StartMedia(plan));
                        self.command(Command::StartRtcp { mux });
                        if !sends {
                            self.set_held(now, true);
                        }
                        self.emit_status();
                    }
                    // No answer SDP, port 0, or no codec in common: nothing can be played.
                    Some(Err(_)) | None => {
                        self.command(Command::Bye);
                        self.finish(Cause::Other, None);
                    }
                }
            }
            // A 2xx that crossed our CANCEL (or arrived while a CANCEL waited for a
            // provisional): the SIP layer ACKs it; we end it with BYE at once.
            (
                State::Dialing {
                    cancel_wanted: Some(reason),
                    ..
                }
                | State::Cancelling { reason, .. },
                SipEvent::Answered { status, .. },
            ) => {
                self.command(Command::Bye);
                self.finish(Self::cancel_cause(reason), Some(status));
            }
            (State::Dialing { alerted, .. }, SipEvent::Rejected(status)) => {
                let cause = cause_of_final_response(status.code, alerted);
                self.finish(cause, Some(status));
            }
            (State::Cancelling { reason, .. }, SipEvent::Rejected(status)) => {
                self.finish(Self::cancel_cause(reason), Some(status));
            }
            (
                State::Dialing {
                    ring_deadline,
                    alerted,
                    cancel_wanted: None,
                    ..
                },
                SipEvent::Challenged {
                    status,
                    proxy,
                    challenges,
                },
            ) => match self.authenticator.answer(proxy, &challenges) {
                Ok(answer) => {
                    // A new INVITE is a new transaction: a CANCEL must wait for a provisional
                    // response to it (RFC 3261 §9.1). Nothing EWS shows changes.
                    self.state = State::Dialing {
                        ring_deadline,
                        alerted,
                        provisional_seen: false,
                        cancel_wanted: None,
                    };
                    self.command(Command::Resend {
                        authorization: answer.authorization,
                        algorithm: answer.algorithm,
                    });
                    self.last_answered = Some(status);
                }
                Err(refusal) => self.refuse_challenge(now, refusal, status),
            },
            (
                State::Dialing { .. } | State::Cancelling { .. },
                SipEvent::Challenged { status, .. },
            ) => {
                self.refuse_challenge(now, ChallengeRefusal::HangingUp, status);
            }
            (
                State::Dialing {
                    cancel_wanted: Some(CancelReason::User),
                    ..
                },
                SipEvent::NoResponse,
            ) => {
                // The user hung up before anything answered, and nothing ever did.
                self.finish(Cause::None, None);
            }
            // Nothing answered before Timer B: Unavailable, with no SIP status, since no peer
            // sent one (a local "408" would read as the gateway's answer).
            (State::Dialing { .. }, SipEvent::NoResponse) => {
                self.finish(Cause::Unavailable, None);
            }
            (State::Cancelling { reason, .. }, SipEvent::NoResponse) => {
                self.finish(Self::cancel_cause(reason), None);
            }
            (State::Dialing { .. } | State::Cancelling { .. }, SipEvent::TransportFailed) => {
                self.finish(Cause::Other, None);
            }
            (State::Connected { .. }, SipEvent::RemoteBye) => {
                self.command(Command::StopMedia);
                self.finish(Cause::None, None);
            }
            (State::Connected { .. }, SipEvent::TransportFailed) => {
                self.command(Command::StopMedia);
                self.finish(Cause::Other, None);
            }
            // The dialog ended without us (no ACK to a re-INVITE's 2xx: the SIP layer BYEs).
            (State::Connected { .. }, SipEvent::NoResponse) => {
                self.command(Command::StopMedia);
                self.finish(Cause::Other, None);
            }
            (
                State::Connected { .. },
                SipEvent::Offer {
                    request,
                    update,
                    sdp,
                },
            ) => self.offer_in_dialog(now, request, update, sdp),
            (State::Connected { .. }, SipEvent::Ack { request, sdp }) => {
                self.ack_in_dialog(now, request, sdp);
            }
            // An offer before the dialog is confirmed, or after the call ended: the INVITE's own
            // offer/answer is still open, or there is no session left to change.
            (State::Dialing { .. } | State::Cancelling { .. }, SipEvent::Offer { request, .. }) => {
                self.respond(request, 491, None);
            }
            (State::Done, SipEvent::Offer { request, .. }) => self.respond(request, 481, None),
            // Anything else (a late provisional, a retransmitted 2xx, a BYE for a call that
            // already ended) changes nothing; the SIP layer answers it per the RFC.
            _ => {}
        }
    }

    /// A re-INVITE or UPDATE in the confirmed dialog (RFC 3264 §8, RFC 6337).
    fn offer_in_dialog(&mut self, now: Instant, request: u64, update: bool, sdp: Option<Vec<u8>>) {
        if self.offer_pending.is_some() {
            // Our offer (in a re-INVITE's 2xx) awaits its answer: RFC 3311 §5.2, RFC 6337 §3.2.
            self.respond(request, 491, None);
            return;
        }
        let Some(session) = self.session.as_mut() else {
            self.respond(request, 488, None);
            return;
        };
        match sdp {
            // An UPDATE without SDP only refreshes the dialog (RFC 4028 session timers).
            None if update => self.respond(request, 200, None),
            None => {
                let offer = session.offer();
                self.offer_pending = Some(request);
                self.respond(request, 200, Some(offer));
            }
            Some(offer) => match session.answer(&offer) {
                Ok((answer, negotiated)) => {
                    // The media change first: it is in force before the far end reads the
                    // answer (a hold sends nothing once the 200 is out).
                    self.follow(now, negotiated);
                    self.respond(request, 200, Some(answer));
                }
                Err(refusal) => {
                    self.outputs.push_back(Output::OfferRefused(refusal));
                    self.respond(request, 488, None);
                }
            },
        }
    }

    /// The ACK to a re-INVITE: the answer to our offer if one is pending.
    fn ack_in_dialog(&mut self, now: Instant, request: u64, sdp: Option<Vec<u8>>) {
        if self.offer_pending != Some(request) {
            return;
        }
        self.offer_pending = None;
        let negotiated = sdp
            .as_deref()
            .and_then(|s| Description::parse(s).ok())
            .and_then(|d| d.as_answer());
        match negotiated {
            Some(negotiated) => self.follow(now, negotiated),
            // No usable answer where one is required (RFC 3261 §14.2): the session cannot go
            // on (RFC 3261 §13.3.1.4 has the UAS end it with BYE).
            None => {
                self.outputs
                    .push_back(Output::OfferRefused(OfferError::NoUsableAudio));
                self.command(Command::StopMedia);
                self.command(Command::Bye);
                self.finish(Cause::Other, None);
            }
        }
    }

    /// Follows a new negotiated session: where and how to send, and whether to.
    fn follow(&mut self, now: Instant, negotiated: Negotiated) {
        if negotiated.we_send() && self.plan != Some(negotiated.plan) {
            self.plan = Some(negotiated.plan);
            self.command(Command::UpdateMedia(negotiated.plan));
        }
        self.set_held(now, !negotiated.we_send());
    }

    /// Pauses or resumes the message; the end of the message moves by the time it was held.
    fn set_held(&mut self, now: Instant, hold: bool) {
        let State::Connected {
            playback_end,
            held_since,
        } = self.state
        else {
            return;
        };
        match (held_since, hold) {
            (None, true) => {
                self.command(Command::PauseMedia);
                self.outputs.push_back(Output::Hold(true));
                self.state = State::Connected {
                    playback_end,
                    held_since: Some(now),
                };
            }
            (Some(since), false) => {
                self.command(Command::ResumeMedia);
                self.outputs.push_back(Output::Hold(false));
                self.state = State::Connected {
                    playback_end: playback_end + now.saturating_duration_since(since),
                    held_since: None,
                };
            }
            _ => {}
        }
    }

    fn respond(&mut self, request: u64, code: u16, sdp: Option<String>) {
        self.command(Command::Respond { request, code, sdp });
    }

    /// A challenge that is not answered is a rejection with its status.
    fn refuse_challenge(&mut self, now: Instant, refusal: ChallengeRefusal, status: SipStatus) {
        self.outputs.push_back(Output::ChallengeRefused(refusal));
        self.handle_sip(now, SipEvent::Rejected(status));
    }

    fn hang_up_pending(&mut self, now: Instant, reason: CancelReason) {
        if let State::Dialing {
            ring_deadline,
            alerted,
            provisional_seen,
            ..
        } = self.state
        {
            if provisional_seen {
                self.send_cancel(now, reason);
            } else {
                if reason == CancelReason::User {
                    // The user asked for the end: EWS shows it at once, whatever the SIP side
                    // still has to do (CANCEL after the first provisional, ACK+BYE after a late
                    // 2xx) — a call the client hung up never comes back to life.
                    self.status.state = CallState::Disconnected;
                    self.status.cause = Cause::None;
                    self.emit_status();
                    self.reported = Some(self.status.clone());
                }
                // RFC 3261 §9.1: a CANCEL may only follow a provisional response.
                self.state = State::Dialing {
                    ring_deadline,
                    alerted,
                    provisional_seen,
                    cancel_wanted: Some(reason),
                };
                // If nothing ever arrives, Timer B ends the INVITE; keep the ring timer from
                // firing again by pushing it out to the cancel timeout.
                if let State::Dialing {
                    ref mut ring_deadline,
                    ..
                } = self.state
                {
                    *ring_deadline = now + self.config.cancel_timeout;
                }
            }
        }
    }

    fn send_cancel(&mut self, now: Instant, reason: CancelReason) {
        self.command(Command::Cancel);
        self.state = State::Cancelling {
            reason,
            deadline: now + self.config.cancel_timeout,
        };
    }

    fn cancel_cause(reason: CancelReason) -> Cause {
        match reason {
            CancelReason::RingTimeout => Cause::NoAnswer,
            CancelReason::User => Cause::None,
        }
    }

    fn finish(&mut self, cause: Cause, sip: Option<SipStatus>) {
        if sip.is_some() {
            self.status.sip = sip;
        }
        self.status.state = CallState::Disconnected;
        self.status.cause = cause;
        self.state = State::Done;
        self.emit_status();
    }

    fn command(&mut self, command: Command) {
        self.outputs.push_back(Output::Command(command));
    }

    fn emit_status(&mut self) {
        if self.reported.is_none() {
            self.outputs.push_back(Output::Status(self.status.clone()));
        }
    }
}

/// The failure cause of a final non-2xx response to the INVITE (decisions §9, telephony §2).
pub fn cause_of_final_response(code: u16, alerted: bool) -> Cause {
    match code {
        486 | 600 => Cause::UserBusy,
        487 => Cause::NoAnswer,
        480 | 408 if alerted => Cause::NoAnswer,
        480 | 408 => Cause::Unavailable,
        404 | 410 | 484 | 485 | 604 => Cause::Unavailable,
        500..=599 => Cause::Unavailable,
        _ => Cause::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_phrase_loses_its_control_characters_and_keeps_the_rest() {
        assert_eq!(SipStatus::new(486, "Busy Here").reason, "Busy Here");
        assert_eq!(
            SipStatus::new(486, "Busy\0Here\tnow\u{1b}[0m é").reason,
            "Busy\u{fffd}Here now\u{fffd}[0m é"
        );
    }
    use crate::auth::{Credentials, MAX_ANSWERED_CHALLENGES};
    use crate::digest::DigestError;

    use crate::test_clock::base_instant;

    const SDP_ANSWER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    struct Harness {
        call: Call,
        now: Instant,
        log: Vec<Output>,
    }

    impl Harness {
        fn new() -> Self {
            Self::with_auth(None)
        }
        /// A call with [`test_auth`] credentials.
        fn authenticated() -> Self {
            Self::with_auth(Some(test_auth()))
        }
        fn with_auth(auth: Option<DigestAuth>) -> Self {
            let now = base_instant();
            let mut h = Self {
                call: Call::with_auth(now, CallConfig::new(Duration::from_secs(3)), auth),
                now,
                log: Vec::new(),
            };
            h.drain();
            h
        }
        fn hang_up(&mut self) {
            self.call.hang_up(self.now);
            self.drain();
        }
        fn drain(&mut self) {
            while let Some(o) = self.call.poll_output() {
                self.log.push(o);
            }
        }
        fn sip(&mut self, e: SipEvent) {
            self.call.handle_sip(self.now, e);
            self.drain();
        }
        fn advance(&mut self, d: Duration) {
            let target = self.now + d;
            while let Some(t) = self.call.poll_timeout().filter(|t| *t <= target) {
                self.now = t;
                self.call.handle_timeout(t);
                self.drain();
            }
            self.now = target;
        }
        fn commands(&self) -> Vec<&Command> {
            self.log
                .iter()
                .filter_map(|o| match o {
                    Output::Command(c) => Some(c),
                    _ => None,
                })
                .collect()
        }
        fn refusals(&self) -> Vec<&ChallengeRefusal> {
            self.log
                .iter()
                .filter_map(|o| match o {
                    Output::ChallengeRefused(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
        fn statuses(&self) -> usize {
            self.log
                .iter()
                .filter(|o| matches!(o, Output::Status(_)))
                .count()
        }
        /// The call ended as Disconnected with `cause`, showing `code`.
        fn assert_ended(&self, cause: Cause, code: u16) {
            let s = self.call.status();
            assert_eq!((s.state, s.cause), (CallState::Disconnected, cause));
            assert_eq!(s.sip.as_ref().map(|sip| sip.code), Some(code));
            assert!(self.call.is_done());
            assert_eq!(self.log.last(), Some(&Output::Status(s.clone())));
        }

        /// At most one Disconnected status, and exactly one once the call is done.
        fn assert_ended_at_most_once(&self) {
            let ended = self
                .log
                .iter()
                .filter(|o| matches!(o, Output::Status(s) if s.state == CallState::Disconnected))
                .count();
            assert!(ended <= 1, "ended {ended} times");
            // A user hang-up before any provisional is reported at once, while the SIP side
            // still finishes: reported-but-not-done is allowed, done-but-not-reported is not.
            if self.call.is_done() {
                assert_eq!(ended, 1, "done without a final status");
            }
        }

        /// The second command is the CANCEL; its 487 ends the call with `cause`.
        fn assert_cancelled_then_terminated(&mut self, cause: Cause) {
            assert_eq!(self.commands()[1..], [&Command::Cancel]);
            self.sip(request_terminated());
            self.assert_ended(cause, 487);
        }

        /// Ended with `cause` and exactly `status` (code and reason) shown.
        fn assert_ended_with(&self, cause: Cause, status: SipStatus) {
            self.assert_ended(cause, status.code);
            assert_eq!(self.call.status().sip, Some(status));
        }

        fn states(&self) -> Vec<CallState> {
            self.log
                .iter()
                .filter_map(|o| match o {
                    Output::Status(s) => Some(s.state),
                    _ => None,
                })
                .collect()
        }
    }

    fn ringing() -> SipEvent {
        SipEvent::Provisional(SipStatus::new(180, "Ringing"))
    }

    fn trying() -> SipEvent {
        SipEvent::Provisional(SipStatus::new(100, "Trying"))
    }

    fn request_terminated() -> SipEvent {
        SipEvent::Rejected(SipStatus::new(487, "Request Terminated"))
    }

    const USERNAME: &str = "Mufasa";
    const PASSWORD: &str = "Circle of Life";
    const REQUEST_URI: &str = "sip:0612345678@gw.example.org";
    const CNONCES: [u128; MAX_ANSWERED_CHALLENGES] =
        [0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, 42];

    /// The RFC 7616 §3.9.1 example challenge (MD5, qop "auth, auth-int", opaque).
    const RFC7616_CHALLENGE: &str = r#"Digest realm="http-auth@example.org", qop="auth, auth-int", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#;

    /// A proxy's SHA-256 challenge (RFC 8760 token).
    const SHA256_CHALLENGE: &str = r#"Digest realm="pbx.example.org", nonce="b7c9036dbf357f7683f054aea940e5e3", algorithm=SHA-256, qop="auth""#;

    fn test_auth() -> DigestAuth {
        DigestAuth::new(Credentials::new(USERNAME, PASSWORD), REQUEST_URI, CNONCES)
    }

    fn challenge_401(values: &[&str]) -> SipEvent {
        SipEvent::Challenged {
            status: SipStatus::new(401, "Unauthorized"),
            proxy: false,
            challenges: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn challenge_407(values: &[&str]) -> SipEvent {
        SipEvent::Challenged {
            status: SipStatus::new(407, "Proxy Authentication Required"),
            proxy: true,
            challenges: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn answered() -> SipEvent {
        SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(SDP_ANSWER.to_vec()),
        }
    }

    #[test]
    fn every_row_of_the_final_response_mapping() {
        let rows: &[(u16, bool, Cause)] = &[
            (486, false, Cause::UserBusy),
            (600, true, Cause::UserBusy),
            (487, true, Cause::NoAnswer),
            (480, true, Cause::NoAnswer),
            (408, true, Cause::NoAnswer),
            (480, false, Cause::Unavailable),
            (408, false, Cause::Unavailable),
            (404, false, Cause::Unavailable),
            (410, false, Cause::Unavailable),
            (484, false, Cause::Unavailable),
            (485, false, Cause::Unavailable),
            (604, false, Cause::Unavailable),
            (500, false, Cause::Unavailable),
            (502, true, Cause::Unavailable),
            (503, false, Cause::Unavailable),
            (603, true, Cause::Other),
            (401, false, Cause::Other),
            (407, false, Cause::Other),
            (403, false, Cause::Other),
            (488, true, Cause::Other),
            (415, false, Cause::Other),
            (302, false, Cause::Other),
        ];
        for &(code, alerted, cause) in rows {
            let mut h = Harness::new();
            if alerted {
                h.sip(ringing());
            }
            h.sip(SipEvent::Rejected(SipStatus::new(code, "x")));
            let s = h.call.status().clone();
            assert_eq!(
                (s.state, s.cause),
                (CallState::Disconnected, cause),
                "{code}"
            );
            assert_eq!(s.sip.unwrap().code, code);
            assert!(
                h.commands().is_empty(),
                "{code}: no BYE/CANCEL for a rejected INVITE"
            );
            assert!(h.call.is_done());
        }
    }

    #[test]
    fn answered_call_plays_then_byes_after_the_trailing_silence() {
        let mut h = Harness::new();
        h.sip(trying());
        assert_eq!(h.call.status().state, CallState::Connecting);
        assert_eq!(h.call.status().sip.as_ref().unwrap().code, 100);
        h.sip(ringing());
        h.sip(answered());
        assert_eq!(h.call.status().state, CallState::Connected);
        assert!(matches!(
            h.commands()[..],
            [Command::StartMedia(_), Command::StartRtcp { mux: false }]
        ));
        h.advance(Duration::from_millis(3499));
        assert!(!h.call.is_done());
        h.advance(Duration::from_millis(1));
        assert_eq!(h.commands()[2..], [&Command::StopMedia, &Command::Bye]);
        let s = h.call.status();
        assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::None));
        assert_eq!(s.sip, Some(SipStatus::new(200, "OK")));
        assert_eq!(
            h.states(),
            [
                CallState::Connecting,
                CallState::Connecting,
                CallState::Alerted,
                CallState::Connected,
                CallState::Disconnected
            ]
        );
    }

    #[test]
    fn ring_timeout_cancels_and_the_487_means_no_answer() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.advance(Duration::from_secs(45));
        assert_eq!(h.commands(), [&Command::Cancel]);
        assert_eq!(h.call.status().state, CallState::Alerted);
        h.sip(request_terminated());
        let s = h.call.status();
        assert_eq!(
            (s.state, s.cause),
            (CallState::Disconnected, Cause::NoAnswer)
        );
        assert_eq!(s.sip.as_ref().unwrap().code, 487);
    }

    #[test]
    fn cancel_waits_for_a_provisional_response() {
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        assert!(h.commands().is_empty(), "no CANCEL before any provisional");
        h.sip(trying());
        assert_eq!(h.commands(), [&Command::Cancel]);
        h.sip(request_terminated());
        let s = h.call.status();
        assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::None));
    }

    #[test]
    fn a_2xx_crossing_the_cancel_is_ended_with_bye() {
        for user in [true, false] {
            let mut h = Harness::new();
            h.sip(ringing());
            if user {
                h.call.hang_up(h.now);
                h.drain();
            } else {
                h.advance(Duration::from_secs(45));
            }
            h.sip(answered());
            assert_eq!(h.commands(), [&Command::Cancel, &Command::Bye]);
            let s = h.call.status();
            let cause = if user { Cause::None } else { Cause::NoAnswer };
            assert_eq!((s.state, s.cause), (CallState::Disconnected, cause));
            // A retransmitted 2xx afterwards changes nothing.
            h.sip(answered());
            assert_eq!(h.commands().len(), 2);
        }
    }

    #[test]
    fn hang_up_while_connected_sends_bye() {
        let mut h = Harness::new();
        h.sip(answered());
        h.call.hang_up(h.now);
        h.drain();
        assert_eq!(h.commands()[2..], [&Command::StopMedia, &Command::Bye]);
        assert_eq!(h.call.status().cause, Cause::None);
        // Idempotent.
        h.call.hang_up(h.now);
        h.drain();
        assert_eq!(h.commands().len(), 4);
    }

    #[test]
    fn far_end_bye_mid_playback_ends_the_call_normally() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.sip(answered());
        h.advance(Duration::from_secs(1));
        h.sip(SipEvent::RemoteBye);
        assert_eq!(h.commands()[2..], [&Command::StopMedia]);
        let s = h.call.status();
        assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::None));
        assert_eq!(h.call.poll_timeout(), None);
    }

    #[test]
    fn no_response_at_all_is_unavailable_with_no_sip_status() {
        let mut h = Harness::new();
        h.sip(SipEvent::NoResponse);
        let s = h.call.status();
        assert_eq!(
            (s.state, s.cause),
            (CallState::Disconnected, Cause::Unavailable)
        );
        assert_eq!(s.sip, None, "no peer sent a status");
    }

    #[test]
    fn unusable_answer_sdp_ends_with_other() {
        for sdp in [
            None,
            Some(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n".to_vec()),
            Some(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 7000 RTP/AVP 18\r\n".to_vec()),
        ] {
            let mut h = Harness::new();
            h.sip(SipEvent::Answered {
                status: SipStatus::new(200, "OK"),
                sdp,
            });
            assert_eq!(h.commands(), [&Command::Bye]);
            let s = h.call.status();
            assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::Other));
        }
    }

    #[test]
    fn transport_failure_is_other() {
        let mut h = Harness::new();
        h.sip(SipEvent::TransportFailed);
        assert_eq!(h.call.status().cause, Cause::Other);
        assert_eq!(h.call.status().sip, None);
    }

    #[test]
    fn early_media_then_answer() {
        let mut h = Harness::new();
        h.sip(SipEvent::Provisional(SipStatus::new(
            183,
            "Session Progress",
        )));
        assert_eq!(h.call.status().state, CallState::Alerted);
        h.sip(answered());
        assert_eq!(h.call.status().state, CallState::Connected);
    }

    #[test]
    fn cancel_without_final_response_gives_up_after_the_cancel_timeout() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.advance(Duration::from_secs(45));
        h.advance(Duration::from_secs(32));
        let s = h.call.status();
        assert_eq!(
            (s.state, s.cause),
            (CallState::Disconnected, Cause::NoAnswer)
        );
    }

    #[test]
    fn a_hang_up_before_any_response_is_disconnected_at_once_and_stays_so() {
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        // Reported at once, although no CANCEL may be sent yet (RFC 3261 §9.1).
        assert!(h.commands().is_empty());
        let reported = h.call.status().clone();
        assert_eq!(
            (reported.state, reported.cause, reported.sip.clone()),
            (CallState::Disconnected, Cause::None, None)
        );
        assert_eq!(h.log.last(), Some(&Output::Status(reported.clone())));
        assert!(!h.call.is_done(), "the SIP side is still to be finished");
        // A late 180: the CANCEL goes out; nothing EWS sees changes.
        h.sip(ringing());
        assert_eq!(h.commands(), [&Command::Cancel]);
        h.sip(request_terminated());
        assert!(h.call.is_done());
        assert_eq!(h.call.status(), &reported);
        let statuses = h
            .log
            .iter()
            .filter(|o| matches!(o, Output::Status(_)))
            .count();
        assert_eq!(
            statuses, 2,
            "Connecting, then the one Disconnected: {:?}",
            h.log
        );

        // A late 2xx instead: ACKed by the SIP layer and BYEd at once, still Disconnected/None.
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        h.sip(answered());
        assert_eq!(h.commands(), [&Command::Bye]);
        assert!(h.call.is_done());
        assert_eq!(h.call.status().state, CallState::Disconnected);
        assert_eq!(h.call.status().cause, Cause::None);
    }

    #[test]
    fn hang_up_before_any_response_then_silence_ends_after_timer_b() {
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        h.sip(SipEvent::NoResponse);
        let s = h.call.status();
        assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::None));
        assert!(h.commands().is_empty());
    }

    /// Many seeds of shuffled, duplicated late events: the call always ends exactly once, never
    /// emits a CANCEL before a provisional, never BYEs a call that was not answered.
    #[test]
    fn random_event_orders_keep_the_invariants() {
        let events = [
            trying(),
            ringing(),
            answered(),
            SipEvent::Rejected(SipStatus::new(486, "Busy Here")),
            request_terminated(),
            SipEvent::NoResponse,
            SipEvent::RemoteBye,
            SipEvent::TransportFailed,
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut h = Harness::new();
            let mut provisional = false;
            let mut answered_seen = false;
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                match seed % 11 {
                    8 => {
                        h.call.hang_up(h.now);
                        h.drain();
                    }
                    9 => h.advance(Duration::from_secs(20)),
                    10 => h.advance(Duration::from_millis(700)),
                    i => {
                        let e = events[usize::try_from(i).unwrap()].clone();
                        if !h.call.is_done() {
                            provisional |= matches!(e, SipEvent::Provisional(_));
                            answered_seen |= matches!(e, SipEvent::Answered { .. });
                        }
                        h.sip(e);
                    }
                }
                for c in h.commands() {
                    if *c == Command::Cancel {
                        assert!(provisional, "CANCEL before a provisional response");
                    }
                    if *c == Command::Bye {
                        assert!(answered_seen, "BYE without a 2xx");
                    }
                }
            }
            h.assert_ended_at_most_once();
            assert!(h.commands().iter().filter(|c| **c == &Command::Bye).count() <= 1);
        }
    }

    // The expected digest values below were computed independently of this crate, from the RFC
    // 7616 §3.1 formulas, by
    //
    //   python3 -c 'import hashlib as h; d=lambda s: h.new(ALG, s.encode()).hexdigest(); \
    //     print(d(f"{d(USER+":"+REALM+":"+PASS)}:{NONCE}:00000001:{CNONCE}:auth:{d("INVITE:"+URI)}"))'
    //
    // the same expression that gives the RFC 7616 §3.9.1 MD5 response 8ca523f5… for its GET.

    #[test]
    fn a_401_with_credentials_resends_the_invite_with_a_digest() {
        let mut h = Harness::authenticated();
        h.sip(trying());
        let before = h.call.status().clone();
        let statuses = h.statuses();
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(
            h.commands(),
            [&Command::Resend {
                authorization: Authorization::Www(
                    "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
                     nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
                     uri=\"sip:0612345678@gw.example.org\", \
                     response=\"165e3b2d18dfacc958475ba2d6167d95\", algorithm=MD5, qop=auth, \
                     nc=00000001, cnonce=\"0123456789abcdef0123456789abcdef\", \
                     opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
                        .into()
                ),
                algorithm: Algorithm::Md5,
            }]
        );
        // The engine shows nothing of an answered challenge: same status, no new record.
        assert_eq!(h.call.status(), &before);
        assert_eq!(h.statuses(), statuses);
        assert!(h.refusals().is_empty());
        assert!(!h.call.is_done() && !h.call.is_hanging_up());
        // The new INVITE's dialogue then plays out as usual.
        h.sip(ringing());
        h.sip(answered());
        assert_eq!(h.call.status().state, CallState::Connected);
        assert!(matches!(
            h.commands()[..],
            [_, Command::StartMedia(_), Command::StartRtcp { .. }]
        ));
    }

    #[test]
    fn a_407_is_answered_with_proxy_authorization() {
        let mut h = Harness::authenticated();
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        let [Command::Resend {
            authorization,
            algorithm,
        }] = &h.commands()[..]
        else {
            panic!("expected one resend: {:?}", h.commands());
        };
        assert_eq!(*algorithm, Algorithm::Sha256);
        assert!(authorization.is_proxy());
        assert_eq!(authorization.header_name(), "Proxy-Authorization");
        let value = authorization.value();
        assert!(
            value.contains(
                r#"response="53682ed586e067322773ebb89b2e6f20e96621250f1d88f6b6f8919ae6ed4a4a""#
            ),
            "{value}"
        );
        assert!(value.contains("algorithm=SHA-256"), "{value}");
        assert_eq!(h.call.status().sip, None);
        assert_eq!(h.call.status().state, CallState::Connecting);
    }

    #[test]
    fn a_proxy_and_a_uas_challenge_are_both_answered_each_with_its_own_cnonce() {
        let mut h = Harness::authenticated();
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        let resends: Vec<&Authorization> = h
            .commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::Resend { authorization, .. } => Some(authorization),
                _ => None,
            })
            .collect();
        assert_eq!(resends.len(), 2);
        assert!(resends[0]
            .value()
            .contains(r#"cnonce="0123456789abcdef0123456789abcdef""#));
        // The second answer uses the second cnonce, 42, zero-padded to 32 hex digits.
        assert!(resends[1]
            .value()
            .contains(r#"cnonce="0000000000000000000000000000002a""#));
        assert!(resends[1].value().contains(
            r#"response="f68e9bc54628322d499f40b71c88e23093c42a792b12ae4138a15a246ea60c25""#
        ));
        assert!(!h.call.is_done());
    }

    #[test]
    fn the_strongest_offered_challenge_is_answered() {
        let mut h = Harness::authenticated();
        h.sip(challenge_407(&[
            r#"Digest realm="r", nonce="n", algorithm=MD5"#,
            r#"Digest realm="r", nonce="n", algorithm=SHA-1"#,
            SHA256_CHALLENGE,
        ]));
        assert!(matches!(
            h.commands()[..],
            [Command::Resend {
                algorithm: Algorithm::Sha256,
                ..
            }]
        ));
    }

    #[test]
    fn a_third_challenge_ends_the_call_as_other_with_its_code() {
        let mut h = Harness::authenticated();
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(h.commands().len(), 2);
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(h.commands().len(), 2, "no third INVITE");
        assert_eq!(h.refusals(), [&ChallengeRefusal::CredentialsRefused]);
        h.assert_ended_with(Cause::Other, SipStatus::new(401, "Unauthorized"));
    }

    #[test]
    fn a_challenge_without_credentials_ends_the_call_as_other() {
        for event in [
            challenge_401(&[RFC7616_CHALLENGE]),
            challenge_407(&[SHA256_CHALLENGE]),
        ] {
            let mut h = Harness::new();
            let code = match &event {
                SipEvent::Challenged { status, .. } => status.code,
                _ => unreachable!(),
            };
            h.sip(event);
            assert!(h.commands().is_empty());
            assert_eq!(h.refusals(), [&ChallengeRefusal::NoCredentials]);
            h.assert_ended(Cause::Other, code);
        }
    }

    #[test]
    fn a_challenge_while_hanging_up_is_not_answered() {
        // CANCEL sent (a provisional came first): the challenge ends the call as a 487 would.
        let mut h = Harness::authenticated();
        h.sip(trying());
        h.hang_up();
        assert_eq!(h.commands(), [&Command::Cancel]);
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        assert_eq!(h.commands(), [&Command::Cancel], "no new INVITE");
        assert_eq!(h.refusals(), [&ChallengeRefusal::HangingUp]);
        h.assert_ended(Cause::None, 407);

        // Hang-up still waiting for a provisional: already reported Disconnected/None to EWS;
        // the challenge only ends the SIP side.
        let mut h = Harness::authenticated();
        h.hang_up();
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert!(h.commands().is_empty());
        assert_eq!(h.refusals(), [&ChallengeRefusal::HangingUp]);
        let s = h.call.status();
        assert_eq!(
            (s.state, s.cause, s.sip.as_ref()),
            (CallState::Disconnected, Cause::None, None)
        );
        assert!(h.call.is_done());

        // Ring timeout's CANCEL pending: the cause stays NoAnswer.
        let mut h = Harness::authenticated();
        h.sip(ringing());
        h.advance(Duration::from_secs(45));
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(h.commands(), [&Command::Cancel]);
        assert_eq!(h.refusals(), [&ChallengeRefusal::HangingUp]);
        h.assert_ended(Cause::NoAnswer, 401);
    }

    #[test]
    fn an_unsupported_algorithm_ends_the_call_as_other() {
        let mut h = Harness::authenticated();
        h.sip(challenge_401(&[
            r#"Digest realm="r", nonce="n", algorithm=SHA-1"#,
        ]));
        assert!(h.commands().is_empty());
        assert_eq!(
            h.refusals(),
            [&ChallengeRefusal::Unanswerable(
                DigestError::UnsupportedAlgorithm("SHA-1".into())
            )]
        );
        h.assert_ended_with(Cause::Other, SipStatus::new(401, "Unauthorized"));
    }

    #[test]
    fn a_malformed_or_missing_challenge_ends_the_call_as_other() {
        let cases: &[(&[&str], DigestError)] = &[
            (&[r#"Digest realm="r""#], DigestError::Missing("nonce")),
            (&[r#"Basic realm="r""#], DigestError::NotDigest),
            (
                &[r#"Digest realm="r", nonce="n", qop="auth-int""#],
                DigestError::AuthIntOnly,
            ),
            (&[], DigestError::NotDigest),
        ];
        for (values, error) in cases {
            let mut h = Harness::authenticated();
            h.sip(challenge_407(values));
            assert!(h.commands().is_empty(), "{values:?}");
            assert_eq!(
                h.refusals(),
                [&ChallengeRefusal::Unanswerable(error.clone())]
            );
            h.assert_ended(Cause::Other, 407);
        }
    }

    #[test]
    fn after_a_resend_a_hang_up_waits_for_a_provisional_to_the_new_invite() {
        let mut h = Harness::authenticated();
        h.sip(trying());
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        h.hang_up();
        assert_eq!(
            h.commands().len(),
            1,
            "no CANCEL before the new INVITE's provisional"
        );
        assert!(h.call.is_hanging_up());
        h.sip(trying());
        // EWS saw Disconnected/None at the hang-up (with the last status it had, 100); the
        // CANCEL and its 487 only finish the SIP side.
        assert_eq!(h.commands()[1..], [&Command::Cancel]);
        h.sip(request_terminated());
        let s = h.call.status();
        assert_eq!(
            (s.state, s.cause, s.sip.as_ref().map(|s| s.code)),
            (CallState::Disconnected, Cause::None, Some(100))
        );
        assert!(h.call.is_done());
    }

    #[test]
    fn the_ring_timeout_runs_on_across_a_resend() {
        let mut h = Harness::authenticated();
        h.sip(ringing());
        h.advance(Duration::from_secs(30));
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(h.call.status().state, CallState::Alerted, "unchanged");
        h.sip(ringing());
        h.advance(Duration::from_secs(15));
        h.assert_cancelled_then_terminated(Cause::NoAnswer);
    }

    #[test]
    fn a_resend_that_cannot_be_sent_ends_the_call_as_other_with_the_challenge_code() {
        let mut h = Harness::authenticated();
        h.sip(trying());
        h.sip(challenge_407(&[SHA256_CHALLENGE]));
        h.call.resend_failed(h.now);
        h.drain();
        h.assert_ended_with(
            Cause::Other,
            SipStatus::new(407, "Proxy Authentication Required"),
        );
        assert!(
            h.refusals().is_empty(),
            "the runtime logs its own send error"
        );
        // Only once, and only after a resend.
        let log = h.log.len();
        h.call.resend_failed(h.now);
        h.drain();
        assert_eq!(h.log.len(), log);
        let mut h = Harness::authenticated();
        h.call.resend_failed(h.now);
        h.drain();
        assert!(!h.call.is_done());
    }

    #[test]
    fn a_challenge_after_the_call_ended_changes_nothing() {
        let mut h = Harness::authenticated();
        h.sip(answered());
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert!(matches!(
            h.commands()[..],
            [Command::StartMedia(_), Command::StartRtcp { .. }]
        ));
        h.hang_up();
        let log = h.log.len();
        h.sip(challenge_401(&[RFC7616_CHALLENGE]));
        assert_eq!(h.log.len(), log);
    }

    #[test]
    fn the_call_does_not_show_the_password() {
        let h = Harness::authenticated();
        let shown = format!("{:?}", h.call);
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    /// Shuffled challenges among the other events: at most two INVITEs are resent, never during
    /// a hang-up, never after the end, and a CANCEL always follows a provisional response to the
    /// INVITE it cancels.
    #[test]
    fn random_event_orders_with_challenges_keep_the_invariants() {
        let events = [
            trying(),
            ringing(),
            answered(),
            request_terminated(),
            challenge_401(&[RFC7616_CHALLENGE]),
            challenge_407(&[SHA256_CHALLENGE]),
            challenge_407(&[r#"Digest realm="r", nonce="n", algorithm=SHA-1"#]),
            SipEvent::NoResponse,
            SipEvent::RemoteBye,
        ];
        let n = u64::try_from(events.len()).unwrap();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..2000 {
            let mut h = Harness::authenticated();
            let mut provisional = false;
            let mut resends = 0;
            let mut refusals = 0;
            for _ in 0..10 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let hanging_up = h.call.is_hanging_up();
                let done = h.call.is_done();
                let seen = h.log.len();
                match seed % (n + 3) {
                    i if i == n => h.hang_up(),
                    i if i == n + 1 => h.advance(Duration::from_secs(20)),
                    i if i == n + 2 => {
                        h.call.resend_failed(h.now);
                        h.drain();
                    }
                    i => {
                        let e = events[usize::try_from(i).unwrap()].clone();
                        provisional |= !done && matches!(e, SipEvent::Provisional(_));
                        h.sip(e);
                    }
                }
                for o in &h.log[seen..] {
                    match o {
                        Output::Command(Command::Resend { .. }) => {
                            assert!(!hanging_up && !done, "resent while hanging up or done");
                            resends += 1;
                            provisional = false;
                        }
                        Output::Command(Command::Cancel) => {
                            assert!(provisional, "CANCEL before a provisional response");
                        }
                        Output::ChallengeRefused(_) => refusals += 1,
                        _ => {}
                    }
                }
            }
            assert!(resends <= MAX_ANSWERED_CHALLENGES, "{resends} resends");
            assert!(refusals <= 1, "{refusals} refusals");
            h.assert_ended_at_most_once();
        }
    }

    // ---- Offer/answer in the dialog (RFC 3264 §8), on virtual time ----

    const MESSAGE: Duration = Duration::from_secs(3);

    /// An answered call (3 s message) with openum's session at 192.0.2.10:40000.
    fn connected() -> Harness {
        let mut h = Harness::new();
        h.call = Call::new(h.now, CallConfig::new(MESSAGE))
            .with_session(LocalSession::new("192.0.2.10:40000".parse().unwrap(), 7));
        h.drain();
        h.sip(answered());
        h.log.clear();
        h
    }

    fn reoffer(request: u64, update: bool, media: &str) -> SipEvent {
        SipEvent::Offer {
            request,
            update,
            sdp: Some(
                format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}")
                    .into_bytes(),
            ),
        }
    }

    /// The response to `request` among the commands: code and body.
    fn response(h: &Harness, request: u64) -> (u16, Option<String>) {
        h.commands()
            .into_iter()
            .find_map(|c| match c {
                Command::Respond {
                    request: r,
                    code,
                    sdp,
                } if *r == request => Some((*code, sdp.clone())),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no response to {request}: {:?}", h.log))
    }

    fn media_commands(h: &Harness) -> Vec<&Command> {
        h.commands()
            .into_iter()
            .filter(|c| !matches!(c, Command::Respond { .. }))
            .collect()
    }

    /// Offered attribute → answered attribute and what happens to the media.
    #[test]
    fn re_offers_are_answered_with_the_mirrored_direction_and_move_the_media() {
        let pcmu = "m=audio 6000 RTP/AVP 0\r\n";
        let rows: &[(&str, &str, &[Command])] = &[
            ("a=sendonly\r\n", "a=recvonly", &[Command::PauseMedia]),
            ("a=inactive\r\n", "a=inactive", &[Command::PauseMedia]),
            ("a=recvonly\r\n", "a=sendonly", &[]),
            ("a=sendrecv\r\n", "a=sendrecv", &[]),
            ("", "a=sendrecv", &[]),
        ];
        for (attribute, answered, media) in rows {
            for update in [false, true] {
                let mut h = connected();
                h.sip(reoffer(1, update, &format!("{pcmu}{attribute}")));
                let (code, sdp) = response(&h, 1);
                let sdp = sdp.unwrap();
                assert_eq!(code, 200);
                assert!(sdp.contains(answered), "{attribute} → {sdp}");
                assert!(sdp.contains("o=openum 7 2 IN IP4 192.0.2.10"), "{sdp}");
                assert_eq!(
                    media_commands(&h),
                    media.iter().collect::<Vec<_>>(),
                    "{attribute}"
                );
                assert_eq!(h.call.status().state, CallState::Connected);
            }
        }
    }

    #[test]
    fn a_hold_pauses_the_message_and_the_bye_comes_that_much_later() {
        let mut h = connected();
        h.advance(Duration::from_secs(1));
        h.sip(reoffer(
            1,
            false,
            "m=audio 6000 RTP/AVP 0\r\na=sendonly\r\n",
        ));
        assert!(h.call.is_held());
        assert!(h.log.contains(&Output::Hold(true)));
        // The pause is ordered before the answer goes out.
        let commands = h.commands();
        let at = |wanted: fn(&Command) -> bool| commands.iter().position(|c| wanted(c)).unwrap();
        assert!(at(|c| *c == Command::PauseMedia) < at(|c| matches!(c, Command::Respond { .. })));
        // Held for 10 s: no BYE at the original end of the message.
        h.advance(Duration::from_secs(10));
        assert!(!h.commands().contains(&&Command::Bye));
        h.sip(reoffer(
            2,
            false,
            "m=audio 6000 RTP/AVP 0\r\na=sendrecv\r\n",
        ));
        let (code, sdp) = response(&h, 2);
        assert_eq!(code, 200);
        assert!(sdp.unwrap().contains("o=openum 7 3 "), "a new version");
        assert_eq!(
            media_commands(&h),
            [&Command::PauseMedia, &Command::ResumeMedia]
        );
        assert!(!h.call.is_held());
        // 2.5 s of message and silence were left when the hold began.
        h.advance(Duration::from_millis(2_499));
        assert!(!h.call.is_done());
        h.advance(Duration::from_millis(1));
        assert_eq!(
            media_commands(&h)[2..],
            [&Command::StopMedia, &Command::Bye]
        );
        let s = h.call.status();
        assert_eq!((s.state, s.cause), (CallState::Disconnected, Cause::None));
    }

    #[test]
    fn a_hold_longer_than_the_hold_timeout_ends_the_call() {
        let mut h = connected();
        h.sip(reoffer(
            1,
            false,
            "m=audio 6000 RTP/AVP 0\r\na=inactive\r\n",
        ));
        h.advance(CallConfig::new(MESSAGE).hold_timeout - Duration::from_millis(1));
        assert!(!h.call.is_done());
        h.advance(Duration::from_millis(1));
        assert!(h.call.is_done());
        assert_eq!(h.commands().last(), Some(&&Command::Bye));
        assert_eq!(h.call.status().cause, Cause::None);
    }

    #[test]
    fn the_far_ends_a_rtcp_reaches_the_media_plan_and_a_re_offer_can_move_it() {
        let mut h = Harness::new();
        h.call = Call::new(h.now, CallConfig::new(MESSAGE))
            .with_session(LocalSession::new("192.0.2.10:40000".parse().unwrap(), 7));
        h.drain();
        h.sip(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\na=rtcp:6011\r\n".to_vec(),
            ),
        });
        let plan = h
            .commands()
            .into_iter()
            .find_map(|c| match c {
                Command::StartMedia(plan) => Some(*plan),
                _ => None,
            })
            .unwrap();
        assert_eq!(plan.rtcp, Some("127.0.0.1:6011".parse().unwrap()));
        assert!(h.commands().contains(&&Command::StartRtcp { mux: false }));
        // The same stream, RTCP elsewhere: the media follow.
        h.log.clear();
        h.sip(reoffer(
            1,
            false,
            "m=audio 6000 RTP/AVP 0\r\na=rtcp:7022 IN IP4 127.0.0.5\r\n",
        ));
        assert_eq!(response(&h, 1).0, 200);
        assert_eq!(
            media_commands(&h),
            [&Command::UpdateMedia(MediaPlan {
                rtcp: Some("127.0.0.5:7022".parse().unwrap()),
                ..plan
            })]
        );
        // Without a=rtcp: back to the RTP port + 1.
        h.log.clear();
        h.sip(reoffer(2, false, "m=audio 6000 RTP/AVP 0\r\n"));
        assert_eq!(
            media_commands(&h),
            [&Command::UpdateMedia(MediaPlan { rtcp: None, ..plan })]
        );
    }

    #[test]
    fn a_codec_or_address_change_updates_the_media_in_place() {
        let mut h = connected();
        h.sip(reoffer(
            1,
            false,
            "m=audio 7010 RTP/AVP 96 8\r\nc=IN IP4 127.0.0.9\r\na=rtpmap:96 PCMA/8000\r\na=ptime:30\r\n",
        ));
        let (_, sdp) = response(&h, 1);
        let sdp = sdp.unwrap();
        assert!(sdp.contains("m=audio 40000 RTP/AVP 96\r\n"), "{sdp}");
        assert_eq!(
            media_commands(&h),
            [&Command::UpdateMedia(MediaPlan {
                remote: "127.0.0.9:7010".parse().unwrap(),
                rtcp: None,
                codec: sdp::Codec::Pcma,
                payload_type: 96,
                ptime_ms: 30,
            })]
        );
        // The same offer again (a session refresh): same version, nothing to change.
        h.log.clear();
        h.sip(reoffer(
            2,
            false,
            "m=audio 7010 RTP/AVP 96 8\r\nc=IN IP4 127.0.0.9\r\na=rtpmap:96 PCMA/8000\r\na=ptime:30\r\n",
        ));
        assert!(response(&h, 2).1.unwrap().contains("o=openum 7 2 "));
        assert!(media_commands(&h).is_empty());
    }

    #[test]
    fn a_re_invite_without_sdp_gets_our_offer_and_the_ack_brings_the_answer() {
        let mut h = connected();
        h.sip(SipEvent::Offer {
            request: 5,
            update: false,
            sdp: None,
        });
        let (code, offer) = response(&h, 5);
        assert_eq!(code, 200);
        let offer = offer.unwrap();
        assert!(
            offer.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=sendrecv") && offer.contains("o=openum 7 2 "));
        // Another offer before the ACK: glare (RFC 3311 §5.2).
        h.sip(reoffer(6, true, "m=audio 6000 RTP/AVP 0\r\n"));
        assert_eq!(response(&h, 6), (491, None));
        // An ACK for another request changes nothing.
        h.sip(SipEvent::Ack {
            request: 4,
            sdp: None,
        });
        assert!(!h.call.is_done());
        h.sip(SipEvent::Ack {
            request: 5,
            sdp: Some(
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6002 RTP/AVP 8\r\na=sendonly\r\n".to_vec(),
            ),
        });
        assert!(h.call.is_held(), "their sendonly answer holds the call");
        assert_eq!(media_commands(&h), [&Command::PauseMedia]);
        // Offers are answered again once the answer arrived.
        h.sip(reoffer(7, false, "m=audio 6002 RTP/AVP 8\r\n"));
        assert_eq!(response(&h, 7).0, 200);
        assert_eq!(
            media_commands(&h)[1..],
            [
                &Command::UpdateMedia(MediaPlan {
                    remote: "127.0.0.1:6002".parse().unwrap(),
                    rtcp: None,
                    codec: sdp::Codec::Pcma,
                    payload_type: 8,
                    ptime_ms: 20,
                }),
                &Command::ResumeMedia
            ]
        );
    }

    #[test]
    fn an_ack_without_the_answer_ends_the_call() {
        let mut h = connected();
        h.sip(SipEvent::Offer {
            request: 5,
            update: false,
            sdp: None,
        });
        h.sip(SipEvent::Ack {
            request: 5,
            sdp: None,
        });
        assert!(h.call.is_done());
        assert_eq!(media_commands(&h), [&Command::StopMedia, &Command::Bye]);
        assert_eq!(h.call.status().cause, Cause::Other);
    }

    #[test]
    fn unusable_or_untimely_offers_are_refused_and_the_session_goes_on() {
        let mut h = connected();
        h.sip(reoffer(1, false, "m=audio 6000 RTP/AVP 18\r\n"));
        assert_eq!(response(&h, 1), (488, None));
        assert!(h
            .log
            .contains(&Output::OfferRefused(OfferError::NoUsableAudio)));
        assert!(media_commands(&h).is_empty());
        // An UPDATE without SDP is a refresh.
        h.sip(SipEvent::Offer {
            request: 2,
            update: true,
            sdp: None,
        });
        assert_eq!(response(&h, 2), (200, None));
        assert!(!h.call.is_done());
        // Before the answer, and after the end.
        let mut h = Harness::new();
        h.sip(reoffer(3, true, "m=audio 6000 RTP/AVP 0\r\n"));
        assert_eq!(response(&h, 3), (491, None));
        h.sip(SipEvent::Rejected(SipStatus::new(486, "Busy Here")));
        h.sip(reoffer(4, false, "m=audio 6000 RTP/AVP 0\r\n"));
        assert_eq!(response(&h, 4), (481, None));
        // Without a session the engine cannot answer: 488.
        let mut h = Harness::new();
        h.sip(answered());
        h.sip(reoffer(5, false, "m=audio 6000 RTP/AVP 0\r\n"));
        assert_eq!(response(&h, 5), (488, None));
    }

    #[test]
    fn an_answer_that_holds_from_the_start_starts_the_media_paused() {
        let mut h = Harness::new();
        h.sip(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(
                b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 6000 RTP/AVP 0\r\na=inactive\r\n".to_vec(),
            ),
        });
        assert!(matches!(
            h.commands()[..],
            [
                Command::StartMedia(_),
                Command::StartRtcp { mux: false },
                Command::PauseMedia
            ]
        ));
        assert!(h.call.is_held());
        assert_eq!(h.call.status().state, CallState::Connected);
    }
}
