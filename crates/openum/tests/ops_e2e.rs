//! Operations end to end with the real `openum` binary: a backup taken while `openum serve` has
//! a live call (SIPp far end) restores to a working store — a second server on it lets the user
//! log in and play the item — `voicemail delete` refused while the item plays, call history
//! listed and exported, masked numbers, `migrate --check` exit codes, and a binary refusing a
//! schema newer than it knows.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::{openum, openum_bin, serve, Harness, Options, Processes};

const CALL: Duration = Duration::from_secs(20);

/// A free port in this engineer's range (43000-43999), for UDP and TCP alike.
fn free_port(offset: u16) -> u16 {
    let start = 43000 + (std::process::id() % 90) as u16 * 10 + offset;
    (start..44000)
        .find(|p| {
            std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
        })
        .expect("a free port in 43000-43999")
}

fn run(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the restored server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rtp_packets(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("openum_rtp_packets_sent_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"))
}

#[tokio::test]
async fn a_backup_taken_during_a_live_call_restores_to_a_store_that_plays_the_item() {
    let mut h = Harness::start(Options::default()).await;
    let data = h.dir.path().join("data");
    // 408…: SIPp rings until hung up, so the call is live throughout the backup.
    let live = h.play("4085551234").await;
    h.wait_for(&live, CALL, |i| i.phone_call_state == S::Alerted)
        .await;

    let (ok, _, err) = openum(
        &h.config,
        &["voicemail", "delete", "--user", "alice", &h.item],
        None,
    );
    assert!(!ok, "deleting an item a live call plays must be refused");
    assert!(
        err.contains("live call") && err.contains(&live),
        "the refusal names the call: {err}"
    );

    let backup = h.dir.path().join("backup");
    let (code, out, err) = run(&h.config, &["backup", backup.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(&format!(
            "using SQLite store {}",
            data.join("openum.db").display()
        )),
        "says which store it opened: {err}"
    );
    assert!(out.contains("1 voice-mail items, 1 audio files"), "{out}");
    assert_eq!(
        h.info(&live).await.phone_call_state,
        S::Alerted,
        "the call was live for the whole backup"
    );

    // Restoring over the running server's data directory is refused, even with --force.
    let (code, _, err) = run(&h.config, &["restore", backup.to_str().unwrap(), "--force"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in use by a running openum"), "{err}");

    // Restore into a new data directory and start a second server on it.
    let restored = h.dir.path().join("restored");
    let (http, sip) = (free_port(0), free_port(5));
    let config = h.dir.path().join("restored.toml");
    let original = std::fs::read_to_string(&h.config).unwrap();
    let mut section = String::new();
    let mut rewritten = String::new();
    for line in original.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
        }
        let line = match (section.as_str(), line.split(" = ").next()) {
            ("[server]", Some("listen")) => format!("listen = \"127.0.0.1:{http}\""),
            ("[server]", Some("data_dir")) => format!("data_dir = \"{}\"", restored.display()),
            ("[server]", Some("node_name")) => "node_name = \"restored\"".to_owned(),
            ("[sip]", Some("listen")) => format!("listen = \"127.0.0.1:{sip}\""),
            _ => line.to_owned(),
        };
        rewritten.push_str(&line);
        rewritten.push('\n');
    }
    std::fs::write(
        &config,
        format!("{rewritten}[privacy]\nstore_dialled_numbers = \"masked\"\n"),
    )
    .unwrap();
    let (code, out, err) = run(&config, &["restore", backup.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 audio files"), "{out}");
    let (code, _, err) = run(&config, &["restore", backup.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--force"),
        "existing data needs --force: {err}"
    );

    let _server = Processes(vec![serve::spawn(
        &config,
        &h.dir.path().join("restored.log"),
        None,
    )]);
    let first_base = std::mem::replace(&mut h.base, format!("http://127.0.0.1:{http}"));
    wait_healthy(&h.base).await;
    // Alice logs in to the restored server (her password hash came with the backup) and plays
    // the restored item to the end: 2 s of message and 0.5 s of silence, ~125 RTP packets.
    let played = h.play("2005551234").await;
    h.wait_for(&played, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    let done = h
        .wait_for(&played, CALL, |i| i.phone_call_state == S::Disconnected)
        .await;
    assert_eq!(done.connection_failure_cause, C::None, "{done:?}");
    let sent = rtp_packets(&h.get("/metrics").await);
    assert!((124..=126).contains(&sent), "{sent} packets");

    // The restored store's history: the masked number, JSON and CSV.
    let (code, out, err) = run(&config, &["calls", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let calls: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ours = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == played.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(ours["number"], "******1234", "stored masked: {ours}");
    assert_eq!(ours["state"], "Disconnected");
    assert_eq!(ours["cause"], "None");
    assert_eq!(ours["sip_code"], 200);
    assert_eq!(ours["owner"], "alice");
    let copied = calls
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == live.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        (&copied["state"], &copied["cause"]),
        (&"Disconnected".into(), &"Other".into()),
        "a call live in the backup is closed by the restore: {copied}"
    );

    // Back on the first server: end the live call, then read its history.
    h.base = first_base;
    h.disconnect(&live).await;
    h.wait_for(&live, CALL, |i| i.phone_call_state == S::Disconnected)
        .await;
    let (code, out, err) = run(&h.config, &["calls", "list", "--user", "alice"]);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with(&live))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("\talice\t")
            && line.contains("\t4085551234\t")
            && line.contains("\tDisconnected\tNone\t487 Request Terminated\t"),
        "full number, outcome and SIP status: {line}"
    );
    let (code, out, _) = run(&h.config, &["calls", "list", "--user", "bob"]);
    assert_eq!(
        (code, out.lines().count()),
        (Some(0), 1),
        "header only: {out}"
    );
    let (code, out, err) = run(
        &h.config,
        &["calls", "export", "--format", "csv", "--since", "1d"],
    );
    assert_eq!(code, Some(0), "{err}");
    let mut lines = out.split("\r\n");
    assert_eq!(
        lines.next(),
        Some("id,owner,node,started,ended,number,state,cause,sip_code,sip_text,duration_secs,item_id")
    );
    let row = lines
        .find(|l| l.starts_with(&live))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains(",4085551234,Disconnected,None,487,Request Terminated,"),
        "{row}"
    );
    let (code, out, _) = run(&h.config, &["calls", "export", "--since", "2999-01-01"]);
    assert_eq!(
        (code, out.split("\r\n").count()),
        (Some(0), 2),
        "header only: {out:?}"
    );
    let (code, out, err) = run(&h.config, &["calls", "export", "--format", "jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["id"].is_string(), "{line}");
    }
    assert!(out.contains(&live));

    // Another user cannot delete alice's item.
    let (code, _, err) = run(
        &h.config,
        &["voicemail", "delete", "--user", "bob", &h.item],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"bob\" has no voice-mail item"), "{err}");
    // Now the item plays nowhere on this node: deleting it removes row and audio.
    let audio: Vec<_> = std::fs::read_dir(data.join("voicemail")).unwrap().collect();
    assert_eq!(audio.len(), 1);
    let (ok, _, err) = openum(
        &h.config,
        &["voicemail", "delete", "--user", "alice", &h.item],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_dir(data.join("voicemail")).unwrap().count(),
        0
    );
    let (ok, out, _) = openum(&h.config, &["voicemail", "list", "--user", "alice"], None);
    assert!(ok && out.is_empty(), "{out}");
    let (code, _, err) = run(
        &h.config,
        &["voicemail", "delete", "--user", "alice", &h.item],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("has no voice-mail item"), "{err}");
}

#[test]
fn migrate_check_reports_current_pending_and_newer_schemas_and_serve_refuses_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{}\"\n",
            dir.path().join("data").display(),
            free_port(8)
        ),
    )
    .unwrap();
    // No store yet: every migration is pending.
    let (code, out, err) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(10), "{out}{err}");
    assert!(err.contains("using SQLite store"), "{err}");
    let (code, out, err) = run(&config, &["migrate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("schema migrated from version 0 to"), "{out}");
    let (code, out, _) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("up to date"), "{out}");

    // An older store: one migration behind (the first migration's schema).
    let db = dir.path().join("data/openum.db");
    let known = version(&db);
    set_version(&db, known - 1);
    let (code, out, _) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(10), "{out}");
    assert!(
        out.contains(&format!("schema version {}", known - 1))
            && out.contains(&format!("to {known}")),
        "{out}"
    );
    set_version(&db, known);

    // A newer openum upgraded the store: this binary refuses it, everywhere, naming both.
    set_version(&db, known + 1);
    let (code, _, err) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(11), "{err}");
    assert!(
        err.contains(&format!("version {}", known + 1))
            && err.contains(&format!("version {known}")),
        "{err}"
    );
    let (code, _, err) = run(&config, &["migrate"]);
    assert_eq!(code, Some(11), "{err}");
    for args in [
        &["serve"][..],
        &["calls", "list"],
        &["voicemail", "list", "--user", "x"],
    ] {
        let (code, _, err) = run(&config, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("schema is version {}", known + 1))
                && err.contains(&format!("(version {known})")),
            "{args:?}: {err}"
        );
    }
}

/// The schema version stored in `db` (SQLite `user_version`).
fn version(db: &Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Sets the stored schema version, as an older or newer openum would have left it.
fn set_version(db: &Path, version: i64) {
    rusqlite::Connection::open(db)
        .unwrap()
        .pragma_update(None, "user_version", version)
        .unwrap();
}

#[tokio::test]
async fn serve_purges_old_history_at_start_and_logs_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openum.toml");
    let port = free_port(3);
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n[ews]\nhistory_retention_days = 30\n",
            dir.path().join("data").display(),
        ),
    )
    .unwrap();
    let (code, _, err) = run(&config, &["migrate"]);
    assert_eq!(code, Some(0), "{err}");
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let db = rusqlite::Connection::open(dir.path().join("data/openum.db")).unwrap();
    for (id, ended_days_ago) in [("old", 31), ("new", 29)] {
        let ended = now - ended_days_ago * 86_400;
        db.execute(
            "INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled,
                                item_id, created_at, ended_at)
             VALUES (?1, 'alice', 'elsewhere', 'Disconnected', 'None', 200, 'OK', '5550100',
                     'item', ?2, ?3)",
            rusqlite::params![id, ended - 60, ended],
        )
        .unwrap();
    }
    drop(db);
    let log = dir.path().join("serve.log");
    let _server = Processes(vec![Command::new(openum_bin())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--json-logs"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("retention run done")
    {
        assert!(
            Instant::now() < deadline,
            "no retention run logged: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("\"calls_purged\":1"), "{logged}");
    let (code, out, err) = run(&config, &["calls", "export", "--format", "jsonl"]);
    assert_eq!(code, Some(0), "{err}");
    let ids: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, ["\"new\""]);
}

#[tokio::test]
async fn store_commands_find_postgresql_as_serve_does_and_check_its_schema() {
    let pg = testkit::Postgres::start();
    let url = pg
        .own_database(&format!("openum_ops_{}", std::process::id()))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[store]\npostgres_url = \"{url}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let host = url.rsplit_once('@').unwrap().1;
    let (code, out, err) = run(&config, &["migrate", "--check"]);
    assert_eq!(
        code,
        Some(10),
        "an empty database: every migration pending: {out}{err}"
    );
    assert!(
        err.contains(&format!(
            "using PostgreSQL store {host} (from store.postgres_url)"
        )),
        "{err}"
    );
    let (code, out, err) = run(&config, &["migrate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("schema migrated from version 0 to"), "{out}");
    let (code, _, err) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(0), "{err}");

    // What the service would write, read back through the command.
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.execute(
        "INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled, item_id,
                            created_at, ended_at)
         VALUES ('pg-call', 'alice', 'n1', 'Disconnected', 'UserBusy', 486, 'Busy, \"really\"',
                 '4865551234', 'item', 1793491200, 1793491203)",
        &[],
    )
    .await
    .unwrap();
    let (code, out, err) = run(&config, &["calls", "export"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "id,owner,node,started,ended,number,state,cause,sip_code,sip_text,duration_secs,item_id\r\n\
         pg-call,alice,n1,2026-11-01T00:00:00Z,2026-11-01T00:00:03Z,4865551234,Disconnected,UserBusy,486,\"Busy, \"\"really\"\"\",3,item\r\n"
    );
    let (code, out, _) = run(&config, &["calls", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("pg-call\talice\t2026-11-01T00:00:00Z\t4865551234\tDisconnected\tUserBusy\t486 Busy, \"really\"\t3s"),
        "{out}"
    );

    // Backups of PostgreSQL are pg_dump's job: refused, saying so.
    let (code, _, err) = run(&config, &["backup", dir.path().join("b").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("pg_dump"), "{err}");

    // A newer schema: refused by every command, naming both versions.
    let known: i32 = db
        .query_one("SELECT max(version) FROM openum_schema", &[])
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO openum_schema (version) VALUES ($1)",
        &[&(known + 1)],
    )
    .await
    .unwrap();
    let (code, _, err) = run(&config, &["migrate", "--check"]);
    assert_eq!(code, Some(11), "{err}");
    let (code, _, err) = run(&config, &["calls", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "PostgreSQL store's schema is version {}",
            known + 1
        )) && err.contains(&format!("(version {known})")),
        "{err}"
    );
}
