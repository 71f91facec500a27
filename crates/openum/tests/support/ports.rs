//! Whether a peer has bound its ports yet, read from the kernel's socket tables
//! (`/proc/net/udp`, `/proc/net/tcp`) rather than by probing: a probe from a loopback port in
//! the ephemeral range can connect to itself and take the port away from the peer.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Whether a UDP socket is bound to 127.0.0.1:`port` or to any address on `port`.
pub fn udp_bound(port: u16) -> bool {
    in_table("/proc/net/udp", port, None)
}

/// Whether something listens on TCP 127.0.0.1:`port` (or any address on `port`).
pub fn tcp_listening(port: u16) -> bool {
    // State 0A is TCP_LISTEN.
    in_table("/proc/net/tcp", port, Some("0A"))
}

fn in_table(table: &str, port: u16, state: Option<&str>) -> bool {
    let table = std::fs::read_to_string(table).unwrap();
    let local = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1).is_some_and(|l| local.iter().any(|a| a == l))
            && state.is_none_or(|s| fields.get(3) == Some(&s))
    })
}

/// Polls `ready` every 50 ms until it holds; after `within`, or as soon as `gone` reports the
/// peer exited (its status), panics saying `what` did not get ready, with `output()` (the
/// peer's own words).
pub fn wait_ready(
    what: &str,
    within: Duration,
    mut ready: impl FnMut() -> bool,
    mut gone: impl FnMut() -> Option<std::process::ExitStatus>,
    output: impl Fn() -> String,
) {
    let deadline = Instant::now() + within;
    while !ready() {
        if let Some(status) = gone() {
            panic!("{what}: the process exited ({status}):\n{}", output());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not ready within {within:?}:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_ready`] for the peer `child`, whose output goes to the file `log`.
pub fn wait_child_ready(
    what: &str,
    within: Duration,
    ready: impl FnMut() -> bool,
    child: &mut Child,
    log: &Path,
) {
    wait_ready(
        what,
        within,
        ready,
        || child.try_wait().unwrap(),
        || std::fs::read_to_string(log).unwrap_or_default(),
    );
}
