//! The mailbox operations (`GetFolder`, `GetItem`, `GetAttachment`): every documented example
//! in `tests/fixtures/mailbox/` (provenance in its README) decodes to the expected value,
//! re-encodes to a document that decodes to the same value, and is valid against the official
//! schema, as is every request openum sends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

use openum_ews_proto::mailbox::*;
use openum_ews_proto::{
    decode_response, ExchangeVersion, ItemId, Limits, ResponseClass, ResponseCode,
    ResponseDocument, ServerVersionInfo,
};
use testkit::Validator;

fn fixture(name: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{dir}/tests/fixtures/mailbox/{name}")).unwrap()
}

/// The vendored schema is Exchange 2010 SP1's, whose `ExchangeVersionType` ends at
/// `Exchange2010_SP1`; the request body is what is validated.
fn assert_valid_request(xml: &str) {
    let version = format!(r#"Version="{}""#, ExchangeVersion::Exchange2013.as_str());
    Validator::shared().assert_valid(&xml.replace(&version, r#"Version="Exchange2010_SP1""#));
}

fn decode(xml: &str) -> MailboxResponseDocument {
    decode_mailbox_response(xml.as_bytes(), DecodeLimits::default()).unwrap()
}

fn response(xml: &str) -> MailboxResponseEnvelope {
    match decode(xml) {
        MailboxResponseDocument::Response(r) => r,
        MailboxResponseDocument::Fault(f) => panic!("unexpected fault {f:?}"),
    }
}

/// Decodes a fixture, checks it against the schema, and checks that encoding the decoded value
/// gives a valid document that decodes to the same value.
fn check_response(name: &str) -> MailboxResponseEnvelope {
    let xml = fixture(name);
    Validator::shared().assert_valid(&xml);
    let decoded = response(&xml);
    let encoded = encode_mailbox_response(&decoded);
    assert!(encoded.starts_with(r#"<?xml version="1.0" encoding="utf-8"?>"#));
    Validator::shared().assert_valid(&encoded);
    assert_eq!(response(&encoded), decoded, "{name} after re-encoding");
    decoded
}

fn server(
    major: i32,
    minor: i32,
    build: i32,
    minor_build: i32,
    version: &str,
) -> ServerVersionInfo {
    ServerVersionInfo {
        major_version: major,
        minor_version: minor,
        major_build_number: build,
        minor_build_number: minor_build,
        version: version.into(),
    }
}

#[test]
fn documented_get_folder_request_decodes() {
    let request = decode_mailbox_request(
        fixture("GetFolder.request.xml").as_bytes(),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(
        request,
        MailboxRequestEnvelope {
            version: None,
            body: MailboxRequest::GetFolder(GetFolder {
                folder_shape: FolderShape {
                    base_shape: BaseShape::Default,
                    additional_properties: vec![],
                },
                folder_ids: vec![BaseFolderId::DistinguishedFolderId(
                    DistinguishedFolderId::inbox()
                )],
            }),
        }
    );
}

#[test]
fn inbox_identity_request_is_valid_and_round_trips() {
    let request = MailboxRequest::GetFolder(GetFolder::inbox_id());
    let xml = encode_mailbox_request(ExchangeVersion::Exchange2013, &request);
    assert!(xml.contains(r#"<t:RequestServerVersion Version="Exchange2013"/>"#));
    assert!(xml.contains(
        r#"<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>"#
    ));
    assert_valid_request(&xml);
    let decoded = decode_mailbox_request(xml.as_bytes(), Limits::default()).unwrap();
    assert_eq!(decoded.version, Some(ExchangeVersion::Exchange2013));
    assert_eq!(decoded.body, request);
}

#[test]
fn documented_get_item_request_decodes() {
    let request =
        decode_mailbox_request(fixture("GetItem.request.xml").as_bytes(), Limits::default())
            .unwrap();
    assert_eq!(request.version, Some(ExchangeVersion::Exchange2007_SP1));
    assert_eq!(
        request.body,
        MailboxRequest::GetItem(GetItem {
            item_shape: ItemShape {
                base_shape: BaseShape::IdOnly,
                additional_properties: vec![PropertyPath::FieldUri("item:Attachments".into())],
            },
            item_ids: vec![ItemId {
                id: "ERu/AAA=".into(),
                change_key: None
            }],
        })
    );
}

#[test]
fn voice_message_request_asks_for_the_order_property_and_sends_change_key_only_when_given() {
    let id = "AAMkAGI2TG93AAA=".to_owned() + &"A".repeat(136);
    for change_key in [None, Some(String::new()), Some("CQAAABYAAAB2".to_owned())] {
        let request = MailboxRequest::GetItem(GetItem::voice_message(ItemId {
            id: id.clone(),
            change_key: change_key.clone(),
        }));
        let xml = encode_mailbox_request(ExchangeVersion::Exchange2013, &request);
        assert!(xml.contains(
            r#"<t:AdditionalProperties><t:FieldURI FieldURI="item:ItemClass"/><t:FieldURI FieldURI="item:Subject"/><t:FieldURI FieldURI="item:HasAttachments"/><t:FieldURI FieldURI="item:Attachments"/><t:ExtendedFieldURI PropertyTag="0x6805" PropertyType="String"/></t:AdditionalProperties>"#
        ), "{xml}");
        let sent_key = change_key.filter(|k| !k.is_empty());
        assert_eq!(xml.contains("ChangeKey="), sent_key.is_some(), "{xml}");
        assert_valid_request(&xml);
        let decoded = decode_mailbox_request(xml.as_bytes(), Limits::default()).unwrap();
        let MailboxRequest::GetItem(get) = decoded.body else {
            panic!("not GetItem");
        };
        assert_eq!(
            get.item_ids,
            vec![ItemId {
                id: id.clone(),
                change_key: sent_key
            }]
        );
        assert_eq!(
            get.item_shape.additional_properties.last(),
            Some(&PropertyPath::ExtendedFieldUri(
                ExtendedFieldUri::VOICE_MESSAGE_ATTACHMENT_ORDER
            ))
        );
    }
}

#[test]
fn documented_get_attachment_request_decodes_and_ours_is_valid() {
    let request = decode_mailbox_request(
        fixture("GetAttachment.request.xml").as_bytes(),
        Limits::default(),
    )
    .unwrap();
    let expected = MailboxRequest::GetAttachment(GetAttachment {
        attachment_ids: vec![AttachmentId::new("AAAtAEFkbWluaX...")],
    });
    assert_eq!(request.body, expected);
    let xml = encode_mailbox_request(ExchangeVersion::Exchange2013, &expected);
    assert!(xml.contains(r#"<m:GetAttachment><m:AttachmentIds><t:AttachmentId Id="AAAtAEFkbWluaX..."/></m:AttachmentIds></m:GetAttachment>"#));
    assert_valid_request(&xml);
}

#[test]
fn documented_get_folder_response() {
    let r = check_response("GetFolder.response.xml");
    assert_eq!(r.server_version_info, Some(server(8, 0, 628, 0, "")));
    assert_eq!(
        r.body,
        MailboxResponse::GetFolder(vec![GetFolderResponseMessage {
            message: MailboxResponseMessage::success(),
            folders: vec![Folder {
                element: "Folder".into(),
                folder_id: Some(FolderId {
                    id: "AQApA=".into(),
                    change_key: Some("AQAAAB".into()),
                }),
                display_name: Some("Inbox".into()),
            }],
        }])
    );
}

#[test]
fn documented_get_folder_error_response() {
    let r = check_response("GetFolder.error.xml");
    assert_eq!(
        r.body,
        MailboxResponse::GetFolder(vec![GetFolderResponseMessage {
            message: MailboxResponseMessage::error(
                ResponseCode::ErrorInvalidIdMalformed,
                "Id is malformed."
            ),
            folders: vec![],
        }])
    );
}

#[test]
fn documented_get_item_response_with_file_and_item_attachments() {
    let r = check_response("GetItem.response.xml");
    assert_eq!(r.server_version_info, Some(server(15, 0, 939, 12, "V2_11")));
    let MailboxResponse::GetItem(messages) = r.body else {
        panic!("not GetItem");
    };
    assert_eq!(messages.len(), 1);
    assert!(messages[0].message.is_success());
    assert_eq!(
        messages[0].items,
        vec![Item {
            element: "Message".into(),
            item_id: Some(ItemId {
                id: "ERu/AAA=".into(),
                change_key: Some("CQAAABYAAAAFI5DJmZv+TLtyLOLIF1S5AAAYEMnd".into()),
            }),
            item_class: None,
            subject: None,
            attachments: vec![
                Attachment::File(FileAttachment {
                    attachment_id: Some(AttachmentId::new("5zTzlqU=")),
                    name: Some("FileAttachment.txt".into()),
                    size: Some(212),
                    is_inline: Some(false),
                    is_contact_photo: Some(false),
                    ..FileAttachment::default()
                }),
                Attachment::Item(ItemAttachment {
                    attachment_id: Some(AttachmentId::new("Ktum21o=")),
                    name: Some("Attached Message Item".into()),
                    content_type: None,
                    size: Some(3063),
                    is_inline: Some(false),
                }),
            ],
            has_attachments: None,
            extended_properties: vec![],
        }]
    );
}

#[test]
fn documented_email_message_is_read_past_its_unrequested_properties() {
    let r = check_response("GetItem.email.response.xml");
    let MailboxResponse::GetItem(messages) = r.body else {
        panic!("not GetItem");
    };
    let item = &messages[0].items[0];
    assert_eq!(item.element, "Message");
    assert_eq!(
        item.item_id.as_ref().map(|i| i.id.as_str()),
        Some("AAAlAFVz")
    );
    assert_eq!(item.subject.as_deref(), Some(""));
    assert_eq!(item.has_attachments, Some(false));
    assert!(item.attachments.is_empty());
    assert_eq!(item.voice_message_attachment_order(), None);
}

#[test]
fn voice_message_item_carries_class_attachments_and_order() {
    let r = check_response("GetItem.voicemail.response.xml");
    let MailboxResponse::GetItem(messages) = r.body else {
        panic!("not GetItem");
    };
    let item = &messages[0].items[0];
    assert_eq!(
        item.item_class.as_deref(),
        Some("IPM.Note.Microsoft.Voicemail.UM.CA")
    );
    assert_eq!(
        item.subject.as_deref(),
        Some("Voice Mail from +1 425 555 0100 (12 seconds)")
    );
    assert_eq!(item.has_attachments, Some(true));
    assert_eq!(
        item.voice_message_attachment_order(),
        Some("vm2.wav; vm1.wav")
    );
    assert_eq!(
        item.extended_properties,
        vec![ExtendedProperty {
            field: ExtendedFieldUri::VOICE_MESSAGE_ATTACHMENT_ORDER,
            value: ExtendedPropertyValue::Value("vm2.wav; vm1.wav".into()),
        }]
    );
    let files: Vec<_> = item
        .attachments
        .iter()
        .map(|a| match a {
            Attachment::File(f) => (
                f.name.clone().unwrap(),
                f.content_type.clone().unwrap(),
                f.size.unwrap(),
                f.is_inline.unwrap(),
            ),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("image001.png".into(), "image/png".into(), 4096, true),
            ("vm1.wav".into(), "audio/wav".into(), 96044, false),
            ("vm2.wav".into(), "audio/wav".into(), 192044, false),
        ]
    );
}

#[test]
fn get_item_error_passes_code_and_text() {
    let r = check_response("GetItem.error.xml");
    assert_eq!(
        r.body,
        MailboxResponse::GetItem(vec![GetItemResponseMessage {
            message: MailboxResponseMessage::error(
                ResponseCode::ErrorItemNotFound,
                "The specified object was not found in the store."
            ),
            items: vec![],
        }])
    );
}

fn only_attachment(r: MailboxResponseEnvelope) -> Attachment {
    let MailboxResponse::GetAttachment(mut messages) = r.body else {
        panic!("not GetAttachment");
    };
    assert_eq!(messages.len(), 1);
    let mut m = messages.remove(0);
    assert!(m.message.is_success());
    assert_eq!(m.attachments.len(), 1);
    m.attachments.remove(0)
}

#[test]
fn documented_get_attachment_responses() {
    let Attachment::File(f) = only_attachment(check_response("GetAttachment.response.xml")) else {
        panic!("not a file");
    };
    assert_eq!(f.name.as_deref(), Some("SomeFile"));
    assert_eq!(f.content.as_deref(), Some(&[1u8, 2, 3, 4, 5][..]));

    let Attachment::File(f) = only_attachment(check_response("GetAttachment.file.response.xml"))
    else {
        panic!("not a file");
    };
    assert_eq!(f.attachment_id, Some(AttachmentId::new("5zTzlqU=")));
    assert_eq!(
        f.content.as_deref(),
        Some(&b"This is a file attachment."[..])
    );

    let Attachment::Item(a) = only_attachment(check_response("GetAttachment.item.response.xml"))
    else {
        panic!("not an item attachment");
    };
    assert_eq!(a.name.as_deref(), Some("Attached Message Item"));
}

#[test]
fn attachment_content_is_bounded_before_decoding() {
    let xml = fixture("GetAttachment.response.xml");
    let limits = |max| DecodeLimits {
        max_content_bytes: max,
        ..DecodeLimits::default()
    };
    assert_eq!(
        decode_mailbox_response(xml.as_bytes(), limits(4)),
        Err(MailboxDecodeError::ContentTooLarge { limit: 4, size: 5 })
    );
    assert!(decode_mailbox_response(xml.as_bytes(), limits(5)).is_ok());
}

fn with_content(content: &str) -> String {
    fixture("GetAttachment.response.xml").replace("AQIDBAU=", content)
}

#[test]
fn content_tolerates_whitespace_and_missing_padding_and_refuses_garbage() {
    let bytes = |content: &str| match only_attachment(response(&with_content(content))) {
        Attachment::File(f) => f.content.unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(bytes("AQID\r\n BAU="), vec![1, 2, 3, 4, 5]);
    assert_eq!(bytes("AQIDBAU"), vec![1, 2, 3, 4, 5]);
    assert_eq!(bytes(""), Vec::<u8>::new());
    assert!(matches!(
        decode_mailbox_response(with_content("AQ*DBAU=").as_bytes(), DecodeLimits::default()),
        Err(MailboxDecodeError::Unexpected(_))
    ));
}

#[test]
fn faults_decode_as_the_play_on_phone_decoder_decodes_them() {
    let dir = env!("CARGO_MANIFEST_DIR");
    for name in [
        "fault.ErrorInvalidServerVersion.xml",
        "fault.ErrorSchemaValidation.xml",
    ] {
        let xml = std::fs::read_to_string(format!("{dir}/tests/fixtures/{name}")).unwrap();
        let ResponseDocument::Fault(expected) = decode_response(xml.as_bytes()).unwrap() else {
            panic!("{name} is not a fault");
        };
        assert_eq!(
            decode(&xml),
            MailboxResponseDocument::Fault(expected),
            "{name}"
        );
    }
}

#[test]
fn codes_outside_the_vendored_schema_are_kept_as_text() {
    let xml = fixture("GetItem.error.xml").replace(
        "<m:ResponseCode>ErrorItemNotFound</m:ResponseCode>",
        "<m:ResponseCode> ErrorSomethingNewer </m:ResponseCode>",
    );
    let MailboxResponse::GetItem(messages) = response(&xml).body else {
        panic!("not GetItem");
    };
    let code = messages[0].message.response_code.clone().unwrap();
    assert_eq!(code, ResponseCodeValue::Other("ErrorSomethingNewer".into()));
    assert_eq!(code.as_str(), "ErrorSomethingNewer");
    assert_eq!(code.known(), None);
    assert_eq!(messages[0].message.response_class, ResponseClass::Error);
}

#[test]
fn property_tags_are_read_in_decimal_and_hex_and_unknown_types_are_dropped() {
    let base = fixture("GetItem.voicemail.response.xml");
    let order = |xml: &str| {
        let MailboxResponse::GetItem(messages) = response(xml).body else {
            panic!("not GetItem");
        };
        messages[0].items[0]
            .voice_message_attachment_order()
            .map(str::to_owned)
    };
    assert_eq!(
        order(&base.replace(r#"PropertyTag="0x6805""#, r#"PropertyTag="26629""#)).as_deref(),
        Some("vm2.wav; vm1.wav")
    );
    assert_eq!(
        order(&base.replace(r#"PropertyTag="0x6805""#, r#"PropertyTag="0X6805""#)).as_deref(),
        Some("vm2.wav; vm1.wav")
    );
    assert_eq!(
        order(&base.replace(r#"PropertyType="String""#, r#"PropertyType="Text""#)),
        None
    );
    assert_eq!(
        order(&base.replace(r#"PropertyTag="0x6805""#, r#"PropertyTag="0x6806""#)),
        None
    );
}

#[test]
fn garbage_and_other_documents_are_refused() {
    for garbage in [
        "",
        "not xml at all",
        "<html><body>Service Unavailable</body></html>",
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#,
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:PlayOnPhoneResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" ResponseClass="Success"/></s:Body></s:Envelope>"#,
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:GetItemResponse xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"/></s:Body></s:Envelope>"#,
    ] {
        assert!(
            decode_mailbox_response(garbage.as_bytes(), DecodeLimits::default()).is_err(),
            "{garbage:?} was accepted"
        );
    }
}
