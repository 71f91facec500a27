//! The mailbox double, driven over HTTP with raw SOAP as a real client would send it. Every SOAP
//! document it answers is validated against the official EWS schema.

#![allow(clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use openum_testkit::mailbox::{
    Attachment, Folder, ForeignItemError, Item, ItemRef, Mailbox, MailboxDouble, MailboxRef, Mode,
};
use openum_testkit::{outline, Validator};

const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// Alice (two logins and a token) with a voice mail, a note and a protected voice mail; Bob
/// with a voice mail of his own.
struct Fixture {
    double: MailboxDouble,
    alice: MailboxRef,
    bob: MailboxRef,
    voicemail: ItemRef,
    note: ItemRef,
    bobs_voicemail: ItemRef,
}

const AUDIO: &[u8] = b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64 not really mp3";

async fn fixture() -> Fixture {
    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(
        Mailbox::new("alice@example.com")
            .login("EXAMPLE\\alice")
            .password("alice-pw")
            .bearer_token("alice-token"),
    );
    let bob = builder.mailbox(Mailbox::new("bob@example.com").password("bob-pw"));
    let voicemail = builder.item(
        &alice,
        Item::voicemail("Voice Mail from +49 30 1234567 (12 seconds)")
            .received("2024-05-01T10:00:00Z")
            .attachment(Attachment::file("audio.mp3", "audio/mpeg", AUDIO))
            .attachment(
                Attachment::file("logo.png", "image/png", b"\x89PNG".to_vec())
                    .inline(true)
                    .content_id("logo@example.com"),
            )
            .attachment_order("audio.mp3"),
    );
    let note = builder.item(
        &alice,
        Item::note("Lunch & <friends>").received("2024-05-01T11:00:00Z"),
    );
    builder.item(
        &alice,
        Item::new(
            "Protected voice mail",
            "IPM.Note.rpmsg.Microsoft.Voicemail.UM.CA",
        )
        .received("2024-05-01T09:00:00Z"),
    );
    let bobs_voicemail = builder.item(
        &bob,
        Item::voicemail("Voice Mail for Bob")
            .attachment(Attachment::file("audio.wav", "audio/wav", b"RIFF".to_vec()))
            .attachment_order("audio.wav"),
    );
    let double = builder.start().await.expect("start the double");
    Fixture {
        double,
        alice,
        bob,
        voicemail,
        note,
        bobs_voicemail,
    }
}

fn basic(login: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{login}:{password}")))
}

fn alice() -> Option<String> {
    Some(basic("EXAMPLE\\alice", "alice-pw"))
}

fn envelope(operation: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="{TYPES}" xmlns:m="{MESSAGES}">
  <soap:Header><t:RequestServerVersion Version="Exchange2010_SP1"/></soap:Header>
  <soap:Body>
    {operation}
  </soap:Body>
</soap:Envelope>"#
    )
}

fn get_folder(folder: &str, shape: &str) -> String {
    envelope(&format!(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>{shape}</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="{folder}"/></m:FolderIds></m:GetFolder>"#
    ))
}

/// The `GetItem` openum's mailbox backend sends.
fn get_item(ids: &[&str]) -> String {
    let ids: String = ids
        .iter()
        .map(|id| format!(r#"<t:ItemId Id="{id}"/>"#))
        .collect();
    envelope(&format!(
        r#"<m:GetItem>
      <m:ItemShape>
        <t:BaseShape>IdOnly</t:BaseShape>
        <t:AdditionalProperties>
          <t:FieldURI FieldURI="item:ItemClass"/>
          <t:FieldURI FieldURI="item:Subject"/>
          <t:FieldURI FieldURI="item:HasAttachments"/>
          <t:FieldURI FieldURI="item:Attachments"/>
          <t:ExtendedFieldURI PropertyTag="0x6805" PropertyType="String"/>
        </t:AdditionalProperties>
      </m:ItemShape>
      <m:ItemIds>{ids}</m:ItemIds>
    </m:GetItem>"#
    ))
}

fn get_attachment(ids: &[&str]) -> String {
    let ids: String = ids
        .iter()
        .map(|id| format!(r#"<t:AttachmentId Id="{id}"/>"#))
        .collect();
    envelope(&format!(
        r#"<m:GetAttachment><m:AttachmentIds>{ids}</m:AttachmentIds></m:GetAttachment>"#
    ))
}

fn find_item(folder: &str, page: &str) -> String {
    envelope(&format!(
        r#"<m:FindItem Traversal="Shallow">
      <m:ItemShape>
        <t:BaseShape>IdOnly</t:BaseShape>
        <t:AdditionalProperties>
          <t:FieldURI FieldURI="item:Subject"/>
          <t:FieldURI FieldURI="item:ItemClass"/>
          <t:FieldURI FieldURI="item:DateTimeReceived"/>
        </t:AdditionalProperties>
      </m:ItemShape>
      {page}
      <m:ParentFolderIds><t:DistinguishedFolderId Id="{folder}"/></m:ParentFolderIds>
    </m:FindItem>"#
    ))
}

/// What came back.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    challenges: Vec<String>,
    body: String,
}

impl Reply {
    /// Texts of the elements named `local`, in document order.
    fn texts(&self, local: &str) -> Vec<String> {
        outline(&self.body)
            .into_iter()
            .filter(|n| n.local == local)
            .map(|n| n.text)
            .collect()
    }

    /// Values of attribute `attr` on the elements named `local`.
    fn attrs(&self, local: &str, attr: &str) -> Vec<String> {
        outline(&self.body)
            .into_iter()
            .filter(|n| n.local == local)
            .filter_map(|n| n.attr(attr).map(str::to_owned))
            .collect()
    }

    /// A 200 SOAP response that is valid against the official schema.
    fn assert_document(&self) -> &Self {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("text/xml; charset=utf-8")
        );
        Validator::shared().assert_valid(&self.body);
        self
    }

    /// A 500 SOAP fault with `code`, valid against the official schema.
    fn assert_fault(&self, code: &str) -> &Self {
        assert_eq!(self.status, 500, "{}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("text/xml; charset=utf-8")
        );
        Validator::shared().assert_valid(&self.body);
        assert_eq!(self.texts("faultcode"), [format!("a:{code}")]);
        assert_eq!(self.texts("ResponseCode"), [code]);
        self
    }
}

async fn post(url: &str, authorization: Option<String>, body: &str) -> Reply {
    send(reqwest::Method::POST, url, authorization, body)
        .await
        .expect("the double answers")
}

async fn send(
    method: reqwest::Method,
    url: &str,
    authorization: Option<String>,
    body: &str,
) -> Result<Reply, reqwest::Error> {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(body.to_owned());
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await?;
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ASCII header").to_owned())
            .collect::<Vec<_>>()
    };
    let content_type = header("content-type").into_iter().next();
    let challenges = header("www-authenticate");
    let status = response.status().as_u16();
    let body = response.text().await?;
    Ok(Reply {
        status,
        content_type,
        challenges,
        body,
    })
}

#[tokio::test]
async fn get_folder_inbox_gives_every_login_spelling_the_same_folder_id() {
    let f = fixture().await;
    let url = f.double.url();
    for authorization in [
        basic("alice@example.com", "alice-pw"),
        basic("EXAMPLE\\alice", "alice-pw"),
        basic("example\\ALICE", "alice-pw"),
        "Bearer alice-token".to_owned(),
    ] {
        let reply = post(&url, Some(authorization), &get_folder("inbox", "IdOnly")).await;
        reply.assert_document();
        assert_eq!(
            reply.attrs("FolderId", "Id"),
            std::slice::from_ref(&f.alice.inbox_id)
        );
        assert_eq!(reply.texts("ResponseCode"), ["NoError"]);
        assert!(
            reply.texts("DisplayName").is_empty(),
            "IdOnly: no other properties"
        );
    }
    let bob = post(
        &url,
        Some(basic("bob@example.com", "bob-pw")),
        &get_folder("inbox", "IdOnly"),
    )
    .await;
    assert_eq!(
        bob.attrs("FolderId", "Id"),
        std::slice::from_ref(&f.bob.inbox_id)
    );
    assert_ne!(f.alice.inbox_id, f.bob.inbox_id);
}

#[tokio::test]
async fn get_folder_default_shape_counts_the_folder_and_voicemail_is_a_search_folder() {
    let f = fixture().await;
    let inbox = post(&f.double.url(), alice(), &get_folder("inbox", "Default")).await;
    inbox.assert_document();
    assert_eq!(inbox.texts("DisplayName"), ["Inbox"]);
    assert_eq!(inbox.texts("TotalCount"), ["3"]);
    let voicemail = post(
        &f.double.url(),
        alice(),
        &get_folder("voicemail", "Default"),
    )
    .await;
    voicemail.assert_document();
    assert_eq!(
        voicemail.attrs("FolderId", "Id"),
        std::slice::from_ref(&f.alice.voicemail_folder_id)
    );
    assert!(outline(&voicemail.body)
        .iter()
        .any(|n| n.local == "SearchFolder"));
    assert_eq!(voicemail.texts("TotalCount"), ["2"]);
    let calendar = post(&f.double.url(), alice(), &get_folder("calendar", "IdOnly")).await;
    calendar.assert_document();
    assert_eq!(calendar.texts("ResponseCode"), ["ErrorFolderNotFound"]);
}

#[tokio::test]
async fn get_item_returns_class_subject_attachments_and_the_attachment_order() {
    let f = fixture().await;
    let reply = post(&f.double.url(), alice(), &get_item(&[&f.voicemail.id])).await;
    reply.assert_document();
    assert_eq!(
        reply.attrs("GetItemResponseMessage", "ResponseClass"),
        ["Success"]
    );
    assert_eq!(
        reply.attrs("ItemId", "Id"),
        std::slice::from_ref(&f.voicemail.id)
    );
    assert_eq!(
        reply.attrs("ItemId", "ChangeKey"),
        std::slice::from_ref(&f.voicemail.change_key)
    );
    assert_eq!(
        reply.texts("ItemClass"),
        ["IPM.Note.Microsoft.Voicemail.UM.CA"]
    );
    assert_eq!(
        reply.texts("Subject"),
        ["Voice Mail from +49 30 1234567 (12 seconds)"]
    );
    assert_eq!(reply.texts("HasAttachments"), ["true"]);
    assert_eq!(
        reply.attrs("AttachmentId", "Id"),
        f.voicemail.attachment_ids
    );
    assert_eq!(reply.texts("Name"), ["audio.mp3", "logo.png"]);
    assert_eq!(reply.texts("ContentType"), ["audio/mpeg", "image/png"]);
    assert_eq!(reply.texts("IsInline"), ["false", "true"]);
    assert_eq!(reply.texts("ContentId"), ["logo@example.com"]);
    assert_eq!(reply.texts("Size")[0], AUDIO.len().to_string());
    assert!(
        reply.texts("Content").is_empty(),
        "GetItem carries no content"
    );
    assert_eq!(reply.attrs("ExtendedFieldURI", "PropertyTag"), ["0x6805"]);
    assert_eq!(reply.attrs("ExtendedFieldURI", "PropertyType"), ["String"]);
    assert_eq!(reply.texts("Value"), ["audio.mp3"]);
    assert!(reply.texts("DateTimeReceived").is_empty(), "not asked for");
}

#[tokio::test]
async fn get_item_of_a_plain_note_has_no_attachments_and_no_attachment_order() {
    let f = fixture().await;
    let reply = post(&f.double.url(), alice(), &get_item(&[&f.note.id])).await;
    reply.assert_document();
    assert_eq!(reply.texts("ItemClass"), ["IPM.Note"]);
    assert_eq!(reply.texts("Subject"), ["Lunch & <friends>"]);
    assert_eq!(reply.texts("HasAttachments"), ["false"]);
    assert!(reply.texts("Attachments").is_empty());
    assert!(reply.texts("ExtendedProperty").is_empty());
}

#[tokio::test]
async fn only_inline_attachments_mean_has_attachments_false() {
    let mut builder = MailboxDouble::builder();
    let carol = builder.mailbox(Mailbox::new("carol@example.com").password("pw"));
    let item = builder.item(
        &carol,
        Item::note("Signature only")
            .attachment(Attachment::file("logo.png", "image/png", b"x".to_vec()).inline(true)),
    );
    let double = builder.start().await.expect("start");
    let reply = post(
        &double.url(),
        Some(basic("carol@example.com", "pw")),
        &get_item(&[&item.id]),
    )
    .await;
    reply.assert_document();
    assert_eq!(reply.texts("HasAttachments"), ["false"]);
    assert_eq!(reply.attrs("AttachmentId", "Id"), item.attachment_ids);
}

#[tokio::test]
async fn get_attachment_returns_the_file_with_base64_content() {
    let f = fixture().await;
    let id = &f.voicemail.attachment_ids[0];
    let reply = post(&f.double.url(), alice(), &get_attachment(&[id])).await;
    reply.assert_document();
    assert_eq!(
        reply.attrs("GetAttachmentResponseMessage", "ResponseClass"),
        ["Success"]
    );
    assert_eq!(reply.attrs("AttachmentId", "Id"), std::slice::from_ref(id));
    assert_eq!(reply.texts("Name"), ["audio.mp3"]);
    assert_eq!(reply.texts("ContentType"), ["audio/mpeg"]);
    let content = STANDARD
        .decode(&reply.texts("Content")[0])
        .expect("base64 content");
    assert_eq!(content, AUDIO);
}

#[tokio::test]
async fn find_item_on_voicemail_lists_only_voice_mail_newest_first() {
    let f = fixture().await;
    let reply = post(&f.double.url(), alice(), &find_item("voicemail", "")).await;
    reply.assert_document();
    assert_eq!(reply.attrs("RootFolder", "TotalItemsInView"), ["2"]);
    assert_eq!(
        reply.attrs("RootFolder", "IncludesLastItemInRange"),
        ["true"]
    );
    assert_eq!(
        reply.texts("Subject"),
        [
            "Voice Mail from +49 30 1234567 (12 seconds)",
            "Protected voice mail"
        ]
    );
    assert_eq!(reply.attrs("ItemId", "Id")[0], f.voicemail.id);
    assert_eq!(
        reply.texts("DateTimeReceived"),
        ["2024-05-01T10:00:00Z", "2024-05-01T09:00:00Z"]
    );
    assert!(reply.texts("HasAttachments").is_empty(), "not asked for");
}

#[tokio::test]
async fn find_item_on_inbox_lists_every_inbox_item_and_pages() {
    let f = fixture().await;
    let reply = post(&f.double.url(), alice(), &find_item("inbox", "")).await;
    reply.assert_document();
    assert_eq!(
        reply.texts("ItemClass"),
        [
            "IPM.Note",
            "IPM.Note.Microsoft.Voicemail.UM.CA",
            "IPM.Note.rpmsg.Microsoft.Voicemail.UM.CA"
        ]
    );
    let page =
        r#"<m:IndexedPageItemView MaxEntriesReturned="1" Offset="1" BasePoint="Beginning"/>"#;
    let paged = post(&f.double.url(), alice(), &find_item("inbox", page)).await;
    paged.assert_document();
    assert_eq!(
        paged.attrs("ItemId", "Id"),
        std::slice::from_ref(&f.voicemail.id)
    );
    assert_eq!(paged.attrs("RootFolder", "IndexedPagingOffset"), ["2"]);
    assert_eq!(paged.attrs("RootFolder", "TotalItemsInView"), ["3"]);
    assert_eq!(
        paged.attrs("RootFolder", "IncludesLastItemInRange"),
        ["false"]
    );
}

#[tokio::test]
async fn items_added_or_deleted_at_run_time_show_in_find_item_and_get_item() {
    let f = fixture().await;
    let added = f.double.add_item(
        &f.alice,
        Item::voicemail("Just arrived").received("2024-06-01T00:00:00Z"),
    );
    let reply = post(&f.double.url(), alice(), &find_item("voicemail", "")).await;
    assert_eq!(reply.attrs("ItemId", "Id")[0], added.id);

    assert!(f.double.delete_item(&f.voicemail));
    assert!(!f.double.delete_item(&f.voicemail), "already gone");
    let after = post(&f.double.url(), alice(), &find_item("voicemail", "")).await;
    assert!(!after.attrs("ItemId", "Id").contains(&f.voicemail.id));
    let gone = post(&f.double.url(), alice(), &get_item(&[&f.voicemail.id])).await;
    gone.assert_document();
    assert_eq!(gone.texts("ResponseCode"), ["ErrorItemNotFound"]);
    assert_eq!(
        gone.texts("MessageText"),
        ["The specified object was not found in the store."]
    );
    let attachment = post(
        &f.double.url(),
        alice(),
        &get_attachment(&[&f.voicemail.attachment_ids[0]]),
    )
    .await;
    attachment.assert_document();
    assert_eq!(attachment.texts("ResponseCode"), ["ErrorItemNotFound"]);
}

#[tokio::test]
async fn another_mailboxs_item_answers_error_access_denied_and_stops_the_batch() {
    let f = fixture().await;
    let reply = post(
        &f.double.url(),
        alice(),
        &get_item(&[&f.bobs_voicemail.id, &f.voicemail.id]),
    )
    .await;
    reply.assert_document();
    assert_eq!(
        reply.attrs("GetItemResponseMessage", "ResponseClass"),
        ["Error", "Warning"]
    );
    assert_eq!(
        reply.texts("ResponseCode"),
        ["ErrorAccessDenied", "ErrorBatchProcessingStopped"]
    );
    assert_eq!(reply.texts("DescriptiveLinkKey"), ["0", "0"]);
    assert!(reply.texts("Subject").is_empty(), "nothing of Bob's leaks");
    let attachment = post(
        &f.double.url(),
        alice(),
        &get_attachment(&[&f.bobs_voicemail.attachment_ids[0]]),
    )
    .await;
    attachment.assert_document();
    assert_eq!(attachment.texts("ResponseCode"), ["ErrorAccessDenied"]);
    // Bob reads his own item.
    let own = post(
        &f.double.url(),
        Some(basic("bob@example.com", "bob-pw")),
        &get_item(&[&f.bobs_voicemail.id]),
    )
    .await;
    assert_eq!(own.texts("ResponseCode"), ["NoError"]);
}

#[tokio::test]
async fn another_mailboxs_item_can_answer_error_item_not_found_instead() {
    let mut builder = MailboxDouble::builder();
    builder.foreign_item_error(ForeignItemError::ItemNotFound);
    let alice = builder.mailbox(Mailbox::new("alice@example.com").password("pw"));
    let bob = builder.mailbox(Mailbox::new("bob@example.com").password("pw"));
    builder.item(&alice, Item::note("mine"));
    let bobs = builder.item(&bob, Item::voicemail("his"));
    let double = builder.start().await.expect("start");
    let reply = post(
        &double.url(),
        Some(basic("alice@example.com", "pw")),
        &get_item(&[&bobs.id]),
    )
    .await;
    reply.assert_document();
    assert_eq!(reply.texts("ResponseCode"), ["ErrorItemNotFound"]);
}

#[tokio::test]
async fn ids_that_are_not_ids_answer_error_invalid_id_malformed() {
    let f = fixture().await;
    let truncated = &f.voicemail.id[..100];
    let attachment_as_item = f.voicemail.attachment_ids[0].as_str();
    let reply = post(
        &f.double.url(),
        alice(),
        &get_item(&["not base64!", "AAAA", truncated, attachment_as_item, ""]),
    )
    .await;
    reply.assert_document();
    assert_eq!(
        reply.texts("ResponseCode"),
        [
            "ErrorInvalidIdMalformed",
            "ErrorInvalidIdMalformed",
            "ErrorInvalidIdMalformed",
            "ErrorInvalidIdMalformed",
            "ErrorInvalidIdEmpty"
        ]
    );
    assert_eq!(reply.texts("MessageText")[0], "Id is malformed.");
}

#[tokio::test]
async fn ids_look_like_exchange_ids_with_the_mailbox_guid_inside() {
    let f = fixture().await;
    let id = &f.voicemail.id;
    assert_eq!(id.len(), 152);
    assert!(id.starts_with("AAMkA"), "{id}");
    let bytes = STANDARD.decode(id).expect("standard base64");
    assert_eq!(&bytes[4..40], f.alice.mailbox_guid.as_bytes());
    assert_ne!(f.alice.mailbox_guid, f.bob.mailbox_guid);
    assert_ne!(id[..40], f.bobs_voicemail.id[..40]);
    for attachment in &f.voicemail.attachment_ids {
        assert_eq!(attachment.len(), 180);
        assert!(attachment.starts_with(&id[..148]));
    }
    assert!(f.voicemail.change_key.starts_with("CQAAABYAAAA"));
    assert!(f.alice.inbox_id.starts_with("AAMkA"));
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_an_empty_body_and_challenges() {
    let f = fixture().await;
    let body = get_folder("inbox", "IdOnly");
    for authorization in [
        None,
        Some(basic("EXAMPLE\\alice", "wrong")),
        Some(basic("EXAMPLE\\mallory", "alice-pw")),
        Some(basic("bob@example.com", "alice-pw")),
        Some("Basic !!!not-base64".to_owned()),
        Some("Bearer not-a-token".to_owned()),
        Some("Bearer ".to_owned()),
        Some("NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==".to_owned()),
        Some("Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAu".to_owned()),
    ] {
        let reply = post(&f.double.url(), authorization.clone(), &body).await;
        assert_eq!(reply.status, 401, "{authorization:?}");
        assert_eq!(reply.body, "", "{authorization:?}");
        assert_eq!(reply.challenges[0], "Basic realm=\"127.0.0.1\"");
        assert!(reply.challenges[1].starts_with("Bearer realm=\"127.0.0.1\""));
    }
    let bad_token = post(&f.double.url(), Some("Bearer nope".into()), &body).await;
    assert!(bad_token.challenges[1].contains("error=\"invalid_token\""));
    assert_eq!(
        f.double.requests().len(),
        10,
        "refused requests are logged too"
    );
}

#[tokio::test]
async fn a_double_without_tokens_challenges_for_basic_only() {
    let mut builder = MailboxDouble::builder();
    builder.realm("mail.example.com");
    builder.mailbox(Mailbox::new("alice@example.com").password("pw"));
    let double = builder.start().await.expect("start");
    let reply = post(&double.url(), None, &get_folder("inbox", "IdOnly")).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenges, ["Basic realm=\"mail.example.com\""]);
}

#[tokio::test]
async fn requests_that_cannot_be_processed_answer_soap_faults_with_http_500() {
    let f = fixture().await;
    let url = f.double.url();
    let create_item = envelope(
        r#"<m:CreateItem MessageDisposition="SaveOnly"><m:Items><t:Message><t:Subject>x</t:Subject></t:Message></m:Items></m:CreateItem>"#,
    );
    let reply = post(&url, alice(), &create_item).await;
    reply.assert_fault("ErrorInvalidOperation");
    assert!(reply.texts("faultstring")[0].contains("CreateItem"));

    post(&url, alice(), &envelope("<m:MakeCoffee/>"))
        .await
        .assert_fault("ErrorSchemaValidation");
    post(&url, alice(), "<soap:Envelope><unclosed>")
        .await
        .assert_fault("ErrorInvalidRequest");
    post(&url, alice(), &envelope(""))
        .await
        .assert_fault("ErrorInvalidRequest");

    let no_shape = envelope(r#"<m:GetItem><m:ItemIds><t:ItemId Id="x"/></m:ItemIds></m:GetItem>"#);
    let reply = post(&url, alice(), &no_shape).await;
    reply.assert_fault("ErrorSchemaValidation");
    assert_eq!(reply.texts("LineNumber"), ["5"]);
    assert_eq!(reply.texts("LinePosition"), ["5"]);
    assert!(reply.texts("Violation")[0].contains("'ItemShape'"));
}

#[tokio::test]
async fn only_post_to_the_ews_path_is_served() {
    let f = fixture().await;
    let get = send(reqwest::Method::GET, &f.double.url(), alice(), "")
        .await
        .expect("answer");
    assert_eq!(get.status, 405);
    let elsewhere = f.double.url().replace("/EWS/Exchange.asmx", "/owa/");
    assert_eq!(post(&elsewhere, alice(), "").await.status, 404);
    let lowercase = f.double.url().to_lowercase();
    let reply = post(&lowercase, alice(), &get_folder("inbox", "IdOnly")).await;
    reply.assert_document();
}

#[tokio::test]
async fn the_request_log_keeps_operation_scheme_login_and_body_but_no_secret() {
    let f = fixture().await;
    let body = get_item(&[&f.voicemail.id]);
    post(&f.double.url(), alice(), &body).await;
    post(
        &f.double.url(),
        Some("Bearer alice-token".into()),
        &get_folder("inbox", "IdOnly"),
    )
    .await;
    let log = f.double.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/EWS/Exchange.asmx");
    assert_eq!(log[0].operation.as_deref(), Some("GetItem"));
    assert_eq!(log[0].auth_scheme.as_deref(), Some("Basic"));
    assert_eq!(log[0].login.as_deref(), Some("EXAMPLE\\alice"));
    assert_eq!(log[0].mailbox.as_deref(), Some("alice@example.com"));
    assert_eq!(log[0].body, body.as_bytes());
    assert_eq!(log[0].status, 200);
    assert_eq!(
        log[0].header("content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(log[0].header("authorization"), None);
    assert_eq!(log[1].operation.as_deref(), Some("GetFolder"));
    assert_eq!(log[1].auth_scheme.as_deref(), Some("Bearer"));
    assert_eq!(log[1].login, None);
    let printed = format!("{log:?} {:?}", f.double);
    assert!(!printed.contains("alice-pw") && !printed.contains("alice-token"));
    f.double.clear_requests();
    assert!(f.double.requests().is_empty());
}

#[tokio::test]
async fn down_mode_refuses_connections_until_the_double_is_back() {
    let f = fixture().await;
    let url = f.double.url();
    f.double.set_mode(Mode::Down).await;
    assert_eq!(f.double.mode(), Mode::Down);
    let refused = send(
        reqwest::Method::POST,
        &url,
        alice(),
        &get_folder("inbox", "IdOnly"),
    )
    .await;
    let error = refused.expect_err("no server");
    assert!(error.is_connect(), "{error:?}");
    f.double.set_mode(Mode::Normal).await;
    let reply = post(&url, alice(), &get_folder("inbox", "IdOnly")).await;
    reply.assert_document();
    assert_eq!(
        f.double.requests().len(),
        1,
        "refused connections leave no log"
    );
}

#[tokio::test]
async fn down_mode_drops_connections_already_open() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let request = |client: &reqwest::Client| {
        client
            .post(f.double.url())
            .header("Authorization", alice().expect("credentials"))
            .body(get_folder("inbox", "IdOnly"))
            .send()
    };
    assert_eq!(request(&client).await.expect("up").status(), 200);
    f.double.set_mode(Mode::Down).await;
    assert!(
        request(&client).await.is_err(),
        "the pooled connection is gone too"
    );
}

#[tokio::test]
async fn slow_mode_answers_normally_after_the_delay() {
    let f = fixture().await;
    f.double
        .set_mode(Mode::Slow(Duration::from_millis(300)))
        .await;
    let started = Instant::now();
    let reply = post(&f.double.url(), alice(), &get_folder("inbox", "IdOnly")).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    reply.assert_document();
    assert_eq!(
        reply.attrs("FolderId", "Id"),
        std::slice::from_ref(&f.alice.inbox_id)
    );
}

#[tokio::test]
async fn garbage_mode_answers_200_with_a_body_that_is_not_xml() {
    let f = fixture().await;
    f.double.set_mode(Mode::Garbage).await;
    let reply = post(&f.double.url(), alice(), &get_folder("inbox", "IdOnly")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.content_type.as_deref(),
        Some("text/xml; charset=utf-8")
    );
    let mut reader = quick_xml::Reader::from_str(&reply.body);
    let mut well_formed = true;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Text(t)) if !t.iter().all(u8::is_ascii_whitespace) => {
                well_formed = false;
                break;
            }
            Ok(_) => {}
            Err(_) => {
                well_formed = false;
                break;
            }
        }
    }
    assert!(!well_formed, "{}", reply.body);
}

#[tokio::test]
async fn server_error_mode_answers_500_with_an_html_page() {
    let f = fixture().await;
    f.double.set_mode(Mode::ServerError).await;
    let reply = post(&f.double.url(), alice(), &get_folder("inbox", "IdOnly")).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.content_type.as_deref(), Some("text/html"));
    assert!(reply.body.contains("<html"), "{}", reply.body);
    f.double.set_mode(Mode::Normal).await;
    post(&f.double.url(), alice(), &get_folder("inbox", "IdOnly"))
        .await
        .assert_document();
}

#[tokio::test]
async fn deleted_items_are_readable_but_not_voice_mail() {
    let mut builder = MailboxDouble::builder();
    let alice = builder.mailbox(Mailbox::new("alice@example.com").password("pw"));
    let binned = builder.item(
        &alice,
        Item::voicemail("Old voice mail").folder(Folder::DeletedItems),
    );
    let double = builder.start().await.expect("start");
    let auth = Some(basic("alice@example.com", "pw"));
    let voicemail = post(&double.url(), auth.clone(), &find_item("voicemail", "")).await;
    assert_eq!(voicemail.attrs("RootFolder", "TotalItemsInView"), ["0"]);
    let deleted = post(&double.url(), auth.clone(), &find_item("deleteditems", "")).await;
    assert_eq!(
        deleted.attrs("ItemId", "Id"),
        std::slice::from_ref(&binned.id)
    );
    let item = post(&double.url(), auth, &get_item(&[&binned.id])).await;
    assert_eq!(item.texts("ResponseCode"), ["NoError"]);
}

/// What exchangelib asks first: the `root` folder, then Top of Information Store and the
/// Voice Mail folder, with `FolderClass` among the properties.
#[tokio::test]
async fn get_folder_answers_the_roots_and_folder_classes_as_exchange_does() {
    let f = fixture().await;
    let with_class = |folder: &str| {
        envelope(&format!(
            r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties><t:FieldURI FieldURI="folder:FolderClass"/><t:FieldURI FieldURI="folder:DisplayName"/><t:FieldURI FieldURI="folder:TotalCount"/></t:AdditionalProperties></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="{folder}"><t:Mailbox><t:EmailAddress>alice@example.com</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId></m:FolderIds></m:GetFolder>"#
        ))
    };
    let root = post(&f.double.url(), alice(), &with_class("root")).await;
    root.assert_document();
    assert_eq!(root.texts("ResponseCode"), ["NoError"]);
    assert!(root.texts("FolderClass").is_empty(), "{}", root.body);
    assert_eq!(root.texts("TotalCount"), ["0"]);
    let top = post(&f.double.url(), alice(), &with_class("msgfolderroot")).await;
    top.assert_document();
    assert_eq!(top.texts("DisplayName"), ["Top of Information Store"]);
    let ids = [root.attrs("FolderId", "Id"), top.attrs("FolderId", "Id")];
    assert_ne!(ids[0], ids[1]);
    let voicemail = post(&f.double.url(), alice(), &with_class("voicemail")).await;
    voicemail.assert_document();
    assert_eq!(
        voicemail.texts("FolderClass"),
        ["IPF.Note.Microsoft.Voicemail"]
    );
    let inbox = post(&f.double.url(), alice(), &with_class("inbox")).await;
    assert_eq!(inbox.texts("FolderClass"), ["IPF.Note"]);
    // Bob cannot open Alice's root.
    let bobs = post(
        &f.double.url(),
        Some(basic("bob@example.com", "bob-pw")),
        &with_class("root"),
    )
    .await;
    assert_eq!(bobs.texts("ResponseCode"), ["ErrorAccessDenied"]);
}

/// SOAP Autodiscover as exchangelib 5.x sends it.
#[tokio::test]
async fn soap_autodiscover_get_user_settings_names_the_ews_url() {
    let f = fixture().await;
    let url = f
        .double
        .url()
        .replace("/EWS/Exchange.asmx", "/autodiscover/autodiscover.svc");
    let request = |user: &str| {
        format!(
            r#"<?xml version='1.0' encoding='utf-8'?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover" xmlns:wsa="http://www.w3.org/2005/08/addressing"><s:Header><a:RequestedServerVersion>Exchange2013</a:RequestedServerVersion><wsa:Action>http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings</wsa:Action><wsa:To>{url}</wsa:To></s:Header><s:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>{user}</a:Mailbox></a:User></a:Users><a:RequestedSettings><a:Setting>AutoDiscoverSMTPAddress</a:Setting><a:Setting>ExternalEwsUrl</a:Setting><a:Setting>EwsSupportedSchemas</a:Setting><a:Setting>ExternalMailboxServer</a:Setting></a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></s:Body></s:Envelope>"#
        )
    };
    let unauthenticated = post(&url, None, &request("alice@example.com")).await;
    assert_eq!(unauthenticated.status, 401);
    let reply = post(&url, alice(), &request("alice@example.com")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.texts("ErrorCode"),
        ["NoError", "NoError", "SettingIsNotAvailable"]
    );
    assert_eq!(
        reply.texts("Value")[..2],
        ["alice@example.com".to_owned(), f.double.url()]
    );
    assert_eq!(reply.texts("SettingName"), ["ExternalMailboxServer"]);
    let nobody = post(&url, alice(), &request("nobody@example.com")).await;
    assert_eq!(nobody.texts("ErrorCode"), ["NoError", "InvalidUser"]);
    let fault = post(&url, alice(), "<not-autodiscover/>").await;
    assert_eq!(fault.status, 500);
    assert_eq!(
        f.double.requests().last().and_then(|r| r.operation.clone()),
        None
    );
    assert!(f
        .double
        .requests()
        .iter()
        .any(|r| r.operation.as_deref() == Some("GetUserSettingsRequestMessage")));
}
