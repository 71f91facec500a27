//! openum's own SIP/UDP socket, in front of rsipstack.
//!
//! rsipstack 0.7.14 reads UDP into a fixed 8,192-byte buffer, so a larger datagram (a
//! provisional with an 8 KB reason phrase, 60 KB of headers) was cut, failed to parse and was
//! dropped with a debug line only; RFC 3261 §18.1.1/§18.3 has a UA take any datagram up to
//! 65,535 bytes. And rsipstack builds the ACK to a 2xx from the response's Contact
//! (`transaction/message.rs make_ack`), so a 2xx to INVITE without one (RFC 3261 §12.1.2 requires
//! it; some far ends still send it) was never ACKed. openum therefore owns the socket:
//!
//! - **Reading** (`Reader`): one task reads every datagram into a 64 KiB buffer, answers or
//!   ignores keep-alives, parses the rest with rsipstack's own parser, records
//!   `received`/`rport` in the top Via of a request (RFC 3581, rsipstack's own
//!   `update_msg_received`), and hands the message to
//!   rsipstack's transport layer through its custom-transport hook, a
//!   [`ChannelConnection`]: each message arrives there exactly as rsipstack's UDP reader would
//!   have delivered it, on the UDP connection, so the transaction layer still treats it as UDP
//!   (retransmission timers A, E, G). A datagram that is not SIP is dropped with a warning
//!   naming its source and the parser's error, and counted (`openum_sip_dropped_total{reason}`).
//! - **Writing** (`OwnSocket`): rsipstack's `UdpConnection` is built over openum's socket
//!   (`UdpConnection::from_socket`), so rsipstack still writes every request and response.
//!   rsipstack's own read loop over this socket waits forever: the `Reader` is the only reader.
//! - **The Contact repair** ([`ContactRepair`], rsipstack's message inspector, so over TCP and TLS
//!   too): it sees each INVITE go out and remembers its Request-URI per Call-ID and CSeq
//!   ([`InviteTargets`], bounded and expired), and gives a 2xx to INVITE without a Contact one
//!   (see [`repair_contact`]) before rsipstack's transaction sees the response.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::sip::prelude::{HeadersExt as _, ToTypedHeader as _};
use rsipstack::sip::{Header, Method, SipMessage, Transport};
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::connection::TransportEvent;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The largest UDP payload (RFC 768's 16-bit length; RFC 3261 §18.3 takes any datagram).
pub const MAX_DATAGRAM: usize = 65_535;

/// How long the Request-URI of an INVITE is remembered: longer than any ring timeout plus the
/// 2xx retransmissions (64·T1) after it.
const TARGET_TTL: Duration = Duration::from_secs(600);

/// At most this many INVITEs are remembered (the oldest is forgotten first): far above the
/// number of calls a node holds, and a few MB at most.
const TARGET_CAPACITY: usize = 16_384;

/// The double-CRLF keep-alive ping (RFC 5626 §3.5.1) and its single-CRLF pong.
const PING: &[u8] = b"\r\n\r\n";
const PONG: &[u8] = b"\r\n";

/// STUN's magic cookie (RFC 5389 §6), at bytes 4..8 of every STUN message.
const STUN_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Why a datagram on the SIP port was dropped (the `reason` label of
/// `openum_sip_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// rsipstack's parser refused it: not a SIP message.
    NotSip,
    /// A request whose top Via cannot take `received`/`rport`.
    BadVia,
    /// Reading the socket failed.
    SocketError,
    /// The transport layer had stopped (openum is shutting down).
    StackStopped,
}

impl DropReason {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [Self; 4] = [
        Self::BadVia,
        Self::NotSip,
        Self::SocketError,
        Self::StackStopped,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadVia => "bad_via",
            Self::NotSip => "not_sip",
            Self::SocketError => "socket_error",
            Self::StackStopped => "stack_stopped",
        }
    }
}

/// Counters of the SIP/UDP reader, for `/metrics`.
#[derive(Debug, Default)]
pub struct SipUdpStats {
    dropped: [AtomicU64; 4],
    keepalives: AtomicU64,
    contact_repairs: AtomicU64,
    /// The warnings about what far ends sent (every case is counted; the log is rationed).
    warnings: WarnBudget,
}

/// Warnings allowed per [`WARN_WINDOW`] about what arrives from the network; the rest of the
/// window's go to debug level, and the next warning says how many there were. A sender (or a
/// spoofer) at line rate must not fill the operator's disk; the counters still count each one.
const WARN_BURST: u32 = 20;
/// See [`WARN_BURST`].
const WARN_WINDOW: Duration = Duration::from_secs(10);

/// The log ration of [`WARN_BURST`] per [`WARN_WINDOW`].
#[derive(Debug, Default)]
struct WarnBudget(Mutex<Option<WarnWindow>>);

#[derive(Debug)]
struct WarnWindow {
    start: Instant,
    used: u32,
    /// Warnings held back since the last one logged.
    held_back: u64,
}

impl WarnBudget {
    /// `Some(held back since the last warning)` if a warning may be logged at `now`; `None`:
    /// log at debug level instead.
    fn take(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = state.get_or_insert(WarnWindow {
            start: now,
            used: 0,
            held_back: 0,
        });
        if now.saturating_duration_since(window.start) >= WARN_WINDOW {
            window.start = now;
            window.used = 0;
        }
        if window.used < WARN_BURST {
            window.used += 1;
            Some(std::mem::take(&mut window.held_back))
        } else {
            window.held_back += 1;
            None
        }
    }
}

/// Logs `$($event)+` as a warning within `stats`' ration, else at debug level.
macro_rules! remote_warn {
    ($stats:expr, $($event:tt)+) => {
        match $stats.warnings.take(Instant::now()) {
            Some(held_back) => tracing::warn!(held_back, $($event)+),
            None => tracing::debug!($($event)+),
        }
    };
}

impl SipUdpStats {
    fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
        let index = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_default();
        &self.dropped[index]
    }

    /// Datagrams dropped, by reason (every reason listed, zeros included).
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.as_str(), self.drop_counter(*r).load(Relaxed)))
            .collect()
    }

    /// Keep-alives received (double-CRLF pings answered, pongs and STUN ignored).
    pub fn keepalives(&self) -> u64 {
        self.keepalives.load(Relaxed)
    }

    /// 2xx responses to INVITE given the INVITE's Request-URI as their missing Contact.
    pub fn contact_repairs(&self) -> u64 {
        self.contact_repairs.load(Relaxed)
    }
}

/// The Request-URIs of the INVITEs sent, by Call-ID and CSeq number: the remote target a 2xx
/// without a Contact is given.
#[derive(Debug, Default)]
pub struct InviteTargets {
    inner: Mutex<Targets>,
}

#[derive(Debug, Default)]
struct Targets {
    by_key: HashMap<(String, u32), String>,
    /// Insertion order, for expiry and the capacity bound.
    order: VecDeque<(Instant, (String, u32))>,
}

impl InviteTargets {
    /// Remembers the Request-URI of `request` if it is an INVITE (anything else is ignored),
    /// sent at `now`.
    pub fn observe(&self, request: &rsipstack::sip::Request, now: Instant) {
        if request.method != Method::Invite {
            return;
        }
        let Some(key) = key_of(&request.headers) else {
            tracing::warn!("an INVITE openum sent has no Call-ID or CSeq");
            return;
        };
        self.remember(key, request.uri.to_string(), now);
    }

    fn remember(&self, key: (String, u32), uri: String, now: Instant) {
        let mut targets = calls::sync::lock(&self.inner);
        while let Some((at, _)) = targets.order.front() {
            if now.saturating_duration_since(*at) < TARGET_TTL
                && targets.order.len() < TARGET_CAPACITY
            {
                break;
            }
            if let Some((_, old)) = targets.order.pop_front() {
                targets.by_key.remove(&old);
            }
        }
        if targets.by_key.contains_key(&key) {
            return; // a retransmission
        }
        targets.by_key.insert(key.clone(), uri);
        targets.order.push_back((now, key));
    }

    /// The Request-URI of the INVITE with this Call-ID and CSeq number, if remembered.
    pub fn target(&self, call_id: &str, seq: u32) -> Option<String> {
        calls::sync::lock(&self.inner)
            .by_key
            .get(&(call_id.to_owned(), seq))
            .cloned()
    }

    /// How many INVITEs are remembered.
    pub fn len(&self) -> usize {
        calls::sync::lock(&self.inner).by_key.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The Call-ID and CSeq number of a message's headers.
fn key_of(headers: &rsipstack::sip::Headers) -> Option<(String, u32)> {
    let mut call_id = None;
    let mut seq = None;
    for header in headers.iter() {
        match header {
            Header::CallId(value) => call_id = Some(value.value().to_owned()),
            Header::CSeq(value) => seq = value.typed().ok().map(|c| c.seq),
            _ => {}
        }
    }
    Some((call_id?, seq?))
}

/// What a datagram on the SIP port is.
#[derive(Debug)]
pub enum Datagram {
    /// A SIP message.
    Message(Box<SipMessage>),
    /// A double-CRLF keep-alive ping: answered with a CRLF pong.
    Ping,
    /// A CRLF pong, blank bytes or a STUN message: ignored (openum sends no keep-alives and
    /// runs no STUN server).
    KeepAlive,
    /// Not SIP: the parser's error.
    NotSip(String),
}

/// Sorts and parses one datagram (rsipstack's parser; no size limit below 64 KiB).
pub fn read_datagram(bytes: &[u8]) -> Datagram {
    if bytes == PING {
        return Datagram::Ping;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) || is_stun(bytes) {
        return Datagram::KeepAlive;
    }
    match SipMessage::try_from(bytes) {
        Ok(message) => Datagram::Message(Box::new(message)),
        Err(error) => Datagram::NotSip(error.to_string()),
    }
}

/// A STUN message (RFC 5389 §6): two zero top bits, a length multiple of 4, the magic cookie.
fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= 20 && bytes[0] & 0xC0 == 0 && bytes[4..8] == STUN_COOKIE
}

/// What [`repair_contact`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Repair {
    /// Not a 2xx to INVITE, or it has a Contact.
    NotNeeded,
    /// The missing Contact was set to this Request-URI of the INVITE answered.
    Repaired(String),
    /// A 2xx to INVITE without a Contact, for an INVITE openum does not remember.
    Unknown,
}

/// Gives a 2xx response to INVITE that lacks a Contact one equal to the Request-URI of the
/// INVITE it answers, the remote target a UAC has (RFC 3261 §12.1.2 requires the Contact; a
/// robust UAC still ACKs, and rsipstack would fail the INVITE instead).
pub fn repair_contact(message: &mut SipMessage, targets: &InviteTargets) -> Repair {
    let SipMessage::Response(response) = message else {
        return Repair::NotNeeded;
    };
    if response.status_code.kind() != rsipstack::sip::StatusCodeKind::Successful
        || response
            .headers
            .iter()
            .any(|h| matches!(h, Header::Contact(_)))
    {
        return Repair::NotNeeded;
    }
    let is_invite = response
        .cseq_header()
        .ok()
        .and_then(|c| c.typed().ok())
        .is_some_and(|c| c.method == Method::Invite);
    if !is_invite {
        return Repair::NotNeeded;
    }
    let Some((call_id, seq)) = key_of(&response.headers) else {
        return Repair::Unknown;
    };
    match targets.target(&call_id, seq) {
        Some(uri) => {
            response
                .headers
                .push(Header::Contact(format!("<{uri}>").into()));
            Repair::Repaired(uri)
        }
        None => Repair::Unknown,
    }
}

/// Repairs a 2xx to INVITE without a Contact, as rsipstack's message inspector: it sees every
/// request rsipstack sends (remembering INVITEs' Request-URIs) and every message it receives,
/// over any transport, before the transaction layer does.
pub struct ContactRepair {
    targets: InviteTargets,
    stats: Arc<SipUdpStats>,
}

impl ContactRepair {
    /// A repairer counting its repairs in `stats`.
    pub fn new(stats: Arc<SipUdpStats>) -> Self {
        Self {
            targets: InviteTargets::default(),
            stats,
        }
    }
}

impl rsipstack::transaction::endpoint::MessageInspector for ContactRepair {
    fn before_send(&self, message: SipMessage, _destination: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Request(request) = &message {
            self.targets.observe(request, Instant::now());
        }
        message
    }

    fn after_received(&self, mut message: SipMessage, from: Option<&SipAddr>) -> SipMessage {
        let far_end = || from.map(ToString::to_string).unwrap_or_default();
        match repair_contact(&mut message, &self.targets) {
            Repair::NotNeeded => {}
            Repair::Repaired(uri) => {
                self.stats.contact_repairs.fetch_add(1, Relaxed);
                remote_warn!(
                    self.stats,
                    far_end = %far_end(),
                    remote_target = %uri,
                    "a 2xx to INVITE has no Contact (RFC 3261 §12.1.2 requires one): ACKing the INVITE's Request-URI"
                );
            }
            Repair::Unknown => remote_warn!(
                self.stats,
                far_end = %far_end(),
                "a 2xx to INVITE has no Contact and answers no INVITE openum remembers: it cannot be ACKed"
            ),
        }
        message
    }
}

/// openum's UDP socket as rsipstack's platform socket: rsipstack writes through it; its reads
/// wait forever, since the [`Reader`] owns them.
struct OwnSocket {
    socket: Arc<UdpSocket>,
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for OwnSocket {
    async fn recv_from(&self, _buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        // rsipstack's UDP read loop (8 KiB) parks here until the stack is cancelled; openum's
        // Reader reads the socket instead.
        std::future::pending().await
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

/// openum's SIP/UDP socket: bound, not yet read.
pub struct SipUdp {
    socket: Arc<UdpSocket>,
    connection: UdpConnection,
    stats: Arc<SipUdpStats>,
}

impl SipUdp {
    /// Binds `listen`; `public` is the address advertised instead (Via, Contact).
    pub async fn bind(
        listen: SocketAddr,
        public: Option<SocketAddr>,
        cancel: CancellationToken,
    ) -> rsipstack::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(listen).await?);
        let platform: Arc<dyn rsipstack::platform::net::UdpSocket> = Arc::new(OwnSocket {
            socket: Arc::clone(&socket),
        });
        let connection = UdpConnection::from_socket(platform, public, Some(cancel)).await?;
        Ok(Self {
            socket,
            connection,
            stats: Arc::new(SipUdpStats::default()),
        })
    }

    /// rsipstack's connection over this socket (its UDP listener).
    pub fn connection(&self) -> &UdpConnection {
        &self.connection
    }

    /// The reader's counters.
    pub fn stats(&self) -> Arc<SipUdpStats> {
        Arc::clone(&self.stats)
    }

    /// Starts reading: registers the channel that feeds `transport` and spawns the reader,
    /// which stops when `cancel` is.
    pub async fn serve(
        self,
        transport: &TransportLayer,
        cancel: CancellationToken,
    ) -> rsipstack::Result<()> {
        let (events, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut misrouted) = mpsc::unbounded_channel();
        let channel = ChannelConnection::create_connection(
            incoming,
            outgoing,
            self.connection.get_addr().clone(),
            Some(cancel.child_token()),
        )
        .await?;
        // The channel only carries messages in; it is never a listener nor in the connection
        // table, so rsipstack never sends through it. Should it ever, say so.
        tokio::spawn(async move {
            while let Some(event) = misrouted.recv().await {
                tracing::error!(
                    ?event,
                    "rsipstack sent through the SIP/UDP reader's channel; not sent"
                );
            }
        });
        transport
            .inner
            .serve_connection(SipConnection::Channel(channel));
        let reader = Reader {
            socket: self.socket,
            connection: self.connection,
            stats: self.stats,
            events,
        };
        tokio::spawn(reader.run(cancel));
        Ok(())
    }
}

/// Reads the SIP/UDP socket and feeds rsipstack.
struct Reader {
    socket: Arc<UdpSocket>,
    connection: UdpConnection,
    stats: Arc<SipUdpStats>,
    events: mpsc::UnboundedSender<TransportEvent>,
}

impl Reader {
    async fn run(self, cancel: CancellationToken) {
        let mut buf = vec![0_u8; MAX_DATAGRAM];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return,
                received = self.socket.recv_from(&mut buf) => received,
            };
            let (len, from) = match received {
                Ok(received) => received,
                Err(error) => {
                    self.count(DropReason::SocketError);
                    tracing::warn!(%error, "cannot read the SIP/UDP socket");
                    continue;
                }
            };
            if !self.deliver(&buf[..len], from).await {
                return;
            }
        }
    }

    /// Handles one datagram; false once the transport layer has stopped.
    async fn deliver(&self, bytes: &[u8], from: SocketAddr) -> bool {
        let message = match read_datagram(bytes) {
            Datagram::Message(message) => {
                // rsipstack's own reader logged each message; this keeps that at debug (the
                // text is only built when debug is on).
                tracing::debug!(len = bytes.len(), %from, message = %String::from_utf8_lossy(bytes), "SIP/UDP received");
                message
            }
            Datagram::Ping => {
                self.stats.keepalives.fetch_add(1, Relaxed);
                tracing::trace!(%from, "SIP keep-alive ping: answering");
                if let Err(error) = self.socket.send_to(PONG, from).await {
                    tracing::warn!(%from, %error, "cannot answer a SIP keep-alive ping");
                }
                return true;
            }
            Datagram::KeepAlive => {
                self.stats.keepalives.fetch_add(1, Relaxed);
                tracing::trace!(%from, len = bytes.len(), "SIP keep-alive ignored");
                return true;
            }
            Datagram::NotSip(error) => {
                self.count(DropReason::NotSip);
                remote_warn!(
                    self.stats,
                    %from,
                    len = bytes.len(),
                    %error,
                    start = %String::from_utf8_lossy(&bytes[..bytes.len().min(64)]),
                    "datagram on the SIP port dropped: not a SIP message"
                );
                return true;
            }
        };
        let message = match SipConnection::update_msg_received(*message, from, Transport::Udp) {
            Ok(message) => message,
            Err(error) => {
                self.count(DropReason::BadVia);
                remote_warn!(self.stats, %from, %error, "SIP request dropped: its Via cannot take received/rport");
                return true;
            }
        };
        let source = SipAddr {
            r#type: Some(Transport::Udp),
            addr: from.into(),
        };
        let event =
            TransportEvent::Incoming(message, SipConnection::Udp(self.connection.clone()), source);
        if self.events.send(event).is_err() {
            self.count(DropReason::StackStopped);
            tracing::warn!(%from, "SIP message dropped: the SIP stack has stopped");
            return false;
        }
        true
    }

    fn count(&self, reason: DropReason) {
        self.stats.drop_counter(reason).fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_about_remote_input_are_rationed_per_window_and_say_what_was_held_back() {
        let budget = WarnBudget::default();
        let t = Instant::now();
        for _ in 0..WARN_BURST {
            assert_eq!(budget.take(t), Some(0));
        }
        assert_eq!(budget.take(t), None);
        assert_eq!(budget.take(t + WARN_WINDOW / 2), None);
        assert_eq!(
            budget.take(t + WARN_WINDOW),
            Some(2),
            "the next window's first"
        );
        assert_eq!(budget.take(t + WARN_WINDOW), Some(0));
    }

    const INVITE: &str = "INVITE sip:2005551234@192.0.2.7:5060;user=phone SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n\
        From: <sip:openum@192.0.2.1>;tag=a\r\n\
        To: <sip:2005551234@192.0.2.7>\r\n\
        Call-ID: call-1@192.0.2.1\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:openum@192.0.2.1:5060>\r\n\
        Max-Forwards: 70\r\n\
        Content-Length: 0\r\n\r\n";

    fn ok(cseq: &str, contact: bool) -> String {
        format!(
            "SIP/2.0 200 OK\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport\r\n\
             From: <sip:openum@192.0.2.1>;tag=a\r\n\
             To: <sip:2005551234@192.0.2.7>;tag=b\r\n\
             Call-ID: call-1@192.0.2.1\r\n\
             CSeq: {cseq}\r\n{}\
             Content-Length: 0\r\n\r\n",
            if contact {
                "Contact: <sip:far@192.0.2.9:5070>\r\n"
            } else {
                ""
            }
        )
    }

    fn message(text: &str) -> SipMessage {
        match read_datagram(text.as_bytes()) {
            Datagram::Message(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    fn request(text: &str) -> rsipstack::sip::Request {
        rsipstack::sip::Request::try_from(text.as_bytes()).unwrap()
    }

    fn sent_invite() -> InviteTargets {
        let targets = InviteTargets::default();
        targets.observe(&request(INVITE), Instant::now());
        targets
    }

    #[test]
    fn a_2xx_to_invite_without_contact_gets_the_invites_request_uri() {
        let targets = sent_invite();
        let mut response = message(&ok("7 INVITE", false));
        assert_eq!(
            repair_contact(&mut response, &targets),
            Repair::Repaired("sip:2005551234@192.0.2.7:5060;user=phone".into())
        );
        let SipMessage::Response(response) = &response else {
            unreachable!()
        };
        let contact = response.contact_header().unwrap().typed().unwrap();
        assert_eq!(
            contact.uri.to_string(),
            "sip:2005551234@192.0.2.7:5060;user=phone"
        );
        // rsipstack's printer and parser agree on the repaired message.
        let again = message(&response.to_string());
        assert!(matches!(
            again,
            SipMessage::Response(r) if r.contact_header().is_ok()
        ));
    }

    #[test]
    fn responses_with_a_contact_or_not_to_invite_are_left_alone() {
        let targets = sent_invite();
        for text in [
            ok("7 INVITE", true),
            ok("8 BYE", false),
            ok("7 INVITE", true).replace("200 OK", "180 Ringing"),
            ok("7 INVITE", false).replace("200 OK", "180 Ringing"),
        ] {
            let mut response = message(&text);
            let before = response.to_string();
            assert_eq!(repair_contact(&mut response, &targets), Repair::NotNeeded);
            assert_eq!(response.to_string(), before);
        }
    }

    #[test]
    fn a_2xx_for_an_invite_never_sent_is_reported_unknown() {
        let targets = sent_invite();
        let mut response = message(&ok("8 INVITE", false));
        assert_eq!(repair_contact(&mut response, &targets), Repair::Unknown);
        let mut other_call = message(&ok("7 INVITE", false).replace("call-1@", "call-2@"));
        assert_eq!(repair_contact(&mut other_call, &targets), Repair::Unknown);
    }

    #[test]
    fn only_invites_are_remembered_once_each_and_expire() {
        let targets = InviteTargets::default();
        let start = Instant::now();
        targets.observe(&request(&INVITE.replace("INVITE", "OPTIONS")), start);
        assert!(targets.is_empty());
        targets.observe(&request(INVITE), start);
        targets.observe(&request(INVITE), start); // retransmission
        assert_eq!(targets.len(), 1);
        let later = start + TARGET_TTL + Duration::from_secs(1);
        targets.observe(&request(&INVITE.replace("call-1@", "call-2@")), later);
        assert_eq!(targets.len(), 1, "the expired INVITE is forgotten");
        assert!(targets.target("call-1@192.0.2.1", 7).is_none());
        assert!(targets.target("call-2@192.0.2.1", 7).is_some());
    }

    #[test]
    fn the_remembered_invites_are_bounded() {
        let targets = InviteTargets::default();
        let now = Instant::now();
        for i in 0..TARGET_CAPACITY + 10 {
            targets.remember((format!("c{i}"), 1), "sip:x@192.0.2.7".into(), now);
        }
        assert_eq!(targets.len(), TARGET_CAPACITY);
        assert!(targets.target("c0", 1).is_none(), "the oldest went first");
        assert!(targets
            .target(&format!("c{}", TARGET_CAPACITY + 9), 1)
            .is_some());
    }

    #[test]
    fn large_messages_parse_whole() {
        let reason = "R".repeat(8 * 1024);
        let ringing = ok("7 INVITE", true).replace("200 OK", &format!("180 {reason}"));
        let SipMessage::Response(r) = message(&ringing) else {
            unreachable!()
        };
        assert_eq!(r.status_code.code(), 180);
        assert_eq!(r.wire_reason.as_deref(), Some(reason.as_str()));
        let padding: String = (0..60)
            .map(|i| format!("X-Padding-{i}: {}\r\n", "p".repeat(990)))
            .collect();
        let big =
            ok("7 INVITE", true).replace("Content-Length", &format!("{padding}Content-Length"));
        assert!(big.len() > 60_000 && big.len() < 65_507, "{}", big.len());
        let SipMessage::Response(r) = message(&big) else {
            unreachable!()
        };
        assert!(r.headers.iter().count() > 60);
    }

    #[test]
    fn keepalives_and_garbage_are_sorted_out() {
        assert!(matches!(read_datagram(b"\r\n\r\n"), Datagram::Ping));
        assert!(matches!(read_datagram(b"\r\n"), Datagram::KeepAlive));
        assert!(matches!(read_datagram(b"  \r\n \t"), Datagram::KeepAlive));
        let mut stun = vec![0x00, 0x01, 0x00, 0x00];
        stun.extend_from_slice(&STUN_COOKIE);
        stun.extend_from_slice(&[7; 12]);
        assert!(matches!(read_datagram(&stun), Datagram::KeepAlive));
        for garbage in [
            &b"\x00\x01\x02garbage"[..],
            b"hello world\r\n\r\n",
            b"SIP/2.0 abc\r\n\r\n",
        ] {
            match read_datagram(garbage) {
                Datagram::NotSip(error) => assert!(!error.is_empty()),
                other => panic!("{garbage:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_drop_reason_has_its_own_counter() {
        let stats = SipUdpStats::default();
        for (n, reason) in DropReason::ALL.iter().enumerate() {
            stats.drop_counter(*reason).fetch_add(n as u64 + 1, Relaxed);
        }
        assert_eq!(
            stats.dropped(),
            vec![
                ("bad_via", 1),
                ("not_sip", 2),
                ("socket_error", 3),
                ("stack_stopped", 4)
            ]
        );
    }
}
