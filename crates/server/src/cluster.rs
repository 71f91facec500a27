//! Node liveness when several nodes share PostgreSQL: heartbeats, closing a dead peer's calls,
//! and fencing this node's own calls when it is cut off from the database.
//!
//! The two bounds (`[cluster]`): a node that has not written a heartbeat for
//! `fence_after_secs` hangs up its own live calls; its peers close its calls as
//! Disconnected/Other once its last heartbeat (the database's clock) is older than
//! `dead_after_secs`. The node times its bound from the moment it *sent* its last heartbeat
//! that landed, which is never later than the moment the database stamped it, and
//! `dead_after_secs ≥ fence_after_secs + heartbeat_secs` (checked when the configuration is
//! loaded), so a cut-off node stops its calls at least a heartbeat period before any peer says
//! they ended: a call is never reported Disconnected while its owner still plays it.
//!
//! A node that comes back after its peers declared it dead has fenced its calls already (it
//! checks its bound before anything else when it runs again); any call still live in its memory
//! that a peer closed is hung up as well, and the store never lets the owner's later writes
//! change such a record.

use std::sync::Arc;
use std::time::Duration;

use calls::{error_chain, CallService};
use tokio::time::Instant;

use crate::config::ClusterConfig;
use crate::registry::Registry;

/// How often the fence bound is checked (finer than a heartbeat, so the bound holds).
const FENCE_CHECK: Duration = Duration::from_millis(200);

/// Starts the heartbeat/reaper task and the fence task for this node (multi-node stores only).
pub fn start(registry: &Arc<Registry>, calls: &Arc<dyn CallService>, config: &ClusterConfig) {
    if !registry.store().multi_node() {
        return;
    }
    let heartbeat = Duration::from_secs(config.heartbeat_secs);
    let fence_after = Duration::from_secs(config.fence_after_secs);
    let dead_after = Duration::from_secs(config.dead_after_secs);
    // The last heartbeat that landed, as the moment it was sent.
    let last_ok = Arc::new(std::sync::Mutex::new(Instant::now()));
    {
        let (registry, calls, last_ok) = (
            Arc::clone(registry),
            Arc::clone(calls),
            Arc::clone(&last_ok),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                beat(&registry, &calls, &last_ok, heartbeat, dead_after).await;
            }
        });
    }
    let (registry, calls) = (Arc::clone(registry), Arc::clone(calls));
    tokio::spawn(async move {
        let mut fenced = false;
        loop {
            tokio::time::sleep(FENCE_CHECK).await;
            let silent = calls::sync::lock(&last_ok).elapsed();
            if silent < fence_after {
                if fenced {
                    tracing::info!("heartbeats land again; this node takes calls");
                    fenced = false;
                }
                continue;
            }
            let live = registry.live_ids();
            if !fenced || !live.is_empty() {
                tracing::error!(
                    silent_secs = silent.as_secs(),
                    calls = live.len(),
                    "no heartbeat reached the database for cluster.fence_after_secs: hanging up this node's calls before its peers declare them ended"
                );
                fenced = true;
            }
            for id in live {
                calls.hangup(&id).await;
            }
        }
    });
}

async fn beat(
    registry: &Registry,
    calls: &Arc<dyn CallService>,
    last_ok: &std::sync::Mutex<Instant>,
    heartbeat: Duration,
    dead_after: Duration,
) {
    let store = registry.store();
    let sent = Instant::now();
    match tokio::time::timeout(heartbeat, store.heartbeat(registry.node())).await {
        Ok(Ok(())) => *calls::sync::lock(last_ok) = sent,
        Ok(Err(error)) => {
            tracing::warn!(error = %error_chain(&error), "cannot write this node's heartbeat");
            return;
        }
        Err(_) => {
            tracing::warn!(
                "this node's heartbeat took longer than cluster.heartbeat_secs; counted as not written"
            );
            return;
        }
    }
    match store
        .close_calls_of_dead_nodes(registry.node(), dead_after)
        .await
    {
        Ok(closed) => {
            for (call, node) in closed {
                tracing::warn!(%call, %node, "closed a call of a node whose heartbeat stopped, as Disconnected/Other");
            }
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "cannot look for calls of dead nodes");
        }
    }
    // Calls a peer closed while this node was away are over: stop playing them.
    match store
        .closed_by_peers(registry.node(), &registry.live_ids())
        .await
    {
        Ok(closed) => {
            for id in closed {
                tracing::warn!(call = %id, "a peer declared this node dead and closed this call; hanging it up");
                calls.hangup(&id).await;
            }
        }
        Err(error) => {
            tracing::warn!(error = %error_chain(&error), "cannot check for calls peers closed");
        }
    }
}
