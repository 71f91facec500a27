//! The `openum` command as a user runs it: users, tokens, voice-mail import (WAV, MP3, bad
//! files), config check, help.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::process::Command;

use support::{openum, openum_bin, tone_wav};

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    assert!(
        openum(
            &config,
            &["user", "add", "alice", "--password-stdin"],
            Some("pw\n")
        )
        .0
    );
    (dir, config)
}

fn stored_audio_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("data/voicemail"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn voicemail_import_prints_only_the_item_id_and_list_shows_it() {
    let (dir, config) = setup();
    let wav = dir.path().join("m.wav");
    tone_wav(&wav, 1.5);
    let (ok, out, err) = openum(
        &config,
        &[
            "voicemail",
            "import",
            "--user",
            "alice",
            "--from",
            "+1 425 555 0100",
            "--subject",
            "Lunch",
            wav.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be the ItemId alone: {out:?}");
    assert_eq!(lines[0].len(), 24);
    let (ok, list, _) = openum(&config, &["voicemail", "list", "--user", "alice"], None);
    assert!(ok);
    assert!(
        list.contains(lines[0]) && list.contains("1.5s") && list.contains("Lunch"),
        "{list}"
    );
    assert_eq!(stored_audio_files(dir.path()), 1);
}

#[test]
fn mp3_messages_are_decoded_at_import() {
    let (dir, config) = setup();
    let wav = dir.path().join("m.wav");
    tone_wav(&wav, 2.0);
    let mp3 = dir.path().join("m.mp3");
    let status = Command::new("lame")
        .args(["--quiet", "-b", "32"])
        .arg(&wav)
        .arg(&mp3)
        .status()
        .expect("lame is required to make the MP3 fixture (apt-get install lame)");
    assert!(status.success());
    let (ok, out, err) = openum(
        &config,
        &[
            "voicemail",
            "import",
            "--user",
            "alice",
            mp3.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{err}");
    let (_, list, _) = openum(&config, &["voicemail", "list", "--user", "alice"], None);
    assert!(list.starts_with(out.trim()), "{list}");
    // The encoder's delay and frame padding add a little; the duration stays within 0.3 s.
    let secs: f64 = list
        .split('\t')
        .nth(1)
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!((secs - 2.0).abs() < 0.3, "{secs}");
    // And the content is the 440 Hz tone that went in (zero crossings of the stored PCM).
    let stored = std::fs::read_dir(dir.path().join("data/voicemail"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pcm: Vec<i16> = std::fs::read(stored)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let middle = &pcm[pcm.len() / 4..pcm.len() * 3 / 4];
    let crossings = middle
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    let hz = crossings as f64 / 2.0 / (middle.len() as f64 / 8000.0);
    assert!((hz - 440.0).abs() < 10.0, "{hz} Hz");
}

#[test]
fn bad_audio_is_refused_clearly_and_nothing_is_stored() {
    let (dir, config) = setup();
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF....WAVEnot really").unwrap();
    let (ok, out, err) = openum(
        &config,
        &[
            "voicemail",
            "import",
            "--user",
            "alice",
            junk.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("junk.wav"), "{err}");
    let missing = dir.path().join("missing.wav");
    let (ok, _, err) = openum(
        &config,
        &[
            "voicemail",
            "import",
            "--user",
            "alice",
            missing.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok && err.contains("missing.wav"), "{err}");
    let wav = dir.path().join("m.wav");
    tone_wav(&wav, 0.5);
    let (ok, _, err) = openum(
        &config,
        &[
            "voicemail",
            "import",
            "--user",
            "nobody",
            wav.to_str().unwrap(),
        ],
        None,
    );
    assert!(!ok && err.contains("nobody"), "{err}");
    assert_eq!(stored_audio_files(dir.path()), 0);
    let (_, list, _) = openum(&config, &["voicemail", "list", "--user", "alice"], None);
    assert!(list.is_empty());
}

#[test]
fn token_create_prints_a_token_for_known_users_only() {
    let (_dir, config) = setup();
    let (ok, out, _) = openum(
        &config,
        &["token", "create", "alice", "--label", "ci"],
        None,
    );
    assert!(ok);
    assert!(out.trim().starts_with("oum_") && out.lines().count() == 1);
    let (ok, _, err) = openum(&config, &["token", "create", "mallory"], None);
    assert!(!ok && err.contains("mallory"), "{err}");
}

#[test]
fn config_mistakes_name_the_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap();
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(&bad)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("lisen") && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn help_lists_every_command() {
    let out = Command::new(openum_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "user", "token", "voicemail", "config"] {
        assert!(help.contains(word), "{help}");
    }
}
