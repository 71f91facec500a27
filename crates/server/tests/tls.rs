//! TLS on the EWS endpoint over real TCP: the key formats served, a key that does not fit its
//! certificate refused by name, a reload that new connections see while an open connection
//! carries on, a bad reload that keeps the old pair; and `/metrics` on its own listener.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

extern crate openum_server as server;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use server::config::Config;
use server::registry::Registry;
use testkit::tls::{KeyFormat, TestCa};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

fn leaf_der(chain: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(chain)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

/// A TLS connection trusting only `root`, as `localhost`.
async fn connect(addr: SocketAddr, root: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn served_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One keep-alive `GET path` on `stream`; the status line and body.
async fn get(stream: &mut TlsStream<TcpStream>, path: &str) -> (String, String) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = head.lines().next().unwrap().to_owned();
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    (status, body)
}

/// A node (no gateway) served over TLS with `cert`/`key` on a free port.
async fn start(
    cert: &Path,
    key: &Path,
    data: &Path,
) -> (
    SocketAddr,
    Arc<server::tls::Tls>,
    tokio::sync::oneshot::Sender<()>,
) {
    let mut config = Config::default();
    config.server.data_dir = data.to_owned();
    config.server.tls_cert = Some(cert.to_owned());
    config.server.tls_key = Some(key.to_owned());
    let store = Arc::new(server::open_sqlite(&config).unwrap());
    let registry = Arc::new(Registry::new(store, "tls-test".into()));
    let state = server::app_state(&config, registry, Arc::new(calls::NoGateway)).unwrap();
    let tls = server::tls::Tls::from_config(&config.server)
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = Arc::clone(&tls);
    tokio::spawn(async move {
        server::run_tls(&config, listener, state, Some(served), async {
            _ = stopped.await;
        })
        .await;
    });
    (addr, tls, stop)
}

#[tokio::test]
async fn every_key_format_is_served_with_its_full_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    for (i, format) in [KeyFormat::EcPkcs8, KeyFormat::EcSec1, KeyFormat::Rsa]
        .into_iter()
        .enumerate()
    {
        let issued = ca.issue(&format!("s{i}"), "localhost", 10 + i as u32, format);
        let loaded = server::tls::load(&issued.chain, &issued.key)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(loaded.chain_len, 2, "{format:?}: leaf and intermediate");
        let data = dir.path().join(format!("data{i}"));
        let (addr, _tls, stop) = start(&issued.chain, &issued.key, &data).await;
        // The client trusts only the root: the handshake succeeds only if the intermediate
        // is served.
        let mut stream = connect(addr, &ca.root).await;
        assert_eq!(served_leaf(&stream), leaf_der(&issued.leaf), "{format:?}");
        assert_eq!(
            stream.get_ref().1.alpn_protocol(),
            Some(&b"http/1.1"[..]),
            "{format:?}: HTTP/1.1 chosen over h2"
        );
        let (status, body) = get(&mut stream, "/healthz").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(body, "ok\n");
        stop.send(()).unwrap();
    }
}

#[tokio::test]
async fn a_key_that_does_not_fit_the_certificate_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let a = ca.issue("a", "localhost", 1, KeyFormat::EcPkcs8);
    let b = ca.issue("b", "localhost", 2, KeyFormat::EcPkcs8);
    let err = server::tls::load(&a.chain, &b.key)
        .err()
        .expect("a foreign key must be refused");
    let text = calls::error_chain(&err);
    assert!(
        text.contains("server.tls_key")
            && text.contains("b.key")
            && text.contains("server.tls_cert")
            && text.contains("a-chain.pem"),
        "{text}"
    );
    // A certificate where the key should be.
    let err = server::tls::load(&a.chain, &a.chain).err().unwrap();
    let text = calls::error_chain(&err);
    assert!(
        text.contains("server.tls_key") && text.contains("a-chain.pem"),
        "{text}"
    );
    // A key where the certificate should be.
    let err = server::tls::load(&a.key, &a.key).err().unwrap();
    let text = calls::error_chain(&err);
    assert!(
        text.contains("server.tls_cert") && text.contains("a.key"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_reaches_new_connections_an_open_one_carries_on_and_a_bad_pair_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let first = ca.issue("first", "openum first", 100, KeyFormat::EcPkcs8);
    let second = ca.issue("second", "openum second", 200, KeyFormat::Rsa);
    let cert = dir.path().join("served-cert.pem");
    let key = dir.path().join("served-key.pem");
    std::fs::copy(&first.chain, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let (addr, tls, stop) = start(&cert, &key, &dir.path().join("data")).await;

    let mut old = connect(addr, &ca.root).await;
    assert_eq!(served_leaf(&old), leaf_der(&first.leaf));
    assert!(get(&mut old, "/healthz").await.0.contains("200"));

    std::fs::copy(&second.chain, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    let sha256 = tls.reload().unwrap();
    assert_eq!(sha256, server::tls::fingerprint(&leaf_der(&second.leaf)));

    let mut new = connect(addr, &ca.root).await;
    assert_eq!(served_leaf(&new), leaf_der(&second.leaf));
    assert!(get(&mut new, "/healthz").await.0.contains("200"));
    // The connection opened before the reload still answers, on its original certificate.
    assert_eq!(served_leaf(&old), leaf_der(&first.leaf));
    let (status, body) = get(&mut old, "/readyz").await;
    assert!(status.contains("200"), "{status} {body}");

    // Half-replaced files (new certificate, old key): refused, and the second pair stays.
    std::fs::copy(&first.chain, &cert).unwrap();
    let err = tls.reload().expect_err("a mismatched pair must not load");
    assert!(
        calls::error_chain(&err).contains("served-key.pem"),
        "{}",
        calls::error_chain(&err)
    );
    let after = connect(addr, &ca.root).await;
    assert_eq!(served_leaf(&after), leaf_der(&second.leaf));
    stop.send(()).unwrap();
}

#[tokio::test]
async fn plain_http_is_not_answered_on_the_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let issued = ca.issue("s", "localhost", 7, KeyFormat::EcPkcs8);
    let (addr, _tls, stop) = start(&issued.chain, &issued.key, &dir.path().join("data")).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server reads a TLS record, finds none, and closes: no HTTP answer in clear.
    tcp.read_to_end(&mut answer).await.unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "{answer:?}"
    );
    stop.send(()).unwrap();
}

/// Two ports from this file's block (54100-54199), outside the ephemeral range used in CI, for
/// listeners the server binds itself: a port picked with `bind(0)` and bound again later could
/// meanwhile be taken by another process's outgoing connection.
fn fixed_ports() -> (SocketAddr, SocketAddr) {
    let port = 54100 + (std::process::id() % 50) as u16 * 2;
    (
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from(([127, 0, 0, 1], port + 1)),
    )
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_behind_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_owned();
    let (main, metrics) = fixed_ports();
    config.server.metrics_listen = Some(metrics);
    config.server.metrics_token = Some("scrape-me".into());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(async move {
        server::serve::serve(&config, Some(main), async {
            _ = stopped.await;
        })
        .await
    });
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http
        .get(format!("http://{main}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let status = |url: String, token: Option<&'static str>| {
        let http = http.clone();
        async move {
            let mut request = http.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = request.send().await.unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };
    assert_eq!(status(format!("http://{main}/metrics"), None).await.0, 404);
    assert_eq!(status(format!("http://{main}/METRICS"), None).await.0, 404);
    assert_eq!(
        status(format!("http://{main}/metrics"), Some("scrape-me"))
            .await
            .0,
        404
    );
    assert_eq!(status(format!("http://{main}/healthz"), None).await.0, 200);
    assert_eq!(
        status(format!("http://{metrics}/metrics"), None).await.0,
        401
    );
    assert_eq!(
        status(format!("http://{metrics}/metrics"), Some("guess"))
            .await
            .0,
        401
    );
    let (code, body) = status(format!("http://{metrics}/metrics"), Some("scrape-me")).await;
    assert_eq!(code, 200);
    assert!(body.contains("openum_calls_started_total"), "{body}");
    assert_eq!(
        status(format!("http://{metrics}/healthz"), None).await.0,
        200
    );
    assert_eq!(
        status(format!("http://{metrics}/EWS/Exchange.asmx"), None)
            .await
            .0,
        404
    );
    stop.send(()).unwrap();
    node.await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_refuses_plain_http_on_a_public_address_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.data_dir = dir.path().to_owned();
    let listen: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let err = server::serve::serve(&config, Some(listen), async {})
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("server.allow_plain_http"),
        "{err:#}"
    );
    // Nothing was started behind the refused door: not even the store.
    assert!(!dir.path().join("openum.db").exists());
}
