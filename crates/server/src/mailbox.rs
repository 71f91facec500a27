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
use crate::metrics::Metrics;
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
    audio: Arc<AudioCache>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Arc<Metrics>,
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
            audio: Arc::new(AudioCache::new(
                usize::try_from(config.audio_cache_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX),
            )),
            fetching: Mutex::new(HashMap::new()),
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Counts its steps in `metrics` (the node's, for `/metrics`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The mailbox caller this `Authorization` header value belongs to; `Ok(None)` when the
    /// mailbox server refuses it (→ HTTP 401).
    pub async fn verify(&self, authorization: &str) -> Result<Option<MailboxCaller>, MailboxError> {
        let key: [u8; 32] = Sha256::digest(authorization.trim().as_bytes()).into();
        if let Some((caller, at)) = lock(&self.verified).get(&key) {
            if at.elapsed() < self.credential_ttl {
                self.metrics.mailbox("login", "cached");
                return Ok(Some(caller.clone()));
            }
        }
        let Some(identity) = self.counted_identity(&self.client, authorization).await? else {
            return Ok(None);
        };
        let owner = owner_of(&identity);
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

    /// The mailbox caller a pinned, NTLM/Negotiate-authenticated connection belongs to (a
    /// `GetFolder` of the inbox over it, without `Authorization`); the owner is derived as in
    /// [`Self::verify`], so one mailbox owns the same calls however it logs in. `Ok(None)`: the
    /// connection is not authenticated (→ HTTP 401).
    pub async fn verify_via(
        &self,
        transport: Arc<dyn mailbox_client::Transport>,
    ) -> Result<Option<MailboxCaller>, MailboxError> {
        let client = self.client.via(transport);
        let Some(identity) = self.counted_identity(&client, "").await? else {
            return Ok(None);
        };
        let owner = owner_of(&identity);
        Ok(Some(MailboxCaller {
            login: owner.clone(),
            owner,
        }))
    }

    /// `client.identity(authorization)`, counted in the metrics; `None` when refused.
    async fn counted_identity(
        &self,
        client: &MailboxClient,
        authorization: &str,
    ) -> Result<Option<mailbox_client::MailboxIdentity>, MailboxError> {
        match client.identity(authorization).await {
            Ok(identity) => {
                self.metrics.mailbox("login", "accepted");
                Ok(Some(identity))
            }
            Err(MailboxError::Unauthorized) => {
                self.metrics.mailbox("login", "refused");
                Ok(None)
            }
            Err(error) => {
                self.metrics.mailbox("login", "unavailable");
                Err(error)
            }
        }
    }

    /// The decoded audio of item `item_id`, read with the caller's `authorization`. Every call
    /// asks the mailbox server for the item (the caller's rights are checked each time); the
    /// attachment is downloaded and decoded only when the cache has no copy of this version.
    pub async fn fetch(
        &self,
        authorization: &str,
        item_id: &str,
    ) -> Result<Arc<[i16]>, FetchError> {
        self.fetch_via(None, authorization, item_id).await
    }

    /// [`Self::fetch`], over `via` (a pinned connection) when given.
    pub async fn fetch_via(
        &self,
        via: Option<Arc<dyn mailbox_client::Transport>>,
        authorization: &str,
        item_id: &str,
    ) -> Result<Arc<[i16]>, FetchError> {
        let client = match via {
            Some(transport) => self.client.via(transport),
            None => self.client.clone(),
        };
        let fetched = self.fetch_uncounted(&client, authorization, item_id).await;
        let outcome = match &fetched {
            Ok((_, true)) => "downloaded",
            Ok((_, false)) => "cached",
            Err(FetchError::Mailbox(MailboxError::Item { .. } | MailboxError::Unauthorized)) => {
                "item_error"
            }
            Err(FetchError::Mailbox(MailboxError::NoAudio { .. })) => "no_audio",
            Err(FetchError::Decode { .. } | FetchError::Mailbox(MailboxError::TooLarge { .. })) => {
                "undecodable"
            }
            Err(_) => "unavailable",
        };
        self.metrics.mailbox("voice_message", outcome);
        fetched.map(|(pcm, _)| pcm)
    }

    /// [`Self::fetch`]; the flag says whether the attachment was downloaded.
    async fn fetch_uncounted(
        &self,
        client: &MailboxClient,
        authorization: &str,
        item_id: &str,
    ) -> Result<(Arc<[i16]>, bool), FetchError> {
        let message = client.voice_message(authorization, item_id).await?;
        let version = message.change_key.clone();
        if let Some(pcm) = self.audio.get(item_id, version.as_deref()) {
            return Ok((pcm, false));
        }
        // One download per item at a time: a second request for it waits, then finds it cached.
        let gate = Arc::clone(lock(&self.fetching).entry(item_id.to_owned()).or_default());
        let _cleanup = GateCleanup {
            fetching: &self.fetching,
            item_id,
            gate: Arc::clone(&gate),
        };
        let _turn = gate.lock().await;
        if let Some(pcm) = self.audio.get(item_id, version.as_deref()) {
            return Ok((pcm, false));
        }
        // The download and decode run in a task of their own: if this request gives up (its
        // client left, a timeout), the audio still lands in the cache for the next play.
        let download = tokio::spawn(download(
            client.clone(),
            authorization.to_owned(),
            item_id.to_owned(),
            message,
            Arc::clone(&self.audio),
        ));
        match download.await {
            Ok(result) => result.map(|pcm| (pcm, true)),
            Err(error) => Err(FetchError::DecoderTask(error)),
        }
    }

    /// `openum voicemail play-test`: checks `authorization` with the mailbox server and fetches
    /// and decodes item `item_id` as a call would, bypassing the cache; reports each step.
    pub async fn play_test(
        &self,
        authorization: &str,
        item_id: &str,
    ) -> Result<PlayTest, PlayTestError> {
        let started = Instant::now();
        let caller = self
            .verify(authorization)
            .await
            .map_err(|e| PlayTestError::Fetch(e.into()))?
            .ok_or(PlayTestError::Refused)?;
        let identity = started.elapsed();
        let started = Instant::now();
        let message = self
            .client
            .voice_message(authorization, item_id)
            .await
            .map_err(|e| PlayTestError::Fetch(e.into()))?;
        let item = started.elapsed();
        let started = Instant::now();
        let bytes = self
            .client
            .attachment(authorization, &message.audio)
            .await
            .map_err(|e| PlayTestError::Fetch(e.into()))?;
        let attachment_bytes = bytes.len();
        let download = started.elapsed();
        let started = Instant::now();
        let pcm = decode(&message.audio.name, bytes)
            .await
            .map_err(PlayTestError::Fetch)?;
        Ok(PlayTest {
            owner: caller.owner,
            message,
            attachment_bytes,
            seconds: pcm.len() as f64 / 8000.0,
            timings: [identity, item, download, started.elapsed()],
        })
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

/// Downloads and decodes the voice attachment of `message` (item `item_id` as the caller
/// named it), and caches it under that id.
async fn download(
    client: MailboxClient,
    authorization: String,
    item_id: String,
    message: mailbox_client::VoiceMessage,
    audio: Arc<AudioCache>,
) -> Result<Arc<[i16]>, FetchError> {
    let bytes = client.attachment(&authorization, &message.audio).await?;
    let started = Instant::now();
    let pcm = decode(&message.audio.name, bytes).await?;
    tracing::info!(
        attachment = %message.audio.name,
        seconds = pcm.len() as f64 / 8000.0,
        decode_ms = started.elapsed().as_millis() as u64,
        "voice message fetched from the mailbox"
    );
    // Keyed by the id the caller used (the runtime looks it up by that id), whatever spelling
    // the server answered with.
    audio.put(&item_id, message.change_key.clone(), Arc::clone(&pcm));
    Ok(pcm)
}

/// Removes an item's download gate when the last request waiting for it is done, however it
/// ends (answered, failed or cancelled).
struct GateCleanup<'a> {
    fetching: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    item_id: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for GateCleanup<'_> {
    fn drop(&mut self) {
        let mut fetching = lock(self.fetching);
        // The map's reference, this guard's and the caller's `gate`: nobody else waits.
        if Arc::strong_count(&self.gate) <= 3 {
            fetching.remove(self.item_id);
        }
    }
}

/// Decodes an attachment named `name` off the async workers.
async fn decode(name: &str, bytes: Vec<u8>) -> Result<Arc<[i16]>, FetchError> {
    let extension = std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_owned);
    let decoded =
        tokio::task::spawn_blocking(move || audio::decode_to_8k_mono(&bytes, extension.as_deref()))
            .await
            .map_err(FetchError::DecoderTask)?
            .map_err(|source| FetchError::Decode {
                name: name.to_owned(),
                source,
            })?;
    Ok(decoded.into())
}

/// What [`MailboxService::play_test`] found.
#[derive(Debug)]
pub struct PlayTest {
    /// The mailbox owner key calls of this login are recorded under.
    pub owner: String,
    /// The item and the attachment chosen.
    pub message: mailbox_client::VoiceMessage,
    /// Attachment size.
    pub attachment_bytes: usize,
    /// Decoded playing time.
    pub seconds: f64,
    /// Time for: credential check, GetItem, GetAttachment, decode.
    pub timings: [Duration; 4],
}

/// Why a play test failed.
#[derive(Debug, thiserror::Error)]
pub enum PlayTestError {
    /// The mailbox server refused the credentials.
    #[error("the mailbox server refused the credentials")]
    Refused,
    /// A step failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The user name of a Basic credential; `None` for any other header (a Bearer token, or one that
/// does not decode — the mailbox server judged it already), so the owner key stands in.
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

/// The owner key of a mailbox: `mailbox:` and a digest of its inbox FolderId.
fn owner_of(identity: &mailbox_client::MailboxIdentity) -> String {
    let digest = Sha256::digest(identity.inbox_folder_id.as_bytes());
    format!("mailbox:{}", hex(&digest[..16]))
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

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::mailbox::{Attachment, Item, Mailbox, MailboxDouble};

    fn basic(user: &str, password: &str) -> String {
        let raw = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    fn config(url: String) -> MailboxConfig {
        MailboxConfig {
            ews_url: url,
            timeout_secs: 5,
            ..MailboxConfig::default()
        }
    }

    fn count(double: &MailboxDouble, operation: &str) -> usize {
        double
            .requests()
            .iter()
            .filter(|r| r.operation.as_deref() == Some(operation))
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_of_one_mailbox_share_an_owner_and_are_asked_once() {
        let mut builder = MailboxDouble::builder();
        builder.mailbox(
            Mailbox::new("alice@example.com")
                .login("EXAMPLE\\alice")
                .password("pw"),
        );
        builder.mailbox(Mailbox::new("bob@example.com").password("pw"));
        let double = builder.start().await.unwrap();
        let service = MailboxService::new(&config(double.url())).unwrap();
        let smtp = service
            .verify(&basic("alice@example.com", "pw"))
            .await
            .unwrap()
            .unwrap();
        let domain = service
            .verify(&basic("EXAMPLE\\alice", "pw"))
            .await
            .unwrap()
            .unwrap();
        let bob = service
            .verify(&basic("bob@example.com", "pw"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(smtp.owner, domain.owner);
        assert_ne!(smtp.owner, bob.owner);
        assert!(smtp.owner.starts_with("mailbox:"), "{}", smtp.owner);
        assert_eq!(
            (smtp.login.as_str(), domain.login.as_str()),
            ("alice@example.com", "EXAMPLE\\alice")
        );
        assert_eq!(count(&double, "GetFolder"), 3);
        // Cached: no new request. Refused: not cached, asked every time.
        service
            .verify(&basic("alice@example.com", "pw"))
            .await
            .unwrap();
        assert_eq!(count(&double, "GetFolder"), 3);
        assert!(service
            .verify(&basic("alice@example.com", "no"))
            .await
            .unwrap()
            .is_none());
        assert!(service
            .verify(&basic("alice@example.com", "no"))
            .await
            .unwrap()
            .is_none());
        assert_eq!(count(&double, "GetFolder"), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_plays_of_one_item_download_it_once_and_each_checks_rights() {
        let mut builder = MailboxDouble::builder();
        let alice = builder.mailbox(Mailbox::new("alice@example.com").password("pw"));
        let samples: Vec<i16> = (0..8000).map(|i| ((i % 40) * 400 - 8000) as i16).collect();
        let item = builder.item(
            &alice,
            Item::voicemail("Voice Mail").attachment(Attachment::file(
                "audio.wav",
                "audio/wav",
                testkit::pcm_wav(8000, 1, &samples),
            )),
        );
        let double = builder.start().await.unwrap();
        let service = Arc::new(MailboxService::new(&config(double.url())).unwrap());
        let auth = basic("alice@example.com", "pw");
        let plays: Vec<_> = (0..5)
            .map(|_| {
                let (service, auth, id) = (Arc::clone(&service), auth.clone(), item.id.clone());
                tokio::spawn(async move { service.fetch(&auth, &id).await })
            })
            .collect();
        for play in plays {
            assert_eq!(play.await.unwrap().unwrap().len(), 8000);
        }
        assert_eq!(count(&double, "GetItem"), 5);
        assert_eq!(count(&double, "GetAttachment"), 1);
        assert_eq!(service.cached(&item.id).map(|p| p.len()), Some(8000));
        assert!(lock(&service.fetching).is_empty());
    }

    #[test]
    fn the_audio_cache_drops_the_least_recently_used_but_never_audio_in_use() {
        let cache = AudioCache::new(3 * 2000);
        let pcm = |n: usize| -> Arc<[i16]> { vec![0_i16; n].into() };
        let held = pcm(1000);
        cache.put("held", None, Arc::clone(&held));
        cache.put("a", Some("v1".into()), pcm(1000));
        cache.put("b", None, pcm(1000));
        assert!(cache.get("a", Some("v1")).is_some());
        assert!(cache.get("a", Some("v2")).is_none(), "another version");
        // Over budget: "b" is the least recently used one not in use.
        cache.put("c", None, pcm(1000));
        assert!(cache.get_any("b").is_none());
        assert!(cache.get_any("held").is_some());
        assert!(cache.get_any("a").is_some());
        assert!(cache.get_any("c").is_some());
        drop(held);
        cache.put("d", None, pcm(1000));
        assert!(cache.get_any("held").is_none(), "released, now the oldest");
    }
}
