//! The call registry: this node's calls in memory, written through to the store.
//!
//! `GetPhoneCallInformation` is the hot path (clients poll it), so the calls this node owns are
//! answered from memory; every change is applied to memory at once and handed to the
//! registry's ordered background writer (`registry/writer.rs`), which writes it to the store
//! without the call task waiting, so a restart or another node sees the same record a moment
//! later. New calls are inserted before they are placed (admission is checked with the insert).
//! Calls owned by other nodes are always read from the store, never cached, because only their
//! owner writes them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use calls::sync::{read, write};
use calls::{now_unix, CallRecord, CallRecorder, CallState, RecordError};

use crate::store::{Store, StoreError};

mod writer;

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
    /// Writes call changes to the store in order, in the background.
    writer: Arc<writer::Writer>,
    /// What the stored record keeps of the dialled number (`[privacy]`).
    dialled_numbers: crate::privacy::DialledNumbers,
}

/// How long a hang-up waits for its change to reach the store before it is answered (a change
/// the store refuses is not waited for: it is kept and written later).
pub const SETTLE_BOUND: std::time::Duration = writer::WRITE_TIMEOUT;

#[derive(Default)]
struct Local {
    calls: HashMap<String, CallRecord>,
    inserts_since_prune: usize,
}

impl Registry {
    /// A registry for `node` over `store`.
    pub fn new(store: Arc<dyn Store>, node: String) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Self {
            writer: Arc::new(writer::Writer::new(
                Arc::clone(&store),
                Arc::clone(&metrics),
            )),
            store,
            node,
            local: RwLock::new(Local::default()),
            metrics,
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
    /// frees its cap slot even when the store cannot be written), and the change is handed to
    /// the ordered background writer: the caller (a call task) never waits for the store. A
    /// write the store refuses is kept and written again, newest state per call, until it lands
    /// — see [`Self::unwritten`].
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
        self.writer.submit(record.clone());
        Ok(())
    }

    /// Call changes the store has refused and that are not written yet (0 while writes land).
    pub fn unwritten(&self) -> usize {
        self.writer.unwritten()
    }

    /// Waits, at most `bound`, until every call change recorded so far is in the store; returns
    /// how many calls still have a change not written (shutdown).
    pub async fn flush(&self, bound: std::time::Duration) -> usize {
        self.writer.flush(bound).await
    }

    /// Waits, at most `bound`, until the changes of call `id` recorded so far are in the store,
    /// or the store refuses writes (they are then written later): what a hang-up waits for, so
    /// every node reads the call ended once it is answered.
    pub async fn settle(&self, id: &str, bound: std::time::Duration) {
        self.writer.settle(id, bound).await;
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

    /// A SQLite store whose call updates can be refused, like a full disk, or held (each waits
    /// for a permit), and which logs the updates it wrote.
    struct Refusing {
        inner: SqliteStore,
        refuse: std::sync::atomic::AtomicBool,
        /// The call whose updates are always refused (a value the store cannot hold).
        refuse_call: std::sync::Mutex<Option<String>>,
        /// When set, each update waits for a permit.
        gate: Option<tokio::sync::Semaphore>,
        /// Told each time an update reaches the store.
        entered: tokio::sync::Notify,
        written: std::sync::Mutex<Vec<(String, CallState)>>,
    }

    impl Refusing {
        fn new(inner: SqliteStore, gated: bool) -> Self {
            Self {
                inner,
                refuse: std::sync::atomic::AtomicBool::new(false),
                refuse_call: std::sync::Mutex::default(),
                gate: gated.then(|| tokio::sync::Semaphore::new(0)),
                entered: tokio::sync::Notify::new(),
                written: std::sync::Mutex::default(),
            }
        }

        fn written(&self) -> Vec<(String, CallState)> {
            self.written.lock().unwrap().clone()
        }
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
            self.entered.notify_one();
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            if self.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Backend("database or disk is full".into()));
            }
            if self.refuse_call.lock().unwrap().as_deref() == Some(c.id.as_str()) {
                return Err(StoreError::Backend("invalid byte sequence".into()));
            }
            self.inner.update_call(c).await?;
            self.written.lock().unwrap().push((c.id.clone(), c.state));
            Ok(())
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

    /// The output of `f` if it is ready at its first poll (it never waited).
    fn at_once<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn changes_are_written_in_order_newest_state_per_call_without_the_caller_waiting() {
        let sqlite = SqliteStore::in_memory().unwrap();
        let store = Arc::new(Refusing::new(sqlite.clone(), true));
        let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, "n1".into());
        let (mut a, mut b) = (record("a", "n1"), record("b", "n1"));
        registry.insert(&a).await.unwrap();
        registry.insert(&b).await.unwrap();
        // The store holds every write until the test lets it through; recording never waits.
        a.state = CallState::Alerted;
        at_once(registry.update(&a)).unwrap().unwrap();
        // The writer takes `a`/Alerted and waits inside the store.
        store.entered.notified().await;
        for state in [CallState::Connected, CallState::Disconnected] {
            a.state = state;
            at_once(registry.update(&a)).unwrap().unwrap();
            b.state = state;
            at_once(registry.update(&b)).unwrap().unwrap();
        }
        // Memory has every change at once.
        assert_eq!(
            registry.get("b").await.unwrap().unwrap().state,
            CallState::Disconnected
        );
        store.gate.as_ref().unwrap().add_permits(100);
        assert_eq!(registry.flush(std::time::Duration::from_secs(30)).await, 0);
        // `a`/Connected was superseded before it was written, and `a` changed before `b` did.
        assert_eq!(
            store.written(),
            [
                ("a".to_owned(), CallState::Alerted),
                ("a".to_owned(), CallState::Disconnected),
                ("b".to_owned(), CallState::Disconnected),
            ]
        );
        for id in ["a", "b"] {
            assert_eq!(
                sqlite.call(id).await.unwrap().unwrap().state,
                CallState::Disconnected
            );
        }
    }

    #[tokio::test]
    async fn a_flush_reports_what_the_store_would_not_take_in_time() {
        let sqlite = SqliteStore::in_memory().unwrap();
        let store = Arc::new(Refusing::new(sqlite.clone(), false));
        let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, "n1".into());
        let mut call = record("a", "n1");
        registry.insert(&call).await.unwrap();
        store
            .refuse
            .store(true, std::sync::atomic::Ordering::SeqCst);
        call.state = CallState::Disconnected;
        registry.update(&call).await.unwrap();
        assert_eq!(
            registry.flush(std::time::Duration::from_millis(300)).await,
            1
        );
        assert_eq!(registry.unwritten(), 1);
        store
            .refuse
            .store(false, std::sync::atomic::Ordering::SeqCst);
        // A flush retries at once rather than after the back-off.
        assert_eq!(registry.flush(writer::RETRY_MAX * 3).await, 0);
        assert_eq!(registry.unwritten(), 0);
        assert_eq!(
            sqlite.call("a").await.unwrap().unwrap().state,
            CallState::Disconnected
        );
    }

    #[tokio::test]
    async fn a_refused_write_still_moves_the_call_on_and_lands_later_in_order() {
        let sqlite = SqliteStore::in_memory().unwrap();
        let store = Arc::new(Refusing::new(sqlite.clone(), false));
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
        // The writer has tried (the store refused).
        registry
            .settle("a", std::time::Duration::from_secs(30))
            .await;
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
        let deadline = tokio::time::Instant::now() + writer::RETRY_MAX * 3;
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
    async fn a_change_the_store_refuses_every_time_does_not_hold_up_other_calls() {
        let sqlite = SqliteStore::in_memory().unwrap();
        let store = Arc::new(Refusing::new(sqlite.clone(), false));
        let registry = Registry::new(Arc::clone(&store) as Arc<dyn Store>, "n1".into());
        let mut calls: Vec<CallRecord> = ["poison", "b", "c"]
            .iter()
            .map(|id| record(id, "n1"))
            .collect();
        for call in &calls {
            registry.insert(call).await.unwrap();
        }
        *store.refuse_call.lock().unwrap() = Some("poison".into());
        // The refused change comes first; the other two after it.
        for call in &mut calls {
            call.state = CallState::Disconnected;
            call.ended_at = Some(now_unix());
            registry.update(call).await.unwrap();
        }
        // (`settle` returns while the store refuses: look at the store itself.)
        let deadline = tokio::time::Instant::now() + writer::RETRY_MAX * 3;
        for id in ["b", "c"] {
            while sqlite.call(id).await.unwrap().unwrap().state != CallState::Disconnected {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} is not written while the change before it is refused"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        assert_eq!(
            sqlite.call("poison").await.unwrap().unwrap().state,
            CallState::Connecting
        );
        // Still kept, and written once the store takes it.
        *store.refuse_call.lock().unwrap() = None;
        assert_eq!(registry.flush(writer::RETRY_MAX * 3).await, 0);
        assert_eq!(
            sqlite.call("poison").await.unwrap().unwrap().state,
            CallState::Disconnected
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
        registry
            .settle("a", std::time::Duration::from_secs(30))
            .await;
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
