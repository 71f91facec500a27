//! The mailbox backend end to end: `openum serve` with `[mailbox]` pointed at the EWS mailbox
//! double (testkit), users logging in to openum with their mailbox credentials, voice mail found
//! with FindItem on the mailbox server and played through openum to a real phone (baresip) that
//! records what it hears — one call per audio format Exchange UM and PBX voice-mail systems put
//! in mailboxes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use support::phone::{chirp, chirp_wav, correlation, Phone};
use support::{openum_bin, serve, Processes};
use testkit::mailbox::{Attachment, Item, ItemRef, Mailbox, MailboxDouble, MailboxRef, Mode};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const ALICE_PW: &str = "alice mailbox password";
const BOB_PW: &str = "bob mailbox password";

/// `ffmpeg -i source <args> out` — the fixtures are made the way a PBX or UM would encode them.
fn encode(source: &Path, args: &[&str], out: &Path) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(source)
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg is required to make the fixtures (apt-get install ffmpeg)");
    assert!(status.success(), "ffmpeg {args:?} failed");
    std::fs::read(out).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A running openum in mailbox mode.
struct Node {
    url: String,
    http: reqwest::Client,
    /// openum's stderr, shown when it does not answer.
    log: PathBuf,
    _process: Processes,
}

impl Node {
    fn start(
        dir: &Path,
        mailbox_url: &str,
        http_port: u16,
        sip_port: u16,
        phone_port: u16,
    ) -> Self {
        let config = dir.join("openum.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{http_port}\"\ndata_dir = \"{}\"\n\
                 [sip]\nlisten = \"127.0.0.1:{sip_port}\"\n\
                 [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{phone_port}\"\n\
                 [mailbox]\news_url = \"{mailbox_url}\"\ntimeout_secs = 2\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = serve::spawn(&config, &dir.join("openum.log"), None);
        Self {
            url: format!("http://127.0.0.1:{http_port}/EWS/Exchange.asmx"),
            http: reqwest::Client::new(),
            log: dir.join("openum.log"),
            _process: Processes(vec![child]),
        }
    }

    /// POSTs an EWS body as `authorization`; (HTTP status, body).
    async fn ews(&self, authorization: &str, body: &str) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sent = self
                .http
                .post(&self.url)
                .header("Authorization", authorization)
                .header("Content-Type", "text/xml; charset=utf-8")
                .body(format!(
                    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\" xmlns:t=\"{T}\"><s:Body>{body}</s:Body></s:Envelope>"
                ))
                .send()
                .await;
            match sent {
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    return (status, reply.text().await.unwrap());
                }
                // openum is still starting.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!(
                    "openum at {} did not answer: {}\n--- its log:\n{}",
                    self.url,
                    calls::error_chain(&e),
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        }
    }

    async fn play(&self, authorization: &str, item: &str) -> String {
        self.ews(
            authorization,
            &format!("<m:PlayOnPhone><m:ItemId Id=\"{item}\"/><m:DialString>4711</m:DialString></m:PlayOnPhone>"),
        )
        .await
        .1
    }

    async fn info(&self, authorization: &str, id: &str) -> String {
        self.ews(
            authorization,
            &format!("<m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation>"),
        )
        .await
        .1
    }

    async fn metrics(&self) -> String {
        let url = self.url.replace("/EWS/Exchange.asmx", "/metrics");
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until call `id` is Disconnected; its last GetPhoneCallInformation answer.
    async fn wait_ended(&self, authorization: &str, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.info(authorization, id).await;
            if info.contains(">Disconnected<") {
                return info;
            }
            assert!(Instant::now() < deadline, "call did not end: {info}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn phone_call_id(reply: &str) -> String {
    reply
        .split("PhoneCallId Id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no PhoneCallId in {reply}"))
        .to_owned()
}

fn response_code(reply: &str) -> String {
    reply
        .split("ResponseCode>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no ResponseCode in {reply}"))
        .to_owned()
}

/// FindItem on a distinguished folder of the mailbox server, as a client does before
/// PlayOnPhone: (subject, ItemId) of each item.
async fn find_items(
    double: &MailboxDouble,
    authorization: &str,
    folder: &str,
) -> Vec<(String, String)> {
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\" xmlns:t=\"{T}\"><s:Body>\
         <m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>\
         <t:AdditionalProperties><t:FieldURI FieldURI=\"item:Subject\"/></t:AdditionalProperties>\
         </m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id=\"{folder}\"/></m:ParentFolderIds>\
         </m:FindItem></s:Body></s:Envelope>"
    );
    let reply = reqwest::Client::new()
        .post(double.url())
        .header("Authorization", authorization)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    reply
        .split("<t:Message>")
        .skip(1)
        .map(|m| {
            let id = m
                .split("ItemId Id=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .to_owned();
            let subject = m
                .split("<t:Subject>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or_default()
                .to_owned();
            (subject, id)
        })
        .collect()
}

/// Alice (two logins and a token) and Bob; Alice's voice mail in every format, a note without
/// audio, Bob's voice mail.
struct Mailboxes {
    double: MailboxDouble,
    _alice: MailboxRef,
    note: ItemRef,
    bobs: ItemRef,
}

async fn mailboxes(dir: &Path) -> Mailboxes {
    let source = dir.join("chirp.wav");
    chirp_wav(&source);
    // (format, attachment name, content type, ffmpeg arguments; none: the source itself)
    let encodings: [(&str, &str, &str, &[&str]); 6] = [
        ("PCM WAV", "audio.wav", "audio/wav", &[]),
        (
            "G.711 A-law WAV",
            "audio.wav",
            "audio/wav",
            &["-ar", "8000", "-c:a", "pcm_alaw"],
        ),
        (
            "G.711 mu-law WAV",
            "voicemail.wav",
            "audio/x-wav",
            &["-ar", "8000", "-c:a", "pcm_mulaw"],
        ),
        (
            "GSM 06.10 WAV",
            "audio.wav",
            "audio/gsm",
            &["-ar", "8000", "-c:a", "libgsm_ms"],
        ),
        (
            "MP3",
            "audio.mp3",
            "audio/mp3",
            &["-c:a", "libmp3lame", "-b:a", "64k"],
        ),
        (
            "WMA 2",
            "audio.wma",
            "audio/wma",
            &["-c:a", "wmav2", "-b:a", "64k"],
        ),
    ];
    let formats: Vec<(&str, &str, &str, Vec<u8>)> = encodings
        .iter()
        .enumerate()
        .map(|(i, &(format, name, content_type, args))| {
            let bytes = if args.is_empty() {
                std::fs::read(&source).unwrap()
            } else {
                let out = dir.join(format!("fixture{i}-{name}"));
                encode(&source, args, &out)
            };
            (format, name, content_type, bytes)
        })
        .collect();
    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(
        Mailbox::new("alice@example.com")
            .login("EXAMPLE\\alice")
            .password(ALICE_PW)
            .bearer_token("alice-oauth-token"),
    );
    let bob = builder.mailbox(Mailbox::new("bob@example.com").password(BOB_PW));
    for (format, name, content_type, bytes) in formats {
        // Exchange UM's voice mail names its attachment in PidTagVoiceMessageAttachmentOrder;
        // a PBX's is a plain note with an audio attachment next to other files.
        let item = if format.starts_with("G.711 mu-law") {
            Item::new(format!("Voice message {format}"), "IPM.Note")
                .attachment(Attachment::file(
                    "greeting.txt",
                    "text/plain",
                    b"hi".to_vec(),
                ))
                .attachment(Attachment::file(name, content_type, bytes))
        } else {
            Item::voicemail(format!("Voice Mail {format}"))
                .attachment(Attachment::file(name, content_type, bytes))
                .attachment_order(name)
        };
        builder.item(&alice, item);
    }
    let note = builder.item(
        &alice,
        Item::note("Minutes").attachment(Attachment::file(
            "minutes.pdf",
            "application/pdf",
            b"%PDF-1.4".to_vec(),
        )),
    );
    let bobs = builder.item(
        &bob,
        Item::voicemail("Voice Mail for Bob").attachment(Attachment::file(
            "audio.wav",
            "audio/wav",
            std::fs::read(&source).unwrap(),
        )),
    );
    Mailboxes {
        double: builder.start().await.unwrap(),
        _alice: alice,
        note,
        bobs,
    }
}

#[tokio::test]
async fn voice_mail_found_with_finditem_plays_intact_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let base = 36000 + (std::process::id() % 40) as u16 * 100;
    let phone = Phone::start(dir.path(), base + 2, base + 50, base + 99);
    let boxes = mailboxes(dir.path()).await;
    let node = Node::start(
        dir.path(),
        &boxes.double.url(),
        base,
        base + 1,
        phone.sip_port,
    );
    let alice = basic("alice@example.com", ALICE_PW);
    let mut found = find_items(&boxes.double, &alice, "voicemail").await;
    // Exchange UM's messages are in the Voice Mail search folder; the PBX's plain note is only
    // in the Inbox.
    assert_eq!(found.len(), 5, "{found:?}");
    found.extend(
        find_items(&boxes.double, &alice, "inbox")
            .await
            .into_iter()
            .filter(|(subject, _)| subject.starts_with("Voice message")),
    );
    assert_eq!(found.len(), 6, "{found:?}");
    let reference = chirp(8000);
    let mut scores = Vec::new();
    for (subject, item) in &found {
        let before = phone.recordings();
        let reply = node.play(&alice, item).await;
        let id = phone_call_id(&reply);
        let ended = node.wait_ended(&alice, &id).await;
        assert!(ended.contains(">None<"), "{subject}: {ended}");
        let got = phone.new_recording(&before);
        let (score, lag) = correlation(&reference, &got, 8000);
        scores.push((subject.clone(), score, lag, got.len()));
    }
    eprintln!("{scores:#?}");
    for (subject, score, lag, _) in &scores {
        assert!(
            *score >= 0.9,
            "{subject}: correlation {score:.4} at lag {lag}"
        );
    }
}

/// `openum voicemail play-test` as `user` with `password`: (exit code, stdout, stderr).
fn play_test(dir: &Path, user: &str, password: &str, item: &str) -> (i32, String, String) {
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(dir.join("openum.toml"))
        .args(["voicemail", "play-test", "--user", user, "--item", item])
        .env("OPENUM_PASSWORD", password)
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn calls_started(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("openum_calls_started_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"))
}

// Multi-threaded: the mailbox double serves from this runtime while the test waits for the
// `openum voicemail play-test` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_belong_to_the_mailbox_and_mailbox_errors_reach_the_client_as_exchange_gives_them() {
    let dir = tempfile::tempdir().unwrap();
    let base = 40000 + (std::process::id() % 10) as u16 * 100;
    let phone = Phone::start(dir.path(), base + 2, base + 50, base + 99);
    let boxes = mailboxes(dir.path()).await;
    let node = Node::start(
        dir.path(),
        &boxes.double.url(),
        base,
        base + 1,
        phone.sip_port,
    );
    let alice_smtp = basic("alice@example.com", ALICE_PW);
    let alice_domain = basic("EXAMPLE\\alice", ALICE_PW);
    let alice_token = "Bearer alice-oauth-token".to_owned();
    let bob = basic("bob@example.com", BOB_PW);
    let item = find_items(&boxes.double, &alice_smtp, "voicemail").await[0]
        .1
        .clone();

    // An admin checks the mailbox connection and one item from the terminal.
    let (code, out, err) = play_test(dir.path(), "EXAMPLE\\alice", ALICE_PW, &item);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2.5 s at 8 kHz"), "{out}");
    assert!(out.contains("GetAttachment"), "{out}");
    let (code, _, err) = play_test(dir.path(), "EXAMPLE\\alice", "wrong", &item);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = play_test(dir.path(), "alice@example.com", ALICE_PW, &boxes.bobs.id);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("Access is denied"), "{err}");

    // Wrong credentials: 401 exactly as for local users.
    let (status, body) = node
        .ews(
            &basic("alice@example.com", "nope"),
            "<m:GetPhoneCallInformation><m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation>",
        )
        .await;
    assert_eq!((status, body.as_str()), (401, ""));

    // One mailbox, three ways in: the call is theirs whichever way they ask; Bob's it is not.
    let id = phone_call_id(&node.play(&alice_smtp, &item).await);
    for who in [&alice_domain, &alice_token] {
        assert_eq!(response_code(&node.info(who, &id).await), "NoError");
    }
    assert_eq!(
        response_code(&node.info(&bob, &id).await),
        "ErrorInvalidPhoneCallId"
    );
    node.wait_ended(&alice_domain, &id).await;
    let placed = calls_started(&node.metrics().await);
    assert_eq!(placed, 1);

    // The mailbox server's own answer about the item is passed through — in a response that
    // still validates against the official schema, as every answer below.
    let valid = |reply: &str| testkit::Validator::shared().assert_valid(reply);
    let reply = node.play(&alice_smtp, &boxes.bobs.id).await;
    valid(&reply);
    assert_eq!(response_code(&reply), "ErrorAccessDenied", "{reply}");
    assert!(reply.contains("Access is denied"), "{reply}");
    let reply = node.play(&bob, &boxes.note.id).await;
    assert_eq!(response_code(&reply), "ErrorAccessDenied", "{reply}");
    // An item without audio.
    let reply = node.play(&alice_smtp, &boxes.note.id).await;
    valid(&reply);
    assert_eq!(
        response_code(&reply),
        "ErrorContentConversionFailed",
        "{reply}"
    );
    // An id the mailbox server does not know.
    let unknown = format!("AAMkA{}", "B".repeat(147));
    let reply = node.play(&alice_smtp, &unknown).await;
    let code = response_code(&reply);
    assert!(
        code == "ErrorInvalidIdMalformed" || code == "ErrorItemNotFound",
        "{reply}"
    );

    // The mailbox server down, slow, answering garbage or an HTML error page: a clear error
    // within the 2 s bound (+ slack), for PlayOnPhone and for a login not yet verified.
    for mode in [
        Mode::Down,
        Mode::Slow(Duration::from_secs(6)),
        Mode::Garbage,
        Mode::ServerError,
    ] {
        boxes.double.set_mode(mode).await;
        let started = Instant::now();
        let reply = node.play(&alice_smtp, &item).await;
        let took = started.elapsed();
        valid(&reply);
        assert_eq!(
            response_code(&reply),
            "ErrorMailboxStoreUnavailable",
            "{mode:?}: {reply}"
        );
        assert!(took < Duration::from_secs(4), "{mode:?}: took {took:?}");
        let (status, reply) = node
            .ews(
                &basic("EXAMPLE\\ALICE", ALICE_PW),
                &format!("<m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation>"),
            )
            .await;
        assert_eq!(status, 200, "{mode:?}: {reply}");
        valid(&reply);
        assert_eq!(
            response_code(&reply),
            "ErrorMailboxStoreUnavailable",
            "{mode:?}: {reply}"
        );
    }
    let (code, _, err) = play_test(dir.path(), "alice@example.com", ALICE_PW, &item);
    assert_eq!(code, 1, "{err}");
    boxes.double.set_mode(Mode::Normal).await;
    // None of the failures left a call behind.
    assert_eq!(calls_started(&node.metrics().await), placed);
    // Back to normal, the same item plays again (its audio is cached: no second download).
    let downloads_before = boxes
        .double
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some("GetAttachment"))
        .count();
    let id = phone_call_id(&node.play(&alice_token, &item).await);
    node.wait_ended(&alice_smtp, &id).await;
    let downloads_after = boxes
        .double
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some("GetAttachment"))
        .count();
    assert_eq!(
        downloads_after, downloads_before,
        "cached audio downloaded again"
    );
    // openum passed the caller's own header through, verbatim, and never anything else.
    for request in boxes.double.requests() {
        if let Some(login) = &request.login {
            assert!(
                [
                    "alice@example.com",
                    "EXAMPLE\\alice",
                    "EXAMPLE\\ALICE",
                    "bob@example.com"
                ]
                .contains(&login.as_str()),
                "{login}"
            );
        }
    }
}
