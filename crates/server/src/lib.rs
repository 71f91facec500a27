//! openum's server: the EWS endpoint over HTTP, authentication, the call registry and the store.
//!
//! # Layout
//!
//! - [`config`]: the TOML configuration (every key optional; unknown keys refused by name).
//! - [`http`]: routing (case-insensitive EWS paths, schema files, health), the 401 challenge,
//!   body/time limits, the accept loop and graceful shutdown.
//! - [`auth`]: HTTP Basic (Argon2id) and Bearer API tokens; who a request comes from; failed
//!   logins logged and counted. [`throttle`]: their lockouts. [`client_address`]: the client
//!   behind trusted reverse proxies.
//! - [`mailbox`]: the mailbox backend — callers checked and voice mail fetched with their own
//!   credentials from Exchange/grommunio, decoded audio cached.
//! - [`forward`]: one EWS URL — every other EWS and Autodiscover request forwarded to the
//!   mailbox server, answers streamed back.
//! - [`ews`]: the three operations and the single seam where domain call records become EWS
//!   wire types.
//! - [`registry`]: this node's calls in memory, written to the store in order by a background
//!   writer (`registry/writer.rs`) the call tasks never wait for; the [`calls::CallRecorder`]
//!   the call runtime reports to.
//! - [`serve`]: `openum serve` — the node's parts wired together, and the cross-node hang-up
//!   listener.
//! - [`store`]: the [`store::Store`] trait, SQLite and PostgreSQL backends.
//! - [`tls`]: the endpoint's certificate (rustls), reloaded on SIGHUP; [`metrics_listener`]:
//!   `/metrics` on its own address (`server.metrics_listen`), optionally behind a token.
//! - [`backup`]: `openum backup`/`restore` of the SQLite store and its audio files, and the lock
//!   that tells a data directory in use.
//! - [`retention`], [`privacy`]: the periodic purge of old call history, expired and orphaned
//!   voice-mail audio; masking of dialled numbers in stored records.
//! - [`cluster`]: several nodes on PostgreSQL — heartbeats, closing a dead peer's calls, and
//!   fencing this node's calls when it is cut off from the database.
//! - [`voicemail`], [`dialstring`], [`dialplan`]: ItemIds and stored audio (the
//!   [`calls::AudioSource`] of this node's imported items), DialString
//!   normalisation, and the dial plan (classification, premium/international refusal, rules).

pub mod auth;
pub mod backup;
pub mod client_address;
pub mod cluster;
pub mod config;
pub mod dialplan;
pub mod dialstring;
pub mod ews;
pub mod forward;
pub mod gateways;
pub mod http;
pub mod mailbox;
pub mod metrics;
pub mod metrics_listener;
pub mod pinned;
pub mod privacy;
pub mod registry;
pub mod retention;
pub mod serve;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod voicemail;

// For `store_double!` (test doubles of the store, here and in the tests).
#[doc(hidden)]
pub use async_trait;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::ews::AppState;
use crate::http::HttpOptions;
use crate::registry::Registry;
use crate::store::SqliteStore;
use calls::CallService;

/// Opens the configured store: PostgreSQL when `store.postgres_url` (or `OPENUM_POSTGRES_URL`)
/// is set, else the embedded SQLite file.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn crate::store::Store>> {
    // Unset, empty or not Unicode: the configuration file decides.
    let url = std::env::var("OPENUM_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| config.store.postgres_url.clone());
    match url {
        Some(url) => Ok(Arc::new(
            crate::store::PostgresStore::connect_with(&url, &config.postgres_options())
                .await
                .context("cannot connect to PostgreSQL (store.postgres_url)")?,
        )),
        None => Ok(Arc::new(open_sqlite(config)?)),
    }
}

/// Opens the embedded store under the configured data directory (creating it).
pub fn open_sqlite(config: &Config) -> anyhow::Result<SqliteStore> {
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join("openum.db");
    SqliteStore::open(&path).with_context(|| format!("cannot open database {}", path.display()))
}

/// Builds the shared request state; fails if the configuration's dial plan is invalid (a
/// configuration read from a file was checked already; one built in code may not be).
pub fn app_state(
    config: &Config,
    registry: Arc<Registry>,
    calls: Arc<dyn CallService>,
) -> anyhow::Result<AppState> {
    let mailbox = config
        .mailbox
        .as_ref()
        .map(|m| {
            mailbox::MailboxService::new(m)
                .map(|service| Arc::new(service.with_metrics(Arc::clone(registry.metrics()))))
        })
        .transpose()
        .context("cannot set up the mailbox backend ([mailbox])")?;
    app_state_with_mailbox(config, registry, calls, mailbox)
}

/// [`app_state`] with a mailbox backend built by the caller (shared with the call runtime's
/// audio source).
pub fn app_state_with_mailbox(
    config: &Config,
    registry: Arc<Registry>,
    calls: Arc<dyn CallService>,
    mailbox: Option<Arc<mailbox::MailboxService>>,
) -> anyhow::Result<AppState> {
    let store = Arc::clone(registry.store());
    let dial_plan =
        crate::dialplan::DialPlan::new(config.dialplan.clone()).context("invalid dial plan")?;
    let forwarder = match &config.mailbox {
        Some(m) if m.forward => Some(Arc::new(
            forward::Forwarder::new(m, Arc::clone(registry.metrics()))
                .context("cannot set up forwarding to the mailbox server ([mailbox])")?,
        )),
        _ => None,
    };
    Ok(AppState {
        forwarder,
        dial_plan,
        admission: config.admission.clone(),
        auth: Authenticator::new(Arc::clone(&store))
            .with_throttle((&config.auth).into())
            .with_trusted_proxies(
                crate::client_address::TrustedProxies::parse(&config.server.trusted_proxies)
                    .context("invalid server.trusted_proxies")?,
            )
            .with_metrics(Arc::clone(registry.metrics())),
        node: registry.node().to_owned(),
        store,
        registry,
        calls,
        server_version: (&config.ews.server_version).into(),
        limits: ews_proto::Limits {
            max_depth: config.server.max_xml_depth,
            ..ews_proto::Limits::default()
        },
        retention: Duration::from_secs(config.ews.call_retention_hours.saturating_mul(3600)),
        mailbox,
    })
}

/// HTTP options from the configuration.
pub fn http_options(config: &Config) -> HttpOptions {
    HttpOptions {
        max_body_bytes: config.server.max_body_bytes,
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        request_timeout: Duration::from_secs(config.server.request_timeout_secs),
        max_concurrent_requests: config.server.max_concurrent_requests,
    }
}

/// Runs the server on `listener` until `shutdown` resolves.
pub async fn run(
    config: &Config,
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) {
    run_tls(config, listener, state, None, shutdown).await;
}

/// [`run`], over TLS when `tls` is given. With `server.metrics_listen` set, `/metrics` is not
/// served here (HTTP 404): [`metrics_listener`] serves it.
pub async fn run_tls(
    config: &Config,
    listener: tokio::net::TcpListener,
    state: AppState,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl Future<Output = ()>,
) {
    let options = http_options(config);
    let mut router = http::router(Arc::new(state), options);
    if config.server.metrics_listen.is_some() {
        router = router.layer(axum::middleware::from_fn(metrics_listener::not_here));
    }
    http::serve_tls(
        listener,
        router,
        options,
        tls,
        shutdown,
        Duration::from_secs(10),
    )
    .await;
}
