//! One EWS URL with a real EWS client: exchangelib (PyPI, the most used Python EWS library) is
//! given only openum's URL. It lists the Voice Mail folder, reads a voice message with its
//! attachments (forwarded by openum to the mailbox double), plays it on a real phone (baresip)
//! with PlayOnPhone sent over exchangelib's own session, and follows the call to Disconnected;
//! and with Autodiscover it ends up on openum's public URL. The script is
//! `tests/exchangelib/voicemail_client.py`; it records the exact bytes of every request it sends,
//! and the test checks the mailbox server received each forwarded one unchanged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use support::phone::{chirp_wav, Phone};
use support::{serve, Processes};
use testkit::mailbox::{Attachment, Item, LoggedRequest, Mailbox, MailboxDouble};

const PASSWORD: &str = "alice mailbox password";
const INSTALL: &str = "python3 -m pip install exchangelib==5.6.0";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exchangelib/voicemail_client.py")
}

/// Fails (never skips) when python3 or exchangelib is missing, saying how to install them.
fn require_exchangelib() {
    let out = Command::new("python3")
        .args(["-c", "import exchangelib; print(exchangelib.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required by this test ({e}); then {INSTALL}"));
    assert!(
        out.status.success(),
        "exchangelib (PyPI) is required by this test: {INSTALL}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// This test's ports: openum's HTTP and SIP and the phone's SIP, in a block of 55000–58999 by
/// process id. Outside the ephemeral range `.ci/run` sets (60000–65535), so that no outgoing
/// connection of this or another process can take one between the choice and the bind.
fn ports() -> (u16, u16, u16) {
    let base = 55000 + (std::process::id() % 400) as u16 * 10;
    (base, base + 1, base + 2)
}

/// Runs the script in `mode` against `url`; its JSON and the bodies it sent (path, bytes).
fn run_client(dir: &Path, mode: &str, url: &str) -> (Value, Vec<(String, Vec<u8>)>) {
    run_client_as(dir, mode, url, "basic", "alice@example.com")
}

/// [`run_client`] with an authentication scheme and login.
fn run_client_as(
    dir: &Path,
    mode: &str,
    url: &str,
    auth: &str,
    user: &str,
) -> (Value, Vec<(String, Vec<u8>)>) {
    let capture = dir.join(format!("{mode}-{auth}-bodies.jsonl"));
    let out = Command::new("python3")
        .arg(script())
        .args([mode, "--url", url, "--user", user, "--auth", auth])
        .args(["--smtp", "alice@example.com", "--dial", "4711", "--capture"])
        .arg(&capture)
        .env("OPENUM_TEST_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "exchangelib is required: {INSTALL}\n{stderr}"
    );
    assert!(
        out.status.success(),
        "exchangelib {mode} failed:\n{stdout}\n{stderr}"
    );
    eprintln!("exchangelib {mode}: {stdout}");
    let json: Value = serde_json::from_str(stdout.trim()).unwrap();
    let bodies = std::fs::read_to_string(&capture)
        .unwrap()
        .lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).unwrap();
            let body = base64::engine::general_purpose::STANDARD
                .decode(entry["body"].as_str().unwrap())
                .unwrap();
            (entry["path"].as_str().unwrap().to_owned(), body)
        })
        .collect();
    (json, bodies)
}

/// The local name of the SOAP Body's first element (a crude look: these are exchangelib's own
/// `<s:Body><m:Op …>` documents).
fn operation(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Some(after) = text.split("Body>").nth(1) else {
        return String::new();
    };
    let tag = after
        .trim_start_matches('<')
        .split([' ', '>', '/'])
        .next()
        .unwrap_or_default();
    tag.rsplit(':').next().unwrap_or_default().to_owned()
}

/// Every body exchangelib sent to a forwarded path arrived at the mailbox server byte for byte;
/// the forwarded operations, in order.
fn assert_forwarded_unchanged(
    sent: &[(String, Vec<u8>)],
    received: &[LoggedRequest],
) -> Vec<String> {
    let mut operations = Vec::new();
    for (path, body) in sent {
        let op = operation(body);
        if [
            "PlayOnPhone",
            "GetPhoneCallInformation",
            "DisconnectPhoneCall",
        ]
        .contains(&op.as_str())
        {
            continue;
        }
        let arrived = received
            .iter()
            .find(|r| r.path.eq_ignore_ascii_case(path) && r.body == *body);
        let arrived = arrived.unwrap_or_else(|| {
            panic!(
                "{op} to {path} did not reach the mailbox server unchanged:\n{}",
                String::from_utf8_lossy(body)
            )
        });
        // It came through openum's forwarder.
        assert!(arrived.header("x-forwarded-for").is_some(), "{op}");
        operations.push(op);
    }
    operations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchangelib_uses_openum_as_its_only_ews_url() {
    require_exchangelib();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("chirp.wav");
    chirp_wav(&wav);
    let audio = std::fs::read(&wav).unwrap();

    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(
        Mailbox::new("alice@example.com")
            .login("EXAMPLE\\alice")
            .password(PASSWORD),
    );
    // Basic and Windows authentication (NTLM, Negotiate), as Exchange's EWS offers them.
    builder.ntlm("example");
    builder.item(&alice, Item::note("Lunch?"));
    let voicemail = builder.item(
        &alice,
        Item::voicemail("Voice Mail from +49 30 1234567 (2 seconds)")
            .attachment(Attachment::file("audio.wav", "audio/wav", audio.clone()))
            .attachment_order("audio.wav"),
    );
    let double = builder.start().await.unwrap();

    let (http_port, sip_port, phone_port) = ports();
    let rtp = 47000 + (std::process::id() % 200) as u16 * 10;
    let phone = Phone::start(dir.path(), phone_port, rtp, rtp + 9);
    let public_url = format!("http://127.0.0.1:{http_port}/EWS/Exchange.asmx");
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{http_port}\"\ndata_dir = \"{}\"\n\
             [sip]\nlisten = \"127.0.0.1:{sip_port}\"\n\
             [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{phone_port}\"\n\
             [mailbox]\news_url = \"{}\"\npublic_url = \"{public_url}\"\ntimeout_secs = 2\n",
            dir.path().join("data").display(),
            double.url()
        ),
    )
    .unwrap();
    let log = dir.path().join("openum.log");
    let child = serve::spawn(&config, &log, None);
    let _openum = Processes(vec![child]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(Instant::now() < deadline, "openum did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Play: list, read, play, follow the call.
    let path = dir.path().to_owned();
    let url = public_url.clone();
    let (json, sent) = tokio::task::spawn_blocking(move || run_client(&path, "play", &url))
        .await
        .unwrap();
    let openum_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(json["exchangelib"], "5.6.0", "the version CI pins");
    assert_eq!(json["service_endpoint"], public_url.as_str());
    assert_eq!(json["folder"]["name"], "Voice Mail");
    let listed = json["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], voicemail.id.as_str());
    let item = &json["item"];
    assert_eq!(item["id"], voicemail.id.as_str());
    assert_eq!(
        item["subject"],
        "Voice Mail from +49 30 1234567 (2 seconds)"
    );
    assert_eq!(item["item_class"], "IPM.Note.Microsoft.Voicemail.UM.CA");
    assert_eq!(
        item["attachments"],
        serde_json::json!([{"name": "audio.wav", "content_type": "audio/wav", "bytes": audio.len()}])
    );
    let play = &json["play_on_phone"];
    assert_eq!(play["response_code"], "NoError", "{}", openum_log());
    assert!(!play["phone_call_id"].as_str().unwrap().is_empty());
    let states = play["states"].as_array().unwrap();
    assert_eq!(states.last().unwrap(), "Disconnected", "{states:?}");
    assert_eq!(play["connection_failure_cause"], "None", "{}", openum_log());
    assert!(!phone.recordings().is_empty(), "the phone heard nothing");
    let operations = assert_forwarded_unchanged(&sent, &double.requests());
    eprintln!("exchangelib sent through openum: {operations:?}");
    for op in ["GetFolder", "FindItem", "GetItem", "GetAttachment"] {
        assert!(operations.iter().any(|o| o == op), "{op} in {operations:?}");
    }

    // Autodiscover: exchangelib asks openum's autodiscover.svc and gets openum's public URL.
    double.clear_requests();
    let path = dir.path().to_owned();
    let url = format!("http://127.0.0.1:{http_port}/autodiscover/autodiscover.svc");
    let (json, sent) = tokio::task::spawn_blocking(move || run_client(&path, "autodiscover", &url))
        .await
        .unwrap();
    assert_eq!(json["service_endpoint"], public_url.as_str());
    assert_eq!(json["primary_smtp_address"], "alice@example.com");
    // The mailbox server offers NTLM besides Basic, and exchangelib prefers it when it guesses
    // the scheme itself (Autodiscover): its connections are pinned through openum.
    assert_eq!(json["auth_type"], "NTLM");
    assert_eq!(json["folder"]["name"], "Voice Mail");
    let operations = assert_forwarded_unchanged(&sent, &double.requests());
    eprintln!("exchangelib autodiscover through openum: {operations:?}");
    assert_eq!(
        operations.first().map(String::as_str),
        Some("GetUserSettingsRequestMessage")
    );
    // The mailbox server named itself; exchangelib only ever saw openum.
    let answered = double.requests().iter().any(|r| {
        r.operation.as_deref() == Some("GetUserSettingsRequestMessage") && r.status == 200
    });
    assert!(answered);

    // NTLM: exchangelib authenticates its connections (requests_ntlm), openum pins each to a
    // mailbox-server connection, and PlayOnPhone, sent on exchangelib's NTLM session, plays as
    // the mailbox.
    double.clear_requests();
    let path = dir.path().to_owned();
    let url = public_url.clone();
    let (json, sent) = tokio::task::spawn_blocking(move || {
        run_client_as(&path, "play", &url, "ntlm", "EXAMPLE\\alice")
    })
    .await
    .unwrap();
    assert_eq!(json["auth_type"], "NTLM", "{json}");
    assert_eq!(json["item"]["id"], voicemail.id.as_str());
    let play = &json["play_on_phone"];
    assert_eq!(play["response_code"], "NoError", "{}", openum_log());
    let states = play["states"].as_array().unwrap();
    assert_eq!(states.last().unwrap(), "Disconnected", "{states:?}");
    let operations = assert_forwarded_unchanged(&sent, &double.requests());
    for op in ["GetFolder", "FindItem", "GetItem", "GetAttachment"] {
        assert!(operations.iter().any(|o| o == op), "{op} in {operations:?}");
    }
    let schemes: Vec<_> = double
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.auth_scheme.clone())
        .collect();
    assert!(
        schemes.iter().all(|s| s.as_deref() == Some("NTLM")),
        "every answered request rode an NTLM-authenticated connection: {schemes:?}"
    );
}
