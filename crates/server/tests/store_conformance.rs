//! One store behaviour suite, run against both backends: embedded SQLite and a real PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

use server::store::{conformance, PostgresStore, SqliteStore};

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
    assert!(server::store::Store::user(&again, &format!("{tag}-alice"))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn postgresql_carries_hang_up_requests_between_nodes() {
    let pg = testkit::Postgres::start();
    let node1 = PostgresStore::connect(&pg.url).await.unwrap();
    let node2 = PostgresStore::connect(&pg.url).await.unwrap();
    let mut requests = server::store::Store::hangup_requests(&node1).unwrap();
    server::store::Store::request_hangup(&node2, "node-1", "some-call")
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), requests.recv())
        .await
        .expect("notification within 5 s")
        .unwrap();
    assert_eq!(
        (got.node.as_str(), got.call_id.as_str()),
        ("node-1", "some-call")
    );
}
