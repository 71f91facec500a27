//! Authentication: HTTP Basic against Argon2id password hashes, and Bearer API tokens.
//!
//! Argon2 is deliberately slow (tens of milliseconds), and EWS clients send their credentials on
//! every request. A successful verification (password or API token) is therefore remembered for
//! a short time under a SHA-256 digest of the `Authorization` header (never the plaintext),
//! together with the user's *credential generation* (`store/users.rs`) and the store's
//! *credential epoch* at which it was last checked ([`Store::credential_epoch`]). While the
//! store answers the same epoch, nothing that could matter has changed and the memory is
//! trusted with no store read; when the epoch moved (a password reset, `openum user disable`,
//! `openum token revoke`, in any process sharing the store), the remembered verification is
//! checked against the store again — the user's generation and disabled flag, or for a token
//! that it still exists — before it is trusted. A change made by another process therefore
//! counts within [`crate::store::CREDENTIAL_LAG`] (1 ms for SQLite; the time a notification
//! takes, at most 1 s, for PostgreSQL), one made through this process at once. A store that
//! cannot vouch for its epoch (PostgreSQL with its `LISTEN` connection down) gets one state
//! read per request, as before the epoch existed. Failures are never cached.
//!
//! Failed logins are logged (`login failed`: the user name as given, the client address, the
//! scheme and the reason, never a secret), counted in `openum_auth_failures_total{scheme,reason}`
//! and throttled per client address and per user name ([`crate::throttle`]). A request without
//! an `Authorization` header is a challenge, not a failure; a scheme openum does not check
//! itself (NTLM, Negotiate without a mailbox server) is counted but neither logged above debug
//! nor throttled, since clients offer such schemes first as a matter of course.
//!
//! API tokens are 256 random bits, so a fast hash (SHA-256) is the right way to store them: a
//! slow hash protects low-entropy secrets, which these are not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::client_address::TrustedProxies;
use crate::mailbox::{MailboxCaller, MailboxService};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::throttle::{Throttle, ThrottleSettings};

/// How long a verified Basic credential is remembered (each use still checks the user's
/// credential generation in the store).
pub const CACHE_TTL: Duration = Duration::from_secs(120);
const CACHE_MAX: usize = 10_000;
/// User names longer than this are cut in logs and throttling keys (memory bound).
const MAX_LOGGED_NAME: usize = 128;

/// Prefix of openum API tokens (makes them recognisable in secret scanners).
pub const TOKEN_PREFIX: &str = "oum_";

/// Hashes a password with Argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Creates a new API token; returns `(token, stored_hash)`.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of an API token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Who a request comes from. Its `Debug` output leaves the Authorization header out.
#[derive(Clone, Eq, PartialEq)]
pub enum Caller {
    /// A local openum user (by password or API token).
    Local(String),
    /// A mailbox user the mailbox server accepted; `authorization` is their own header, used
    /// again for the mailbox fetches of this request.
    Mailbox {
        /// Who they are.
        caller: MailboxCaller,
        /// Their `Authorization` header value (empty on a pinned NTLM/Negotiate connection).
        authorization: String,
        /// The pinned mailbox-server connection their mailbox requests go over, if any.
        via: Option<Via>,
    },
}

/// A mailbox-server connection a caller authenticated (NTLM, Negotiate); equal only to itself.
#[derive(Clone)]
pub struct Via(pub Arc<dyn mailbox_client::Transport>);

impl PartialEq for Via {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Via {}

impl std::fmt::Debug for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Via(pinned connection)")
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(name) => f.debug_tuple("Local").field(name).finish(),
            Self::Mailbox { caller, .. } => f
                .debug_struct("Mailbox")
                .field("caller", caller)
                .field("authorization", &"<redacted>")
                .finish(),
        }
    }
}

impl Caller {
    /// Who owns this caller's calls: the user name, or the mailbox.
    pub fn owner(&self) -> &str {
        match self {
            Self::Local(name) => name,
            Self::Mailbox { caller, .. } => &caller.owner,
        }
    }

    /// The login name (logs, dial-plan groups, `ExchangeImpersonation`).
    pub fn login(&self) -> &str {
        match self {
            Self::Local(name) => name,
            Self::Mailbox { caller, .. } => &caller.login,
        }
    }
}

/// The outcome of identifying a request.
#[derive(Debug)]
pub enum Identified {
    /// Authenticated.
    Caller(Caller),
    /// No valid credentials: HTTP 401.
    Refused,
    /// Not a local user, and the mailbox server could not be asked.
    MailboxUnavailable(mailbox_client::MailboxError),
}

/// Why a login failed (the `reason` of the log line and of `openum_auth_failures_total`).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum FailureReason {
    /// A local user with another password.
    BadPassword,
    /// Right password or token, but the user is disabled (`openum user disable`).
    Disabled,
    /// The mailbox server refused the credentials (after openum's own users did).
    MailboxRefused,
    /// Not a well-formed Basic or Bearer credential.
    Malformed,
    /// The address or user name is locked out after repeated failures; not checked.
    Throttled,
    /// No token with this value (never issued, or revoked).
    UnknownToken,
    /// No local user with this name.
    UnknownUser,
    /// A scheme openum does not check itself (e.g. NTLM without a mailbox server).
    UnsupportedScheme,
}

impl FailureReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadPassword => "bad_password",
            Self::Disabled => "disabled",
            Self::MailboxRefused => "mailbox_refused",
            Self::Malformed => "malformed",
            Self::Throttled => "throttled",
            Self::UnknownToken => "unknown_token",
            Self::UnknownUser => "unknown_user",
            Self::UnsupportedScheme => "unsupported_scheme",
        }
    }
}

/// What a request presents, as far as logs may show it.
struct Presented {
    /// `basic`, `bearer` or `other`.
    scheme: &'static str,
    /// The Basic user name as given (cut to [`MAX_LOGGED_NAME`] characters).
    user: Option<String>,
}

impl Presented {
    fn of(value: &str) -> Self {
        let (scheme, rest) = split_scheme(value);
        if scheme.eq_ignore_ascii_case("bearer") {
            return Self {
                scheme: "bearer",
                user: None,
            };
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Self {
                scheme: "other",
                user: None,
            };
        }
        Self {
            scheme: "basic",
            user: basic_pair(rest).map(|(user, _)| user.chars().take(MAX_LOGGED_NAME).collect()),
        }
    }
}

fn split_scheme(value: &str) -> (&str, &str) {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    (scheme, rest.trim())
}

/// The user name and password of a Basic credential; `None` when it is not base64 of UTF-8 with
/// a ':' (RFC 7617 §2).
fn basic_pair(encoded: &str) -> Option<(String, String)> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
}

/// How a client address is shown in logs.
struct Shown(Option<IpAddr>);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => address.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Identifies the caller of a request from `client`: local users and tokens first, then (with
/// `[mailbox]`) the mailbox server with the caller's own header. Failures are logged, counted and
/// throttled here.
pub async fn identify(
    local: &Authenticator,
    mailbox: Option<&MailboxService>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
) -> Result<Identified, StoreError> {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        // A header with non-visible-ASCII bytes carries no credential openum could have
        // issued: it is answered like a missing one (401).
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(Identified::Refused);
    };
    let key: [u8; 32] = Sha256::digest(value.trim().as_bytes()).into();
    if let Some(name) = local.cached(&key).await? {
        return Ok(Identified::Caller(Caller::Local(name)));
    }
    let presented = Presented::of(value);
    // A token is checked before the lockouts: the lookup is cheap, and a valid token (256 random
    // bits) cannot be a guess, so a client with one keeps working while its address is locked.
    let mut checked = None;
    if presented.scheme == "bearer" {
        match local.verify(value, key).await? {
            Ok(name) => return Ok(Identified::Caller(Caller::Local(name))),
            Err(reason) => checked = Some(reason),
        }
    }
    let now = Instant::now();
    if let Some(lockout) = local
        .throttle
        .locked(client, presented.user.as_deref(), now)
    {
        tracing::debug!(
            locked = lockout.by.as_str(),
            remaining_secs = lockout.remaining.as_secs(),
            "login not checked: locked out"
        );
        local.failed(&presented, client, FailureReason::Throttled, now);
        return Ok(Identified::Refused);
    }
    let checked = match checked {
        Some(reason) => Err(reason),
        None => local.verify(value, key).await?,
    };
    let mut reason = match checked {
        Ok(name) => {
            local.throttle.succeeded(client, &name);
            return Ok(Identified::Caller(Caller::Local(name)));
        }
        Err(reason) => reason,
    };
    if let (Some(mailbox), false) = (mailbox, reason == FailureReason::Disabled) {
        match mailbox.verify(value).await {
            Ok(Some(caller)) => {
                let name = presented.user.as_deref().unwrap_or(&caller.login);
                local.throttle.succeeded(client, name);
                return Ok(Identified::Caller(Caller::Mailbox {
                    caller,
                    authorization: value.trim().to_owned(),
                    via: None,
                }));
            }
            Ok(None) => reason = FailureReason::MailboxRefused,
            Err(error) => return Ok(Identified::MailboxUnavailable(error)),
        }
    }
    local.failed(&presented, client, reason, now);
    Ok(Identified::Refused)
}

/// A remembered verification.
struct Verified {
    name: String,
    generation: i64,
    at: Instant,
    /// The credential epoch at which the store last confirmed it (`None`: the store could not
    /// vouch then, so the next use checks it again).
    checked: Option<u64>,
    /// The stored hash of the API token it verified (`None`: a password).
    token: Option<String>,
}

/// Verifies request credentials against the store, and throttles failures.
pub struct Authenticator {
    store: Arc<dyn Store>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    throttle: Throttle,
    proxies: TrustedProxies,
    metrics: Option<Arc<Metrics>>,
    /// Remembered verifications checked against the store again (the epoch had moved).
    store_checks: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    /// An authenticator over `store`, with the default throttling and no trusted proxies.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            verified: Mutex::new(HashMap::new()),
            throttle: Throttle::new(ThrottleSettings::default()),
            proxies: TrustedProxies::default(),
            metrics: None,
            store_checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times a remembered verification was checked against the store again because
    /// the store's credential epoch had moved (or could not be vouched for).
    pub fn store_checks(&self) -> u64 {
        self.store_checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// With these throttling rules.
    #[must_use]
    pub fn with_throttle(mut self, settings: ThrottleSettings) -> Self {
        self.throttle = Throttle::new(settings);
        self
    }

    /// With these trusted reverse proxies.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// Counting failures in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The client address of a request from `peer` (see [`crate::client_address`]).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.proxies.client(peer, headers)
    }

    /// The authenticated local user for these request headers, or `None` (→ 401). No
    /// throttling, logging or mailbox server: [`identify`] is the request path.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, StoreError> {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let key: [u8; 32] = Sha256::digest(value.trim().as_bytes()).into();
        if let Some(name) = self.cached(&key).await? {
            return Ok(Some(name));
        }
        Ok(self.verify(value, key).await?.ok())
    }

    /// Logs, counts and throttles a failed login.
    fn failed(
        &self,
        presented: &Presented,
        client: Option<IpAddr>,
        reason: FailureReason,
        now: Instant,
    ) {
        if let Some(metrics) = &self.metrics {
            metrics.auth_failure(presented.scheme, reason.as_str());
        }
        let user = presented.user.as_deref().unwrap_or_default();
        if reason == FailureReason::UnsupportedScheme {
            tracing::debug!(user, client = %Shown(client), scheme = presented.scheme, reason = reason.as_str(), "login not checked: unsupported scheme");
            return;
        }
        tracing::warn!(user, client = %Shown(client), scheme = presented.scheme, reason = reason.as_str(), "login failed");
        if reason == FailureReason::Throttled {
            return;
        }
        for lockout in self.throttle.failed(client, presented.user.as_deref(), now) {
            if let Some(metrics) = &self.metrics {
                metrics.auth_lockout();
            }
            tracing::warn!(
                locked = lockout.by.as_str(),
                user,
                client = %Shown(client),
                secs = lockout.remaining.as_secs(),
                "too many failed logins: locked out"
            );
        }
    }

    async fn verify(
        &self,
        value: &str,
        key: [u8; 32],
    ) -> Result<Result<String, FailureReason>, StoreError> {
        let (scheme, rest) = split_scheme(value);
        // Read before the credential, so a change after the read moves it on and the memory made
        // here is checked again.
        let epoch = self.store.credential_epoch().await?;
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Ok(Err(FailureReason::Malformed));
            }
            let hash = token_hash(rest);
            return Ok(match self.store.token_credential(&hash).await? {
                None => Err(FailureReason::UnknownToken),
                Some(token) if token.disabled => Err(FailureReason::Disabled),
                Some(token) => {
                    self.remember(key, &token.user, token.generation, epoch, Some(hash));
                    Ok(token.user)
                }
            });
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(Err(FailureReason::UnsupportedScheme));
        }
        let Some((user, password)) = basic_pair(rest) else {
            return Ok(Err(FailureReason::Malformed));
        };
        let record = self.store.credential(&user).await?;
        // An unknown user costs one Argon2 run too, so the answer's timing does not tell which
        // names exist.
        let hash = match &record {
            Some(record) => record.password_hash.clone(),
            None => dummy_hash().to_owned(),
        };
        let ok = tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
            // verify_password's only error is "this password does not match".
            Ok(parsed) => Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()),
            Err(error) => Err(error),
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let Some(record) = record else {
            return Ok(Err(FailureReason::UnknownUser));
        };
        match ok {
            Ok(true) if record.disabled => Ok(Err(FailureReason::Disabled)),
            Ok(true) => {
                self.remember(key, &record.name, record.generation, epoch, None);
                Ok(Ok(record.name))
            }
            Ok(false) => Ok(Err(FailureReason::BadPassword)),
            Err(error) => {
                // Nobody can log in as this user until the password is set again.
                tracing::error!(user = %record.name, %error, "stored password hash is unreadable; reset it with `openum user add`");
                Ok(Err(FailureReason::BadPassword))
            }
        }
    }

    fn remember(
        &self,
        key: [u8; 32],
        name: &str,
        generation: i64,
        checked: Option<u64>,
        token: Option<String>,
    ) {
        let mut cache = calls::sync::lock(&self.verified);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, v| v.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Verified {
                name: name.to_owned(),
                generation,
                at: Instant::now(),
                checked,
                token,
            },
        );
    }

    /// The user of a remembered verification, if it is still current: at once while the
    /// store's credential epoch has not moved since it was last checked; otherwise if the store
    /// still holds the generation it was made at, the user is enabled and (for a token) the
    /// token exists. A verification that is no longer current is forgotten.
    async fn cached(&self, key: &[u8; 32]) -> Result<Option<String>, StoreError> {
        // Read before anything is checked against the store (see `verify`).
        let epoch = self.store.credential_epoch().await?;
        let (name, generation, token) = {
            let cache = calls::sync::lock(&self.verified);
            match cache.get(key) {
                Some(v) if v.at.elapsed() < CACHE_TTL => {
                    if epoch.is_some() && v.checked == epoch {
                        return Ok(Some(v.name.clone()));
                    }
                    (v.name.clone(), v.generation, v.token.clone())
                }
                _ => return Ok(None),
            }
        };
        self.store_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let current = match &token {
            None => self
                .store
                .credential_state(&name)
                .await?
                .is_some_and(|state| state.generation == generation && !state.disabled),
            Some(hash) => self
                .store
                .token_credential(hash)
                .await?
                .is_some_and(|t| t.user == name && t.generation == generation && !t.disabled),
        };
        let mut cache = calls::sync::lock(&self.verified);
        if current {
            // Unless another request replaced it meanwhile.
            if let Some(v) = cache
                .get_mut(key)
                .filter(|v| v.generation == generation && v.token == token)
            {
                v.checked = epoch;
            }
            Ok(Some(name))
        } else {
            cache.remove(key);
            Ok(None)
        }
    }
}

/// A valid Argon2id hash of a password nobody knows, to verify unknown users' passwords against.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        // Hashing a fresh random password with a random salt cannot fail; were it to, an empty
        // string makes every unknown-user check fail to parse, which refuses them all the same.
        hash_password(&secret).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, User};
    use calls::CallRecord;

    async fn authenticator() -> Authenticator {
        let store = SqliteStore::in_memory().unwrap();
        store
            .upsert_user(User {
                name: "alice".into(),
                password_hash: hash_password("s3cret").unwrap(),
                play_on_phone: true,
            })
            .await
            .unwrap();
        let (_, _) = new_token();
        store
            .insert_token("alice", &token_hash("oum_known"), "t")
            .await
            .unwrap();
        Authenticator::new(Arc::new(store))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        headers(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ))
    }

    #[test]
    fn a_mailbox_callers_debug_output_leaves_their_header_out() {
        let caller = Caller::Mailbox {
            caller: MailboxCaller {
                owner: "mailbox:00".into(),
                login: "alice@example.com".into(),
            },
            authorization: "Basic c2VjcmV0".into(),
            via: None,
        };
        let shown = format!("{caller:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("alice@example.com"), "{shown}");
    }

    #[tokio::test]
    async fn basic_and_bearer_credentials_are_checked() {
        let auth = authenticator().await;
        assert_eq!(
            auth.authenticate(&basic("alice", "s3cret")).await.unwrap(),
            Some("alice".into())
        );
        // Second time from the cache, same answer.
        assert_eq!(
            auth.authenticate(&basic("alice", "s3cret")).await.unwrap(),
            Some("alice".into())
        );
        assert_eq!(
            auth.authenticate(&basic("alice", "wrong")).await.unwrap(),
            None
        );
        assert_eq!(
            auth.authenticate(&basic("bob", "s3cret")).await.unwrap(),
            None
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer oum_known"))
                .await
                .unwrap(),
            Some("alice".into())
        );
        assert_eq!(
            auth.authenticate(&headers("Bearer oum_unknown"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            auth.authenticate(&headers("Basic !!!")).await.unwrap(),
            None
        );
        assert_eq!(auth.authenticate(&HeaderMap::new()).await.unwrap(), None);
        assert_eq!(
            auth.authenticate(&headers("NTLM TlRMTVNTUAABAAAA"))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_reset_disabled_or_revoked_credential_is_refused_at_once_despite_the_cache() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        store
            .upsert_user(User {
                name: "alice".into(),
                password_hash: hash_password("old").unwrap(),
                play_on_phone: false,
            })
            .await
            .unwrap();
        store
            .insert_token("alice", &token_hash("oum_t"), "t")
            .await
            .unwrap();
        // Two authenticators: two processes sharing the store.
        let (a, b) = (
            Authenticator::new(Arc::clone(&store) as Arc<dyn Store>),
            Authenticator::new(Arc::clone(&store) as Arc<dyn Store>),
        );
        for auth in [&a, &b] {
            assert_eq!(
                auth.authenticate(&basic("alice", "old")).await.unwrap(),
                Some("alice".into())
            );
        }
        store
            .set_password("alice", &hash_password("new").unwrap())
            .await
            .unwrap();
        for auth in [&a, &b] {
            assert_eq!(
                auth.authenticate(&basic("alice", "old")).await.unwrap(),
                None
            );
            assert_eq!(
                auth.authenticate(&basic("alice", "new")).await.unwrap(),
                Some("alice".into())
            );
        }
        assert!(!store.user("alice").await.unwrap().unwrap().play_on_phone);
        store.set_user_disabled("alice", true).await.unwrap();
        for auth in [&a, &b] {
            assert_eq!(
                auth.authenticate(&basic("alice", "new")).await.unwrap(),
                None
            );
            assert_eq!(
                auth.authenticate(&headers("Bearer oum_t")).await.unwrap(),
                None
            );
        }
        store.set_user_disabled("alice", false).await.unwrap();
        assert_eq!(
            a.authenticate(&headers("Bearer oum_t")).await.unwrap(),
            Some("alice".into())
        );
        store.revoke_tokens_labelled("t").await.unwrap();
        assert_eq!(
            a.authenticate(&headers("Bearer oum_t")).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_user_deleted_and_created_again_is_not_taken_for_the_old_one() {
        let store = Arc::new(SqliteStore::in_memory().unwrap());
        let auth = Authenticator::new(Arc::clone(&store) as Arc<dyn Store>);
        for password in ["first", "second"] {
            store
                .upsert_user(User {
                    name: "alice".into(),
                    password_hash: hash_password(password).unwrap(),
                    play_on_phone: true,
                })
                .await
                .unwrap();
            assert_eq!(
                auth.authenticate(&basic("alice", password)).await.unwrap(),
                Some("alice".into())
            );
            store.delete_user("alice").await.unwrap();
        }
        store
            .upsert_user(User {
                name: "alice".into(),
                password_hash: hash_password("third").unwrap(),
                play_on_phone: true,
            })
            .await
            .unwrap();
        for password in ["first", "second"] {
            assert_eq!(
                auth.authenticate(&basic("alice", password)).await.unwrap(),
                None
            );
        }
    }

    /// Two stores on one SQLite file: `openum serve` and the `openum user|token` CLI.
    #[tokio::test]
    async fn a_remembered_verification_needs_no_store_read_until_another_process_changes_credentials(
    ) {
        use crate::store::SQLITE_CREDENTIAL_LAG;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openum.db");
        let server = Arc::new(SqliteStore::open(&path).unwrap());
        let cli = SqliteStore::open(&path).unwrap();
        cli.upsert_user(User {
            name: "alice".into(),
            password_hash: hash_password("old").unwrap(),
            play_on_phone: true,
        })
        .await
        .unwrap();
        cli.insert_token("alice", &token_hash("oum_t"), "t")
            .await
            .unwrap();
        let auth = Authenticator::new(Arc::clone(&server) as Arc<dyn Store>);
        let (password, bearer) = (basic("alice", "old"), headers("Bearer oum_t"));
        let alice = Some("alice".to_owned());
        for _ in 0..50 {
            assert_eq!(auth.authenticate(&password).await.unwrap(), alice);
            assert_eq!(auth.authenticate(&bearer).await.unwrap(), alice);
        }
        // Call writes, by either process, are no credential change.
        let call = CallRecord::dialling("c1", "alice", "n1", "1", "i", 1);
        server.insert_call(&call).await.unwrap();
        cli.update_call(&call).await.unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(auth.authenticate(&password).await.unwrap(), alice);
        assert_eq!(auth.store_checks(), 0, "checked against the store");

        // Each change by the other process counts once its bound has passed.
        cli.set_user_disabled("alice", true).await.unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(auth.authenticate(&password).await.unwrap(), None);
        assert_eq!(auth.authenticate(&bearer).await.unwrap(), None);
        cli.set_user_disabled("alice", false).await.unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(auth.authenticate(&password).await.unwrap(), alice);
        assert_eq!(auth.authenticate(&bearer).await.unwrap(), alice);
        cli.revoke_tokens_labelled("t").await.unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(auth.authenticate(&bearer).await.unwrap(), None);
        assert_eq!(auth.authenticate(&password).await.unwrap(), alice);
        cli.set_password("alice", &hash_password("new").unwrap())
            .await
            .unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(auth.authenticate(&password).await.unwrap(), None);
        assert_eq!(
            auth.authenticate(&basic("alice", "new")).await.unwrap(),
            alice
        );
        // A user deleted and created again with the same name starts a new generation count;
        // the old password is still refused.
        cli.delete_user("alice").await.unwrap();
        cli.upsert_user(User {
            name: "alice".into(),
            password_hash: hash_password("other").unwrap(),
            play_on_phone: true,
        })
        .await
        .unwrap();
        tokio::time::sleep(SQLITE_CREDENTIAL_LAG).await;
        assert_eq!(
            auth.authenticate(&basic("alice", "new")).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn failures_are_counted_by_reason_and_a_locked_out_address_is_not_checked() {
        let metrics = Arc::new(Metrics::new());
        let auth = authenticator()
            .await
            .with_metrics(Arc::clone(&metrics))
            .with_throttle(ThrottleSettings {
                max_failures: 2,
                ..ThrottleSettings::default()
            });
        let client = Some(IpAddr::from([192, 0, 2, 9]));
        let refused = |r: Identified| matches!(r, Identified::Refused);
        for (h, reason) in [
            (basic("alice", "wrong"), "bad_password"),
            (basic("nobody", "x"), "unknown_user"),
        ] {
            assert!(refused(identify(&auth, None, &h, client).await.unwrap()));
            let text = metrics.render(&calls::CallServiceFigures::default(), &[]);
            let line =
                format!("openum_auth_failures_total{{scheme=\"basic\",reason=\"{reason}\"}} 1");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        // Locked out now: even the right password is refused, and counted as throttled.
        assert!(refused(
            identify(&auth, None, &basic("alice", "s3cret"), client)
                .await
                .unwrap()
        ));
        let text = metrics.render(&calls::CallServiceFigures::default(), &[]);
        assert!(
            text.contains("reason=\"throttled\"} 1")
                && text.contains("openum_auth_lockouts_total 1"),
            "{text}"
        );
        // A valid token is no guess: it works from the locked address.
        assert!(matches!(
            identify(&auth, None, &headers("Bearer oum_known"), client)
                .await
                .unwrap(),
            Identified::Caller(Caller::Local(name)) if name == "alice"
        ));
        // Another address is not locked.
        let other = Some(IpAddr::from([192, 0, 2, 10]));
        assert!(matches!(
            identify(&auth, None, &basic("alice", "s3cret"), other)
                .await
                .unwrap(),
            Identified::Caller(Caller::Local(name)) if name == "alice"
        ));
        // No header is a challenge, not a failure.
        assert!(refused(
            identify(&auth, None, &HeaderMap::new(), other)
                .await
                .unwrap()
        ));
        let text = metrics.render(&calls::CallServiceFigures::default(), &[]);
        assert_eq!(
            text.matches("openum_auth_failures_total{").count(),
            3,
            "{text}"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(ha, token_hash(&a));
        assert_eq!(ha.len(), 64);
    }
}
