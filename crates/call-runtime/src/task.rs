//! One call's task: feeds the sans-I/O engine with SIP events, hang-up requests and timer
//! expiries, and carries out what it decides — SIP requests through a [`Dialogue`], RTP through
//! the media scheduler, status records through the [`CallRecorder`].
//!
//! The SIP side is behind the [`Dialogue`] trait so the task runs in-process against a scripted
//! dialogue on tokio's paused clock (see the tests); production uses rsipstack's
//! (`sip::RsipDialogue`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use call_engine::auth::{Authorization, ChallengeRefusal};
use call_engine::call::{Call, Command, Output, SipEvent, Status};
use call_engine::rtp::{PreparedAudio, RtpSeed, RtpStream};
use calls::{error_chain, now_unix, CallRecord, CallRecorder, CallState};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};

use crate::media::{MediaHandle, StreamChange};
use crate::rtcp::{Rtcp, StreamCounters};
use crate::sip::SipError;
use crate::udp::MediaSocket;

/// A request to a running call's task.
pub(crate) enum Control {
    /// Hang up; reply once the engine has taken the decision.
    Hangup(oneshot::Sender<()>),
}

/// One call's SIP dialogue, as the call task drives it.
#[async_trait]
pub(crate) trait Dialogue: Send + 'static {
    /// The next event for the engine; `None` once the SIP side will report nothing more.
    /// Must be cancel-safe: the task polls it in a `select!` with its timers.
    async fn next_event(&mut self) -> Option<SipEvent>;
    /// CANCELs the pending INVITE. Returns once the request is under way, not when its
    /// transaction ends: the call task must keep serving hang-ups and timers.
    async fn cancel(&mut self) -> Result<(), SipError>;
    /// BYEs the confirmed dialog; returns once the request is under way (see `cancel`).
    async fn bye(&mut self) -> Result<(), SipError>;
    /// Sends the INVITE again, answering a digest challenge.
    fn resend(&mut self, authorization: Authorization) -> Result<(), SipError>;
    /// Answers the in-dialog request the engine saw as `SipEvent::Offer { request, .. }` with
    /// `code` and, if given, an `application/sdp` body. Returns once the answer is under way.
    fn respond(&mut self, request: u64, code: u16, sdp: Option<String>) -> Result<(), SipError>;
    /// The INVITE ended with `event` before any early dialog or answer, and no hang-up is
    /// under way: if `event` is one that moves a call on (see [`crate::gateways::fails_over`])
    /// and a gateway is left, sends the INVITE there (over its TLS connection, with the SRTP
    /// offer its policy asks for) and returns the new attempt's engine and SRTP negotiation.
    async fn fail_over(&mut self, event: &SipEvent) -> Option<NextAttempt>;
    /// The call has ended: let the transaction layer finish, then forget the dialogue.
    async fn close(&mut self);
}

/// A call moved to another gateway: the attempt's engine, and its SRTP negotiation (the new
/// gateway's policy, fresh keys).
pub(crate) struct NextAttempt {
    pub(crate) call: Call,
    pub(crate) srtp: crate::srtp::CallSrtp,
}

/// The engine's clock reading. tokio's clock, not `Instant::now()`: under a paused test clock
/// the engine's timers must advance with tokio's.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// A call's task state.
pub(crate) struct CallTask<D> {
    pub(crate) dialogue: D,
    pub(crate) recorder: Arc<dyn CallRecorder>,
    pub(crate) media: MediaHandle,
    pub(crate) record: CallRecord,
    pub(crate) audio: Arc<PreparedAudio>,
    pub(crate) socket: Arc<MediaSocket>,
    /// The call's SRTP offer and, once answered, its sender.
    pub(crate) srtp: crate::srtp::CallSrtp,
    /// The RTCP socket (RTP port + 1), unused with rtcp-mux.
    pub(crate) rtcp_socket: Arc<MediaSocket>,
    /// The id the call's stream runs under in the media scheduler (with shared sockets, the
    /// one whose shard's port the SDP advertised).
    pub(crate) stream_id: u64,
}

impl<D: Dialogue> CallTask<D> {
    /// Runs `call` until it is done; returns the dialogue for closing.
    pub(crate) async fn run(
        mut self,
        mut call: Call,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> D {
        let mut media = Media::default();
        // A provisional response other than 100 (an early dialog) or an answer arrived: from
        // then on the call stays with its gateway (RFC 3261).
        let mut committed = false;
        let mut events_open = true;
        let mut control_open = true;
        self.drain(&mut call, &mut media).await;
        while !call.is_done() {
            let deadline = call.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                event = self.dialogue.next_event(), if events_open => match event {
                    Some(event) => {
                        committed |= match &event {
                            SipEvent::Provisional(status) => status.code != 100,
                            SipEvent::Answered { .. } => true,
                            _ => false,
                        };
                        let next = if committed || call.is_hanging_up() {
                            None
                        } else {
                            self.dialogue.fail_over(&event).await
                        };
                        match next {
                            Some(next) => {
                                call = next.call;
                                self.srtp = next.srtp;
                            }
                            None => call.handle_sip(now(), self.srtp.screen(event)),
                        }
                    }
                    None => events_open = false,
                },
                message = control.recv(), if control_open => match message {
                    Some(Control::Hangup(ack)) => {
                        call.hang_up(now());
                        self.drain(&mut call, &mut media).await;
                        // The requester may have stopped waiting; the hang-up happened anyway.
                        let _ = ack.send(());
                    }
                    // The service dropped the call's handle: nobody can hang it up any more,
                    // so end it now rather than let it play unsupervised.
                    None => {
                        control_open = false;
                        call.hang_up(now());
                    }
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    call.handle_timeout(now());
                }
            }
            self.drain(&mut call, &mut media).await;
        }
        media.stop(&self.media);
        self.dialogue
    }

    async fn drain(&mut self, call: &mut Call, media: &mut Media) {
        while let Some(output) = call.poll_output() {
            match output {
                Output::Status(status) => self.record_status(&status).await,
                Output::ChallengeRefused(reason) => match reason {
                    ChallengeRefusal::CredentialsRefused | ChallengeRefusal::Unanswerable(_) => {
                        tracing::warn!(reason = %error_chain(&reason), "digest challenge not answered");
                    }
                    _ => tracing::info!(reason = %reason, "digest challenge not answered"),
                },
                Output::OfferRefused(reason) => {
                    tracing::warn!(reason = %error_chain(&reason), "offer in the dialog refused (488)");
                }
                Output::Hold(true) => tracing::info!("the far end holds the call: message paused"),
                Output::Hold(false) => {
                    tracing::info!("the far end resumed the call: message continues")
                }
                Output::Command(Command::Respond { request, code, sdp }) => {
                    tracing::debug!(
                        code,
                        with_sdp = sdp.is_some(),
                        "answering an in-dialog offer"
                    );
                    let sdp = self.srtp.answer(request, sdp);
                    if let Err(error) = self.dialogue.respond(request, code, sdp) {
                        tracing::warn!(error = %error_chain(&error), code, "cannot answer an in-dialog request");
                    }
                }
                Output::Command(Command::UpdateMedia(plan)) => {
                    tracing::info!(remote = %plan.remote, codec = ?plan.codec, ptime = plan.ptime_ms, "media renegotiated");
                    if let Some(id) = media.id {
                        self.media.change(id, StreamChange::Plan(plan));
                    }
                    if let Some(negotiated) = &media.negotiated {
                        negotiated.send_replace(plan.remote);
                    }
                    // A re-offer may move RTCP too (a new address, or another `a=rtcp`).
                    if let Some(rtcp) = &media.rtcp_destination {
                        rtcp.send_replace(crate::rtcp::destination(&plan, media.mux));
                    }
                    media.plan = Some(plan);
                }
                Output::Command(Command::PauseMedia) => {
                    if let Some(id) = media.id {
                        self.media.change(id, StreamChange::Pause);
                    }
                }
                Output::Command(Command::ResumeMedia) => {
                    if let Some(id) = media.id {
                        self.media.change(id, StreamChange::Resume);
                    }
                }
                Output::Command(Command::Resend {
                    authorization,
                    algorithm,
                }) => {
                    tracing::info!(
                        algorithm = algorithm.token(),
                        proxy = authorization.is_proxy(),
                        "answering digest challenge"
                    );
                    if let Err(error) = self.dialogue.resend(authorization) {
                        tracing::warn!(error = %error_chain(&error), "cannot resend the INVITE with credentials");
                        call.resend_failed(now());
                    }
                }
                Output::Command(Command::Cancel) => {
                    if let Err(error) = self.dialogue.cancel().await {
                        tracing::warn!(error = %error_chain(&error), "CANCEL failed");
                    }
                }
                Output::Command(Command::Bye) => {
                    if let Err(error) = self.dialogue.bye().await {
                        tracing::warn!(error = %error_chain(&error), "BYE failed");
                    }
                }
                Output::Command(Command::StartMedia(plan)) => {
                    let mut rng = rand::thread_rng();
                    let seed = RtpSeed {
                        ssrc: rng.gen(),
                        sequence: rng.gen(),
                        timestamp: rng.gen(),
                    };
                    // Spread stream phases over the packet time (see media.rs).
                    let phase =
                        Duration::from_micros(rng.gen_range(0..u64::from(plan.ptime_ms) * 1000));
                    let origin = now() + phase;
                    let stream = RtpStream::new(&plan, &self.audio, seed, origin);
                    tracing::info!(remote = %plan.remote, codec = ?plan.codec, ptime = plan.ptime_ms, "media started");
                    let counters = Arc::new(StreamCounters::default());
                    let srtp = self.srtp.take_sender();
                    media.protected = srtp.is_some();
                    let id = self.stream_id;
                    self.media.start_stream(
                        id,
                        Arc::clone(&self.socket),
                        plan.remote,
                        stream,
                        srtp,
                        Some(Arc::clone(&counters)),
                    );
                    let (negotiated, _) = tokio::sync::watch::channel(plan.remote);
                    media.negotiated = Some(negotiated);
                    media.plan = Some(plan);
                    media.id = Some(id);
                    media.rtcp_stream = Some(crate::rtcp::Stream {
                        ssrc: seed.ssrc,
                        first_timestamp: seed.timestamp,
                        origin,
                        counters,
                        cname: self.cname(),
                    });
                }
                // Follows StartMedia: RTCP, then the task reading the RTP socket (which hands
                // it RTCP when they share the port).
                Output::Command(Command::StartRtcp { mux }) => {
                    let (Some(id), Some(negotiated), Some(plan), Some(stream)) = (
                        media.id,
                        &media.negotiated,
                        media.plan,
                        media.rtcp_stream.take(),
                    ) else {
                        continue;
                    };
                    // An SRTP call's RTCP is SRTCP (RFC 3711 §3.4), with the keys of its SRTP;
                    // never plain RTCP, which would give away the stream's SSRC and counts.
                    let srtcp = if media.protected {
                        self.srtp.take_rtcp()
                    } else {
                        None
                    };
                    let rtcp = if media.protected && srtcp.is_none() {
                        tracing::warn!("no SRTCP keys for an SRTP call: it sends no RTCP");
                        None
                    } else {
                        let socket = if mux { &self.socket } else { &self.rtcp_socket };
                        let to = crate::rtcp::destination(&plan, mux);
                        tracing::debug!(mux, %to, srtcp = srtcp.is_some(), "RTCP started");
                        let (destination, _) = tokio::sync::watch::channel(to);
                        let rtcp = Rtcp::start(
                            Arc::clone(socket),
                            mux || self.media.is_shared(),
                            destination.subscribe(),
                            stream,
                            srtcp,
                            Arc::clone(self.media.rtcp_stats()),
                        );
                        media.mux = mux;
                        media.rtcp_destination = Some(destination);
                        Some(rtcp)
                    };
                    if self.media.is_shared() {
                        // The shard reads the shared sockets: it latches (symmetric RTP) and
                        // hands the call's RTCP on.
                        if let Some(rtcp) = &rtcp {
                            self.media.attach_rtcp(id, rtcp.muxed.clone());
                        }
                        media.rtcp = rtcp;
                        continue;
                    }
                    media.receiver = Some(crate::symmetric::spawn(
                        Arc::clone(&self.socket),
                        self.media.clone(),
                        id,
                        negotiated.subscribe(),
                        rtcp.as_ref().filter(|_| mux).map(|rtcp| rtcp.muxed.clone()),
                    ));
                    media.rtcp = rtcp;
                }
                Output::Command(Command::StopMedia) => media.stop(&self.media),
            }
        }
    }

    /// The SDES CNAME of the call's streams (RFC 3550 §6.5.1: `user@host`).
    fn cname(&self) -> String {
        let host = self
            .socket
            .local_addr()
            .map_or_else(|_| "openum".to_owned(), |a| a.ip().to_string());
        format!("openum@{host}")
    }

    async fn record_status(&mut self, status: &Status) {
        self.record.state = status.state;
        self.record.cause = status.cause;
        self.record.sip_code = status.sip.as_ref().map(|s| s.code);
        self.record.sip_text = status.sip.as_ref().map(|s| s.reason.clone());
        if status.state == CallState::Disconnected {
            self.record.ended_at = Some(now_unix());
        }
        tracing::info!(state = ?status.state, cause = ?status.cause, sip = ?status.sip.as_ref().map(|s| s.code), "call status");
        if let Err(error) = self.recorder.update(&self.record).await {
            tracing::error!(error = %error_chain(&error), "cannot record call status");
        }
    }
}

/// The call's media: its stream in the scheduler, and the task reading its RTP socket.
#[derive(Default)]
struct Media {
    id: Option<u64>,
    /// The far end's address from the SDP, for the symmetric-RTP latch.
    negotiated: Option<tokio::sync::watch::Sender<std::net::SocketAddr>>,
    receiver: Option<tokio::task::JoinHandle<()>>,
    /// Between StartMedia and StartRtcp: what RTCP reports on.
    rtcp_stream: Option<crate::rtcp::Stream>,
    rtcp: Option<Rtcp>,
    /// The plan in force (StartMedia, then each UpdateMedia).
    plan: Option<call_engine::sdp::MediaPlan>,
    /// RTCP shares the RTP port (RFC 5761).
    mux: bool,
    /// Where the far end's SDP says RTCP goes, for the RTCP task.
    rtcp_destination: Option<tokio::sync::watch::Sender<std::net::SocketAddr>>,
    /// The stream is sent as SRTP.
    protected: bool,
}

impl Media {
    fn stop(&mut self, scheduler: &MediaHandle) {
        if let Some(id) = self.id.take() {
            scheduler.stop(id);
        }
        if let Some(receiver) = self.receiver.take() {
            receiver.abort();
        }
        if let Some(mut rtcp) = self.rtcp.take() {
            rtcp.stop();
        }
        self.rtcp_stream = None;
        self.rtcp_destination = None;
        self.plan = None;
        self.negotiated = None;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The call task on tokio's paused clock against a scripted dialogue: timers run in virtual
    //! time, so a 45 s ring timeout takes no real time and its instant is exact.

    use std::sync::Mutex;

    use call_engine::auth::{Credentials, DigestAuth};
    use call_engine::call::{CallConfig, SipStatus};
    use calls::{Cause, RecordError};
    use tokio::time::Instant;

    use super::*;

    const SDP_ANSWER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    fn request_terminated() -> SipEvent {
        SipEvent::Rejected(SipStatus::new(487, "Request Terminated"))
    }

    /// What the task asked of the SIP side, and when (virtual time since the start).
    type Sent = Arc<Mutex<Vec<(&'static str, Duration)>>>;

    struct Scripted {
        events: mpsc::UnboundedReceiver<SipEvent>,
        sent: Sent,
        start: Instant,
        /// Further gateways a failed INVITE may move on to.
        gateways_left: usize,
        /// Their SRTP policy.
        next_srtp: call_engine::sdes::SrtpPolicy,
    }

    impl Scripted {
        fn log(&self, what: &'static str) {
            self.sent.lock().unwrap().push((what, self.start.elapsed()));
        }
    }

    #[async_trait]
    impl Dialogue for Scripted {
        async fn next_event(&mut self) -> Option<SipEvent> {
            self.events.recv().await
        }
        async fn cancel(&mut self) -> Result<(), SipError> {
            self.log("CANCEL");
            Ok(())
        }
        async fn bye(&mut self) -> Result<(), SipError> {
            self.log("BYE");
            Ok(())
        }
        fn resend(&mut self, authorization: Authorization) -> Result<(), SipError> {
            assert!(authorization.value().starts_with("Digest "));
            self.log("INVITE with credentials");
            Ok(())
        }
        fn respond(
            &mut self,
            _request: u64,
            code: u16,
            _sdp: Option<String>,
        ) -> Result<(), SipError> {
            self.log(match code {
                200 => "200",
                491 => "491",
                _ => "other response",
            });
            Ok(())
        }
        async fn fail_over(&mut self, event: &SipEvent) -> Option<NextAttempt> {
            if !crate::gateways::fails_over(event, &[503]) || self.gateways_left == 0 {
                return None;
            }
            self.gateways_left -= 1;
            self.log("INVITE to the next gateway");
            Some(NextAttempt {
                call: Call::new(now(), CallConfig::new(Duration::from_secs(1))),
                srtp: crate::srtp::CallSrtp::new(self.next_srtp),
            })
        }
        async fn close(&mut self) {}
    }

    #[derive(Default)]
    struct Records(Mutex<Vec<CallRecord>>);

    #[async_trait]
    impl CallRecorder for Records {
        async fn get(&self, id: &str) -> Result<Option<CallRecord>, RecordError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r.id == id)
                .cloned())
        }
        async fn update(&self, record: &CallRecord) -> Result<(), RecordError> {
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        }
    }

    impl Records {
        fn last(&self) -> (CallState, Cause, Option<u16>) {
            let records = self.0.lock().unwrap();
            let r = records.last().expect("a status was recorded");
            (r.state, r.cause, r.sip_code)
        }
    }

    struct Running {
        events: mpsc::UnboundedSender<SipEvent>,
        control: mpsc::UnboundedSender<Control>,
        sent: Sent,
        records: Arc<Records>,
        done: tokio::task::JoinHandle<()>,
        start: Instant,
    }

    impl Running {
        fn sent(&self) -> Vec<(&'static str, Duration)> {
            self.sent.lock().unwrap().clone()
        }
        fn event(&self, event: SipEvent) {
            self.events.send(event).unwrap();
        }
        /// Lets the call end and checks what it ended as; returns what was sent.
        async fn ends_as(
            self,
            expected: (CallState, Cause, Option<u16>),
        ) -> Vec<(&'static str, Duration)> {
            self.done.await.unwrap();
            assert_eq!(self.records.last(), expected);
            let sent = self.sent.lock().unwrap().clone();
            sent
        }
        async fn at(&self, since_start: Duration) {
            tokio::time::sleep_until(self.start + since_start).await;
        }
    }

    /// Starts a call task for a one-second message with a 45 s ring timeout.
    async fn start(auth: Option<DigestAuth>) -> Running {
        start_with_gateways(auth, 0).await
    }

    /// [`start`], with `gateways_left` further gateways (plain RTP) to fail over to.
    async fn start_with_gateways(auth: Option<DigestAuth>, gateways_left: usize) -> Running {
        use call_engine::sdes::SrtpPolicy::Off;
        start_with_srtp(auth, Off, gateways_left, Off).await
    }

    /// [`start_with_gateways`], the first gateway with SRTP policy `first`, the others `next`.
    async fn start_with_srtp(
        auth: Option<DigestAuth>,
        first: call_engine::sdes::SrtpPolicy,
        gateways_left: usize,
        next: call_engine::sdes::SrtpPolicy,
    ) -> Running {
        let start = Instant::now();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let sent = Sent::default();
        let records = Arc::new(Records::default());
        let audio = Arc::new(PreparedAudio::from_pcm(&[0_i16; 8000]));
        let config = CallConfig {
            ring_timeout: Duration::from_secs(45),
            ..CallConfig::new(audio.duration())
        };
        let task = CallTask {
            dialogue: Scripted {
                events,
                sent: Arc::clone(&sent),
                start,
                gateways_left,
                next_srtp: next,
            },
            recorder: Arc::clone(&records) as Arc<dyn CallRecorder>,
            media: MediaHandle::spawn_shards(1),
            record: CallRecord::dialling("call-1", "alice", "n1", "5551234", "item", 0),
            audio,
            socket: Arc::new(MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
            srtp: crate::srtp::CallSrtp::new(first),
            rtcp_socket: Arc::new(MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
            stream_id: 1,
        };
        let call = Call::with_auth(now(), config, auth);
        let done = tokio::spawn(async move {
            task.run(call, control_rx).await;
        });
        Running {
            events: events_tx,
            control,
            sent,
            records,
            done,
            start,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ringing_call_is_cancelled_exactly_at_the_ring_timeout_and_ends_no_answer() {
        let call = start(None).await;
        call.event(SipEvent::Provisional(SipStatus::new(180, "Ringing")));
        call.at(Duration::from_millis(44_900)).await;
        assert!(call.sent().is_empty(), "{:?}", call.sent());
        assert_eq!(
            call.records.last(),
            (CallState::Alerted, Cause::None, Some(180))
        );
        call.at(Duration::from_millis(45_100)).await;
        let sent = call.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, "CANCEL");
        assert_eq!(sent[0].1, Duration::from_secs(45));
        call.event(request_terminated());
        call.ends_as((CallState::Disconnected, Cause::NoAnswer, Some(487)))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_call_says_bye_after_the_message_and_its_trailing_silence() {
        let call = start(None).await;
        call.at(Duration::from_secs(2)).await;
        call.event(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(SDP_ANSWER.to_vec()),
        });
        // One second of message, then 500 ms of silence.
        call.at(Duration::from_millis(3_400)).await;
        assert!(call.sent().is_empty(), "{:?}", call.sent());
        assert_eq!(
            call.records.last(),
            (CallState::Connected, Cause::None, Some(200))
        );
        let sent = call
            .ends_as((CallState::Disconnected, Cause::None, Some(200)))
            .await;
        assert_eq!(sent, [("BYE", Duration::from_millis(3_500))]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_up_before_any_response_waits_for_a_provisional_then_cancels() {
        let call = start(None).await;
        let (ack, acked) = oneshot::channel();
        call.control.send(Control::Hangup(ack)).unwrap();
        // The decision is acknowledged at once, though no CANCEL may be sent yet (RFC 3261 §9.1),
        // and the client already reads Disconnected: the call it hung up never comes back.
        tokio::time::timeout(Duration::from_millis(10), acked)
            .await
            .expect("hang-up acknowledged without delay")
            .unwrap();
        assert_eq!(
            call.records.last(),
            (CallState::Disconnected, Cause::None, None)
        );
        call.at(Duration::from_secs(3)).await;
        assert!(call.sent().is_empty(), "{:?}", call.sent());
        call.event(SipEvent::Provisional(SipStatus::new(180, "Ringing")));
        call.at(Duration::from_millis(3_001)).await;
        assert_eq!(call.sent(), [("CANCEL", Duration::from_secs(3))]);
        call.event(request_terminated());
        call.ends_as((CallState::Disconnected, Cause::None, None))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_challenge_is_answered_by_resending_and_the_ring_timer_keeps_running() {
        let auth = DigestAuth::new(
            Credentials::new("openum", "secret"),
            "sip:5551234@127.0.0.1",
            [1, 2],
        );
        let call = start(Some(auth)).await;
        call.event(SipEvent::Provisional(SipStatus::new(100, "Trying")));
        call.at(Duration::from_secs(1)).await;
        call.event(SipEvent::Challenged {
            status: SipStatus::new(401, "Unauthorized"),
            proxy: false,
            challenges: vec![
                r#"Digest realm="pbx", nonce="abc", algorithm=MD5, qop="auth""#.into(),
            ],
        });
        call.at(Duration::from_millis(1_001)).await;
        assert_eq!(
            call.sent(),
            [("INVITE with credentials", Duration::from_secs(1))]
        );
        // The answered challenge is not a state change the client sees.
        assert_ne!(call.records.last().2, Some(401));
        call.event(SipEvent::Provisional(SipStatus::new(180, "Ringing")));
        call.at(Duration::from_millis(45_001)).await;
        assert_eq!(
            call.sent().last(),
            Some(&("CANCEL", Duration::from_secs(45)))
        );
        call.event(request_terminated());
        call.ends_as((CallState::Disconnected, Cause::NoAnswer, Some(487)))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_before_any_ringing_moves_the_call_to_the_next_gateway() {
        let call = start_with_gateways(None, 1).await;
        call.event(SipEvent::Provisional(SipStatus::new(100, "Trying")));
        call.event(SipEvent::Rejected(SipStatus::new(
            503,
            "Service Unavailable",
        )));
        call.at(Duration::from_secs(1)).await;
        assert_eq!(
            call.sent(),
            [("INVITE to the next gateway", Duration::ZERO)]
        );
        // The failed attempt is not what EWS shows.
        assert_eq!(
            call.records.last(),
            (CallState::Connecting, Cause::None, None)
        );
        call.event(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(SDP_ANSWER.to_vec()),
        });
        call.ends_as((CallState::Disconnected, Cause::None, Some(200)))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_moved_to_a_mandatory_srtp_gateway_refuses_its_plain_answer() {
        use call_engine::sdes::SrtpPolicy::{Mandatory, Off};
        let call = start_with_srtp(None, Off, 1, Mandatory).await;
        call.event(SipEvent::Rejected(SipStatus::new(
            503,
            "Service Unavailable",
        )));
        call.at(Duration::from_secs(1)).await;
        // The new gateway's policy screens the answer: plain RTP is not enough for it.
        call.event(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(SDP_ANSWER.to_vec()),
        });
        let sent = call
            .ends_as((CallState::Disconnected, Cause::Other, Some(200)))
            .await;
        let sent: Vec<_> = sent.iter().map(|(what, _)| *what).collect();
        assert_eq!(sent, ["INVITE to the next gateway", "BYE"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_moved_from_a_mandatory_srtp_gateway_to_a_plain_one_plays_plain_rtp() {
        use call_engine::sdes::SrtpPolicy::{Mandatory, Off};
        let call = start_with_srtp(None, Mandatory, 1, Off).await;
        call.event(SipEvent::Rejected(SipStatus::new(
            503,
            "Service Unavailable",
        )));
        call.at(Duration::from_secs(1)).await;
        call.event(SipEvent::Answered {
            status: SipStatus::new(200, "OK"),
            sdp: Some(SDP_ANSWER.to_vec()),
        });
        call.ends_as((CallState::Disconnected, Cause::None, Some(200)))
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_after_ringing_or_with_no_gateway_left_ends_the_call() {
        let call = start_with_gateways(None, 1).await;
        call.event(SipEvent::Provisional(SipStatus::new(180, "Ringing")));
        call.event(SipEvent::Rejected(SipStatus::new(
            503,
            "Service Unavailable",
        )));
        let sent = call
            .ends_as((CallState::Disconnected, Cause::Unavailable, Some(503)))
            .await;
        assert!(sent.is_empty(), "{sent:?}");
        let call = start_with_gateways(None, 0).await;
        call.event(SipEvent::Rejected(SipStatus::new(
            503,
            "Service Unavailable",
        )));
        let sent = call
            .ends_as((CallState::Disconnected, Cause::Unavailable, Some(503)))
            .await;
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_up_call_is_not_moved_to_another_gateway() {
        let call = start_with_gateways(None, 1).await;
        let (ack, _acked) = oneshot::channel();
        call.control.send(Control::Hangup(ack)).unwrap();
        call.at(Duration::from_millis(10)).await;
        call.event(SipEvent::NoResponse);
        let sent = call
            .ends_as((CallState::Disconnected, Cause::None, None))
            .await;
        assert!(sent.is_empty(), "{sent:?}");
    }
}
