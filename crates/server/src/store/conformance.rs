//! The behaviour every [`Store`] backend must have, as one story. Run against SQLite always and
//! against PostgreSQL in CI (`tests/store_conformance.rs`). Panics on the first difference.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite shipped for backends' test runs: a panic is a failure"
)]

use super::{token_id, Store, StoreError, User, VoicemailItem};
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
    // An ended call never comes back to life: a live state written late (a write that timed
    // out and landed after the hang-up's) changes nothing; another ended state still does.
    let mut late = record.clone();
    late.state = CallState::Connected;
    late.cause = Cause::None;
    late.sip_code = Some(200);
    late.sip_text = Some("OK".into());
    late.ended_at = None;
    store.update_call(&late).await.unwrap();
    assert_eq!(store.call(&id).await.unwrap().unwrap(), record);
    let mut corrected = record.clone();
    corrected.cause = Cause::Other;
    store.update_call(&corrected).await.unwrap();
    assert_eq!(store.call(&id).await.unwrap().unwrap(), corrected);
    store.update_call(&record).await.unwrap();
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

    accounts(store, tag).await;
}

/// Credential generations, disabled users, password resets, token listing and revocation, user
/// deletion.
async fn accounts(store: &dyn Store, tag: &str) {
    let carol = format!("{tag}-carol");
    let dave = format!("{tag}-dave");
    for (name, play) in [(&carol, false), (&dave, true)] {
        store
            .upsert_user(User {
                name: name.clone(),
                password_hash: "c1".into(),
                play_on_phone: play,
            })
            .await
            .unwrap();
    }
    let state = |name: String| async move { store.credential_state(&name).await.unwrap() };
    let g0 = state(carol.clone()).await.unwrap();
    assert!(!g0.disabled);
    let cred = store.credential(&carol).await.unwrap().unwrap();
    assert_eq!(
        (
            cred.name.as_str(),
            cred.password_hash.as_str(),
            cred.generation
        ),
        (carol.as_str(), "c1", g0.generation)
    );
    assert!(store
        .credential(&format!("{tag}-nobody"))
        .await
        .unwrap()
        .is_none());

    // A password reset bumps the generation and keeps every other setting.
    assert!(store.set_password(&carol, "c2").await.unwrap());
    let g1 = state(carol.clone()).await.unwrap();
    assert!(g1.generation > g0.generation);
    let after = store.user(&carol).await.unwrap().unwrap();
    assert_eq!(
        (after.password_hash.as_str(), after.play_on_phone),
        ("c2", false)
    );
    assert!(!store
        .set_password(&format!("{tag}-nobody"), "x")
        .await
        .unwrap());
    // So does replacing a user with upsert_user.
    store
        .upsert_user(User {
            name: carol.clone(),
            password_hash: "c3".into(),
            play_on_phone: false,
        })
        .await
        .unwrap();
    let g2 = state(carol.clone()).await.unwrap();
    assert!(g2.generation > g1.generation);

    // Disable and enable: each bumps the generation.
    assert!(store.set_user_disabled(&carol, true).await.unwrap());
    let g3 = state(carol.clone()).await.unwrap();
    assert!(g3.disabled && g3.generation > g2.generation);
    assert!(store.credential(&carol).await.unwrap().unwrap().disabled);
    assert!(store.set_user_disabled(&carol, false).await.unwrap());
    let g4 = state(carol.clone()).await.unwrap();
    assert!(!g4.disabled && g4.generation > g3.generation);
    assert!(!store
        .set_user_disabled(&format!("{tag}-nobody"), true)
        .await
        .unwrap());

    // Tokens: credential with the user's state, listing without secrets, revocation by id and
    // by label, each bumping the owner's generation.
    let hashes: Vec<String> = (1..=3)
        .map(|n| format!("{n}{tag}-token-hash-of-carol-{n}"))
        .collect();
    store
        .insert_token(&carol, &hashes[0], "laptop")
        .await
        .unwrap();
    store.insert_token(&carol, &hashes[1], "ci").await.unwrap();
    store.insert_token(&dave, &hashes[2], "ci").await.unwrap();
    let tc = store.token_credential(&hashes[0]).await.unwrap().unwrap();
    assert_eq!(
        (tc.user.as_str(), tc.generation, tc.disabled),
        (carol.as_str(), g4.generation, false)
    );
    assert!(store.token_credential("unknown").await.unwrap().is_none());
    let listed = store.tokens(Some(&carol)).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|t| (t.id.clone(), t.label.as_str()))
            .collect::<Vec<_>>(),
        [
            (token_id(&hashes[0]), "laptop"),
            (token_id(&hashes[1]), "ci")
        ]
    );
    assert!(listed.iter().all(|t| t.user == carol && t.created_at > 0));
    let all = store.tokens(None).await.unwrap();
    assert!(all.iter().any(|t| t.user == dave), "{all:?}");
    let revoked = store
        .revoke_token(&token_id(&hashes[0]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (revoked.user.as_str(), revoked.label.as_str()),
        (carol.as_str(), "laptop")
    );
    assert!(store.token_credential(&hashes[0]).await.unwrap().is_none());
    let g5 = state(carol.clone()).await.unwrap();
    assert!(g5.generation > g4.generation);
    assert!(store
        .revoke_token(&token_id(&hashes[0]))
        .await
        .unwrap()
        .is_none());
    // An id naming two tokens revokes neither.
    let twin_a = format!("{tag}-twin-token-hash-a");
    let twin_b = format!("{tag}-twin-token-hash-b");
    assert_eq!(token_id(&twin_a), token_id(&twin_b));
    store.insert_token(&dave, &twin_a, "twin").await.unwrap();
    store.insert_token(&dave, &twin_b, "twin").await.unwrap();
    assert!(matches!(
        store.revoke_token(&token_id(&twin_a)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.token_credential(&twin_a).await.unwrap().is_some());
    let dave_before = state(dave.clone()).await.unwrap();
    let by_label = store.revoke_tokens_labelled("twin").await.unwrap();
    assert_eq!(by_label.len(), 2);
    assert!(state(dave.clone()).await.unwrap().generation > dave_before.generation);
    assert!(store.token_credential(&twin_b).await.unwrap().is_none());
    assert!(store
        .revoke_tokens_labelled("twin")
        .await
        .unwrap()
        .is_empty());

    // The user list shows flags and counts.
    let users = store.users().await.unwrap();
    let c = users.iter().find(|u| u.name == carol).unwrap();
    assert_eq!(
        (c.play_on_phone, c.disabled, c.tokens, c.voicemail_items),
        (false, false, 1, 0)
    );

    // Deleting a user removes their tokens and voice-mail items and reports them.
    store
        .insert_voicemail_item(&VoicemailItem {
            id: format!("{tag}-carol-item"),
            owner: carol.clone(),
            has_audio: true,
            created_at: 5,
            ..VoicemailItem::default()
        })
        .await
        .unwrap();
    let deleted = store.delete_user(&carol).await.unwrap().unwrap();
    assert_eq!(deleted.tokens, 1);
    assert_eq!(
        deleted
            .voicemail_items
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        [format!("{tag}-carol-item")]
    );
    assert!(store.credential_state(&carol).await.unwrap().is_none());
    assert!(store.token_credential(&hashes[1]).await.unwrap().is_none());
    assert!(store
        .voicemail_item(&format!("{tag}-carol-item"))
        .await
        .unwrap()
        .is_none());
    assert!(store.delete_user(&carol).await.unwrap().is_none());
    let dave_gone = store.delete_user(&dave).await.unwrap().unwrap();
    assert_eq!((dave_gone.tokens, dave_gone.voicemail_items.len()), (1, 0));
}
