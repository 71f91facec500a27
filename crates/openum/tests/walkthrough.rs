//! The README's walkthrough, executed: its shell blocks run as written (with `cargo run …`
//! pointing at the built binary) in a fresh directory, against SIPp, while a Quick-start server
//! runs on 8080. If the README rots, this fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `curl -sf http://127.0.0.1:8080/healthz` succeeds: some server answers on the Quick-start
/// port.
fn quick_start_port_answers() -> bool {
    Command::new("curl")
        .args(["-sf", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"])
        .status()
        .expect("curl is required by this test")
        .success()
}

/// The Quick start's server (`openum serve` on its embedded defaults: 127.0.0.1:8080, SQLite in
/// ./openum-data) in `dir`; `None` when another server holds 8080 already (then that one plays
/// the part).
fn start_quick_start_server(dir: &Path) -> Option<support::Processes> {
    let mut server = Command::new(support::openum_bin())
        .arg("serve")
        .current_dir(dir)
        .env_remove("OPENUM_CONFIG")
        .env_remove("OPENUM_DATA_DIR")
        .env_remove("OPENUM_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            // It could not bind 8080: something else serves there.
            assert!(
                quick_start_port_answers(),
                "the Quick-start server exited ({status}) and nothing answers on 8080"
            );
            return None;
        }
        if quick_start_port_answers() {
            return Some(support::Processes(vec![server]));
        }
        assert!(
            Instant::now() < deadline,
            "the Quick-start server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_readme_walkthrough_works_as_written_beside_a_quick_start_server() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("### Walkthrough")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Walkthrough section");
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "the walkthrough has two shell blocks");
    let script = blocks
        .join("\n")
        .replace("cargo run --release -q --", "\"$OPENUM\"")
        .replace("cargo run --release --", "\"$OPENUM\"");

    // The Quick start first, still running while the walkthrough runs.
    let quick = tempfile::tempdir().unwrap();
    let quick_server = start_quick_start_server(quick.path());

    // A fresh clone, as far as the walkthrough can tell: the repository's tests/ and nothing
    // else (no message.wav: the walkthrough makes its own).
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests"),
        dir.path().join("tests"),
    )
    .unwrap();
    // Run as a user pastes it (no `set -e`), in its own process group, so that whatever it
    // left running is stopped with it at the end.
    let wrapped = format!("trap 'kill -TERM 0 2>/dev/null' EXIT\n{script}\n");
    let out = Command::new("timeout")
        .args(["120", "setsid", "bash", "-c", &wrapped])
        .current_dir(dir.path())
        .env("OPENUM", support::openum_bin())
        .env_remove("OPENUM_CONFIG")
        .env_remove("OPENUM_DATA_DIR")
        .env_remove("OPENUM_URL")
        .env_remove("OPENUM_USER")
        .env_remove("OPENUM_PASSWORD")
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(dir.path().join("walkthrough/openum.log"))
        .unwrap_or_else(|e| format!("(no walkthrough/openum.log: {e})"));
    let report =
        format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- openum.log ---\n{log}");
    // `kill -TERM 0` ends the script itself too; success is judged by what it printed.
    assert!(stdout.contains("<PhoneCallId Id=\""), "{report}");
    assert!(stdout.contains("Alerted None 180 Ringing"), "{report}");
    assert!(
        stdout.contains("Disconnected None 487 Request Terminated"),
        "{report}"
    );
    assert!(
        stdout.contains("Disconnected UserBusy 486 Busy Here\nexit code 5"),
        "{report}"
    );
    // The walkthrough's own server did the work, on its own port, with its own data.
    assert!(
        log.contains("openum serving EWS at /EWS/Exchange.asmx listen=127.0.0.1:44080 "),
        "{report}"
    );
    assert!(
        dir.path().join("walkthrough/openum-data").is_dir(),
        "{report}"
    );
    assert!(!dir.path().join("openum-data").exists(), "{report}");
    // And the Quick-start server is still there, untouched.
    assert!(quick_start_port_answers(), "{report}");
    drop(quick_server);
}
