//! `openum serve`: everything a node runs, wired together — the store, the call registry, the
//! SIP call service (or none), the cross-node hang-up listener and the HTTP endpoint — and the
//! order it stops in.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use call_runtime::SipCallService;
use calls::{error_chain, now_unix, CallService, NoGateway};

use crate::config::Config;
use crate::mailbox::{ItemAudio, MailboxService};
use crate::registry::Registry;
use crate::store::Store;
use crate::voicemail::LocalAudio;

/// Runs a node on `config` until `shutdown` resolves; `listen` overrides `server.listen`.
pub async fn serve(
    config: &Config,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listen = listen.unwrap_or(config.server.listen);
    // The front door first: nothing starts (no store, no SIP) behind a door that is refused.
    config.server.check_plain_http(listen)?;
    let tls = crate::tls::Tls::from_config(&config.server)?;
    // From here on SIGHUP reloads the certificate and never ends the process (its default
    // action would drop every live call without a BYE).
    crate::tls::reload_on_sighup(tls.clone()).context("cannot watch for SIGHUP")?;
    // Held until this function returns: `openum restore` refuses a SQLite store in use.
    let _in_use = match crate::backup::StoreLocation::of(config) {
        crate::backup::StoreLocation::Sqlite(_) => {
            Some(crate::backup::DataDirLock::in_use(&config.server.data_dir)?)
        }
        crate::backup::StoreLocation::Postgres { .. } => None,
    };
    let store = crate::open_store(config).await?;
    let node = config.node_name();
    // Nothing this node owned can still be live: a previous process died with it.
    let closed = store
        .close_orphaned_calls(&node, now_unix())
        .await
        .context("cannot close calls left over by a previous run")?;
    if closed > 0 {
        tracing::warn!(
            closed,
            "closed calls left live by a previous run as Disconnected/Other"
        );
    }
    let retention = crate::retention::spawn(Arc::clone(&store), config.into());
    let registry = Arc::new(
        Registry::new(store, node).with_dialled_numbers(config.privacy.store_dialled_numbers),
    );
    let mailbox = config
        .mailbox
        .as_ref()
        .map(|m| {
            MailboxService::new(m)
                .map(|service| Arc::new(service.with_metrics(Arc::clone(registry.metrics()))))
        })
        .transpose()
        .context("cannot set up the mailbox backend ([mailbox])")?;
    // Audio imported on this node before it lived in the store moves there (PostgreSQL).
    let moved =
        crate::voicemail::adopt_local_audio(registry.store().as_ref(), &config.server.data_dir)
            .await;
    if moved > 0 {
        tracing::info!(
            moved,
            "moved node-local voice-mail audio into the shared store"
        );
    }
    let audio = ItemAudio {
        local: LocalAudio::with_store(
            config.server.data_dir.clone(),
            Arc::clone(registry.store()),
            config.cluster.audio_cache_mb.saturating_mul(1024 * 1024),
        ),
        mailbox: mailbox.clone(),
    };
    let sip = match config.active_gateway() {
        Some(_) => Some(
            SipCallService::start_with_gateways(
                Arc::clone(&registry) as _,
                Arc::new(audio),
                &(&config.sip).into(),
                config.gateway_settings(),
            )
            .await
            .with_context(|| format!("cannot start the SIP user agent on {}", config.sip.listen))?,
        ),
        None => None,
    };
    let calls: Arc<dyn CallService> = match &sip {
        Some(service) => Arc::new(service.clone()),
        // No gateway: say so (ErrorUnifiedMessagingServerNotFound) instead of pretending.
        None => Arc::new(NoGateway),
    };
    listen_for_hangups(&registry, &calls);
    crate::cluster::start(&registry, &calls, &config.cluster);
    let metrics = match config.server.metrics_listen {
        Some(address) => Some(
            start_metrics_listener(
                address,
                crate::metrics_listener::router(
                    Arc::clone(&registry),
                    Arc::clone(&calls),
                    config.server.metrics_token.as_deref(),
                ),
            )
            .await?,
        ),
        None => None,
    };
    let registry_of_run = Arc::clone(&registry);
    let state = crate::app_state_with_mailbox(config, registry, calls, mailbox)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        data_dir = %config.server.data_dir.display(),
        node = %state.node,
        gateway = config.active_gateway().map_or("none", |g| g.name.as_str()),
        mailbox = config.mailbox.as_ref().map_or("none", |m| m.ews_url.as_str()),
        "openum serving EWS at /EWS/Exchange.asmx"
    );
    // Decisions §19: on SIGTERM, stop taking calls, hang up the live ones and record them, and
    // only then drain HTTP — a slow client (or a long forwarded request) never delays a hang-up.
    let flushing = Arc::clone(&state.registry);
    let shutdown = async move {
        shutdown.await;
        if let Some(sip) = &sip {
            sip.shutdown(Duration::from_secs(2)).await;
        }
        // The hung-up calls' records are written in the background: wait for them.
        flush_call_changes(&flushing).await;
    };
    crate::run_tls(config, listener, state, tls, shutdown).await;
    // Changes recorded while HTTP drained (a DisconnectPhoneCall) are written too.
    flush_call_changes(&registry_of_run).await;
    if let Some((stop, task)) = metrics {
        // The task may have ended already (its error was logged); nothing is left to stop.
        _ = stop.send(());
        if let Err(error) = task.await {
            tracing::error!(%error, "the metrics listener task failed");
        }
    }
    retention.abort();
    tracing::info!("openum stopped");
    Ok(())
}

/// How long SIGTERM waits for call changes still to be written to the store.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Waits, at most [`SHUTDOWN_FLUSH`], for the registry's writer to store every call change;
/// what is left is logged (a restart closes those calls as Disconnected/Other).
async fn flush_call_changes(registry: &Registry) {
    let left = registry.flush(SHUTDOWN_FLUSH).await;
    if left > 0 {
        tracing::error!(
            calls = left,
            "call changes not written to the store before shutdown; the next start closes those calls as Disconnected/Other"
        );
    }
}

/// Binds `server.metrics_listen` and serves `router` there until the returned sender fires.
async fn start_metrics_listener(
    address: SocketAddr,
    router: axum::Router,
) -> anyhow::Result<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (server.metrics_listen)"))?;
    tracing::info!(listen = %listener.local_addr()?, "metrics served at /metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(crate::metrics_listener::serve(listener, router, async {
        // Sent or dropped: either way the node is stopping.
        _ = stopped.await;
    }));
    Ok((stop, task))
}

/// Other nodes ask this one to end the calls it owns (PostgreSQL `NOTIFY`); a task hands each
/// request for this node to the call service, then confirms it to the asking node once the
/// call reads ended here. Single-node stores have no such requests.
pub fn listen_for_hangups(registry: &Arc<Registry>, calls: &Arc<dyn CallService>) {
    let store: &dyn Store = registry.store().as_ref();
    let Some(mut requests) = store.hangup_requests(registry.node()) else {
        return;
    };
    let calls = Arc::clone(calls);
    let registry = Arc::clone(registry);
    let me = registry.node().to_owned();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match requests.recv().await {
                Ok(request) if request.node == me => {
                    tracing::info!(call = %request.call_id, "hang-up requested by another node");
                    if calls.hangup(&request.call_id).await == calls::Hangup::NotLive {
                        tracing::info!(call = %request.call_id, "the call had already ended");
                    }
                    // Confirmed only once the store reads it ended: the asking node (and every
                    // other) answers from the store, and must never read it live after Success.
                    // The change is written in the background: wait for it (bounded).
                    registry
                        .settle(&request.call_id, crate::registry::SETTLE_BOUND)
                        .await;
                    let ended = match registry.store().call(&request.call_id).await {
                        Ok(record) => record.is_none_or(|r| r.is_finished()),
                        Err(error) => {
                            tracing::error!(call = %request.call_id, error = %error_chain(&error), "cannot read the call a peer asked to end");
                            false
                        }
                    };
                    if !ended {
                        // No confirmation: the asking node answers with an error.
                        tracing::error!(call = %request.call_id, "a hang-up asked by a peer is not recorded in the store yet; not confirmed");
                    } else if let Err(error) = registry.store().hangup_done(&request.call_id).await
                    {
                        tracing::warn!(call = %request.call_id, error = %error_chain(&error), "cannot confirm a hang-up to the node that asked");
                    }
                }
                Ok(_) => {}
                // A burst outran this task: keep listening for the next ones.
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "hang-up requests were dropped");
                }
                Err(RecvError::Closed) => {
                    tracing::error!("the store stopped delivering hang-up requests");
                    break;
                }
            }
        }
    });
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error_chain(&error), "cannot watch for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
