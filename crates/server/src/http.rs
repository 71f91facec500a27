//! The HTTP front door: routing, authentication challenge, limits, and the accept loop with
//! header-read timeouts and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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
use tower_http::timeout::TimeoutLayer;

use crate::auth::Identified;
use crate::ews::{self, AppState};

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
}

const XML: &str = "text/xml; charset=utf-8";

/// The router of the whole HTTP surface.
pub fn router(app: Arc<AppState>, options: HttpOptions) -> Router {
    let shared = Arc::new(Shared {
        app,
        in_flight: Semaphore::new(options.max_concurrent_requests),
        max_body_bytes: options.max_body_bytes,
    });
    #[allow(
        deprecated,
        reason = "TimeoutLayer::new is the 0.6 API; 408 is its status"
    )]
    let timeout = TimeoutLayer::new(options.request_timeout);
    Router::new()
        .fallback(dispatch)
        .with_state(shared)
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(timeout)
}

/// Paths match case-insensitively, as IIS matches them and as EWS clients spell them.
async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, headers) = (parts.method, parts.headers);
    let path = parts.uri.path().to_ascii_lowercase();
    let get = method == Method::GET || method == Method::HEAD;
    match path.as_str() {
        "/ews/exchange.asmx" => {
            if method == Method::POST {
                // DefaultBodyLimit applies here too: past the cap this is a length error → 413.
                match axum::body::to_bytes(body, shared.max_body_bytes).await {
                    Ok(bytes) => ews_post(&shared, &headers, &bytes).await,
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
        "/readyz" if get => ready(&shared).await,
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

async fn ews_post(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let Ok(_permit) = shared.in_flight.try_acquire() else {
        return xml_answer(ews::fault(&Fault::server_busy(1000)));
    };
    let app = &shared.app;
    let caller = match crate::auth::identify(&app.auth, app.mailbox.as_deref(), headers).await {
        Ok(Identified::Caller(caller)) => caller,
        Ok(Identified::Refused) => return unauthorized(),
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

/// 401 with an empty body and one challenge per supported scheme.
fn unauthorized() -> Response {
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
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
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
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = watched.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
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
