//! openum's call runtime: drives the sans-I/O [`call_engine`] with tokio, rsipstack and UDP
//! sockets, and implements the domain's [`CallService`].
//!
//! It depends on the domain crate ([`calls`]) and the engine, never on the server: progress is
//! written through a [`CallRecorder`] and audio is read from an [`AudioSource`], both handed in
//! by whoever starts the service.
//!
//! # Layout
//!
//! - [`settings`]: the SIP listener and gateway settings the runtime takes.
//! - [`sip`]: the SIP user agent (rsipstack), dialogue events → engine events.
//! - [`dialog_states`]: one channel for every dialog's state changes, routed to each call.
//! - [`sip_udp`]: openum's own SIP/UDP socket in front of rsipstack (64 KiB datagrams, drops
//!   counted, a 2xx without Contact repaired).
//! - [`dns`]: RFC 3263 location of gateways given by host name (NAPTR, SRV, A/AAAA).
//! - [`gateways`]: gateway groups: trying order, failover rules, up/down, caps, address checks.
//! - [`options`]: OPTIONS pings marking gateways up and down.
//! - [`register`]: outbound REGISTER for gateways that require it.
//! - [`media`]: the RTP scheduler tasks that pace every stream; with `rtp_sockets = "shared"`
//!   each owns one RTP/RTCP socket pair for all its calls.
//! - [`udp`]: the media socket (std UDP, read through `AsyncFd`, READABLE only).
//! - `batch`: `sendmmsg`/`recvmmsg` batches for the shared sockets (nix).
//! - `demux`: which call a datagram on a shared socket belongs to (pure).
//! - [`ports`]: the RTP and RTCP ports of a call (`rtp_port_range`).
//! - [`rtcp`]: RTCP for a call's stream: Sender Reports, the far end's reports, BYE (as SRTCP
//!   on an SRTP call; to the far end's `a=rtcp` port when it names one).
//! - `symmetric`: symmetric RTP (RFC 4961): send where the far end's RTP comes from.
//! - [`tls`]: SIP over TLS to a gateway (rustls; the connection handed to rsipstack).
//! - [`srtp`]: SRTP for a call (SDES keys from the offer/answer, the per-packet transform), and
//!   SRTCP for its RTCP task.
//! - [`footprint`]: the in-memory size of a call's task and state, for the memory benchmark.
//! - `task`: one call's task, feeding its engine and carrying out its commands, over a
//!   `Dialogue` (rsipstack's in production, a scripted one in the tests, on paused time).
//! - this file: [`SipCallService`]: admission (gateway caps), audio, and starting call tasks.

mod batch;
mod demux;
pub mod dialog_states;
pub mod dns;
pub mod footprint;
pub mod gateways;
pub mod media;
pub mod options;
pub mod ports;
pub mod register;
pub mod rtcp;
pub mod settings;
pub mod sip;
pub mod sip_udp;
pub mod srtp;
mod symmetric;
mod task;
pub mod tls;
pub mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use call_engine::auth::{Credentials, DigestAuth};
use call_engine::call::{Call, CallConfig};
use call_engine::offer_answer::LocalSession;
use call_engine::rtp::PreparedAudio;
use call_engine::sdp;
use calls::service::Capacity;
use calls::sync::lock;
use calls::{
    error_chain, now_unix, AudioError, AudioSource, CallRecord, CallRecorder, CallService,
    CallServiceFigures, CallState, Hangup, PlaceError,
};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::gateways::Gateways;
use crate::media::MediaHandle;
use crate::settings::{GatewaySettings, SipSettings};
use crate::sip::{RsipDialogue, SipError, SipStack};
use crate::task::{CallTask, Control, Dialogue as _};

/// Places calls through SIP gateway groups.
#[derive(Clone)]
pub struct SipCallService {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: Arc<dyn CallRecorder>,
    audio_source: Arc<dyn AudioSource>,
    stack: Arc<SipStack>,
    media: MediaHandle,
    gateways: Arc<Gateways>,
    resolver: crate::dns::Resolver,
    rtp_address: IpAddr,
    rtp_port_range: Option<(u16, u16)>,
    media_public_address: Option<IpAddr>,
    live: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    audio: Mutex<HashMap<String, Weak<PreparedAudio>>>,
    /// Set once shutdown begins: no new call is placed.
    closing: std::sync::atomic::AtomicBool,
}

impl SipCallService {
    /// Starts the SIP stack and the media scheduler, with one gateway.
    pub async fn start(
        recorder: Arc<dyn CallRecorder>,
        audio_source: Arc<dyn AudioSource>,
        sip: &SipSettings,
        gateway: GatewaySettings,
    ) -> Result<Self, SipError> {
        Self::start_with_gateways(recorder, audio_source, sip, vec![gateway]).await
    }

    /// Starts the SIP stack, the media scheduler and the OPTIONS pings, with `gateways` in
    /// configuration order (unrouted calls go to the first one's group).
    pub async fn start_with_gateways(
        recorder: Arc<dyn CallRecorder>,
        audio_source: Arc<dyn AudioSource>,
        sip: &SipSettings,
        gateways: Vec<GatewaySettings>,
    ) -> Result<Self, SipError> {
        let stack = Arc::new(SipStack::start(sip).await?);
        // Each TLS gateway's client is built now: unusable TLS files fail the start, naming
        // the gateway, the key and the path.
        let gateways =
            Arc::new(Gateways::new(gateways).map_err(|e| SipError::TlsSetup(Box::new(e)))?);
        let names: Vec<&str> = gateways.all().iter().map(|g| g.name()).collect();
        tracing::info!(sip = %stack.local_addr(), gateways = ?names, "SIP user agent ready");
        let resolver = crate::dns::Resolver::new(&sip.dns_servers);
        crate::options::spawn_pings(&stack, &gateways, &resolver);
        crate::register::spawn_registrations(&stack, &gateways, &resolver);
        let media = match sip.rtp_sockets {
            media::RtpSockets::PerCall => MediaHandle::spawn(),
            media::RtpSockets::Shared => {
                MediaHandle::spawn_shared(sip.rtp_address, sip.rtp_port_range)
                    .await
                    .map_err(|e| SipError::Setting {
                        setting: "sip.rtp_sockets",
                        value: "shared".to_owned(),
                        source: format!(
                            "cannot bind the shared RTP/RTCP sockets on {} ({}): {e}",
                            sip.rtp_address,
                            sip.rtp_port_range.map_or_else(
                                || "any port".to_owned(),
                                |(l, h)| format!("rtp_port_range {l}-{h}")
                            ),
                        )
                        .into(),
                    })?
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                recorder,
                audio_source,
                stack,
                media,
                gateways,
                resolver,
                rtp_address: sip.rtp_address,
                rtp_port_range: sip.rtp_port_range,
                media_public_address: sip.media_public_address,
                live: Mutex::new(HashMap::new()),
                audio: Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The gateways and their live state.
    pub fn gateways(&self) -> &Gateways {
        &self.inner.gateways
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
        lock(&self.inner.live).len()
    }

    /// Hangs up every live call and waits (up to `within`) until each is recorded as ended.
    pub async fn shutdown(&self, within: Duration) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.inner.live).keys().cloned().collect();
        for id in &ids {
            // NotLive means the call ended on its own meanwhile: nothing left to do.
            self.hangup(id).await;
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.live_calls() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The calls' BYEs and CANCELs run in the background: let them go out and be answered
        // (within the same bound) before the stack stops.
        let unanswered = self.inner.stack.settle_background(deadline).await;
        if unanswered > 0 {
            tracing::warn!(
                unanswered,
                "BYE/CANCEL requests still unanswered at shutdown; the far ends' own timers end those calls"
            );
        }
        // Calls still waiting for a final response after CANCEL are recorded ended now: the
        // node is going away and nothing will be played.
        for id in ids {
            let record = match self.inner.recorder.get(&id).await {
                Ok(Some(record)) if !record.is_finished() => record,
                Ok(_) => continue,
                Err(error) => {
                    tracing::error!(call = %id, error = %error_chain(&error), "cannot close a call at shutdown");
                    continue;
                }
            };
            let closed = CallRecord {
                state: CallState::Disconnected,
                ended_at: Some(now_unix()),
                ..record
            };
            if let Err(error) = self.inner.recorder.update(&closed).await {
                tracing::error!(call = %id, error = %error_chain(&error), "cannot close a call at shutdown");
            }
        }
        self.inner.stack.shutdown();
    }

    async fn prepared_audio(&self, item_id: &str) -> Result<Arc<PreparedAudio>, AudioError> {
        let cached = lock(&self.inner.audio).get(item_id).and_then(Weak::upgrade);
        if let Some(audio) = cached {
            return Ok(audio);
        }
        let pcm = self.inner.audio_source.pcm(item_id).await?;
        if pcm.is_empty() {
            return Err(AudioError::Empty);
        }
        let audio = Arc::new(PreparedAudio::from_pcm(&pcm));
        let mut cache = lock(&self.inner.audio);
        cache.retain(|_, weak| weak.strong_count() > 0);
        cache.insert(item_id.to_owned(), Arc::downgrade(&audio));
        Ok(audio)
    }
}

#[async_trait]
impl CallService for SipCallService {
    fn available(&self) -> bool {
        !self.inner.gateways.is_empty()
    }

    async fn place(&self, record: &CallRecord) -> Result<(), PlaceError> {
        self.place_via(record, None).await
    }

    async fn place_via(&self, record: &CallRecord, group: Option<&str>) -> Result<(), PlaceError> {
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PlaceError::ShuttingDown);
        }
        let mut route = self.inner.gateways.route(group, &mut rand::thread_rng());
        if route.is_empty() {
            return Err(PlaceError::NoGateway);
        }
        // Gateways that require registration take calls only once registered: a call waits
        // (bounded) for a first registration under way, and skips a gateway not registered.
        let mut unregistered = None;
        let mut registered = Vec::with_capacity(route.len());
        for gateway in route {
            let state = match &gateway.settings.register {
                Some(register) => gateway.ready_for_calls(register.call_wait).await,
                None => gateways::Registration::NotRequired,
            };
            match state {
                gateways::Registration::NotRequired | gateways::Registration::Registered => {
                    registered.push(gateway);
                }
                state => {
                    tracing::warn!(call = %record.id, gateway = %gateway.name(), ?state, "gateway skipped: not registered");
                    unregistered.get_or_insert(gateways::NotRegistered {
                        gateway: gateway.name().to_owned(),
                        state,
                    });
                }
            }
        }
        route = registered;
        if route.is_empty() {
            if let Some(error) = unregistered {
                return Err(PlaceError::Signalling(Box::new(error)));
            }
            return Err(PlaceError::NoGateway);
        }
        // The caps apply to the gateway the call starts on: the first of the route that has
        // room. Gateways without room are skipped; with none left, the first one's cap is said.
        let mut refused = None;
        let mut start = None;
        for (i, gateway) in route.iter().enumerate() {
            match gateway
                .check_calls_cap()
                .and_then(|()| gateway.take_rate_token())
            {
                Ok(()) => {
                    start = Some(i);
                    break;
                }
                Err(capacity) => {
                    refused.get_or_insert(capacity);
                }
            }
        }
        let Some(start) = start else {
            return Err(PlaceError::OverCapacity(refused.unwrap_or_else(|| {
                Capacity::GatewayCalls {
                    gateway: route[0].name().to_owned(),
                    cap: route[0].settings.max_concurrent_calls,
                }
            })));
        };
        route.drain(..start);
        let mut route = gateways::Route::new(
            self.inner.resolver.clone(),
            self.inner.stack.local_addr().ip(),
            route,
        );
        // The SIP Call-ID is derived from the PhoneCallId's random part so that a trace can be
        // matched to the EWS call without a lookup table.
        let call_id = format!("{}@openum", uuid_part(&record.id));
        // One span per call, carrying both identities, around everything the task logs
        // (from the gateway's DNS lookup on).
        let span = tracing::info_span!("call", phone_call_id = %record.id, sip_call_id = %call_id);
        let (first, settings) = match route.next().instrument(span.clone()).await {
            Ok(Some(attempt)) => attempt,
            Ok(None) => return Err(PlaceError::NoGateway),
            Err(error) => return Err(PlaceError::Signalling(Box::new(error))),
        };
        let audio = self.prepared_audio(&record.item_id).await?;
        // With shared sockets the stream's id picks its shard, whose ports the SDP advertises.
        let stream_id = self.inner.media.next_stream_id();
        let (socket, rtcp_socket) = match self.inner.media.shared_sockets(stream_id) {
            Some(shared) => shared,
            None => {
                let (rtp, rtcp) =
                    ports::bind_pair(self.inner.rtp_address, self.inner.rtp_port_range)
                        .await
                        .map_err(PlaceError::MediaSocket)?;
                (Arc::new(rtp), Arc::new(rtcp))
            }
        };
        let bound = socket.local_addr().map_err(PlaceError::MediaSocket)?;
        // What the far end is told: the public media address behind a NAT, else the bound one.
        let rtp_local = SocketAddr::new(
            self.inner.media_public_address.unwrap_or(bound.ip()),
            bound.port(),
        );
        let session_id: u64 = rand::thread_rng().gen();
        // The SRTP offer is the first gateway's; a failover makes the next gateway's own.
        let plain_offer = sdp::offer(rtp_local, session_id);
        let srtp = srtp::CallSrtp::new(settings.srtp);
        let offer = srtp.offer(&plain_offer);
        let attempt = first.attempt();
        // Over TLS the INVITE waits for the connection, in the call's task: a connection or
        // certificate failure moves the call to the next gateway, or ends it (cause Other),
        // rather than failing the PlayOnPhone request.
        let (outgoing, pending) = match &first.tls {
            Some(client) => (
                None,
                Some(span.in_scope(|| {
                    RsipDialogue::over_tls(
                        &self.inner.stack,
                        Arc::clone(client),
                        &settings,
                        &record.dialled,
                        &offer,
                        &call_id,
                    )
                })),
            ),
            None => (
                Some(
                    span.in_scope(|| {
                        self.inner.stack.invite(
                            &settings,
                            &record.dialled,
                            offer.clone(),
                            &call_id,
                            None,
                            None,
                        )
                    })
                    .map_err(|e| PlaceError::Signalling(Box::new(e)))?,
                ),
                None,
            ),
        };
        let config = call_config(&first.settings, audio.duration());
        let session = LocalSession::new(rtp_local, session_id);
        let call = Call::with_auth(
            tokio::time::Instant::now().into_std(),
            config,
            digest_auth(&first.settings, &record.dialled),
        )
        .with_session(session.clone());
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        lock(&self.inner.live).insert(record.id.clone(), control_tx);
        let task = CallTask {
            dialogue: RsipDialogue {
                stack: Arc::clone(&self.inner.stack),
                gateway: settings,
                attempt,
                next: route,
                message: audio.duration(),
                number: record.dialled.clone(),
                call_id,
                offer,
                plain_offer,
                session,
                outgoing,
                pending,
                destination: None,
                connection: None,
                tls: first.tls.clone(),
                states_open: true,
                outcome_done: false,
                offers: crate::sip::InDialogOffers::default(),
            },
            recorder: Arc::clone(&self.inner.recorder),
            media: self.inner.media.clone(),
            record: record.clone(),
            audio,
            socket,
            srtp,
            rtcp_socket,
            stream_id,
        };
        let service = self.clone();
        let id = record.id.clone();
        // The task's future is boxed before the block captures it: a future captured by value
        // and awaited in an async block is held twice by the block (its capture and the
        // awaited copy), and so would `task` and `call` be if the block made the future.
        let run = Box::pin(task.run(call, control_rx));
        let run_bytes = std::mem::size_of_val(&*run);
        let body = async move {
            let mut dialogue = run.await;
            lock(&service.inner.live).remove(&id);
            dialogue.close().await;
        };
        footprint::record_call_task(run_bytes, std::mem::size_of_val(&body));
        tokio::spawn(body.instrument(span));
        Ok(())
    }

    fn figures(&self) -> CallServiceFigures {
        let stats = self.inner.media.stats();
        CallServiceFigures {
            // usize → u64 is lossless on every supported target.
            live_calls: self.live_calls() as u64,
            rtp_packets_sent: stats
                .packets_sent
                .load(std::sync::atomic::Ordering::Relaxed),
            rtp_send_errors: stats.send_errors.load(std::sync::atomic::Ordering::Relaxed),
            media_datagrams_dropped: if self.inner.media.is_shared() {
                use std::sync::atomic::Ordering::Relaxed;
                vec![
                    ("ambiguous", stats.dropped_ambiguous.load(Relaxed)),
                    ("malformed", stats.dropped_malformed.load(Relaxed)),
                    ("unknown", stats.dropped_unknown.load(Relaxed)),
                ]
            } else {
                Vec::new()
            },
            gateways_up: self
                .inner
                .gateways
                .all()
                .iter()
                .map(|g| (g.name().to_owned(), g.is_up()))
                .collect(),
            gateways_registered: self
                .inner
                .gateways
                .all()
                .iter()
                .filter(|g| g.registration() != gateways::Registration::NotRequired)
                .map(|g| {
                    (
                        g.name().to_owned(),
                        g.registration() == gateways::Registration::Registered,
                    )
                })
                .collect(),
            sip_dropped: self.inner.stack.udp_stats().dropped(),
            sip_keepalives: self.inner.stack.udp_stats().keepalives(),
            sip_contact_repairs: self.inner.stack.udp_stats().contact_repairs(),
            ..rtcp_figures(self.inner.media.rtcp_stats())
        }
    }

    async fn hangup(&self, id: &str) -> Hangup {
        let sender = lock(&self.inner.live).get(id).cloned();
        let Some(sender) = sender else {
            return Hangup::NotLive;
        };
        let (ack, acked) = oneshot::channel();
        if sender.send(Control::Hangup(ack)).is_err() {
            return Hangup::NotLive;
        }
        // The task acknowledges once the engine has decided (CANCEL or BYE sent). If it does not
        // within 5 s, the hang-up still goes ahead in the task; the caller is not held longer.
        if tokio::time::timeout(Duration::from_secs(5), acked)
            .await
            .is_err()
        {
            tracing::warn!(call = %id, "hang-up not acknowledged within 5 s; it proceeds in the background");
        }
        Hangup::Ending
    }
}

/// The engine settings of a call attempt through `gateway`.
pub(crate) fn call_config(gateway: &GatewaySettings, message: Duration) -> CallConfig {
    CallConfig {
        ring_timeout: Duration::from_secs(gateway.ring_timeout_secs),
        ..CallConfig::new(message)
    }
}

/// The digest answerer of a call attempt through `gateway`, if it has credentials.
pub(crate) fn digest_auth(gateway: &GatewaySettings, number: &str) -> Option<DigestAuth> {
    gateway.credentials.as_ref().map(|(username, password)| {
        DigestAuth::new(
            Credentials::new(username.clone(), password.clone()),
            SipStack::request_uri(gateway, number),
            rand::thread_rng().gen(),
        )
    })
}

/// The RTCP part of the figures.
fn rtcp_figures(stats: &rtcp::RtcpStats) -> CallServiceFigures {
    use std::sync::atomic::Ordering::Relaxed;
    // Microsecond sums as seconds: f64 holds them exactly far beyond any uptime.
    #[allow(clippy::cast_precision_loss)]
    let seconds = |us: u64| us as f64 / 1e6;
    CallServiceFigures {
        rtcp_sender_reports_sent: stats.sender_reports_sent.load(Relaxed),
        rtcp_reports_received: stats.reports_received.load(Relaxed),
        rtcp_packets_lost: stats.packets_lost.load(Relaxed),
        rtcp_jitter_seconds_total: seconds(stats.jitter_us_total.load(Relaxed)),
        rtcp_round_trip_seconds_total: seconds(stats.round_trip_us_total.load(Relaxed)),
        rtcp_round_trips: stats.round_trips.load(Relaxed),
        rtcp_dropped: stats.dropped(),
        ..CallServiceFigures::default()
    }
}

/// The random part of a PhoneCallId (its base64 decodes to `uuid@node`); the id itself otherwise.
fn uuid_part(phone_call_id: &str) -> String {
    calls::id::parse_phone_call_id(phone_call_id)
        .map_or_else(|| phone_call_id.to_owned(), |parts| parts.uuid)
}
