//! One EWS URL: with `[mailbox]`, every EWS and Autodiscover request that is not one of the
//! three UM operations is forwarded to the mailbox server, and its answer streamed back.
//!
//! - [`sniff`] finds the SOAP body's first element in the first bytes of a request (at most
//!   [`SNIFF_LIMIT`]) without reading the rest, so a forwarded request is never buffered.
//! - [`Forwarder::forward`] sends the already-read prefix and the rest of the body as a stream
//!   to the mailbox server ([`Backend`]), and streams the answer back with its status and
//!   end-to-end headers. Only Autodiscover answers are buffered (at most
//!   [`AUTODISCOVER_MAX`]), to name openum's `public_url` instead of the mailbox server's EWS
//!   URL ([`rewrite_ews_url`]).
//! - openum does not authenticate forwarded requests: the mailbox server does, and its 401
//!   challenges reach the client unchanged.
//! - Forwarded requests have their own concurrency cap (HTTP 503 above it), body cap and time
//!   bound, so they cannot starve the UM operations.
//!
//! Connection-oriented authentication (NTLM, Negotiate) needs every request of one client
//! connection to reach the mailbox server on one backend connection: such requests go through
//! a [`crate::pinned::PinnedBackend`] instead of the pooled one ([`Forwarder::forward_on`]).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::MailboxConfig;
use crate::metrics::Metrics;
use crate::pinned::{ClientConnection, PinnedBackend, PinnedError, Pinning};

/// How much of a request body is read to find its operation.
pub const SNIFF_LIMIT: usize = 64 * 1024;
/// The largest Autodiscover answer rewritten (larger ones fail with HTTP 502).
pub const AUTODISCOVER_MAX: usize = 1 << 20;

const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const UM_OPERATIONS: [&str; 3] = [
    "PlayOnPhone",
    "GetPhoneCallInformation",
    "DisconnectPhoneCall",
];

/// What the first bytes of an EWS request say about it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Sniffed {
    /// One of the three UM operations: openum answers it.
    Um,
    /// Another operation (its local name): forwarded.
    Other(String),
    /// Not a SOAP envelope openum can classify (not XML, no Body, an empty Body): openum
    /// answers it, with the fault its decoder finds.
    Local,
}

/// Classifies a request from `prefix`, its first bytes; `complete` when `prefix` is the whole
/// body. `None`: more bytes are needed.
pub fn sniff(prefix: &[u8], complete: bool) -> Option<Sniffed> {
    let mut reader = quick_xml::NsReader::from_reader(prefix);
    let mut depth = 0usize;
    // Depth of the open Body element, once seen.
    let mut in_body = false;
    let incomplete = if complete { Some(Sniffed::Local) } else { None };
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(pair) => pair,
            // A tag cut by the end of the prefix reads as an error too.
            Err(_) => return incomplete,
        };
        let is_soap = matches!(&ns, ResolveResult::Bound(n)
            if n.as_ref() == ews_proto::ns::SOAP.as_bytes() || n.as_ref() == ews_proto::ns::SOAP12.as_bytes());
        let is_messages =
            matches!(&ns, ResolveResult::Bound(n) if n.as_ref() == MESSAGES.as_bytes());
        match event {
            Event::Start(e) | Event::Empty(e) if in_body && depth == 2 => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                return Some(if is_messages && UM_OPERATIONS.contains(&name.as_str()) {
                    Sniffed::Um
                } else {
                    Sniffed::Other(name)
                });
            }
            Event::Start(e) => {
                let local = e.local_name();
                match depth {
                    0 if !(is_soap && local.as_ref() == b"Envelope") => {
                        return Some(Sniffed::Local)
                    }
                    1 if is_soap && local.as_ref() == b"Body" => in_body = true,
                    _ => {}
                }
                depth += 1;
            }
            // `<s:Envelope/>` or `<s:Body/>`: nothing to forward. An empty `<s:Header/>` (or
            // any other empty child of the envelope) says nothing yet.
            Event::Empty(_) if depth == 0 => return Some(Sniffed::Local),
            Event::Empty(e) if depth == 1 && is_soap && e.local_name().as_ref() == b"Body" => {
                return Some(Sniffed::Local)
            }
            Event::End(_) => {
                if in_body && depth == 2 {
                    // `</Body>` before any child: an empty Body.
                    return Some(Sniffed::Local);
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => return incomplete,
            _ => {}
        }
    }
}

/// The operation label of a forwarded SOAP request: its name when it is an EWS operation,
/// else `other` (the name comes from unauthenticated clients; labels stay bounded).
pub fn operation_label(name: &str) -> &'static str {
    ews_proto::WSDL_OPERATIONS
        .iter()
        .find(|op| **op == name)
        .copied()
        .unwrap_or("other")
}

/// Why a forwarded exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The mailbox server could not be reached.
    #[error("cannot connect to the mailbox server")]
    Connect(#[source] reqwest::Error),
    /// The mailbox server did not answer in time.
    #[error("the mailbox server did not answer in time")]
    Timeout(#[source] reqwest::Error),
    /// The request body was larger than `max_forward_mb`.
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    /// Any other failure of the exchange (the client's upload broke, the server's answer
    /// was not HTTP, …).
    #[error("the exchange with the mailbox server failed")]
    Exchange(#[source] reqwest::Error),
    /// The Autodiscover answer could not be read for rewriting.
    #[error("cannot read the Autodiscover answer for rewriting")]
    Autodiscover(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The exchange on a pinned (NTLM/Negotiate) connection failed.
    #[error(transparent)]
    Pinned(crate::pinned::PinnedError),
}

impl ForwardError {
    fn from_reqwest(error: reqwest::Error) -> Self {
        if let Some(limit) = find_cause::<UploadTooLarge>(&error) {
            return Self::TooLarge(limit.0);
        }
        if error.is_timeout() {
            Self::Timeout(error)
        } else if error.is_connect() {
            Self::Connect(error)
        } else {
            Self::Exchange(error)
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout(_) | Self::Pinned(PinnedError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Pinned(PinnedError::Busy) => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

fn find_cause<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// Where forwarded requests go. The pooled implementation serves every client; a
/// per-client-connection one (NTLM/Negotiate pinning) would hold one backend connection.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Sends one request and returns the answer as soon as its head arrived; its body streams.
    async fn send(
        &self,
        request: reqwest::Request,
    ) -> Result<axum::http::Response<reqwest::Body>, ForwardError>;
}

/// The shared backend: one connection pool to the mailbox server.
#[derive(Debug)]
pub struct PooledBackend {
    client: reqwest::Client,
}

#[async_trait]
impl Backend for PooledBackend {
    async fn send(
        &self,
        request: reqwest::Request,
    ) -> Result<axum::http::Response<reqwest::Body>, ForwardError> {
        let response = self
            .client
            .execute(request)
            .await
            .map_err(ForwardError::from_reqwest)?;
        Ok(response.into())
    }
}

/// Why the forwarder cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// `ews_url` is not a URL.
    #[error("mailbox.ews_url {url:?} is not a URL")]
    Url {
        /// The value.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `ca_file` cannot be read.
    #[error("cannot read mailbox.ca_file {path}")]
    ReadCaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS client of pinned (NTLM/Negotiate) connections cannot be built.
    #[error("cannot set up TLS for pinned connections")]
    PinnedTls(#[source] crate::pinned::TlsSetupError),
    /// The HTTP client cannot be built (or `ca_file` holds no usable certificate).
    #[error("cannot build the forwarding HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Forwards requests to the mailbox server.
pub struct Forwarder {
    backend: Arc<dyn Backend>,
    ews_url: reqwest::Url,
    public_url: Option<String>,
    slots: Arc<Semaphore>,
    pinning: Arc<Pinning>,
    max_request_bytes: u64,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("ews_url", &self.ews_url.as_str())
            .field("public_url", &self.public_url)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What is forwarded: the request's head, the bytes already read, and the rest of its body.
#[derive(Debug)]
pub struct Outgoing {
    /// The method.
    pub method: Method,
    /// The request target as received.
    pub uri: Uri,
    /// The client's headers.
    pub headers: HeaderMap,
    /// The client's address, for `X-Forwarded-For`.
    pub peer: Option<std::net::IpAddr>,
    /// Bytes of the body read already.
    pub prefix: Bytes,
    /// The rest of the body.
    pub rest: Body,
    /// The label of metrics and the access log (operation or path).
    pub operation: &'static str,
    /// The name logged (the operation as sent, or the path).
    pub logged_as: String,
}

/// Hop-by-hop headers (RFC 9110 7.6.1) and `Host`: never forwarded in either direction.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

/// Also drops the headers the client's `Connection` header names.
fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if hop_by_hop(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

impl Forwarder {
    /// The forwarder for `[mailbox]`, counting into `metrics`.
    pub fn new(config: &MailboxConfig, metrics: Arc<Metrics>) -> Result<Self, SetupError> {
        let url = config.ews_url.trim();
        let ews_url = reqwest::Url::parse(url).map_err(|source| SetupError::Url {
            url: url.to_owned(),
            source: Box::new(source),
        })?;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.timeout_secs))
            .pool_max_idle_per_host(config.forward_pool_size)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| SetupError::ReadCaFile {
                path: path.clone(),
                source,
            })?;
            for certificate in
                reqwest::Certificate::from_pem_bundle(&pem).map_err(SetupError::Client)?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(SetupError::Client)?;
        let tls = if ews_url.scheme() == "https" {
            Some(
                crate::pinned::tls_connector(config.ca_file.as_deref())
                    .map_err(SetupError::PinnedTls)?,
            )
        } else {
            None
        };
        let mut forwarder =
            Self::with_backend(config, ews_url, Arc::new(PooledBackend { client }), metrics);
        forwarder.pinning = Arc::new(Pinning {
            tls,
            ..Pinning::clone_settings(&forwarder.pinning)
        });
        Ok(forwarder)
    }

    /// A forwarder sending through `backend`.
    pub fn with_backend(
        config: &MailboxConfig,
        ews_url: reqwest::Url,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_forwarded_requests));
        let pinning = Arc::new(Pinning {
            ews_url: ews_url.clone(),
            tls: None,
            connect_timeout: Duration::from_secs(config.timeout_secs),
            timeout: Duration::from_secs(config.forward_timeout_secs),
            slots: Arc::clone(&slots),
            gauge: metrics.pinned().clone(),
        });
        Self {
            backend,
            pinning,
            ews_url,
            public_url: config
                .public_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            slots,
            max_request_bytes: config.max_forward_mb.saturating_mul(1 << 20),
            timeout: Duration::from_secs(config.forward_timeout_secs),
            metrics,
        }
    }

    /// The `host[:port]` of `public_url`, if set.
    pub fn public_authority(&self) -> Option<&str> {
        let url = self.public_url.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        rest.split(['/', '?', '#']).next()
    }

    /// The backend URL a request for `uri` goes to: the EWS endpoint for `ews`, else the
    /// request's own path on the mailbox server.
    fn target(&self, uri: &Uri, ews: bool) -> reqwest::Url {
        let mut url = self.ews_url.clone();
        if !ews {
            url.set_path(uri.path());
        }
        url.set_query(uri.query());
        url
    }

    /// How pinned connections are made.
    pub fn pinning(&self) -> &Arc<Pinning> {
        &self.pinning
    }

    /// Forwards one request of client connection `connection`: over its dedicated
    /// mailbox-server connection when the request carries `NTLM`/`Negotiate` credentials or the
    /// connection is pinned already, else over the pool.
    pub async fn forward_on(
        &self,
        outgoing: Outgoing,
        ews: bool,
        connection: Option<&Arc<ClientConnection>>,
    ) -> Response {
        match connection {
            Some(connection)
                if connection.is_pinned() || crate::pinned::connection_auth(&outgoing.headers) =>
            {
                if crate::pinned::connection_auth(&outgoing.headers) {
                    // A new handshake may name another mailbox: learn it again.
                    connection.forget_caller().await;
                }
                let backend = PinnedBackend {
                    connection: Arc::clone(connection),
                    pinning: Arc::clone(&self.pinning),
                };
                self.forward_via(outgoing, ews, &backend).await
            }
            _ => self.forward(outgoing, ews).await,
        }
    }

    /// Forwards one request; `ews` for the EWS endpoint (else the request's path is kept).
    pub async fn forward(&self, outgoing: Outgoing, ews: bool) -> Response {
        self.forward_via(outgoing, ews, self.backend.as_ref()).await
    }

    async fn forward_via(&self, outgoing: Outgoing, ews: bool, backend: &dyn Backend) -> Response {
        let started = Instant::now();
        let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
            self.metrics.forwarded(outgoing.operation, 503);
            tracing::info!(
                target: "openum::access",
                operation = %outgoing.logged_as,
                status = 503,
                "forwarded request refused: max_forwarded_requests reached"
            );
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many forwarded requests\n",
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        };
        let mut log = Finish {
            metrics: Arc::clone(&self.metrics),
            started,
            operation: outgoing.logged_as.clone(),
            label: outgoing.operation,
            status: 0,
            sent: Arc::new(AtomicU64::new(0)),
            received: 0,
            _permit: permit,
        };
        self.metrics.forwarding().inc();
        let autodiscover = outgoing
            .uri
            .path()
            .to_ascii_lowercase()
            .starts_with("/autodiscover/");
        let declared = outgoing
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let result = if declared.is_some_and(|n| n > self.max_request_bytes) {
            Err(ForwardError::TooLarge(self.max_request_bytes))
        } else {
            // An Autodiscover answer is rewritten, so it must come back uncompressed (the EWS
            // Managed API asks for gzip, and IIS compresses these answers).
            let plain = autodiscover && self.public_url.is_some();
            let head = outgoing.clone_head();
            self.exchange(head, outgoing, (ews, plain), &log.sent, backend)
                .await
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                let status = error.status();
                tracing::warn!(error = %calls::error_chain(&error), operation = %log.operation, "forwarding failed");
                let text = match status {
                    StatusCode::GATEWAY_TIMEOUT => "the mailbox server did not answer in time\n",
                    StatusCode::PAYLOAD_TOO_LARGE => "request body too large\n",
                    _ => "the mailbox server cannot be reached\n",
                };
                self.metrics.forwarded(log.label, status.as_u16());
                log.status = status.as_u16();
                return (status, text).into_response();
            }
        };
        let status = response.status();
        log.status = status.as_u16();
        self.metrics.forwarded(log.label, log.status);
        let (mut parts, body) = response.into_parts();
        parts.headers = end_to_end(&parts.headers);
        if autodiscover && status == StatusCode::OK {
            if let Some(public) = &self.public_url {
                if let Some(encoding) = parts.headers.get(header::CONTENT_ENCODING) {
                    tracing::warn!(
                        encoding = ?encoding,
                        "the Autodiscover answer is encoded although openum asked for none; its URLs cannot be rewritten"
                    );
                }
                let collected = http_body_util::Limited::new(body, AUTODISCOVER_MAX)
                    .collect()
                    .await;
                let bytes = match collected {
                    Ok(c) => c.to_bytes(),
                    Err(error) => {
                        let error = ForwardError::Autodiscover(error);
                        tracing::warn!(error = %calls::error_chain(&error), "forwarding failed");
                        log.status = 502;
                        return (
                            StatusCode::BAD_GATEWAY,
                            "the Autodiscover answer cannot be read\n",
                        )
                            .into_response();
                    }
                };
                let rewritten = rewrite_ews_url(&bytes, self.ews_url.as_str(), public);
                log.received = rewritten.len() as u64;
                parts.headers.remove(header::CONTENT_LENGTH);
                return Response::from_parts(parts, Body::from(rewritten));
            }
        }
        Response::from_parts(
            parts,
            Body::new(Tracked {
                inner: body,
                finish: log,
            }),
        )
    }

    async fn exchange(
        &self,
        head: (Method, Uri, HeaderMap),
        outgoing: Outgoing,
        (ews, plain): (bool, bool),
        sent: &Arc<AtomicU64>,
        backend: &dyn Backend,
    ) -> Result<axum::http::Response<reqwest::Body>, ForwardError> {
        let (method, uri, headers) = head;
        let mut forwarded = end_to_end(&headers);
        if plain {
            forwarded.remove(header::ACCEPT_ENCODING);
        }
        // What the client claims about the original request is not trusted: openum says it.
        forwarded.remove(header::FORWARDED);
        forwarded.remove("x-forwarded-host");
        let peer = outgoing.peer.map(|ip| ip.to_string());
        if let Some(peer) = peer {
            let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                Some(earlier) => format!("{earlier}, {peer}"),
                None => peer,
            };
            if let Ok(value) = HeaderValue::from_str(&chain) {
                forwarded.insert("x-forwarded-for", value);
            }
        }
        // openum's EWS listener is plain HTTP (a TLS front end in front of it sets its own).
        forwarded.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        let upload = Upload {
            prefix: Some(outgoing.prefix).filter(|p| !p.is_empty()),
            rest: Mutex::new(outgoing.rest),
            sent: 0,
            cap: self.max_request_bytes,
            counter: Arc::clone(sent),
        };
        let mut request = reqwest::Request::new(method, self.target(&uri, ews));
        *request.headers_mut() = forwarded;
        *request.body_mut() = Some(reqwest::Body::wrap(upload));
        *request.timeout_mut() = Some(self.timeout);
        backend.send(request).await
    }
}

impl Outgoing {
    fn clone_head(&self) -> (Method, Uri, HeaderMap) {
        (self.method.clone(), self.uri.clone(), self.headers.clone())
    }
}

/// A bounded label for a logged name: an EWS operation, one of the forwarded paths, or
/// `other`.
pub fn label_of(logged: &str) -> &'static str {
    match logged.to_ascii_lowercase().as_str() {
        "/autodiscover/autodiscover.xml" => "/autodiscover/autodiscover.xml",
        "/autodiscover/autodiscover.svc" => "/autodiscover/autodiscover.svc",
        "/ews/exchange.asmx" => "/ews/exchange.asmx",
        p if p.starts_with("/ews/") => "/ews/*",
        _ => operation_label(logged),
    }
}

/// The forwarded request body: the bytes already read, then the rest as it arrives, capped.
struct Upload {
    prefix: Option<Bytes>,
    // Mutex only to make the body `Sync` (reqwest requires it); never locked, see `get_mut`.
    rest: Mutex<Body>,
    sent: u64,
    cap: u64,
    counter: Arc<AtomicU64>,
}

/// The request body grew past `max_forward_mb`.
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than {0} bytes")]
struct UploadTooLarge(u64);

/// Why the upload stopped.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error(transparent)]
    TooLarge(#[from] UploadTooLarge),
    #[error("the client's request body broke off")]
    Client(#[source] axum::Error),
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = UploadError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UploadError>>> {
        let this = self.get_mut();
        let chunk = if let Some(prefix) = this.prefix.take() {
            Some(Ok(Frame::data(prefix)))
        } else {
            let rest = this
                .rest
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match Pin::new(rest).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => None,
                Poll::Ready(Some(Err(e))) => Some(Err(UploadError::Client(e))),
                Poll::Ready(Some(Ok(frame))) => Some(Ok(frame)),
            }
        };
        if let Some(Ok(frame)) = &chunk {
            if let Some(data) = frame.data_ref() {
                this.sent = this.sent.saturating_add(data.len() as u64);
                this.counter.store(this.sent, Ordering::Relaxed);
                if this.sent > this.cap {
                    return Poll::Ready(Some(Err(UploadTooLarge(this.cap).into())));
                }
            }
        }
        Poll::Ready(chunk)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.lock().map(|r| r.is_end_stream()).unwrap_or(false)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self.rest.lock().map(|r| r.size_hint()).unwrap_or_default();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(prefix));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

/// The end of a forwarded exchange: metrics, the access-log line, the concurrency slot.
struct Finish {
    metrics: Arc<Metrics>,
    started: Instant,
    operation: String,
    label: &'static str,
    status: u16,
    sent: Arc<AtomicU64>,
    received: u64,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.metrics.forwarding().dec();
        self.metrics.forward_ended(took);
        // Never headers: no Authorization, no cookies.
        tracing::info!(
            target: "openum::access",
            operation = %self.operation,
            status = self.status,
            duration_ms = took.as_millis() as u64,
            request_bytes = self.sent.load(Ordering::Relaxed),
            response_bytes = self.received,
            "forwarded"
        );
    }
}

/// The mailbox server's answer body, counted; the exchange ends when it is dropped.
struct Tracked {
    inner: reqwest::Body,
    finish: Finish,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, reqwest::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.finish.received = this.finish.received.saturating_add(data.len() as u64);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                tracing::warn!(error = %calls::error_chain(error), operation = %this.finish.operation, "the mailbox server's answer broke off");
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Replaces every text node of `document` that is exactly `from` (ignoring case and
/// surrounding white space) with `to`. In Autodiscover answers these are the POX `EwsUrl`,
/// `ASUrl` and `OOFUrl` (Exchange gives all three the EWS URL) and the SOAP `ExternalEwsUrl`
/// and `InternalEwsUrl` setting values; other URLs (`UMUrl`, `OABUrl`, `EcpUrl`, …) differ from
/// the EWS URL and stay. Everything else is kept byte for byte.
pub fn rewrite_ews_url(document: &[u8], from: &str, to: &str) -> Vec<u8> {
    let from = from.as_bytes();
    let mut out = Vec::with_capacity(document.len());
    let mut i = 0;
    while i < document.len() {
        if document[i] == b'>' {
            out.push(b'>');
            i += 1;
            let start = i;
            while i < document.len() && document[i].is_ascii_whitespace() {
                i += 1;
            }
            let matches = document.len() >= i + from.len()
                && document[i..i + from.len()].eq_ignore_ascii_case(from);
            if matches {
                let mut j = i + from.len();
                while j < document.len() && document[j].is_ascii_whitespace() {
                    j += 1;
                }
                if document.get(j) == Some(&b'<') {
                    out.extend_from_slice(&document[start..i]);
                    out.extend_from_slice(to.as_bytes());
                    out.extend_from_slice(&document[i + from.len()..j]);
                    i = j;
                    continue;
                }
            }
            out.extend_from_slice(&document[start..i]);
            continue;
        }
        out.push(document[i]);
        i += 1;
    }
    out
}

/// Reads the first bytes of `body` until [`sniff`] decides (or [`SNIFF_LIMIT`] is reached).
/// Returns the bytes read, what they say, and whether the body ended.
pub async fn read_prefix(body: &mut Body) -> Result<(Bytes, Sniffed, bool), axum::Error> {
    let mut prefix = BytesMut::new();
    // The prefix is classified again only once it has doubled (or grown by 4 KiB): a body
    // trickled in 1-byte pieces must not cost a parse per byte (O(n²) before authentication).
    let mut next_attempt = 0;
    loop {
        let frame = body.frame().await.transpose()?;
        let ended = match frame {
            None => true,
            Some(frame) => {
                if let Ok(data) = frame.into_data() {
                    prefix.extend_from_slice(&data);
                }
                http_body::Body::is_end_stream(body)
            }
        };
        let attempt = ended || prefix.len() >= next_attempt || prefix.len() >= SNIFF_LIMIT;
        if attempt {
            if let Some(sniffed) = sniff(&prefix, ended) {
                return Ok((prefix.freeze(), sniffed, ended));
            }
            next_attempt = (prefix.len() * 2).max(prefix.len() + 4096);
        }
        if prefix.len() >= SNIFF_LIMIT {
            // No Body child in 64 KiB of well-formed XML (a huge header): not one of the
            // small UM requests.
            return Ok((prefix.freeze(), Sniffed::Other("unknown".into()), false));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    const ENV: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><s:Header><t:RequestServerVersion xmlns:t="x" Version="Exchange2013"/></s:Header><s:Body>"#;

    #[test]
    fn an_empty_soap_header_does_not_stop_the_operation_being_found() {
        let doc = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><s:Header/><s:Body><m:FindItem/></s:Body></s:Envelope>"#;
        assert_eq!(
            sniff(doc.as_bytes(), true),
            Some(Sniffed::Other("FindItem".into()))
        );
        let empty_body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
        assert_eq!(sniff(empty_body.as_bytes(), true), Some(Sniffed::Local));
    }

    #[test]
    fn sniff_finds_the_operation_and_waits_for_more() {
        let um = format!("{ENV}<m:GetPhoneCallInformation><m:PhoneCallId Id=\"x\"/>");
        assert_eq!(sniff(um.as_bytes(), false), Some(Sniffed::Um));
        let find = format!("{ENV}<m:FindItem Traversal=\"Shallow\">");
        assert_eq!(
            sniff(find.as_bytes(), false),
            Some(Sniffed::Other("FindItem".into()))
        );
        // Another namespace's PlayOnPhone is not ours.
        let foreign = format!("{ENV}<PlayOnPhone xmlns=\"urn:x\">");
        assert_eq!(
            sniff(foreign.as_bytes(), false),
            Some(Sniffed::Other("PlayOnPhone".into()))
        );
        for cut in [10, 60, ENV.len(), ENV.len() + 5] {
            let partial = &find.as_bytes()[..cut];
            assert_eq!(sniff(partial, false), None, "{cut}");
            assert_eq!(sniff(partial, true), Some(Sniffed::Local), "{cut}");
        }
        assert_eq!(sniff(b"not xml at all", true), Some(Sniffed::Local));
        assert_eq!(sniff(b"<x/>", false), Some(Sniffed::Local));
        let empty = format!("{ENV}</s:Body></s:Envelope>");
        assert_eq!(sniff(empty.as_bytes(), true), Some(Sniffed::Local));
    }

    #[test]
    fn only_whole_ews_url_text_is_rewritten() {
        let from = "https://mail.example.com/EWS/Exchange.asmx";
        let doc = format!(
            "<Protocol><ASUrl>{from}</ASUrl><EwsUrl>\n  HTTPS://MAIL.example.com/EWS/Exchange.asmx </EwsUrl><UMUrl>https://mail.example.com/EWS/UM2007Legacy.asmx</UMUrl><X a=\"{from}\">{from}/x</X></Protocol>"
        );
        let out = rewrite_ews_url(doc.as_bytes(), from, "https://o/EWS/Exchange.asmx");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            format!("<Protocol><ASUrl>https://o/EWS/Exchange.asmx</ASUrl><EwsUrl>\n  https://o/EWS/Exchange.asmx </EwsUrl><UMUrl>https://mail.example.com/EWS/UM2007Legacy.asmx</UMUrl><X a=\"{from}\">{from}/x</X></Protocol>")
        );
    }
}
