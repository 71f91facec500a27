//! SIP over TLS to a gateway (RFC 3261 §26, RFC 5630): openum opens the connection itself with
//! rustls (ring provider) — the gateway's certificate checked against the system's roots or the
//! gateway's `ca_file`, SNI and the certificate name taken from the gateway URI's host, an
//! optional client certificate for mutual TLS — and hands the established stream to rsipstack,
//! whose transport layer then reuses it for every request to that gateway (and for requests the
//! gateway sends back over it, RFC 5923 `alias` on our Via).
//!
//! Why not rsipstack's own TLS dialer: it verifies against an empty root store unless PEM CA
//! bytes are given (so a public-CA trunk always fails), keeps one configuration for the whole
//! transport layer rather than per gateway, and reduces handshake errors to strings. A new
//! connection is opened only when the cached one is gone (closed by the peer, or idle-closed by
//! rsipstack).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsipstack::sip::{HostWithPort, Transport};
use rsipstack::transport::tls::TlsConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_util::sync::CancellationToken;

use crate::settings::TlsSettings;

/// Why a gateway's TLS settings cannot be used (at start: a configuration mistake).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A file named in the settings cannot be read or holds nothing usable.
    #[error("gateway {gateway:?}: {key} {path}: {problem}")]
    File {
        /// The gateway.
        gateway: String,
        /// The setting (`ca_file`, `client_cert`, `client_key`).
        key: &'static str,
        /// Its value.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// `client_cert` without `client_key`, or the other way round.
    #[error("gateway {0:?}: client_cert and client_key must be given together")]
    ClientPair(String),
    /// rustls refused the certificate/key pair or a root.
    #[error("gateway {gateway:?}: rustls refused the {what}")]
    Rustls {
        /// The gateway.
        gateway: String,
        /// What was refused.
        what: &'static str,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The system has no usable root certificates and no `ca_file` is set.
    #[error("gateway {0:?}: no system root certificates found; set ca_file")]
    NoRoots(String),
    /// The URI's host is not a valid TLS server name.
    #[error("gateway {gateway:?}: {host:?} cannot be a TLS server name")]
    ServerName {
        /// The gateway.
        gateway: String,
        /// The host.
        host: String,
    },
}

/// Why a TLS connection to a gateway could not be opened (the call ends with cause Other).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConnectError {
    /// The target address does not resolve.
    #[error("cannot resolve {target}")]
    Resolve {
        /// `host:port`.
        target: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {address}")]
    Connect {
        /// Where.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: the certificate check (unknown issuer, wrong name, expired) or
    /// the peer's refusal (e.g. of our client certificate).
    #[error("TLS handshake with {address} as {name:?} failed")]
    Handshake {
        /// Where.
        address: SocketAddr,
        /// The name checked.
        name: String,
        /// rustls' reason (inside the I/O error).
        #[source]
        source: std::io::Error,
    },
    /// rsipstack did not take the connection.
    #[error("cannot hand the TLS connection to the SIP stack")]
    Stack(#[source] Box<rsipstack::Error>),
}

/// A gateway's TLS client: its rustls configuration and the connections in use, one per
/// address the gateway's host resolved to (RFC 3263: each is an attempt of its own, and every
/// one must present a certificate for the gateway's configured host).
pub struct TlsClient {
    gateway: String,
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    /// The open connections' tokens by address (cancelled by rsipstack when a connection
    /// closes); held while a connection is being opened, so that concurrent calls share one.
    open: tokio::sync::Mutex<std::collections::HashMap<SocketAddr, CancellationToken>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("gateway", &self.gateway)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read(gateway: &str, key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::File {
        gateway: gateway.to_owned(),
        key,
        path: path.to_owned(),
        problem: "cannot be read".into(),
        source: Some(Box::new(source)),
    })
}

fn certificates(
    gateway: &str,
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read(gateway, key, path)?;
    let bad = |problem: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
        TlsSetupError::File {
            gateway: gateway.to_owned(),
            key,
            path: path.to_owned(),
            problem: problem.to_owned(),
            source,
        }
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("is not valid PEM", Some(Box::new(e))))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate", None));
    }
    Ok(certs)
}

impl TlsClient {
    /// The client for gateway `name`, whose certificate must be valid for `host` (the host of
    /// its configured URI, also sent as SNI) whichever address it is reached at.
    pub fn new(name: &str, host: &str, settings: &TlsSettings) -> Result<Self, TlsSetupError> {
        if settings.client_cert.is_some() != settings.client_key.is_some() {
            return Err(TlsSetupError::ClientPair(name.to_owned()));
        }
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_file {
            Some(path) => {
                for cert in certificates(name, "ca_file", path)? {
                    roots.add(cert).map_err(|source| TlsSetupError::Rustls {
                        gateway: name.to_owned(),
                        what: "CA certificate in ca_file",
                        source,
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for error in &found.errors {
                    tracing::warn!(gateway = name, %error, "a system root certificate store could not be read");
                }
                // Roots the platform lists but rustls cannot parse are skipped, as browsers do.
                let (added, ignored) = roots.add_parsable_certificates(found.certs);
                if ignored > 0 {
                    tracing::debug!(gateway = name, ignored, "unparsable system roots skipped");
                }
                if added == 0 {
                    return Err(TlsSetupError::NoRoots(name.to_owned()));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsSetupError::Rustls {
                gateway: name.to_owned(),
                what: "protocol versions",
                source,
            })?
            .with_root_certificates(roots);
        let config = match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => {
                let chain = certificates(name, "client_cert", cert)?;
                let pem = read(name, "client_key", key)?;
                let private =
                    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsSetupError::File {
                        gateway: name.to_owned(),
                        key: "client_key",
                        path: key.clone(),
                        problem: "holds no PEM private key".into(),
                        source: Some(Box::new(e)),
                    })?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|source| TlsSetupError::Rustls {
                        gateway: name.to_owned(),
                        what: "client certificate and key",
                        source,
                    })?
            }
            // Checked above: both or neither.
            _ => builder.with_no_client_auth(),
        };
        let host_name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(host_name.to_owned()).map_err(|_| TlsSetupError::ServerName {
                gateway: name.to_owned(),
                host: host.to_owned(),
            })?;
        Ok(Self {
            gateway: name.to_owned(),
            config: Arc::new(config),
            server_name,
            open: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// `target` (`host:port`, normally the address of the attempt) as rsipstack keys its
    /// connections, with a connection to it open in `transport` (the cached one if it is still
    /// alive, else a new one), and the token that is cancelled when that connection closes.
    pub async fn connect(
        &self,
        target: &str,
        transport: &rsipstack::transport::TransportLayer,
        cancel: &CancellationToken,
    ) -> Result<(SipAddr, CancellationToken), TlsConnectError> {
        let address = tokio::net::lookup_host(target)
            .await
            .map_err(|source| TlsConnectError::Resolve {
                target: target.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| TlsConnectError::Resolve {
                target: target.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
            })?;
        let remote = SipAddr {
            r#type: Some(Transport::Tls),
            addr: HostWithPort::from(address),
        };
        let mut open = self.open.lock().await;
        open.retain(|_, token| !token.is_cancelled());
        if let Some(token) = open.get(&address) {
            return Ok((remote, token.clone()));
        }
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|source| TlsConnectError::Connect { address, source })?;
        // SIP messages are small and latency matters more than packing.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on the SIP TLS connection");
        }
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&self.config));
        let stream = connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| TlsConnectError::Handshake {
                address,
                name: self.server_name.to_str().into_owned(),
                source,
            })?;
        let token = cancel.child_token();
        let connection =
            TlsConnection::from_client_stream(stream, remote.clone(), Some(token.clone()))
                .await
                .map_err(|e| TlsConnectError::Stack(Box::new(e)))?;
        transport.add_connection(SipConnection::Tls(connection));
        tracing::info!(gateway = %self.gateway, %address, name = %self.server_name.to_str(), "SIP TLS connection open");
        open.insert(address, token.clone());
        Ok((remote, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ca_file: Option<PathBuf>, client_cert: Option<PathBuf>) -> TlsSettings {
        TlsSettings {
            ca_file,
            client_cert,
            client_key: None,
        }
    }

    #[test]
    fn unusable_files_are_refused_naming_gateway_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let missing = dir.path().join("missing.pem");
        for (ca, expected) in [
            (&junk, "holds no PEM certificate"),
            (&missing, "cannot be read"),
        ] {
            let error = TlsClient::new("sbc", "sbc.example.com", &settings(Some(ca.clone()), None))
                .unwrap_err()
                .to_string();
            assert!(error.contains("\"sbc\""), "{error}");
            assert!(error.contains("ca_file"), "{error}");
            assert!(error.contains(&ca.display().to_string()), "{error}");
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let error = TlsClient::new(
            "sbc",
            "sbc.example.com",
            &settings(None, Some(PathBuf::from("/nonexistent/client.pem"))),
        );
        match error {
            Err(TlsSetupError::ClientPair(gateway)) => assert_eq!(gateway, "sbc"),
            other => panic!("{other:?}"),
        }
    }
}
