//! Operating the store: call history, purges, voice-mail deletion and the schema version.
//!
//! These are the administrator's and the retention task's view of the store, not the request
//! path's, so they live beside [`Store`](super::Store) rather than in it: a backend offers them
//! through [`Store::history`](super::Store::history). Both real backends do; test doubles need not.

use async_trait::async_trait;
use calls::{CallRecord, UnixSeconds};

use super::{StoreError, VoicemailItem};

/// Which calls [`History::calls`] returns.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct CallFilter {
    /// Only this owner's calls.
    pub owner: Option<String>,
    /// Only calls placed at or after this time.
    pub since: Option<UnixSeconds>,
}

/// What [`History::delete_voicemail_item`] did.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ItemDeletion {
    /// The row is gone; here is what it held.
    Deleted(VoicemailItem),
    /// No item with that id.
    NotFound,
    /// Live calls (their PhoneCallIds) play the item; nothing was deleted.
    InUse(Vec<String>),
}

/// The schema a store holds and the one this binary knows.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SchemaStatus {
    /// The version recorded in the store (0: an empty store).
    pub stored: i64,
    /// The newest version this binary's migrations reach.
    pub known: i64,
}

impl SchemaStatus {
    /// Migrations are pending (the store is older than this binary).
    pub fn pending(&self) -> bool {
        self.stored < self.known
    }

    /// The store was written by a newer openum, which this binary must not run against.
    pub fn too_new(&self) -> bool {
        self.stored > self.known
    }
}

/// Refusal to run against a schema newer than this binary knows (both backends).
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error(
    "the {backend} store's schema is version {stored}, newer than this openum (version {}) knows (version {known}); \
     it was upgraded by a newer openum: run that version, or restore a backup taken before the upgrade",
    env!("CARGO_PKG_VERSION")
)]
pub struct SchemaTooNew {
    /// `SQLite` or `PostgreSQL`.
    pub backend: &'static str,
    /// The store's version.
    pub stored: i64,
    /// This binary's newest version.
    pub known: i64,
}

impl SchemaTooNew {
    /// Refuses a store at version `stored` when this binary knows only up to `known`.
    pub(crate) fn check(backend: &'static str, stored: i64, known: i64) -> Result<(), StoreError> {
        if stored > known {
            return Err(StoreError::Backend(Box::new(Self {
                backend,
                stored,
                known,
            })));
        }
        Ok(())
    }
}

/// The store operations for history, retention and administration.
#[async_trait]
pub trait History: Send + Sync {
    /// Calls matching `filter`, oldest first.
    async fn calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError>;
    /// Deletes the calls that ended before `ended_before`; live calls are never touched.
    /// Returns how many were deleted.
    async fn purge_ended_calls(&self, ended_before: UnixSeconds) -> Result<usize, StoreError>;
    /// Every voice-mail item, of every owner.
    async fn all_voicemail_items(&self) -> Result<Vec<VoicemailItem>, StoreError>;
    /// Deletes an item's row unless a live call plays it (one transaction). The caller removes
    /// its audio file.
    async fn delete_voicemail_item(&self, id: &str) -> Result<ItemDeletion, StoreError>;
    /// The schema version the store holds and the one this binary knows.
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError>;
}
