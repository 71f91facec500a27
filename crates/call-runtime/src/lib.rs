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
//! - [`media`]: the RTP scheduler tasks that pace every stream.
//! - [`ports`]: the RTP port of a call (`rtp_port_range`).
//! - `symmetric`: symmetric RTP (RFC 4961): send where the far end's RTP comes from.
//! - [`tls`]: SIP over TLS to a gateway (rustls; the connection handed to rsipstack).
//! - [`srtp`]: SRTP for a call (SDES keys from the offer/answer, the per-packet transform).
//! - `task`: one call's task, feeding its engine and carrying out its commands, over a
//!   `Dialogue` (rsipstack's in production, a scripted one in the tests, on paused time).
//! - this file: [`SipCallService`]: admission (gateway caps), audio, and starting call tasks.

pub mod media;
pub mod ports;
pub mod settings;
pub mod sip;
pub mod srtp;
mod symmetric;
mod task;
pub mod tls;

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

use crate::media::MediaHandle;
use crate::settings::{GatewaySettings, SipSettings};
use crate::sip::{RsipDialogue, SipError, SipStack};
use crate::task::{CallTask, Control, Dialogue as _};

/// Places calls through one SIP gateway.
#[derive(Clone)]
pub struct SipCallService {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: Arc<dyn CallRecorder>,
    audio_source: Arc<dyn AudioSource>,
    stack: Arc<SipStack>,
    media: MediaHandle,
    gateway: Arc<GatewaySettings>,
    /// The gateway's TLS client, when signalling to it runs over TLS.
    tls: Option<Arc<tls::TlsClient>>,
    rtp_address: IpAddr,
    rtp_port_range: Option<(u16, u16)>,
    media_public_address: Option<IpAddr>,
    live: Mutex<HashMap<String, mpsc::UnboundedSender<Control>>>,
    audio: Mutex<HashMap<String, Weak<PreparedAudio>>>,
    /// Set once shutdown begins: no new call is placed.
    closing: std::sync::atomic::AtomicBool,
    /// Token bucket of the gateway's calls-per-second cap: (tokens, last refill).
    rate: Mutex<(f64, std::time::Instant)>,
}

impl SipCallService {
    /// Starts the SIP stack and the media scheduler.
    pub async fn start(
        recorder: Arc<dyn CallRecorder>,
        audio_source: Arc<dyn AudioSource>,
        sip: &SipSettings,
        gateway: GatewaySettings,
    ) -> Result<Self, SipError> {
        let tls = if gateway.uses_tls() {
            let client = tls::TlsClient::new(
                &gateway.name,
                &sip::gateway_host(&gateway),
                sip::gateway_target(&gateway),
                &gateway.tls,
            )
            .map_err(|e| SipError::TlsSetup(Box::new(e)))?;
            Some(Arc::new(client))
        } else {
            None
        };
        let stack = SipStack::start(sip).await?;
        let gateway_cps = gateway.calls_per_second;
        tracing::info!(sip = %stack.local_addr(), gateway = %gateway.name, "SIP user agent ready");
        Ok(Self {
            inner: Arc::new(Inner {
                recorder,
                audio_source,
                stack: Arc::new(stack),
                media: MediaHandle::spawn(),
                gateway: Arc::new(gateway),
                tls,
                rtp_address: sip.rtp_address,
                rtp_port_range: sip.rtp_port_range,
                media_public_address: sip.media_public_address,
                live: Mutex::new(HashMap::new()),
                audio: Mutex::new(HashMap::new()),
                closing: std::sync::atomic::AtomicBool::new(false),
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

    /// Spends one token of the calls-per-second bucket, or says when to retry.
    fn take_rate_token(&self) -> Result<(), PlaceError> {
        let cps = f64::from(self.inner.gateway.calls_per_second);
        let mut bucket = lock(&self.inner.rate);
        let now = std::time::Instant::now();
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * cps).min(cps);
        if tokens < 1.0 {
            *bucket = (tokens, now);
            // At most 1000 ms (cps ≥ 1 and tokens ≥ 0): the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let retry_in_ms = ((1.0 - tokens) / cps * 1000.0).ceil() as u64;
            return Err(PlaceError::OverCapacity(Capacity::GatewayRate {
                gateway: self.inner.gateway.name.clone(),
                per_second: self.inner.gateway.calls_per_second,
                retry_in_ms,
            }));
        }
        *bucket = (tokens - 1.0, now);
        Ok(())
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
        self.inner.gateway.enabled
    }

    async fn place(&self, record: &CallRecord) -> Result<(), PlaceError> {
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(PlaceError::ShuttingDown);
        }
        let cap = self.inner.gateway.max_concurrent_calls;
        if self.live_calls() >= cap {
            return Err(PlaceError::OverCapacity(Capacity::GatewayCalls {
                gateway: self.inner.gateway.name.clone(),
                cap,
            }));
        }
        self.take_rate_token()?;
        let audio = self.prepared_audio(&record.item_id).await?;
        let socket = ports::bind_rtp(self.inner.rtp_address, self.inner.rtp_port_range)
            .await
            .map_err(PlaceError::MediaSocket)?;
        let bound = socket.local_addr().map_err(PlaceError::MediaSocket)?;
        // What the far end is told: the public media address behind a NAT, else the bound one.
        let rtp_local = SocketAddr::new(
            self.inner.media_public_address.unwrap_or(bound.ip()),
            bound.port(),
        );
        let session_id: u64 = rand::thread_rng().gen();
        let gateway = &self.inner.gateway;
        let srtp = srtp::CallSrtp::new(gateway.srtp);
        let offer = srtp.offer(&sdp::offer(rtp_local, session_id));
        // The SIP Call-ID is derived from the PhoneCallId's random part so that a trace can be
        // matched to the EWS call without a lookup table.
        let call_id = format!("{}@openum", uuid_part(&record.id));
        // Over TLS the INVITE waits for the connection, in the call's task: a connection or
        // certificate failure ends the call (cause Other) rather than the PlayOnPhone request.
        let (outgoing, pending) = match &self.inner.tls {
            Some(client) => (
                None,
                Some(RsipDialogue::over_tls(
                    &self.inner.stack,
                    Arc::clone(client),
                    gateway,
                    &record.dialled,
                    &offer,
                    &call_id,
                )),
            ),
            None => (
                Some(
                    self.inner
                        .stack
                        .invite(
                            gateway,
                            &record.dialled,
                            offer.clone(),
                            &call_id,
                            None,
                            None,
                        )
                        .map_err(|e| PlaceError::Signalling(Box::new(e)))?,
                ),
                None,
            ),
        };
        let auth = gateway.credentials.as_ref().map(|(username, password)| {
            DigestAuth::new(
                Credentials::new(username.clone(), password.clone()),
                SipStack::request_uri(gateway, &record.dialled),
                rand::thread_rng().gen(),
            )
        });
        let config = CallConfig {
            ring_timeout: Duration::from_secs(gateway.ring_timeout_secs),
            ..CallConfig::new(audio.duration())
        };
        let call = Call::with_auth(tokio::time::Instant::now().into_std(), config, auth)
            .with_session(LocalSession::new(rtp_local, session_id));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        lock(&self.inner.live).insert(record.id.clone(), control_tx);
        // One span per call, carrying both identities, around everything the task logs.
        let span = tracing::info_span!("call", phone_call_id = %record.id, sip_call_id = %call_id);
        let task = CallTask {
            dialogue: RsipDialogue {
                stack: Arc::clone(&self.inner.stack),
                gateway: Arc::clone(gateway),
                number: record.dialled.clone(),
                call_id,
                offer,
                outgoing,
                pending,
                destination: None,
                connection: None,
                tls: self.inner.tls.clone(),
                states_open: true,
                outcome_done: false,
                offers: crate::sip::InDialogOffers::default(),
            },
            recorder: Arc::clone(&self.inner.recorder),
            media: self.inner.media.clone(),
            record: record.clone(),
            audio,
            socket: Arc::new(socket),
            srtp,
        };
        let service = self.clone();
        let id = record.id.clone();
        tokio::spawn(
            async move {
                let mut dialogue = task.run(call, control_rx).await;
                lock(&service.inner.live).remove(&id);
                dialogue.close().await;
            }
            .instrument(span),
        );
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

/// The random part of a PhoneCallId (its base64 decodes to `uuid@node`); the id itself otherwise.
fn uuid_part(phone_call_id: &str) -> String {
    calls::id::parse_phone_call_id(phone_call_id)
        .map_or_else(|| phone_call_id.to_owned(), |parts| parts.uuid)
}
