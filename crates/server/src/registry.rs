//! The call registry: this node's calls in memory, written through to the store.
//!
//! `GetPhoneCallInformation` is the hot path (clients poll it), so the calls this node owns are
//! answered from memory; every change is written to the store first, so a restart or another
//! node sees the same record. Calls owned by other nodes are always read from the store, never
//! cached, because only their owner writes them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use calls::sync::{read, write};
use calls::{now_unix, CallRecord, CallRecorder, CallState, RecordError};

use crate::store::{Store, StoreError};

/// Finished calls leave the memory cache this long after they end (the store keeps them for the
/// whole retention period).
const FINISHED_CACHE_SECS: i64 = 300;
const PRUNE_EVERY: usize = 1024;

/// Which concurrency cap refused a call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Refused {
    /// The user's live calls on this node reached the cap.
    PerUser(usize),
    /// This node's live calls reached the cap.
    PerNode(usize),
}

/// This node's call records.
pub struct Registry {
    store: Arc<dyn Store>,
    node: String,
    local: RwLock<Local>,
    metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Default)]
struct Local {
    calls: HashMap<String, CallRecord>,
    inserts_since_prune: usize,
}

impl Registry {
    /// A registry for `node` over `store`.
    pub fn new(store: Arc<dyn Store>, node: String) -> Self {
        Self {
            store,
            node,
            local: RwLock::new(Local::default()),
            metrics: Arc::new(crate::metrics::Metrics::new()),
        }
    }

    /// The metrics calls are counted in.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Live calls this node owns, by state.
    pub fn live_by_state(&self) -> Vec<(CallState, usize)> {
        let mut counts: Vec<(CallState, usize)> = CallState::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .map(|s| (s, 0))
            .collect();
        for r in read(&self.local).calls.values() {
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == r.state) {
                slot.1 += 1;
            }
        }
        counts
    }

    /// Live calls this node owns.
    pub fn live_count(&self) -> usize {
        self.live_by_state().iter().map(|(_, n)| n).sum()
    }

    /// The store behind the registry.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Reads a call by exact id.
    pub async fn get(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        if let Some(record) = read(&self.local).calls.get(id) {
            let stale = record
                .ended_at
                .is_some_and(|ended| ended + FINISHED_CACHE_SECS < now_unix());
            if !stale {
                return Ok(Some(record.clone()));
            }
        }
        let record = self.store.call(id).await?;
        // Only this node writes its own calls, so what the store holds for them is current and
        // can be cached (this also warms the cache after a restart). Finished calls are cached
        // too — clients keep polling them — until they age out of the cache window.
        let fresh = |r: &&CallRecord| {
            r.ended_at
                .is_none_or(|ended| ended + FINISHED_CACHE_SECS >= now_unix())
        };
        if let Some(r) = record
            .as_ref()
            .filter(|r| r.node == self.node)
            .filter(fresh)
        {
            write(&self.local).calls.insert(r.id.clone(), r.clone());
        }
        Ok(record)
    }

    /// Records a new call placed by this node if the concurrency caps allow it: at most
    /// `per_user` live calls for its owner and `per_node` live calls on this node. The check and
    /// the reservation are one step, so concurrent requests cannot overshoot.
    pub async fn admit(
        &self,
        record: &CallRecord,
        per_user: usize,
        per_node: usize,
    ) -> Result<Result<(), Refused>, StoreError> {
        {
            let mut local = write(&self.local);
            let live = local.calls.values().filter(|r| !r.is_finished());
            let (mut node, mut user) = (0, 0);
            for r in live {
                node += 1;
                if r.owner == record.owner {
                    user += 1;
                }
            }
            if user >= per_user {
                return Ok(Err(Refused::PerUser(per_user)));
            }
            if node >= per_node {
                return Ok(Err(Refused::PerNode(per_node)));
            }
            local.calls.insert(record.id.clone(), record.clone());
        }
        if let Err(e) = self.insert(record).await {
            write(&self.local).calls.remove(&record.id);
            return Err(e);
        }
        Ok(Ok(()))
    }

    /// Records a new call placed by this node.
    pub async fn insert(&self, record: &CallRecord) -> Result<(), StoreError> {
        self.store.insert_call(record).await?;
        let mut local = write(&self.local);
        local.inserts_since_prune += 1;
        if local.inserts_since_prune >= PRUNE_EVERY {
            local.inserts_since_prune = 0;
            let cutoff = now_unix() - FINISHED_CACHE_SECS;
            local
                .calls
                .retain(|_, r| r.ended_at.is_none_or(|ended| ended >= cutoff));
        }
        if record.node == self.node {
            local.calls.insert(record.id.clone(), record.clone());
        }
        Ok(())
    }

    /// Records a state change.
    pub async fn update(&self, record: &CallRecord) -> Result<(), StoreError> {
        self.store.update_call(record).await?;
        let mut local = write(&self.local);
        let was_live = local
            .calls
            .get(&record.id)
            .is_some_and(|r| !r.is_finished());
        if was_live && record.is_finished() {
            self.metrics.call_ended(record.cause.as_str());
        }
        if record.node == self.node {
            local.calls.insert(record.id.clone(), record.clone());
        } else {
            local.calls.remove(&record.id);
        }
        Ok(())
    }
}

/// The call runtime writes through the registry, so this node's reads see its calls at once.
#[async_trait]
impl CallRecorder for Registry {
    async fn get(&self, id: &str) -> Result<Option<CallRecord>, RecordError> {
        Registry::get(self, id).await.map_err(|e| RecordError {
            action: "read",
            source: Box::new(e),
        })
    }

    async fn update(&self, record: &CallRecord) -> Result<(), RecordError> {
        Registry::update(self, record)
            .await
            .map_err(|e| RecordError {
                action: "write",
                source: Box::new(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn record(id: &str, node: &str) -> CallRecord {
        CallRecord::dialling(id, "alice", node, "1", "i", now_unix())
    }

    #[tokio::test]
    async fn writes_go_through_to_the_store_and_reads_see_them() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let registry = Registry::new(Arc::clone(&store), "n1".into());
        let mut mine = record("a", "n1");
        registry.insert(&mine).await.unwrap();
        mine.state = CallState::Connected;
        registry.update(&mine).await.unwrap();
        assert_eq!(
            registry.get("a").await.unwrap().unwrap().state,
            CallState::Connected
        );
        assert_eq!(
            store.call("a").await.unwrap().unwrap().state,
            CallState::Connected
        );
    }

    #[tokio::test]
    async fn admission_caps_live_calls_per_user_and_per_node() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let registry = Registry::new(store, "n1".into());
        let mut alice = record("a1", "n1");
        assert_eq!(registry.admit(&alice, 2, 3).await.unwrap(), Ok(()));
        alice.id = "a2".into();
        assert_eq!(registry.admit(&alice, 2, 3).await.unwrap(), Ok(()));
        alice.id = "a3".into();
        assert_eq!(
            registry.admit(&alice, 2, 3).await.unwrap(),
            Err(Refused::PerUser(2))
        );
        let mut bob = record("b1", "n1");
        bob.owner = "bob".into();
        assert_eq!(registry.admit(&bob, 2, 3).await.unwrap(), Ok(()));
        bob.id = "b2".into();
        assert_eq!(
            registry.admit(&bob, 2, 3).await.unwrap(),
            Err(Refused::PerNode(3))
        );
        // A finished call frees its place.
        let mut done = registry.get("a1").await.unwrap().unwrap();
        done.state = CallState::Disconnected;
        done.ended_at = Some(now_unix());
        registry.update(&done).await.unwrap();
        assert_eq!(registry.admit(&bob, 2, 3).await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn finished_calls_of_this_node_are_served_from_memory() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let registry = Registry::new(Arc::clone(&store), "n1".into());
        let mut done = record("f", "n1");
        done.state = CallState::Disconnected;
        done.ended_at = Some(now_unix());
        store.insert_call(&done).await.unwrap();
        assert_eq!(registry.get("f").await.unwrap().unwrap(), done);
        // A write behind the registry's back is not seen: the read came from memory.
        let mut changed = done.clone();
        changed.sip_code = Some(999);
        store.update_call(&changed).await.unwrap();
        assert_eq!(registry.get("f").await.unwrap().unwrap(), done);
    }

    #[tokio::test]
    async fn other_nodes_calls_are_always_read_from_the_store() {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let registry = Registry::new(Arc::clone(&store), "n1".into());
        let mut theirs = record("b", "n2");
        store.insert_call(&theirs).await.unwrap();
        assert_eq!(
            registry.get("b").await.unwrap().unwrap().state,
            CallState::Connecting
        );
        theirs.state = CallState::Alerted;
        store.update_call(&theirs).await.unwrap();
        assert_eq!(
            registry.get("b").await.unwrap().unwrap().state,
            CallState::Alerted
        );
    }
}
