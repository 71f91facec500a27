//! openum's call runtime: drives the sans-I/O [`call_engine`] with tokio, rsipstack and UDP
//! sockets, and implements the server's [`CallService`].
//!
//! # Layout
//!
//! - [`sip`]: the SIP user agent (rsipstack), dialogue events → engine events.
//! - [`media`]: the one RTP scheduler task that paces every stream.
//! - this file: [`SipCallService`], one signalling task per call feeding its engine, executing its
//!   commands and writing its status to the registry.

pub mod media;
pub mod sip;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use call_engine::call::{Call, CallConfig, Cause, Command, Output, Phase, SipEvent, Status};
use call_engine::rtp::{PreparedAudio, RtpSeed, RtpStream};
use call_engine::sdp;
use rand::Rng as _;
use server::calls::{CallRecord, CallService, CallState, FailureCause, Hangup, PlaceError};
use server::config::{GatewayConfig, SipConfig};
use server::registry::Registry;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::media::MediaHandle;
use crate::sip::{SipError, SipStack};

/// A request to a running call's task.
enum Control {
    /// Hang up; reply once the engine has taken the decision.
    Hangup(oneshot::Sender<()>),
}

/// Places calls through one SIP gateway.
#[derive(Clone)]
pub struct SipCallService {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<Registry>,
    stack: SipStack,
    media: MediaHandle,
    gateway: GatewayConfig,
    rtp_address: IpAddr,
    data_dir: PathBuf,
    live: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    audio: Mutex<HashMap<String, Weak<PreparedAudio>>>,
    /// Token bucket of the gateway's calls-per-second cap: (tokens, last refill).
    rate: Mutex<(f64, std::time::Instant)>,
}

impl SipCallService {
    /// Starts the SIP stack and the media scheduler.
    pub async fn start(
        registry: Arc<Registry>,
        sip: &SipConfig,
        gateway: GatewayConfig,
        data_dir: PathBuf,
    ) -> Result<Self, SipError> {
        let stack = SipStack::start(sip).await?;
        let gateway_cps = gateway.calls_per_second;
        tracing::info!(sip = %stack.local_addr(), gateway = %gateway.name, "SIP user agent ready");
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                stack,
                media: MediaHandle::spawn(),
                gateway,
                rtp_address: sip.rtp_address,
                data_dir,
                live: Mutex::new(HashMap::new()),
                audio: Mutex::new(HashMap::new()),
                rate: Mutex::new((f64::from(gateway_cps), std::time::Instant::now())),
            }),
        })
    }

    /// The SIP listener's address.
    pub fn sip_addr(&self) -> SocketAddr {
        self.inner.stack.local_addr()
    }

    /// Media counters.
    pub fn media(&self) -> &MediaHandle {
        &self.inner.media
    }

    /// Calls in progress.
    pub fn live_calls(&self) -> usize {
        self.inner.live.lock().map_or(0, |l| l.len())
    }

    /// Hangs up every live call and waits (up to `within`) until each is recorded as ended.
    pub async fn shutdown(&self, within: Duration) {
        let ids: Vec<String> = self
            .inner
            .live
            .lock()
            .map(|l| l.keys().cloned().collect())
            .unwrap_or_default();
        for id in &ids {
            let _ = self.hangup(id).await;
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.live_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Calls still waiting for a final response after CANCEL are recorded ended now: the
        // node is going away and nothing will be played.
        for id in ids {
            if let Ok(Some(mut record)) = self.inner.registry.get(&id).await {
                if !record.is_finished() {
                    record.state = CallState::Disconnected;
                    record.ended_at = Some(now_unix());
                    let _ = self.inner.registry.update(&record).await;
                }
            }
        }
        self.inner.stack.shutdown();
    }

    /// Spends one token of the calls-per-second bucket, or says when to retry.
    fn take_rate_token(&self) -> Result<(), PlaceError> {
        let cps = f64::from(self.inner.gateway.calls_per_second);
        let Ok(mut bucket) = self.inner.rate.lock() else {
            return Ok(());
        };
        let now = std::time::Instant::now();
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * cps).min(cps);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            let wait_ms = ((1.0 - tokens) / cps * 1000.0).ceil();
            return Err(PlaceError::OverCapacity(format!(
                "The calls-per-second cap of gateway {} ({cps}/s) is reached; retry in {wait_ms} ms.",
                self.inner.gateway.name
            )));
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
    }

    fn prepared_audio(&self, item_id: &str) -> Result<Arc<PreparedAudio>, String> {
        if let Some(audio) = self
            .inner
            .audio
            .lock()
            .ok()
            .and_then(|cache| cache.get(item_id).and_then(Weak::upgrade))
        {
            return Ok(audio);
        }
        let pcm = server::voicemail::load_pcm(&self.inner.data_dir, item_id)?;
        if pcm.is_empty() {
            return Err("the message has no audio".into());
        }
        let audio = Arc::new(PreparedAudio::from_pcm(&pcm));
        if let Ok(mut cache) = self.inner.audio.lock() {
            cache.retain(|_, weak| weak.strong_count() > 0);
            cache.insert(item_id.to_owned(), Arc::downgrade(&audio));
        }
        Ok(audio)
    }
}

#[async_trait]
impl CallService for SipCallService {
    fn available(&self) -> bool {
        self.inner.gateway.enabled
    }

    async fn place(&self, record: &CallRecord) -> Result<(), PlaceError> {
        let cap = self.inner.gateway.max_concurrent_calls;
        if self.live_calls() >= cap {
            return Err(PlaceError::OverCapacity(format!(
                "The concurrent-call cap of gateway {} ({cap}) is reached.",
                self.inner.gateway.name
            )));
        }
        self.take_rate_token()?;
        let audio = self
            .prepared_audio(&record.item_id)
            .map_err(PlaceError::Audio)?;
        let socket = UdpSocket::bind(SocketAddr::new(self.inner.rtp_address, 0))
            .await
            .map_err(|e| PlaceError::Failed(format!("RTP socket: {e}")))?;
        let rtp_local = socket
            .local_addr()
            .map_err(|e| PlaceError::Failed(e.to_string()))?;
        let offer = sdp::offer(rtp_local, rand::thread_rng().gen());
        // The SIP Call-ID is derived from the PhoneCallId's random part so that a trace can be
        // matched to the EWS call without a lookup table.
        let call_id = format!("{}@openum", uuid_part(&record.id));
        let outgoing = self
            .inner
            .stack
            .invite(
                &self.inner.gateway,
                &record.dialled,
                offer.clone(),
                &call_id,
                None,
            )
            .map_err(|e| PlaceError::Failed(e.to_string()))?;
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        if let Ok(mut live) = self.inner.live.lock() {
            live.insert(record.id.clone(), control_tx);
        }
        let task = CallTask {
            service: self.clone(),
            record: record.clone(),
            config: CallConfig {
                ring_timeout: Duration::from_secs(self.inner.gateway.ring_timeout_secs),
                ..CallConfig::new(audio.duration())
            },
            audio,
            socket: Arc::new(socket),
            call_id,
            offer,
            auth_attempts: 0,
        };
        // One span per call, carrying both identities, around everything the task logs.
        let span =
            tracing::info_span!("call", phone_call_id = %record.id, sip_call_id = %task.call_id);
        tokio::spawn(task.run(outgoing, control_rx).instrument(span));
        Ok(())
    }

    fn figures(&self) -> server::metrics::CallServiceFigures {
        let stats = self.inner.media.stats();
        server::metrics::CallServiceFigures {
            live_calls: u64::try_from(self.live_calls()).unwrap_or(0),
            rtp_packets_sent: stats
                .packets_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            rtp_send_errors: stats.send_errors.load(std::sync::atomic::Ordering::Relaxed),
            live_by_state: Vec::new(),
        }
    }

    async fn hangup(&self, id: &str) -> Hangup {
        let sender = self
            .inner
            .live
            .lock()
            .ok()
            .and_then(|live| live.get(id).cloned());
        let Some(sender) = sender else {
            return Hangup::NotLive;
        };
        let (ack, acked) = oneshot::channel();
        if sender.send(Control::Hangup(ack)).is_err() {
            return Hangup::NotLive;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), acked).await;
        Hangup::Ending
    }
}

struct CallTask {
    service: SipCallService,
    record: CallRecord,
    config: CallConfig,
    audio: Arc<PreparedAudio>,
    socket: Arc<UdpSocket>,
    call_id: String,
    /// Our SDP; a re-INVITE or UPDATE is answered with it unchanged.
    offer: String,
    /// Digest challenges answered so far.
    auth_attempts: u8,
}

impl CallTask {
    async fn run(
        mut self,
        mut outgoing: sip::OutgoingCall,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut call = Call::new(std::time::Instant::now(), self.config);
        let mut media: Option<u64> = None;
        let mut outcome_done = false;
        let mut states_open = true;
        self.drain(&mut call, &outgoing, &mut media).await;
        while !call.is_done() {
            let deadline = call.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                state = outgoing.states.recv(), if states_open => match state {
                    Some(state) => {
                        answer_in_dialog_request(&state, &self).await;
                        if let Some(event) = sip::event_of(&state) {
                            call.handle_sip(std::time::Instant::now(), event);
                        }
                    }
                    None => states_open = false,
                },
                result = &mut outgoing.outcome, if !outcome_done => {
                    outcome_done = true;
                    let retry = match &result {
                        Ok(outcome) if !call.is_hanging_up() => self.authenticate(outcome),
                        _ => None,
                    };
                    if let Some(retried) = retry {
                        // The challenge is answered with a new INVITE; the engine never sees it.
                        self.service.inner.stack.remove_dialog(&outgoing.dialog.id());
                        outgoing = retried;
                        outcome_done = false;
                        states_open = true;
                        continue;
                    }
                    let event = match result {
                        Ok(outcome) => sip::outcome_event(&outcome),
                        Err(_) => Some(SipEvent::TransportFailed),
                    };
                    if let Some(event) = event {
                        call.handle_sip(std::time::Instant::now(), event);
                    }
                }
                message = control.recv() => match message {
                    Some(Control::Hangup(ack)) => {
                        call.hang_up(std::time::Instant::now());
                        self.drain(&mut call, &outgoing, &mut media).await;
                        let _ = ack.send(());
                    }
                    None => call.hang_up(std::time::Instant::now()),
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    call.handle_timeout(std::time::Instant::now());
                }
            }
            self.drain(&mut call, &outgoing, &mut media).await;
        }
        if let Some(id) = media.take() {
            self.service.inner.media.stop(id);
        }
        if let Ok(mut live) = self.service.inner.live.lock() {
            live.remove(&self.record.id);
        }
        // Let the transaction layer finish (re-ACKs, the BYE's response) before forgetting it.
        if !outcome_done {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut outgoing.outcome).await;
        }
        self.service
            .inner
            .stack
            .remove_dialog(&outgoing.dialog.id());
    }

    /// Answers a 401/407 with a digest (at most twice per call: one proxy, one UAS challenge);
    /// `None` if the response is not a challenge openum can and may answer.
    fn authenticate(
        &mut self,
        outcome: &rsipstack::dialog::invitation::InviteAsyncResult,
    ) -> Option<sip::OutgoingCall> {
        let gateway = &self.service.inner.gateway;
        let (Some(username), Some(password)) = (&gateway.username, &gateway.password) else {
            return None;
        };
        let (proxy, values) = sip::challenges(outcome)?;
        if self.auth_attempts >= 2 {
            tracing::warn!("credentials refused by the gateway");
            return None;
        }
        self.auth_attempts += 1;
        let challenge = match call_engine::digest::choose(values.iter().map(String::as_str)) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot answer the digest challenge");
                return None;
            }
        };
        let cnonce = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let uri = SipStack::request_uri(gateway, &self.record.dialled);
        let value = call_engine::digest::answer(
            &challenge,
            &call_engine::digest::Request {
                method: "INVITE",
                uri: &uri,
                username,
                password,
                cnonce: &cnonce,
                nonce_count: 1,
            },
        );
        let authorization = if proxy {
            sip::Authorization::Proxy(value)
        } else {
            sip::Authorization::Www(value)
        };
        tracing::info!(
            algorithm = challenge.algorithm.token(),
            proxy,
            "answering digest challenge"
        );
        match self.service.inner.stack.invite(
            gateway,
            &self.record.dialled,
            self.offer.clone(),
            &self.call_id,
            Some(&authorization),
        ) {
            Ok(outgoing) => Some(outgoing),
            Err(e) => {
                tracing::warn!(error = %e, "cannot resend the INVITE with credentials");
                None
            }
        }
    }

    async fn drain(
        &mut self,
        call: &mut Call,
        outgoing: &sip::OutgoingCall,
        media: &mut Option<u64>,
    ) {
        while let Some(output) = call.poll_output() {
            match output {
                Output::Status(status) => self.record_status(&status).await,
                Output::Command(Command::Cancel) => {
                    if let Err(e) = outgoing.dialog.cancel().await {
                        tracing::warn!(error = %e, "CANCEL failed");
                    }
                }
                Output::Command(Command::Bye) => {
                    if let Err(e) = outgoing.dialog.bye().await {
                        tracing::debug!(error = %e, "BYE failed");
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
                    let start = std::time::Instant::now() + phase;
                    let stream = RtpStream::new(&plan, &self.audio, seed, start);
                    tracing::info!(remote = %plan.remote, codec = ?plan.codec, ptime = plan.ptime_ms, "media started");
                    *media = Some(self.service.inner.media.start(
                        Arc::clone(&self.socket),
                        plan.remote,
                        stream,
                    ));
                }
                Output::Command(Command::StopMedia) => {
                    if let Some(id) = media.take() {
                        self.service.inner.media.stop(id);
                    }
                }
            }
        }
    }

    async fn record_status(&mut self, status: &Status) {
        self.record.state = match status.phase {
            Phase::Connecting => CallState::Connecting,
            Phase::Alerted => CallState::Alerted,
            Phase::Connected => CallState::Connected,
            Phase::Disconnected => CallState::Disconnected,
        };
        self.record.cause = match status.cause {
            Cause::None => FailureCause::None,
            Cause::UserBusy => FailureCause::UserBusy,
            Cause::NoAnswer => FailureCause::NoAnswer,
            Cause::Unavailable => FailureCause::Unavailable,
            Cause::Other => FailureCause::Other,
        };
        self.record.sip_code = status.sip.as_ref().map(|s| s.code);
        self.record.sip_text = status.sip.as_ref().map(|s| s.reason.clone());
        if status.phase == Phase::Disconnected {
            self.record.ended_at = Some(now_unix());
        }
        tracing::info!(state = ?status.phase, cause = ?status.cause, sip = ?status.sip.as_ref().map(|s| s.code), "call status");
        if let Err(e) = self.service.inner.registry.update(&self.record).await {
            tracing::error!(error = %e, "cannot record call status");
        }
    }
}

/// Answers re-INVITE/UPDATE with our unchanged session, and OPTIONS/INFO with 200.
async fn answer_in_dialog_request(state: &rsipstack::dialog::dialog::DialogState, task: &CallTask) {
    use rsipstack::dialog::dialog::DialogState;
    use rsipstack::sip::{Header, StatusCode};
    match state {
        DialogState::Updated(_, _, handle) => {
            let body = task.offer.clone().into_bytes();
            let _ = handle
                .respond(
                    StatusCode::OK,
                    Some(vec![Header::ContentType("application/sdp".into())]),
                    Some(body),
                )
                .await;
        }
        DialogState::Options(_, _, handle) | DialogState::Info(_, _, handle) => {
            let _ = handle.reply(StatusCode::OK).await;
        }
        _ => {}
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The random part of a PhoneCallId (its base64 decodes to `uuid@node`); the id itself otherwise.
fn uuid_part(phone_call_id: &str) -> String {
    server::calls::phone_call_id_uuid(phone_call_id).unwrap_or_else(|| phone_call_id.to_owned())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
