//! Voice-mail item identifiers.
//!
//! An openum ItemId is standard base64 (with padding) of a version byte `0x01` followed by the
//! item's 16-byte UUID: 24 characters, XML-safe, opaque to clients. Decoding accepts non-zero
//! trailing bits (clients may hand back ids in a non-canonical spelling) and anything that is not
//! this shape is *malformed* rather than *not found* (decisions §5).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const VERSION: u8 = 1;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an ItemId was refused before any lookup.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ItemIdError {
    /// `Id=""` → `ErrorInvalidIdEmpty`.
    Empty,
    /// Not an openum ItemId → `ErrorInvalidIdMalformed`.
    Malformed,
}

/// Mints a new ItemId.
pub fn mint_item_id() -> String {
    mint().0
}

/// A new ItemId and the UUID it carries.
fn mint() -> (String, uuid::Uuid) {
    let uuid = uuid::Uuid::new_v4();
    (item_id_for(uuid), uuid)
}

/// The ItemId that carries `uuid`.
fn item_id_for(uuid: uuid::Uuid) -> String {
    let mut raw = Vec::with_capacity(17);
    raw.push(VERSION);
    raw.extend_from_slice(uuid.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Checks that `id` is an openum ItemId; returns the item's UUID.
pub fn parse_item_id(id: &str) -> Result<uuid::Uuid, ItemIdError> {
    if id.trim().is_empty() {
        return Err(ItemIdError::Empty);
    }
    let raw = LENIENT.decode(id).map_err(|_| ItemIdError::Malformed)?;
    match raw.split_first() {
        Some((&VERSION, rest)) if rest.len() == 16 => {
            uuid::Uuid::from_slice(rest).map_err(|_| ItemIdError::Malformed)
        }
        _ => Err(ItemIdError::Malformed),
    }
}

/// Where an item's decoded audio lives: raw 8 kHz mono s16le next to the database, one file per
/// item (`<data_dir>/voicemail/<uuid>.pcm`). Decoding happens once, at import.
pub fn audio_path(data_dir: &Path, item: uuid::Uuid) -> PathBuf {
    data_dir
        .join("voicemail")
        .join(format!("{}.pcm", item.simple()))
}

/// Why an import failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The audio cannot be decoded.
    #[error("{path}: {source}")]
    Audio {
        /// The file.
        path: PathBuf,
        /// Why.
        source: audio::AudioError,
    },
    /// The decoder did not finish (it panicked or was cancelled).
    #[error("{path}: the audio decoder failed: {source}")]
    DecoderFailed {
        /// The file.
        path: PathBuf,
        /// What became of the decoding task.
        source: tokio::task::JoinError,
    },
    /// No such user.
    #[error("no user named {user:?} (add it with `openum user add`)")]
    NoUser {
        /// The user name asked for.
        user: String,
    },
    /// The store could not be asked whether the user exists.
    #[error("cannot look up user {user:?}: {source}")]
    UserLookup {
        /// The user name asked for.
        user: String,
        /// The store's error.
        source: crate::store::StoreError,
    },
    /// The directory for the decoded audio cannot be created.
    #[error("cannot store the item: cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The decoded audio cannot be written.
    #[error("cannot store the item: cannot write {path}: {source}")]
    WriteAudio {
        /// The audio file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The item's record cannot be stored (the audio file was removed again).
    #[error("cannot store the item: {0}")]
    Store(#[source] crate::store::StoreError),
}

/// Decodes `file`, stores its audio and a record owned by `user`; returns the new ItemId.
/// Either both the audio file and the record exist afterwards, or neither does.
pub async fn import(
    store: &dyn crate::store::Store,
    data_dir: &Path,
    user: &str,
    file: &Path,
    from: &str,
    subject: &str,
) -> Result<String, ImportError> {
    let known = store
        .user(user)
        .await
        .map_err(|source| ImportError::UserLookup {
            user: user.to_owned(),
            source,
        })?;
    if known.is_none() {
        return Err(ImportError::NoUser {
            user: user.to_owned(),
        });
    }
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        path: file.to_owned(),
        source,
    })?;
    let extension = file.extension().and_then(|e| e.to_str()).map(str::to_owned);
    let samples =
        tokio::task::spawn_blocking(move || audio::decode_to_8k_mono(&bytes, extension.as_deref()))
            .await
            .map_err(|source| ImportError::DecoderFailed {
                path: file.to_owned(),
                source,
            })?
            .map_err(|source| ImportError::Audio {
                path: file.to_owned(),
                source,
            })?;
    let (id, uuid) = mint();
    let raw: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let item = crate::store::VoicemailItem {
        id: id.clone(),
        owner: user.to_owned(),
        has_audio: true,
        from: from.to_owned(),
        subject: subject.to_owned(),
        duration_ms: i64::try_from(samples.len() / 8).unwrap_or(i64::MAX),
        created_at: calls::now_unix(),
    };
    // A store every node reads (PostgreSQL) keeps the audio with the record: no file here.
    if store.shares_audio() {
        store
            .insert_voicemail_item_with_audio(&item, &raw)
            .await
            .map_err(ImportError::Store)?;
        return Ok(id);
    }
    let path = audio_path(data_dir, uuid);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir).map_err(|source| ImportError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    write_audio(&path, &raw)?;
    if let Err(source) = store.insert_voicemail_item(&item).await {
        // Best-effort clean-up; the insert's error is what the caller needs to see.
        let _ = std::fs::remove_file(&path);
        return Err(ImportError::Store(source));
    }
    Ok(id)
}

/// Writes `raw` to `path` through a `.partial` file, so that `path` is complete or absent.
fn write_audio(path: &Path, raw: &[u8]) -> Result<(), ImportError> {
    let partial = path.with_extension("pcm.partial");
    std::fs::write(&partial, raw)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|source| {
            // Best-effort clean-up; the write's error is what the caller needs to see.
            let _ = std::fs::remove_file(&partial);
            ImportError::WriteAudio {
                path: path.to_owned(),
                source,
            }
        })
}

/// The voice-mail items openum imported: with SQLite their decoded audio (8 kHz mono PCM) lives
/// in files under the data directory; with a store that shares audio (PostgreSQL) it lives in
/// the store, and each node keeps a bounded cache of it under `<data_dir>/voicemail-cache/`.
#[derive(Clone)]
pub struct LocalAudio {
    data_dir: PathBuf,
    shared: Option<SharedAudio>,
}

/// Audio read from the store, cached on disk up to a size.
#[derive(Clone)]
struct SharedAudio {
    store: Arc<dyn crate::store::Store>,
    cache_dir: PathBuf,
    cache_bytes: u64,
}

impl LocalAudio {
    /// The items under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            shared: None,
        }
    }

    /// The items of `store`, which shares audio between nodes when
    /// [`crate::store::Store::shares_audio`]; such audio is cached under `data_dir` up to
    /// `cache_bytes`.
    pub fn with_store(
        data_dir: PathBuf,
        store: Arc<dyn crate::store::Store>,
        cache_bytes: u64,
    ) -> Self {
        let shared = store.shares_audio().then(|| SharedAudio {
            store,
            cache_dir: data_dir.join("voicemail-cache"),
            cache_bytes,
        });
        Self { data_dir, shared }
    }

    /// Reads an item's decoded audio.
    pub fn load(&self, item_id: &str) -> Result<Arc<[i16]>, calls::AudioError> {
        let uuid = parse_item_id(item_id)
            .map_err(|_| calls::AudioError::MalformedId(item_id.to_owned()))?;
        let path = audio_path(&self.data_dir, uuid);
        let raw = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => calls::AudioError::NotFound,
            _ => calls::AudioError::Read(Box::new(AudioFileError { path, source: e })),
        })?;
        Ok(decode_raw(&raw))
    }
}

fn decode_raw(raw: &[u8]) -> Arc<[i16]> {
    raw.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

impl SharedAudio {
    fn path(&self, uuid: uuid::Uuid) -> PathBuf {
        self.cache_dir.join(format!("{}.pcm", uuid.simple()))
    }

    /// The cached audio, if any (marked as just used).
    async fn cached(&self, uuid: uuid::Uuid) -> Option<Vec<u8>> {
        let path = self.path(uuid);
        let read = tokio::task::spawn_blocking(move || {
            let raw = std::fs::read(&path)?;
            // Least recently *used* is evicted first: a read counts as a use.
            std::fs::File::options()
                .write(true)
                .open(&path)?
                .set_modified(std::time::SystemTime::now())?;
            Ok::<_, std::io::Error>(raw)
        })
        .await;
        match read {
            Ok(Ok(raw)) => Some(raw),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => None,
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the voice-mail audio cache; reading the store");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "the voice-mail audio cache read did not finish; reading the store");
                None
            }
        }
    }

    /// Caches `raw`, then evicts the least recently used files beyond the bound. A cache that
    /// cannot be written only costs a read of the store next time: logged, not an error.
    async fn keep(&self, uuid: uuid::Uuid, raw: Vec<u8>) {
        let (path, dir, bound) = (self.path(uuid), self.cache_dir.clone(), self.cache_bytes);
        let done = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let partial = path.with_extension(format!("partial{}", std::process::id()));
            std::fs::write(&partial, &raw)?;
            std::fs::rename(&partial, &path)?;
            evict(&dir, bound)
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot update the voice-mail audio cache");
            }
            Err(error) => {
                tracing::warn!(%error, "the voice-mail audio cache update did not finish");
            }
        }
    }
}

/// Removes the least recently used `.pcm` files of `dir` until the rest fit in `bound` bytes.
fn evict(dir: &Path, bound: u64) -> std::io::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() && entry.path().extension().is_some_and(|e| e == "pcm") {
            files.push((meta.modified()?, meta.len(), entry.path()));
        }
    }
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= bound {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => total -= len,
            // Another task evicted it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => total -= len,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves the audio of items imported on this node before their audio lived in the store (files
/// under `<data_dir>/voicemail/`) into a store that shares audio; items whose audio the store
/// already has are left alone. Returns how many were moved; a file that cannot be moved is
/// logged and keeps playing from this node.
pub async fn adopt_local_audio(store: &dyn crate::store::Store, data_dir: &Path) -> usize {
    if !store.shares_audio() {
        return 0;
    }
    let dir = data_dir.join("voicemail");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "cannot list node-local voice-mail audio to move it into the store");
            return 0;
        }
    };
    let mut moved = 0;
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(error) => {
                tracing::error!(dir = %dir.display(), %error, "cannot list node-local voice-mail audio");
                continue;
            }
        };
        let Some(uuid) = path
            .extension()
            .filter(|e| *e == "pcm")
            .and_then(|_| path.file_stem())
            .and_then(|stem| stem.to_str())
            .and_then(|stem| uuid::Uuid::try_parse(stem).ok())
        else {
            continue;
        };
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot read node-local voice-mail audio to move it into the store");
                continue;
            }
        };
        match store.adopt_voicemail_audio(&item_id_for(uuid), &raw).await {
            Ok(true) => moved += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::error!(file = %path.display(), error = %calls::error_chain(&error), "cannot move node-local voice-mail audio into the store; it plays from this node only");
            }
        }
    }
    moved
}

/// An audio file that could not be read, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
struct AudioFileError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

#[async_trait::async_trait]
impl calls::AudioSource for LocalAudio {
    async fn pcm(&self, item_id: &str) -> Result<Arc<[i16]>, calls::AudioError> {
        if let Some(shared) = &self.shared {
            let uuid = parse_item_id(item_id)
                .map_err(|_| calls::AudioError::MalformedId(item_id.to_owned()))?;
            if let Some(raw) = shared.cached(uuid).await {
                return Ok(decode_raw(&raw));
            }
            match shared.store.voicemail_audio(item_id).await {
                Ok(Some(raw)) => {
                    let samples = decode_raw(&raw);
                    shared.keep(uuid, raw).await;
                    return Ok(samples);
                }
                // Not in the store: a file imported here before the audio moved to the store
                // (the start-up migration could not move it) still plays from this node.
                Ok(None) => {}
                Err(error) => return Err(calls::AudioError::Read(Box::new(error))),
            }
        }
        let this = self.clone();
        let item_id = item_id.to_owned();
        // A message is up to a few MB: read it off the request workers.
        tokio::task::spawn_blocking(move || this.load(&item_id))
            .await
            .map_err(|e| calls::AudioError::Read(Box::new(e)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::{SqliteStore, Store, StoreError, User, VoicemailItem};
    use calls::CallRecord;

    #[test]
    fn minted_ids_parse_and_foreign_ids_are_malformed() {
        let id = mint_item_id();
        assert_eq!(id.len(), 24);
        assert!(parse_item_id(&id).is_ok());
        assert_eq!(parse_item_id(""), Err(ItemIdError::Empty));
        assert_eq!(parse_item_id("   "), Err(ItemIdError::Empty));
        // The Microsoft doc example: valid-looking base64 with trailing bits, not ours.
        assert_eq!(parse_item_id("AkAjzQTbY/i="), Err(ItemIdError::Malformed));
        assert_eq!(parse_item_id("not base64!"), Err(ItemIdError::Malformed));
        // An Exchange EwsId prefix.
        assert_eq!(
            parse_item_id("AAMkADk0ZTFmNzUzLWI5NTQtNGYyMy1hNDQxLWQ0NmEzZjFkYmM4OABGAAAAAAA="),
            Err(ItemIdError::Malformed)
        );
    }

    #[test]
    fn non_canonical_trailing_bits_are_accepted() {
        let id = mint_item_id();
        // Flip the unused low bits of the last significant character.
        let mut chars: Vec<char> = id.chars().collect();
        let last = chars.len() - 2; // one '=' of padding for 17 bytes
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let pos = alphabet.find(chars[last]).unwrap();
        chars[last] = alphabet.as_bytes()[(pos & !0b11) | 0b01] as char;
        let tweaked: String = chars.into_iter().collect();
        assert_eq!(parse_item_id(&tweaked), parse_item_id(&id));
    }

    /// A SQLite store holding user `alice`, whose user lookups or item inserts can fail.
    struct Faulty {
        inner: SqliteStore,
        fail_lookup: bool,
        fail_insert: bool,
    }

    fn broken() -> StoreError {
        StoreError::Backend("the disk is on fire".into())
    }

    crate::store_double!(Faulty, inner, {
        async fn upsert_user(&self, user: User) -> Result<(), StoreError> {
            self.inner.upsert_user(user).await
        }
        async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
            if self.fail_lookup {
                return Err(broken());
            }
            self.inner.user(name).await
        }
        async fn insert_token(
            &self,
            user: &str,
            hash: &str,
            label: &str,
        ) -> Result<(), StoreError> {
            self.inner.insert_token(user, hash, label).await
        }
        async fn token_user(&self, hash: &str) -> Result<Option<String>, StoreError> {
            self.inner.token_user(hash).await
        }
        async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
            self.inner.insert_call(call).await
        }
        async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError> {
            self.inner.update_call(call).await
        }
        async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
            self.inner.call(id).await
        }
        async fn close_orphaned_calls(&self, node: &str, now: i64) -> Result<usize, StoreError> {
            self.inner.close_orphaned_calls(node, now).await
        }
        async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
            self.inner.voicemail_item(id).await
        }
        async fn insert_voicemail_item(&self, item: &VoicemailItem) -> Result<(), StoreError> {
            if self.fail_insert {
                return Err(broken());
            }
            self.inner.insert_voicemail_item(item).await
        }
        async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError> {
            self.inner.voicemail_items(owner).await
        }
    });

    async fn store(fail_lookup: bool, fail_insert: bool) -> Faulty {
        let inner = SqliteStore::in_memory().unwrap();
        inner
            .upsert_user(User {
                name: "alice".into(),
                password_hash: String::new(),
                play_on_phone: true,
            })
            .await
            .unwrap();
        Faulty {
            inner,
            fail_lookup,
            fail_insert,
        }
    }

    /// A temporary directory holding a short WAV message `m.wav`.
    fn message() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.wav");
        let samples = testkit::tone(8000, 440.0, 0.2, 8000.0);
        std::fs::write(&file, testkit::pcm_wav(8000, 1, &samples)).unwrap();
        (dir, file)
    }

    async fn import_as(
        store: &Faulty,
        data_dir: &Path,
        user: &str,
        file: &Path,
    ) -> Result<String, ImportError> {
        import(store, data_dir, user, file, "", "").await
    }

    fn stored_files(data_dir: &Path) -> usize {
        std::fs::read_dir(data_dir.join("voicemail")).map_or(0, |d| d.count())
    }

    #[tokio::test]
    async fn local_audio_tells_a_foreign_id_from_a_missing_item() {
        use calls::{AudioError, AudioSource as _};
        let dir = tempfile::tempdir().unwrap();
        let audio = LocalAudio::new(dir.path().to_owned());
        let foreign = audio.pcm("AAMkADk0ZTFmNzUz").await.unwrap_err();
        assert!(matches!(foreign, AudioError::MalformedId(_)), "{foreign:?}");
        let missing = audio.pcm(&mint_item_id()).await.unwrap_err();
        assert!(matches!(missing, AudioError::NotFound), "{missing:?}");
    }

    #[tokio::test]
    async fn a_message_for_a_known_user_is_stored() {
        let (dir, file) = message();
        let data = dir.path().join("data");
        let id = import_as(&store(false, false).await, &data, "alice", &file)
            .await
            .unwrap();
        assert_eq!(LocalAudio::new(data).load(&id).unwrap().len(), 1600);
    }

    #[tokio::test]
    async fn unknown_user_is_refused_naming_the_user() {
        let (dir, file) = message();
        let err = import_as(&store(false, false).await, dir.path(), "mallory", &file)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ImportError::NoUser { user } if user == "mallory"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "no user named \"mallory\" (add it with `openum user add`)"
        );
    }

    #[tokio::test]
    async fn failed_user_lookup_keeps_the_store_error_as_source() {
        let (dir, file) = message();
        let err = import_as(&store(true, false).await, dir.path(), "alice", &file)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ImportError::UserLookup { user, .. } if user == "alice"),
            "{err:?}"
        );
        assert!(err.to_string().contains("the disk is on fire"), "{err}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<StoreError>().is_some());
    }

    #[tokio::test]
    async fn missing_file_is_refused_naming_the_path_with_the_io_error_as_source() {
        let (dir, _) = message();
        let missing = dir.path().join("missing.wav");
        let err = import_as(&store(false, false).await, dir.path(), "alice", &missing)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ImportError::Read { path, source } if *path == missing && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(err.to_string().contains("missing.wav"), "{err}");
    }

    #[tokio::test]
    async fn wma_file_is_refused_naming_the_file_and_asf() {
        let (dir, _) = message();
        let wma = dir.path().join("song.wma");
        let mut asf = vec![
            0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62,
            0xCE, 0x6C,
        ];
        asf.resize(2000, 0);
        std::fs::write(&wma, asf).unwrap();
        let data = dir.path().join("data");
        let err = import_as(&store(false, false).await, &data, "alice", &wma)
            .await
            .unwrap_err();
        assert!(
            matches!(
                &err,
                ImportError::Audio {
                    source: audio::AudioError::UnsupportedFormat(audio::Format::Asf),
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("song.wma") && text.contains("ASF"), "{text}");
        assert_eq!(stored_files(&data), 0);
    }

    #[tokio::test]
    async fn data_dir_that_is_a_file_is_refused_naming_the_directory() {
        let (dir, file) = message();
        let data = dir.path().join("not-a-dir");
        std::fs::write(&data, b"").unwrap();
        let err = import_as(&store(false, false).await, &data, "alice", &file)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ImportError::CreateDir { path, .. } if *path == data.join("voicemail")),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("cannot store the item: cannot create "),
            "{err}"
        );
    }

    #[test]
    fn failed_audio_write_names_the_file_and_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("x.pcm");
        let err = write_audio(&path, &[0; 4]).unwrap_err();
        assert!(
            matches!(&err, ImportError::WriteAudio { path: p, source } if *p == path && source.kind() == std::io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(err.to_string().contains("x.pcm"), "{err}");
        assert!(!path.with_extension("pcm.partial").exists());
    }

    #[tokio::test]
    async fn failed_record_insert_removes_the_audio_and_keeps_the_store_error() {
        let (dir, file) = message();
        let data = dir.path().join("data");
        let err = import_as(&store(false, true).await, &data, "alice", &file)
            .await
            .unwrap_err();
        assert!(matches!(&err, ImportError::Store(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot store the item: storage backend error: the disk is on fire"
        );
        assert_eq!(stored_files(&data), 0);
    }

    #[tokio::test]
    async fn decoder_failure_names_the_file_and_keeps_the_join_error() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let source = task.await.unwrap_err();
        let err = ImportError::DecoderFailed {
            path: PathBuf::from("/tmp/m.wav"),
            source,
        };
        assert!(
            err.to_string()
                .starts_with("/tmp/m.wav: the audio decoder failed: "),
            "{err}"
        );
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<tokio::task::JoinError>().is_some());
    }
}
