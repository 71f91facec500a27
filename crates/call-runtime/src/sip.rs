//! The SIP user agent: rsipstack's transport, transaction and dialog layers, behind openum's own
//! small interface. Everything rsipstack-specific stays in this file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use call_engine::auth::Authorization;
use call_engine::call::{SipEvent, SipStatus};
use rsipstack::dialog::dialog::{DialogState, TerminatedReason, TransactionHandle};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use rsipstack::dialog::DialogId;
use rsipstack::sip::prelude::HeadersExt as _;
use rsipstack::sip::{Header, HostWithPort, Method, Request, Response, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::settings::{GatewaySettings, SipSettings, Transport as GatewayTransport};

/// Why the SIP stack could not start or a call could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// Binding a SIP listener failed.
    #[error("cannot start SIP on {address}")]
    Bind {
        /// What was being bound.
        address: String,
        /// rsipstack's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<rsipstack::Error>,
    },
    /// A configured URI or address does not parse.
    #[error("invalid SIP setting {setting}: {value:?}")]
    Setting {
        /// Which setting (e.g. `gateway uri`).
        setting: &'static str,
        /// Its value.
        value: String,
        /// The parser's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// rsipstack refused to create the call.
    #[error("cannot send the INVITE")]
    Invite(#[source] Box<rsipstack::Error>),
    /// The TLS connection to the gateway could not be opened.
    #[error("no TLS connection to the gateway")]
    Tls(#[source] Box<crate::tls::TlsConnectError>),
    /// The gateway's TLS settings are unusable.
    #[error("unusable TLS settings")]
    TlsSetup(#[source] Box<crate::tls::TlsSetupError>),
    /// An in-dialog request (CANCEL, BYE) could not be sent.
    #[error("cannot send the {method}")]
    Request {
        /// The method.
        method: &'static str,
        /// rsipstack's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<rsipstack::Error>,
    },
}

impl SipError {
    fn request(method: &'static str) -> impl FnOnce(rsipstack::Error) -> Self {
        move |source| Self::Request {
            method,
            source: Box::new(source),
        }
    }

    fn setting(
        setting: &'static str,
        value: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Setting {
            setting,
            value: value.to_owned(),
            source: Box::new(source),
        }
    }
}

/// The running SIP stack.
pub struct SipStack {
    dialogs: Arc<DialogLayer>,
    /// The transaction layer, for requests outside dialogs (OPTIONS pings).
    pub(crate) endpoint: rsipstack::transaction::endpoint::EndpointInnerRef,
    local: SocketAddr,
    cancel: CancellationToken,
    /// The one channel every dialog reports its states on, routed to each call.
    dialog_states: crate::dialog_states::DialogStates,
    /// The SIP/UDP reader's counters.
    udp_stats: Arc<crate::sip_udp::SipUdpStats>,
    /// The CANCEL and BYE transactions running in the background (see [`Self::in_background`]),
    /// waited for at shutdown before the stack stops.
    background: tokio_util::task::TaskTracker,
}

/// An outgoing call's handles.
pub struct OutgoingCall {
    /// The dialog (CANCEL, BYE).
    pub dialog: rsipstack::dialog::invite_dialog::InviteDialog,
    /// Dialogue state changes (through the stack's shared channel, see `dialog_states`).
    pub states: crate::dialog_states::CallStates,
    /// The INVITE transaction's outcome; `None` once taken, which frees rsipstack's finished
    /// INVITE task (~1.3 KiB a call for the rest of the call otherwise).
    pub outcome: Option<tokio::task::JoinHandle<InviteAsyncResult>>,
}

impl SipStack {
    /// Binds UDP and TCP on `config.listen` and starts the endpoint and the in-dialog request
    /// dispatcher.
    pub async fn start(config: &SipSettings) -> Result<Self, SipError> {
        let cancel = CancellationToken::new();
        let transport = TransportLayer::new(cancel.child_token());
        // openum reads and writes its own UDP socket (64 KiB datagrams, 2xx Contact repair);
        // rsipstack writes through it and is fed what it reads: see `sip_udp`.
        let own_udp = crate::sip_udp::SipUdp::bind(
            config.listen,
            config.public_address,
            cancel.child_token(),
        )
        .await
        .map_err(|source| SipError::Bind {
            address: format!("UDP {}", config.listen),
            source: Box::new(source),
        })?;
        let udp = own_udp.connection().clone();
        let udp_stats = own_udp.stats();
        let bound: SocketAddr = udp.get_addr().addr.to_string().parse().map_err(
            |source: std::net::AddrParseError| SipError::Bind {
                address: format!("UDP {}", config.listen),
                source: Box::new(source.into()),
            },
        )?;
        // What gateways see: the configured public address, else what was bound.
        let local = config.public_address.unwrap_or(bound);
        transport.add_transport(udp.into());
        own_udp
            .serve(&transport, cancel.child_token())
            .await
            .map_err(|source| SipError::Bind {
                address: format!("UDP {}", config.listen),
                source: Box::new(source),
            })?;
        // TCP listens on the same port as UDP, so a gateway can reach us either way.
        match TcpListenerConnection::new(bound, config.public_address).await {
            Ok(tcp) => transport.add_transport(tcp.into()),
            Err(e) => tracing::warn!(error = %e, %local, "SIP over TCP not listening"),
        }
        let endpoint = EndpointBuilder::new()
            .with_user_agent(&config.user_agent)
            .with_transport_layer(transport)
            .with_cancel_token(cancel.child_token())
            .with_inspector(Box::new(crate::sip_udp::ContactRepair::new(Arc::clone(
                &udp_stats,
            ))))
            .with_option(EndpointOption {
                t1: Duration::from_millis(config.t1_ms),
                t1x64: Duration::from_millis(config.t1_ms * 64),
                ..EndpointOption::default()
            })
            .build();
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|source| SipError::Bind {
                address: format!("endpoint {local}"),
                source: Box::new(source),
            })?;
        let inner = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                tracing::error!(error = %e, "SIP endpoint stopped");
            }
        });
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let dispatcher = Arc::clone(&dialogs);
        // In-dialog requests (BYE, re-INVITE, UPDATE, OPTIONS, INFO) must be handed to their
        // dialog; anything else is answered here.
        tokio::spawn(async move {
            while let Some(mut tx) = incoming.recv().await {
                match dispatcher.match_dialog(&tx) {
                    Some(mut dialog) => {
                        tokio::spawn(async move {
                            if let Err(e) = dialog.handle(&mut tx).await {
                                tracing::debug!(error = %e, "in-dialog request failed");
                            }
                        });
                    }
                    None => {
                        let status = match tx.original.method {
                            Method::Options => StatusCode::OK,
                            Method::Ack => continue,
                            _ => StatusCode::CallTransactionDoesNotExist,
                        };
                        if let Err(e) = tx.reply(status).await {
                            tracing::debug!(error = %e, "reply to stray request failed");
                        }
                    }
                }
            }
        });
        Ok(Self {
            dialogs,
            endpoint: endpoint.inner.clone(),
            local,
            cancel,
            dialog_states: crate::dialog_states::DialogStates::start(),
            udp_stats,
            background: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The SIP/UDP reader's counters (drops by reason, keep-alives, Contact repairs).
    pub fn udp_stats(&self) -> &crate::sip_udp::SipUdpStats {
        &self.udp_stats
    }

    /// A token cancelled when the stack stops.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The address SIP is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Opens (or reuses) the TLS connection to a gateway at `target` (`host:port`); returns its
    /// address as the transport layer keys it, the destination of the INVITE.
    pub async fn connect_tls(
        &self,
        client: &crate::tls::TlsClient,
        target: &str,
    ) -> Result<(SipAddr, CancellationToken), crate::tls::TlsConnectError> {
        client
            .connect(target, &self.endpoint.transport_layer, &self.cancel)
            .await
    }

    /// The Via of a request outside dialogs (OPTIONS, REGISTER) sent over `transport`: like an
    /// INVITE's, a listener's address with that transport (and `alias` over TCP/TLS, RFC
    /// 5923, so the gateway answers and sends back over openum's connection).
    pub(crate) fn via(
        &self,
        transport: Transport,
    ) -> Result<rsipstack::sip::typed::Via, Box<rsipstack::Error>> {
        let layer = &self.endpoint.transport_layer;
        let address = (transport != Transport::Udp)
            .then(|| {
                let listens = layer.get_listen_addrs();
                listens
                    .iter()
                    .find(|a| a.r#type == Some(transport))
                    .cloned()
                    .or_else(|| {
                        let mut address = listens.first().cloned()?;
                        address.r#type = Some(transport);
                        Some(address)
                    })
            })
            .flatten();
        self.endpoint
            .get_via(address, Some(rsipstack::transaction::make_via_branch()))
            .map_err(Box::new)
    }

    /// Where a request outside dialogs to `gateway` goes: over TLS its connection to
    /// `host_port` (opened or reused with the gateway's own certificate checks), else
    /// `host_port` over the gateway's transport. Also the transport for [`Self::via`].
    pub(crate) async fn destination(
        &self,
        gateway: &crate::gateways::Gateway,
        host_port: &str,
    ) -> Result<(SipAddr, Transport), SipError> {
        if let Some(client) = &gateway.tls {
            let (address, _) = self
                .connect_tls(client, host_port)
                .await
                .map_err(|e| SipError::Tls(Box::new(e)))?;
            return Ok((address, Transport::Tls));
        }
        let transport = match gateway.settings.transport {
            GatewayTransport::Udp => Transport::Udp,
            // A TLS gateway always has its client (see `Gateways::new`).
            GatewayTransport::Tcp | GatewayTransport::Tls => Transport::Tcp,
        };
        let addr = HostWithPort::try_from(host_port)
            .map_err(|e| SipError::setting("gateway address", host_port, e))?;
        Ok((
            SipAddr {
                r#type: Some(transport),
                addr,
            },
            transport,
        ))
    }

    /// The Request-URI of a call to `number` through `gateway`.
    pub fn request_uri(gateway: &GatewaySettings, number: &str) -> String {
        gateway.uri.replace("{number}", number)
    }

    /// Sends an INVITE for `number` through `gateway` with `sdp` as the offer, carrying
    /// `authorization` (an answer to a previous 401/407) if given, to `destination` (an open
    /// TLS connection's address) or else the gateway's address.
    pub fn invite(
        &self,
        gateway: &GatewaySettings,
        number: &str,
        sdp: String,
        call_id: &str,
        authorization: Option<Authorization>,
        destination: Option<&SipAddr>,
    ) -> Result<OutgoingCall, SipError> {
        let callee_text = Self::request_uri(gateway, number);
        let callee = Uri::try_from(callee_text.as_str())
            .map_err(|e| SipError::setting("gateway uri", &callee_text, e))?;
        let from_text = gateway
            .from
            .clone()
            .unwrap_or_else(|| format!("sip:openum@{}", self.local));
        let caller = Uri::try_from(from_text.as_str())
            .map_err(|e| SipError::setting("gateway from", &from_text, e))?;
        let transport = match gateway.transport {
            _ if gateway.uses_tls() => Transport::Tls,
            GatewayTransport::Udp => Transport::Udp,
            GatewayTransport::Tcp | GatewayTransport::Tls => Transport::Tcp,
        };
        // RFC 3261 §8.1.1.8 / RFC 5630 §3.1.3: a request to a SIPS URI has a SIPS Contact; over
        // TLS to a plain SIP URI the Contact says transport=tls. openum has no TLS listener: the
        // gateway reaches it back over the connection openum opened (Via `alias`, RFC 5923).
        let contact_text = match gateway.transport {
            _ if callee_text.starts_with("sips:") => format!("sips:openum@{}", self.local),
            _ if gateway.uses_tls() => format!("sip:openum@{};transport=tls", self.local),
            GatewayTransport::Udp => format!("sip:openum@{}", self.local),
            GatewayTransport::Tcp | GatewayTransport::Tls => {
                format!("sip:openum@{};transport=tcp", self.local)
            }
        };
        let contact = Uri::try_from(contact_text.as_str())
            .map_err(|e| SipError::setting("contact", &contact_text, e))?;
        let destination = match destination {
            Some(destination) => destination.clone(),
            None => {
                let target = gateway_target(gateway);
                SipAddr {
                    r#type: Some(transport),
                    addr: HostWithPort::try_from(target.as_str())
                        .map_err(|e| SipError::setting("gateway address", &target, e))?,
                }
            }
        };
        let mut headers = gateway
            .headers
            .iter()
            .map(|(name, value)| Header::Other(name.as_str().into(), value.as_str().into()))
            .collect::<Vec<_>>();
        // Digest is answered by openum (call_engine::digest), not rsipstack, which cannot parse
        // RFC 8760's `SHA-256`; so rsipstack gets no credential.
        match authorization {
            Some(Authorization::Www(value)) => {
                headers.push(Header::Authorization(value.into()));
            }
            Some(Authorization::Proxy(value)) => {
                headers.push(Header::ProxyAuthorization(value.into()));
            }
            None => {}
        }
        let option = InviteOption {
            caller_display_name: Some(gateway.display_name.clone()),
            caller,
            callee,
            destination: Some(destination),
            content_type: Some("application/sdp".into()),
            offer: Some(sdp.into_bytes()),
            contact,
            credential: None,
            headers: (!headers.is_empty()).then_some(headers),
            call_id: Some(call_id.to_owned()),
            ..InviteOption::default()
        };
        let (state_tx, mut states) = self.dialog_states.register(call_id);
        let (dialog, outcome) = self
            .dialogs
            .do_invite_async(option, state_tx)
            .map_err(|e| SipError::Invite(Box::new(e)))?;
        states.follow(&dialog.id().local_tag);
        Ok(OutgoingCall {
            dialog,
            states,
            outcome: Some(outcome),
        })
    }

    /// Forgets a finished dialog.
    pub fn remove_dialog(&self, id: &DialogId) {
        self.dialogs.remove_dialog(id);
    }

    /// Stops the endpoint.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Waits, until `deadline` at most, for the CANCEL and BYE transactions running in the
    /// background to end (answered, or given up by their timers); returns how many still run.
    /// [`Self::shutdown`] cuts those off, and a request that had not left yet never would.
    pub async fn settle_background(&self, deadline: tokio::time::Instant) -> usize {
        self.background.close();
        if tokio::time::timeout_at(deadline, self.background.wait())
            .await
            .is_err()
        {
            tracing::debug!(
                running = self.background.len(),
                "CANCEL/BYE transactions still running at the shutdown bound"
            );
        }
        self.background.len()
    }

    /// Runs a CANCEL or BYE transaction in a task of its own: the call task goes on reading
    /// hang-up requests and timers, and the call's status is recorded when the request is sent,
    /// whatever becomes of it (an undeliverable BYE no longer holds a finished call at Connected
    /// for 64·T1). Its failure is logged with its cause, in the call's span. Shutdown waits for
    /// it (bounded: [`Self::settle_background`]).
    fn in_background(
        &self,
        method: &'static str,
        request: impl std::future::Future<Output = Result<(), rsipstack::Error>> + Send + 'static,
    ) {
        self.background.spawn(
            async move {
                if let Err(source) = request.await {
                    let error = SipError::request(method)(source);
                    tracing::warn!(error = %calls::error_chain(&error), "{method} failed");
                }
            }
            .instrument(tracing::Span::current()),
        );
    }
}

/// A call's dialogue through rsipstack: its INVITE transaction and dialog, and what the task
/// needs to send the INVITE again.
pub(crate) struct RsipDialogue {
    pub(crate) stack: Arc<SipStack>,
    pub(crate) gateway: Arc<GatewaySettings>,
    /// The attempt through `gateway`, counted in its live calls.
    pub(crate) attempt: crate::gateways::AttemptGuard,
    /// The gateways (and resolved addresses) still to try if this attempt fails over.
    pub(crate) next: crate::gateways::Route,
    /// The message's duration (for the engine of a new attempt).
    pub(crate) message: Duration,
    pub(crate) number: String,
    pub(crate) call_id: String,
    /// Our first offer, sent again when a digest challenge is answered.
    pub(crate) offer: String,
    /// Our SDP before SRTP is applied, for the offer of a new attempt (whose gateway may
    /// want another SRTP policy).
    pub(crate) plain_offer: String,
    /// Our side of the session (advertised address, `o=` numbers), for a new attempt's engine.
    pub(crate) session: call_engine::offer_answer::LocalSession,
    /// The INVITE's handles, once it is sent.
    pub(crate) outgoing: Option<OutgoingCall>,
    /// The INVITE still being prepared: a TLS connection being opened (see [`Self::over_tls`]).
    pub(crate) pending: Option<tokio::task::JoinHandle<Result<OverTls, SipError>>>,
    /// Where the INVITE went over TLS (a resent INVITE goes the same way).
    pub(crate) destination: Option<SipAddr>,
    /// Cancelled when the TLS connection carrying the unanswered INVITE closes: a reliable
    /// transport's failure fails the transaction at once (RFC 3261 §17.1.4) rather than after
    /// Timer B with a 408 nobody sent. Cleared once the INVITE has its final response.
    pub(crate) connection: Option<CancellationToken>,
    /// The current attempt's gateway's TLS client: a CANCEL or BYE first reopens a connection
    /// that closed meanwhile (rsipstack idles stream connections out after 5 minutes), with
    /// the gateway's own certificate checks.
    pub(crate) tls: Option<Arc<crate::tls::TlsClient>>,
    pub(crate) states_open: bool,
    pub(crate) outcome_done: bool,
    /// Offers in the dialog (re-INVITE, UPDATE) waiting for the engine's answer, by number.
    pub(crate) offers: InDialogOffers,
}

/// The in-dialog requests carrying (or asking for) an offer: their response handles until the
/// engine answers, and the re-INVITEs whose ACK is still to come (by CSeq).
#[derive(Default)]
pub(crate) struct InDialogOffers {
    next: u64,
    handles: std::collections::HashMap<u64, TransactionHandle>,
    awaiting_ack: Vec<(u64, u32)>,
    /// The INVITE's own 2xx was reported: later `Confirmed` states follow in-dialog requests.
    answered: bool,
}

impl InDialogOffers {
    /// Takes a re-INVITE or UPDATE; returns the engine's event.
    fn offer(&mut self, request: &Request, handle: TransactionHandle) -> SipEvent {
        self.next += 1;
        let id = self.next;
        let update = request.method == Method::Update;
        if !update {
            match request.cseq_header().and_then(|c| c.seq()) {
                Ok(cseq) => self.awaiting_ack.push((id, cseq)),
                // rsipstack checked the CSeq when it matched the dialog; without it the ACK
                // cannot be matched, so an answer in it would be missed: say so.
                Err(error) => {
                    tracing::warn!(%error, "re-INVITE without a readable CSeq: its ACK is not awaited");
                }
            }
        }
        self.handles.insert(id, handle);
        SipEvent::Offer {
            request: id,
            update,
            sdp: (!request.body.is_empty()).then(|| request.body.clone()),
        }
    }

    /// A `Confirmed` state after an in-dialog request: the ACK of a re-INVITE we answered, if
    /// `ack` is one we await.
    fn ack(&mut self, ack: Option<Request>) -> Option<SipEvent> {
        let ack = ack?;
        let cseq = ack.cseq_header().and_then(|c| c.seq()).ok()?;
        let at = self.awaiting_ack.iter().position(|(_, c)| *c == cseq)?;
        let (request, _) = self.awaiting_ack.remove(at);
        Some(SipEvent::Ack {
            request,
            sdp: (!ack.body.is_empty()).then_some(ack.body),
        })
    }
}

/// An INVITE sent over a TLS connection: its handles, the connection's address, and the token
/// cancelled when the connection closes.
pub(crate) type OverTls = (OutgoingCall, SipAddr, CancellationToken);

impl RsipDialogue {
    /// Makes sure, over TLS, that the gateway's connection is open (reopening it if it closed);
    /// a failure is logged with its cause, and the request then fails in rsipstack.
    fn reopen(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let reopen = self.tls.clone().map(|client| {
            (
                client,
                Arc::clone(&self.stack),
                gateway_target(&self.gateway),
            )
        });
        async move {
            if let Some((client, stack, target)) = reopen {
                if let Err(error) = stack.connect_tls(&client, &target).await {
                    tracing::warn!(error = %calls::error_chain(&error), "cannot reopen the TLS connection to the gateway");
                }
            }
        }
    }

    /// Opens (or reuses) the gateway's TLS connection to the attempt's address (`gateway`'s
    /// `address`, set to the resolved target for a host name), then sends the INVITE over it,
    /// in a task of its own: the call's task reports a failure as a transport failure — which
    /// moves the call to the next gateway, else ends it with cause Other — logged with its
    /// reason (e.g. the certificate's issuer is not trusted).
    pub(crate) fn over_tls(
        stack: &Arc<SipStack>,
        client: Arc<crate::tls::TlsClient>,
        gateway: &Arc<GatewaySettings>,
        number: &str,
        offer: &str,
        call_id: &str,
    ) -> tokio::task::JoinHandle<Result<OverTls, SipError>> {
        use tracing::Instrument as _;
        let (stack, gateway) = (Arc::clone(stack), Arc::clone(gateway));
        let (number, offer, call_id) = (number.to_owned(), offer.to_owned(), call_id.to_owned());
        tokio::spawn(
            async move {
                let (destination, connection) = stack
                    .connect_tls(&client, &gateway_target(&gateway))
                    .await
                    .map_err(|e| SipError::Tls(Box::new(e)))?;
                let outgoing =
                    stack.invite(&gateway, &number, offer, &call_id, None, Some(&destination))?;
                Ok((outgoing, destination, connection))
            }
            .instrument(tracing::Span::current()),
        )
    }
}

#[async_trait::async_trait]
impl crate::task::Dialogue for RsipDialogue {
    async fn next_event(&mut self) -> Option<SipEvent> {
        loop {
            if let Some(pending) = self.pending.as_mut() {
                // Awaiting the handle by reference is cancel-safe.
                let sent = pending.await;
                self.pending = None;
                match sent {
                    Ok(Ok((outgoing, destination, connection))) => {
                        self.outgoing = Some(outgoing);
                        self.destination = Some(destination);
                        self.connection = Some(connection);
                        self.states_open = true;
                        self.outcome_done = false;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(error = %calls::error_chain(&error), "cannot send the INVITE");
                        return Some(SipEvent::TransportFailed);
                    }
                    Err(error) => {
                        tracing::error!(%error, "the INVITE task failed");
                        return Some(SipEvent::TransportFailed);
                    }
                }
            }
            let outgoing = self.outgoing.as_mut()?;
            if !self.states_open && self.outcome_done {
                return None;
            }
            let event = tokio::select! {
                () = closed(self.connection.as_ref()), if self.connection.is_some() => {
                    self.connection = None;
                    tracing::warn!(
                        "the TLS connection to the gateway closed before the INVITE was answered \
                         (did it refuse openum's client certificate?)"
                    );
                    Some(SipEvent::TransportFailed)
                }
                state = outgoing.states.recv(), if self.states_open => match state {
                    Some(DialogState::Updated(_, request, handle))
                        if matches!(request.method, Method::Invite | Method::Update) =>
                    {
                        Some(self.offers.offer(&request, handle))
                    }
                    // After the answer, `Confirmed` follows each in-dialog request; after a
                    // re-INVITE it means its ACK arrived.
                    Some(DialogState::Confirmed(..)) if self.offers.answered => {
                        let ack = outgoing.dialog.last_remote_ack();
                        self.offers.ack(ack)
                    }
                    Some(state) => {
                        let event = event_of(&state);
                        if matches!(event, Some(SipEvent::Answered { .. })) {
                            self.offers.answered = true;
                        }
                        answer_in_dialog_request(state);
                        event
                    }
                    None => {
                        self.states_open = false;
                        None
                    }
                },
                result = outcome_of(&mut outgoing.outcome), if !self.outcome_done => {
                    self.outcome_done = true;
                    outgoing.outcome = None;
                    if let Ok(Err(error)) = &result {
                        // The real cause of a send failure, in the call's span.
                        tracing::warn!(
                            gateway = %self.gateway.name,
                            error = %calls::error_chain(error),
                            "the INVITE failed without a response"
                        );
                    }
                    match result {
                        Ok(outcome) => outcome_event(&outcome),
                        Err(error) => {
                            tracing::error!(%error, "the INVITE transaction task failed");
                            Some(SipEvent::TransportFailed)
                        }
                    }
                }
            };
            let Some(event) = event else { continue };
            // A challenged INVITE is sent again over the same connection: keep watching it.
            if !matches!(
                event,
                SipEvent::Provisional(_) | SipEvent::Challenged { .. }
            ) {
                self.connection = None;
            }
            return Some(event);
        }
    }

    async fn cancel(&mut self) -> Result<(), SipError> {
        // The engine cancels only after a provisional response, so the INVITE was sent.
        let Some(outgoing) = &self.outgoing else {
            return Ok(());
        };
        let dialog = outgoing.dialog.clone();
        let reopen = self.reopen();
        self.stack.in_background("CANCEL", async move {
            reopen.await;
            dialog.cancel().await
        });
        Ok(())
    }

    async fn bye(&mut self) -> Result<(), SipError> {
        // The engine says BYE only to an answered INVITE.
        let Some(outgoing) = &self.outgoing else {
            return Ok(());
        };
        let dialog = outgoing.dialog.clone();
        let reopen = self.reopen();
        self.stack.in_background("BYE", async move {
            reopen.await;
            dialog.bye().await
        });
        Ok(())
    }

    fn respond(&mut self, request: u64, code: u16, sdp: Option<String>) -> Result<(), SipError> {
        let Some(handle) = self.offers.handles.remove(&request) else {
            tracing::warn!(request, code, "no open in-dialog request to answer");
            return Ok(());
        };
        let headers = sdp
            .is_some()
            .then(|| vec![Header::ContentType("application/sdp".into())]);
        tokio::spawn(
            async move {
                let body = sdp.map(String::into_bytes);
                if let Err(error) = handle.respond(StatusCode::from(code), headers, body).await {
                    tracing::warn!(error = %calls::error_chain(&error), code, "cannot answer an in-dialog request");
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(())
    }

    fn resend(&mut self, authorization: Authorization) -> Result<(), SipError> {
        let outgoing = self.stack.invite(
            &self.gateway,
            &self.number,
            self.offer.clone(),
            &self.call_id,
            Some(authorization),
            self.destination.as_ref(),
        )?;
        if let Some(previous) = &self.outgoing {
            self.stack.remove_dialog(&previous.dialog.id());
        }
        self.outgoing = Some(outgoing);
        self.states_open = true;
        self.outcome_done = false;
        Ok(())
    }

    async fn fail_over(&mut self, event: &SipEvent) -> Option<crate::task::NextAttempt> {
        if !crate::gateways::fails_over(event, &self.gateway.failover_codes) {
            return None;
        }
        loop {
            let (next, settings) = match self.next.next().await {
                Ok(Some(attempt)) => attempt,
                Ok(None) => return None,
                Err(error) => {
                    // Already logged with the host; the call ends with the failed attempt's
                    // outcome.
                    tracing::debug!(error = %calls::error_chain(&error), "no gateway left");
                    return None;
                }
            };
            let failed = std::mem::replace(&mut self.attempt, next.attempt());
            tracing::warn!(
                from = %failed.gateway().name(),
                to = %next.name(),
                address = ?settings.address,
                tls = next.tls.is_some(),
                srtp = ?settings.srtp,
                outcome = ?event,
                "moving the call to the next gateway"
            );
            drop(failed);
            // The offer follows the gateway actually used: its SRTP policy, with fresh keys
            // (a key offered to one gateway is never offered to another).
            let srtp = crate::srtp::CallSrtp::new(settings.srtp);
            let offer = srtp.offer(&self.plain_offer);
            let (outgoing, pending) = match &next.tls {
                // Over TLS the INVITE waits for the connection to this address, in the call's
                // task; a connection or certificate failure comes back as a transport failure
                // and moves the call on again.
                Some(client) => (
                    None,
                    Some(Self::over_tls(
                        &self.stack,
                        Arc::clone(client),
                        &settings,
                        &self.number,
                        &offer,
                        &self.call_id,
                    )),
                ),
                None => match self.stack.invite(
                    &settings,
                    &self.number,
                    offer.clone(),
                    &self.call_id,
                    None,
                    None,
                ) {
                    Ok(outgoing) => (Some(outgoing), None),
                    Err(error) => {
                        tracing::warn!(gateway = %next.name(), error = %calls::error_chain(&error), "cannot send the INVITE to the gateway");
                        continue;
                    }
                },
            };
            if let Some(previous) = self.outgoing.take() {
                self.stack.remove_dialog(&previous.dialog.id());
            }
            if let Some(previous) = self.pending.take() {
                previous.abort();
            }
            self.outgoing = outgoing;
            self.pending = pending;
            self.destination = None;
            self.connection = None;
            self.states_open = true;
            self.outcome_done = false;
            self.tls.clone_from(&next.tls);
            self.offer = offer;
            self.gateway = settings;
            let call = call_engine::call::Call::with_auth(
                tokio::time::Instant::now().into_std(),
                crate::call_config(&next.settings, self.message),
                crate::digest_auth(&next.settings, &self.number),
            )
            .with_session(self.session.clone());
            return Some(crate::task::NextAttempt { call, srtp });
        }
    }

    async fn close(&mut self) {
        if let Some(pending) = self.pending.take() {
            // The call ended while its TLS connection was being opened: nothing was sent.
            pending.abort();
        }
        let Some(outgoing) = self.outgoing.as_mut() else {
            return;
        };
        // Let the transaction layer finish (re-ACKs, the BYE's response) before forgetting it;
        // its outcome no longer changes the call, which has ended.
        if !self.outcome_done
            && tokio::time::timeout(Duration::from_secs(5), outcome_of(&mut outgoing.outcome))
                .await
                .is_err()
        {
            tracing::debug!("INVITE transaction still open 5 s after the call ended");
        }
        self.stack.remove_dialog(&outgoing.dialog.id());
    }
}

/// The INVITE's outcome; never resolves once it was taken (`None`).
async fn outcome_of(
    outcome: &mut Option<tokio::task::JoinHandle<InviteAsyncResult>>,
) -> Result<InviteAsyncResult, tokio::task::JoinError> {
    match outcome {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// Resolves when `connection` is cancelled (its TLS connection closed).
async fn closed(connection: Option<&CancellationToken>) {
    match connection {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Answers OPTIONS/INFO with 200, in a task of its own so that no answer is lost when the call
/// task moves on. (Re-INVITE and UPDATE go to the engine: see [`InDialogOffers`].)
fn answer_in_dialog_request(state: DialogState) {
    tokio::spawn(async move {
        let answered = match state {
            DialogState::Options(_, _, handle) | DialogState::Info(_, _, handle) => {
                handle.reply(StatusCode::OK).await
            }
            _ => return,
        };
        if let Err(error) = answered {
            tracing::warn!(error = %calls::error_chain(&error), "cannot answer an in-dialog request");
        }
    });
}

/// The digest challenges of a 401/407 final response: whether it is a proxy's, and the values.
pub fn challenges(outcome: &InviteAsyncResult) -> Option<(bool, Vec<String>)> {
    let Ok((_, Some(response))) = outcome else {
        return None;
    };
    let proxy = match response.status_code.code() {
        401 => false,
        407 => true,
        _ => return None,
    };
    let values: Vec<String> = response
        .headers
        .iter()
        .filter(|h| match h {
            Header::WwwAuthenticate(_) => !proxy,
            Header::ProxyAuthenticate(_) => proxy,
            _ => false,
        })
        .map(|h| h.value().to_owned())
        .collect();
    (!values.is_empty()).then_some((proxy, values))
}

/// Where requests to `gateway` go (`host:port`): its `address`, else its URI's host and port.
pub fn gateway_target(gateway: &GatewaySettings) -> String {
    match &gateway.address {
        Some(address) => address.clone(),
        None => host_port_of(&gateway.uri, gateway.uses_tls()),
    }
}

/// The host of a gateway's URI template (the TLS server name).
pub fn gateway_host(gateway: &GatewaySettings) -> String {
    let host_port = host_port_of(&gateway.uri, false);
    match host_port.rsplit_once(':') {
        Some((host, _)) => host.to_owned(),
        None => host_port,
    }
}

/// `host:port` of a `sip:user@host:port;params` URI (default port 5060, or 5061 for a `sips:`
/// URI or over TLS).
fn host_port_of(uri: &str, tls: bool) -> String {
    let default_port = if tls || uri.starts_with("sips:") {
        5061
    } else {
        5060
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = rest.split([';', '?']).next().unwrap_or(rest);
    if host_port.starts_with('[') {
        if host_port.contains("]:") {
            host_port.to_owned()
        } else {
            format!("{host_port}:{default_port}")
        }
    } else if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}

/// Whether a response's To header carries a tag.
pub(crate) fn has_to_tag(response: &Response) -> bool {
    use rsipstack::sip::prelude::HeadersExt as _;
    response
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

/// The status line of an rsipstack response.
pub fn status_of(response: &Response) -> SipStatus {
    SipStatus::new(
        response.status_code.code(),
        response
            .wire_reason
            .clone()
            .unwrap_or_else(|| response.status_code.text().to_owned()),
    )
}

/// A dialogue state change, as an engine event (`None` if the engine need not know).
pub fn event_of(state: &DialogState) -> Option<SipEvent> {
    match state {
        DialogState::Trying(_) => Some(SipEvent::Provisional(SipStatus::new(100, "Trying"))),
        DialogState::Early(_, response) => Some(SipEvent::Provisional(status_of(response))),
        DialogState::Confirmed(_, response) => Some(SipEvent::Answered {
            status: status_of(response),
            sdp: (!response.body.is_empty()).then(|| response.body.clone()),
        }),
        DialogState::Terminated(_, TerminatedReason::UasBye) => Some(SipEvent::RemoteBye),
        DialogState::Terminated(_, TerminatedReason::Timeout) => Some(SipEvent::NoResponse),
        _ => None,
    }
}

/// The INVITE transaction's outcome, as an engine event: a 401/407 carrying challenges is
/// `Challenged` (the engine decides whether to answer it), any other final failure `Rejected`.
pub fn outcome_event(outcome: &InviteAsyncResult) -> Option<SipEvent> {
    match outcome {
        // rsipstack reports Timer B (and C) as a 408 it makes from our own request, so without
        // a To-tag; any UAS or proxy sending a final response tags it (RFC 3261 §8.2.6.2). No
        // peer sent it: it is no response at all.
        Ok((_, Some(response))) if response.status_code.code() == 408 && !has_to_tag(response) => {
            Some(SipEvent::NoResponse)
        }
        Ok((_, Some(response))) if response.status_code.code() >= 300 => {
            Some(match challenges(outcome) {
                Some((proxy, challenges)) => SipEvent::Challenged {
                    status: status_of(response),
                    proxy,
                    challenges,
                },
                None => SipEvent::Rejected(status_of(response)),
            })
        }
        Ok((_, Some(_))) => None, // 2xx: reported by the Confirmed state
        Ok((_, None)) => Some(SipEvent::NoResponse),
        Err(rsipstack::Error::TransactionError(reason, _))
            if reason.to_ascii_lowercase().contains("timeout") =>
        {
            Some(SipEvent::NoResponse)
        }
        Err(_) => Some(SipEvent::TransportFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::{gateway_host, gateway_target, host_port_of};

    #[test]
    fn host_and_port_come_from_the_uri() {
        assert_eq!(
            host_port_of("sip:123@127.0.0.1:5070", false),
            "127.0.0.1:5070"
        );
        assert_eq!(
            host_port_of("sip:123@pbx.example.com;transport=tcp", false),
            "pbx.example.com:5060"
        );
        assert_eq!(host_port_of("sip:123@[::1]:5070", false), "[::1]:5070");
        assert_eq!(host_port_of("sip:[::1]", false), "[::1]:5060");
    }

    #[test]
    fn tls_defaults_to_port_5061_and_the_server_name_is_the_uri_host() {
        assert_eq!(
            host_port_of("sips:{number}@sbc.example.com", false),
            "sbc.example.com:5061"
        );
        assert_eq!(
            host_port_of("sip:{number}@sbc.example.com;transport=tls", true),
            "sbc.example.com:5061"
        );
        assert_eq!(host_port_of("sips:1@[::1]", false), "[::1]:5061");
        let gateway = crate::settings::GatewaySettings {
            uri: "sips:{number}@sbc.example.com:5067;user=phone".into(),
            ..test_gateway()
        };
        assert_eq!(gateway_host(&gateway), "sbc.example.com");
        assert_eq!(gateway_target(&gateway), "sbc.example.com:5067");
        let by_ip = crate::settings::GatewaySettings {
            uri: "sips:{number}@[2001:db8::1]".into(),
            ..test_gateway()
        };
        assert_eq!(gateway_host(&by_ip), "[2001:db8::1]");
        assert_eq!(gateway_target(&by_ip), "[2001:db8::1]:5061");
    }

    fn test_gateway() -> crate::settings::GatewaySettings {
        crate::settings::GatewaySettings {
            name: "sbc".into(),
            uri: String::new(),
            address: None,
            transport: crate::settings::Transport::Tls,
            from: None,
            display_name: "Voice Mail".into(),
            credentials: None,
            ring_timeout_secs: 45,
            max_concurrent_calls: 1,
            calls_per_second: 1,
            headers: Vec::new(),
            enabled: true,
            group: "default".into(),
            priority: 0,
            weight: 1,
            failover_codes: vec![408, 503],
            options: None,
            register: None,
            tls: crate::settings::TlsSettings::default(),
            srtp: crate::settings::SrtpPolicy::Mandatory,
        }
    }
}
