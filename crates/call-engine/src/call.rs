//! The call state machine: one outbound Play-on-Phone call, from "dialling" to "disconnected".
//!
//! Sans-I/O: SIP dialogue events, user requests and time are inputs; commands for the SIP and
//! media layers and status records are outputs. The drive contract: after every input, drain
//! [`Call::poll_output`] until it returns `None`, then arm a timer for [`Call::poll_timeout`] and
//! call [`Call::handle_timeout`] when it fires.
//!
//! The mapping from the SIP dialogue to EWS states and causes (decisions §9, telephony §2) lives
//! here and nowhere else: see [`cause_of_final_response`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::sdp::{self, MediaPlan};

/// The state of a call, as EWS reports it.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Phase {
    /// INVITE sent (or about to be).
    Connecting,
    /// 180/183 received.
    Alerted,
    /// 2xx received and acknowledged; the message is playing.
    Connected,
    /// Ended.
    Disconnected,
}

/// Why a call ended.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Cause {
    /// Not ended, or ended normally (BYE either way, DisconnectPhoneCall, end of message).
    None,
    /// 486, 600.
    UserBusy,
    /// Ring timeout (CANCEL → 487), or 480/408 after ringing.
    NoAnswer,
    /// 404, 410, 484, 485, 604, 5xx, 480/408 without ringing, no response at all (Timer B).
    Unavailable,
    /// 603, authentication failure, 403, codec mismatch, transport failure, anything else.
    Other,
}

/// A SIP status line.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SipStatus {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
}

impl SipStatus {
    /// A status line.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// What EWS shows for the call.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Status {
    /// State.
    pub phase: Phase,
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
    /// No response at all before Timer B (64·T1).
    NoResponse,
    /// The transport failed (connection refused, DNS, TLS …).
    TransportFailed,
    /// The far end sent BYE (answered 200 by the SIP layer).
    RemoteBye,
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
}

/// An output of the state machine.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Output {
    /// Do this.
    Command(Command),
    /// The call's EWS-visible status changed; record it.
    Status(Status),
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
}

impl CallConfig {
    /// Defaults of decisions §10 for a message of `message_duration`.
    pub fn new(message_duration: Duration) -> Self {
        Self {
            ring_timeout: Duration::from_secs(45),
            message_duration,
            trailing_silence: Duration::from_millis(500),
            cancel_timeout: Duration::from_secs(32),
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
    /// Answered; the message is playing and BYE is due at `playback_end`.
    Connected { playback_end: Instant },
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
}

impl Call {
    /// A call whose INVITE the SIP layer is sending at `now`.
    pub fn new(now: Instant, config: CallConfig) -> Self {
        let status = Status {
            phase: Phase::Connecting,
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
        }
    }

    /// The current status.
    pub fn status(&self) -> &Status {
        &self.status
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
            State::Connected { playback_end } => Some(*playback_end),
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
            State::Connected { playback_end } if now >= playback_end => {
                self.command(Command::StopMedia);
                self.command(Command::Bye);
                self.finish(Cause::None, None);
            }
            _ => {}
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
                    self.status.phase = Phase::Alerted;
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
                        self.status.phase = Phase::Connected;
                        self.state = State::Connected {
                            playback_end: now
                                + self.config.message_duration
                                + self.config.trailing_silence,
                        };
                        self.command(Command::StartMedia(plan));
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
                    cancel_wanted: Some(CancelReason::User),
                    ..
                },
                SipEvent::NoResponse,
            ) => {
                // The user hung up before anything answered, and nothing ever did.
                self.finish(Cause::None, None);
            }
            (State::Dialing { .. }, SipEvent::NoResponse) => {
                self.finish(
                    Cause::Unavailable,
                    Some(SipStatus::new(408, "Request Timeout")),
                );
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
            // Anything else (a late provisional, a retransmitted 2xx, a BYE for a call that
            // already ended) changes nothing; the SIP layer answers it per the RFC.
            _ => {}
        }
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
        self.status.phase = Phase::Disconnected;
        self.status.cause = cause;
        self.state = State::Done;
        self.emit_status();
    }

    fn command(&mut self, command: Command) {
        self.outputs.push_back(Output::Command(command));
    }

    fn emit_status(&mut self) {
        self.outputs.push_back(Output::Status(self.status.clone()));
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

    /// Any instant will do: the engine only adds durations to the one it is given.
    #[allow(
        clippy::disallowed_methods,
        reason = "tests need an arbitrary base instant"
    )]
    fn base_instant() -> Instant {
        Instant::now()
    }

    const SDP_ANSWER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    struct Harness {
        call: Call,
        now: Instant,
        log: Vec<Output>,
    }

    impl Harness {
        fn new() -> Self {
            let now = base_instant();
            let mut h = Self {
                call: Call::new(now, CallConfig::new(Duration::from_secs(3))),
                now,
                log: Vec::new(),
            };
            h.drain();
            h
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
                    Output::Status(_) => None,
                })
                .collect()
        }
        fn phases(&self) -> Vec<Phase> {
            self.log
                .iter()
                .filter_map(|o| match o {
                    Output::Status(s) => Some(s.phase),
                    Output::Command(_) => None,
                })
                .collect()
        }
    }

    fn ringing() -> SipEvent {
        SipEvent::Provisional(SipStatus::new(180, "Ringing"))
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
            assert_eq!((s.phase, s.cause), (Phase::Disconnected, cause), "{code}");
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
        h.sip(SipEvent::Provisional(SipStatus::new(100, "Trying")));
        assert_eq!(h.call.status().phase, Phase::Connecting);
        assert_eq!(h.call.status().sip.as_ref().unwrap().code, 100);
        h.sip(ringing());
        h.sip(answered());
        assert_eq!(h.call.status().phase, Phase::Connected);
        assert!(matches!(h.commands()[..], [Command::StartMedia(_)]));
        h.advance(Duration::from_millis(3499));
        assert!(!h.call.is_done());
        h.advance(Duration::from_millis(1));
        assert_eq!(h.commands()[1..], [&Command::StopMedia, &Command::Bye]);
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::None));
        assert_eq!(s.sip, Some(SipStatus::new(200, "OK")));
        assert_eq!(
            h.phases(),
            [
                Phase::Connecting,
                Phase::Connecting,
                Phase::Alerted,
                Phase::Connected,
                Phase::Disconnected
            ]
        );
    }

    #[test]
    fn ring_timeout_cancels_and_the_487_means_no_answer() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.advance(Duration::from_secs(45));
        assert_eq!(h.commands(), [&Command::Cancel]);
        assert_eq!(h.call.status().phase, Phase::Alerted);
        h.sip(SipEvent::Rejected(SipStatus::new(
            487,
            "Request Terminated",
        )));
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::NoAnswer));
        assert_eq!(s.sip.as_ref().unwrap().code, 487);
    }

    #[test]
    fn cancel_waits_for_a_provisional_response() {
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        assert!(h.commands().is_empty(), "no CANCEL before any provisional");
        h.sip(SipEvent::Provisional(SipStatus::new(100, "Trying")));
        assert_eq!(h.commands(), [&Command::Cancel]);
        h.sip(SipEvent::Rejected(SipStatus::new(
            487,
            "Request Terminated",
        )));
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::None));
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
            assert_eq!((s.phase, s.cause), (Phase::Disconnected, cause));
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
        assert_eq!(h.commands()[1..], [&Command::StopMedia, &Command::Bye]);
        assert_eq!(h.call.status().cause, Cause::None);
        // Idempotent.
        h.call.hang_up(h.now);
        h.drain();
        assert_eq!(h.commands().len(), 3);
    }

    #[test]
    fn far_end_bye_mid_playback_ends_the_call_normally() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.sip(answered());
        h.advance(Duration::from_secs(1));
        h.sip(SipEvent::RemoteBye);
        assert_eq!(h.commands()[1..], [&Command::StopMedia]);
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::None));
        assert_eq!(h.call.poll_timeout(), None);
    }

    #[test]
    fn no_response_at_all_is_unavailable_with_a_local_408() {
        let mut h = Harness::new();
        h.sip(SipEvent::NoResponse);
        let s = h.call.status();
        assert_eq!(
            (s.phase, s.cause),
            (Phase::Disconnected, Cause::Unavailable)
        );
        assert_eq!(s.sip, Some(SipStatus::new(408, "Request Timeout")));
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
            assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::Other));
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
        assert_eq!(h.call.status().phase, Phase::Alerted);
        h.sip(answered());
        assert_eq!(h.call.status().phase, Phase::Connected);
    }

    #[test]
    fn cancel_without_final_response_gives_up_after_the_cancel_timeout() {
        let mut h = Harness::new();
        h.sip(ringing());
        h.advance(Duration::from_secs(45));
        h.advance(Duration::from_secs(32));
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::NoAnswer));
    }

    #[test]
    fn hang_up_before_any_response_then_silence_ends_after_timer_b() {
        let mut h = Harness::new();
        h.call.hang_up(h.now);
        h.drain();
        h.sip(SipEvent::NoResponse);
        let s = h.call.status();
        assert_eq!((s.phase, s.cause), (Phase::Disconnected, Cause::None));
        assert!(h.commands().is_empty());
    }

    /// Many seeds of shuffled, duplicated late events: the call always ends exactly once, never
    /// emits a CANCEL before a provisional, never BYEs a call that was not answered.
    #[test]
    fn random_event_orders_keep_the_invariants() {
        let events = [
            SipEvent::Provisional(SipStatus::new(100, "Trying")),
            ringing(),
            answered(),
            SipEvent::Rejected(SipStatus::new(486, "Busy Here")),
            SipEvent::Rejected(SipStatus::new(487, "Request Terminated")),
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
            let ended = h
                .log
                .iter()
                .filter(|o| matches!(o, Output::Status(s) if s.phase == Phase::Disconnected))
                .count();
            assert!(ended <= 1, "ended {ended} times");
            assert_eq!(ended == 1, h.call.is_done());
            assert!(h.commands().iter().filter(|c| **c == &Command::Bye).count() <= 1);
        }
    }
}
