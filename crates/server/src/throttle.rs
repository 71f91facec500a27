//! Throttling of failed logins, per client address and per user name.
//!
//! Each key (a client address, a user name as given) counts its failed logins. A count is
//! forgotten `failure_window` after the key's last failure. When a key reaches `max_failures`,
//! it is locked out for `lockout`; each further lockout of the same key (before it is
//! forgotten) lasts twice as long as the one before, up to `max_lockout`. While a request's
//! address or user name is locked out, its credentials are not checked at all (no Argon2 run, no
//! request to the mailbox server): it is answered 401 like any refused login. A successful login
//! forgets both its address and its user name.
//!
//! Memory is bounded: at most `max_tracked` keys are kept. Keys whose failures were forgotten
//! are dropped first, then the ones that failed longest ago (never a key still locked out, unless
//! every tracked key is locked out).
//!
//! Time is an input ([`Instant`] passed in), so the rules are tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The throttling rules (`[auth]` in the configuration).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ThrottleSettings {
    /// Failures of one key before a lockout.
    pub max_failures: u32,
    /// A key's failures are forgotten this long after its last one.
    pub failure_window: Duration,
    /// The first lockout.
    pub lockout: Duration,
    /// The longest lockout.
    pub max_lockout: Duration,
    /// Keys tracked at most.
    pub max_tracked: usize,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            max_failures: 5,
            failure_window: Duration::from_secs(900),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            max_tracked: 100_000,
        }
    }
}

/// What a key is.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
enum Key {
    Address(IpAddr),
    User(String),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
    lockouts: u32,
}

/// Which key a lockout is on.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LockedBy {
    /// The client address.
    Address,
    /// The user name.
    User,
}

impl LockedBy {
    /// `address` or `user` (logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Address => "address",
            Self::User => "user",
        }
    }
}

/// A lockout in force.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Lockout {
    /// On which key.
    pub by: LockedBy,
    /// How long it still lasts.
    pub remaining: Duration,
}

/// The failure counts of one process.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl Throttle {
    /// A throttle with these rules.
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The lockout in force on this address or user name at `now`, if any.
    pub fn locked(
        &self,
        address: Option<IpAddr>,
        user: Option<&str>,
        now: Instant,
    ) -> Option<Lockout> {
        let entries = calls::sync::lock(&self.entries);
        let check = |key: Key, by: LockedBy| {
            let until = entries.get(&key)?.locked_until?;
            (until > now).then(|| Lockout {
                by,
                remaining: until - now,
            })
        };
        address
            .and_then(|a| check(Key::Address(a), LockedBy::Address))
            .or_else(|| user.and_then(|u| check(Key::User(u.to_owned()), LockedBy::User)))
    }

    /// Counts a failed login; returns the lockouts it started.
    pub fn failed(
        &self,
        address: Option<IpAddr>,
        user: Option<&str>,
        now: Instant,
    ) -> Vec<Lockout> {
        let mut entries = calls::sync::lock(&self.entries);
        let mut started = Vec::new();
        let keys = address
            .map(|a| (Key::Address(a), LockedBy::Address))
            .into_iter()
            .chain(user.map(|u| (Key::User(u.to_owned()), LockedBy::User)));
        for (key, by) in keys {
            if !entries.contains_key(&key) && entries.len() >= self.settings.max_tracked {
                self.evict(&mut entries, now);
            }
            let entry = entries.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: None,
                lockouts: 0,
            });
            if now.saturating_duration_since(entry.last_failure) > self.settings.failure_window {
                // Forgotten: this is a first failure again.
                *entry = Entry {
                    failures: 0,
                    last_failure: now,
                    locked_until: None,
                    lockouts: 0,
                };
            }
            entry.failures += 1;
            entry.last_failure = now;
            if entry.failures >= self.settings.max_failures {
                let factor = 1u32.checked_shl(entry.lockouts.min(31)).unwrap_or(u32::MAX);
                let lasts = self
                    .settings
                    .lockout
                    .saturating_mul(factor)
                    .min(self.settings.max_lockout);
                entry.locked_until = Some(now + lasts);
                entry.lockouts = entry.lockouts.saturating_add(1);
                entry.failures = 0;
                started.push(Lockout {
                    by,
                    remaining: lasts,
                });
            }
        }
        started
    }

    /// A successful login: its address and user name start afresh.
    pub fn succeeded(&self, address: Option<IpAddr>, user: &str) {
        let mut entries = calls::sync::lock(&self.entries);
        if let Some(a) = address {
            entries.remove(&Key::Address(a));
        }
        entries.remove(&Key::User(user.to_owned()));
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        calls::sync::lock(&self.entries).len()
    }

    /// Makes room for one key: drops the forgotten keys, then (if still full) the tenth that
    /// failed longest ago, preferring keys not locked out.
    fn evict(&self, entries: &mut HashMap<Key, Entry>, now: Instant) {
        let window = self.settings.failure_window;
        entries.retain(|_, e| {
            e.locked_until.is_some_and(|until| until > now)
                || now.saturating_duration_since(e.last_failure) <= window
        });
        if entries.len() < self.settings.max_tracked {
            return;
        }
        let mut order: Vec<(bool, Instant, Key)> = entries
            .iter()
            .map(|(k, e)| {
                (
                    e.locked_until.is_some_and(|until| until > now),
                    e.last_failure,
                    k.clone(),
                )
            })
            .collect();
        // Unlocked before locked, then oldest failure first.
        order.sort_unstable_by_key(|entry| (entry.0, entry.1));
        let drop = (entries.len() / 10).max(entries.len() + 1 - self.settings.max_tracked);
        for (_, _, key) in order.into_iter().take(drop) {
            entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            max_failures: 3,
            failure_window: Duration::from_secs(100),
            lockout: Duration::from_secs(10),
            max_lockout: Duration::from_secs(35),
            max_tracked: 1000,
        }
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));

    #[test]
    fn the_nth_failure_locks_the_address_and_the_user_out_for_a_growing_time() {
        let t = Throttle::new(settings());
        let t0 = Instant::now();
        assert!(t.failed(A, Some("bob"), t0).is_empty());
        assert!(t.failed(A, Some("bob"), t0).is_empty());
        assert_eq!(t.locked(A, Some("bob"), t0), None);
        let started = t.failed(A, Some("bob"), t0);
        assert_eq!(
            started,
            [
                Lockout {
                    by: LockedBy::Address,
                    remaining: Duration::from_secs(10)
                },
                Lockout {
                    by: LockedBy::User,
                    remaining: Duration::from_secs(10)
                }
            ]
        );
        // Locked: by address (any user), and by user (any address).
        assert_eq!(
            t.locked(A, Some("carol"), t0).unwrap().by,
            LockedBy::Address
        );
        assert_eq!(t.locked(B, Some("bob"), t0).unwrap().by, LockedBy::User);
        assert_eq!(t.locked(B, Some("carol"), t0), None);
        // Over after 10 s; the next lockout lasts 20 s, then 35 (the cap).
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(t.locked(A, None, t1), None);
        for _ in 0..2 {
            assert!(t.failed(A, None, t1).is_empty());
        }
        assert_eq!(t.failed(A, None, t1)[0].remaining, Duration::from_secs(20));
        let t2 = t1 + Duration::from_secs(20);
        for _ in 0..2 {
            t.failed(A, None, t2);
        }
        assert_eq!(t.failed(A, None, t2)[0].remaining, Duration::from_secs(35));
    }

    #[test]
    fn failures_are_forgotten_after_the_window_and_a_success_resets() {
        let t = Throttle::new(settings());
        let t0 = Instant::now();
        t.failed(A, Some("bob"), t0);
        t.failed(A, Some("bob"), t0);
        // 101 s later the count starts again.
        let later = t0 + Duration::from_secs(101);
        assert!(t.failed(A, Some("bob"), later).is_empty());
        assert!(t.failed(A, Some("bob"), later).is_empty());
        // A success forgets both keys: two more failures do not lock.
        t.succeeded(A, "bob");
        assert_eq!(t.tracked(), 0);
        assert!(t.failed(A, Some("bob"), later).is_empty());
        assert!(t.failed(A, Some("bob"), later).is_empty());
        assert_eq!(t.locked(A, Some("bob"), later), None);
    }

    #[test]
    fn memory_stays_bounded_and_locked_keys_are_kept_longest() {
        let t = Throttle::new(ThrottleSettings {
            max_tracked: 50,
            ..settings()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            t.failed(None, Some("victim"), t0);
        }
        for n in 0..1000u32 {
            let at = t0 + Duration::from_millis(u64::from(n));
            t.failed(Some(IpAddr::from(n.to_be_bytes())), None, at);
            assert!(t.tracked() <= 50, "{} tracked", t.tracked());
        }
        assert!(t
            .locked(None, Some("victim"), t0 + Duration::from_secs(1))
            .is_some());
    }
}
