//! [`History`] for the PostgreSQL store, and its schema version.

use async_trait::async_trait;
use calls::{CallRecord, UnixSeconds};
use tokio_postgres::Client;

use super::{pg, to_call, to_item, PostgresStore, MIGRATIONS};
use crate::store::history::{CallFilter, History, ItemDeletion, SchemaStatus, SchemaTooNew};
use crate::store::{StoreError, VoicemailItem};

/// The newest schema version this binary's PostgreSQL migrations reach.
pub(crate) fn known_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Refuses a database whose schema is newer than this binary knows.
pub(crate) fn guard(stored: i64) -> Result<(), StoreError> {
    SchemaTooNew::check("PostgreSQL", stored, known_version())
}

/// The version recorded in `openum_schema` (0 when the table does not exist yet).
pub(crate) async fn stored_version(client: &Client) -> Result<i64, StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('openum_schema') IS NOT NULL", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg)?;
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_one("SELECT max(version) FROM openum_schema", &[])
        .await
        .map_err(pg)?;
    // NULL: no row yet, no migration has run.
    Ok(row
        .try_get::<_, Option<i32>>(0)
        .map_err(pg)?
        .map_or(0, i64::from))
}

impl PostgresStore {
    /// The schema status of the database at `url`, without migrating it.
    pub async fn schema_status_at(url: &str) -> Result<SchemaStatus, StoreError> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(pg)?;
        let driver = tokio::spawn(connection);
        let stored = stored_version(&client).await;
        drop(client);
        // The connection ends when the client is dropped; its own error, if any, is not
        // what the caller asked about.
        let _ = driver.await;
        Ok(SchemaStatus {
            stored: stored?,
            known: known_version(),
        })
    }
}

#[async_trait]
impl History for PostgresStore {
    async fn calls(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT * FROM calls
                 WHERE ($1::TEXT IS NULL OR owner = $1) AND ($2::BIGINT IS NULL OR created_at >= $2)
                 ORDER BY created_at, id",
                &[&filter.owner, &filter.since],
            )
            .await?;
        rows.iter().map(to_call).collect()
    }

    async fn purge_ended_calls(&self, ended_before: UnixSeconds) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "DELETE FROM calls WHERE state = 'Disconnected' AND ended_at < $1",
                &[&ended_before],
            )
            .await?;
        // A row count fits in usize on every 64-bit target openum supports.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn all_voicemail_items(&self) -> Result<Vec<VoicemailItem>, StoreError> {
        let rows = self
            .query("SELECT * FROM voicemail_items ORDER BY created_at, id", &[])
            .await?;
        rows.iter().map(to_item).collect()
    }

    async fn delete_voicemail_item(&self, id: &str) -> Result<ItemDeletion, StoreError> {
        // One statement: the row is deleted only if no live call plays it. Every part of it
        // reads the same snapshot, taken before the delete (`present`, `live`).
        let row = self
            .query_one(
                "WITH live AS (
                     SELECT coalesce(array_agg(id ORDER BY created_at, id), '{}') AS ids
                     FROM calls WHERE item_id = $1 AND state <> 'Disconnected'
                 ), gone AS (
                     DELETE FROM voicemail_items
                     WHERE id = $1 AND cardinality((SELECT ids FROM live)) = 0
                     RETURNING *
                 )
                 SELECT (SELECT ids FROM live) AS live,
                        EXISTS (SELECT 1 FROM voicemail_items WHERE id = $1) AS present,
                        gone.*
                 FROM (SELECT 1) AS one LEFT JOIN gone ON TRUE",
                &[&id],
            )
            .await?;
        let present: bool = row.try_get("present").map_err(pg)?;
        let deleted: Option<String> = row.try_get("id").map_err(pg)?;
        Ok(match (present, deleted) {
            (false, _) => ItemDeletion::NotFound,
            (true, Some(_)) => ItemDeletion::Deleted(to_item(&row)?),
            (true, None) => ItemDeletion::InUse(row.try_get("live").map_err(pg)?),
        })
    }

    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        Ok(SchemaStatus {
            stored: stored_version(&*self.client().await?).await?,
            known: known_version(),
        })
    }
}
