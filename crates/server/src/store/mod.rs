//! Durable state behind one trait: users, API tokens, voice-mail items and call records.
//!
//! [`SqliteStore`] is the embedded default (one file under the data directory, zero
//! configuration); [`PostgresStore`] lets several nodes share the work. Every method is async;
//! the SQLite backend runs its statements on tokio's blocking pool so a slow disk never stalls
//! the request workers. [`conformance::run`] is the one behaviour suite both backends pass.
//!
//! Voice-mail audio: with SQLite it lives in files next to the database
//! (`<data_dir>/voicemail/`); with PostgreSQL it lives in the database with the item
//! ([`Store::shares_audio`]), so every node plays every item.
//!
//! Cross-node hang-up: a node asked to end a call another node owns calls
//! [`Store::request_hangup`], which records the request (table `hangup_requests`, the source of
//! truth), wakes the owner (`NOTIFY`) and waits, bounded, for the owner's confirmation; the owner
//! receives it from [`Store::hangup_requests`] (a dedicated `LISTEN` connection that re-reads the
//! table after every reconnect, so a request made while it was away is not lost) and confirms
//! with [`Store::hangup_done`]. SQLite is single-node and has none of this.
//!
//! Node liveness ([`Store::heartbeat`], [`Store::close_calls_of_dead_nodes`]) and cluster-wide
//! admission ([`Store::insert_call_capped`]) are PostgreSQL's too; SQLite's defaults are the
//! single-node behaviour.

//!
//! # Layout
//!
//! - this file: the [`Store`] trait, its record types, [`StoreError`], and the one decoder of
//!   call rows both backends use (`CallRow`).
//! - `sqlite`: [`SqliteStore`], the embedded default.
//! - `postgres`: [`PostgresStore`], for several nodes.
//! - [`conformance`]: the behaviour suite both pass.
//! - `users`: the account records behind authentication and `openum user|token` (credential
//!   generations, disabled users, token ids).
//! - [`history`]: call history, purges, voice-mail deletion and the schema version, for
//!   administration and retention ([`Store::history`]).

pub mod conformance;
pub mod history;
mod postgres;
mod sqlite;
mod users;

pub use postgres::{PgOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use users::{
    token_id, Credential, CredentialState, DeletedUser, TokenCredential, TokenInfo, UserSummary,
    TOKEN_ID_LEN,
};

pub use history::History;

/// The longest a credential change made by another process (the `openum user|token` CLI, another
/// node) can go unnoticed by a process that remembered a verification: the larger of the two
/// backends' bounds, [`SQLITE_CREDENTIAL_LAG`] and [`POSTGRES_CREDENTIAL_LAG`]. Changes made
/// through the same store count at once.
pub const CREDENTIAL_LAG: std::time::Duration = POSTGRES_CREDENTIAL_LAG;
pub use postgres::POSTGRES_CREDENTIAL_LAG;
pub use sqlite::SQLITE_CREDENTIAL_LAG;

use async_trait::async_trait;
use calls::{CallRecord, UnixSeconds};

/// The credential generation a new user starts at: the time in microseconds, so a user deleted
/// and created again under the same name never repeats a generation its predecessor had (each
/// change adds one, and changes come far less often than once a microsecond). A verification
/// remembered for the old user is then never taken for the new one's.
pub(crate) fn first_generation() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2))
}

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A row with the same key exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The backend failed.
    #[error("storage backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored row holds a value openum never writes (another program, or a newer version,
    /// wrote it). The row is refused rather than guessed at.
    #[error("the stored {table} row {id:?} has an invalid {column}")]
    BadRow {
        /// The table.
        table: &'static str,
        /// The row's key.
        id: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A call row as both backends read it, before its values are checked.
pub(crate) struct CallRow {
    pub(crate) id: String,
    pub(crate) owner: String,
    pub(crate) node: String,
    pub(crate) state: String,
    pub(crate) cause: String,
    pub(crate) sip_code: Option<i64>,
    pub(crate) sip_text: Option<String>,
    pub(crate) dialled: String,
    pub(crate) item_id: String,
    pub(crate) created_at: UnixSeconds,
    pub(crate) ended_at: Option<UnixSeconds>,
}

impl CallRow {
    /// Checks the row's values; a state, cause or SIP code openum never writes is an error
    /// naming the row and the column.
    pub(crate) fn decode(self) -> Result<CallRecord, StoreError> {
        let bad = |column: &'static str, source: Box<dyn std::error::Error + Send + Sync>| {
            StoreError::BadRow {
                table: "calls",
                id: self.id.clone(),
                column,
                source,
            }
        };
        let state = self.state.parse().map_err(|e| bad("state", Box::new(e)))?;
        let cause = self.cause.parse().map_err(|e| bad("cause", Box::new(e)))?;
        let sip_code = self
            .sip_code
            .map(u16::try_from)
            .transpose()
            .map_err(|e| bad("sip_code", Box::new(e)))?;
        Ok(CallRecord {
            state,
            cause,
            sip_code,
            id: self.id,
            owner: self.owner,
            node: self.node,
            sip_text: self.sip_text,
            dialled: self.dialled,
            item_id: self.item_id,
            created_at: self.created_at,
            ended_at: self.ended_at,
        })
    }
}

/// A user who may call the EWS endpoint.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct User {
    /// Login name (also the mailbox identity).
    pub name: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Whether Play on Phone is enabled for this user.
    pub play_on_phone: bool,
}

/// A voice-mail item a user can play.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct VoicemailItem {
    /// The EWS ItemId.
    pub id: String,
    /// Owning user.
    pub owner: String,
    /// Whether decoded audio is stored for the item.
    pub has_audio: bool,
    /// Caller shown for the message (free text).
    pub from: String,
    /// Subject line.
    pub subject: String,
    /// Playing time in milliseconds.
    pub duration_ms: i64,
    /// When it was imported.
    pub created_at: UnixSeconds,
}

/// A request, from another node, to end a call this node owns.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct HangupRequest {
    /// The owning node the request is for.
    pub node: String,
    /// The PhoneCallId.
    pub call_id: String,
}

/// The storage interface the server runs on.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a user, or replaces the password of an existing one.
    async fn upsert_user(&self, user: User) -> Result<(), StoreError>;
    /// Looks a user up by name.
    async fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    /// Stores an API token (by its hash) for `user`.
    async fn insert_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
    ) -> Result<(), StoreError>;
    /// The user owning the token with this hash.
    async fn token_user(&self, token_hash: &str) -> Result<Option<String>, StoreError>;
    /// Inserts a new call record.
    async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// Overwrites the state part of a call record.
    async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// Reads a call record by its exact PhoneCallId.
    async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError>;
    /// Closes every call `node` owns that is not ended (as Disconnected/Other at `now`); used at
    /// start-up, when none of them can still be live. Returns how many were closed.
    async fn close_orphaned_calls(&self, node: &str, now: UnixSeconds)
        -> Result<usize, StoreError>;
    /// Reads a voice-mail item by its exact ItemId.
    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError>;
    /// Stores a voice-mail item record.
    async fn insert_voicemail_item(&self, item: &VoicemailItem) -> Result<(), StoreError>;
    /// A user's voice-mail items, newest first.
    async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError>;
    /// Asks `node` to hang up `call_id` (multi-node backends only).
    async fn request_hangup(&self, node: &str, call_id: &str) -> Result<(), StoreError> {
        tracing::error!(
            node,
            call = call_id,
            "hang-up routed to another node on a single-node store"
        );
        Err(StoreError::Backend(
            "this store serves a single node; no other node owns calls".into(),
        ))
    }
    /// Hang-up requests from other nodes for `node` (multi-node backends only).
    fn hangup_requests(
        &self,
        _node: &str,
    ) -> Option<tokio::sync::broadcast::Receiver<HangupRequest>> {
        None
    }

    /// Whether several nodes share this store (heartbeats, reaping and fencing then run).
    fn multi_node(&self) -> bool {
        false
    }

    /// Why the store cannot serve this node right now, if it cannot (e.g. the `LISTEN`
    /// connection is down), for `/readyz`. Queries are checked separately.
    fn unready_reason(&self) -> Option<String> {
        None
    }

    // Accounts (`users.rs`). Every change to what a user may log in with (password, disabled,
    // a token revoked) bumps the user's credential generation in the same statement, so every
    // process sharing the store stops trusting what it verified before (`auth.rs`).

    /// A user's password hash, credential generation and disabled flag, read in one statement.
    async fn credential(&self, name: &str) -> Result<Option<Credential>, StoreError>;
    /// A user's credential generation and disabled flag (one primary-key lookup): what a cached
    /// verification is checked against on every request.
    async fn credential_state(&self, name: &str) -> Result<Option<CredentialState>, StoreError>;
    /// The store's *credential epoch*: a number that changes whenever any user's credentials
    /// may have changed (a password, a disabled flag, a token revoked or deleted, a user
    /// deleted), in this process or any other sharing the store. What was checked against the
    /// store at epoch `E` is still current while this answers `E`, so a remembered verification
    /// is trusted without a store read per request (`auth.rs`). The answer may lag a change made
    /// by another process by at most [`CREDENTIAL_LAG`] (each backend says how it keeps that
    /// bound); a change made through this very store counts at once. `None`: the store cannot
    /// vouch right now (no such mechanism, or PostgreSQL's `LISTEN` connection is down), and the
    /// caller must check the user's state itself.
    async fn credential_epoch(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }
    /// The token with this hash, with its user's generation and disabled flag.
    async fn token_credential(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenCredential>, StoreError>;
    /// Replaces a user's password hash and bumps their generation; every other setting is kept.
    /// `false`: no such user.
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError>;
    /// Disables or enables a user and bumps their generation. `false`: no such user.
    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError>;
    /// Deletes a user with their tokens and voice-mail item records (call history is kept: it
    /// is purged by its own retention). `None`: no such user.
    async fn delete_user(&self, name: &str) -> Result<Option<DeletedUser>, StoreError>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserSummary>, StoreError>;
    /// API tokens (of one user, or all), by user then creation time; never their secrets.
    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, StoreError>;
    /// Revokes the token with this id (see [`token_id`]) and bumps its user's generation.
    /// `None`: no such token; [`StoreError::Conflict`]: the id names more than one.
    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>, StoreError>;
    /// Revokes every token with this label and bumps their users' generations.
    async fn revoke_tokens_labelled(&self, label: &str) -> Result<Vec<TokenInfo>, StoreError>;
    /// History, retention and administration operations ([`history`]); both real backends
    /// have them.
    fn history(&self) -> Option<&dyn History> {
        None
    }

    /// The owner confirms that it ended (or no longer has) `call_id`, which another node asked
    /// it to hang up (multi-node backends only).
    async fn hangup_done(&self, _call_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Inserts a new call unless its owner already has `per_user` live calls in the store (every
    /// node's); `Ok(false)` when the cap refused it. Check and insert are atomic across nodes.
    /// Single-node stores rely on the registry's in-memory check and just insert.
    async fn insert_call_capped(
        &self,
        call: &CallRecord,
        _per_user: usize,
    ) -> Result<bool, StoreError> {
        self.insert_call(call).await.map(|()| true)
    }

    /// Writes `node`'s heartbeat (multi-node backends only).
    async fn heartbeat(&self, _node: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Closes, as Disconnected/Other, every live call of every node other than `me` whose
    /// heartbeat is older than `dead_after`; each call is closed by exactly one node even if
    /// several try at once. Returns the calls closed (id, owning node).
    async fn close_calls_of_dead_nodes(
        &self,
        _me: &str,
        _dead_after: std::time::Duration,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// Whether voice-mail audio lives in the store, where every node reads it (PostgreSQL), rather
    /// than in files next to the database (SQLite).
    fn shares_audio(&self) -> bool {
        false
    }

    /// Stores a voice-mail item record with its decoded audio (8 kHz mono s16le), both or
    /// neither. Stores that do not share audio keep only the record (the caller writes the
    /// file).
    async fn insert_voicemail_item_with_audio(
        &self,
        item: &VoicemailItem,
        _audio: &[u8],
    ) -> Result<(), StoreError> {
        self.insert_voicemail_item(item).await
    }

    /// An item's decoded audio, if the store holds it.
    async fn voicemail_audio(&self, _id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// Migration of node-local audio: stores `audio` for the existing item `id` if the store has
    /// none for it yet. `Ok(true)` when it was stored.
    async fn adopt_voicemail_audio(&self, _id: &str, _audio: &[u8]) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// Which of `ids` (calls `node` owns) another node has closed because it declared `node`
    /// dead.
    async fn closed_by_peers(
        &self,
        _node: &str,
        _ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }
}

/// A test double that wraps a real store and changes some of its call or voice-mail behaviour:
/// `store_double!(Type, field, { items })` implements [`Store`] for `Type` with `items` plus the
/// account methods (`credential` … `revoke_tokens_labelled`), which such doubles never change,
/// delegated to `self.field`. One list here instead of one per double.
#[doc(hidden)]
#[macro_export]
macro_rules! store_double {
    ($ty:ty, $field:tt, { $($items:tt)* }) => {
        #[$crate::async_trait::async_trait]
        impl $crate::store::Store for $ty {
            $($items)*

            async fn credential(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::Credential>, $crate::store::StoreError> {
                self.$field.credential(name).await
            }
            async fn credential_state(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::CredentialState>, $crate::store::StoreError> {
                self.$field.credential_state(name).await
            }
            async fn credential_epoch(
                &self,
            ) -> Result<Option<u64>, $crate::store::StoreError> {
                self.$field.credential_epoch().await
            }
            async fn token_credential(
                &self,
                hash: &str,
            ) -> Result<Option<$crate::store::TokenCredential>, $crate::store::StoreError> {
                self.$field.token_credential(hash).await
            }
            async fn set_password(
                &self,
                name: &str,
                hash: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                self.$field.set_password(name, hash).await
            }
            async fn set_user_disabled(
                &self,
                name: &str,
                disabled: bool,
            ) -> Result<bool, $crate::store::StoreError> {
                self.$field.set_user_disabled(name, disabled).await
            }
            async fn delete_user(
                &self,
                name: &str,
            ) -> Result<Option<$crate::store::DeletedUser>, $crate::store::StoreError> {
                self.$field.delete_user(name).await
            }
            async fn users(
                &self,
            ) -> Result<Vec<$crate::store::UserSummary>, $crate::store::StoreError> {
                self.$field.users().await
            }
            async fn tokens(
                &self,
                user: Option<&str>,
            ) -> Result<Vec<$crate::store::TokenInfo>, $crate::store::StoreError> {
                self.$field.tokens(user).await
            }
            async fn revoke_token(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::TokenInfo>, $crate::store::StoreError> {
                self.$field.revoke_token(id).await
            }
            async fn revoke_tokens_labelled(
                &self,
                label: &str,
            ) -> Result<Vec<$crate::store::TokenInfo>, $crate::store::StoreError> {
                self.$field.revoke_tokens_labelled(label).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls::{CallState, Cause};

    fn row(state: &str, cause: &str, sip_code: Option<i64>) -> CallRow {
        CallRow {
            id: "c1".into(),
            owner: "alice".into(),
            node: "n1".into(),
            state: state.into(),
            cause: cause.into(),
            sip_code,
            sip_text: None,
            dialled: "1".into(),
            item_id: "i".into(),
            created_at: 1,
            ended_at: None,
        }
    }

    #[test]
    fn call_rows_decode_their_states_causes_and_codes() {
        let record = row("Alerted", "None", Some(180)).decode().unwrap();
        assert_eq!(
            (record.state, record.cause, record.sip_code),
            (CallState::Alerted, Cause::None, Some(180))
        );
    }

    #[test]
    fn a_row_with_an_unknown_state_cause_or_code_is_refused_naming_the_column() {
        for (bad, column) in [
            (row("Idle", "None", None), "state"),
            (row("Connected", "Busy", None), "cause"),
            (row("Connected", "None", Some(70_000)), "sip_code"),
        ] {
            let error = bad.decode().unwrap_err();
            assert!(
                matches!(&error, StoreError::BadRow { column: c, id, .. } if *c == column && id == "c1"),
                "{error:?}"
            );
            assert!(error.to_string().contains(column), "{error}");
        }
    }
}
