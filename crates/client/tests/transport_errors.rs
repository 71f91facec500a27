//! Every transport error class against a real peer on loopback: a closed port, a port that never
//! answers, a name that does not resolve, and TLS servers (rustls, certificates made here with
//! rcgen) whose certificate is self-signed, for another host name or expired — plus the CA file
//! that makes a private CA trusted, and CA files that are not usable.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ews_proto::{encode_response, DisconnectPhoneCallResponse, Response, ResponseEnvelope};
use openum_client::{Auth, CaFileProblem, Client, ClientOptions, Error, TransportCause};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A test CA (its PEM) and the means to sign leaf certificates with it.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "openum test CA");
        let cert = params.self_signed(&key).unwrap();
        Self { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for `names`, valid now, or (`expired`) only during a day in 2020.
    fn leaf(&self, names: &[&str], expired: bool) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 2);
        }
        (params.signed_by(&key, &self.cert, &self.key).unwrap(), key)
    }
}

/// A successful DisconnectPhoneCall answer.
fn disconnected() -> String {
    encode_response(&ResponseEnvelope {
        server_version_info: None,
        body: Response::DisconnectPhoneCall(DisconnectPhoneCallResponse {
            message: ews_proto::ResponseMessage::success(),
        }),
    })
}

/// Reads one HTTP request (head, then Content-Length bytes) and answers `body` with 200.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break;
            }
        }
    }
    let body = disconnected();
    let reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    // The client may have given up (a refused certificate): nothing to answer then.
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// An HTTPS EWS double on loopback serving `cert` (with `key`); returns its port.
async fn tls_server(cert: &rcgen::Certificate, key: &KeyPair) -> u16 {
    let chain = vec![cert.der().clone()];
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A handshake the client aborts (untrusted certificate) is the point of the test.
                if let Ok(stream) = acceptor.accept(socket).await {
                    answer(stream).await;
                }
            });
        }
    });
    port
}

fn client(url: &str, options: &ClientOptions) -> Client {
    Client::with_options(url, Auth::Bearer("t".into()), options).unwrap()
}

fn with_ca(dir: &Path, pem: &str) -> ClientOptions {
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem).unwrap();
    ClientOptions {
        ca_file: Some(path),
        ..ClientOptions::default()
    }
}

/// The class and the message of a failed DisconnectPhoneCall.
async fn failure(client: &Client) -> (Option<TransportCause>, String) {
    let err = client.disconnect_phone_call("x").await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    (err.transport_cause(), err.to_string())
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], false);
    let port = tls_server(&cert, &key).await;
    let url = format!("https://localhost:{port}/EWS/Exchange.asmx");

    let (cause, text) = failure(&client(&url, &ClientOptions::default())).await;
    assert_eq!(cause, Some(TransportCause::CertificateNotTrusted), "{text}");
    assert!(
        text.starts_with(&format!(
            "cannot reach the EWS endpoint {url}: certificate not trusted (unknown issuer) ("
        )),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");

    client(&url, &with_ca(dir.path(), &ca.pem()))
        .disconnect_phone_call("x")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_self_signed_server_certificate_is_not_trusted() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let port = tls_server(&cert, &key).await;
    let url = format!("https://localhost:{port}/EWS/Exchange.asmx");
    let (cause, text) = failure(&client(&url, &ClientOptions::default())).await;
    assert_eq!(cause, Some(TransportCause::CertificateNotTrusted), "{text}");
    assert!(text.contains("certificate not trusted"), "{text}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_hostname_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["mail.example.com"], false);
    let port = tls_server(&cert, &key).await;
    let url = format!("https://localhost:{port}/EWS/Exchange.asmx");
    let (cause, text) = failure(&client(&url, &with_ca(dir.path(), &ca.pem()))).await;
    assert_eq!(
        cause,
        Some(TransportCause::CertificateHostnameMismatch),
        "{text}"
    );
    assert!(text.contains("hostname mismatch"), "{text}");
    assert!(
        text.contains("only valid for DnsName(\"mail.example.com\")"),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_named_expired() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let (cert, key) = ca.leaf(&["localhost"], true);
    let port = tls_server(&cert, &key).await;
    let url = format!("https://localhost:{port}/EWS/Exchange.asmx");
    let (cause, text) = failure(&client(&url, &with_ca(dir.path(), &ca.pem()))).await;
    assert_eq!(cause, Some(TransportCause::CertificateExpired), "{text}");
    assert!(
        text.contains(": certificate expired or not yet valid ("),
        "{text}"
    );
    assert!(text.contains("is not valid after"), "{text}");
}

/// A TCP server on a loopback port of its own (bound here, kept) that hands every connection it
/// accepts to `each`, one after the other; its port.
async fn tcp_server<F, R>(each: F) -> u16
where
    F: Fn(tokio::net::TcpStream) -> R + Send + 'static,
    R: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            each(socket).await;
        }
    });
    port
}

#[tokio::test]
async fn a_plain_http_server_behind_an_https_url_is_a_tls_failure() {
    let port = tcp_server(|mut socket| async move {
        // Whatever arrives (a ClientHello), the answer is plain HTTP.
        let mut chunk = [0u8; 1024];
        let _ = socket.read(&mut chunk).await;
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    })
    .await;
    let url = format!("https://127.0.0.1:{port}/EWS/Exchange.asmx");
    let (cause, text) = failure(&client(&url, &ClientOptions::default())).await;
    assert_eq!(cause, Some(TransportCause::Tls), "{text}");
    assert!(text.contains("TLS handshake failed"), "{text}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepts and holds each connection open without a word.
    let (hold, mut held) = tokio::sync::mpsc::unbounded_channel();
    let port = tcp_server(move |socket| {
        // Fails only once the test is over and `held` gone: nothing left to hold it for.
        let _ = hold.send(socket);
        async {}
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/EWS/Exchange.asmx");
    let options = ClientOptions {
        timeout: Some(Duration::from_millis(300)),
        ..ClientOptions::default()
    };
    let (cause, text) = failure(&client(&url, &options)).await;
    assert_eq!(cause, Some(TransportCause::Timeout), "{text}");
    assert!(text.contains(": timed out ("), "{text}");
    assert!(held.try_recv().is_ok(), "the request reached the server");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_failure() {
    // RFC 6761: `.invalid` never resolves.
    let url = "http://openum-client-test.invalid/EWS/Exchange.asmx";
    let (cause, text) = failure(&client(url, &ClientOptions::default())).await;
    assert_eq!(cause, Some(TransportCause::DnsFailure), "{text}");
    assert!(text.contains("DNS failure"), "{text}");
    assert!(text.contains("dns error"), "{text}");
}

#[tokio::test]
async fn a_server_that_closes_the_connection_is_named_so() {
    let port = tcp_server(|mut socket| async move {
        let mut chunk = [0u8; 1024];
        // Read something of the request, then hang up without a word.
        let _ = socket.read(&mut chunk).await;
        drop(socket);
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/EWS/Exchange.asmx");
    let (cause, text) = failure(&client(&url, &ClientOptions::default())).await;
    assert_eq!(cause, Some(TransportCause::ConnectionReset), "{text}");
    assert!(
        text.contains("connection closed without an answer"),
        "{text}"
    );
}

/// Asserts `err` is a CA-file error whose problem satisfies `is`, and that its text names `path`
/// and then starts with `text`.
fn assert_ca_file_error(err: &Error, is: impl Fn(&CaFileProblem) -> bool, path: &Path, text: &str) {
    assert!(
        matches!(err, Error::CaFile { problem, .. } if is(problem)),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "cannot use the CA file {}: {text}",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn unusable_ca_files_are_named_with_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://localhost/EWS/Exchange.asmx";
    let make = |path: &Path| {
        Client::with_options(
            url,
            Auth::Bearer("t".into()),
            &ClientOptions {
                ca_file: Some(path.to_owned()),
                ..ClientOptions::default()
            },
        )
        .unwrap_err()
    };

    let missing = dir.path().join("missing.pem");
    assert_ca_file_error(
        &make(&missing),
        |p| matches!(p, CaFileProblem::Read(_)),
        &missing,
        "No such file",
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let err = make(&text);
    assert_eq!(
        err.to_string(),
        format!(
            "cannot use the CA file {}: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            text.display()
        )
    );

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert_ca_file_error(
        &make(&broken),
        |p| matches!(p, CaFileProblem::Pem(_)),
        &broken,
        "not a usable PEM certificate bundle",
    );
}
