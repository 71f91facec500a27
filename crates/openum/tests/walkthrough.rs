//! The README's walkthrough, executed: its shell blocks run as written (with `cargo run …`
//! pointing at the built binary) in a fresh directory, against SIPp. If the README rots, this
//! fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn the_readme_walkthrough_works_as_written() {
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
    let dir = tempfile::tempdir().unwrap();
    support::tone_wav(&dir.path().join("message.wav"), 3.0);
    std::os::unix::fs::symlink(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests"),
        dir.path().join("tests"),
    )
    .unwrap();
    // Run as a user pastes it (no `set -e`: `sipp -bg` exits 99 by design), in its own
    // process group, so SIPp and `serve &` are stopped together at the end.
    let wrapped = format!("trap 'kill -TERM 0' EXIT\n{script}\n");
    let out = Command::new("timeout")
        .args(["120", "setsid", "bash", "-c", &wrapped])
        .current_dir(dir.path())
        .env("OPENUM", support::openum_bin())
        .env_remove("OPENUM_CONFIG")
        .env_remove("OPENUM_DATA_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    // `kill -TERM 0` ends the script itself too; success is judged by what it printed.
    assert!(stdout.contains("<PhoneCallId Id=\""), "{report}");
    assert!(stdout.contains("Alerted None 180 Ringing"), "{report}");
    assert!(
        stdout.contains("Disconnected None 487 Request Terminated"),
        "{report}"
    );
    let _ = Command::new("pkill")
        .args(["-f", "uas_multi.xml -i 127.0.0.1 -p 5070"])
        .status();
}
