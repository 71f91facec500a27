//! `/metrics` on its own listener (`[server] metrics_listen`), so that the EWS address need not
//! expose operational figures, optionally behind `Authorization: Bearer <server.metrics_token>`.
//! `/healthz` is answered there too, for probes that only reach that address.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use calls::CallService;
use sha2::Digest as _;

use crate::registry::Registry;

/// What the metrics listener reads from.
struct Source {
    registry: Arc<Registry>,
    calls: Arc<dyn CallService>,
    /// SHA-256 of the token: requests are compared digest to digest, so the comparison's time
    /// says nothing about the token's bytes.
    token: Option<[u8; 32]>,
}

/// The metrics listener's routes: `GET /metrics` (token-checked when `token` is set) and
/// `GET /healthz`; everything else is 404.
pub fn router(registry: Arc<Registry>, calls: Arc<dyn CallService>, token: Option<&str>) -> Router {
    let source = Arc::new(Source {
        registry,
        calls,
        token: token.map(|t| sha2::Sha256::digest(t.as_bytes()).into()),
    });
    Router::new().fallback(answer).with_state(source)
}

async fn answer(State(source): State<Arc<Source>>, request: Request) -> Response {
    let get = request.method() == Method::GET || request.method() == Method::HEAD;
    match request.uri().path() {
        "/metrics" if get => {
            if !authorized(source.token.as_ref(), request.headers()) {
                let mut refused = StatusCode::UNAUTHORIZED.into_response();
                refused.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="openum metrics""#),
                );
                return refused;
            }
            let figures = source.calls.figures();
            let by_state = source.registry.live_by_state();
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                )],
                source.registry.metrics().render(&figures, &by_state),
            )
                .into_response()
        }
        "/healthz" if get => (StatusCode::OK, "ok\n").into_response(),
        "/metrics" | "/healthz" => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))],
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn authorized(token: Option<&[u8; 32]>, headers: &axum::http::HeaderMap) -> bool {
    let Some(expected) = token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .is_some_and(|(_, given)| {
            let given: [u8; 32] = sha2::Sha256::digest(given.trim().as_bytes()).into();
            &given == expected
        })
}

/// Middleware for the main listener when metrics have their own: `/metrics` is not here.
pub async fn not_here(request: Request, next: Next) -> Response {
    if request.uri().path().eq_ignore_ascii_case("/metrics") {
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(request).await
}

/// Serves `router` on `listener` (plain HTTP/1.1) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %calls::error_chain(&error), "the metrics listener failed");
    }
}
