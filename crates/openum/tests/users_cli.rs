//! `openum user list|disable|enable|delete` and `openum token list|revoke` as an administrator
//! runs them: output (text and `--json`), exit codes, and what deleting a user removes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::{Path, PathBuf};

use support::{openum, openum_bin, tone_wav};

fn setup() -> (tempfile::TempDir, PathBuf) {
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
    for (name, extra) in [("alice", None), ("bob", Some("--disable-play-on-phone"))] {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        args.extend(extra);
        let (ok, _, err) = openum(&config, &args, Some("pw\n"));
        assert!(ok, "{err}");
    }
    (dir, config)
}

/// `openum` with args; (exit code, stdout, stderr).
fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(openum_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OPENUM_POSTGRES_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token(config: &Path, user: &str, label: &str) -> String {
    let (code, out, err) = run(config, &["token", "create", user, "--label", label]);
    assert_eq!(code, 0, "{err}");
    out.trim().to_owned()
}

#[test]
fn user_list_shows_each_user_as_a_table_or_json() {
    let (_dir, config) = setup();
    token(&config, "alice", "laptop");
    let (code, out, err) = run(&config, &["user", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME"), "{out}");
    let alice: Vec<&str> = lines[1].split_whitespace().collect();
    let bob: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(alice, ["alice", "enabled", "yes", "1", "0"], "{out}");
    assert_eq!(bob, ["bob", "enabled", "no", "0", "0"], "{out}");

    let (code, out, _) = run(&config, &["user", "disable", "bob"]);
    assert_eq!(code, 0);
    assert!(out.is_empty(), "messages go to stderr: {out:?}");
    let (code, json, _) = run(&config, &["user", "list", "--json"]);
    assert_eq!(code, 0);
    let users: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        users,
        serde_json::json!([
            {"name": "alice", "play_on_phone": true, "disabled": false, "tokens": 1, "voicemail_items": 0},
            {"name": "bob", "play_on_phone": false, "disabled": true, "tokens": 0, "voicemail_items": 0},
        ])
    );
    let (code, _, _) = run(&config, &["user", "enable", "bob"]);
    assert_eq!(code, 0);
    let (_, out, _) = run(&config, &["user", "list"]);
    assert!(out.lines().nth(2).unwrap().contains("enabled"), "{out}");
}

#[test]
fn unknown_users_and_tokens_exit_2_naming_them() {
    let (_dir, config) = setup();
    for args in [
        &["user", "disable", "carol"][..],
        &["user", "enable", "carol"],
        &["user", "delete", "carol"],
        &["token", "list", "carol"],
    ] {
        let (code, _, err) = run(&config, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("no user named \"carol\""), "{args:?}: {err}");
    }
    let (code, _, err) = run(&config, &["token", "revoke", "0123456789abcdef"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no token with id \"0123456789abcdef\""),
        "{err}"
    );
    let (code, _, err) = run(&config, &["token", "revoke", "--label", "nothing"]);
    assert_eq!(code, 2);
    assert!(err.contains("no token labelled \"nothing\""), "{err}");
    // Neither an id nor a label, or both: a usage error.
    for args in [
        &["token", "revoke"][..],
        &["token", "revoke", "abc", "--label", "x"],
    ] {
        let (code, _, err) = run(&config, args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}

#[test]
fn token_list_shows_ids_labels_and_dates_never_secrets_and_revoke_takes_ids_or_labels() {
    let (_dir, config) = setup();
    let t1 = token(&config, "alice", "laptop");
    let t2 = token(&config, "alice", "ci");
    let t3 = token(&config, "bob", "ci");
    let (code, out, err) = run(&config, &["token", "list"]);
    assert_eq!(code, 0, "{err}");
    for secret in [&t1, &t2, &t3] {
        assert!(
            !out.contains(secret.as_str()),
            "a secret was listed:\n{out}"
        );
    }
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("ID"), "{out}");
    assert!(lines[1..].iter().all(|l| l.contains("GMT")), "{out}");
    let (code, json, _) = run(&config, &["token", "list", "alice", "--json"]);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| t["user"] == "alice"
        && t["id"].as_str().unwrap().len() == 16
        && t["created_at"].as_i64().unwrap() > 1_700_000_000));
    let laptop = listed.iter().find(|t| t["label"] == "laptop").unwrap();
    assert_eq!(
        laptop.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "id", "label", "user"]
    );

    // By id: just that one.
    let (code, _, err) = run(
        &config,
        &["token", "revoke", laptop["id"].as_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("revoked"), "{err}");
    let (_, json, _) = run(&config, &["token", "list", "--json"]);
    let left: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(left.as_array().unwrap().len(), 2, "{left}");
    // By label: every token with it, whoever owns it.
    let (code, _, err) = run(&config, &["token", "revoke", "--label", "ci"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("revoked").count(), 2, "{err}");
    let (_, json, _) = run(&config, &["token", "list", "--json"]);
    assert_eq!(json.trim(), "[]");
}

#[test]
fn user_delete_removes_tokens_and_voicemail_with_its_audio_and_says_so() {
    let (dir, config) = setup();
    let wav = dir.path().join("m.wav");
    tone_wav(&wav, 1.0);
    for user in ["alice", "bob"] {
        let (code, _, err) = run(
            &config,
            &["voicemail", "import", "--user", user, wav.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{err}");
    }
    token(&config, "alice", "laptop");
    let audio = || {
        std::fs::read_dir(dir.path().join("data/voicemail"))
            .unwrap()
            .count()
    };
    assert_eq!(audio(), 2);
    let (code, out, err) = run(&config, &["user", "delete", "alice"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("1 API token(s)")
            && err.contains("1 voice-mail item(s)")
            && err.contains("call history is kept"),
        "{err}"
    );
    assert_eq!(audio(), 1, "alice's audio file is removed, bob's kept");
    let (_, out, _) = run(&config, &["voicemail", "list", "--user", "alice"]);
    assert!(out.is_empty(), "{out}");
    let (_, out, _) = run(&config, &["voicemail", "list", "--user", "bob"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, json, _) = run(&config, &["token", "list", "--json"]);
    assert_eq!(json.trim(), "[]");
    let (_, json, _) = run(&config, &["user", "list", "--json"]);
    assert!(!json.contains("alice"), "{json}");
}
