//! The registry's ordered store writer: call changes are written to the store by one background
//! task per registry, in order, without the call task waiting for them.
//!
//! A change is handed over with [`Writer::submit`], which never waits: the newest unwritten
//! state of each call is kept (a newer state of the same call replaces an older one not yet
//! written — only the newest needs writing), and the calls are written oldest change first, one
//! write at a time. One writer and one write at a time mean an older state of a call is not
//! written after a newer one — except that a write given up after [`WRITE_TIMEOUT`] may still
//! land later (a query already sent, a blocking task already queued): both stores therefore
//! never write an ended call back to a live state. A write the store refuses (or that takes longer than
//! [`WRITE_TIMEOUT`]) is kept, unless a newer state of the call arrived meanwhile, and tried
//! again after the other calls' waiting changes and a back-off ([`RETRY_FIRST`] doubling up to
//! [`RETRY_MAX`]; a write that lands resets it), so that one call's change the store cannot take
//! does not hold up the others; while the store
//! refuses, [`Writer::unwritten`] (and `/readyz`, and the `store_unwritten_changes` gauge) count
//! the calls waiting, and `store_write_failures` counts each refusal.
//!
//! What a crash loses: the states not yet written, at most one per call (normally none, or
//! the last few milliseconds of changes). The store then holds an older state of those calls,
//! which start-up treats as it always has: the calls this node owned that are not ended are
//! closed as Disconnected/Other. On SIGTERM, `serve` waits (bounded) for the writer to empty
//! after the live calls were hung up ([`Writer::flush`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calls::sync::lock;
use calls::CallRecord;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// A store write that takes longer counts as refused (a database gone silent must not stop the
/// writer for longer).
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first retry of a refused write comes after this long; each failure doubles it.
pub(super) const RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest back-off between retries.
pub(super) const RETRY_MAX: Duration = Duration::from_secs(10);

/// What is waiting to be written.
#[derive(Default)]
struct Queue {
    /// The newest unwritten state of each call.
    newest: HashMap<String, CallRecord>,
    /// The ids in `newest`, each once, oldest change first.
    order: VecDeque<String>,
    /// The call being written now.
    in_flight: Option<String>,
    /// The last write was refused (cleared by the next that lands).
    refusing: bool,
    /// The writer task runs.
    started: bool,
}

impl Queue {
    /// Calls with a change not yet written.
    fn waiting(&self) -> usize {
        self.newest.len()
            + usize::from(
                self.in_flight
                    .as_ref()
                    .is_some_and(|id| !self.newest.contains_key(id)),
            )
    }

    fn holds(&self, id: &str) -> bool {
        self.newest.contains_key(id) || self.in_flight.as_deref() == Some(id)
    }
}

/// One registry's writer.
pub(super) struct Writer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    queue: Mutex<Queue>,
    /// A change was submitted.
    submitted: Notify,
    /// Someone waits for the writer to empty: retry now rather than after the back-off.
    hurry: Notify,
    /// A write finished (landed or refused).
    progress: Notify,
}

impl Writer {
    pub(super) fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            queue: Mutex::default(),
            submitted: Notify::new(),
            hurry: Notify::new(),
            progress: Notify::new(),
        }
    }

    /// Hands a call change over to be written; never waits. The writer task starts with the
    /// first change (so a registry made outside a tokio runtime is fine until it records one).
    pub(super) fn submit(self: &Arc<Self>, record: CallRecord) {
        let start = {
            let mut queue = lock(&self.queue);
            let id = record.id.clone();
            if queue.newest.insert(id.clone(), record).is_none() {
                queue.order.push_back(id);
            }
            self.metrics.set_unwritten(unwritten(&queue));
            !std::mem::replace(&mut queue.started, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).run());
        }
        self.submitted.notify_one();
    }

    /// Calls whose newest change waits to be written while the store refuses writes (0 while
    /// writes land: a change queued for a few milliseconds is not worth reporting).
    pub(super) fn unwritten(&self) -> usize {
        unwritten(&lock(&self.queue))
    }

    /// Waits, at most `bound`, until every change submitted so far is written; returns how many
    /// calls still have an unwritten change. Retries at once rather than after the back-off.
    pub(super) async fn flush(&self, bound: Duration) -> usize {
        self.hurry.notify_one();
        self.wait(bound, |q| q.waiting() == 0).await;
        lock(&self.queue).waiting()
    }

    /// Waits, at most `bound`, until the change(s) of call `id` submitted so far are written or
    /// the store refuses writes (the change is then kept and written later, like any other).
    pub(super) async fn settle(&self, id: &str, bound: Duration) {
        self.wait(bound, |q| !q.holds(id) || q.refusing).await;
    }

    async fn wait(&self, bound: Duration, done: impl Fn(&Queue) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so a write that finishes after it wakes this wait.
            progress.as_mut().enable();
            if done(&lock(&self.queue)) {
                return true;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return done(&lock(&self.queue));
            }
        }
    }

    /// The writer task: one write at a time, oldest change first.
    async fn run(self: Arc<Self>) {
        let mut wait = RETRY_FIRST;
        loop {
            let next = {
                let mut queue = lock(&self.queue);
                let next = queue
                    .order
                    .pop_front()
                    .and_then(|id| queue.newest.remove(&id));
                if let Some(record) = &next {
                    queue.in_flight = Some(record.id.clone());
                }
                next
            };
            let Some(record) = next else {
                // A change submitted since the queue was looked at left a permit: no lost wake-up.
                self.submitted.notified().await;
                continue;
            };
            let result = bounded_write(self.store.as_ref(), &record).await;
            let refused = result.is_err();
            {
                let mut queue = lock(&self.queue);
                queue.in_flight = None;
                match result {
                    Ok(()) => {
                        if std::mem::replace(&mut queue.refusing, false) {
                            tracing::info!(
                                waiting = queue.waiting(),
                                "the store takes call changes again"
                            );
                        }
                        wait = RETRY_FIRST;
                    }
                    Err(error) => {
                        self.metrics.store_write_failed();
                        if std::mem::replace(&mut queue.refusing, true) {
                            tracing::warn!(call = %record.id, error = %calls::error_chain(&error), "the store still refuses a call change");
                        } else {
                            tracing::error!(call = %record.id, error = %calls::error_chain(&error), "the store refused a call change; it is kept and written again");
                        }
                        // Kept, unless a newer state of the call supersedes it, and tried
                        // again after the other calls' changes: a change the store refuses
                        // every time (a value it cannot hold) must not hold the others up.
                        if !queue.newest.contains_key(&record.id) {
                            queue.order.push_back(record.id.clone());
                            queue.newest.insert(record.id.clone(), record);
                        }
                    }
                }
                self.metrics.set_unwritten(unwritten(&queue));
            }
            self.progress.notify_waiters();
            if refused {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.hurry.notified() => {}
                }
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

fn unwritten(queue: &Queue) -> usize {
    if queue.refusing {
        queue.waiting()
    } else {
        0
    }
}

async fn bounded_write(store: &dyn Store, record: &CallRecord) -> Result<(), StoreError> {
    match tokio::time::timeout(WRITE_TIMEOUT, store.update_call(record)).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Backend(Box::new(elapsed))),
    }
}
