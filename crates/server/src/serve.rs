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
    let audio = ItemAudio {
        local: LocalAudio::new(config.server.data_dir.clone()),
        mailbox: mailbox.clone(),
    };
    let sip = match config.active_gateway() {
        Some(gateway) => Some(
            SipCallService::start(
                Arc::clone(&registry) as _,
                Arc::new(audio),
                &(&config.sip).into(),
                gateway.into(),
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
    listen_for_hangups(registry.store().as_ref(), registry.node(), &calls);
    let state = crate::app_state_with_mailbox(config, registry, calls, mailbox)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (server.listen)"))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %config.server.data_dir.display(),
        node = %state.node,
        gateway = config.active_gateway().map_or("none", |g| g.name.as_str()),
        mailbox = config.mailbox.as_ref().map_or("none", |m| m.ews_url.as_str()),
        "openum serving EWS at /EWS/Exchange.asmx"
    );
    // Decisions §19: on SIGTERM, stop taking calls, hang up the live ones and record them, and
    // only then drain HTTP — a slow client (or a long forwarded request) never delays a hang-up.
    let shutdown = async move {
        shutdown.await;
        if let Some(sip) = &sip {
            sip.shutdown(Duration::from_secs(2)).await;
        }
    };
    crate::run(config, listener, state, shutdown).await;
    retention.abort();
    tracing::info!("openum stopped");
    Ok(())
}

/// Other nodes ask this one to end the calls it owns (PostgreSQL `NOTIFY`); a task hands each
/// request for this node to the call service. Single-node stores have no such requests.
pub fn listen_for_hangups(store: &dyn Store, node: &str, calls: &Arc<dyn CallService>) {
    let Some(mut requests) = store.hangup_requests() else {
        return;
    };
    let calls = Arc::clone(calls);
    let me = node.to_owned();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match requests.recv().await {
                Ok(request) if request.node == me => {
                    tracing::info!(call = %request.call_id, "hang-up requested by another node");
                    if calls.hangup(&request.call_id).await == calls::Hangup::NotLive {
                        tracing::info!(call = %request.call_id, "the call had already ended");
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
