//! Unix time: records are stamped in whole seconds since the epoch.

/// Seconds since 1970-01-01T00:00:00Z.
pub type UnixSeconds = i64;

/// The current Unix time in seconds. A clock set before 1970 reads 0, and one past the year
/// 292 billion saturates; neither happens on a working machine, and both keep records ordered.
pub fn now_unix() -> UnixSeconds {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_after_this_code_was_written() {
        // 2026-01-01T00:00:00Z.
        assert!(now_unix() > 1_767_225_600);
    }
}
