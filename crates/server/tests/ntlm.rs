//! Windows authentication through openum: an NTLM handshake done by hand on one client
//! connection is relayed to the mailbox server (the testkit double, speaking NTLM) on one
//! dedicated connection; UM operations on that connection then run as the mailbox.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use server::config::{Config, MailboxConfig};
use support::{get_info, play, TestServer};
use testkit::mailbox::{Attachment, Item, ItemRef, Mailbox, MailboxDouble};
use testkit::ntlm;
use tokio::io::BufReader;
use tokio::net::TcpStream;

extern crate openum_server as server;

const PW: &str = "alice mailbox password";

fn find_item() -> String {
    support::envelope(
        Some("Exchange2013"),
        r#"<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="voicemail"/></m:ParentFolderIds></m:FindItem>"#,
    )
}

/// One HTTP/1.1 exchange on `stream`: status, `WWW-Authenticate` values and body.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    authorization: Option<&str>,
    body: &str,
) -> (u16, Vec<String>, String) {
    let reply = testkit::http1::post(stream, "/EWS/Exchange.asmx", authorization, body)
        .await
        .unwrap();
    (reply.status, reply.challenges, reply.body)
}

/// Type 1, then type 3 for `password`, both with `body`; the second answer.
async fn handshake(
    stream: &mut BufReader<TcpStream>,
    password: &str,
    body: &str,
) -> (u16, Vec<String>, String) {
    let type1 = format!("NTLM {}", STANDARD.encode(ntlm::negotiate()));
    let (status, challenges, _) = exchange(stream, Some(&type1), body).await;
    assert_eq!(status, 401);
    let token = challenges
        .iter()
        .find_map(|c| c.strip_prefix("NTLM "))
        .expect("an NTLM challenge");
    let challenge = ntlm::parse_challenge(&STANDARD.decode(token).unwrap()).unwrap();
    let type3 = ntlm::authenticate(&challenge, "alice", "EXAMPLE", password, [5; 8], 0);
    exchange(
        stream,
        Some(&format!("NTLM {}", STANDARD.encode(type3))),
        body,
    )
    .await
}

/// Alice (`EXAMPLE\\alice`, NTLM offered besides Basic) with one voice mail.
async fn alice_with_voicemail() -> (MailboxDouble, ItemRef) {
    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(
        Mailbox::new("alice@example.com")
            .login("EXAMPLE\\alice")
            .password(PW),
    );
    let samples: Vec<i16> = (0..8000).map(|i| ((i % 40) * 400 - 8000) as i16).collect();
    let item = builder.item(
        &alice,
        Item::voicemail("Voice Mail").attachment(Attachment::file(
            "audio.wav",
            "audio/wav",
            testkit::pcm_wav(8000, 1, &samples),
        )),
    );
    builder.ntlm("example");
    (builder.start().await.unwrap(), item)
}

fn call_id(body: &str) -> String {
    let at = body.find("PhoneCallId Id=\"").expect(body) + "PhoneCallId Id=\"".len();
    body[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ntlm_connection_forwards_and_plays_as_its_mailbox() {
    let (double, item) = alice_with_voicemail().await;
    let config = Config {
        mailbox: Some(MailboxConfig {
            ews_url: double.url(),
            timeout_secs: 5,
            ..MailboxConfig::default()
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(config, true).await;
    let connect = || async { BufReader::new(TcpStream::connect(server.addr).await.unwrap()) };

    // The handshake rides on a forwarded FindItem, which is answered.
    let mut first = connect().await;
    let (status, _, found) = handshake(&mut first, PW, &find_item()).await;
    assert_eq!(status, 200, "{found}");
    assert!(found.contains(&item.id), "{found}");
    // Later requests on the connection carry no Authorization.
    let (status, _, found) = exchange(&mut first, None, &find_item()).await;
    assert_eq!(status, 200, "{found}");
    let (status, _, played) = exchange(&mut first, None, &play(&item.id, "5551212")).await;
    assert_eq!(status, 200, "{played}");
    assert!(played.contains("ResponseClass=\"Success\""), "{played}");
    let id = call_id(&played);
    // All on one mailbox-server connection, authenticated by NTLM.
    let log = double.requests();
    assert!(
        log.iter().all(|r| r.auth_scheme.as_deref() == Some("NTLM")),
        "{log:?}"
    );
    assert!(log
        .iter()
        .any(|r| r.operation.as_deref() == Some("GetAttachment")));

    // The same mailbox via Basic owns the call.
    let info = server
        .ews_as(
            Some(&TestServer::basic("alice@example.com", PW)),
            get_info(&id),
        )
        .await;
    assert_eq!(
        support::code(&info),
        ews_proto::ResponseCode::NoError,
        "{}",
        info.body
    );

    // Another connection without the handshake is refused, offering NTLM.
    let mut second = connect().await;
    let (status, challenges, _) = exchange(&mut second, None, &play(&item.id, "5551212")).await;
    assert_eq!(status, 401);
    assert!(challenges.iter().any(|c| c == "NTLM"), "{challenges:?}");
    assert!(
        challenges.iter().any(|c| c == "Negotiate"),
        "{challenges:?}"
    );

    // A wrong password: the mailbox server's 401, relayed.
    let mut third = connect().await;
    let (status, _, _) = handshake(&mut third, "wrong", &find_item()).await;
    assert_eq!(status, 401);

    // The handshake on a UM operation itself: relayed, then answered by openum.
    let mut fourth = connect().await;
    let (status, _, played) = handshake(&mut fourth, PW, &play(&item.id, "5551212")).await;
    assert_eq!(status, 200, "{played}");
    assert!(played.contains("ResponseClass=\"Success\""), "{played}");
}

/// A test CA and a `localhost` certificate it signed, made with the openssl command line.
fn test_pki(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is required by this test");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=openum test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

/// Terminates TLS on a local port and relays each connection, one to one, to `backend` — an
/// https mailbox server in front of the (plain HTTP) double, connection semantics intact.
async fn tls_front(
    cert: &std::path::Path,
    key: &std::path::Path,
    backend: std::net::SocketAddr,
) -> u16 {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ntlm_connection_to_an_https_mailbox_server_is_pinned_over_tls() {
    let (double, item) = alice_with_voicemail().await;
    let pki = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(pki.path());
    let port = tls_front(&cert, &key, double.addr()).await;
    let https = format!("https://localhost:{port}/EWS/Exchange.asmx");

    // Trusting the test CA: handshake, forwarded FindItem and PlayOnPhone, all over TLS.
    let config = Config {
        mailbox: Some(MailboxConfig {
            ews_url: https.clone(),
            ca_file: Some(ca),
            timeout_secs: 5,
            ..MailboxConfig::default()
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(config, true).await;
    let mut stream = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    let (status, _, found) = handshake(&mut stream, PW, &find_item()).await;
    assert_eq!(status, 200, "{found}");
    assert!(found.contains(&item.id), "{found}");
    let (status, _, played) = exchange(&mut stream, None, &play(&item.id, "5551212")).await;
    assert_eq!(status, 200, "{played}");
    assert!(played.contains("ResponseClass=\"Success\""), "{played}");

    // Without the CA the mailbox server's certificate is not trusted: 502, never plain text.
    let untrusting = Config {
        mailbox: Some(MailboxConfig {
            ews_url: https,
            timeout_secs: 5,
            ..MailboxConfig::default()
        }),
        ..Config::default()
    };
    let server = TestServer::start_with(untrusting, true).await;
    let mut stream = BufReader::new(TcpStream::connect(server.addr).await.unwrap());
    let type1 = format!("NTLM {}", STANDARD.encode(ntlm::negotiate()));
    let (status, _, _) = exchange(&mut stream, Some(&type1), &find_item()).await;
    assert_eq!(status, 502);
}
