//! Waiting for something a test cannot be told about (a peer's state, a line in a log): asked
//! again every so often until it holds, with a bound after which the test fails saying what it
//! saw last.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `check` every `every` until it gives `Ok`; its value. Once `within` has passed, the
/// next `Err` fails the test with that `Err`'s text (what was seen last).
pub async fn until<T, F, R>(within: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> R,
    R: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(Instant::now() < deadline, "{seen}"),
        }
        tokio::time::sleep(every).await;
    }
}
