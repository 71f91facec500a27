//! The retention task: what `openum serve` deletes on its own, once at start and then hourly.
//!
//! - **Call history.** Ended calls whose end is older than `[ews] history_retention_days`
//!   (default 90; 0 keeps them forever) are deleted, dialled numbers with them. Live calls are
//!   never touched.
//! - **Expired voice mail.** Imported items older than `[voicemail] retention_days` (default 0:
//!   kept until `openum voicemail delete`) lose their row and audio file — unless a live call
//!   plays them, in which case they go on the next run.
//! - **Orphaned audio.** Files under `<data_dir>/voicemail/` that no item row names (an item
//!   deleted elsewhere, a user deleted with their items, an interrupted import) are removed once
//!   they are an hour old: an import writes its file just before its row, so a younger file may
//!   belong to an import in progress. Rows whose audio file is missing are reported (logged),
//!   never deleted: with PostgreSQL, another node may hold the file.
//!
//! [`run_once`] takes the time as an argument, so tests move it instead of sleeping.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use calls::{error_chain, now_unix, UnixSeconds};

use crate::config::Config;
use crate::store::history::ItemDeletion;
use crate::store::{Store, StoreError};

const DAY_SECS: i64 = 24 * 3600;
/// How often the task runs after the first run at start.
pub const INTERVAL: Duration = Duration::from_secs(3600);
/// Audio files younger than this are never orphans (an import in progress).
pub const ORPHAN_GRACE_SECS: i64 = 3600;

/// What the task deletes.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RetentionPolicy {
    /// `ews.history_retention_days`; 0 keeps call history forever.
    pub history_days: u64,
    /// `voicemail.retention_days`; 0 keeps items forever.
    pub voicemail_days: u64,
    /// `server.data_dir`: the audio files live under `<data_dir>/voicemail/`.
    pub data_dir: PathBuf,
}

impl From<&Config> for RetentionPolicy {
    fn from(config: &Config) -> Self {
        Self {
            history_days: config.ews.history_retention_days,
            voicemail_days: config.voicemail.retention_days,
            data_dir: config.server.data_dir.clone(),
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct RetentionReport {
    /// Ended calls deleted.
    pub calls_purged: usize,
    /// Expired items deleted (row and audio).
    pub items_expired: Vec<String>,
    /// Expired items kept because a live call plays them.
    pub items_in_use: Vec<String>,
    /// Orphaned audio files removed.
    pub orphans_removed: Vec<PathBuf>,
    /// Items whose row says they have audio but whose file is missing here.
    pub items_missing_audio: Vec<String>,
    /// Files that could not be removed (each logged with its cause).
    pub removal_failures: usize,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetentionError {
    /// The store has no history operations (a test double).
    #[error("this store does not support history operations")]
    Unsupported,
    /// The store refused.
    #[error("{what}")]
    Store {
        /// Which step.
        what: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The audio directory could not be listed.
    #[error("cannot list the voice-mail audio directory {}", path.display())]
    ListAudio {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn days_before(now: UnixSeconds, days: u64) -> UnixSeconds {
    let days = i64::try_from(days).unwrap_or(i64::MAX);
    now.saturating_sub(days.saturating_mul(DAY_SECS))
}

/// One run of the task at time `now`.
pub async fn run_once(
    store: &dyn Store,
    policy: &RetentionPolicy,
    now: UnixSeconds,
) -> Result<RetentionReport, RetentionError> {
    let history = store.history().ok_or(RetentionError::Unsupported)?;
    let mut report = RetentionReport::default();
    if policy.history_days > 0 {
        report.calls_purged = history
            .purge_ended_calls(days_before(now, policy.history_days))
            .await
            .map_err(|source| RetentionError::Store {
                what: "cannot purge old call history",
                source,
            })?;
    }
    let listed = |source| RetentionError::Store {
        what: "cannot list voice-mail items",
        source,
    };
    if policy.voicemail_days > 0 {
        let cutoff = days_before(now, policy.voicemail_days);
        let expired = history.all_voicemail_items().await.map_err(listed)?;
        for item in expired.into_iter().filter(|i| i.created_at < cutoff) {
            match history
                .delete_voicemail_item(&item.id)
                .await
                .map_err(|source| RetentionError::Store {
                    what: "cannot delete an expired voice-mail item",
                    source,
                })? {
                ItemDeletion::Deleted(_) => {
                    if remove_audio(&policy.data_dir, &item.id).is_err() {
                        report.removal_failures += 1;
                    }
                    report.items_expired.push(item.id);
                }
                ItemDeletion::InUse(_) => report.items_in_use.push(item.id),
                // Deleted meanwhile (by an administrator, or another node's task).
                ItemDeletion::NotFound => {}
            }
        }
    }
    let items = history.all_voicemail_items().await.map_err(listed)?;
    let known: HashSet<uuid::Uuid> = items
        .iter()
        .filter_map(|i| crate::voicemail::parse_item_id(&i.id).ok())
        .collect();
    sweep_orphans(policy, now, &known, &mut report)?;
    for item in items.iter().filter(|i| i.has_audio) {
        let missing = crate::voicemail::parse_item_id(&item.id)
            .map(|uuid| !crate::voicemail::audio_path(&policy.data_dir, uuid).exists())
            .unwrap_or(true);
        if missing {
            report.items_missing_audio.push(item.id.clone());
        }
    }
    Ok(report)
}

/// Removes an item's audio file; a file already gone is fine. Failures are logged.
pub fn remove_audio(data_dir: &Path, item_id: &str) -> std::io::Result<()> {
    let Ok(uuid) = crate::voicemail::parse_item_id(item_id) else {
        // Not an openum ItemId: it never had a file under the data directory.
        return Ok(());
    };
    let path = crate::voicemail::audio_path(data_dir, uuid);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a voice-mail audio file");
            Err(e)
        }
        _ => Ok(()),
    }
}

/// An audio file's item, from its name (`<uuid>.pcm`, or `<uuid>.pcm.partial` left by an
/// interrupted import); `None` for files openum did not write.
fn file_item(name: &str) -> Option<uuid::Uuid> {
    let stem = name
        .strip_suffix(".pcm")
        .or_else(|| name.strip_suffix(".pcm.partial"))?;
    uuid::Uuid::try_parse(stem).ok()
}

fn sweep_orphans(
    policy: &RetentionPolicy,
    now: UnixSeconds,
    known: &HashSet<uuid::Uuid>,
    report: &mut RetentionReport,
) -> Result<(), RetentionError> {
    let dir = policy.data_dir.join("voicemail");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        // Nothing imported on this node yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(RetentionError::ListAudio { path: dir, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| RetentionError::ListAudio {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name();
        let Some(uuid) = name.to_str().and_then(file_item) else {
            continue;
        };
        let partial = name.to_str().is_some_and(|n| n.ends_with(".partial"));
        if known.contains(&uuid) && !partial {
            continue;
        }
        let path = entry.path();
        let modified = entry.metadata().and_then(|m| m.modified()).map(|t| {
            match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                // Modified before 1970: as old as it gets.
                Err(_) => 0,
            }
        });
        match modified {
            Ok(at) if now.saturating_sub(at) < ORPHAN_GRACE_SECS => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read an audio file's age; left alone");
                report.removal_failures += 1;
                continue;
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => report.orphans_removed.push(path),
            // Removed meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an orphaned audio file");
                report.removal_failures += 1;
            }
        }
    }
    Ok(())
}

fn log(report: &RetentionReport) {
    tracing::info!(
        calls_purged = report.calls_purged,
        items_expired = report.items_expired.len(),
        items_in_use = report.items_in_use.len(),
        orphans_removed = report.orphans_removed.len(),
        items_missing_audio = report.items_missing_audio.len(),
        removal_failures = report.removal_failures,
        "retention run done"
    );
    if !report.items_missing_audio.is_empty() {
        tracing::warn!(
            items = ?report.items_missing_audio.iter().take(10).collect::<Vec<_>>(),
            count = report.items_missing_audio.len(),
            "voice-mail items whose audio file is missing on this node (they cannot play here)"
        );
    }
}

/// Runs the task on `store` now and every [`INTERVAL`] until the runtime stops. A failed run
/// is logged with its cause and tried again at the next interval.
pub fn spawn(store: Arc<dyn Store>, policy: RetentionPolicy) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match run_once(store.as_ref(), &policy, now_unix()).await {
                Ok(report) => log(&report),
                Err(error) => {
                    tracing::error!(error = %error_chain(&error), "retention run failed");
                }
            }
        }
    })
}
