//! The mailbox backend: voice mail played from the caller's own Exchange/grommunio mailbox.
//!
//! A caller who is not a local openum user is checked with the mailbox server using their own
//! `Authorization` header (a `GetFolder` of their inbox, whose FolderId names the mailbox); an
//! accepted header is trusted for `credential_cache_secs` under a SHA-256 digest of it, never
//! the secret. Calls are owned by the mailbox (`mailbox:<digest of the inbox FolderId>`), so two
//! spellings of one login share their calls and two mailboxes never see each other's.
//!
//! `PlayOnPhone` with an ItemId openum did not mint asks the mailbox server for the item with
//! the caller's header (`GetItem`: every play is a rights check), picks the voice attachment,
//! downloads it (`GetAttachment`) and decodes it once. Decoded audio is cached by ItemId and
//! ChangeKey within `audio_cache_mb`; concurrent plays of one item download it once. Because the
//! audio comes from the mailbox, any node can play any item.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use calls::sync::lock;
use mailbox_client::{MailboxClient, MailboxError, MailboxSettings};
use sha2::{Digest, Sha256};

use crate::config::MailboxConfig;
use crate::voicemail::LocalAudio;
use calls::{AudioError, AudioSource};

const CREDENTIALS_MAX: usize = 10_000;

/// A caller the mailbox server accepted.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MailboxCaller {
    /// Who owns their calls: the mailbox (`mailbox:` and a digest of its inbox FolderId).
    pub owner: String,
    /// The login as given (the Basic user name), for logs and dial-plan groups; the owner for
    /// Bearer tokens.
    pub login: String,
}

/// Why a message's audio cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The mailbox server refused or failed.
    #[error(transparent)]
    Mailbox(#[from] MailboxError),
    /// The attachment is not audio openum can decode.
    #[error("the voice message {name:?} cannot be decoded")]
    Decode {
        /// The attachment's name.
        name: String,
        /// Why.
        #[source]
        source: audio::AudioError,
    },
    /// The decoder task failed.
    #[error("the decoder task failed")]
    DecoderTask(#[source] tokio::task::JoinError),
}

/// The mailbox backend of one node.
pub struct MailboxService {
    client: MailboxClient,
    credential_ttl: Duration,
    verified: Mutex<HashMap<[u8; 32], (MailboxCaller, Instant)>>,
    audio: AudioCache,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl MailboxService {
    /// The backend for `[mailbox]`.
    pub fn new(config: &MailboxConfig) -> Result<Self, MailboxError> {
        let client = MailboxClient::new(MailboxSettings {
            ews_url: config.ews_url.trim().to_owned(),
            ca_file: config.ca_file.clone(),
            timeout: Duration::from_secs(config.timeout_secs),
            max_attachment_bytes: config.max_attachment_mb.saturating_mul(1 << 20),
        })?;
        Ok(Self {
            client,
            credential_ttl: Duration::from_secs(config.credential_cache_secs),
            verified: Mutex::new(HashMap::new()),
            audio: AudioCache::new(
                usize::try_from(config.audio_cache_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            ),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// The mailbox caller this `Authorization` header value belongs to; `Ok(None)` when the
    /// mailbox server refuses it (→ HTTP 401).
    pub async fn verify(&self, authorization: &str) -> Result<Option<MailboxCaller>, MailboxError> {
        let key: [u8; 32] = Sha256::digest(authorization.trim().as_bytes()).into();
        if let Some((caller, at)) = lock(&self.verified).get(&key) {
            if at.elapsed() < self.credential_ttl {
                return Ok(Some(caller.clone()));
            }
        }
        let identity = match self.client.identity(authorization).await {
            Ok(identity) => identity,
            Err(MailboxError::Unauthorized) => return Ok(None),
            Err(error) => return Err(error),
        };
        let digest = Sha256::digest(identity.inbox_folder_id.as_bytes());
        let owner = format!("mailbox:{}", hex(&digest[..16]));
        let login = basic_user(authorization).unwrap_or_else(|| owner.clone());
        let caller = MailboxCaller { owner, login };
        let mut verified = lock(&self.verified);
        if verified.len() >= CREDENTIALS_MAX {
            let ttl = self.credential_ttl;
            verified.retain(|_, (_, at)| at.elapsed() < ttl);
            if verified.len() >= CREDENTIALS_MAX {
                verified.clear();
            }
        }
        verified.insert(key, (caller.clone(), Instant::now()));
        Ok(Some(caller))
    }

    /// The decoded audio of item `item_id`, read with the caller's `authorization`. Every call
    /// asks the mailbox server for the item (the caller's rights are checked each time); the
    /// attachment is downloaded and decoded only when the cache has no copy of this version.
    pub async fn fetch(
        &self,
        authorization: &str,
        item_id: &str,
    ) -> Result<Arc<[i16]>, FetchError> {
        let message = self.client.voice_message(authorization, item_id).await?;
        let version = message.change_key.clone();
        if let Some(pcm) = self.audio.get(item_id, version.as_deref()) {
            return Ok(pcm);
        }
        // One download per item at a time: a second request for it waits, then finds it cached.
        let gate = Arc::clone(lock(&self.fetching).entry(item_id.to_owned()).or_default());
        let _turn = gate.lock().await;
        let result = match self.audio.get(item_id, version.as_deref()) {
            Some(pcm) => Ok(pcm),
            None => self.download(authorization, &message).await,
        };
        drop(_turn);
        let mut fetching = lock(&self.fetching);
        // Two references: the map's and `gate`; nobody else waits for this item.
        if Arc::strong_count(&gate) == 2 {
            fetching.remove(item_id);
        }
        let pcm = result?;
        Ok(pcm)
    }

    async fn download(
        &self,
        authorization: &str,
        message: &mailbox_client::VoiceMessage,
    ) -> Result<Arc<[i16]>, FetchError> {
        let bytes = self
            .client
            .attachment(authorization, &message.audio)
            .await?;
        let name = message.audio.name.clone();
        let extension = std::path::Path::new(&name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_owned);
        let started = Instant::now();
        let decoded = tokio::task::spawn_blocking(move || {
            audio::decode_to_8k_mono(&bytes, extension.as_deref())
        })
        .await
        .map_err(FetchError::DecoderTask)?
        .map_err(|source| FetchError::Decode {
            name: name.clone(),
            source,
        })?;
        tracing::info!(
            attachment = %name,
            seconds = decoded.len() as f64 / 8000.0,
            decode_ms = started.elapsed().as_millis() as u64,
            "voice message fetched from the mailbox"
        );
        let pcm: Arc<[i16]> = decoded.into();
        self.audio.put(
            &message.item_id,
            message.change_key.clone(),
            Arc::clone(&pcm),
        );
        Ok(pcm)
    }

    /// Audio fetched earlier for `item_id` (any version), for the call runtime.
    pub fn cached(&self, item_id: &str) -> Option<Arc<[i16]>> {
        self.audio.get_any(item_id)
    }
}

/// The audio of the items calls play: imported items from this node's files, mailbox items from
/// what [`MailboxService::fetch`] just decoded.
pub struct ItemAudio {
    /// Imported items.
    pub local: LocalAudio,
    /// The mailbox backend, with `[mailbox]`.
    pub mailbox: Option<Arc<MailboxService>>,
}

#[async_trait::async_trait]
impl AudioSource for ItemAudio {
    async fn pcm(&self, item_id: &str) -> Result<Arc<[i16]>, AudioError> {
        match (&self.mailbox, crate::voicemail::parse_item_id(item_id)) {
            (Some(mailbox), Err(crate::voicemail::ItemIdError::Malformed)) => {
                mailbox.cached(item_id).ok_or(AudioError::NotFound)
            }
            _ => self.local.pcm(item_id).await,
        }
    }
}

/// The user name of a Basic credential.
fn basic_user(authorization: &str) -> Option<String> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    text.split_once(':').map(|(user, _)| user.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decoded audio by ItemId, within a byte budget; least recently used first out, except audio
/// someone still holds (a call being placed).
struct AudioCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<String, CacheEntry>,
    bytes: usize,
    clock: u64,
}

struct CacheEntry {
    version: Option<String>,
    pcm: Arc<[i16]>,
    used: u64,
}

impl AudioCache {
    fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn get(&self, item_id: &str, version: Option<&str>) -> Option<Arc<[i16]>> {
        let mut inner = lock(&self.inner);
        inner.clock += 1;
        let clock = inner.clock;
        let entry = inner.entries.get_mut(item_id)?;
        if entry.version.as_deref() != version {
            return None;
        }
        entry.used = clock;
        Some(Arc::clone(&entry.pcm))
    }

    fn get_any(&self, item_id: &str) -> Option<Arc<[i16]>> {
        lock(&self.inner)
            .entries
            .get(item_id)
            .map(|e| Arc::clone(&e.pcm))
    }

    fn put(&self, item_id: &str, version: Option<String>, pcm: Arc<[i16]>) {
        let size = pcm.len() * 2;
        let mut inner = lock(&self.inner);
        inner.clock += 1;
        let used = inner.clock;
        if let Some(old) = inner
            .entries
            .insert(item_id.to_owned(), CacheEntry { version, pcm, used })
        {
            inner.bytes -= old.pcm.len() * 2;
        }
        inner.bytes += size;
        while inner.bytes > self.budget {
            let victim = inner
                .entries
                .iter()
                .filter(|(_, e)| Arc::strong_count(&e.pcm) == 1)
                .min_by_key(|(_, e)| e.used)
                .map(|(id, _)| id.clone());
            let Some(victim) = victim else { break };
            if let Some(gone) = inner.entries.remove(&victim) {
                inner.bytes -= gone.pcm.len() * 2;
            }
        }
    }
}
