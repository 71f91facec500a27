//! PostgreSQL's credential epoch ([`Store::credential_epoch`](crate::store::Store::credential_epoch)).
//!
//! Statement triggers on `users` and `tokens` (schema version 4) `NOTIFY openum_credentials`
//! with every update or deletion, whoever makes it (any node, the `openum user|token` CLI,
//! `psql` by hand); PostgreSQL delivers the notification when the change commits. The store's
//! `LISTEN` connection (the one that carries cross-node hang-ups) counts them: the count is the
//! epoch, so a node trusts what it verified until a notification says otherwise, with no query
//! per request.
//!
//! The bound: the `LISTEN` connection is pinged every [`PING`]. A notification committed before
//! a ping was sent reaches this node before the ping's answer does (PostgreSQL sends pending
//! notifications at the end of each transaction on that connection, and they are taken off the
//! connection in order), so each answered ping confirms that every change committed before it
//! was sent has been counted. The epoch is vouched for only within
//! [`POSTGRES_CREDENTIAL_LAG`] of the last confirmed ping; past that (a connection gone silent,
//! or down and being re-established) the store answers `None` and every request checks the
//! user's state in the database again, as it would with no epoch at all. After a reconnect the
//! epoch moves on once, since notifications sent while it was away are lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a credential change committed by another node or process goes unnoticed by a
/// node that remembered a verification. Normally a change counts as soon as its notification
/// arrives (the time of one network trip); this is the bound when the `LISTEN` connection goes
/// silent (a ping is sent every 250 ms, and a node that has had no answer for this long checks
/// every request against the database).
pub const POSTGRES_CREDENTIAL_LAG: Duration = Duration::from_secs(1);

/// How often the `LISTEN` connection is pinged.
pub(super) const PING: Duration = Duration::from_millis(250);

/// The notification channel.
pub(super) const CHANNEL: &str = "openum_credentials";

/// The migration that creates the triggers (appended to the PostgreSQL migrations).
pub(super) const MIGRATION: &str = r#"
CREATE OR REPLACE FUNCTION openum_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('openum_credentials', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS users_credentials_changed ON users;
CREATE TRIGGER users_credentials_changed AFTER UPDATE OR DELETE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION openum_credentials_changed();
DROP TRIGGER IF EXISTS tokens_credentials_changed ON tokens;
CREATE TRIGGER tokens_credentials_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION openum_credentials_changed();
"#;

/// The notifications counted, and since when the count is vouched for.
pub(super) struct CredentialWatch {
    base: Instant,
    epoch: AtomicU64,
    /// When the last confirmed ping was sent, as nanoseconds since `base` plus one; 0: never,
    /// or the connection was lost since.
    confirmed: AtomicU64,
}

impl CredentialWatch {
    pub(super) fn new() -> Self {
        Self {
            base: Instant::now(),
            epoch: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
        }
    }

    /// Now, as this watch counts time.
    pub(super) fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// A credential may have changed (a notification, a change made here, a reconnect).
    pub(super) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Every change committed before `sent` has been counted.
    pub(super) fn confirmed(&self, sent: u64) {
        self.confirmed
            .fetch_max(sent.saturating_add(1), Ordering::AcqRel);
    }

    /// The `LISTEN` connection is gone: nothing is vouched for until it is back.
    pub(super) fn lost(&self) {
        self.confirmed.store(0, Ordering::Release);
    }

    /// The epoch, if it is vouched for now.
    pub(super) fn current(&self) -> Option<u64> {
        self.vouched_at(self.now())
    }

    /// The epoch, if it is vouched for at `now`.
    fn vouched_at(&self, now: u64) -> Option<u64> {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        if confirmed == 0 {
            return None;
        }
        let lag = u64::try_from(POSTGRES_CREDENTIAL_LAG.as_nanos()).unwrap_or(u64::MAX);
        if now.saturating_sub(confirmed - 1) > lag {
            return None;
        }
        Some(self.epoch.load(Ordering::Acquire))
    }

    /// Bumps the epoch when dropped: put at the start of a method that changes credentials, so
    /// the change counts on this node at once, whatever the method's outcome.
    pub(super) fn bump_on_drop(&self) -> BumpOnDrop<'_> {
        BumpOnDrop(self)
    }
}

/// See [`CredentialWatch::bump_on_drop`].
pub(super) struct BumpOnDrop<'a>(&'a CredentialWatch);

impl Drop for BumpOnDrop<'_> {
    fn drop(&mut self) {
        self.0.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_vouched_for_only_after_a_confirmation_and_moves_on_each_bump() {
        let watch = CredentialWatch::new();
        assert_eq!(watch.current(), None, "never confirmed");
        watch.confirmed(watch.now());
        let first = watch.current().unwrap();
        drop(watch.bump_on_drop());
        assert_ne!(watch.current().unwrap(), first);
        watch.lost();
        assert_eq!(watch.current(), None, "connection lost");
        // A confirmation older than the bound vouches for nothing.
        watch.confirmed(0);
        let lag = u64::try_from(POSTGRES_CREDENTIAL_LAG.as_nanos()).unwrap();
        assert!(watch.vouched_at(lag).is_some());
        assert_eq!(watch.vouched_at(lag + 1), None, "confirmation too old");
    }
}
