//! TLS on the EWS endpoint: the certificate chain and key of `[server] tls_cert` / `tls_key`
//! served with rustls (ring provider, TLS 1.2 and 1.3 only, ALPN `http/1.1`), and reloaded in
//! place on SIGHUP.
//!
//! A reload builds a whole new [`rustls::ServerConfig`] from the files and swaps it in only if
//! it loads and the key fits the certificate; a bad pair keeps the old one and logs why. Each
//! new connection takes the configuration current at its accept, so connections (and the calls
//! they placed) that were open before a reload carry on untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::Digest as _;

use crate::config::ServerConfig;

/// Why a certificate/key pair cannot be served; names the key and the file. The underlying
/// cause is the error's source (not repeated in its message): print it with
/// [`calls::error_chain`] or `{:#}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file is unreadable or not PEM.
    #[error("cannot read server.tls_cert {}", .path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("server.tls_cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("server.tls_key {} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)", .path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key file is unreadable or not PEM.
    #[error("cannot read a private key (PKCS#8, RSA or EC PEM) from server.tls_key {}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The key is not the leaf certificate's.
    #[error("server.tls_key {} is not the key of the first certificate in server.tls_cert {} (the server's own certificate must come first, then its intermediates)", .key.display(), .cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the pair (e.g. an unsupported key type).
    #[error("server.tls_key {} cannot be served with server.tls_cert {}", .key.display(), .cert.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason (e.g. "keys do not match").
        #[source]
        source: rustls::Error,
    },
}

/// A loaded pair: what is served, and the leaf certificate's SHA-256 fingerprint for logs.
pub struct Loaded {
    /// The rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), lower-case hex with colons.
    pub fingerprint: String,
    /// Certificates in the chain (leaf first).
    pub chain_len: usize,
}

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key) into a rustls server
/// configuration, checking that the key belongs to the certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificate {
            path: cert.to_owned(),
            source,
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    };
    let fingerprint = fingerprint(leaf);
    let chain_len = chain.len();
    let private = PrivateKeyDer::from_pem_file(key).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key.to_owned(),
        },
        source => TlsError::Key {
            path: key.to_owned(),
            source,
        },
    })?;
    let pair = |source| match source {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            }
        }
        source => TlsError::Pair {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(pair)?
        .with_no_client_auth()
        // Checks that the key's public half is the certificate's.
        .with_single_cert(chain, private)
        .map_err(pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
        chain_len,
    })
}

/// SHA-256 of a certificate's DER, as `ab:cd:…`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    sha2::Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The configured pair, swappable while connections are served.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl Tls {
    /// Loads `[server] tls_cert` / `tls_key`; `None` when TLS is not configured.
    pub fn from_config(server: &ServerConfig) -> Result<Option<Arc<Self>>, TlsError> {
        let Some((cert, key)) = server.tls_files() else {
            return Ok(None);
        };
        let loaded = load(cert, key)?;
        tracing::info!(
            cert = %cert.display(),
            sha256 = %loaded.fingerprint,
            chain = loaded.chain_len,
            "TLS certificate loaded"
        );
        Ok(Some(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(loaded.config),
        })))
    }

    /// An acceptor with the configuration current now (a new connection's).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        // A panic while holding the lock cannot leave a half-written Arc: the value is valid.
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner);
        tokio_rustls::TlsAcceptor::from(Arc::clone(&config))
    }

    /// Re-reads the files; swaps the new pair in only if it loads. Returns the new leaf's
    /// fingerprint.
    pub fn reload(&self) -> Result<String, TlsError> {
        let loaded = load(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded.config;
        Ok(loaded.fingerprint)
    }

    /// Reloads and logs the outcome: the new fingerprint, or why the old pair stays.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(sha256) => tracing::info!(
                cert = %self.cert.display(),
                %sha256,
                "TLS certificate reloaded; new connections use it"
            ),
            Err(error) => tracing::error!(
                error = %calls::error_chain(&error),
                "TLS certificate NOT reloaded; still serving the previous one"
            ),
        }
    }
}

/// Handles SIGHUP for the rest of the process: reloads `tls` (if configured), and never lets
/// the signal's default action end the server (and with it the live calls). Must be called
/// inside the runtime.
pub fn reload_on_sighup(tls: Option<Arc<Tls>>) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match &tls {
                    Some(tls) => {
                        let tls = Arc::clone(tls);
                        // File reads and key parsing: off the async workers.
                        if let Err(error) =
                            tokio::task::spawn_blocking(move || tls.reload_and_log()).await
                        {
                            tracing::error!(%error, "TLS reload task failed");
                        }
                    }
                    None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(tls);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let err = load(&cert, &key).err().unwrap().to_string();
        assert!(
            err.contains("server.tls_cert") && err.contains("cert.pem"),
            "{err}"
        );
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let err = load(&cert, &key).err().unwrap().to_string();
        assert!(
            err.contains("server.tls_cert") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
