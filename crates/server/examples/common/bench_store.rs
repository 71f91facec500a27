//! The store every call benchmark plays from: the user `bench` with one message, in SQLite.

use std::path::Path;
use std::sync::Arc;

use server::registry::Registry;
use server::store::{SqliteStore, Store, User};

/// A SQLite store in `dir` with the user `bench` and a 440 Hz message of `seconds`; the
/// store's registry and the message's ItemId.
pub(crate) async fn bench_store(dir: &Path, seconds: f32) -> (Arc<Registry>, String) {
    let sqlite = SqliteStore::open(&dir.join("openum.db")).expect("SQLite store");
    let store: Arc<dyn Store> = Arc::new(sqlite);
    store
        .upsert_user(User {
            name: "bench".into(),
            password_hash: "x".into(),
            play_on_phone: true,
        })
        .await
        .expect("bench user");
    let wav = dir.join("long.wav");
    let samples = testkit::tone(8000, 440.0, seconds, 8000.0);
    std::fs::write(&wav, testkit::pcm_wav(8000, 1, &samples)).expect("message file");
    let item = server::voicemail::import(store.as_ref(), dir, "bench", &wav, "", "")
        .await
        .expect("message imported");
    (Arc::new(Registry::new(store, "bench".into())), item)
}
