//! One store behaviour suite, run against both backends: embedded SQLite and a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

use std::time::Duration;

use calls::{now_unix, CallRecord, CallState, Cause};
use server::store::{conformance, PgOptions, PostgresStore, SqliteStore, Store};

#[tokio::test]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("openum.db")).unwrap();
    conformance::run(&store, "sqlite").await;
}

#[tokio::test]
async fn postgresql_passes_the_store_conformance_suite() {
    let pg = testkit::Postgres::start();
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    let tag = format!("pg{}", std::process::id());
    conformance::run(&store, &tag).await;
    // Connecting again (a second node) finds the schema in place.
    let again = PostgresStore::connect(&pg.url).await.unwrap();
    assert!(Store::user(&again, &format!("{tag}-alice"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn postgresql_carries_hang_up_requests_between_nodes_and_their_confirmation_back() {
    let pg = testkit::Postgres::start();
    let node1 = PostgresStore::connect(&pg.url).await.unwrap();
    let node2 = PostgresStore::connect(&pg.url).await.unwrap();
    let me = format!("node-1-{}", std::process::id());
    let mut requests = Store::hangup_requests(&node1, &me).unwrap();
    // A node answers only once it listens (its /readyz says so); the confirmation comes through
    // the asking node's LISTEN connection.
    let started = std::time::Instant::now();
    for node in [&node1, &node2] {
        while let Some(why) = node.unready_reason() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never listening: {why}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let asking = {
        let (node2, me) = (node2.clone(), me.clone());
        tokio::spawn(async move { node2.request_hangup(&me, "some-call").await })
    };
    let got = tokio::time::timeout(Duration::from_secs(5), requests.recv())
        .await
        .expect("request delivered")
        .unwrap();
    assert_eq!(
        (got.node.as_str(), got.call_id.as_str()),
        (me.as_str(), "some-call")
    );
    node1.hangup_done("some-call").await.unwrap();
    asking
        .await
        .unwrap()
        .expect("the confirmed hang-up succeeds");
}

/// A request made while its owner listens to nobody is kept in the table, answered with an error
/// (no confirmation), and delivered when the owner starts listening.
#[tokio::test]
async fn postgresql_keeps_an_unconfirmed_hang_up_request_and_delivers_it_later() {
    let pg = testkit::Postgres::start();
    let options = PgOptions {
        hangup_wait: Duration::from_secs(1),
        ..PgOptions::default()
    };
    let owner = PostgresStore::connect_with(&pg.url, &options)
        .await
        .unwrap();
    let asker = PostgresStore::connect_with(&pg.url, &options)
        .await
        .unwrap();
    let me = format!("late-{}", std::process::id());
    let error = asker.request_hangup(&me, "late-call").await.unwrap_err();
    assert!(error.to_string().contains("did not confirm"), "{error}");
    let mut requests = Store::hangup_requests(&owner, &me).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), requests.recv())
        .await
        .expect("the recorded request is delivered once the owner listens")
        .unwrap();
    assert_eq!(got.call_id, "late-call");
}

#[tokio::test]
async fn postgresql_per_user_cap_holds_across_nodes_under_concurrent_admission() {
    let pg = testkit::Postgres::start();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(PostgresStore::connect(&pg.url).await.unwrap());
    }
    let user = format!("cap-{}", std::process::id());
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = nodes[i % 3].clone();
        let record = CallRecord::dialling(
            format!("{user}-call-{i}"),
            &user,
            format!("node{}", i % 3),
            "1",
            "item",
            now_unix(),
        );
        tasks.push(tokio::spawn(async move {
            store.insert_call_capped(&record, 2).await.unwrap()
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2, "a per-user cap of 2 across three nodes");
}

#[tokio::test]
async fn postgresql_closes_a_dead_nodes_calls_exactly_once_and_never_lets_them_back() {
    let pg = testkit::Postgres::start();
    // A database of its own: "older than zero seconds" is every node of the database.
    let db = pg
        .own_database(&format!("openum_dead_{}", std::process::id()))
        .await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(PostgresStore::connect(&db).await.unwrap());
    }
    let tag = format!("dead-{}", std::process::id());
    let dead = format!("{tag}-node");
    nodes[0].heartbeat(&dead).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut record = CallRecord::dialling(
            format!("{tag}-{i}"),
            "alice",
            &dead,
            "1",
            "item",
            now_unix(),
        );
        record.state = CallState::Connected;
        nodes[0].insert_call(&record).await.unwrap();
        ids.push(record.id);
    }
    // Every heartbeat is older than zero seconds: three peers race to close the calls.
    let mut tasks = Vec::new();
    for (i, store) in nodes.iter().enumerate() {
        let store = store.clone();
        let me = format!("{tag}-peer{i}");
        tasks.push(tokio::spawn(async move {
            store
                .close_calls_of_dead_nodes(&me, Duration::ZERO)
                .await
                .unwrap()
        }));
    }
    let mut closed: Vec<String> = Vec::new();
    for t in tasks {
        closed.extend(
            t.await
                .unwrap()
                .into_iter()
                .filter(|(_, node)| *node == dead)
                .map(|(id, _)| id),
        );
    }
    closed.sort();
    assert_eq!(closed, ids, "each call closed once, by one peer");
    for id in &ids {
        let record = nodes[1].call(id).await.unwrap().unwrap();
        assert_eq!(
            (record.state, record.cause),
            (CallState::Disconnected, Cause::Other)
        );
    }
    // The owner comes back: it learns which calls were closed, and its writes change nothing.
    let closed = nodes[2].closed_by_peers(&dead, &ids).await.unwrap();
    assert_eq!(closed.len(), ids.len());
    let mut back = nodes[2].call(&ids[0]).await.unwrap().unwrap();
    back.state = CallState::Connected;
    back.cause = Cause::None;
    back.ended_at = None;
    nodes[2].update_call(&back).await.unwrap();
    assert_eq!(
        nodes[0].call(&ids[0]).await.unwrap().unwrap().state,
        CallState::Disconnected
    );
}

/// TLS with rustls against a server that refuses plain connections: with the test CA the store
/// connects (and works); without TLS, or trusting only the system's roots, it is refused.
#[tokio::test]
async fn postgresql_over_tls_verifies_the_server_against_the_configured_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = testkit::private_pg::TestCa::create(certs.path());
    let pg = testkit::private_pg::PrivatePostgres::start_with(Some(&ca));
    let verified = PgOptions {
        sslmode: server::config::PgSslMode::VerifyFull,
        ca_file: Some(ca.ca_pem.clone()),
        ..PgOptions::default()
    };
    let store = PostgresStore::connect_with(&pg.url, &verified)
        .await
        .unwrap();
    conformance::run(&store, "tls").await;
    let plain = PostgresStore::connect(&pg.url)
        .await
        .err()
        .expect("plain TCP refused");
    assert!(
        calls::error_chain(&plain).contains("no encryption"),
        "{}",
        calls::error_chain(&plain)
    );
    let system_roots = PgOptions {
        ca_file: None,
        ..verified
    };
    let untrusted = PostgresStore::connect_with(&pg.url, &system_roots)
        .await
        .err()
        .expect("a certificate no trusted root signed is refused");
    assert!(
        calls::error_chain(&untrusted)
            .to_lowercase()
            .contains("certificate"),
        "{}",
        calls::error_chain(&untrusted)
    );
}

/// Audio imported on a node before it lived in PostgreSQL (a file under the data directory) is
/// moved into the store once, whichever node starts first; PostgreSQL then serves it to all.
#[tokio::test]
async fn node_local_audio_moves_into_postgresql_once() {
    let pg = testkit::Postgres::start();
    let store = PostgresStore::connect(&pg.url).await.unwrap();
    let tag = format!("adopt{}", std::process::id());
    store
        .upsert_user(server::store::User {
            name: tag.clone(),
            password_hash: "x".into(),
            play_on_phone: true,
        })
        .await
        .unwrap();
    let id = server::voicemail::mint_item_id();
    let uuid = server::voicemail::parse_item_id(&id).unwrap();
    store
        .insert_voicemail_item(&server::store::VoicemailItem {
            id: id.clone(),
            owner: tag.clone(),
            has_audio: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.voicemail_audio(&id).await.unwrap(), None);
    let data = tempfile::tempdir().unwrap();
    let file = server::voicemail::audio_path(data.path(), uuid);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Larger than one chunk, so the chunks must come back in order.
    let raw: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &raw).unwrap();
    // A file of an item the store does not know is left alone.
    std::fs::write(
        server::voicemail::audio_path(data.path(), uuid::Uuid::new_v4()),
        b"\x01\x02",
    )
    .unwrap();
    assert_eq!(
        server::voicemail::adopt_local_audio(&store, data.path()).await,
        1
    );
    assert_eq!(store.voicemail_audio(&id).await.unwrap(), Some(raw));
    assert_eq!(
        server::voicemail::adopt_local_audio(&store, data.path()).await,
        0
    );
}

/// What a process that remembered verifications relies on: every credential change another
/// process makes moves the credential epoch within the backend's bound; call writes do not.
async fn credential_changes_move_the_epoch(
    watcher: &dyn Store,
    changer: &dyn Store,
    tag: &str,
    lag: Duration,
) {
    let user = format!("{tag}-epoch");
    changer
        .upsert_user(server::store::User {
            name: user.clone(),
            password_hash: "h".into(),
            play_on_phone: true,
        })
        .await
        .unwrap();
    changer
        .insert_token(&user, &format!("{tag}-eh"), "e")
        .await
        .unwrap();
    tokio::time::sleep(lag).await;
    let mut seen = watcher.credential_epoch().await.unwrap();
    assert!(seen.is_some(), "a connected store vouches for its epoch");
    // A call write is no credential change.
    let call = CallRecord::dialling(
        format!("{tag}-epoch-call"),
        &user,
        "n",
        "1",
        "i",
        now_unix(),
    );
    changer.insert_call(&call).await.unwrap();
    changer.update_call(&call).await.unwrap();
    tokio::time::sleep(lag).await;
    assert_eq!(watcher.credential_epoch().await.unwrap(), seen);
    for change in ["password", "disable", "revoke", "delete"] {
        match change {
            "password" => assert!(changer.set_password(&user, "h2").await.unwrap()),
            "disable" => assert!(changer.set_user_disabled(&user, true).await.unwrap()),
            "revoke" => assert_eq!(changer.revoke_tokens_labelled("e").await.unwrap().len(), 1),
            _ => assert!(changer.delete_user(&user).await.unwrap().is_some()),
        }
        tokio::time::sleep(lag).await;
        let now = watcher.credential_epoch().await.unwrap();
        assert_ne!(now, seen, "{change} did not move the epoch");
        seen = now;
    }
}

#[tokio::test]
async fn sqlite_credential_changes_by_another_process_move_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openum.db");
    let watcher = SqliteStore::open(&path).unwrap();
    let changer = SqliteStore::open(&path).unwrap();
    credential_changes_move_the_epoch(
        &watcher,
        &changer,
        "sqlite",
        server::store::SQLITE_CREDENTIAL_LAG,
    )
    .await;
}

#[tokio::test]
async fn postgresql_credential_changes_by_another_node_move_the_epoch() {
    let pg = testkit::Postgres::start();
    // A database of its own: other tests' user changes would move the epoch too.
    let db = pg
        .own_database(&format!("openum_epoch_{}", std::process::id()))
        .await;
    let watcher = PostgresStore::connect(&db).await.unwrap();
    let changer = PostgresStore::connect(&db).await.unwrap();
    let started = std::time::Instant::now();
    while let Some(why) = watcher.unready_reason() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never listening: {why}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    credential_changes_move_the_epoch(
        &watcher,
        &changer,
        &format!("pg{}", std::process::id()),
        server::store::POSTGRES_CREDENTIAL_LAG,
    )
    .await;
}
