//! The mailbox double's NTLM: a handshake by hand over one raw TCP connection authenticates
//! that connection, and only that one.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a panic is a test failure"
)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openum_testkit::mailbox::{Mailbox, MailboxDouble};
use openum_testkit::ntlm;
use tokio::io::BufReader;
use tokio::net::TcpStream;

const GET_INBOX: &str = r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><s:Header><t:RequestServerVersion Version="Exchange2013"/></s:Header><s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder></s:Body></s:Envelope>"#;

/// One HTTP/1.1 exchange on `stream`: status and `WWW-Authenticate` values.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    authorization: Option<&str>,
) -> (u16, Vec<String>) {
    let reply = openum_testkit::http1::post(stream, "/EWS/Exchange.asmx", authorization, GET_INBOX)
        .await
        .unwrap();
    (reply.status, reply.challenges)
}

async fn handshake(
    stream: &mut BufReader<TcpStream>,
    scheme: &str,
    user: &str,
    domain: &str,
    password: &str,
) -> u16 {
    let type1 = format!("{scheme} {}", STANDARD.encode(ntlm::negotiate()));
    let (status, challenges) = exchange(stream, Some(&type1)).await;
    assert_eq!(status, 401);
    let token = challenges[0].strip_prefix(&format!("{scheme} ")).unwrap();
    let challenge = ntlm::parse_challenge(&STANDARD.decode(token).unwrap()).unwrap();
    assert_eq!(challenge.domain.as_deref(), Some("EXAMPLE"));
    let type3 = ntlm::authenticate(&challenge, user, domain, password, [7; 8], 0);
    exchange(
        stream,
        Some(&format!("{scheme} {}", STANDARD.encode(type3))),
    )
    .await
    .0
}

#[tokio::test]
async fn ntlm_authenticates_one_connection_as_the_mailbox() {
    let mut builder = MailboxDouble::builder();
    builder.mailbox(
        Mailbox::new("alice@example.com")
            .login("EXAMPLE\\alice")
            .password("pw"),
    );
    builder.ntlm("example");
    let double = builder.start().await.unwrap();
    let connect = || async { BufReader::new(TcpStream::connect(double.addr()).await.unwrap()) };

    let mut first = connect().await;
    let (status, challenges) = exchange(&mut first, None).await;
    assert_eq!(status, 401);
    assert!(challenges.iter().any(|c| c == "NTLM"), "{challenges:?}");
    assert!(
        challenges.iter().any(|c| c == "Negotiate"),
        "{challenges:?}"
    );
    assert_eq!(
        handshake(&mut first, "NTLM", "alice", "EXAMPLE", "pw").await,
        200
    );
    assert_eq!(
        exchange(&mut first, None).await.0,
        200,
        "the connection stays authenticated"
    );
    let log = double.requests();
    let last = log.last().unwrap();
    assert_eq!(last.auth_scheme.as_deref(), Some("NTLM"));
    assert_eq!(last.mailbox.as_deref(), Some("alice@example.com"));
    assert_eq!(log[log.len() - 2].login.as_deref(), Some("EXAMPLE\\alice"));

    // Another connection is not authenticated; a wrong password is refused; Negotiate works.
    let mut second = connect().await;
    assert_eq!(exchange(&mut second, None).await.0, 401);
    assert_eq!(
        handshake(&mut second, "NTLM", "alice", "EXAMPLE", "nope").await,
        401
    );
    assert_eq!(exchange(&mut second, None).await.0, 401);
    let mut third = connect().await;
    assert_eq!(
        handshake(&mut third, "Negotiate", "alice", "example.com", "pw").await,
        200,
        "user@domain login"
    );
    assert_eq!(exchange(&mut first, None).await.0, 200);
}
