//! The client library and the `openum call/status/hangup` commands against the real server over
//! HTTP, with SIPp as the far end — including every error class.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::process::Command;
use std::time::Duration;

use client::{Auth, Client, Error};
use ews_proto::{ConnectionFailureCause as C, ExchangeVersion, PhoneCallState as S, ResponseCode};
use support::{openum_bin, Harness, Options, PASSWORD};

fn alice(h: &Harness) -> Client {
    Client::new(
        format!("{}/EWS/Exchange.asmx", h.base),
        Auth::Basic {
            user: "alice".into(),
            password: PASSWORD.into(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn client_places_watches_and_ends_a_call() {
    let h = Harness::start(Options {
        audio_seconds: 10.0,
        ..Options::default()
    })
    .await;
    let client = alice(&h);
    let id = client.play_on_phone(&h.item, "200-555-1234").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = client.get_phone_call_information(&id).await.unwrap();
        if info.phone_call_state == S::Connected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.disconnect_phone_call(&id).await.unwrap();
    let info = client.get_phone_call_information(&id).await.unwrap();
    assert_eq!(
        (info.phone_call_state, info.connection_failure_cause),
        (S::Disconnected, C::None)
    );
    // Idempotent hang-up.
    client.disconnect_phone_call(&id).await.unwrap();
}

#[tokio::test]
async fn every_error_class_is_surfaced_typed() {
    let h = Harness::start(Options::default()).await;
    let url = format!("{}/EWS/Exchange.asmx", h.base);
    // Per-message error.
    let err = alice(&h)
        .get_phone_call_information("no-such-call")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Response { code: ResponseCode::ErrorInvalidPhoneCallId, message } if message == "The phone call ID isn't valid"),
        "{err:?}"
    );
    let err = alice(&h)
        .play_on_phone("AkAjzQTbY/i=", "5551212")
        .await
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::ErrorInvalidIdMalformed)
    );
    let err = alice(&h)
        .play_on_phone(&h.item, "+1 900 555 1212")
        .await
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::ErrorPhoneNumberNotDialable)
    );
    // SOAP fault.
    let old = alice(&h).with_version(ExchangeVersion::Exchange2007_SP1);
    let err = old.get_phone_call_information("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Fault(f) if f.code == ResponseCode::ErrorIncorrectSchemaVersion),
        "{err:?}"
    );
    // Credentials.
    let wrong = Client::new(
        url.clone(),
        Auth::Basic {
            user: "alice".into(),
            password: "nope".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        wrong.get_phone_call_information("x").await,
        Err(Error::Unauthorized)
    ));
    let bearer = Client::new(url.clone(), Auth::Bearer("oum_bogus".into())).unwrap();
    assert!(matches!(
        bearer.get_phone_call_information("x").await,
        Err(Error::Unauthorized)
    ));
    // HTTP status and transport.
    let lost = Client::new(
        format!("{}/EWS/Nothing.asmx", h.base),
        Auth::Bearer("t".into()),
    )
    .unwrap();
    assert!(matches!(
        lost.get_phone_call_information("x").await,
        Err(Error::Status(404))
    ));
    let closed = Client::new(
        "http://127.0.0.1:9/EWS/Exchange.asmx",
        Auth::Bearer("t".into()),
    )
    .unwrap();
    assert!(matches!(
        closed.get_phone_call_information("x").await,
        Err(Error::Transport { .. })
    ));
    // Credentials never show in Debug output.
    assert!(!format!("{:?}", alice(&h)).contains(PASSWORD));
}

fn cli(h: &Harness, args: &[&str], password: &str) -> (i32, String, String) {
    let out = Command::new(openum_bin())
        .args(args)
        .env("OPENUM_URL", format!("{}/EWS/Exchange.asmx", h.base))
        .env("OPENUM_USER", "alice")
        .env("OPENUM_PASSWORD", password)
        .env_remove("OPENUM_TOKEN")
        .env_remove("OPENUM_CA_FILE")
        .env_remove("OPENUM_TIMEOUT")
        .env_remove("OPENUM_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_call_status_hangup_and_exit_codes() {
    let h = Harness::start(Options {
        audio_seconds: 1.0,
        ..Options::default()
    })
    .await;
    let item = h.item.clone();
    let hh = &h;
    // call --wait follows the call to its end.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            hh,
            &["call", "--item", &item, "--dial", "2005551234", "--wait"],
            PASSWORD,
        )
    });
    assert_eq!(code, 0, "{err}");
    // Not a terminal: the id, then one line per state change.
    let mut lines = out.lines();
    let id = lines.next().unwrap().to_owned();
    let states: Vec<&str> = lines.collect();
    assert!(states.iter().any(|l| l.starts_with("Alerted")), "{out}");
    assert!(states.iter().any(|l| l.starts_with("Connected")), "{out}");
    assert_eq!(
        states.last(),
        Some(&"Disconnected None 200 OK"),
        "{out}\n{err}"
    );
    let (code, json, _) =
        tokio::task::block_in_place(|| cli(hh, &["status", &id, "--json"], PASSWORD));
    assert_eq!(code, 0);
    assert_eq!(
        json.trim(),
        r#"{"state":"Disconnected","cause":"None","sip_code":200,"sip_text":"OK"}"#
    );
    // A busy callee: the call itself succeeds (exit 0); its outcome is in the status.
    let (_, busy, _) = tokio::task::block_in_place(|| {
        cli(
            hh,
            &["call", "--item", &item, "--dial", "4865551234"],
            PASSWORD,
        )
    });
    let busy = busy.trim().to_owned();
    // watch --json: one JSON object per change, ending with the final state; the failure cause
    // is exit code 5, and one JSON object on stderr.
    let (code, watched, err) =
        tokio::task::block_in_place(|| cli(hh, &["watch", &busy, "--json"], PASSWORD));
    assert_eq!(code, 5, "{err}");
    let failure: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(
        failure,
        serde_json::json!({
            "error": "the call ended with UserBusy (SIP 486 Busy Here)",
            "class": "call_failed",
            "exit_code": 5
        })
    );
    assert_eq!(
        watched.lines().last(),
        Some(
            r#"{"state":"Disconnected","cause":"UserBusy","sip_code":486,"sip_text":"Busy Here"}"#
        ),
        "{watched}"
    );
    let (_, text, _) = tokio::task::block_in_place(|| cli(hh, &["status", &busy], PASSWORD));
    assert_eq!(text.trim(), "Disconnected UserBusy 486 Busy Here");
    let (code, out, _) =
        tokio::task::block_in_place(|| cli(hh, &["hangup", &busy, "--json"], PASSWORD));
    assert_eq!((code, out.trim()), (0, r#"{"response_code":"NoError"}"#));
    // Credentials from the config file's [client] section.
    let file = hh.dir.path().join("client.toml");
    std::fs::write(
        &file,
        format!(
            "[client]\nurl = \"{}/EWS/Exchange.asmx\"\nuser = \"alice\"\npassword = \"{PASSWORD}\"\n",
            hh.base
        ),
    )
    .unwrap();
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(&file)
        .args(["status", &busy])
        .env_remove("OPENUM_URL")
        .env_remove("OPENUM_USER")
        .env_remove("OPENUM_PASSWORD")
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Error classes → exit codes.
    let (code, _, err) =
        tokio::task::block_in_place(|| cli(hh, &["hangup", "no-such-call"], PASSWORD));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ErrorInvalidPhoneCallId"), "{err}");
    let (code, _, _) = tokio::task::block_in_place(|| cli(hh, &["status", &id], "wrong password"));
    assert_eq!(code, 4);
    let out = Command::new(openum_bin())
        .args(["status", &id])
        .env_remove("OPENUM_USER")
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_call_wait_exit_5_for_every_failure_cause_and_0_otherwise() {
    let h = Harness::start(Options {
        audio_seconds: 1.0,
        ring_timeout_secs: 2,
        ..Options::default()
    })
    .await;
    let item = h.item.clone();
    let hh = &h;
    for (dial, end, code) in [
        ("4865551234", "Disconnected UserBusy 486 Busy Here", 5),
        ("4045551234", "Disconnected Unavailable 404 Not Found", 5),
        // Rings until the gateway's ring timeout (2 s): CANCEL, 487.
        (
            "4085551234",
            "Disconnected NoAnswer 487 Request Terminated",
            5,
        ),
        ("6035551234", "Disconnected Other 603 Decline", 5),
        // Answered, and the far end hangs up itself: no failure.
        ("9995551234", "Disconnected None", 0),
    ] {
        let (exit, out, err) = tokio::task::block_in_place(|| {
            cli(
                hh,
                &["call", "--item", &item, "--dial", dial, "--wait"],
                PASSWORD,
            )
        });
        let last = out.lines().last().unwrap_or_default().to_owned();
        assert!(last.starts_with(end), "{dial}: {out}\n{err}");
        assert_eq!(exit, code, "{dial}: {out}\n{err}");
        let cause = end.split(' ').nth(1).unwrap();
        if code == 5 {
            assert_eq!(
                err.trim(),
                format!(
                    "openum: the call ended with {}",
                    &last["Disconnected ".len()..]
                )
                .replacen(&format!("{cause} "), &format!("{cause} (SIP "), 1)
                    + ")",
                "{dial}"
            );
        } else {
            assert_eq!(err, "", "{dial}");
        }
        // `watch` of the ended call says the same.
        let id = out.lines().next().unwrap().to_owned();
        let (exit, watched, _) = tokio::task::block_in_place(|| cli(hh, &["watch", &id], PASSWORD));
        assert_eq!((exit, watched.trim()), (code, last.as_str()), "{dial}");
    }
}

/// A test CA, a `localhost` certificate it signed (PEM files in `dir`), and an HTTPS front on
/// loopback relaying each connection to `backend` (the harness's plain-HTTP openum); returns the
/// CA file and the front's port.
async fn tls_front(dir: &std::path::Path, backend: &str) -> (std::path::PathBuf, u16) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "openum test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = backend.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let backend = backend.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to relay.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(&backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (ca_file, port)
}

/// `openum ARGS` with `env` set (and no other OPENUM_* variable); exit code, stdout, stderr.
fn openum(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(openum_bin());
    command.args(args);
    for name in [
        "OPENUM_URL",
        "OPENUM_USER",
        "OPENUM_PASSWORD",
        "OPENUM_TOKEN",
        "OPENUM_CA_FILE",
        "OPENUM_TIMEOUT",
        "OPENUM_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_name_their_cause_and_the_ca_file_makes_a_private_ca_trusted() {
    let h = Harness::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (ca_file, port) = tls_front(dir.path(), &h.base).await;
    let ca = ca_file.to_str().unwrap();
    let https = format!("https://localhost:{port}/EWS/Exchange.asmx");
    let user = [("OPENUM_USER", "alice"), ("OPENUM_PASSWORD", PASSWORD)];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        tokio::task::block_in_place(|| openum(args, &[&user[..], env].concat()))
    };

    // Through TLS with the CA file (flag, environment, config file): the real server answers.
    let (code, _, err) = run(
        &["hangup", "no-such-call", "--url", &https, "--ca-file", ca],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ErrorInvalidPhoneCallId"), "{err}");
    let (code, _, err) = run(
        &["hangup", "no-such-call", "--url", &https],
        &[("OPENUM_CA_FILE", ca)],
    );
    assert_eq!(code, 3, "{err}");
    let config = dir.path().join("client.toml");
    std::fs::write(&config, format!("[client]\nca_file = {ca:?}\n")).unwrap();
    let (code, _, err) = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "hangup",
            "no-such-call",
            "--url",
            &https,
        ],
        &[],
    );
    assert_eq!(code, 3, "{err}");

    // Without it: not trusted, said so, with the way out.
    let (code, _, err) = run(&["status", "x", "--url", &https], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "openum: cannot reach the EWS endpoint {https}: certificate not trusted (unknown issuer) ("
        )),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("give its certificate with --ca-file FILE"),
        "{err}"
    );
    // The same server by IP address: the certificate names only localhost.
    let by_ip = format!("https://127.0.0.1:{port}/EWS/Exchange.asmx");
    let (code, _, err) = run(&["status", "x", "--url", &by_ip, "--ca-file", ca], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("(hostname mismatch)"), "{err}");

    // Nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/EWS/Exchange.asmx", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, err) = run(&["status", "x", "--url", &closed_url], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "openum: cannot reach the EWS endpoint {closed_url}: connection refused ("
        )),
        "{err}"
    );
    assert!(err.contains("Connection refused (os error"), "{err}");
    // … and the same as JSON with --json.
    let (code, out, err) = run(&["status", "x", "--json", "--url", &closed_url], &[]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    let value: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(value["class"], "connection_refused");
    assert_eq!(value["exit_code"], 1);
    assert!(value["error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));

    // A name that does not resolve (RFC 6761 `.invalid`).
    let (code, _, err) = run(
        &[
            "status",
            "x",
            "--url",
            "http://openum-cli-test.invalid/EWS/Exchange.asmx",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(": DNS failure (the host name does not resolve) ("),
        "{err}"
    );

    // A server that accepts and never answers: --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/EWS/Exchange.asmx", silent.local_addr().unwrap());
    let (code, _, err) = run(
        &["status", "x", "--timeout", "1", "--url", &silent_url],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(": timed out ("), "{err}");
    drop(silent);

    // Usage errors (exit 2): an invalid URL, an unusable CA file, a user without a password.
    let (code, _, err) = run(
        &["status", "x", "--url", "127.0.0.1:8080/EWS/Exchange.asmx"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("openum: invalid URL \"127.0.0.1:8080/EWS/Exchange.asmx\": "),
        "{err}"
    );
    let missing = dir.path().join("missing-ca.pem");
    let (code, _, err) = run(
        &[
            "status",
            "x",
            "--url",
            &https,
            "--ca-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with(&format!(
            "openum: cannot use the CA file {}: ",
            missing.display()
        )),
        "{err}"
    );
    let (code, out, err) = tokio::task::block_in_place(|| {
        openum(
            &["status", "x", "--url", &https],
            &[("OPENUM_USER", "alice")],
        )
    });
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(
        err.trim(),
        "openum: user \"alice\" has no password: set OPENUM_PASSWORD (or `password` in [client] \
         of the config file), or use OPENUM_TOKEN instead"
    );
    let (code, _, err) = tokio::task::block_in_place(|| {
        openum(
            &["watch", "x", "--json", "--url", &https],
            &[("OPENUM_USER", "alice")],
        )
    });
    assert_eq!(code, 2, "{err}");
    let value: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(value["class"], "usage");
}
