//! A test double of an Exchange (or grommunio) EWS mailbox server.
//!
//! [`MailboxDouble`] is an HTTP/1.1 server on `127.0.0.1` that answers `POST
//! /EWS/Exchange.asmx` with SOAP 1.1 in the shapes Microsoft documents for `GetFolder`,
//! `GetItem`, `GetAttachment` and `FindItem` (sources in `fixtures/mailbox/README.md`). It holds
//! mailboxes with their logins, passwords and Bearer tokens, and items with attachments, and it
//! answers each mailbox's requests only about its own items:
//!
//! - Authentication is `Authorization: Basic` (any configured login of the mailbox, case
//!   insensitive, with its password) or `Bearer <token>`. Anything else is HTTP 401 with an empty
//!   body and `WWW-Authenticate: Basic realm="…"` (plus `Bearer realm="…"` when any mailbox has a
//!   token), as IIS answers in front of Exchange.
//! - With [`MailboxDoubleBuilder::ntlm`], NTLM too (MS-NLMP, NTLMv2 only), as `NTLM` or as
//!   `Negotiate` wrapping a raw NTLMSSP token, and 401s also offer `NTLM` and `Negotiate`. NTLM
//!   authenticates the TCP connection: `NTLM <type 1>` is answered 401 with `NTLM <type 2>` (a
//!   fresh server challenge, the domain in the target info) on the same connection; `NTLM <type
//!   3>` is checked against the password of the mailbox whose login is `DOMAIN\user`,
//!   `user@domain` or `user` (as Basic logins match), and on success that request and every
//!   later one on the connection without `Authorization` are served as that mailbox. Such
//!   requests are logged with `auth_scheme` `NTLM`; a new connection must authenticate again.
//! - Per-item problems are HTTP 200 with `ResponseClass="Error"`: `ErrorInvalidIdEmpty`,
//!   `ErrorInvalidIdMalformed` (not base64, or not an id of Exchange's layout),
//!   `ErrorItemNotFound` (unknown or deleted), and for an item of **another** mailbox
//!   `ErrorAccessDenied` by default ([`ForeignItemError`] explains the choice). An
//!   `ErrorAccessDenied` stops the batch: later ids in the same request answer
//!   `ErrorBatchProcessingStopped` warnings, as Exchange does.
//! - Requests that cannot be processed are SOAP faults with HTTP 500: `ErrorInvalidRequest` (not
//!   well-formed, or no operation), `ErrorSchemaValidation` (not a SOAP 1.1 envelope, not an EWS
//!   operation, a required element missing), `ErrorInvalidOperation` (a real EWS operation the
//!   double does not implement).
//! - `POST /autodiscover/autodiscover.xml` answers the POX Autodiscover response of the caller's
//!   mailbox (same authentication), naming the double's EWS URL; `POST
//!   /autodiscover/autodiscover.svc` answers SOAP Autodiscover `GetUserSettings` (what
//!   exchangelib 5.x uses) with the same EWS URL.
//! - [`Mode`] switches faults on at run time (connections refused, slow answers, garbage, HTTP
//!   500 HTML pages), and every request is kept in a log ([`LoggedRequest`]) for assertions.
//!
//! Ids are minted in Exchange's layout (see `ids.rs`): item ids of 152 base64 characters starting
//! `AAMkA` with the mailbox GUID inside, longer attachment ids, change keys `CQAAABYAAAA…`.
//! Items whose class starts with `IPM.Note.Microsoft.Voicemail` (or the protected
//! `IPM.Note.RPMSG.Microsoft.Voicemail`) also appear in the `voicemail` search folder unless
//! they are in Deleted Items. `GetFolder` also knows `root` and `msgfolderroot` (no items), which
//! exchangelib resolves before any other folder.
//!
//! Not modelled: `FindItem` restrictions, sort orders, grouping and `BasePoint="End"` (items come
//! newest first; `IndexedPageItemView` offsets count from the beginning), soft-deleted and
//! associated items (those traversals are empty), item attachments, MIME content, bodies.
//! Unknown `FieldURI`s are ignored rather than refused.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use openum_testkit::mailbox::{Attachment, Item, Mailbox, MailboxDouble, Mode};
//!
//! let mut builder = MailboxDouble::builder();
//! let alice = builder.mailbox(
//!     Mailbox::new("alice@example.com").login("EXAMPLE\\alice").password("s3cret"),
//! );
//! let voicemail = builder.item(
//!     &alice,
//!     Item::voicemail("Voice Mail from +49 30 1234567 (12 seconds)")
//!         .attachment(Attachment::file("audio.mp3", "audio/mpeg", b"ID3".to_vec()))
//!         .attachment_order("audio.mp3"),
//! );
//! let double = builder.start().await?;
//! // Point the code under test at `double.url()` and give it `voicemail.id`, then:
//! assert_eq!(double.requests()[0].operation.as_deref(), Some("GetItem"));
//! double.set_mode(Mode::Down).await; // connections are refused from here on
//! # Ok(()) }
//! ```

mod autodiscover;
mod ews;
mod ids;
mod xml;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::ntlm;
use ids::MailboxIds;

/// PidTagVoiceMessageAttachmentOrder: property id `0x6805`, `PtypString` ([MS-OXPROPS] 2.1060,
/// [MS-OXOUM] 2.2.5.9); in EWS `<t:ExtendedFieldURI PropertyTag="0x6805" PropertyType="String"/>`.
const ATTACHMENT_ORDER_TAG: u16 = 0x6805;

/// The message class of a voice message taken by call answering ([MS-OXOUM] 2.2.2.1).
const VOICEMAIL_CLASS: &str = "IPM.Note.Microsoft.Voicemail.UM.CA";

/// The path EWS is served on (matched case-insensitively, as IIS does).
const EWS_PATH: &str = "/EWS/Exchange.asmx";

/// The POX Autodiscover path (matched case-insensitively).
const AUTODISCOVER_PATH: &str = "/autodiscover/autodiscover.xml";

/// The folder an item is stored in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Folder {
    /// `inbox` (the default).
    #[default]
    Inbox,
    /// `deleteditems`: still readable with `GetItem`, but out of the `voicemail` search folder.
    DeletedItems,
}

/// What the double answers when a mailbox asks for an item (or folder) of another mailbox.
///
/// Exchange ids carry the owning mailbox's GUID, so the server knows whose item it is and checks
/// the caller's rights on it. Microsoft's `ResponseCode` reference describes `ErrorAccessDenied`
/// as the calling account lacking the rights for the action, and lists it among the errors that
/// stop a batch (`ErrorBatchProcessingStopped`); it also describes `ErrorItemNotFound` as "not
/// found *or* no permission". The default is `AccessDenied`; switch to `ItemNotFound` to check
/// that the code under test treats both the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForeignItemError {
    /// `ErrorAccessDenied`, "Access is denied. Check credentials and try again." (the default).
    #[default]
    AccessDenied,
    /// `ErrorItemNotFound` for items and attachments, `ErrorFolderNotFound` for folders.
    ItemNotFound,
}

/// The fault the double plays, switchable at run time with [`MailboxDouble::set_mode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Answers as a mailbox server.
    #[default]
    Normal,
    /// The server is gone: the listening socket is closed (connections are refused) and open
    /// connections are dropped. Switching to any other mode listens again on the same port.
    Down,
    /// Reads each request, waits this long, then answers normally.
    Slow(Duration),
    /// Answers every request HTTP 200, `Content-Type: text/xml; charset=utf-8`, with a body that
    /// is not XML.
    Garbage,
    /// Answers every request HTTP 500 with an HTML error page (`text/html`), as IIS does when
    /// the application behind it fails — not a SOAP fault.
    ServerError,
    /// Answers every request HTTP 200, `Content-Type: text/xml; charset=utf-8`, with a body of
    /// this many bytes (a SOAP envelope padded with white space), to test streaming.
    Huge(usize),
}

/// A mailbox to create: its primary SMTP address, the logins that reach it, its password and
/// Bearer tokens.
#[derive(Clone)]
pub struct Mailbox {
    primary_smtp: String,
    logins: Vec<String>,
    password: Option<String>,
    tokens: Vec<String>,
}

impl Mailbox {
    /// A mailbox whose primary SMTP address is also a login (as a UPN usually is).
    pub fn new(primary_smtp: impl Into<String>) -> Self {
        let primary_smtp = primary_smtp.into();
        Self {
            logins: vec![primary_smtp.clone()],
            primary_smtp,
            password: None,
            tokens: Vec::new(),
        }
    }

    /// Another login name that reaches this mailbox, e.g. `EXAMPLE\alice` (matched without
    /// regard to case, as Windows logons are).
    pub fn login(mut self, name: impl Into<String>) -> Self {
        self.logins.push(name.into());
        self
    }

    /// The password for Basic authentication (without one, Basic never succeeds).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// A token that authenticates as this mailbox with `Authorization: Bearer <token>`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.tokens.push(token.into());
        self
    }
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("primary_smtp", &self.primary_smtp)
            .field("logins", &self.logins)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

/// An item to store in a mailbox.
#[derive(Clone, Debug)]
pub struct Item {
    subject: String,
    item_class: String,
    folder: Folder,
    attachments: Vec<Attachment>,
    extended: Vec<(u16, String, String)>,
    received: Option<String>,
}

impl Item {
    /// An item of message class `item_class` (e.g. `IPM.Note`) in the Inbox.
    pub fn new(subject: impl Into<String>, item_class: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            item_class: item_class.into(),
            folder: Folder::Inbox,
            attachments: Vec::new(),
            extended: Vec::new(),
            received: None,
        }
    }

    /// A voice message taken by call answering: class `IPM.Note.Microsoft.Voicemail.UM.CA`.
    pub fn voicemail(subject: impl Into<String>) -> Self {
        Self::new(subject, VOICEMAIL_CLASS)
    }

    /// An ordinary email: class `IPM.Note`.
    pub fn note(subject: impl Into<String>) -> Self {
        Self::new(subject, "IPM.Note")
    }

    /// Stores the item in `folder` instead of the Inbox.
    pub fn folder(mut self, folder: Folder) -> Self {
        self.folder = folder;
        self
    }

    /// Adds a file attachment (attachment ids follow the order of these calls).
    pub fn attachment(mut self, attachment: Attachment) -> Self {
        self.attachments.push(attachment);
        self
    }

    /// Sets PidTagVoiceMessageAttachmentOrder (0x6805, `String`): attachment file names, most
    /// recent first, separated by semicolons ([MS-OXOUM] 2.2.5.9), e.g. `"audio.mp3"`.
    pub fn attachment_order(self, value: impl Into<String>) -> Self {
        self.extended_property(ATTACHMENT_ORDER_TAG, "String", value)
    }

    /// Sets any tagged MAPI property, returned when a request names it with
    /// `<t:ExtendedFieldURI PropertyTag="…" PropertyType="…"/>` (same tag and type).
    pub fn extended_property(
        mut self,
        tag: u16,
        property_type: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let property_type = property_type.into();
        self.extended
            .retain(|(t, k, _)| !(*t == tag && *k == property_type));
        self.extended.push((tag, property_type, value.into()));
        self
    }

    /// `DateTimeReceived`, as `xs:dateTime` text (e.g. `2024-05-01T10:00:00Z`). By default items
    /// are received one minute apart in the order they are added, from 2024-01-02T08:00:00Z.
    pub fn received(mut self, date_time: impl Into<String>) -> Self {
        self.received = Some(date_time.into());
        self
    }
}

/// A file attachment.
#[derive(Clone)]
pub struct Attachment {
    name: String,
    content_type: String,
    bytes: Vec<u8>,
    inline: bool,
    content_id: Option<String>,
}

impl Attachment {
    /// A file attachment named `name` (PidTagAttachLongFilename) of MIME type `content_type`.
    pub fn file(
        name: impl Into<String>,
        content_type: impl Into<String>,
        bytes: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            name: name.into(),
            content_type: content_type.into(),
            bytes: bytes.into(),
            inline: false,
            content_id: None,
        }
    }

    /// Marks the attachment inline (`IsInline`); items whose attachments are all inline report
    /// `HasAttachments` false, as Exchange does.
    pub fn inline(mut self, inline: bool) -> Self {
        self.inline = inline;
        self
    }

    /// Sets `ContentId`.
    pub fn content_id(mut self, content_id: impl Into<String>) -> Self {
        self.content_id = Some(content_id.into());
        self
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("content_type", &self.content_type)
            .field("bytes", &self.bytes.len())
            .field("inline", &self.inline)
            .field("content_id", &self.content_id)
            .finish()
    }
}

/// A mailbox the double holds, with the identity a `GetFolder` of its Inbox reveals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxRef {
    /// The primary SMTP address.
    pub primary_smtp: String,
    /// The mailbox GUID embedded in all of its ids.
    pub mailbox_guid: String,
    /// The Inbox `FolderId/@Id` (the same for every login that reaches the mailbox).
    pub inbox_id: String,
    /// The `voicemail` search folder's `FolderId/@Id`.
    pub voicemail_folder_id: String,
    index: usize,
}

/// An item the double holds: its ids as `GetItem`/`FindItem` return them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRef {
    /// `ItemId/@Id`.
    pub id: String,
    /// `ItemId/@ChangeKey`.
    pub change_key: String,
    /// `AttachmentId/@Id` of each attachment, in the order they were added.
    pub attachment_ids: Vec<String>,
}

/// One HTTP request the double received (connections refused in [`Mode::Down`] leave none).
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    /// `POST`, `GET`, …
    pub method: String,
    /// The request path.
    pub path: String,
    /// Every header but `Authorization`, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The `Authorization` scheme as sent (`Basic`, `Bearer`, `NTLM`, …), if any.
    pub auth_scheme: Option<String>,
    /// The Basic login name as sent (never the password; nothing for Bearer).
    pub login: Option<String>,
    /// The primary SMTP address of the mailbox the credentials reached, if they were valid.
    pub mailbox: Option<String>,
    /// The local name of the SOAP body's first element, if the body is a SOAP envelope.
    pub operation: Option<String>,
    /// The raw request body.
    pub body: Vec<u8>,
    /// The HTTP status the double answered.
    pub status: u16,
}

impl LoggedRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Builds a [`MailboxDouble`]: mailboxes, their items, then [`start`](Self::start).
#[derive(Debug)]
pub struct MailboxDoubleBuilder {
    store: Store,
    realm: String,
    ntlm: Option<String>,
}

impl MailboxDoubleBuilder {
    /// Adds a mailbox.
    pub fn mailbox(&mut self, mailbox: Mailbox) -> MailboxRef {
        self.store.add_mailbox(mailbox)
    }

    /// Adds an item to `mailbox` and returns its ids.
    pub fn item(&mut self, mailbox: &MailboxRef, item: Item) -> ItemRef {
        self.store.add_item(mailbox.index, item)
    }

    /// The realm of the `WWW-Authenticate` challenges (default `127.0.0.1`).
    pub fn realm(&mut self, realm: impl Into<String>) -> &mut Self {
        self.realm = realm.into();
        self
    }

    /// Also accepts NTLM (and Negotiate carrying NTLM) for `domain`, the NetBIOS domain named
    /// in the challenge's target info.
    pub fn ntlm(&mut self, domain: impl Into<String>) -> &mut Self {
        self.ntlm = Some(domain.into());
        self
    }

    /// What another mailbox's items answer (default [`ForeignItemError::AccessDenied`]).
    pub fn foreign_item_error(&mut self, error: ForeignItemError) -> &mut Self {
        self.store.foreign_item_error = error;
        self
    }

    /// Listens on `127.0.0.1:0` and serves until the double is dropped.
    pub async fn start(self) -> std::io::Result<MailboxDouble> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            has_tokens: self.store.mailboxes.iter().any(|m| !m.tokens.is_empty()),
            store: Mutex::new(self.store),
            mode: Mutex::new(Mode::Normal),
            log: Mutex::new(Vec::new()),
            realm: self.realm,
            ntlm: self.ntlm,
            challenges: std::sync::atomic::AtomicU64::new(0),
            addr,
        });
        let (control, commands) = mpsc::channel(4);
        let task = tokio::spawn(run(Arc::clone(&shared), listener, addr, commands));
        Ok(MailboxDouble {
            shared,
            addr,
            control,
            task,
        })
    }
}

/// The running double; dropping it stops the server.
#[derive(Debug)]
pub struct MailboxDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    control: mpsc::Sender<Control>,
    task: JoinHandle<()>,
}

impl MailboxDouble {
    /// Starts building a double.
    pub fn builder() -> MailboxDoubleBuilder {
        MailboxDoubleBuilder {
            store: Store::default(),
            realm: "127.0.0.1".into(),
            ntlm: None,
        }
    }

    /// `http://127.0.0.1:PORT/EWS/Exchange.asmx`.
    pub fn url(&self) -> String {
        format!("http://{}{EWS_PATH}", self.addr)
    }

    /// The address the double listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *lock(&self.shared.mode)
    }

    /// Switches the mode. Returns once it holds: after `set_mode(Mode::Down)` connections are
    /// refused; after leaving `Down` the double listens again on the same address.
    ///
    /// Panics (this is test support) if the port cannot be listened on again.
    pub async fn set_mode(&self, mode: Mode) {
        let was_down = std::mem::replace(&mut *lock(&self.shared.mode), mode) == Mode::Down;
        let is_down = mode == Mode::Down;
        if was_down == is_down {
            return;
        }
        let outcome = if is_down {
            let (done, wait) = oneshot::channel();
            self.send(Control::Close(done)).await;
            wait.await.map(|()| Ok(()))
        } else {
            let (done, wait) = oneshot::channel();
            self.send(Control::Open(done)).await;
            wait.await
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "the mailbox double cannot listen on {} again: {e}",
                self.addr
            ),
            Err(_) => panic!("the mailbox double's server task has stopped"),
        }
    }

    /// Adds an item while the double runs.
    pub fn add_item(&self, mailbox: &MailboxRef, item: Item) -> ItemRef {
        lock(&self.shared.store).add_item(mailbox.index, item)
    }

    /// Deletes an item (hard delete): it and its attachments answer `ErrorItemNotFound` from now
    /// on and leave every folder. Returns whether the item existed.
    pub fn delete_item(&self, item: &ItemRef) -> bool {
        let mut store = lock(&self.shared.store);
        let found = store
            .mailboxes
            .iter_mut()
            .flat_map(|m| m.items.iter_mut())
            .find(|i| i.id == item.id && !i.deleted);
        match found {
            Some(i) => {
                i.deleted = true;
                true
            }
            None => false,
        }
    }

    async fn send(&self, command: Control) {
        if self.control.send(command).await.is_err() {
            panic!("the mailbox double's server task has stopped");
        }
    }
}

impl Drop for MailboxDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// State shared by the server task, its connections and the test.
#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    mode: Mutex<Mode>,
    log: Mutex<Vec<LoggedRequest>>,
    realm: String,
    has_tokens: bool,
    /// The NTLM domain, when NTLM is offered.
    ntlm: Option<String>,
    /// Server challenges issued (a nonce ingredient).
    challenges: std::sync::atomic::AtomicU64,
    addr: SocketAddr,
}

/// NTLM state of one TCP connection.
#[derive(Debug, Default)]
struct ConnectionAuth {
    /// The server challenge of the last type 2 message sent on it.
    challenge: Option<[u8; 8]>,
    /// The mailbox the connection authenticated as.
    mailbox: Option<usize>,
}

/// Commands from [`MailboxDouble::set_mode`] to the server task.
#[derive(Debug)]
enum Control {
    /// Stop listening and drop open connections.
    Close(oneshot::Sender<()>),
    /// Listen again.
    Open(oneshot::Sender<std::io::Result<()>>),
}

/// Accepts connections (while listening) and obeys [`Control`] commands.
async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    mut commands: mpsc::Receiver<Control>,
) {
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => break,
                Some(Control::Close(done)) => {
                    listener = None;
                    connections.abort_all();
                    let _ = done.send(());
                }
                Some(Control::Open(done)) => {
                    let mut result = Ok(());
                    if listener.is_none() {
                        match listen_again(addr).await {
                            Ok(l) => listener = Some(l),
                            Err(e) => result = Err(e),
                        }
                    }
                    let _ = done.send(result);
                }
            },
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(Arc::clone(&shared), stream));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Binds `addr` again, retrying briefly in case the kernel has not released it yet.
async fn listen_again(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut attempt = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if attempt >= 40 => return Err(e),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let connection = Arc::new(Mutex::new(ConnectionAuth::default()));
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let connection = Arc::clone(&connection);
        async move { Ok::<_, Infallible>(handle(&shared, &connection, request).await) }
    });
    // A client that goes away mid-request is not the double's problem.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Answers one HTTP request and logs it.
async fn handle(
    shared: &Shared,
    connection: &Mutex<ConnectionAuth>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let mode = *lock(&shared.mode);
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Mode::Slow(delay) = mode {
        tokio::time::sleep(delay).await;
    }
    let mut credentials = Credentials::read(parts.headers.get(AUTHORIZATION));
    let mut caller = lock(&shared.store).authenticate(&credentials);
    let mut login = credentials.login();
    let mut challenge = None;
    if let (Some(domain), Credentials::Ntlm { negotiate, token }) = (&shared.ntlm, &credentials) {
        match ntlm::message_type(token) {
            Some(1) => {
                let nonce = shared.server_challenge();
                let mut auth = lock(connection);
                auth.challenge = Some(nonce);
                auth.mailbox = None;
                let scheme = if *negotiate { "Negotiate" } else { "NTLM" };
                let message = ntlm::challenge(nonce, domain, "MAILDOUBLE");
                challenge = Some(format!("{scheme} {}", STANDARD.encode(message)));
            }
            Some(3) => {
                let mut auth = lock(connection);
                let found = auth
                    .challenge
                    .take()
                    .zip(ntlm::parse_authenticate(token).ok());
                auth.mailbox = found.and_then(|(nonce, answer)| {
                    login = Some(if answer.domain.is_empty() {
                        answer.user.clone()
                    } else {
                        format!("{}\\{}", answer.domain, answer.user)
                    });
                    lock(&shared.store).authenticate_ntlm(&answer, &nonce)
                });
                caller = auth.mailbox;
            }
            _ => {}
        }
    } else if matches!(credentials, Credentials::None) {
        if let Some(mailbox) = lock(connection).mailbox {
            caller = Some(mailbox);
            credentials = Credentials::Connection;
        }
    }
    let response = match (mode, challenge) {
        (_, Some(challenge)) => {
            let mut response = plain(StatusCode::UNAUTHORIZED, None, Bytes::new());
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            response
        }
        (Mode::Garbage, None) => garbage(),
        (Mode::ServerError, None) => server_error_page(),
        (Mode::Huge(bytes), None) => huge(bytes),
        (Mode::Normal | Mode::Slow(_) | Mode::Down, None) => {
            shared.answer(&parts.method, parts.uri.path(), &body, &credentials, caller)
        }
    };
    let mailbox = caller.map(|i| lock(&shared.store).mailboxes[i].primary_smtp.clone());
    lock(&shared.log).push(LoggedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .filter(|(name, _)| *name != AUTHORIZATION)
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        auth_scheme: credentials.scheme(),
        login,
        mailbox,
        operation: ews::operation_name(&body),
        body: body.to_vec(),
        status: response.status().as_u16(),
    });
    response
}

impl Shared {
    /// A fresh 8-byte server challenge.
    fn server_challenge(&self) -> [u8; 8] {
        use sha2::Digest as _;
        let n = self
            .challenges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let digest = sha2::Sha256::digest(format!("{n}:{now}:{}", self.addr));
        let mut nonce = [0; 8];
        nonce.copy_from_slice(&digest[..8]);
        nonce
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        credentials: &Credentials,
        caller: Option<usize>,
    ) -> Response<Full<Bytes>> {
        let autodiscover = path.eq_ignore_ascii_case(AUTODISCOVER_PATH);
        let soap_autodiscover = path.eq_ignore_ascii_case(autodiscover::SVC_PATH);
        if !path.eq_ignore_ascii_case(EWS_PATH) && !autodiscover && !soap_autodiscover {
            return plain(StatusCode::NOT_FOUND, None, Bytes::new());
        }
        let Some(caller) = caller else {
            return self.unauthorized(credentials);
        };
        if method != Method::POST {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, None, Bytes::new());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        if autodiscover {
            let smtp = lock(&self.store).mailboxes[caller].primary_smtp.clone();
            return plain(
                StatusCode::OK,
                Some("text/xml; charset=utf-8"),
                Bytes::from(pox_autodiscover(&smtp, self.addr)),
            );
        }
        if soap_autodiscover {
            return self.soap_autodiscover(body);
        }
        let reply = ews::respond(&lock(&self.store), caller, body);
        let (status, document) = match reply {
            ews::Reply::Document(d) => (StatusCode::OK, d),
            ews::Reply::Fault(f) => (StatusCode::INTERNAL_SERVER_ERROR, f),
        };
        plain(
            status,
            Some("text/xml; charset=utf-8"),
            Bytes::from(document),
        )
    }

    /// SOAP Autodiscover `GetUserSettings` (see `autodiscover.rs`), naming the double's EWS URL.
    fn soap_autodiscover(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let ews_url = format!("http://{}{EWS_PATH}", self.addr);
        let (is_fault, document) = autodiscover::respond(&lock(&self.store), body, &ews_url);
        let status = if is_fault {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        plain(
            status,
            Some("text/xml; charset=utf-8"),
            Bytes::from(document),
        )
    }

    /// HTTP 401, empty body, one challenge per scheme the double accepts.
    fn unauthorized(&self, credentials: &Credentials) -> Response<Full<Bytes>> {
        let mut response = plain(StatusCode::UNAUTHORIZED, None, Bytes::new());
        let realm = &self.realm;
        let mut challenges = vec![format!("Basic realm=\"{realm}\"")];
        if self.has_tokens {
            let mut bearer = format!("Bearer realm=\"{realm}\"");
            if matches!(credentials, Credentials::Bearer(_)) {
                bearer.push_str(", error=\"invalid_token\"");
            }
            challenges.push(bearer);
        }
        if self.ntlm.is_some() {
            challenges.push("NTLM".into());
            challenges.push("Negotiate".into());
        }
        for challenge in challenges {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response.headers_mut().append(WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

fn plain(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// The POX Autodiscover answer for `smtp` ("Autodiscover XML response", `Protocol` of type
/// `EXCH` and `EXPR`): `ASUrl`, `EwsUrl` and `OOFUrl` are the double's EWS URL; `UMUrl` and
/// `OABUrl` are other URLs of the same server, as Exchange gives them.
fn pox_autodiscover(smtp: &str, addr: SocketAddr) -> String {
    let base = format!("http://{addr}");
    let ews = format!("{base}{EWS_PATH}");
    let protocol = |kind: &str| {
        format!(
            "<Protocol><Type>{kind}</Type><Server>{addr}</Server><ASUrl>{ews}</ASUrl><EwsUrl>{ews}</EwsUrl><OOFUrl>{ews}</OOFUrl><UMUrl>{base}/EWS/UM2007Legacy.asmx</UMUrl><OABUrl>{base}/OAB/00000000-0000-0000-0000-000000000000/</OABUrl></Protocol>"
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\"><Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"><User><DisplayName>{smtp}</DisplayName><AutoDiscoverSMTPAddress>{smtp}</AutoDiscoverSMTPAddress></User><Account><AccountType>email</AccountType><Action>settings</Action>{}{}</Account></Response></Autodiscover>",
        protocol("EXCH"),
        protocol("EXPR"),
    )
}

fn huge(bytes: usize) -> Response<Full<Bytes>> {
    let head: &[u8] = b"<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>";
    let tail: &[u8] = b"</s:Body></s:Envelope>";
    let mut body = Vec::with_capacity(bytes.max(head.len() + tail.len()));
    body.extend_from_slice(head);
    body.resize(bytes.saturating_sub(tail.len()).max(head.len()), b' ');
    body.extend_from_slice(tail);
    plain(
        StatusCode::OK,
        Some("text/xml; charset=utf-8"),
        Bytes::from(body),
    )
}

fn garbage() -> Response<Full<Bytes>> {
    plain(
        StatusCode::OK,
        Some("text/xml; charset=utf-8"),
        Bytes::from_static(b"this is not XML {{{ <<<< &&& >"),
    )
}

fn server_error_page() -> Response<Full<Bytes>> {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        Some("text/html"),
        Bytes::from_static(
            b"<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>500 - Internal server error.</title></head>\r\n<body><div id=\"header\"><h1>Server Error</h1></div><div id=\"content\"><h2>500 - Internal server error.</h2></div></body></html>\r\n",
        ),
    )
}

/// What the `Authorization` header carried.
#[derive(Debug)]
enum Credentials {
    None,
    Basic {
        login: String,
        password: String,
    },
    Bearer(String),
    /// An NTLMSSP token, sent as `NTLM` or as `Negotiate`.
    Ntlm {
        negotiate: bool,
        token: Vec<u8>,
    },
    /// No header, on a connection NTLM authenticated.
    Connection,
    /// A scheme the double does not accept (Kerberos, …), or undecodable Basic or NTLM.
    Other(String),
}

impl Credentials {
    fn read(header: Option<&HeaderValue>) -> Self {
        let Some(value) = header.and_then(|v| v.to_str().ok()) else {
            return match header {
                Some(_) => Self::Other(String::new()),
                None => Self::None,
            };
        };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if scheme.eq_ignore_ascii_case("Basic") {
            let decoded = STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((login, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Self::Basic {
                    login: login.to_owned(),
                    password: password.to_owned(),
                };
            }
        } else if scheme.eq_ignore_ascii_case("Bearer") {
            return Self::Bearer(rest.trim().to_owned());
        } else if scheme.eq_ignore_ascii_case("NTLM") || scheme.eq_ignore_ascii_case("Negotiate") {
            let token = STANDARD.decode(rest.trim()).ok();
            if let Some(token) = token.filter(|t| ntlm::message_type(t).is_some()) {
                return Self::Ntlm {
                    negotiate: scheme.eq_ignore_ascii_case("Negotiate"),
                    token,
                };
            }
        }
        Self::Other(scheme.to_owned())
    }

    fn scheme(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Basic { .. } => Some("Basic".into()),
            Self::Bearer(_) => Some("Bearer".into()),
            Self::Ntlm { .. } | Self::Connection => Some("NTLM".into()),
            Self::Other(scheme) => Some(scheme.clone()),
        }
    }

    fn login(&self) -> Option<String> {
        match self {
            Self::Basic { login, .. } => Some(login.clone()),
            _ => None,
        }
    }
}

/// Every mailbox and item.
#[derive(Debug, Default)]
struct Store {
    mailboxes: Vec<StoredMailbox>,
    foreign_item_error: ForeignItemError,
    /// Items added so far (orders default receive times and ties).
    sequence: u64,
}

struct StoredMailbox {
    primary_smtp: String,
    logins: Vec<String>,
    password: Option<String>,
    tokens: Vec<String>,
    ids: MailboxIds,
    items: Vec<StoredItem>,
    /// The next message global counter.
    next_gcn: u64,
}

impl fmt::Debug for StoredMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMailbox")
            .field("primary_smtp", &self.primary_smtp)
            .field("logins", &self.logins)
            .field("guid", &self.ids.guid())
            .field("items", &self.items.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct StoredItem {
    id: String,
    change_key: String,
    parent_folder_id: String,
    parent_folder_change_key: String,
    folder: Folder,
    item_class: String,
    subject: String,
    received: String,
    sequence: u64,
    extended: Vec<(u16, String, String)>,
    attachments: Vec<StoredAttachment>,
    deleted: bool,
}

#[derive(Debug)]
struct StoredAttachment {
    id: String,
    name: String,
    content_type: String,
    content_id: Option<String>,
    inline: bool,
    bytes: Vec<u8>,
    last_modified: String,
}

/// The folders the double models: two real ones, the `voicemail` search folder, and the two
/// roots clients resolve first (exchangelib asks for `root` before any other folder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FolderKind {
    Inbox,
    DeletedItems,
    VoiceMail,
    /// `root`: the root of the mailbox's folder hierarchy (never holds items).
    Root,
    /// `msgfolderroot`: "Top of Information Store", the parent of Inbox and the others.
    MsgFolderRoot,
}

impl FolderKind {
    const ALL: [Self; 5] = [
        Self::Inbox,
        Self::DeletedItems,
        Self::VoiceMail,
        Self::Root,
        Self::MsgFolderRoot,
    ];

    fn from_distinguished(name: &str) -> Option<Self> {
        match name {
            "inbox" => Some(Self::Inbox),
            "deleteditems" => Some(Self::DeletedItems),
            "voicemail" => Some(Self::VoiceMail),
            "root" => Some(Self::Root),
            "msgfolderroot" => Some(Self::MsgFolderRoot),
            _ => None,
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            Self::Inbox => "Inbox",
            Self::DeletedItems => "Deleted Items",
            Self::VoiceMail => "Voice Mail",
            // Exchange's root has an empty name; Top of Information Store is named so.
            Self::Root => "",
            Self::MsgFolderRoot => "Top of Information Store",
        }
    }

    /// `FolderClass`: the roots have none.
    fn folder_class(self) -> Option<&'static str> {
        match self {
            Self::Inbox | Self::DeletedItems => Some("IPF.Note"),
            Self::VoiceMail => Some("IPF.Note.Microsoft.Voicemail"),
            Self::Root | Self::MsgFolderRoot => None,
        }
    }

    /// The folder's global counter (a new Exchange mailbox's Inbox is `0x10c`).
    fn gcn(self) -> u64 {
        match self {
            Self::Inbox => 0x010c,
            Self::DeletedItems => 0x010a,
            Self::VoiceMail => 0x4e21,
            Self::Root => 0x0001,
            Self::MsgFolderRoot => 0x0009,
        }
    }

    fn of(folder: Folder) -> Self {
        match folder {
            Folder::Inbox => Self::Inbox,
            Folder::DeletedItems => Self::DeletedItems,
        }
    }

    fn contains(self, item: &StoredItem) -> bool {
        match self {
            Self::VoiceMail => {
                item.folder != Folder::DeletedItems && is_voice_mail(&item.item_class)
            }
            Self::Root | Self::MsgFolderRoot => false,
            real => Self::of(item.folder) == real,
        }
    }
}

/// Voice-mail classes ([MS-OXOUM] 2.2.2.1; the protected variant as in [MS-ASEMAIL]), compared
/// without regard to case as message classes are.
fn is_voice_mail(item_class: &str) -> bool {
    let class = item_class.to_ascii_lowercase();
    class.starts_with("ipm.note.microsoft.voicemail")
        || class.starts_with("ipm.note.rpmsg.microsoft.voicemail")
}

impl StoredMailbox {
    fn answers_to(&self, name: &str) -> bool {
        self.logins.iter().any(|l| l.eq_ignore_ascii_case(name))
    }

    fn folder_id(&self, kind: FolderKind) -> String {
        self.ids.folder_id(kind.gcn())
    }

    fn folder_change_key(&self, kind: FolderKind) -> String {
        self.ids.folder_change_key(kind.gcn() + 0x20)
    }
}

impl Store {
    fn add_mailbox(&mut self, mailbox: Mailbox) -> MailboxRef {
        let stored = StoredMailbox {
            ids: MailboxIds::for_address(&mailbox.primary_smtp),
            primary_smtp: mailbox.primary_smtp,
            logins: mailbox.logins,
            password: mailbox.password,
            tokens: mailbox.tokens,
            items: Vec::new(),
            next_gcn: 0x5001,
        };
        let reference = MailboxRef {
            primary_smtp: stored.primary_smtp.clone(),
            mailbox_guid: stored.ids.guid().to_owned(),
            inbox_id: stored.folder_id(FolderKind::Inbox),
            voicemail_folder_id: stored.folder_id(FolderKind::VoiceMail),
            index: self.mailboxes.len(),
        };
        self.mailboxes.push(stored);
        reference
    }

    fn add_item(&mut self, mailbox: usize, item: Item) -> ItemRef {
        self.sequence += 1;
        let sequence = self.sequence;
        let mailbox = &mut self.mailboxes[mailbox];
        let gcn = mailbox.next_gcn;
        mailbox.next_gcn += 1;
        let folder = FolderKind::of(item.folder);
        let ids = &mailbox.ids;
        let received = item
            .received
            .unwrap_or_else(|| date_time(1_704_182_400 + 60 * sequence, true));
        let attachments: Vec<StoredAttachment> = item
            .attachments
            .into_iter()
            .zip(0u32..)
            .map(|(a, index)| StoredAttachment {
                id: ids.attachment_id(folder.gcn(), gcn, index),
                name: a.name,
                content_type: a.content_type,
                content_id: a.content_id,
                inline: a.inline,
                bytes: a.bytes,
                last_modified: date_time(1_704_182_400 + 60 * sequence, false),
            })
            .collect();
        let stored = StoredItem {
            id: ids.item_id(folder.gcn(), gcn),
            change_key: ids.item_change_key(gcn + 0x100),
            parent_folder_id: mailbox.folder_id(folder),
            parent_folder_change_key: mailbox.folder_change_key(folder),
            folder: item.folder,
            item_class: item.item_class,
            subject: item.subject,
            received,
            sequence,
            extended: item.extended,
            attachments,
            deleted: false,
        };
        let reference = ItemRef {
            id: stored.id.clone(),
            change_key: stored.change_key.clone(),
            attachment_ids: stored.attachments.iter().map(|a| a.id.clone()).collect(),
        };
        mailbox.items.push(stored);
        reference
    }

    /// The mailbox the credentials reach, if any.
    fn authenticate(&self, credentials: &Credentials) -> Option<usize> {
        self.mailboxes.iter().position(|m| match credentials {
            Credentials::Basic { login, password } => {
                m.answers_to(login) && m.password.as_deref() == Some(password.as_str())
            }
            Credentials::Bearer(token) => !token.is_empty() && m.tokens.iter().any(|t| t == token),
            Credentials::None
            | Credentials::Ntlm { .. }
            | Credentials::Connection
            | Credentials::Other(_) => false,
        })
    }

    /// The mailbox an NTLMv2 answer to `challenge` reaches: one with the login `DOMAIN\user`,
    /// `user@domain` or `user`, whose password the answer was computed with.
    fn authenticate_ntlm(&self, answer: &ntlm::Authenticate, challenge: &[u8; 8]) -> Option<usize> {
        let (user, domain) = (&answer.user, &answer.domain);
        let logins = [
            format!("{domain}\\{user}"),
            format!("{user}@{domain}"),
            user.clone(),
        ];
        self.mailboxes.iter().position(|m| {
            logins
                .iter()
                .filter(|l| !domain.is_empty() || *l == user)
                .any(|l| m.answers_to(l))
                && m.password
                    .as_deref()
                    .is_some_and(|p| ntlm::verify_ntlmv2(answer, challenge, p))
        })
    }
}

/// `xs:dateTime` text for a Unix time: `2024-01-02T08:01:00Z` (with `utc`) or without the zone,
/// as Exchange writes attachment `LastModifiedTime`.
fn date_time(unix: u64, utc: bool) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Civil from days (H. Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{}",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60,
        if utc { "Z" } else { "" }
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_are_civil_utc() {
        assert_eq!(date_time(0, true), "1970-01-01T00:00:00Z");
        assert_eq!(date_time(1_704_182_400, true), "2024-01-02T08:00:00Z");
        assert_eq!(date_time(1_709_210_096, false), "2024-02-29T12:34:56");
    }

    #[test]
    fn voice_mail_classes_are_recognised_without_regard_to_case() {
        assert!(is_voice_mail("IPM.Note.Microsoft.Voicemail.UM.CA"));
        assert!(is_voice_mail("ipm.note.microsoft.voicemail.um"));
        assert!(is_voice_mail("IPM.Note.rpmsg.Microsoft.Voicemail.UM.CA"));
        assert!(!is_voice_mail("IPM.Note"));
        assert!(!is_voice_mail("IPM.Note.Microsoft.Missed.Voice"));
    }

    #[test]
    fn basic_credentials_are_split_at_the_first_colon() {
        let header = HeaderValue::from_static("basic RVhBTVBMRVxhbGljZTpwYTpzcw==");
        match Credentials::read(Some(&header)) {
            Credentials::Basic { login, password } => {
                assert_eq!(login, "EXAMPLE\\alice");
                assert_eq!(password, "pa:ss");
            }
            other => panic!("{other:?}"),
        }
        let ntlm = HeaderValue::from_static("NTLM TlRMTVNTUAABAAAA");
        assert_eq!(
            Credentials::read(Some(&ntlm)).scheme().as_deref(),
            Some("NTLM")
        );
    }
}
