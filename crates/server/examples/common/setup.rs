//! What `call_load` and `secure_call_load` set up alike: SIPp UAS far ends (stopped when
//! dropped) and hanging every call up at the end of a round (their store: `bench_store.rs`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use call_runtime::SipCallService;
use calls::CallService;

/// Child processes stopped with SIGTERM (which coreutils `timeout` passes on) when dropped.
pub(crate) struct Killed(pub(crate) Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // Already gone is fine: the benchmark is ending either way.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

/// SIPp running `scenario` from `tests/peers` as a UAS on 127.0.0.1:`port` (media from
/// `media`), up to 20000 calls at once; returns once its SIP port is bound (read in
/// `/proc/net/udp`), 10 s at most.
pub(crate) fn sipp(scenario: &str, port: u16, media: u16) -> Child {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    let child = Command::new("timeout")
        .args(["900", "sipp", "-sf"])
        .arg(peers.join(scenario))
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &media.to_string(), "-nostdin", "-l", "20000"])
        .args(["-key", "user", "x", "-key", "pass", "y"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (apt-get install sip-tester)");
    let local = format!("0100007F:{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .any(|l| l.contains(&local))
    {
        assert!(
            Instant::now() < deadline,
            "sipp did not bind UDP port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Hangs up `ids` and waits until `service` has no live call left.
pub(crate) async fn hang_up_all(service: &SipCallService, ids: &[String]) {
    for id in ids {
        service.hangup(id).await;
    }
    while service.live_calls() > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
