//! EWS over TLS end to end: the real `openum serve` with a certificate chain from a test CA
//! (made by `openssl` at test time), a real SIPp far end, the Rust client and `curl --cacert`.
//! The certificate files are replaced and SIGHUP sent while a call is live: the call runs to its
//! normal end, new connections see the new certificate, a connection opened before still works.
//! Also: plain HTTP with Basic on a non-loopback address is refused at start, naming the key and
//! the file; `config check` loads the pair.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use support::serve;
use support::sipp::Sipp;
use support::{add_user_with_message, openum, openum_bin, tone_wav, PASSWORD};
use testkit::tls::{Issued, KeyFormat, TestCa};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// This file's ports (41000-41999): HTTP, our SIP, SIPp's SIP, SIPp's media; a block of 10 per
/// test (0..=3), 40 per process.
fn ports(test: u16) -> (u16, u16, u16, u16) {
    assert!(test < 4);
    let b = 41000 + (std::process::id() % 24) as u16 * 40 + test * 10;
    (b, b + 1, b + 2, b + 4)
}

fn roots(root: &Path) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn leaf_der(pem: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(port: u16, root: &Path) -> Tls {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(root))
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

fn served_leaf(stream: &Tls) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One keep-alive `GET path` on an open connection; the status line.
async fn get_status(stream: &mut Tls, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= length {
                return head.lines().next().unwrap().to_owned();
            }
        }
    }
}

/// `curl -v --cacert root` of `url` (extra `args` first); (exit ok, stdout, stderr).
fn curl(root: &Path, args: &[&str], url: &str) -> (bool, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-v", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(args)
        .arg(url)
        .output()
        .expect("curl is required by the TLS tests (apt-get install curl)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct Node {
    _dir: tempfile::TempDir,
    log: PathBuf,
    port: u16,
    item: String,
    sipp_messages: PathBuf,
    /// SIPp, stopped on drop.
    _sipp: Sipp,
    openum: Option<Child>,
}

impl Node {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sipp_trace(&self) -> String {
        std::fs::read_to_string(&self.sipp_messages).unwrap_or_default()
    }

    async fn wait_for_log(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            if let Some(status) = self.openum.as_mut().and_then(|o| o.try_wait().unwrap()) {
                panic!(
                    "openum exited ({status}) before logging {needle:?}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "openum never logged {needle:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut openum) = self.openum.take() {
            // Dropped mid-test after a failure: a stray server would hold the port.
            _ = openum.kill();
            _ = openum.wait();
        }
    }
}

/// SIPp, a config serving `cert`/`key` over TLS, alice with a `seconds`-long message, and
/// `openum serve`, ready.
async fn start(test: u16, cert: &Path, key: &Path, root: &Path, seconds: f32) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, sip_port, sipp_port, media_port) = ports(test);
    let sipp_messages = dir.path().join("sipp-messages.log");
    let sipp = Sipp::uas("uas_multi.xml", sipp_port, media_port, &sipp_messages).start();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{http_port}\"\ndata_dir = \"{}\"\nnode_name = \"tls\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n\
             [sip]\nlisten = \"127.0.0.1:{sip_port}\"\nt1_ms = 100\n\
             [[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\n\
             [[gateway]]\nname = \"sipp\"\nuri = \"sip:{{number}}@127.0.0.1:{sipp_port}\"\n",
            dir.path().join("data").display(),
            cert.display(),
            key.display(),
        ),
    )
    .unwrap();
    let (ok, out, err) = openum(&config, &["config", "check"], None);
    assert!(ok && out.contains("key fits"), "{out}{err}");
    let wav = dir.path().join("message.wav");
    tone_wav(&wav, seconds);
    let item = add_user_with_message(&config, "alice", &wav);
    let log = dir.path().join("openum.log");
    let openum = serve::spawn(&config, &log, Some("info"));
    let node = Node {
        _dir: dir,
        log,
        port: http_port,
        item,
        sipp_messages,
        _sipp: sipp,
        openum: Some(openum),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, _, _) = curl(root, &[], &format!("https://localhost:{http_port}/healthz"));
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "openum did not start over TLS\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node
}

fn install(issued: &Issued, cert: &Path, key: &Path) {
    // Written to a temporary name and renamed, as certbot and friends do: no half-written file.
    for (from, to) in [(&issued.chain, cert), (&issued.key, key)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
}

#[tokio::test]
async fn ews_over_tls_survives_a_certificate_reload_during_a_live_call() {
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path());
    let first = ca.issue("first", "openum e2e first", 0x1001, KeyFormat::EcPkcs8);
    let second = ca.issue("second", "openum e2e second", 0x2002, KeyFormat::Rsa);
    assert_ne!(first.serial_hex, second.serial_hex);
    let cert = pki.path().join("served.pem");
    let key = pki.path().join("served.key");
    install(&first, &cert, &key);
    let mut node = start(0, &cert, &key, &ca.root, 8.0).await;
    let url = format!("https://localhost:{}/EWS/Exchange.asmx", node.port);

    // The Rust client, given the test root as its CA file.
    let alice = client::Client::with_options(
        url.clone(),
        client::Auth::Basic {
            user: "alice".into(),
            password: PASSWORD.into(),
        },
        &client::ClientOptions {
            ca_file: Some(ca.root.clone()),
            ..client::ClientOptions::default()
        },
    )
    .unwrap();
    let id = alice.play_on_phone(&node.item, "2005551234").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = alice.get_phone_call_information(&id).await.unwrap();
        if info.phone_call_state == S::Connected {
            break;
        }
        assert_ne!(info.phone_call_state, S::Disconnected, "{info:?}");
        assert!(Instant::now() < deadline, "never connected: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // curl, over the first certificate: its subject, and an EWS request with Basic.
    let (ok, _, verbose) = curl(
        &ca.root,
        &[],
        &format!("https://localhost:{}/healthz", node.port),
    );
    assert!(ok, "{verbose}");
    assert!(verbose.contains("CN=openum e2e first"), "{verbose}");
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"><s:Body><m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation></s:Body></s:Envelope>"
    );
    let user = format!("alice:{PASSWORD}");
    let ews_args = [
        "-u",
        user.as_str(),
        "-H",
        "Content-Type: text/xml; charset=utf-8",
        "--data-binary",
        body.as_str(),
    ];
    let (ok, answer, verbose) = curl(&ca.root, &ews_args, &url);
    assert!(ok, "{verbose}");
    assert!(answer.contains(">Connected<"), "{answer}");

    // A connection opened before the reload.
    let mut old = tls_connect(node.port, &ca.root).await;
    assert_eq!(served_leaf(&old), leaf_der(&first.leaf));

    install(&second, &cert, &key);
    let pid = node.openum.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    node.wait_for_log("TLS certificate reloaded").await;
    let during = alice.get_phone_call_information(&id).await.unwrap();
    assert_eq!(
        during.phone_call_state,
        S::Connected,
        "the call must still be live after the reload: {during:?}"
    );

    // New connections see the new certificate: rustls (the exact leaf), curl (its subject).
    let new = tls_connect(node.port, &ca.root).await;
    assert_eq!(served_leaf(&new), leaf_der(&second.leaf));
    let (ok, _, verbose) = curl(
        &ca.root,
        &[],
        &format!("https://localhost:{}/healthz", node.port),
    );
    assert!(ok, "{verbose}");
    assert!(verbose.contains("CN=openum e2e second"), "{verbose}");
    let (ok, answer, verbose) = curl(&ca.root, &ews_args, &url);
    assert!(ok && answer.contains(">Connected<"), "{answer}{verbose}");
    // The CLI too, over a new connection (`openum status --ca-file`).
    let status = Command::new(openum_bin())
        .args([
            "status",
            &id,
            "--json",
            "--url",
            &url,
            "--user",
            "alice",
            "--ca-file",
        ])
        .arg(&ca.root)
        .env("OPENUM_PASSWORD", PASSWORD)
        .env_remove("OPENUM_CONFIG")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && printed.contains("Connected"),
        "{printed}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The old connection still answers, on the old certificate.
    assert!(get_status(&mut old, "/healthz").await.contains("200"));
    assert_eq!(served_leaf(&old), leaf_der(&first.leaf));

    // The call runs to its normal end: the whole message, then our BYE.
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let info = alice.get_phone_call_information(&id).await.unwrap();
        if info.phone_call_state == S::Disconnected {
            break info;
        }
        assert!(Instant::now() < deadline, "never ended: {info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done.connection_failure_cause, C::None, "{done:?}");
    assert_eq!(done.sip_response_code, Some(200), "{done:?}");
    assert!(
        node.sipp_trace().contains("BYE sip:"),
        "{}",
        node.sipp_trace()
    );
    let metrics = {
        let (ok, text, verbose) = curl(
            &ca.root,
            &[],
            &format!("https://localhost:{}/metrics", node.port),
        );
        assert!(ok, "{verbose}");
        text
    };
    assert!(
        metrics.contains(r#"openum_calls_ended_total{cause="None"} 1"#),
        "{metrics}"
    );

    // A bad pair (new certificate, old key) on a second SIGHUP: logged, the second pair stays.
    std::fs::copy(&first.chain, &cert).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    node.wait_for_log("TLS certificate NOT reloaded").await;
    let after = tls_connect(node.port, &ca.root).await;
    assert_eq!(served_leaf(&after), leaf_der(&second.leaf));

    // Two SIGHUPs later the server is still running, and stops cleanly on SIGTERM.
    let mut openum = node.openum.take().unwrap();
    assert!(openum.try_wait().unwrap().is_none(), "SIGHUP ended openum");
    _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = openum.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", node.log());
}

#[test]
fn basic_over_plain_http_on_a_public_address_is_refused_at_start_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (port, ..) = ports(1);
    let config = dir.path().join("openum.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    // --listen on the command line counts: a wildcard address is refused.
    let public = SocketAddr::from(([0, 0, 0, 0], port)).to_string();
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &public])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("server.allow_plain_http") && err.contains("openum.toml"),
        "{err}"
    );
    // Refused before anything started: no store was created.
    assert!(!data.exists(), "the store was opened behind a refused door");

    // The same in the file: `config check` and `serve` refuse it.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{public}\"\ndata_dir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let (ok, _, err) = openum(&config, &["config", "check"], None);
    assert!(!ok, "{err}");
    assert!(
        err.contains("server.allow_plain_http") && err.contains("openum.toml"),
        "{err}"
    );
    let (ok, _, err) = openum(&config, &["serve"], None);
    assert!(!ok && err.contains("server.allow_plain_http"), "{err}");

    // Loopback stays allowed, and so does an explicit opt-in.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{public}\"\ndata_dir = \"{}\"\nallow_plain_http = true\n",
            data.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = openum(&config, &["config", "check"], None);
    assert!(ok, "{out}{err}");
}

#[test]
fn config_check_loads_the_pair_and_names_a_key_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let a = ca.issue("a", "localhost", 1, KeyFormat::EcSec1);
    let b = ca.issue("b", "localhost", 2, KeyFormat::EcPkcs8);
    let config = dir.path().join("openum.toml");
    let write = |cert: &Path, key: &Path| {
        std::fs::write(
            &config,
            format!(
                "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
    };
    write(&a.chain, &a.key);
    let (ok, out, err) = openum(&config, &["config", "check"], None);
    assert!(
        ok && out.contains("2 certificate(s)") && out.contains("key fits"),
        "{out}{err}"
    );
    write(&a.chain, &b.key);
    let (ok, out, err) = openum(&config, &["config", "check"], None);
    assert!(!ok, "{out}");
    assert!(
        err.contains("server.tls_key") && err.contains("b.key") && err.contains("openum.toml"),
        "{err}"
    );
    write(&dir.path().join("missing.pem"), &a.key);
    let (ok, _, err) = openum(&config, &["config", "check"], None);
    assert!(
        !ok && err.contains("server.tls_cert") && err.contains("missing.pem"),
        "{err}"
    );
    // One without the other is a configuration error naming the missing key and the file.
    std::fs::write(
        &config,
        format!("[server]\ntls_cert = \"{}\"\n", a.chain.display()),
    )
    .unwrap();
    let (ok, _, err) = openum(&config, &["config", "check"], None);
    assert!(
        !ok && err.contains("server.tls_key") && err.contains("openum.toml"),
        "{err}"
    );
}

const ZEEP: &str = "python3 -m pip install zeep==4.3.3";

/// A WSDL-driven client: zeep reads `/EWS/Services.wsdl` (and the schemas it imports) from
/// openum over HTTPS and calls the three operations from it (`tests/zeep/um_client.py`).
#[tokio::test]
async fn a_wsdl_driven_client_zeep_calls_the_three_operations_over_https() {
    let check = Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required by this test ({e}); then {ZEEP}"));
    assert!(
        check.status.success(),
        "zeep (PyPI) is required by this test: {ZEEP}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(pki.path());
    let issued = ca.issue("zeep", "localhost", 0x3003, KeyFormat::EcPkcs8);
    let node = start(2, &issued.chain, &issued.key, &ca.root, 30.0).await;
    let base = format!("https://localhost:{}", node.port);
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zeep/um_client.py"))
        .args(["--wsdl", &format!("{base}/EWS/Services.wsdl")])
        .args(["--endpoint", &format!("{base}/EWS/Exchange.asmx")])
        .arg("--cafile")
        .arg(&ca.root)
        .args([
            "--user",
            "alice",
            "--item",
            &node.item,
            "--dial",
            "2005551234",
        ])
        .arg("--xml-xsd")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/xsd/xml.xsd"))
        .env("OPENUM_TEST_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", node.log());
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let played = &steps[0];
    assert_eq!(played["step"], "PlayOnPhone", "{stdout}");
    assert_eq!(played["response_code"], "NoError", "{stdout}");
    assert_eq!(played["response_class"], "Success", "{stdout}");
    assert_eq!(played["server_version"], "V2017_07_11", "{stdout}");
    assert_eq!(played["major_version"], 15, "{stdout}");
    assert!(played["phone_call_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    let connected = steps
        .iter()
        .find(|s| s["state"] == "Connected")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(connected["response_code"], "NoError");
    assert_eq!(connected["sip_code"], 200);
    let disconnect = steps
        .iter()
        .find(|s| s["step"] == "DisconnectPhoneCall")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(disconnect["response_class"], "Success", "{stdout}");
    assert_eq!(disconnect["response_code"], "NoError", "{stdout}");
    let last = steps.last().unwrap();
    assert_eq!(last["state"], "Disconnected", "{stdout}");
    assert_eq!(last["cause"], "None", "{stdout}");
    // Our BYE ended the 30 s message early, as DisconnectPhoneCall asked.
    assert!(
        node.sipp_trace().contains("BYE sip:"),
        "{}",
        node.sipp_trace()
    );
}

#[tokio::test]
async fn sighup_without_tls_leaves_the_server_running() {
    let dir = tempfile::tempdir().unwrap();
    let (port, ..) = ports(3);
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("openum.log");
    let mut openum = serve::spawn(&config, &log, Some("info"));
    let http = reqwest::Client::new();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(&healthz).send().await.is_err() {
        assert!(Instant::now() < deadline, "openum did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = openum.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("SIGHUP: no TLS configured")
    {
        if let Some(status) = openum.try_wait().unwrap() {
            panic!("SIGHUP ended openum ({status})");
        }
        assert!(Instant::now() < deadline, "SIGHUP was not handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http.get(&healthz).send().await.unwrap().status(), 200);
    assert!(openum.try_wait().unwrap().is_none());
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert!(openum.wait().unwrap().success());
}
