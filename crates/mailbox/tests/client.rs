//! `MailboxClient` against a tiny in-test HTTP server (a raw tokio `TcpListener` answering
//! canned EWS responses, recording each request it reads).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ews_proto::mailbox::*;
use ews_proto::{Fault, ItemId, ResponseCode};
use openum_mailbox::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BASIC: &str = "Basic YWxpY2VAZXhhbXBsZS5jb206czNjcjN0";
const SECRET: &str = "YWxpY2VAZXhhbXBsZS5jb206czNjcjN0";
const ITEM_ID: &str = "AAMkAGI2TG93AAA=";

/// One request as the server read it.
#[derive(Clone, Debug)]
struct Recorded {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One canned answer.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Leave out `Content-Length` (the body then ends when the connection closes).
    no_length: bool,
}

fn answer(status: u16, body: impl Into<Vec<u8>>) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type", "text/xml; charset=utf-8".into())],
        body: body.into(),
        no_length: false,
    }
}

fn ok(body: String) -> Canned {
    answer(200, body)
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            // Only the optional whitespace after the colon is not part of the value.
            (
                name.to_owned(),
                value.trim_start_matches([' ', '\t']).to_owned(),
            )
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.trim().parse().unwrap());
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Recorded {
        request_line,
        headers,
        body: String::from_utf8(body).unwrap(),
    })
}

/// A server answering every request with `handler`'s answer; the URL is its EWS endpoint.
async fn serve(handler: impl Fn(&Recorded) -> Canned + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/EWS/Exchange.asmx",
        listener.local_addr().unwrap()
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = requests.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let recorded = recorded.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let canned = handler(&request);
                recorded.lock().unwrap().push(request);
                let mut head =
                    format!("HTTP/1.1 {} Canned\r\nConnection: close\r\n", canned.status);
                if !canned.no_length {
                    head += &format!("Content-Length: {}\r\n", canned.body.len());
                }
                for (name, value) in &canned.headers {
                    head += &format!("{name}: {value}\r\n");
                }
                head += "\r\n";
                // The client may stop reading (a body over its bound): write errors are expected.
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&canned.body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Server { url, requests }
}

fn settings(url: &str) -> MailboxSettings {
    MailboxSettings {
        ews_url: url.to_owned(),
        ca_file: None,
        timeout: Duration::from_millis(300),
        max_attachment_bytes: 1024,
    }
}

fn client(url: &str) -> MailboxClient {
    MailboxClient::new(settings(url)).unwrap()
}

fn envelope(body: MailboxResponse) -> String {
    encode_mailbox_response(&MailboxResponseEnvelope {
        server_version_info: Some(ews_proto::ServerVersionInfo::default()),
        body,
    })
}

fn inbox(id: &str) -> String {
    envelope(MailboxResponse::GetFolder(vec![GetFolderResponseMessage {
        message: MailboxResponseMessage::success(),
        folders: vec![Folder {
            element: "Folder".into(),
            folder_id: Some(FolderId {
                id: id.into(),
                change_key: Some("AQAAABYAAAB2".into()),
            }),
            display_name: None,
        }],
    }]))
}

fn file(id: &str, name: &str, content_type: Option<&str>, inline: bool) -> Attachment {
    Attachment::File(FileAttachment {
        attachment_id: Some(AttachmentId::new(id)),
        name: Some(name.into()),
        content_type: content_type.map(Into::into),
        size: Some(100),
        is_inline: Some(inline),
        ..FileAttachment::default()
    })
}

fn item(class: &str, attachments: Vec<Attachment>, order: Option<&str>) -> Item {
    Item {
        element: "Message".into(),
        item_id: Some(ItemId {
            id: ITEM_ID.into(),
            change_key: Some("CQAAABYAAAB2".into()),
        }),
        item_class: Some(class.into()),
        subject: Some("Voice Mail from +1 425 555 0100 (12 seconds)".into()),
        has_attachments: Some(!attachments.is_empty()),
        attachments,
        extended_properties: order
            .map(|o| ExtendedProperty {
                field: ExtendedFieldUri::VOICE_MESSAGE_ATTACHMENT_ORDER,
                value: ExtendedPropertyValue::Value(o.into()),
            })
            .into_iter()
            .collect(),
    }
}

fn get_item(item: Item) -> String {
    envelope(MailboxResponse::GetItem(vec![GetItemResponseMessage {
        message: MailboxResponseMessage::success(),
        items: vec![item],
    }]))
}

fn get_attachment(content: &[u8]) -> String {
    envelope(MailboxResponse::GetAttachment(vec![
        GetAttachmentResponseMessage {
            message: MailboxResponseMessage::success(),
            attachments: vec![Attachment::File(FileAttachment {
                attachment_id: Some(AttachmentId::new("att")),
                name: Some("vm.wav".into()),
                content: Some(content.to_vec()),
                ..FileAttachment::default()
            })],
        },
    ]))
}

/// The chosen attachment's id for an item served by a fresh server.
async fn chosen(item: Item) -> Result<VoiceMessage, MailboxError> {
    let body = get_item(item);
    let server = serve(move |_| ok(body.clone())).await;
    client(&server.url).voice_message(BASIC, ITEM_ID).await
}

fn assert_secret_not_shown(e: &MailboxError) {
    for text in [e.to_string(), format!("{e:?}")] {
        assert!(!text.contains(SECRET), "credentials shown in {text}");
    }
}

#[tokio::test]
async fn identity_is_the_inbox_folder_id_and_the_request_is_as_specified() {
    let server = serve(|_| ok(inbox("AQMkADAwATM0MDAAMS1iNTcwLWI2"))).await;
    let mailbox = client(&server.url);
    let identity = mailbox.identity(BASIC).await.unwrap();
    assert_eq!(identity.inbox_folder_id, "AQMkADAwATM0MDAAMS1iNTcwLWI2");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.request_line, "POST /EWS/Exchange.asmx HTTP/1.1");
    assert_eq!(r.header("Content-Type"), Some("text/xml; charset=utf-8"));
    assert_eq!(r.header("Authorization"), Some(BASIC));
    assert!(r
        .body
        .contains(r#"<t:RequestServerVersion Version="Exchange2013"/>"#));
    let decoded = decode_mailbox_request(r.body.as_bytes(), ews_proto::Limits::default()).unwrap();
    assert_eq!(
        decoded.body,
        MailboxRequest::GetFolder(GetFolder::inbox_id())
    );
}

#[tokio::test]
async fn the_callers_authorization_value_is_sent_verbatim() {
    let server = serve(|_| ok(inbox("inbox-id"))).await;
    let mailbox = client(&server.url);
    let values = [
        "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL291dGxvb2sifQ.c2ln-_",
        "bearer  lower-case and two spaces",
        "Basic Zm9vOmLDpHI=",
    ];
    for value in values {
        mailbox.identity(value).await.unwrap();
    }
    let sent: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("Authorization").unwrap().to_owned())
        .collect();
    assert_eq!(sent, values);
}

#[tokio::test]
async fn voice_message_follows_the_attachment_order_property() {
    // MS-OXOUM: most recent first; names compared case-insensitively, spaces trimmed.
    let message = chosen(item(
        "IPM.Note.Microsoft.Voicemail.UM.CA",
        vec![
            file("img", "image001.png", Some("image/png"), true),
            file("a1", "vm1.wav", Some("audio/wav"), false),
            file("a2", "vm2.wav", Some("audio/wav"), false),
        ],
        Some("; VM2.wav ; vm1.wav;"),
    ))
    .await
    .unwrap();
    assert_eq!(
        message,
        VoiceMessage {
            item_id: ITEM_ID.into(),
            change_key: Some("CQAAABYAAAB2".into()),
            item_class: "IPM.Note.Microsoft.Voicemail.UM.CA".into(),
            subject: Some("Voice Mail from +1 425 555 0100 (12 seconds)".into()),
            audio: AttachmentRef {
                id: "a2".into(),
                name: "vm2.wav".into(),
                content_type: Some("audio/wav".into()),
                size: Some(100),
            },
        }
    );
    assert!(message.is_voice_mail_class());
}

#[tokio::test]
async fn an_order_naming_no_attachment_falls_back_to_the_first_audio() {
    let message = chosen(item(
        "IPM.Note.Microsoft.Voicemail.UM",
        vec![
            file("a1", "audio.mp3", Some("audio/mp3"), false),
            file("a2", "other.mp3", Some("audio/mp3"), false),
        ],
        Some("gone.wav"),
    ))
    .await
    .unwrap();
    assert_eq!(message.audio.id, "a1");
}

#[tokio::test]
async fn voice_message_by_content_type_skipping_inline_and_non_audio() {
    let message = chosen(item(
        "IPM.Note",
        vec![
            file("img", "logo.png", Some("image/png"), true),
            file("inline-audio", "jingle.wav", Some("audio/wav"), true),
            file("txt", "transcript.txt", Some("text/plain"), false),
            Attachment::Item(ItemAttachment {
                attachment_id: Some(AttachmentId::new("fwd")),
                name: Some("Forwarded voice mail".into()),
                ..ItemAttachment::default()
            }),
            file("pbx", "message", Some("Audio/X-WAV; name=message"), false),
            file("later", "later.mp3", Some("audio/mpeg"), false),
        ],
        None,
    ))
    .await
    .unwrap();
    assert_eq!(message.audio.id, "pbx");
    assert_eq!(
        message.audio.content_type.as_deref(),
        Some("Audio/X-WAV; name=message")
    );
    assert!(!message.is_voice_mail_class());
}

#[tokio::test]
async fn voice_message_by_extension_when_the_type_says_nothing() {
    let by_octet_stream = chosen(item(
        "IPM.Note",
        vec![
            file("doc", "notes.pdf", Some("application/pdf"), false),
            file(
                "mislabelled",
                "greeting.wav",
                Some("application/pdf"),
                false,
            ),
            file(
                "vm",
                "VoiceMessage.MP3",
                Some("application/octet-stream"),
                false,
            ),
        ],
        None,
    ))
    .await
    .unwrap();
    assert_eq!(by_octet_stream.audio.id, "vm");

    for ext in ["wav", "mp3", "wma", "gsm"] {
        let untyped = chosen(item(
            "IPM.Note",
            vec![file("vm", &format!("msg.{ext}"), None, false)],
            None,
        ))
        .await
        .unwrap();
        assert_eq!(untyped.audio.content_type, None);
        assert_eq!(untyped.audio.name, format!("msg.{ext}"));
    }
}

#[tokio::test]
async fn nothing_playable_is_no_audio() {
    let err = chosen(item(
        "IPM.Note.Microsoft.Voicemail.UM.CA",
        vec![
            file("img", "image001.png", Some("image/png"), true),
            file("txt", "transcript.txt", Some("text/plain"), false),
            file("inline", "vm.wav", Some("audio/wav"), true),
        ],
        None,
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&err, MailboxError::NoAudio { item_class, attachments: 3 } if item_class == "IPM.Note.Microsoft.Voicemail.UM.CA"),
        "{err:?}"
    );
    let err = chosen(item("IPM.Note", vec![], None)).await.unwrap_err();
    assert!(
        matches!(err, MailboxError::NoAudio { attachments: 0, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn voice_message_sends_get_item_with_change_key_only_when_given() {
    let body = get_item(item(
        "IPM.Note",
        vec![file("a", "a.wav", None, false)],
        None,
    ));
    let server = serve(move |_| ok(body.clone())).await;
    let mailbox = client(&server.url);
    mailbox.voice_message(BASIC, ITEM_ID).await.unwrap();
    let with_key = ItemId {
        id: ITEM_ID.into(),
        change_key: Some("CQAAABYAAAB2".into()),
    };
    mailbox.voice_message_of(BASIC, &with_key).await.unwrap();
    let requests = server.requests();
    let sent: Vec<_> = requests
        .iter()
        .map(|r| {
            decode_mailbox_request(r.body.as_bytes(), ews_proto::Limits::default())
                .unwrap()
                .body
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            MailboxRequest::GetItem(GetItem::voice_message(ItemId {
                id: ITEM_ID.into(),
                change_key: None
            })),
            MailboxRequest::GetItem(GetItem::voice_message(with_key)),
        ]
    );
}

#[tokio::test]
async fn http_401_is_unauthorized_and_never_shows_the_credentials() {
    let server = serve(|_| Canned {
        status: 401,
        headers: vec![(
            "WWW-Authenticate",
            r#"Basic realm="mail.example.com""#.into(),
        )],
        body: Vec::new(),
        no_length: false,
    })
    .await;
    let mailbox = client(&server.url);
    let err = mailbox.identity(BASIC).await.unwrap_err();
    assert!(matches!(err, MailboxError::Unauthorized), "{err:?}");
    assert_secret_not_shown(&err);
    let err = mailbox.voice_message(BASIC, ITEM_ID).await.unwrap_err();
    assert!(matches!(err, MailboxError::Unauthorized), "{err:?}");
}

#[tokio::test]
async fn a_header_value_that_cannot_be_sent_is_unauthorized_without_a_request() {
    let server = serve(|_| ok(inbox("x"))).await;
    let err = client(&server.url)
        .identity("Basic abc\r\nX-Evil: 1")
        .await
        .unwrap_err();
    assert!(matches!(err, MailboxError::Unauthorized), "{err:?}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_servers_item_error_is_passed_through_with_code_and_text() {
    let body = envelope(MailboxResponse::GetItem(vec![GetItemResponseMessage {
        message: MailboxResponseMessage::error(
            ResponseCode::ErrorItemNotFound,
            "The specified object was not found in the store.",
        ),
        items: vec![],
    }]));
    let server = serve(move |_| ok(body.clone())).await;
    let err = client(&server.url)
        .voice_message(BASIC, ITEM_ID)
        .await
        .unwrap_err();
    match &err {
        MailboxError::Item { code, message } => {
            assert_eq!(*code, ResponseCode::ErrorItemNotFound);
            assert_eq!(message, "The specified object was not found in the store.");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the mailbox server answered ErrorItemNotFound: The specified object was not found in the store."
    );
}

#[tokio::test]
async fn a_code_newer_than_the_schema_keeps_its_name_in_the_text() {
    let body = envelope(MailboxResponse::GetFolder(vec![GetFolderResponseMessage {
        message: MailboxResponseMessage {
            response_code: Some(ResponseCodeValue::Other("ErrorSomethingNewer".into())),
            ..MailboxResponseMessage::error(ResponseCode::NoError, "Newer failure.")
        },
        folders: vec![],
    }]));
    let server = serve(move |_| ok(body.clone())).await;
    let err = client(&server.url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(&err, MailboxError::Item { code: ResponseCode::ErrorInternalServerError, message } if message == "Newer failure. (ErrorSomethingNewer)"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_soap_fault_is_passed_through_with_its_code() {
    let fault = ews_proto::encode_fault(&Fault::server_busy(2000));
    let server = serve(move |_| answer(500, fault.clone())).await;
    let err = client(&server.url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(&err, MailboxError::Item { code: ResponseCode::ErrorServerBusy, message } if message.contains("Try again later")),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_with_200_is_bad_response() {
    for garbage in [
        "<html><body>Welcome to nginx!</body></html>".to_owned(),
        "not xml".to_owned(),
        String::new(),
        ews_proto::encode_document(&ews_proto::ResponseDocument::Fault(Fault::invalid_request()))
            .replace("s:Fault", "s:Faulty"),
        inbox("wrong operation"),
    ] {
        let server = serve(move |_| ok(garbage.clone())).await;
        let err = client(&server.url)
            .voice_message(BASIC, ITEM_ID)
            .await
            .unwrap_err();
        assert!(matches!(err, MailboxError::BadResponse(_)), "{err:?}");
        assert_secret_not_shown(&err);
    }
}

#[tokio::test]
async fn other_statuses_and_redirects_are_unavailable_naming_the_status() {
    let server = serve(|_| answer(503, "<html>Service Unavailable</html>")).await;
    let err = client(&server.url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(
            err,
            MailboxError::Unavailable(Unavailable::Status { status: 503 })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("503"), "{err}");

    let server = serve(|_| answer(500, "<html>Runtime Error</html>")).await;
    let err = client(&server.url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(
            err,
            MailboxError::Unavailable(Unavailable::Status { status: 500 })
        ),
        "{err:?}"
    );

    let server = serve(|_| Canned {
        status: 302,
        headers: vec![(
            "Location",
            "https://login.example.com/owa/auth/logon.aspx".into(),
        )],
        body: Vec::new(),
        no_length: false,
    })
    .await;
    let err = client(&server.url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(&err, MailboxError::Unavailable(Unavailable::Redirect { status: 302, location: Some(l) }) if l.contains("logon.aspx")),
        "{err:?}"
    );
    assert!(err.to_string().contains("302"), "{err}");
    assert_eq!(server.requests().len(), 1, "the redirect was followed");
}

#[tokio::test]
async fn connection_refused_is_unavailable_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/EWS/Exchange.asmx",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let started = Instant::now();
    let err = client(&url).identity(BASIC).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(err, MailboxError::Unavailable(Unavailable::Connect(_))),
        "{err:?}"
    );
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/EWS/Exchange.asmx",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = client(&url).identity(BASIC).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, MailboxError::Unavailable(Unavailable::Timeout { timeout, .. }) if timeout == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_unavailable_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/EWS/Exchange.asmx",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            read_request(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n<?xml")
                .await;
            held.push(stream);
        }
    });
    let started = Instant::now();
    let err = client(&url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(err, MailboxError::Unavailable(Unavailable::Timeout { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn tls_failure_is_unavailable() {
    // A server that speaks plain HTTP where the client expects a TLS handshake.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://{}/EWS/Exchange.asmx",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let err = client(&url).identity(BASIC).await.unwrap_err();
    assert!(
        matches!(err, MailboxError::Unavailable(Unavailable::Connect(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

fn attachment_ref(size: Option<u64>) -> AttachmentRef {
    AttachmentRef {
        id: "att".into(),
        name: "vm.wav".into(),
        content_type: Some("audio/wav".into()),
        size,
    }
}

#[tokio::test]
async fn attachment_downloads_the_decoded_content() {
    let content: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    let body = get_attachment(&content);
    let server = serve(move |_| ok(body.clone())).await;
    let bytes = client(&server.url)
        .attachment(BASIC, &attachment_ref(Some(1000)))
        .await
        .unwrap();
    assert_eq!(bytes, content);
    let requests = server.requests();
    let sent =
        decode_mailbox_request(requests[0].body.as_bytes(), ews_proto::Limits::default()).unwrap();
    assert_eq!(
        sent.body,
        MailboxRequest::GetAttachment(GetAttachment {
            attachment_ids: vec![AttachmentId::new("att")]
        })
    );
    assert_eq!(requests[0].header("Authorization"), Some(BASIC));
}

#[tokio::test]
async fn attachment_over_the_cap_by_its_size_is_refused_without_a_request() {
    let server = serve(|_| ok(get_attachment(b"never sent"))).await;
    let err = client(&server.url)
        .attachment(BASIC, &attachment_ref(Some(1025)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MailboxError::TooLarge {
                limit: 1024,
                size: Some(1025)
            }
        ),
        "{err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn attachment_with_a_lying_size_and_a_big_body_is_cut_off() {
    let big = get_attachment(&vec![7u8; 4 * 1024 * 1024]);
    for no_length in [false, true] {
        let body = big.clone();
        let server = serve(move |_| Canned {
            no_length,
            ..ok(body.clone())
        })
        .await;
        let started = Instant::now();
        let err = client(&server.url)
            .attachment(BASIC, &attachment_ref(Some(10)))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                MailboxError::TooLarge {
                    limit: 1024,
                    size: None
                }
            ),
            "no_length {no_length}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn attachment_content_just_over_the_cap_is_refused_with_its_size() {
    // Within the body bound (base64 of the cap plus envelope room), over the cap once decoded.
    let body = get_attachment(&[1u8; 1100]);
    let server = serve(move |_| ok(body.clone())).await;
    let err = client(&server.url)
        .attachment(BASIC, &attachment_ref(None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            MailboxError::TooLarge {
                limit: 1024,
                size: Some(1100)
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_item_attachment_answer_is_bad_response() {
    let body = envelope(MailboxResponse::GetAttachment(vec![
        GetAttachmentResponseMessage {
            message: MailboxResponseMessage::success(),
            attachments: vec![Attachment::Item(ItemAttachment::default())],
        },
    ]));
    let server = serve(move |_| ok(body.clone())).await;
    let err = client(&server.url)
        .attachment(BASIC, &attachment_ref(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, MailboxError::BadResponse(BadResponse::Missing(_))),
        "{err:?}"
    );
}

#[test]
fn a_missing_ca_file_is_a_setup_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-ca.pem");
    let err = MailboxClient::new(MailboxSettings {
        ca_file: Some(path.clone()),
        ..settings("https://mail.example.com/EWS/Exchange.asmx")
    })
    .unwrap_err();
    assert!(
        matches!(&err, MailboxError::Setup(SetupError::ReadCaFile { path: p, .. }) if *p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_ca_file_without_a_usable_certificate_is_a_setup_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let valid = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ca.pem"
    ))
    .unwrap();
    let damaged = valid.replacen("MII", "MIX", 1);
    for (name, text) in [
        ("empty.pem", String::new()),
        ("text.pem", "not a certificate\n".into()),
        ("damaged.pem", damaged),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let err = MailboxClient::new(MailboxSettings {
            ca_file: Some(path.clone()),
            ..settings("https://mail.example.com/EWS/Exchange.asmx")
        })
        .unwrap_err();
        assert!(matches!(err, MailboxError::Setup(_)), "{name}: {err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_valid_ca_file_is_accepted() {
    MailboxClient::new(MailboxSettings {
        ca_file: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ca.pem").into()),
        ..settings("https://mail.example.com/EWS/Exchange.asmx")
    })
    .unwrap();
}

#[test]
fn unusable_settings_are_setup_errors() {
    for url in ["not a url", "ftp://mail.example.com/EWS/Exchange.asmx", ""] {
        let err = MailboxClient::new(settings(url)).unwrap_err();
        assert!(
            matches!(err, MailboxError::Setup(SetupError::Url { .. })),
            "{url}: {err:?}"
        );
    }
    let err = MailboxClient::new(MailboxSettings {
        timeout: Duration::ZERO,
        ..settings("https://mail.example.com/EWS/Exchange.asmx")
    })
    .unwrap_err();
    assert!(
        matches!(err, MailboxError::Setup(SetupError::ZeroTimeout)),
        "{err:?}"
    );
}

#[test]
fn the_client_and_its_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let mailbox = client("http://127.0.0.1:9/EWS/Exchange.asmx");
    send_sync(&mailbox);
    send(mailbox.identity(BASIC));
    send(mailbox.voice_message(BASIC, ITEM_ID));
    send(mailbox.attachment(BASIC, &attachment_ref(None)));
    fn error<E: std::error::Error + Send + Sync + 'static>() {}
    error::<MailboxError>();
}
