//! `openum backup` and `openum restore` for the embedded SQLite store, and the lock that tells
//! a data directory in use.
//!
//! A backup directory holds `openum.db` — a consistent snapshot taken with SQLite's online
//! backup API in one step, so a running `openum serve` keeps writing meanwhile and the copy is
//! one committed state (never a file copy of a live WAL database) — and `voicemail/`, the audio
//! files of the items that snapshot holds, copied after it. An item imported after the snapshot
//! is not in the backup (neither row nor file); one deleted between the snapshot and the copy
//! is reported as missing audio.
//!
//! PostgreSQL has its own tools (`pg_dump`/`pg_restore`); see the README.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rusqlite::{Connection, OpenFlags};

use crate::store::history::{SchemaStatus, SchemaTooNew};
use crate::store::SqliteStore;

/// The database file's name, in a data directory and in a backup.
pub const DB_FILE: &str = "openum.db";
/// The lock file `openum serve` holds in its data directory.
pub const LOCK_FILE: &str = "openum.lock";

/// Which store a configuration names, resolved as [`crate::open_store`] does:
/// `OPENUM_POSTGRES_URL` (unset, empty or not Unicode: not set), then `store.postgres_url`,
/// then the SQLite file under `server.data_dir`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum StoreLocation {
    /// The embedded store: this file.
    Sqlite(PathBuf),
    /// PostgreSQL at `url`, named by `from` (the variable or key).
    Postgres {
        /// The connection URL (may hold a password: shown only through `Display`).
        url: String,
        /// `OPENUM_POSTGRES_URL` or `store.postgres_url`.
        from: &'static str,
    },
}

impl StoreLocation {
    /// The store `config` names.
    pub fn of(config: &crate::config::Config) -> Self {
        if let Some(url) = std::env::var("OPENUM_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return Self::Postgres {
                url,
                from: "OPENUM_POSTGRES_URL",
            };
        }
        match &config.store.postgres_url {
            Some(url) => Self::Postgres {
                url: url.clone(),
                from: "store.postgres_url",
            },
            None => Self::Sqlite(config.server.data_dir.join(DB_FILE)),
        }
    }
}

/// `SQLite store /abs/path/openum.db`, or `PostgreSQL store host:port/db (from …)` — never the
/// URL's credentials.
impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => {
                // A relative data directory is shown as the absolute path it resolves to.
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                write!(f, "SQLite store {}", shown.display())
            }
            Self::Postgres { url, from } => {
                let host = url.rsplit_once('@').map_or_else(
                    || {
                        url.split_once("://")
                            .map_or("<unparsed URL>", |(_, rest)| rest)
                    },
                    |(_, host)| host,
                );
                write!(f, "PostgreSQL store {host} (from {from})")
            }
        }
    }
}

/// A lock on a data directory: shared by every `openum serve` using it while it runs
/// ([`DataDirLock::in_use`]), exclusive for `openum restore` while it writes
/// ([`DataDirLock::exclusive`]), so a restore never replaces a store a server has open.
/// Released when dropped, or when the process dies (`flock`).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// The lock a running server holds (several servers may share it); fails only while a
    /// restore writes.
    pub fn in_use(data_dir: &Path) -> anyhow::Result<Self> {
        Self::take(data_dir, false)
    }

    /// The lock a restore holds; fails, saying so, while any server uses the directory.
    pub fn exclusive(data_dir: &Path) -> anyhow::Result<Self> {
        Self::take(data_dir, true)
    }

    fn take(data_dir: &Path, exclusive: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        #[cfg(unix)]
        {
            use rustix::fs::FlockOperation::{NonBlockingLockExclusive, NonBlockingLockShared};
            let operation = if exclusive {
                NonBlockingLockExclusive
            } else {
                NonBlockingLockShared
            };
            match rustix::fs::flock(&file, operation) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) if exclusive => bail!(
                    "the data directory {} is in use by a running openum (it holds {}); stop it first",
                    data_dir.display(),
                    path.display()
                ),
                Err(rustix::io::Errno::WOULDBLOCK) => bail!(
                    "the data directory {} is being restored from a backup (`openum restore` holds {}); start openum when it has finished",
                    data_dir.display(),
                    path.display()
                ),
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
        Ok(Self { _file: file })
    }
}

/// What a backup holds.
#[derive(Debug, Default)]
pub struct BackupReport {
    /// The database copy.
    pub database: PathBuf,
    /// Its schema.
    pub schema: Option<SchemaStatus>,
    /// Voice-mail items in it.
    pub items: usize,
    /// Audio files copied.
    pub audio_files: usize,
    /// Items whose audio file was missing in the data directory.
    pub missing_audio: Vec<String>,
}

fn open_existing(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    if !path.is_file() {
        bail!("there is no openum database at {}", path.display());
    }
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .with_context(|| format!("cannot set a busy timeout on {}", path.display()))?;
    Ok(conn)
}

/// Copies `src` into `dst` with the online backup API, all pages in one step so the copy is one
/// committed state of `src` even while another process writes to it.
fn copy_database(src: &Connection, dst: &mut Connection) -> rusqlite::Result<()> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(src, dst)?;
    let mut waits = 0;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // A writer holds the lock for a moment: try again (about 10 s in all).
            StepResult::Busy | StepResult::Locked | StepResult::More if waits < 200 => {
                waits += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the database stayed locked for 10 s".into()),
                ))
            }
        }
    }
}

fn item_audio(items: &Connection) -> anyhow::Result<Vec<(String, bool)>> {
    let mut stmt = items.prepare("SELECT id, has_audio FROM voicemail_items ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn ensure_empty_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "the backup directory {} is not empty; give a new or empty directory",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the backup directory {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Copies the audio files of the items `db` holds from `from_data_dir` to `to_data_dir`.
fn copy_audio(
    db: &Connection,
    from_data_dir: &Path,
    to_data_dir: &Path,
    report: &mut BackupReport,
) -> anyhow::Result<()> {
    let items = item_audio(db).context("cannot list the voice-mail items")?;
    report.items = items.len();
    let target = to_data_dir.join("voicemail");
    std::fs::create_dir_all(&target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    for (id, has_audio) in items {
        let Ok(uuid) = crate::voicemail::parse_item_id(&id) else {
            continue;
        };
        if !has_audio {
            continue;
        }
        let from = crate::voicemail::audio_path(from_data_dir, uuid);
        let to = crate::voicemail::audio_path(to_data_dir, uuid);
        match std::fs::copy(&from, &to) {
            Ok(_) => report.audio_files += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.missing_audio.push(id),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
            }
        }
    }
    Ok(())
}

fn close_live_calls(restored: &Connection, target: &Path) -> anyhow::Result<usize> {
    restored
        .execute(
            "UPDATE calls SET state = 'Disconnected', cause = 'Other', ended_at = ?1
             WHERE state != 'Disconnected'",
            [calls::now_unix()],
        )
        .with_context(|| format!("cannot close the calls left live in {}", target.display()))
}

/// `openum backup DIR`: a consistent copy of the SQLite store under `data_dir` and its audio
/// files into `dir`, which must be new or empty. Safe while `openum serve` runs.
pub fn backup(data_dir: &Path, dir: &Path) -> anyhow::Result<BackupReport> {
    let source_path = data_dir.join(DB_FILE);
    // Read-write without create: reading a WAL database needs its shared-memory file, and a
    // missing database must be an error, not a new empty one.
    let source = open_existing(&source_path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    ensure_empty_dir(dir)?;
    let database = dir.join(DB_FILE);
    let mut copy = Connection::open(&database)
        .with_context(|| format!("cannot create {}", database.display()))?;
    copy_database(&source, &mut copy).with_context(|| {
        format!(
            "cannot back up {} to {}",
            source_path.display(),
            database.display()
        )
    })?;
    drop(source);
    let mut report = BackupReport {
        database: database.clone(),
        ..BackupReport::default()
    };
    copy_audio(&copy, data_dir, dir, &mut report)?;
    drop(copy);
    report.schema =
        Some(SqliteStore::schema_status_at(&database).with_context(|| {
            format!("cannot read the schema version of {}", database.display())
        })?);
    Ok(report)
}

/// `openum restore DIR`: replaces the SQLite store under `data_dir` (and its audio files) with
/// the backup in `dir`. Refuses while a running openum holds the data directory, and refuses to
/// replace an existing database or audio files unless `force`; refuses a backup whose schema is
/// newer than this binary knows.
pub fn restore(dir: &Path, data_dir: &Path, force: bool) -> anyhow::Result<BackupReport> {
    let backup_db = dir.join(DB_FILE);
    if !backup_db.is_file() {
        bail!(
            "{} is not an openum backup (it has no {DB_FILE})",
            dir.display()
        );
    }
    let schema = SqliteStore::schema_status_at(&backup_db)
        .with_context(|| format!("cannot read the schema version of {}", backup_db.display()))?;
    if schema.too_new() {
        return Err(SchemaTooNew {
            backend: "SQLite",
            stored: schema.stored,
            known: schema.known,
        })
        .with_context(|| format!("cannot restore {}", backup_db.display()));
    }
    let _lock = DataDirLock::exclusive(data_dir)?;
    let target = data_dir.join(DB_FILE);
    let audio_dir = data_dir.join("voicemail");
    let has_audio = std::fs::read_dir(&audio_dir).is_ok_and(|mut d| d.next().is_some());
    if (target.exists() || has_audio) && !force {
        bail!(
            "{} already holds openum data ({}); pass --force to replace it with the backup",
            data_dir.display(),
            if target.exists() {
                target.display().to_string()
            } else {
                audio_dir.display().to_string()
            }
        );
    }
    for stale in [
        target.clone(),
        data_dir.join(format!("{DB_FILE}-wal")),
        data_dir.join(format!("{DB_FILE}-shm")),
    ] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", stale.display()))
            }
            _ => {}
        }
    }
    if has_audio {
        std::fs::remove_dir_all(&audio_dir)
            .with_context(|| format!("cannot remove {}", audio_dir.display()))?;
    }
    let source = open_existing(&backup_db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut restored =
        Connection::open(&target).with_context(|| format!("cannot create {}", target.display()))?;
    copy_database(&source, &mut restored).with_context(|| {
        format!(
            "cannot restore {} to {}",
            backup_db.display(),
            target.display()
        )
    })?;
    // No call in a backup can still be live once restored: close them as a restarted node
    // would (Disconnected/Other), whichever node placed them.
    close_live_calls(&restored, &target)?;
    let mut report = BackupReport {
        database: target,
        schema: Some(schema),
        ..BackupReport::default()
    };
    copy_audio(&source, dir, data_dir, &mut report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, User};

    #[test]
    fn store_locations_show_the_path_or_host_never_the_password() {
        let pg = StoreLocation::Postgres {
            url: "postgres://openum:s3cret@db.example.com:5432/openum".into(),
            from: "store.postgres_url",
        };
        assert_eq!(
            pg.to_string(),
            "PostgreSQL store db.example.com:5432/openum (from store.postgres_url)"
        );
        let sqlite = StoreLocation::Sqlite(PathBuf::from("data/openum.db")).to_string();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            sqlite,
            format!("SQLite store {}", cwd.join("data/openum.db").display())
        );
    }

    #[test]
    fn servers_share_a_data_directory_and_a_restore_waits_for_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::in_use(dir.path()).unwrap();
        let second = DataDirLock::in_use(dir.path()).unwrap();
        let error = DataDirLock::exclusive(dir.path()).unwrap_err().to_string();
        assert!(error.contains("in use by a running openum"), "{error}");
        drop(first);
        assert!(
            DataDirLock::exclusive(dir.path()).is_err(),
            "one server still runs"
        );
        drop(second);
        let restoring = DataDirLock::exclusive(dir.path()).unwrap();
        let error = DataDirLock::in_use(dir.path()).unwrap_err().to_string();
        assert!(error.contains("being restored"), "{error}");
        drop(restoring);
        DataDirLock::in_use(dir.path()).unwrap();
    }

    #[tokio::test]
    async fn backup_and_restore_round_trip_refusing_existing_data_without_force() {
        let data = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&data.path().join(DB_FILE)).unwrap();
        store
            .upsert_user(User {
                name: "alice".into(),
                password_hash: "h".into(),
                play_on_phone: true,
            })
            .await
            .unwrap();
        let wav = data.path().join("m.wav");
        std::fs::write(
            &wav,
            testkit::pcm_wav(8000, 1, &testkit::tone(8000, 440.0, 0.2, 1000.0)),
        )
        .unwrap();
        let item = crate::voicemail::import(&store, data.path(), "alice", &wav, "", "")
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("b1");
        // Taken while the store is open, as under a running `serve`.
        let report = backup(data.path(), &dir).unwrap();
        assert_eq!((report.items, report.audio_files), (1, 1));
        assert!(report.missing_audio.is_empty());
        let again = backup(data.path(), &dir).unwrap_err().to_string();
        assert!(again.contains("not empty"), "{again}");

        let error = restore(&dir, data.path(), false).unwrap_err().to_string();
        assert!(error.contains("--force"), "{error}");
        let fresh = tempfile::tempdir().unwrap();
        restore(&dir, fresh.path(), false).unwrap();
        let restored = SqliteStore::open(&fresh.path().join(DB_FILE)).unwrap();
        assert_eq!(restored.voicemail_items("alice").await.unwrap().len(), 1);
        let pcm = crate::voicemail::LocalAudio::new(fresh.path().to_owned())
            .load(&item)
            .unwrap();
        assert_eq!(pcm.len(), 1600);
        drop(store);
        restore(&dir, data.path(), true).unwrap();
    }
}
