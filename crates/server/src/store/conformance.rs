//! The behaviour every [`Store`] backend must have, as one story. Run against SQLite always and
//! against PostgreSQL in CI (`tests/store_conformance.rs`). Panics on the first difference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite shipped for backends' test runs: a panic is a failure"
)]

use super::{Store, StoreError, User, VoicemailItem};
use calls::{CallRecord, CallState, Cause};

fn call(id: &str, owner: &str, node: &str) -> CallRecord {
    CallRecord::dialling(id, owner, node, "+14255550100", "AQ", 1_700_000_000)
}

/// Runs the whole story on an empty store. Names are prefixed with `tag` so a shared database
/// can host several runs.
pub async fn run(store: &dyn Store, tag: &str) {
    let alice = format!("{tag}-alice");
    let bob = format!("{tag}-bob");

    // Users: insert, read, replace the password, unknown user.
    store
        .upsert_user(User {
            name: alice.clone(),
            password_hash: "h1".into(),
            play_on_phone: true,
        })
        .await
        .unwrap();
    store
        .upsert_user(User {
            name: bob.clone(),
            password_hash: "hb".into(),
            play_on_phone: false,
        })
        .await
        .unwrap();
    store
        .upsert_user(User {
            name: alice.clone(),
            password_hash: "h2".into(),
            play_on_phone: true,
        })
        .await
        .unwrap();
    let a = store.user(&alice).await.unwrap().unwrap();
    assert_eq!((a.password_hash.as_str(), a.play_on_phone), ("h2", true));
    assert!(!store.user(&bob).await.unwrap().unwrap().play_on_phone);
    assert!(store
        .user(&format!("{tag}-nobody"))
        .await
        .unwrap()
        .is_none());

    // Tokens: by hash, unknown hash, token for an unknown user refused.
    let hash = format!("{tag}-token-hash");
    store.insert_token(&alice, &hash, "ci").await.unwrap();
    assert_eq!(
        store.token_user(&hash).await.unwrap().as_deref(),
        Some(alice.as_str())
    );
    assert!(store.token_user("unknown").await.unwrap().is_none());
    assert!(store
        .insert_token(&format!("{tag}-nobody"), &format!("{tag}-t2"), "x")
        .await
        .is_err());

    // Voice-mail items: insert, read, list newest first, per owner.
    for (n, created) in [(1, 10), (2, 30), (3, 20)] {
        store
            .insert_voicemail_item(&VoicemailItem {
                id: format!("{tag}-item-{n}"),
                owner: alice.clone(),
                has_audio: true,
                from: format!("caller {n}"),
                subject: "s".into(),
                duration_ms: 1500,
                created_at: created,
            })
            .await
            .unwrap();
    }
    let item = store
        .voicemail_item(&format!("{tag}-item-2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.owner.as_str(), item.duration_ms, item.from.as_str()),
        (alice.as_str(), 1500, "caller 2")
    );
    let listed: Vec<String> = store
        .voicemail_items(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, [2, 3, 1].map(|n| format!("{tag}-item-{n}")));
    assert!(store.voicemail_items(&bob).await.unwrap().is_empty());
    assert!(store.voicemail_item("nope").await.unwrap().is_none());

    // Calls: exact-string ids, conflicts, every state change recorded, orphans closed per node.
    let id = format!("{tag}-CallId");
    store.insert_call(&call(&id, &alice, "n1")).await.unwrap();
    assert!(store.call(&id.to_lowercase()).await.unwrap().is_none());
    assert!(matches!(
        store.insert_call(&call(&id, &alice, "n1")).await,
        Err(StoreError::Conflict(_))
    ));
    let mut record = store.call(&id).await.unwrap().unwrap();
    assert_eq!(record, call(&id, &alice, "n1"));
    for (state, cause, code, text) in [
        (CallState::Alerted, Cause::None, Some(180), Some("Ringing")),
        (CallState::Connected, Cause::None, Some(200), Some("OK")),
        (
            CallState::Disconnected,
            Cause::UserBusy,
            Some(486),
            Some("Busy Here"),
        ),
    ] {
        record.state = state;
        record.cause = cause;
        record.sip_code = code;
        record.sip_text = text.map(str::to_owned);
        record.ended_at = (state == CallState::Disconnected).then_some(1_700_000_100);
        store.update_call(&record).await.unwrap();
        assert_eq!(store.call(&id).await.unwrap().unwrap(), record);
    }
    let live_n1 = format!("{tag}-live-n1");
    let live_n2 = format!("{tag}-live-n2");
    store
        .insert_call(&call(&live_n1, &alice, &format!("{tag}-n1")))
        .await
        .unwrap();
    store
        .insert_call(&call(&live_n2, &alice, &format!("{tag}-n2")))
        .await
        .unwrap();
    assert_eq!(
        store
            .close_orphaned_calls(&format!("{tag}-n1"), 42)
            .await
            .unwrap(),
        1
    );
    let closed = store.call(&live_n1).await.unwrap().unwrap();
    assert_eq!(
        (closed.state, closed.cause, closed.ended_at),
        (CallState::Disconnected, Cause::Other, Some(42))
    );
    assert_eq!(
        store.call(&live_n2).await.unwrap().unwrap().state,
        CallState::Connecting
    );
    assert_eq!(
        store.call(&id).await.unwrap().unwrap(),
        record,
        "finished calls are untouched"
    );
}
