//! Authentication: HTTP Basic against Argon2id password hashes, and Bearer API tokens.
//!
//! Argon2 is deliberately slow (tens of milliseconds), and EWS clients send their credentials on
//! every request. A successful verification is therefore remembered for a short time under a
//! SHA-256 digest of the `Authorization` header (never the plaintext), so a client's steady stream
//! of requests costs one Argon2 run (or token lookup) per [`CACHE_TTL`]. Failures are never
//! cached.
//!
//! API tokens are 256 random bits, so a fast hash (SHA-256) is the right way to store them: a
//! slow hash protects low-entropy secrets, which these are not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::mailbox::{MailboxCaller, MailboxService};
use crate::store::{Store, StoreError};

/// How long a verified Basic credential is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(120);
const CACHE_MAX: usize = 10_000;

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

/// Identifies the caller of a request: local users and tokens first, then (with `[mailbox]`)
/// the mailbox server with the caller's own header.
pub async fn identify(
    local: &Authenticator,
    mailbox: Option<&MailboxService>,
    headers: &HeaderMap,
) -> Result<Identified, StoreError> {
    if let Some(name) = local.authenticate(headers).await? {
        return Ok(Identified::Caller(Caller::Local(name)));
    }
    let (Some(mailbox), Some(value)) = (
        mailbox,
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) else {
        return Ok(Identified::Refused);
    };
    Ok(match mailbox.verify(value).await {
        Ok(Some(caller)) => Identified::Caller(Caller::Mailbox {
            caller,
            authorization: value.trim().to_owned(),
            via: None,
        }),
        Ok(None) => Identified::Refused,
        Err(error) => Identified::MailboxUnavailable(error),
    })
}

/// Verifies request credentials against the store.
pub struct Authenticator {
    store: Arc<dyn Store>,
    verified: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl Authenticator {
    /// An authenticator over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The authenticated user for these request headers, or `None` (→ 401).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<String>, StoreError> {
        let Some(value) = headers
            .get(axum::http::header::AUTHORIZATION)
            // A header with non-visible-ASCII bytes carries no credential openum could have
            // issued: it is answered like a missing one (401).
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let key: [u8; 32] = Sha256::digest(value.trim().as_bytes()).into();
        if let Some(name) = self.cached(&key) {
            return Ok(Some(name));
        }
        let user = self.verify(value).await?;
        if let Some(name) = &user {
            self.remember(key, name);
        }
        Ok(user)
    }

    async fn verify(&self, value: &str) -> Result<Option<String>, StoreError> {
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if rest.is_empty() {
                return Ok(None);
            }
            return self.store.token_user(&token_hash(rest)).await;
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Ok(None);
        }
        // Not base64, not UTF-8 or without ':' is not a Basic credential: 401, as for a wrong
        // password (RFC 7617 §2).
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return Ok(None);
        };
        let Some(record) = self.store.user(&user).await? else {
            return Ok(None);
        };
        let hash = record.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
            // verify_password's only error is "this password does not match".
            Ok(parsed) => Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()),
            Err(error) => Err(error),
        })
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
        match ok {
            Ok(ok) => Ok(ok.then_some(record.name)),
            Err(error) => {
                // Nobody can log in as this user until the password is set again.
                tracing::error!(user = %record.name, %error, "stored password hash is unreadable; reset it with `openum user add`");
                Ok(None)
            }
        }
    }

    fn remember(&self, key: [u8; 32], name: &str) {
        let mut cache = calls::sync::lock(&self.verified);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (name.to_owned(), Instant::now()));
    }

    fn cached(&self, key: &[u8; 32]) -> Option<String> {
        let cache = calls::sync::lock(&self.verified);
        let (name, at) = cache.get(key)?;
        (at.elapsed() < CACHE_TTL).then(|| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, User};

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
