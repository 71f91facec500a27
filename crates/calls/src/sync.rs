//! Lock acquisition, decided once for the whole system.
//!
//! A std lock is poisoned when a thread panicked while holding it. Every lock openum holds
//! guards plain maps and counters whose every update is a single statement (an insert, a
//! remove, an assignment), so a panic cannot leave them half-changed: the data is as valid after
//! a panic as before. openum therefore **recovers** from poisoning and keeps serving, instead of
//! skipping the work (which let every call through a poisoned rate limiter) or panicking in
//! turn. A lock whose data could be left inconsistent must not use these helpers.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering from poisoning (see the module docs).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `lock`, recovering from poisoning (see the module docs).
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering from poisoning (see the module docs).
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_yields_its_data() {
        let shared = Arc::new(Mutex::new(7));
        let poisoner = Arc::clone(&shared);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(shared.is_poisoned());
        *lock(&shared) += 1;
        assert_eq!(*lock(&shared), 8);

        let rw = Arc::new(RwLock::new(1));
        let poisoner = Arc::clone(&rw);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.write().unwrap();
            panic!("poison it");
        })
        .join();
        *write(&rw) += 1;
        assert_eq!(*read(&rw), 2);
    }
}
