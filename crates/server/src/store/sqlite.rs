//! The embedded SQLite store: one file under the data directory, zero configuration.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use calls::{now_unix, CallRecord, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    CallRow, Credential, CredentialState, DeletedUser, Store, StoreError, TokenCredential,
    TokenInfo, User, UserSummary, VoicemailItem, TOKEN_ID_LEN,
};

mod epoch;
mod history;

pub use epoch::SQLITE_CREDENTIAL_LAG;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(Box::new(e))
    }
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    // One connection: SQLite serialises writers anyway, and a std mutex is right because it is
    // only ever held inside `spawn_blocking`, never across an `.await`.
    conn: Arc<Mutex<Connection>>,
    /// The credential epoch ([`Store::credential_epoch`]), read on its own connection.
    epoch: Arc<epoch::EpochWatch>,
}

const SQLITE_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    play_on_phone  INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE tokens (
    hash        TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE voicemail_items (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    has_audio   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    node        TEXT NOT NULL,
    state       TEXT NOT NULL,
    cause       TEXT NOT NULL,
    sip_code    INTEGER,
    sip_text    TEXT,
    dialled     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    ended_at    INTEGER
);
CREATE INDEX calls_owner ON calls(owner);
"#,
    r#"
ALTER TABLE voicemail_items ADD COLUMN from_text TEXT NOT NULL DEFAULT '';
ALTER TABLE voicemail_items ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE voicemail_items ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE voicemail_items ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX voicemail_owner ON voicemail_items(owner);
"#,
    // Credential generations and disabled users (store/users.rs).
    r#"
ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tokens_user ON tokens(user_name);
"#,
    // The credential epoch and its triggers (sqlite/epoch.rs).
    epoch::MIGRATION,
];

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::init(Connection::open(path)?)?;
        // Opened after the migrations, so the credential epoch's table exists.
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.pragma_update(None, "busy_timeout", 5000)?;
        store.epoch = Arc::new(epoch::EpochWatch::new(
            Arc::clone(&store.conn),
            Some(reader),
        ));
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    /// `f`, a credential change, then marks the credential epoch stale so this process sees the
    /// change at once (another process sees it within [`SQLITE_CREDENTIAL_LAG`]).
    async fn changing_credentials<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.with(f).await;
        // Also after an error: the statement may have been committed before it was reported.
        self.epoch.changed_here();
        result
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        history::guard(version)?;
        let tx = conn.transaction()?;
        for (i, sql) in SQLITE_MIGRATIONS.iter().enumerate() {
            let target = i64::try_from(i + 1).unwrap_or(i64::MAX);
            if version < target {
                tx.execute_batch(sql)?;
                tx.pragma_update(None, "user_version", target)?;
            }
        }
        tx.commit()?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Self {
            epoch: Arc::new(epoch::EpochWatch::new(Arc::clone(&conn), None)),
            conn,
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside a statement leaves SQLite's connection consistent (its own
            // transactions roll back), so poisoning is recovered from (see calls::sync).
            let guard = calls::sync::lock(&conn);
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
}

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<VoicemailItem> {
    Ok(VoicemailItem {
        id: r.get("id")?,
        owner: r.get("owner")?,
        has_audio: r.get("has_audio")?,
        from: r.get("from_text")?,
        subject: r.get("subject")?,
        duration_ms: r.get("duration_ms")?,
        created_at: r.get("created_at")?,
    })
}

fn row_to_call(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
    Ok(CallRow {
        id: r.get("id")?,
        owner: r.get("owner")?,
        node: r.get("node")?,
        state: r.get("state")?,
        cause: r.get("cause")?,
        sip_code: r.get("sip_code")?,
        sip_text: r.get("sip_text")?,
        dialled: r.get("dialled")?,
        item_id: r.get("item_id")?,
        created_at: r.get("created_at")?,
        ended_at: r.get("ended_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_user(&self, user: User) -> Result<(), StoreError> {
        self.changing_credentials(move |c| {
            c.execute(
                "INSERT INTO users (name, password_hash, play_on_phone, generation)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash,
                                                 play_on_phone = excluded.play_on_phone,
                                                 generation = users.generation + 1",
                params![
                    user.name,
                    user.password_hash,
                    user.play_on_phone,
                    super::first_generation()
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT name, password_hash, play_on_phone FROM users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(User {
                        name: r.get(0)?,
                        password_hash: r.get(1)?,
                        play_on_phone: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn insert_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
    ) -> Result<(), StoreError> {
        let (user, hash, label) = (user.to_owned(), token_hash.to_owned(), label.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO tokens (hash, user_name, label, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, user, label, now_unix()],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_user(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let hash = token_hash.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT user_name FROM tokens WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        let call = call.clone();
        self.with(move |c| {
            let inserted = c.execute(
                "INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled,
                                    item_id, created_at, ended_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(id) DO NOTHING",
                params![
                    call.id,
                    call.owner,
                    call.node,
                    call.state.as_str(),
                    call.cause.as_str(),
                    call.sip_code,
                    call.sip_text,
                    call.dialled,
                    call.item_id,
                    call.created_at,
                    call.ended_at
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("call {}", call.id)));
            }
            Ok(())
        })
        .await
    }

    async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        let call = call.clone();
        self.with(move |c| {
            c.execute(
                // An ended call is never written back to a live state (a write that timed out
                // may land after a newer one; see registry/writer.rs).
                "UPDATE calls SET state = ?2, cause = ?3, sip_code = ?4, sip_text = ?5,
                                  ended_at = ?6
                 WHERE id = ?1 AND (state <> 'Disconnected' OR ?2 = 'Disconnected')",
                params![
                    call.id,
                    call.state.as_str(),
                    call.cause.as_str(),
                    call.sip_code,
                    call.sip_text,
                    call.ended_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                "SELECT * FROM calls WHERE id = ?1",
                params![id],
                row_to_call,
            )
            .optional()?
            .map(CallRow::decode)
            .transpose()
        })
        .await
    }

    async fn close_orphaned_calls(
        &self,
        node: &str,
        now: UnixSeconds,
    ) -> Result<usize, StoreError> {
        let node = node.to_owned();
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE calls SET state = 'Disconnected', cause = 'Other', ended_at = ?2
                 WHERE node = ?1 AND state != 'Disconnected'",
                params![node, now],
            )?)
        })
        .await
    }

    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT * FROM voicemail_items WHERE id = ?1",
                params![id],
                row_to_item,
            )
            .optional()?)
        })
        .await
    }

    async fn insert_voicemail_item(&self, item: &VoicemailItem) -> Result<(), StoreError> {
        let item = item.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO voicemail_items (id, owner, has_audio, from_text, subject, duration_ms,
                                              created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    item.id,
                    item.owner,
                    item.has_audio,
                    item.from,
                    item.subject,
                    item.duration_ms,
                    item.created_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError> {
        let owner = owner.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT * FROM voicemail_items WHERE owner = ?1 ORDER BY created_at DESC, id",
            )?;
            let rows = stmt.query_map(params![owner], row_to_item)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    fn history(&self) -> Option<&dyn super::History> {
        Some(self)
    }

    async fn credential(&self, name: &str) -> Result<Option<Credential>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT name, password_hash, generation, disabled FROM users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(Credential {
                        name: r.get(0)?,
                        password_hash: r.get(1)?,
                        generation: r.get(2)?,
                        disabled: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn credential_state(&self, name: &str) -> Result<Option<CredentialState>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT generation, disabled FROM users WHERE name = ?1",
                params![name],
                |r| {
                    Ok(CredentialState {
                        generation: r.get(0)?,
                        disabled: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn credential_epoch(&self) -> Result<Option<u64>, StoreError> {
        self.epoch.current().await.map(Some)
    }

    async fn token_credential(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenCredential>, StoreError> {
        let hash = token_hash.to_owned();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT u.name, u.generation, u.disabled
                 FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = ?1",
                params![hash],
                |r| {
                    Ok(TokenCredential {
                        user: r.get(0)?,
                        generation: r.get(1)?,
                        disabled: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.changing_credentials(move |c| {
            Ok(c.execute(
                "UPDATE users SET password_hash = ?2, generation = generation + 1 WHERE name = ?1",
                params![name, hash],
            )? == 1)
        })
        .await
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.changing_credentials(move |c| {
            Ok(c.execute(
                "UPDATE users SET disabled = ?2, generation = generation + 1 WHERE name = ?1",
                params![name, disabled],
            )? == 1)
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<Option<DeletedUser>, StoreError> {
        let name = name.to_owned();
        self.changing_credentials(move |c| {
            let tx = c.unchecked_transaction()?;
            let items = {
                let mut stmt = tx.prepare(
                    "SELECT * FROM voicemail_items WHERE owner = ?1 ORDER BY created_at DESC, id",
                )?;
                let rows = stmt.query_map(params![name], row_to_item)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let tokens: u64 = tx.query_row(
                "SELECT count(*) FROM tokens WHERE user_name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            // Tokens and voice-mail items go with the user (ON DELETE CASCADE).
            let deleted = tx.execute("DELETE FROM users WHERE name = ?1", params![name])?;
            tx.commit()?;
            Ok((deleted == 1).then_some(DeletedUser {
                tokens,
                voicemail_items: items,
            }))
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserSummary>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT u.name, u.play_on_phone, u.disabled,
                        (SELECT count(*) FROM tokens t WHERE t.user_name = u.name),
                        (SELECT count(*) FROM voicemail_items v WHERE v.owner = u.name)
                 FROM users u ORDER BY u.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(UserSummary {
                    name: r.get(0)?,
                    play_on_phone: r.get(1)?,
                    disabled: r.get(2)?,
                    tokens: r.get(3)?,
                    voicemail_items: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let user = user.map(str::to_owned);
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at FROM tokens
                 WHERE ?1 IS NULL OR user_name = ?1 ORDER BY user_name, created_at, hash"
            ))?;
            let rows = stmt.query_map(params![user], row_to_token)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>, StoreError> {
        let id = id.to_owned();
        let mut revoked = self
            .revoke_where(
                format!("substr(hash, 1, {TOKEN_ID_LEN}) = ?1"),
                id.clone(),
                true,
            )
            .await?;
        match revoked.len() {
            0 | 1 => Ok(revoked.pop()),
            n => Err(StoreError::Conflict(format!(
                "{n} tokens with id {id:?} (none was revoked)"
            ))),
        }
    }

    async fn revoke_tokens_labelled(&self, label: &str) -> Result<Vec<TokenInfo>, StoreError> {
        self.revoke_where("label = ?1".into(), label.to_owned(), false)
            .await
    }
}

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        user: r.get(1)?,
        label: r.get(2)?,
        created_at: r.get(3)?,
    })
}

impl SqliteStore {
    /// Revokes the tokens matching `condition` (on `?1` = `value`) in one transaction, bumping
    /// their users' generations. With `single`, more than one match changes nothing and the
    /// matches are returned for the caller to refuse.
    async fn revoke_where(
        &self,
        condition: String,
        value: String,
        single: bool,
    ) -> Result<Vec<TokenInfo>, StoreError> {
        self.changing_credentials(move |c| {
            let tx = c.unchecked_transaction()?;
            let found = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at
                     FROM tokens WHERE {condition} ORDER BY user_name, created_at, hash"
                ))?;
                let rows = stmt.query_map(params![value], row_to_token)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            if single && found.len() > 1 {
                // Dropping the transaction rolls it back: nothing was changed.
                return Ok(found);
            }
            tx.execute(
                &format!(
                    "UPDATE users SET generation = generation + 1
                     WHERE name IN (SELECT user_name FROM tokens WHERE {condition})"
                ),
                params![value],
            )?;
            tx.execute(
                &format!("DELETE FROM tokens WHERE {condition}"),
                params![value],
            )?;
            tx.commit()?;
            Ok(found)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls::{CallState, Cause};

    fn call(id: &str) -> CallRecord {
        CallRecord::dialling(id, "alice", "n1", "5551212", "item", 1)
    }

    #[tokio::test]
    async fn calls_round_trip_and_ids_are_exact_strings() {
        let store = SqliteStore::in_memory().unwrap();
        store.insert_call(&call("AbC")).await.unwrap();
        assert!(store.call("abc").await.unwrap().is_none());
        let mut record = store.call("AbC").await.unwrap().unwrap();
        assert_eq!(record, call("AbC"));
        record.state = CallState::Disconnected;
        record.cause = Cause::UserBusy;
        record.sip_code = Some(486);
        record.sip_text = Some("Busy Here".into());
        record.ended_at = Some(5);
        store.update_call(&record).await.unwrap();
        assert_eq!(store.call("AbC").await.unwrap().unwrap(), record);
        assert!(matches!(
            store.insert_call(&call("AbC")).await,
            Err(StoreError::Conflict(_))
        ));
        store.insert_call(&call("live")).await.unwrap();
        assert_eq!(store.close_orphaned_calls("n1", 9).await.unwrap(), 1);
        let closed = store.call("live").await.unwrap().unwrap();
        assert_eq!(
            (closed.state, closed.cause, closed.ended_at),
            (CallState::Disconnected, Cause::Other, Some(9))
        );
        assert_eq!(store.call("AbC").await.unwrap().unwrap(), record);
    }

    #[tokio::test]
    async fn users_and_tokens_round_trip() {
        let store = SqliteStore::in_memory().unwrap();
        let user = User {
            name: "alice".into(),
            password_hash: "h1".into(),
            play_on_phone: true,
        };
        store.upsert_user(user.clone()).await.unwrap();
        store
            .upsert_user(User {
                password_hash: "h2".into(),
                ..user.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            store.user("alice").await.unwrap().unwrap().password_hash,
            "h2"
        );
        store.insert_token("alice", "th", "ci").await.unwrap();
        assert_eq!(
            store.token_user("th").await.unwrap().as_deref(),
            Some("alice")
        );
        assert!(store.token_user("other").await.unwrap().is_none());
        assert!(store.insert_token("nobody", "t2", "x").await.is_err());
    }
}
