//! The call registry: this node's calls in memory, written through to the store.
//!
//! `GetPhoneCallInformation` is the hot path (clients poll it), so the calls this node owns are
//! answered from memory; every change is written to the store first, so a restart or another
//! node sees the same record. Calls owned by other nodes are always read from the store, never
//! cached, because only their owner writes them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use calls::sync::{lock, read, write};
use calls::{now_unix, CallRecord, CallRecorder, CallState, RecordError};

use crate::store::{Store, StoreError};

/// Finished calls leave the memory cache this long after they end (the store keeps them for the
/// whole retention period).
const FINISHED_CACHE_SECS: i64 = 300;
const PRUNE_EVERY: usize = 1024;

/// Which concurrency cap refused a call.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Refused {
    /// The user's live calls reached the cap (on this node, and in a shared store on every
    /// node).
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
    /// State changes the store refused, newest per call, written again until they land.
    pending: Arc<std::sync::Mutex<HashMap<String, CallRecord>>>,
    /// Store writes of call changes, one at a time, so a retry never overwrites a newer state.
    writes: Arc<tokio::sync::Mutex<()>>,
    retrying: Arc<std::sync::atomic::AtomicBool>,
    /// What the stored record keeps of the dialled number (`[privacy]`).
    dialled_numbers: crate::privacy::DialledNumbers,
}

/// A store write that takes longer counts as refused (a database gone silent must not hold the
/// call tasks, which record their changes through here).
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn bounded_write(store: &dyn Store, record: &CallRecord) -> Result<(), StoreError> {
    match tokio::time::timeout(WRITE_TIMEOUT, store.update_call(record)).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Backend(Box::new(elapsed))),
    }
}

/// The first retry of a refused write comes after this long; each failure doubles it.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

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
            pending: Arc::default(),
            writes: Arc::default(),
            retrying: Arc::default(),
            dialled_numbers: crate::privacy::DialledNumbers::default(),
        }
    }

    /// Stores dialled numbers as `mode` says (`[privacy] store_dialled_numbers`); the records
    /// in memory, which the call dials, keep the full number.
    #[must_use]
    pub fn with_dialled_numbers(mut self, mode: crate::privacy::DialledNumbers) -> Self {
        self.dialled_numbers = mode;
        self
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
        // A shared store counts every node's calls, atomically with the insert.
        match self
            .store
            .insert_call_capped(&self.as_stored(record), per_user)
            .await
        {
            Ok(true) => {
                self.after_insert(record);
                Ok(Ok(()))
            }
            Ok(false) => {
                write(&self.local).calls.remove(&record.id);
                Ok(Err(Refused::PerUser(per_user)))
            }
            Err(e) => {
                write(&self.local).calls.remove(&record.id);
                Err(e)
            }
        }
    }

    /// The ids of the live calls this node owns.
    pub fn live_ids(&self) -> Vec<String> {
        read(&self.local)
            .calls
            .values()
            .filter(|r| r.node == self.node && !r.is_finished())
            .map(|r| r.id.clone())
            .collect()
    }

    /// Records a new call placed by this node.
    pub async fn insert(&self, record: &CallRecord) -> Result<(), StoreError> {
        self.store.insert_call(&self.as_stored(record)).await?;
        self.after_insert(record);
        Ok(())
    }

    /// The record as the store keeps it: the dialled number masked when
    /// `[privacy] store_dialled_numbers = "masked"` (memory keeps it whole while the call lives;
    /// updates never write the number again).
    fn as_stored<'r>(&self, record: &'r CallRecord) -> std::borrow::Cow<'r, CallRecord> {
        if self.dialled_numbers == crate::privacy::DialledNumbers::Full {
            std::borrow::Cow::Borrowed(record)
        } else {
            let mut stored = record.clone();
            stored.dialled = self.dialled_numbers.apply(&record.dialled);
            std::borrow::Cow::Owned(stored)
        }
    }

    fn after_insert(&self, record: &CallRecord) {
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
    }

    /// Records a state change. Memory moves on at once (a hung-up call reads Disconnected and
    /// frees its cap slot even when the store cannot be written); a write the store refuses is
    /// kept and written again, newest state per call, until it lands — see [`Self::unwritten`].
    pub async fn update(&self, record: &CallRecord) -> Result<(), StoreError> {
        {
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
        }
        // While the store refuses writes, a change queues behind the refused ones at once
        // instead of waiting out its own timeout: a call task records through here before it
        // sends its BYE, and a node cut off from its database must still hang up promptly.
        if self.queue_if_retrying(record) {
            return Ok(());
        }
        let _turn = self.writes.lock().await;
        if self.queue_if_retrying(record) {
            return Ok(());
        }
        match bounded_write(self.store.as_ref(), record).await {
            Ok(()) => {
                // This write is the newest state: an older one still waiting is obsolete.
                lock(&self.pending).remove(&record.id);
                self.metrics.set_unwritten(lock(&self.pending).len());
                Ok(())
            }
            Err(error) => {
                tracing::error!(call = %record.id, error = %calls::error_chain(&error), "the store refused a call change; it is kept and written again");
                self.metrics.store_write_failed();
                lock(&self.pending).insert(record.id.clone(), record.clone());
                self.metrics.set_unwritten(lock(&self.pending).len());
                self.retry_in_background();
                Ok(())
            }
        }
    }

    /// Queues `record` for the retry task if one is running (the store is refusing writes).
    /// Checked under the `pending` lock, where the retry task decides to stop, so a queued change
    /// is never left without a task to write it.
    fn queue_if_retrying(&self, record: &CallRecord) -> bool {
        use std::sync::atomic::Ordering;
        let mut pending = lock(&self.pending);
        if !self.retrying.load(Ordering::Acquire) {
            return false;
        }
        pending.insert(record.id.clone(), record.clone());
        self.metrics.set_unwritten(pending.len());
        true
    }

    /// Call changes the store has refused and that are not written yet.
    pub fn unwritten(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Writes the refused changes again, with back-off, until none is left.
    fn retry_in_background(&self) {
        use std::sync::atomic::Ordering;
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, pending, writes, retrying, metrics) = (
            Arc::clone(&self.store),
            Arc::clone(&self.pending),
            Arc::clone(&self.writes),
            Arc::clone(&self.retrying),
            Arc::clone(&self.metrics),
        );
        tokio::spawn(async move {
            let mut wait = RETRY_FIRST;
            loop {
                tokio::time::sleep(wait).await;
                let _turn = writes.lock().await;
                let due: Vec<CallRecord> = lock(&pending).values().cloned().collect();
                let mut failed = false;
                for record in due {
                    match bounded_write(store.as_ref(), &record).await {
                        // Under `writes`, nothing newer can have been written meanwhile; a newer
                        // refused one replaced this entry and stays.
                        Ok(()) => {
                            let mut pending = lock(&pending);
                            if pending.get(&record.id) == Some(&record) {
                                pending.remove(&record.id);
                            }
                        }
                        Err(error) => {
                            failed = true;
                            metrics.store_write_failed();
                            tracing::warn!(call = %record.id, error = %calls::error_chain(&error), "the store still refuses a call change");
                            // The store is refusing: the others wait for the next round rather
                            // than each wait out its own timeout now.
                            break;
                        }
                    }
                }
                let left = {
                    let pending = lock(&pending);
                    if pending.is_empty() {
                        retrying.store(false, Ordering::Release);
                    }
                    pending.len()
                };
                metrics.set_unwritten(left);
                if left == 0 {
                    tracing::info!("every refused call change is written now");
                    return;
                }
                wait = if failed {
                    (wait * 2).min(RETRY_MAX)
                } else {
                    RETRY_FIRST
                };
            }
        });
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

    /// A SQLite store whose call updates can be refused, like a full disk.
    struct Refusing {
        inner: SqliteStore,
        refuse: std::sync::atomic::AtomicBool,
    }

    crate::store_double!(Refusing, inner, {
        async fn upsert_user(&self, user: crate::store::User) -> Result<(), StoreError> {
            self.inner.upsert_user(user).await
        }
        async fn user(&self, name: &str) -> Result<Option<crate::store::User>, StoreError> {
            self.inner.user(name).await
        }
        async fn insert_token(&self, u: &str, h: &str, l: &str) -> Result<(), StoreError> {
            self.inner.insert_token(u, h, l).await
        }
        async fn token_user(&self, h: &str) -> Result<Option<String>, StoreError> {
            self.inner.token_user(h).await
        }
        async fn insert_call(&self, c: &CallRecord) -> Result<(), StoreError> {
            self.inner.insert_call(c).await
        }
        async fn update_call(&self, c: &CallRecord) -> Result<(), StoreError> {
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Backend("database or disk is full".into()));
            }
            self.inner.update_call(c).await
        }
        async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
            self.inner.call(id).await
        }
        async fn close_orphaned_calls(&self, node: &str, now: i64) -> Result<usize, StoreError> {
            self.inner.close_orphaned_calls(node, now).await
        }
        async fn voicemail_item(
            &self,
            id: &str,
        ) -> Result<Option<crate::store::VoicemailItem>, StoreError> {
            self.inner.voicemail_item(id).await
        }
        async fn insert_voicemail_item(
            &self,
            item: &crate::store::VoicemailItem,
        ) -> Result<(), StoreError> {
            self.inner.insert_voicemail_item(item).await
        }
        async fn voicemail_items(
            &self,
            owner: &str,
        ) -> Result<Vec<crate::store::VoicemailItem>, StoreError> {
            self.inner.voicemail_items(owner).await
        }
    });

    #[tokio::test]
    async fn a_refused_write_still_moves_the_call_on_and_lands_later_in_order() {
        let sqlite = SqliteStore::in_memory().unwrap();
        let store = Arc::new(Refusing {
            inner: sqlite.clone(),
            refuse: std::sync::atomic::AtomicBool::new(false),
        });
        let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, "n1".into());
        let mut call = record("a", "n1");
        assert_eq!(registry.admit(&call, 1, 10).await.unwrap(), Ok(()));
        store
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Ringing, then hung up: 487. The store refuses both.
        call.state = CallState::Alerted;
        call.sip_code = Some(180);
        registry.update(&call).await.unwrap();
        call.state = CallState::Disconnected;
        call.sip_code = Some(487);
        call.ended_at = Some(now_unix());
        registry.update(&call).await.unwrap();
        // Memory has the truth at once, and the cap slot is free.
        let seen = registry.get("a").await.unwrap().unwrap();
        assert_eq!(
            (seen.state, seen.sip_code),
            (CallState::Disconnected, Some(487))
        );
        let mut next = record("b", "n1");
        next.owner = call.owner.clone();
        assert_eq!(registry.admit(&next, 1, 10).await.unwrap(), Ok(()));
        assert_eq!(registry.unwritten(), 1, "the newest change per call waits");
        assert_eq!(
            sqlite.call("a").await.unwrap().unwrap().state,
            CallState::Connecting
        );
        // The disk has room again: the newest state lands, never the older one after it.
        store
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + RETRY_MAX;
        while registry.unwritten() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let stored = sqlite.call("a").await.unwrap().unwrap();
        assert_eq!(
            (stored.state, stored.sip_code),
            (CallState::Disconnected, Some(487))
        );
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
