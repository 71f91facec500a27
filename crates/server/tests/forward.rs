//! One EWS URL: with `[mailbox]`, every request but the three UM operations is forwarded to the
//! mailbox server (the testkit double) and its answer streamed back unchanged.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::{Duration, Instant};

use server::config::{Config, MailboxConfig};
use support::{TestServer, PASSWORD};
use testkit::mailbox::{Attachment, Item, Mailbox, MailboxDouble, Mode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

extern crate openum_server as server;

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const ALICE_PW: &str = "alice mailbox password";

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\" xmlns:t=\"{T}\"><s:Header><t:RequestServerVersion Version=\"Exchange2013\"/></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
}

struct Fixture {
    double: MailboxDouble,
    server: TestServer,
    item: testkit::mailbox::ItemRef,
    alice: String,
}

async fn fixture(tune: impl FnOnce(&mut MailboxConfig)) -> Fixture {
    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(Mailbox::new("alice@example.com").password(ALICE_PW));
    let item = builder.item(
        &alice,
        Item::voicemail("Voice Mail from 4711 (3 seconds)").attachment(Attachment::file(
            "audio.wav",
            "audio/wav",
            vec![7u8; 3000],
        )),
    );
    let double = builder.start().await.unwrap();
    let mut mailbox = MailboxConfig {
        ews_url: double.url(),
        timeout_secs: 2,
        ..MailboxConfig::default()
    };
    tune(&mut mailbox);
    let config = Config {
        mailbox: Some(mailbox),
        ..Config::default()
    };
    let server = TestServer::start_with(config, true).await;
    Fixture {
        double,
        server,
        item,
        alice: TestServer::basic("alice@example.com", ALICE_PW),
    }
}

impl Fixture {
    async fn post(&self, url: &str, auth: Option<&str>, body: String) -> reqwest::Response {
        let mut request = self
            .server
            .client
            .post(url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        request.send().await.unwrap()
    }

    fn ews(&self) -> String {
        self.server.url("/EWS/Exchange.asmx")
    }
}

/// Sends `body` through openum and straight to the double; both answers must be identical and
/// the double must have received exactly `body`.
async fn same_through_openum(f: &Fixture, body: &str) -> String {
    let direct = f
        .post(&f.double.url(), Some(&f.alice), body.to_owned())
        .await;
    let direct_status = direct.status();
    let direct_type = direct.headers()["content-type"].clone();
    let direct_body = direct.bytes().await.unwrap();
    f.double.clear_requests();
    let via = f.post(&f.ews(), Some(&f.alice), body.to_owned()).await;
    assert_eq!(via.status(), direct_status);
    assert_eq!(via.headers()["content-type"], direct_type);
    let via_body = via.bytes().await.unwrap();
    assert_eq!(via_body, direct_body, "answers differ");
    let seen = f.double.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body.as_bytes(), "the request was changed");
    assert_eq!(seen[0].path, "/EWS/Exchange.asmx");
    assert_eq!(seen[0].mailbox.as_deref(), Some("alice@example.com"));
    assert_eq!(seen[0].header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen[0].header("host"),
        Some(f.double.addr().to_string().as_str())
    );
    String::from_utf8(via_body.to_vec()).unwrap()
}

#[tokio::test]
async fn find_get_and_get_attachment_pass_byte_for_byte() {
    let f = fixture(|_| {}).await;
    let found = same_through_openum(
        &f,
        &envelope("<m:FindItem Traversal=\"Shallow\"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id=\"voicemail\"/></m:ParentFolderIds></m:FindItem>"),
    )
    .await;
    assert!(found.contains(&f.item.id), "{found}");
    let got = same_through_openum(
        &f,
        &envelope(&format!("<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI=\"item:Attachments\"/></t:AdditionalProperties></m:ItemShape><m:ItemIds><t:ItemId Id=\"{}\"/></m:ItemIds></m:GetItem>", f.item.id)),
    )
    .await;
    assert!(got.contains(&f.item.attachment_ids[0]), "{got}");
    let attachment = same_through_openum(
        &f,
        &envelope(&format!(
            "<m:GetAttachment><m:AttachmentIds><t:AttachmentId Id=\"{}\"/></m:AttachmentIds></m:GetAttachment>",
            f.item.attachment_ids[0]
        )),
    )
    .await;
    assert!(attachment.contains("<t:Content>"), "{attachment}");
    let metrics = f
        .server
        .client
        .get(f.server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for op in ["FindItem", "GetItem", "GetAttachment"] {
        assert!(
            metrics.contains(&format!(
                "openum_forwarded_requests_total{{operation=\"{op}\",status=\"200\"}} 1"
            )),
            "{metrics}"
        );
    }
    assert!(metrics.contains("openum_forward_duration_seconds_count 3"));
}

#[tokio::test]
async fn the_mailbox_servers_challenge_reaches_the_client_unchanged() {
    let f = fixture(|_| {}).await;
    let body = envelope("<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id=\"inbox\"/></m:FolderIds></m:GetFolder>");
    let direct = f.post(&f.double.url(), None, body.clone()).await;
    let via = f.post(&f.ews(), None, body.clone()).await;
    assert_eq!(via.status(), 401);
    let challenges = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(challenges(&via), challenges(&direct));
    assert_eq!(
        challenges(&via),
        vec!["Basic realm=\"127.0.0.1\"".to_owned()]
    );
    // A wrong password is the mailbox server's to refuse, too.
    let wrong = TestServer::basic("alice@example.com", "wrong");
    let via = f.post(&f.ews(), Some(&wrong), body).await;
    assert_eq!(via.status(), 401);
}

#[tokio::test]
async fn um_operations_on_the_same_url_are_answered_by_openum() {
    let f = fixture(|_| {}).await;
    f.double.clear_requests();
    // A local openum user: the mailbox server is not asked at all.
    let local = TestServer::basic("alice", PASSWORD);
    let reply = f
        .post(
            &f.ews(),
            Some(&local),
            envelope("<m:GetPhoneCallInformation><m:PhoneCallId Id=\"nope\"/></m:GetPhoneCallInformation>"),
        )
        .await;
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.unwrap();
    assert!(text.contains("ErrorInvalidPhoneCallId"), "{text}");
    assert!(f.double.requests().is_empty());
    // Without credentials: openum's own challenge.
    let reply = f
        .post(
            &f.ews(),
            None,
            envelope("<m:DisconnectPhoneCall><m:PhoneCallId Id=\"nope\"/></m:DisconnectPhoneCall>"),
        )
        .await;
    assert_eq!(reply.status(), 401);
    assert!(reply.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("openum"));
    // Not XML at all: openum's fault, not forwarded.
    let reply = f.post(&f.ews(), Some(&local), "garbage".into()).await;
    assert_eq!(reply.status(), 500);
    assert!(f.double.requests().is_empty());
}

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn unknown_paths_foreign_hosts_and_connect_are_refused() {
    let f = fixture(|_| {}).await;
    f.double.clear_requests();
    let reply = f
        .server
        .client
        .get(f.server.url("/owa/"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404);
    let addr = f.server.addr;
    let answer = raw(
        addr,
        "GET http://evil.example/EWS/Exchange.asmx HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let answer = raw(
        addr,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let answer = raw(
        addr,
        "GET /EWS/../owa/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Openum's schema files are its own.
    let wsdl = f
        .server
        .client
        .get(f.server.url("/EWS/Services.wsdl"))
        .send()
        .await
        .unwrap();
    assert_eq!(wsdl.status(), 200);
    assert!(f.double.requests().is_empty());
    // Other EWS paths are forwarded.
    let reply = f
        .server
        .client
        .get(f.server.url("/EWS/exchange.asmx/wssecurity"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 404, "the double's answer");
    assert_eq!(f.double.requests()[0].path, "/EWS/exchange.asmx/wssecurity");
}

#[tokio::test]
async fn a_mailbox_server_that_is_down_is_a_502_within_the_bound() {
    let f = fixture(|_| {}).await;
    f.double.set_mode(Mode::Down).await;
    let started = Instant::now();
    let reply = f
        .post(&f.ews(), Some(&f.alice), envelope("<m:FindItem/>"))
        .await;
    assert_eq!(reply.status(), 502);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!reply.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_mailbox_server_is_a_504_after_forward_timeout_secs() {
    let f = fixture(|m| m.forward_timeout_secs = 1).await;
    f.double.set_mode(Mode::Slow(Duration::from_secs(3))).await;
    let started = Instant::now();
    let reply = f
        .post(&f.ews(), Some(&f.alice), envelope("<m:FindItem/>"))
        .await;
    assert_eq!(reply.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn forwarded_requests_beyond_their_cap_are_503_and_never_block_um_operations() {
    let f = fixture(|m| m.max_forwarded_requests = 150).await;
    let local = TestServer::basic("alice", PASSWORD);
    let info = envelope(
        "<m:GetPhoneCallInformation><m:PhoneCallId Id=\"nope\"/></m:GetPhoneCallInformation>",
    );
    // Warm the credential cache (Argon2 runs once).
    let warm = f.post(&f.ews(), Some(&local), info.clone()).await;
    assert_eq!(warm.status(), 200);
    f.double.set_mode(Mode::Slow(Duration::from_secs(4))).await;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = reqwest::Client::new();
        let url = f.ews();
        let auth = f.alice.clone();
        slow.spawn(async move {
            client
                .post(url)
                .header("Authorization", auth)
                .body(envelope("<m:FindItem/>"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let started = Instant::now();
    let reply = f.post(&f.ews(), Some(&local), info).await;
    let took = started.elapsed();
    assert_eq!(reply.status(), 200);
    assert!(reply
        .text()
        .await
        .unwrap()
        .contains("ErrorInvalidPhoneCallId"));
    println!("GetPhoneCallInformation under 200 slow forwarded requests: {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(done) = slow.join_next().await {
        *statuses.entry(done.unwrap().unwrap()).or_insert(0) += 1;
    }
    // The double refuses the bare FindItem (a schema fault, HTTP 500): what matters is that it
    // answered 150 of them.
    assert_eq!(statuses.get(&500), Some(&150), "{statuses:?}");
    assert_eq!(statuses.get(&503), Some(&50), "{statuses:?}");
}

#[tokio::test]
async fn autodiscover_answers_name_openum_instead_of_the_mailbox_server() {
    let public = "https://openum.example.com/EWS/Exchange.asmx";
    let f = fixture(|m| m.public_url = Some(public.into())).await;
    let request = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>alice@example.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    let direct = f
        .post(
            &f.double
                .url()
                .replace("/EWS/Exchange.asmx", "/autodiscover/autodiscover.xml"),
            Some(&f.alice),
            request.into(),
        )
        .await
        .text()
        .await
        .unwrap();
    let via = f
        .post(
            &f.server.url("/Autodiscover/Autodiscover.xml"),
            Some(&f.alice),
            request.into(),
        )
        .await;
    assert_eq!(via.status(), 200);
    let via = via.text().await.unwrap();
    assert_eq!(via, direct.replace(&f.double.url(), public));
    for element in ["ASUrl", "EwsUrl", "OOFUrl"] {
        assert!(
            via.contains(&format!("<{element}>{public}</{element}>")),
            "{via}"
        );
    }
    assert!(via.contains("/EWS/UM2007Legacy.asmx</UMUrl>"), "{via}");
    assert!(!via.contains(&f.double.url()), "{via}");
    // Unauthenticated: the mailbox server's challenge.
    let via = f
        .post(
            &f.server.url("/autodiscover/autodiscover.xml"),
            None,
            request.into(),
        )
        .await;
    assert_eq!(via.status(), 401);
}
