//! Call history, retention and the schema guard, on both backends: history queries and purges,
//! voice-mail deletion refused while a call plays the item, expiry and orphaned audio, masked
//! dialled numbers, and a binary refusing a schema newer than it knows. Time is an argument of
//! the retention run, never slept through.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use calls::{CallRecord, CallState, Cause};
use server::privacy::DialledNumbers;
use server::registry::Registry;
use server::retention::{run_once, RetentionPolicy, ORPHAN_GRACE_SECS};
use server::store::history::{CallFilter, ItemDeletion};
use server::store::{PostgresStore, SqliteStore, Store, User, VoicemailItem};

const DAY: i64 = 24 * 3600;
/// The retention runs' "now": 2026-11-01T00:00:00Z.
const NOW: i64 = 1_793_491_200;

fn ended(id: &str, owner: &str, created: i64, ended: i64) -> CallRecord {
    let mut c = CallRecord::dialling(id, owner, "n1", "+14255550100", "item", created);
    c.state = CallState::Disconnected;
    c.cause = Cause::None;
    c.sip_code = Some(200);
    c.sip_text = Some("OK".into());
    c.ended_at = Some(ended);
    c
}

async fn user(store: &dyn Store, name: &str) {
    store
        .upsert_user(User {
            name: name.into(),
            password_hash: "h".into(),
            play_on_phone: true,
        })
        .await
        .unwrap();
}

/// History queries, purges and item deletion on one backend; names are prefixed with `tag`.
async fn history_story(store: &dyn Store, tag: &str) {
    let h = store.history().expect("both backends offer history");
    let (alice, bob) = (format!("{tag}-alice"), format!("{tag}-bob"));
    user(store, &alice).await;
    user(store, &bob).await;
    let id = |n: &str| format!("{tag}-{n}");
    // Ended 91 and 89 days before NOW; one live call placed 200 days ago (a stuck call is
    // never purged: the start-up sweep closes it first).
    store
        .insert_call(&ended(
            &id("old"),
            &alice,
            NOW - 91 * DAY - 60,
            NOW - 91 * DAY,
        ))
        .await
        .unwrap();
    store
        .insert_call(&ended(
            &id("recent"),
            &bob,
            NOW - 89 * DAY - 60,
            NOW - 89 * DAY,
        ))
        .await
        .unwrap();
    let mut live = CallRecord::dialling(
        id("live"),
        &alice,
        "n1",
        "+14255550199",
        id("item"),
        NOW - 200 * DAY,
    );
    live.state = CallState::Connected;
    store.insert_call(&live).await.unwrap();

    let mine = |calls: Vec<CallRecord>| -> Vec<String> {
        calls
            .into_iter()
            .map(|c| c.id)
            .filter(|i| i.starts_with(tag))
            .collect()
    };
    let all = h.calls(&CallFilter::default()).await.unwrap();
    assert_eq!(
        mine(all),
        [id("live"), id("old"), id("recent")],
        "oldest first"
    );
    let alices = h
        .calls(&CallFilter {
            owner: Some(alice.clone()),
            since: None,
        })
        .await
        .unwrap();
    assert_eq!(mine(alices), [id("live"), id("old")]);
    let since = h
        .calls(&CallFilter {
            owner: None,
            since: Some(NOW - 90 * DAY),
        })
        .await
        .unwrap();
    assert_eq!(mine(since), [id("recent")]);

    assert_eq!(h.purge_ended_calls(NOW - 90 * DAY).await.unwrap(), 1);
    assert!(store.call(&id("old")).await.unwrap().is_none());
    assert!(store.call(&id("recent")).await.unwrap().is_some());
    assert!(store.call(&id("live")).await.unwrap().is_some());

    // Deleting an item a live call plays is refused, naming the call; afterwards it goes.
    let item = VoicemailItem {
        id: id("item"),
        owner: alice.clone(),
        has_audio: true,
        subject: "s".into(),
        created_at: NOW,
        ..VoicemailItem::default()
    };
    store.insert_voicemail_item(&item).await.unwrap();
    assert_eq!(
        h.delete_voicemail_item(&id("item")).await.unwrap(),
        ItemDeletion::InUse(vec![id("live")])
    );
    assert!(store.voicemail_item(&id("item")).await.unwrap().is_some());
    live.state = CallState::Disconnected;
    live.ended_at = Some(NOW);
    store.update_call(&live).await.unwrap();
    assert_eq!(
        h.delete_voicemail_item(&id("item")).await.unwrap(),
        ItemDeletion::Deleted(item)
    );
    assert!(store.voicemail_item(&id("item")).await.unwrap().is_none());
    assert_eq!(
        h.delete_voicemail_item(&id("item")).await.unwrap(),
        ItemDeletion::NotFound
    );
    let status = h.schema_status().await.unwrap();
    assert!(!status.pending() && !status.too_new(), "{status:?}");
}

#[tokio::test]
async fn sqlite_history_purges_ended_calls_and_guards_items_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("openum.db")).unwrap();
    history_story(&store, "sq").await;
}

#[tokio::test]
async fn postgresql_history_purges_ended_calls_and_guards_items_in_use() {
    let pg = testkit::Postgres::start();
    let url = pg
        .own_database(&format!("openum_hist_{}", std::process::id()))
        .await;
    let store = PostgresStore::connect(&url).await.unwrap();
    history_story(&store, "pg").await;
}

#[tokio::test]
async fn the_retention_run_purges_history_older_than_the_setting_and_zero_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("openum.db")).unwrap();
    user(&store, "alice").await;
    for (id, days) in [("a", 400), ("b", 31), ("c", 29)] {
        store
            .insert_call(&ended(id, "alice", NOW - days * DAY - 5, NOW - days * DAY))
            .await
            .unwrap();
    }
    let mut policy = RetentionPolicy {
        history_days: 0,
        voicemail_days: 0,
        data_dir: dir.path().to_owned(),
    };
    // 0: forever, even at NOW.
    assert_eq!(
        run_once(&store, &policy, NOW).await.unwrap().calls_purged,
        0
    );
    policy.history_days = 30;
    assert_eq!(
        run_once(&store, &policy, NOW).await.unwrap().calls_purged,
        2
    );
    assert!(store.call("c").await.unwrap().is_some());
    // A day later, "c" has aged past the limit too.
    assert_eq!(
        run_once(&store, &policy, NOW + 2 * DAY)
            .await
            .unwrap()
            .calls_purged,
        1
    );
    assert!(store.call("c").await.unwrap().is_none());
}

fn set_age(path: &Path, seconds_before_now: u64) {
    let at = SystemTime::now() - Duration::from_secs(seconds_before_now);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

async fn import(store: &SqliteStore, data: &Path, user: &str) -> String {
    let wav = data.join("in.wav");
    std::fs::write(
        &wav,
        testkit::pcm_wav(8000, 1, &testkit::tone(8000, 440.0, 0.1, 1000.0)),
    )
    .unwrap();
    server::voicemail::import(store, data, user, &wav, "", "")
        .await
        .unwrap()
}

fn audio_of(data: &Path, item: &str) -> std::path::PathBuf {
    server::voicemail::audio_path(data, server::voicemail::parse_item_id(item).unwrap())
}

#[tokio::test]
async fn orphaned_audio_is_removed_once_old_and_rows_without_audio_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open(&data.join("openum.db")).unwrap();
    user(&store, "alice").await;
    let kept = import(&store, data, "alice").await;
    let lost = import(&store, data, "alice").await;
    std::fs::remove_file(audio_of(data, &lost)).unwrap();
    let audio = data.join("voicemail");
    let old_orphan = audio.join(format!("{}.pcm", uuid::Uuid::new_v4().simple()));
    let young_orphan = audio.join(format!("{}.pcm", uuid::Uuid::new_v4().simple()));
    let old_partial = audio.join(format!("{}.pcm.partial", uuid::Uuid::new_v4().simple()));
    let foreign = audio.join("README.txt");
    for f in [&old_orphan, &young_orphan, &old_partial, &foreign] {
        std::fs::write(f, b"x").unwrap();
    }
    let grace = u64::try_from(ORPHAN_GRACE_SECS).unwrap();
    for f in [&old_orphan, &old_partial, &foreign, &audio_of(data, &kept)] {
        set_age(f, grace + 60);
    }
    set_age(&young_orphan, grace / 2);
    let policy = RetentionPolicy {
        history_days: 90,
        voicemail_days: 0,
        data_dir: data.to_owned(),
    };
    let report = run_once(&store, &policy, calls::now_unix()).await.unwrap();
    let mut removed = report.orphans_removed.clone();
    removed.sort();
    let mut expected = vec![old_orphan.clone(), old_partial.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(young_orphan.exists(), "an import may still be writing it");
    assert!(foreign.exists(), "not a file openum wrote");
    assert!(audio_of(data, &kept).exists());
    assert_eq!(report.items_missing_audio, std::slice::from_ref(&lost));
    assert!(
        store.voicemail_item(&lost).await.unwrap().is_some(),
        "reported, not deleted"
    );
    // An hour later the young orphan goes too.
    let later = run_once(&store, &policy, calls::now_unix() + ORPHAN_GRACE_SECS)
        .await
        .unwrap();
    assert_eq!(later.orphans_removed, [young_orphan]);
}

#[tokio::test]
async fn expired_voice_mail_is_deleted_with_its_audio_unless_a_live_call_plays_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = SqliteStore::open(&data.join("openum.db")).unwrap();
    user(&store, "alice").await;
    let playing = import(&store, data, "alice").await;
    let idle = import(&store, data, "alice").await;
    let mut call = CallRecord::dialling("c1", "alice", "n1", "5550100", &playing, NOW);
    call.state = CallState::Connected;
    store.insert_call(&call).await.unwrap();
    let imported = calls::now_unix();
    let mut policy = RetentionPolicy {
        history_days: 0,
        voicemail_days: 30,
        data_dir: data.to_owned(),
    };
    let report = run_once(&store, &policy, imported + 29 * DAY)
        .await
        .unwrap();
    assert!(report.items_expired.is_empty(), "{report:?}");
    let report = run_once(&store, &policy, imported + 31 * DAY)
        .await
        .unwrap();
    assert_eq!(report.items_expired, std::slice::from_ref(&idle));
    assert_eq!(report.items_in_use, std::slice::from_ref(&playing));
    assert!(store.voicemail_item(&idle).await.unwrap().is_none());
    assert!(!audio_of(data, &idle).exists());
    assert!(audio_of(data, &playing).exists());
    policy.voicemail_days = 0;
    let report = run_once(&store, &policy, imported + 400 * DAY)
        .await
        .unwrap();
    assert!(
        report.items_expired.is_empty(),
        "0 keeps voice mail forever"
    );
}

#[tokio::test]
async fn masked_numbers_are_what_the_store_keeps_while_the_call_dials_the_full_one() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let registry =
        Registry::new(Arc::clone(&store), "n1".into()).with_dialled_numbers(DialledNumbers::Masked);
    let record = CallRecord::dialling("m1", "alice", "n1", "+14255551234", "item", NOW);
    registry.admit(&record, 3, 10).await.unwrap().unwrap();
    assert_eq!(
        store.call("m1").await.unwrap().unwrap().dialled,
        "+*******1234"
    );
    assert_eq!(
        registry.get("m1").await.unwrap().unwrap().dialled,
        "+14255551234"
    );
    let full = Registry::new(Arc::clone(&store), "n1".into());
    let record = CallRecord::dialling("f1", "alice", "n1", "+14255551234", "item", NOW);
    full.admit(&record, 3, 10).await.unwrap().unwrap();
    assert_eq!(
        store.call("f1").await.unwrap().unwrap().dialled,
        "+14255551234"
    );
}

#[tokio::test]
async fn sqlite_refuses_a_schema_newer_than_this_binary_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openum.db");
    drop(SqliteStore::open(&path).unwrap());
    let known = SqliteStore::schema_status_at(&path).unwrap().known;
    let newer = known + 1;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
    }
    let error = SqliteStore::open(&path).err().expect("refused");
    let text = calls::error_chain(&error);
    assert!(
        text.contains(&format!("version {newer}")) && text.contains(&format!("version {known}")),
        "{text}"
    );
    assert!(text.contains("SQLite"), "{text}");
    let status = SqliteStore::schema_status_at(&path).unwrap();
    assert!(status.too_new() && !status.pending());
}

#[tokio::test]
async fn postgresql_refuses_a_schema_newer_than_this_binary_naming_both_versions() {
    let pg = testkit::Postgres::start();
    let url = pg
        .own_database(&format!("openum_schema_{}", std::process::id()))
        .await;
    drop(PostgresStore::connect(&url).await.unwrap());
    let status = PostgresStore::schema_status_at(&url).await.unwrap();
    assert_eq!(status.stored, status.known);
    let newer = status.known + 1;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "INSERT INTO openum_schema (version) VALUES ($1)",
            &[&i32::try_from(newer).unwrap()],
        )
        .await
        .unwrap();
    let error = PostgresStore::connect(&url).await.err().expect("refused");
    let text = calls::error_chain(&error);
    assert!(
        text.contains(&format!("version {newer}"))
            && text.contains(&format!("version {}", status.known))
            && text.contains("PostgreSQL"),
        "{text}"
    );
    assert!(PostgresStore::schema_status_at(&url)
        .await
        .unwrap()
        .too_new());
}

#[test]
fn retention_settings_out_of_range_are_refused_naming_the_key() {
    use server::config::Config;
    for (text, key) in [
        (
            "[ews]\nhistory_retention_days = 36501\n",
            "ews.history_retention_days",
        ),
        (
            "[voicemail]\nretention_days = 99999\n",
            "voicemail.retention_days",
        ),
        (
            "[ews]\ncall_retention_hours = 72\nhistory_retention_days = 2\n",
            "ews.history_retention_days",
        ),
        (
            "[privacy]\nstore_dialled_numbers = \"hashed\"\n",
            "store_dialled_numbers",
        ),
    ] {
        let error = Config::parse(text).unwrap_err().to_string();
        assert!(error.contains(key), "{text}: {error}");
    }
    let config = Config::parse(
        "[ews]\nhistory_retention_days = 0\n[privacy]\nstore_dialled_numbers = \"masked\"\n[voicemail]\nretention_days = 30\n",
    )
    .unwrap();
    assert_eq!(config.ews.history_retention_days, 0);
    assert_eq!(config.privacy.store_dialled_numbers, DialledNumbers::Masked);
    let policy = RetentionPolicy::from(&config);
    assert_eq!((policy.history_days, policy.voicemail_days), (0, 30));
}
