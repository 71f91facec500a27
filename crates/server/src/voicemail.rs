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
    let mut raw = Vec::with_capacity(17);
    raw.push(VERSION);
    raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
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
    /// No such user.
    #[error("no user named {0:?} (add it with `openum user add`)")]
    NoUser(String),
    /// Writing the audio or the record failed.
    #[error("cannot store the item: {0}")]
    Store(String),
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
    if store
        .user(user)
        .await
        .map_err(|e| ImportError::Store(e.to_string()))?
        .is_none()
    {
        return Err(ImportError::NoUser(user.to_owned()));
    }
    let bytes = std::fs::read(file).map_err(|source| ImportError::Read {
        path: file.to_owned(),
        source,
    })?;
    let extension = file.extension().and_then(|e| e.to_str()).map(str::to_owned);
    let samples =
        tokio::task::spawn_blocking(move || audio::decode_to_8k_mono(&bytes, extension.as_deref()))
            .await
            .map_err(|e| ImportError::Store(e.to_string()))?
            .map_err(|source| ImportError::Audio {
                path: file.to_owned(),
                source,
            })?;
    let id = mint_item_id();
    let uuid = parse_item_id(&id).map_err(|_| ImportError::Store("minted id".into()))?;
    let path = audio_path(data_dir, uuid);
    let dir = path.parent().unwrap_or(data_dir);
    std::fs::create_dir_all(dir)
        .map_err(|e| ImportError::Store(format!("{}: {e}", dir.display())))?;
    let raw: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let partial = path.with_extension("pcm.partial");
    std::fs::write(&partial, &raw)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            ImportError::Store(format!("{}: {e}", path.display()))
        })?;
    let item = crate::store::VoicemailItem {
        id: id.clone(),
        owner: user.to_owned(),
        has_audio: true,
        from: from.to_owned(),
        subject: subject.to_owned(),
        duration_ms: i64::try_from(samples.len() / 8).unwrap_or(i64::MAX),
        created_at: calls::now_unix(),
    };
    if let Err(e) = store.insert_voicemail_item(&item).await {
        let _ = std::fs::remove_file(&path);
        return Err(ImportError::Store(e.to_string()));
    }
    Ok(id)
}

/// The voice-mail items imported on this node: their decoded audio (8 kHz mono PCM) lives in
/// files under the data directory.
#[derive(Clone, Debug)]
pub struct LocalAudio {
    data_dir: PathBuf,
}

impl LocalAudio {
    /// The items under `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self { data_dir }
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
        Ok(raw
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect())
    }
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
}
