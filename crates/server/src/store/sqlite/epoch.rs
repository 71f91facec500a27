//! SQLite's credential epoch ([`Store::credential_epoch`](crate::store::Store::credential_epoch)).
//!
//! Triggers on `users` and `tokens` (schema version 4) bump the one row of `credential_epoch`
//! in the same transaction as every update or deletion of a user or a token, whoever makes it:
//! this process, the `openum user|token` CLI, or `sqlite3` by hand. The row is read on a
//! dedicated read-only connection (WAL: readers never wait for the writer, so a call write
//! being synced never holds an EWS request) with a cached statement, and at most once per
//! [`SQLITE_CREDENTIAL_LAG`]: the value read is trusted for that long after the read *began*,
//! so a change another process commits is seen by every request that starts more than that
//! long after the commit. A change made through this store counts at once: the store marks the
//! value stale after writing it.
//!
//! Call writes do not touch the row, so under call load remembered verifications stay valid
//! (a check on `PRAGMA data_version` alone would count every call write as a possible
//! credential change).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::store::StoreError;

/// How long a credential epoch read from SQLite is trusted: the longest a credential change
/// made by another process (the `openum user|token` CLI) goes unnoticed. A CLI command takes
/// longer than this to start, so in practice the next request after it returns is checked
/// against it; the read costs one statement on a dedicated connection per this period, instead
/// of one per request.
pub const SQLITE_CREDENTIAL_LAG: Duration = Duration::from_millis(1);

/// The migration that creates the row and its triggers (appended to the SQLite migrations).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE credential_epoch (epoch INTEGER NOT NULL);
INSERT INTO credential_epoch (epoch) VALUES (0);
CREATE TRIGGER users_updated_epoch AFTER UPDATE ON users
    BEGIN UPDATE credential_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER users_deleted_epoch AFTER DELETE ON users
    BEGIN UPDATE credential_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tokens_updated_epoch AFTER UPDATE ON tokens
    BEGIN UPDATE credential_epoch SET epoch = epoch + 1; END;
CREATE TRIGGER tokens_deleted_epoch AFTER DELETE ON tokens
    BEGIN UPDATE credential_epoch SET epoch = epoch + 1; END;
"#;

const READ: &str = "SELECT epoch FROM credential_epoch";

/// The last epoch read and how long it may be trusted.
pub(super) struct EpochWatch {
    /// The dedicated read connection (`None` for an in-memory database, which has only the one
    /// connection: then `main` is read).
    reader: Option<Arc<Mutex<Connection>>>,
    main: Arc<Mutex<Connection>>,
    base: Instant,
    /// The last value read.
    epoch: AtomicU64,
    /// Until when (nanoseconds since `base`) `epoch` may be trusted; 0: stale.
    fresh_until: AtomicU64,
    /// Bumped by every credential change made through this store, so a read that began before
    /// such a change is not trusted.
    local_changes: AtomicU64,
    /// One read at a time; the others wait for its answer.
    refresh: tokio::sync::Mutex<()>,
}

impl EpochWatch {
    pub(super) fn new(main: Arc<Mutex<Connection>>, reader: Option<Connection>) -> Self {
        Self {
            reader: reader.map(|c| Arc::new(Mutex::new(c))),
            main,
            base: Instant::now(),
            epoch: AtomicU64::new(0),
            fresh_until: AtomicU64::new(0),
            local_changes: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A credential change was made through this store: the next request reads the row again.
    pub(super) fn changed_here(&self) {
        self.local_changes.fetch_add(1, Ordering::AcqRel);
        self.fresh_until.store(0, Ordering::Release);
    }

    /// The current epoch, read again when the last read is older than the bound.
    pub(super) async fn current(&self) -> Result<u64, StoreError> {
        if self.now() < self.fresh_until.load(Ordering::Acquire) {
            return Ok(self.epoch.load(Ordering::Acquire));
        }
        let _one = self.refresh.lock().await;
        // Someone else may have read it while this request waited.
        if self.now() < self.fresh_until.load(Ordering::Acquire) {
            return Ok(self.epoch.load(Ordering::Acquire));
        }
        let began = self.now();
        let local = self.local_changes.load(Ordering::Acquire);
        let conn = Arc::clone(self.reader.as_ref().unwrap_or(&self.main));
        let value = tokio::task::spawn_blocking(move || -> Result<i64, StoreError> {
            let conn = calls::sync::lock(&conn);
            let mut statement = conn.prepare_cached(READ)?;
            Ok(statement.query_row([], |r| r.get(0))?)
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))??;
        // The triggers only ever add to it; a negative value is no epoch openum wrote.
        let value = u64::try_from(value).map_err(|e| StoreError::BadRow {
            table: "credential_epoch",
            id: "0".into(),
            column: "epoch",
            source: Box::new(e),
        })?;
        self.epoch.store(value, Ordering::Release);
        if self.local_changes.load(Ordering::Acquire) == local {
            let lag = u64::try_from(SQLITE_CREDENTIAL_LAG.as_nanos()).unwrap_or(u64::MAX);
            self.fresh_until
                .store(began.saturating_add(lag), Ordering::Release);
        }
        Ok(value)
    }
}
