//! The HTTP front door: routing, authentication challenge, limits, and the accept loop with
//! header-read timeouts and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ews_proto::Fault;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use bytes::Bytes;

use crate::auth::{Caller, Identified};
use crate::ews::{self, AppState};
use crate::forward::{self, Sniffed};
use crate::pinned::{self, ClientConnection, ConnectionId, PinnedTransport};

/// HTTP-level settings.
#[derive(Clone, Copy, Debug)]
pub struct HttpOptions {
    /// Request body cap (HTTP 413 above it).
    pub max_body_bytes: usize,
    /// Time allowed to send the request head.
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request (HTTP 408 after it).
    pub request_timeout: Duration,
    /// EWS requests in flight before `ErrorServerBusy`.
    pub max_concurrent_requests: usize,
}

struct Shared {
    app: Arc<AppState>,
    in_flight: Semaphore,
    max_body_bytes: usize,
    request_timeout: Duration,
}

/// The client's address, put into each request's extensions by the accept loop.
#[derive(Clone, Copy, Debug)]
struct Peer(std::net::SocketAddr);

const XML: &str = "text/xml; charset=utf-8";

/// The router of the whole HTTP surface.
pub fn router(app: Arc<AppState>, options: HttpOptions) -> Router {
    let shared = Arc::new(Shared {
        app,
        in_flight: Semaphore::new(options.max_concurrent_requests),
        max_body_bytes: options.max_body_bytes,
        request_timeout: options.request_timeout,
    });
    // The request timeout is applied in `dispatch`: forwarded requests have their own.
    Router::new()
        .fallback(dispatch)
        .with_state(shared)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
}

/// What a request is, with forwarding to the mailbox server on.
enum Route {
    /// Answered by openum.
    Local,
    /// `POST` to the EWS endpoint: the operation decides.
    Sniff,
    /// Forwarded; `ews`: to the mailbox server's EWS endpoint (else to the request's path).
    Forward { ews: bool },
    /// Refused.
    Refuse(Response),
}

fn route(method: &Method, uri: &axum::http::Uri, own: Option<&str>) -> Route {
    if method == Method::CONNECT {
        return Route::Refuse(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    // An absolute-form target names a host: only this server's own (`public_url`'s) is
    // served; the forwarder never goes anywhere but the mailbox server.
    if let Some(authority) = uri.authority() {
        if !own.is_some_and(|h| h.eq_ignore_ascii_case(authority.as_str())) {
            return Route::Refuse(
                (
                    StatusCode::BAD_REQUEST,
                    "absolute request targets for other hosts are refused\n",
                )
                    .into_response(),
            );
        }
    }
    let path = uri.path().to_ascii_lowercase();
    let forwardable = path.starts_with("/ews/")
        || path == "/autodiscover/autodiscover.xml"
        || path == "/autodiscover/autodiscover.svc"
        || path.starts_with("/autodiscover/autodiscover.svc/");
    match path.as_str() {
        "/ews/exchange.asmx" if method == Method::POST => Route::Sniff,
        "/ews/services.wsdl" | "/ews/messages.xsd" | "/ews/types.xsd" => Route::Local,
        // Dot segments or encoded separators could leave the forwarded paths on the mailbox
        // server.
        _ if forwardable
            && (path.contains("/.")
                || path.contains('\\')
                || path.contains("%2e")
                || path.contains("%2f")
                || path.contains("%5c")) =>
        {
            Route::Refuse(StatusCode::BAD_REQUEST.into_response())
        }
        "/ews/exchange.asmx" => Route::Forward { ews: true },
        _ if forwardable => Route::Forward { ews: false },
        _ => Route::Local,
    }
}

fn request_timeout() -> Response {
    StatusCode::REQUEST_TIMEOUT.into_response()
}

/// Routes a request: with forwarding on, everything but the UM operations, openum's schema
/// files and its own endpoints goes to the mailbox server; the rest is answered here within
/// `request_timeout`.
async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let deadline = tokio::time::Instant::now() + shared.request_timeout;
    if let Some(forwarder) = shared.app.forwarder.clone() {
        let peer = request.extensions().get::<Peer>().map(|p| p.0.ip());
        let client = request.extensions().get::<Arc<ClientConnection>>().cloned();
        match route(
            request.method(),
            request.uri(),
            forwarder.public_authority(),
        ) {
            Route::Local => {}
            Route::Refuse(response) => return response,
            Route::Forward { ews } => {
                let (parts, body) = request.into_parts();
                let logged_as = parts.uri.path().to_owned();
                let outgoing = forward::Outgoing {
                    method: parts.method,
                    operation: forward::label_of(&logged_as),
                    logged_as,
                    uri: parts.uri,
                    headers: parts.headers,
                    peer,
                    prefix: Bytes::new(),
                    rest: body,
                };
                return forwarder.forward_on(outgoing, ews, client.as_ref()).await;
            }
            Route::Sniff => {
                let (parts, mut body) = request.into_parts();
                let read = tokio::time::timeout_at(deadline, forward::read_prefix(&mut body)).await;
                let (prefix, sniffed, ended) = match read {
                    Err(_) => return request_timeout(),
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "the request body broke off");
                        return StatusCode::BAD_REQUEST.into_response();
                    }
                    Ok(Ok(read)) => read,
                };
                if let Sniffed::Other(name) = sniffed {
                    let outgoing = forward::Outgoing {
                        method: parts.method,
                        operation: forward::operation_label(&name),
                        logged_as: name,
                        uri: parts.uri,
                        headers: parts.headers,
                        peer,
                        prefix,
                        rest: body,
                    };
                    return forwarder.forward_on(outgoing, true, client.as_ref()).await;
                }
                let local = async {
                    let bytes = match rest_of_body(prefix, body, ended, shared.max_body_bytes).await
                    {
                        Ok(bytes) => bytes,
                        Err(response) => return response,
                    };
                    let address = client_address(&shared, &parts.extensions, &parts.headers);
                    ews_post(&shared, &parts.headers, &bytes, client.as_ref(), address).await
                };
                return tokio::time::timeout_at(deadline, local)
                    .await
                    .unwrap_or_else(|_| request_timeout());
            }
        }
    }
    tokio::time::timeout_at(deadline, answer_locally(&shared, request))
        .await
        .unwrap_or_else(|_| request_timeout())
}

/// The whole body of a request whose first bytes were read, within `max` bytes (413 above).
async fn rest_of_body(
    prefix: Bytes,
    rest: Body,
    ended: bool,
    max: usize,
) -> Result<Bytes, Response> {
    if prefix.len() > max {
        return Err(StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    if ended {
        return Ok(prefix);
    }
    match axum::body::to_bytes(rest, max - prefix.len()).await {
        Ok(rest) => {
            let mut all = Vec::with_capacity(prefix.len() + rest.len());
            all.extend_from_slice(&prefix);
            all.extend_from_slice(&rest);
            Ok(Bytes::from(all))
        }
        Err(_) => Err(StatusCode::PAYLOAD_TOO_LARGE.into_response()),
    }
}

/// Paths match case-insensitively, as IIS matches them and as EWS clients spell them.
async fn answer_locally(shared: &Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let address = client_address(shared, &parts.extensions, &parts.headers);
    let (method, headers) = (parts.method, parts.headers);
    let path = parts.uri.path().to_ascii_lowercase();
    let get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/ews/exchange.asmx" => {
            if method == Method::POST {
                // DefaultBodyLimit applies here too: past the cap this is a length error → 413.
                match axum::body::to_bytes(body, shared.max_body_bytes).await {
                    Ok(bytes) => ews_post(shared, &headers, &bytes, None, address).await,
                    Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
                }
            } else {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    [(header::ALLOW, HeaderValue::from_static("POST"))],
                )
                    .into_response()
            }
        }
        "/ews/services.wsdl" if get => xml_file(ews_proto::schema::SERVICES_WSDL),
        "/ews/messages.xsd" if get => xml_file(ews_proto::schema::MESSAGES_XSD),
        "/ews/types.xsd" if get => xml_file(ews_proto::schema::TYPES_XSD),
        "/healthz" if get => (StatusCode::OK, "ok\n").into_response(),
        "/readyz" if get => ready(shared).await,
        "/metrics" if get => {
            let figures = shared.app.calls.figures();
            let by_state = shared.app.registry.live_by_state();
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                )],
                shared.app.registry.metrics().render(&figures, &by_state),
            )
                .into_response()
        }
        "/ews/services.wsdl" | "/ews/messages.xsd" | "/ews/types.xsd" | "/healthz" | "/readyz"
        | "/metrics" => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Ready when the store answers (a gateway is optional: without one the server still answers
/// EWS, honestly).
async fn ready(shared: &Shared) -> Response {
    let unwritten = shared.app.registry.unwritten();
    if unwritten > 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{unwritten} call change(s) not yet written to the store\n"),
        )
            .into_response();
    }
    if let Some(reason) = shared.app.store.unready_reason() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
    }
    match shared.app.store.user("").await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

fn xml_file(text: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(XML))],
        text,
    )
        .into_response()
}

/// What a UM request on a pinned connection (or carrying NTLM/Negotiate) comes to.
enum PinnedStep {
    /// The mailbox the connection authenticated as.
    Caller(Caller),
    /// The mailbox server's answer to a handshake message, relayed (HTTP 401).
    Challenge(Response),
}

/// A UM request that carries an `NTLM`/`Negotiate` message, or comes without `Authorization`
/// on a pinned connection. The handshake message is relayed to the mailbox server on the
/// client connection's dedicated connection with a `GetFolder` (inbox) body: a 401 (the
/// challenge, or a refusal) goes back to the client as it is; once the mailbox server accepts,
/// a `GetFolder` over the connection without `Authorization` names the mailbox (remembered for
/// the connection) and the UM request is answered here, its mailbox requests going over that
/// connection too.
async fn pinned_caller(
    forwarder: &forward::Forwarder,
    mailbox: &crate::mailbox::MailboxService,
    connection: &Arc<ClientConnection>,
    headers: &HeaderMap,
) -> Result<PinnedStep, Box<dyn std::error::Error + Send + Sync>> {
    let transport = Arc::new(PinnedTransport {
        connection: Arc::clone(connection),
        pinning: Arc::clone(forwarder.pinning()),
    });
    let message = headers
        .get(header::AUTHORIZATION)
        .filter(|_| pinned::connection_auth(headers));
    let known = match message {
        Some(message) => {
            let reply = transport.handshake(message).await?;
            if reply.status == StatusCode::UNAUTHORIZED {
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                for challenge in reply.challenges {
                    response
                        .headers_mut()
                        .append(header::WWW_AUTHENTICATE, challenge);
                }
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                return Ok(PinnedStep::Challenge(response));
            }
            if !reply.status.is_success() {
                return Err(format!(
                    "the mailbox server answered the handshake with HTTP {}",
                    reply.status
                )
                .into());
            }
            None
        }
        None => connection.caller().await,
    };
    let caller = match known {
        Some(caller) => caller,
        None => {
            let Some(caller) = mailbox.verify_via(transport.clone()).await? else {
                return Ok(PinnedStep::Challenge(unauthorized(true)));
            };
            connection.set_caller(caller.clone()).await;
            caller
        }
    };
    Ok(PinnedStep::Caller(Caller::Mailbox {
        caller,
        authorization: String::new(),
        via: Some(crate::auth::Via(transport)),
    }))
}

/// The client's address (behind trusted proxies): logs and login throttling. `None` when the
/// request did not come through the accept loop (in-process tests).
fn client_address(
    shared: &Shared,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    extensions
        .get::<Peer>()
        .map(|peer| shared.app.auth.client_address(peer.0.ip(), headers))
}

async fn ews_post(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    client: Option<&Arc<ClientConnection>>,
    address: Option<std::net::IpAddr>,
) -> Response {
    let Ok(_permit) = shared.in_flight.try_acquire() else {
        return xml_answer(ews::fault(&Fault::server_busy(1000)));
    };
    let app = &shared.app;
    let offer_ntlm = app.forwarder.is_some() && app.mailbox.is_some();
    if let (Some(forwarder), Some(mailbox), Some(connection)) =
        (&app.forwarder, &app.mailbox, client)
    {
        let without = headers.get(header::AUTHORIZATION).is_none();
        if pinned::connection_auth(headers) || (connection.is_pinned() && without) {
            let step = pinned_caller(forwarder, mailbox, connection, headers).await;
            let caller = match step {
                Ok(PinnedStep::Caller(caller)) => caller,
                Ok(PinnedStep::Challenge(response)) => return response,
                Err(error) => {
                    tracing::warn!(error = %calls::error_chain(error.as_ref()), "cannot check the pinned connection with the mailbox server");
                    return xml_answer(ews::mailbox_unavailable(app, body));
                }
            };
            let span = tracing::debug_span!("ews", user = %caller.login());
            let _enter = span.enter();
            return xml_answer(ews::handle(app, &caller, body).await);
        }
    }
    let caller = match crate::auth::identify(&app.auth, app.mailbox.as_deref(), headers, address)
        .await
    {
        Ok(Identified::Caller(caller)) => caller,
        Ok(Identified::Refused) => return unauthorized(offer_ntlm),
        Ok(Identified::MailboxUnavailable(error)) => {
            tracing::warn!(error = %calls::error_chain(&error), "cannot check credentials with the mailbox server");
            return xml_answer(ews::mailbox_unavailable(app, body));
        }
        Err(error) => {
            tracing::error!(%error, "credential check failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let span = tracing::debug_span!("ews", user = %caller.login());
    let _enter = span.enter();
    xml_answer(ews::handle(app, &caller, body).await)
}

fn xml_answer(answer: ews::Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(XML))],
        answer.body,
    )
        .into_response()
}

/// 401 with an empty body and one challenge per supported scheme (`NTLM` and `Negotiate` with
/// `ntlm`: relayed to the mailbox server on a pinned connection).
fn unauthorized(ntlm: bool) -> Response {
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    let h = response.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Basic realm="openum""#),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="openum""#),
    );
    if ntlm {
        h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("NTLM"));
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Negotiate"),
        );
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// (up to `grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: HttpOptions,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    serve_tls(listener, router, options, None, shutdown, grace).await;
}

/// [`serve`], over TLS when `tls` is given: each connection's handshake runs on its own task
/// (bounded by the header-read timeout) with the certificate current at its accept.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    options: HttpOptions,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            // Only latency suffers (Nagle); the connection is served all the same.
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        next_id += 1;
        let client = ClientConnection::new(ConnectionId(next_id));
        let of_requests = Arc::clone(&client);
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                let extensions = request.extensions_mut();
                extensions.insert(Peer(peer));
                extensions.insert(of_requests.id());
                extensions.insert(Arc::clone(&of_requests));
                request
            },
        ));
        if let Some(tls) = &tls {
            let acceptor = tls.acceptor();
            let watcher = graceful.watcher();
            let builder = builder.clone();
            let handshake_timeout = options.header_read_timeout;
            tokio::spawn(async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection).await {
                            tracing::debug!(%error, %peer, "connection ended with an error");
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
                client.close().await;
            });
            continue;
        }
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            // Its pinned mailbox-server connection, if any, ends with it.
            client.close().await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}
