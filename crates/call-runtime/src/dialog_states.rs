//! One channel carries the dialog state changes of every call, instead of one channel per call.
//!
//! rsipstack reports a dialog's states on a tokio unbounded channel of `DialogState`. A tokio
//! channel allocates its first block of 32 slots when it is created, and a `DialogState` is
//! ~300 bytes, so a channel per call costs ~9.7 KiB per call for as long as the call lasts —
//! the largest single item of a connected call (BENCHMARKS.md, "where the memory goes"). Here
//! all dialogs share one rsipstack channel; a dispatcher task routes each state by its Call-ID
//! (openum mints a unique one per call, kept across a digest retry) to the call's own channel,
//! whose items are boxed (32 slots of 8 bytes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use calls::sync::lock;
use rsipstack::dialog::dialog::{DialogState, DialogStateSender};
use tokio::sync::mpsc;
use tracing::Instrument as _;

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// Where a Call-ID's states go: the receiver registered last for it.
struct Route {
    generation: u64,
    sender: mpsc::UnboundedSender<Box<DialogState>>,
}

/// The shared channel's sender (handed to rsipstack for every INVITE) and the routes.
pub(crate) struct DialogStates {
    sender: DialogStateSender,
    routes: Routes,
    generation: AtomicU64,
}

impl DialogStates {
    /// Starts the dispatcher; it ends when every sender is gone (the stack is dropped).
    pub(crate) fn start() -> Self {
        let (sender, mut receiver) = mpsc::unbounded_channel::<DialogState>();
        let routes = Routes::default();
        let table = Arc::clone(&routes);
        tokio::spawn(
            async move {
                while let Some(state) = receiver.recv().await {
                    let call_id = state.id().call_id.clone();
                    let route = lock(&table).get(&call_id).map(|r| r.sender.clone());
                    let delivered = route.is_some_and(|r| r.send(Box::new(state)).is_ok());
                    if !delivered {
                        // The call's task has ended (its dialog still winds down in rsipstack,
                        // e.g. the 200 to a late BYE): nobody waits for this state any more.
                        // Not network input but rsipstack's notice to a listener that is gone,
                        // which a per-call channel dropped silently too: a debug line is enough.
                        tracing::debug!(sip_call_id = %call_id, "dialog state after the call's task ended: dropped");
                    }
                }
            }
            .instrument(tracing::info_span!("dialog states")),
        );
        Self {
            sender,
            routes,
            generation: AtomicU64::new(0),
        }
    }

    /// The states of the call with `call_id`, and the sender to give rsipstack for its INVITE.
    /// A digest retry registers the same Call-ID again: the new receiver replaces the old one.
    /// Call [`CallStates::follow`] with the dialog's local tag once the INVITE is created.
    pub(crate) fn register(&self, call_id: &str) -> (DialogStateSender, CallStates) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let generation = self.generation.fetch_add(1, Relaxed);
        lock(&self.routes).insert(call_id.to_owned(), Route { generation, sender });
        (
            self.sender.clone(),
            CallStates {
                receiver,
                call_id: call_id.to_owned(),
                local_tag: String::new(),
                generation,
                routes: Arc::clone(&self.routes),
            },
        )
    }
}

/// One call's dialog states. Dropping it removes the call's route (unless a newer INVITE of
/// the same call has replaced it).
pub struct CallStates {
    receiver: mpsc::UnboundedReceiver<Box<DialogState>>,
    call_id: String,
    /// Our tag of the dialog followed: states of another dialog with the same Call-ID (the
    /// one a digest retry replaced) are skipped.
    local_tag: String,
    generation: u64,
    routes: Routes,
}

impl CallStates {
    /// Follows the dialog whose local (From) tag is `local_tag`.
    pub(crate) fn follow(&mut self, local_tag: &str) {
        local_tag.clone_into(&mut self.local_tag);
    }

    /// The next state of the followed dialog. Never `None` while the call listens: the shared
    /// channel stays open. Cancel-safe, as `mpsc::UnboundedReceiver::recv`.
    pub async fn recv(&mut self) -> Option<DialogState> {
        loop {
            let state = *self.receiver.recv().await?;
            if state.id().local_tag == self.local_tag {
                return Some(state);
            }
            tracing::debug!(
                local_tag = %state.id().local_tag,
                "state of a replaced dialog of this call (digest retry): skipped"
            );
        }
    }
}

impl Drop for CallStates {
    fn drop(&mut self) {
        let mut routes = lock(&self.routes);
        if routes
            .get(&self.call_id)
            .is_some_and(|r| r.generation == self.generation)
        {
            routes.remove(&self.call_id);
        }
    }
}
