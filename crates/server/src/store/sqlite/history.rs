//! [`History`] for the embedded SQLite store, and its schema version.

use std::path::Path;

use async_trait::async_trait;
use calls::{CallRecord, UnixSeconds};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{row_to_call, row_to_item, SqliteStore, SQLITE_MIGRATIONS};
use crate::store::history::{CallFilter, History, ItemDeletion, SchemaStatus, SchemaTooNew};
use crate::store::{CallRow, StoreError};

/// The newest schema version this binary's SQLite migrations reach.
pub(crate) fn known_version() -> i64 {
    i64::try_from(SQLITE_MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Refuses a database whose schema is newer than this binary knows.
pub(crate) fn guard(stored: i64) -> Result<(), StoreError> {
    SchemaTooNew::check("SQLite", stored, known_version())
}

fn stored_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

impl SqliteStore {
    /// The newest schema version this binary knows.
    pub fn known_schema_version() -> i64 {
        known_version()
    }

    /// The schema status of the database at `path`, without migrating or creating it.
    pub fn schema_status_at(path: &Path) -> Result<SchemaStatus, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(SchemaStatus {
            stored: stored_version(&conn)?,
            known: known_version(),
        })
    }
}

#[async_trait]
impl History for SqliteStore {
    async fn calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let filter = filter.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT * FROM calls
                 WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR created_at >= ?2)
                 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map(params![filter.owner, filter.since], row_to_call)?;
            rows.map(|r| r.map_err(StoreError::from).and_then(CallRow::decode))
                .collect()
        })
        .await
    }

    async fn purge_ended_calls(&self, ended_before: UnixSeconds) -> Result<usize, StoreError> {
        self.with(move |c| {
            Ok(c.execute(
                "DELETE FROM calls WHERE state = 'Disconnected' AND ended_at < ?1",
                params![ended_before],
            )?)
        })
        .await
    }

    async fn all_voicemail_items(&self) -> Result<Vec<crate::store::VoicemailItem>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare("SELECT * FROM voicemail_items ORDER BY created_at, id")?;
            let rows = stmt.query_map([], row_to_item)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn delete_voicemail_item(&self, id: &str) -> Result<ItemDeletion, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            // IMMEDIATE: no call can be recorded for the item between the check and the delete.
            let tx =
                rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let item = tx
                .query_row(
                    "SELECT * FROM voicemail_items WHERE id = ?1",
                    params![id],
                    row_to_item,
                )
                .optional()?;
            let Some(item) = item else {
                return Ok(ItemDeletion::NotFound);
            };
            let live: Vec<String> = tx
                .prepare(
                    "SELECT id FROM calls WHERE item_id = ?1 AND state != 'Disconnected'
                     ORDER BY created_at, id",
                )?
                .query_map(params![id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            if !live.is_empty() {
                return Ok(ItemDeletion::InUse(live));
            }
            tx.execute("DELETE FROM voicemail_items WHERE id = ?1", params![id])?;
            tx.commit()?;
            Ok(ItemDeletion::Deleted(item))
        })
        .await
    }

    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        self.with(|c| {
            Ok(SchemaStatus {
                stored: stored_version(c)?,
                known: known_version(),
            })
        })
        .await
    }
}
