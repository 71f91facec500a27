//! Connection pinning for NTLM and Negotiate, which authenticate a TCP connection rather than a
//! request.
//!
//! The accept loop gives every client connection a [`ClientConnection`] (its [`ConnectionId`]
//! and a slot for a dedicated mailbox-server connection), put into each of its requests'
//! extensions, and closes it when the client connection ends. A forwarded request that carries
//! `Authorization: NTLM …` or `Negotiate …`, or arrives on a connection already pinned, goes
//! over that dedicated connection ([`PinnedBackend`], an HTTP/1.1 connection made with hyper's
//! client), so the handshake's three messages and every later request of the client connection
//! reach the mailbox server on one connection. Requests and challenges are relayed unchanged.
//!
//! A pinned connection holds one of the `max_forwarded_requests` slots for its lifetime and is
//! counted in `openum_pinned_connections`. If the mailbox server closes it, the next request
//! opens a new one (unauthenticated: the client is challenged again).
//!
//! UM operations on a pinned connection run their mailbox requests (`GetFolder` to learn the
//! mailbox, `GetItem`, `GetAttachment`) over it too ([`PinnedTransport`]), without an
//! `Authorization` header, as the NTLM-authenticated connection is.
//!
//! With an `https` `ews_url` the pinned connection is TLS (rustls) with the same trust as the
//! pooled client: the system's roots, the webpki roots and `mailbox.ca_file`; SNI and the
//! certificate check use the URL's host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, Uri};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::forward::{Backend, ForwardError};
use crate::mailbox::MailboxCaller;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type OutBody = UnsyncBoxBody<Bytes, BoxError>;

/// The id of one accepted client connection.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct ConnectionId(pub u64);

/// Why a pinned exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinnedError {
    /// The mailbox server could not be reached.
    #[error("cannot connect to the mailbox server")]
    Connect(#[source] std::io::Error),
    /// Connecting took longer than `timeout_secs`.
    #[error("connecting to the mailbox server took longer than {0:?}")]
    ConnectTimeout(Duration),
    /// The exchange did not finish its head in time.
    #[error("the mailbox server did not answer within {0:?}")]
    Timeout(Duration),
    /// The HTTP exchange failed.
    #[error("the exchange on the pinned connection failed")]
    Http(#[source] hyper::Error),
    /// `max_forwarded_requests` are in use.
    #[error("no forwarding slot is free for a pinned connection")]
    Busy,
    /// The request target is not valid.
    #[error("the request target is not valid")]
    Target(#[source] axum::http::uri::InvalidUri),
    /// The TLS handshake with the mailbox server failed (certificate not trusted, …).
    #[error("TLS with the mailbox server failed")]
    Tls(#[source] std::io::Error),
    /// The host of `ews_url` is not a valid TLS server name.
    #[error("the mailbox server's host is not a valid TLS server name")]
    ServerName(#[source] rustls_pki_types::InvalidDnsNameError),
}

/// The TLS client of pinned connections: the system's roots, the webpki roots and `ca_file`.
pub fn tls_connector(
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsConnector, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        // Unreadable system certificates narrow the trust; the others still count.
        tracing::debug!(%error, "a system root certificate could not be loaded");
    }
    for cert in native.certs {
        if let Err(error) = roots.add(cert) {
            tracing::debug!(%error, "a system root certificate was refused");
        }
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject as _;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|source| TlsSetupError::CaFile {
                path: path.to_owned(),
                source,
            })?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsSetupError::CaFile {
                path: path.to_owned(),
                source,
            })?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|source| TlsSetupError::CaCertificate {
                    path: path.to_owned(),
                    source,
                })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsSetupError::Rustls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Why the TLS client of pinned connections cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// `mailbox.ca_file` cannot be read as PEM.
    #[error("cannot read mailbox.ca_file {}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate of `mailbox.ca_file` is not usable as a root.
    #[error("a certificate of mailbox.ca_file {} is not usable as a root", path.display())]
    CaCertificate {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS")]
    Rustls(#[source] rustls::Error),
}

/// One accepted client connection: its id and, once pinned, its mailbox-server connection.
#[derive(Debug)]
pub struct ClientConnection {
    id: ConnectionId,
    pinned: AtomicBool,
    slot: tokio::sync::Mutex<Option<Pinned>>,
}

/// A dedicated mailbox-server connection.
struct Pinned {
    sender: SendRequest<OutBody>,
    /// The mailbox this connection authenticated as, once a UM operation learned it.
    caller: Option<MailboxCaller>,
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl ClientConnection {
    /// A fresh, unpinned connection.
    pub fn new(id: ConnectionId) -> Arc<Self> {
        Arc::new(Self {
            id,
            pinned: AtomicBool::new(false),
            slot: tokio::sync::Mutex::new(None),
        })
    }

    /// Its id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether a mailbox-server connection was dedicated to it.
    pub fn is_pinned(&self) -> bool {
        self.pinned.load(Ordering::Acquire)
    }

    /// The client connection ended: its mailbox-server connection is closed.
    pub async fn close(&self) {
        let gone = self.slot.lock().await.take();
        if gone.is_some() {
            tracing::debug!(
                connection = self.id.0,
                "pinned mailbox-server connection closed"
            );
        }
    }

    /// The mailbox the pinned connection authenticated as, if learnt.
    pub(crate) async fn caller(&self) -> Option<MailboxCaller> {
        self.slot.lock().await.as_ref()?.caller.clone()
    }

    /// Forgets the mailbox of the pinned connection (a new handshake began on it).
    pub(crate) async fn forget_caller(&self) {
        if let Some(pinned) = self.slot.lock().await.as_mut() {
            pinned.caller = None;
        }
    }

    /// Remembers the mailbox of the pinned connection.
    pub(crate) async fn set_caller(&self, caller: MailboxCaller) {
        if let Some(pinned) = self.slot.lock().await.as_mut() {
            pinned.caller = Some(caller);
        }
    }

    /// Sends `request` on the dedicated connection, opening it first if needed.
    async fn send(
        &self,
        pinning: &Pinning,
        request: Request<OutBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, PinnedError> {
        let sent = {
            let mut slot = self.slot.lock().await;
            if slot.as_ref().is_none_or(|p| p.sender.is_closed()) {
                // A new connection is a new, unauthenticated one.
                *slot = None;
                *slot = Some(pinning.connect().await?);
                self.pinned.store(true, Ordering::Release);
                tracing::debug!(connection = self.id.0, "client connection pinned");
            }
            let Some(pinned) = slot.as_mut() else {
                return Err(PinnedError::Busy);
            };
            tokio::time::timeout(timeout, pinned.sender.ready())
                .await
                .map_err(|_| PinnedError::Timeout(timeout))?
                .map_err(PinnedError::Http)?;
            pinned.sender.send_request(request)
        };
        tokio::time::timeout(timeout, sent)
            .await
            .map_err(|_| PinnedError::Timeout(timeout))?
            .map_err(PinnedError::Http)
    }
}

/// HTTP/1.1 on `io`, its connection driven by a task of its own.
async fn handshake<I>(io: I) -> Result<SendRequest<OutBody>, PinnedError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(PinnedError::Http)?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "pinned mailbox-server connection ended with an error");
        }
    });
    Ok(sender)
}

/// How pinned connections are made: the mailbox server's address and the limits.
pub struct Pinning {
    pub(crate) ews_url: reqwest::Url,
    /// For an https `ews_url`.
    pub(crate) tls: Option<tokio_rustls::TlsConnector>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) gauge: Gauge,
}

impl std::fmt::Debug for Pinning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinning")
            .field("ews_url", &self.ews_url.as_str())
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Pinning {
    /// The same settings (TLS connector aside), sharing the slots and the gauge.
    pub(crate) fn clone_settings(other: &Self) -> Self {
        Self {
            ews_url: other.ews_url.clone(),
            tls: other.tls.clone(),
            connect_timeout: other.connect_timeout,
            timeout: other.timeout,
            slots: Arc::clone(&other.slots),
            gauge: other.gauge.clone(),
        }
    }

    async fn connect(&self) -> Result<Pinned, PinnedError> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| PinnedError::Busy)?;
        let host = self.ews_url.host_str().unwrap_or("localhost").to_owned();
        let port = self.ews_url.port_or_known_default().unwrap_or(80);
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| PinnedError::ConnectTimeout(self.connect_timeout))?
        .map_err(PinnedError::Connect)?;
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let sender = match &self.tls {
            None => handshake(stream).await?,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(host.clone())
                    .map_err(PinnedError::ServerName)?;
                let stream = tokio::time::timeout(self.connect_timeout, tls.connect(name, stream))
                    .await
                    .map_err(|_| PinnedError::ConnectTimeout(self.connect_timeout))?
                    .map_err(PinnedError::Tls)?;
                handshake(stream).await?
            }
        };
        self.gauge.inc();
        Ok(Pinned {
            sender,
            caller: None,
            _permit: permit,
            gauge: self.gauge.clone(),
        })
    }

    /// The `Host` header value of `ews_url`.
    fn host(&self) -> Option<HeaderValue> {
        let host = self.ews_url.host_str()?;
        let value = match self.ews_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// Whether `headers` carry an `Authorization` of a connection-authenticating scheme (`NTLM`,
/// `Negotiate`).
pub fn connection_auth(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().next())
        .is_some_and(|s| s.eq_ignore_ascii_case("NTLM") || s.eq_ignore_ascii_case("Negotiate"))
}

/// The forwarder's backend for one pinned client connection.
pub struct PinnedBackend {
    pub(crate) connection: Arc<ClientConnection>,
    pub(crate) pinning: Arc<Pinning>,
}

#[async_trait]
impl Backend for PinnedBackend {
    async fn send(
        &self,
        mut request: reqwest::Request,
    ) -> Result<axum::http::Response<reqwest::Body>, ForwardError> {
        let timeout = request.timeout().copied().unwrap_or(self.pinning.timeout);
        let url = request.url();
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let uri: Uri = target
            .parse()
            .map_err(|e| ForwardError::Pinned(PinnedError::Target(e)))?;
        let body: OutBody = match request.body_mut().take() {
            Some(body) => body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
            None => Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = request.method().clone();
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = std::mem::take(request.headers_mut());
        if let Some(host) = self.pinning.host() {
            outgoing.headers_mut().insert(header::HOST, host);
        }
        let response = self
            .connection
            .send(&self.pinning, outgoing, timeout)
            .await
            .map_err(ForwardError::Pinned)?;
        Ok(response.map(reqwest::Body::wrap))
    }
}

/// What the mailbox server said to one handshake message.
#[derive(Debug)]
pub struct HandshakeReply {
    /// Its status (401: a challenge, or a refusal; 200: authenticated).
    pub status: axum::http::StatusCode,
    /// Its `WWW-Authenticate` values, unchanged.
    pub challenges: Vec<HeaderValue>,
}

impl PinnedTransport {
    /// Relays one NTLM/Negotiate handshake message (`authorization`, unchanged) to the mailbox
    /// server on the pinned connection, with a harmless body: `GetFolder` of the inbox.
    pub async fn handshake(
        &self,
        authorization: &HeaderValue,
    ) -> Result<HandshakeReply, PinnedError> {
        let body = ews_proto::mailbox::encode_mailbox_request(
            ews_proto::ExchangeVersion::Exchange2013,
            &ews_proto::mailbox::MailboxRequest::GetFolder(
                ews_proto::mailbox::GetFolder::inbox_id(),
            ),
        );
        let request = self.request(body.into_bytes(), Some(authorization));
        let response = self
            .connection
            .send(&self.pinning, request, self.pinning.timeout)
            .await?;
        let status = response.status();
        let challenges = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .cloned()
            .collect();
        // Read to the end, so the connection can carry the next request.
        tokio::time::timeout(self.pinning.timeout, response.into_body().collect())
            .await
            .map_err(|_| PinnedError::Timeout(self.pinning.timeout))?
            .map_err(PinnedError::Http)?;
        Ok(HandshakeReply { status, challenges })
    }

    fn request(&self, body: Vec<u8>, authorization: Option<&HeaderValue>) -> Request<OutBody> {
        let mut request = Request::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *request.method_mut() = Method::POST;
        *request.uri_mut() = Uri::from_maybe_shared(Bytes::copy_from_slice(
            self.pinning.ews_url.path().as_bytes(),
        ))
        .unwrap_or_else(|_| Uri::from_static("/EWS/Exchange.asmx"));
        let headers = request.headers_mut();
        if let Some(host) = self.pinning.host() {
            headers.insert(header::HOST, host);
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/xml"));
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
        request
    }
}

/// The mailbox client's transport over a pinned connection.
pub struct PinnedTransport {
    pub(crate) connection: Arc<ClientConnection>,
    pub(crate) pinning: Arc<Pinning>,
}

impl mailbox_client::Transport for PinnedTransport {
    fn post<'a>(
        &'a self,
        body: Vec<u8>,
        authorization: Option<&'a HeaderValue>,
        limit: u64,
    ) -> mailbox_client::PostFuture<'a> {
        Box::pin(async move {
            let unavailable = |e: PinnedError| {
                mailbox_client::MailboxError::Unavailable(mailbox_client::Unavailable::Other(
                    Box::new(e),
                ))
            };
            let request = self.request(body, authorization);
            let response = self
                .connection
                .send(&self.pinning, request, self.pinning.timeout)
                .await
                .map_err(unavailable)?;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let collected = tokio::time::timeout(
                self.pinning.timeout,
                http_body_util::Limited::new(response.into_body(), limit).collect(),
            )
            .await
            .map_err(|_| unavailable(PinnedError::Timeout(self.pinning.timeout)))?;
            let body = match collected {
                Ok(body) => Some(body.to_bytes().to_vec()),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => None,
                Err(error) => {
                    return Err(mailbox_client::MailboxError::Unavailable(
                        mailbox_client::Unavailable::Other(error),
                    ))
                }
            };
            Ok(mailbox_client::Reply {
                status,
                location,
                body,
            })
        })
    }
}
