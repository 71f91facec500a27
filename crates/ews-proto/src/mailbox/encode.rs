//! Encoding of mailbox documents: requests in the shape the EWS Managed API sends (prefixes
//! `soap`, `m`, `t`), responses in the shape Exchange sends (as in Microsoft's documented
//! examples). Plain string building, like `crate::encode`; every `write!` goes into a `String`,
//! whose `fmt::Write` never fails, so the `fmt::Result`s are dropped.

use std::fmt::Write as _;

use base64::Engine as _;
use quick_xml::escape::{escape, partial_escape};

use super::{
    Attachment, BaseFolderId, ExtendedFieldUri, ExtendedProperty, ExtendedPropertyValue,
    FileAttachment, Folder, Item, ItemAttachment, MailboxRequest, MailboxResponse,
    MailboxResponseEnvelope, MailboxResponseMessage, PropertyPath,
};
use crate::encode::{write_server_version_info, write_values, DECLARATION};
use crate::ns;
use crate::types::{ExchangeVersion, ItemId};

/// Encodes a mailbox request with `t:RequestServerVersion` `version`.
///
/// An `ItemId`'s `ChangeKey` is written only when it is present and non-empty.
pub fn encode_mailbox_request(version: ExchangeVersion, request: &MailboxRequest) -> String {
    let mut out = String::with_capacity(1024);
    out.push_str(DECLARATION);
    let _ = write!(
        out,
        r#"<soap:Envelope xmlns:xsi="{}" xmlns:m="{}" xmlns:t="{}" xmlns:soap="{}"><soap:Header><t:RequestServerVersion Version="{}"/></soap:Header><soap:Body>"#,
        ns::XSI,
        ns::MESSAGES,
        ns::TYPES,
        ns::SOAP,
        version.as_str()
    );
    match request {
        MailboxRequest::GetFolder(r) => {
            out.push_str("<m:GetFolder><m:FolderShape>");
            write_shape(
                &mut out,
                r.folder_shape.base_shape.as_str(),
                &r.folder_shape.additional_properties,
            );
            out.push_str("</m:FolderShape><m:FolderIds>");
            for id in &r.folder_ids {
                match id {
                    BaseFolderId::FolderId(f) => {
                        let _ = write!(out, r#"<t:FolderId Id="{}""#, escape(&f.id));
                        if let Some(ck) = f.change_key.as_deref().filter(|c| !c.is_empty()) {
                            let _ = write!(out, r#" ChangeKey="{}""#, escape(ck));
                        }
                        out.push_str("/>");
                    }
                    BaseFolderId::DistinguishedFolderId(d) => {
                        let _ = write!(out, r#"<t:DistinguishedFolderId Id="{}"/>"#, escape(&d.id));
                    }
                }
            }
            out.push_str("</m:FolderIds></m:GetFolder>");
        }
        MailboxRequest::GetItem(r) => {
            out.push_str("<m:GetItem><m:ItemShape>");
            write_shape(
                &mut out,
                r.item_shape.base_shape.as_str(),
                &r.item_shape.additional_properties,
            );
            out.push_str("</m:ItemShape><m:ItemIds>");
            for id in &r.item_ids {
                write_item_id(&mut out, id);
            }
            out.push_str("</m:ItemIds></m:GetItem>");
        }
        MailboxRequest::GetAttachment(r) => {
            out.push_str("<m:GetAttachment><m:AttachmentIds>");
            for id in &r.attachment_ids {
                let _ = write!(out, r#"<t:AttachmentId Id="{}"/>"#, escape(&id.id));
            }
            out.push_str("</m:AttachmentIds></m:GetAttachment>");
        }
    }
    out.push_str("</soap:Body></soap:Envelope>");
    out
}

fn write_shape(out: &mut String, base_shape: &str, additional: &[PropertyPath]) {
    let _ = write!(out, "<t:BaseShape>{base_shape}</t:BaseShape>");
    if additional.is_empty() {
        return;
    }
    out.push_str("<t:AdditionalProperties>");
    for path in additional {
        match path {
            PropertyPath::FieldUri(uri) => {
                let _ = write!(out, r#"<t:FieldURI FieldURI="{}"/>"#, escape(uri));
            }
            PropertyPath::ExtendedFieldUri(field) => write_extended_field_uri(out, field),
        }
    }
    out.push_str("</t:AdditionalProperties>");
}

fn write_item_id(out: &mut String, id: &ItemId) {
    let _ = write!(out, r#"<t:ItemId Id="{}""#, escape(&id.id));
    if let Some(ck) = id.change_key.as_deref().filter(|c| !c.is_empty()) {
        let _ = write!(out, r#" ChangeKey="{}""#, escape(ck));
    }
    out.push_str("/>");
}

fn write_extended_field_uri(out: &mut String, field: &ExtendedFieldUri) {
    out.push_str("<t:ExtendedFieldURI");
    if let Some(v) = &field.distinguished_property_set_id {
        let _ = write!(out, r#" DistinguishedPropertySetId="{}""#, escape(v));
    }
    if let Some(v) = &field.property_set_id {
        let _ = write!(out, r#" PropertySetId="{}""#, escape(v));
    }
    if let Some(tag) = field.property_tag {
        let _ = write!(out, r#" PropertyTag="0x{tag:04x}""#);
    }
    if let Some(v) = &field.property_name {
        let _ = write!(out, r#" PropertyName="{}""#, escape(v));
    }
    if let Some(id) = field.property_id {
        let _ = write!(out, r#" PropertyId="{id}""#);
    }
    let _ = write!(out, r#" PropertyType="{}"/>"#, field.property_type.as_str());
}

/// Encodes a mailbox response as Exchange does (the shape of Microsoft's documented examples:
/// `s:` envelope, `h:ServerVersionInfo`, `m:`/`t:` prefixes declared on the response element).
/// Error messages carry their (empty) container, as Exchange writes `<m:Items/>`.
pub fn encode_mailbox_response(envelope: &MailboxResponseEnvelope) -> String {
    let mut out = String::with_capacity(2048);
    out.push_str(DECLARATION);
    let _ = write!(out, r#"<s:Envelope xmlns:s="{}">"#, ns::SOAP);
    if let Some(info) = &envelope.server_version_info {
        out.push_str("<s:Header>");
        write_server_version_info(&mut out, info);
        out.push_str("</s:Header>");
    }
    let name = envelope.body.element_name();
    let _ = write!(
        out,
        r#"<s:Body xmlns:xsi="{}" xmlns:xsd="{}"><m:{name} xmlns:m="{}" xmlns:t="{}"><m:ResponseMessages>"#,
        ns::XSI,
        ns::XSD,
        ns::MESSAGES,
        ns::TYPES
    );
    match &envelope.body {
        MailboxResponse::GetFolder(messages) => {
            for m in messages {
                open_message(&mut out, "GetFolderResponseMessage", &m.message);
                out.push_str("<m:Folders>");
                for folder in &m.folders {
                    write_folder(&mut out, folder);
                }
                out.push_str("</m:Folders></m:GetFolderResponseMessage>");
            }
        }
        MailboxResponse::GetItem(messages) => {
            for m in messages {
                open_message(&mut out, "GetItemResponseMessage", &m.message);
                out.push_str("<m:Items>");
                for item in &m.items {
                    write_item(&mut out, item);
                }
                out.push_str("</m:Items></m:GetItemResponseMessage>");
            }
        }
        MailboxResponse::GetAttachment(messages) => {
            for m in messages {
                open_message(&mut out, "GetAttachmentResponseMessage", &m.message);
                out.push_str("<m:Attachments>");
                for attachment in &m.attachments {
                    write_attachment(&mut out, attachment);
                }
                out.push_str("</m:Attachments></m:GetAttachmentResponseMessage>");
            }
        }
    }
    let _ = write!(
        out,
        "</m:ResponseMessages></m:{name}></s:Body></s:Envelope>"
    );
    out
}

fn open_message(out: &mut String, element: &str, message: &MailboxResponseMessage) {
    let _ = write!(
        out,
        r#"<m:{element} ResponseClass="{}">"#,
        message.response_class.as_str()
    );
    if let Some(text) = &message.message_text {
        let _ = write!(
            out,
            "<m:MessageText>{}</m:MessageText>",
            partial_escape(text)
        );
    }
    if let Some(code) = &message.response_code {
        let _ = write!(
            out,
            "<m:ResponseCode>{}</m:ResponseCode>",
            partial_escape(code.as_str())
        );
    }
    if let Some(key) = message.descriptive_link_key {
        let _ = write!(out, "<m:DescriptiveLinkKey>{key}</m:DescriptiveLinkKey>");
    }
    if let Some(values) = &message.message_xml {
        out.push_str("<m:MessageXml>");
        write_values(out, values, "");
        out.push_str("</m:MessageXml>");
    }
}

/// `name` when it is a plain XML name (as decoded element names are), else `fallback`: the
/// names are data, and must not break the document.
fn element_name<'a>(name: &'a str, fallback: &'a str) -> &'a str {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        name
    } else {
        fallback
    }
}

fn write_folder(out: &mut String, folder: &Folder) {
    let element = element_name(&folder.element, "Folder");
    let _ = write!(out, "<t:{element}>");
    if let Some(id) = &folder.folder_id {
        let _ = write!(out, r#"<t:FolderId Id="{}""#, escape(&id.id));
        if let Some(ck) = &id.change_key {
            let _ = write!(out, r#" ChangeKey="{}""#, escape(ck));
        }
        out.push_str("/>");
    }
    if let Some(name) = &folder.display_name {
        let _ = write!(
            out,
            "<t:DisplayName>{}</t:DisplayName>",
            partial_escape(name)
        );
    }
    let _ = write!(out, "</t:{element}>");
}

fn write_item(out: &mut String, item: &Item) {
    let element = element_name(&item.element, "Item");
    let _ = write!(out, "<t:{element}>");
    if let Some(id) = &item.item_id {
        write_item_id(out, id);
    }
    if let Some(class) = &item.item_class {
        let _ = write!(out, "<t:ItemClass>{}</t:ItemClass>", partial_escape(class));
    }
    if let Some(subject) = &item.subject {
        let _ = write!(out, "<t:Subject>{}</t:Subject>", partial_escape(subject));
    }
    if !item.attachments.is_empty() {
        out.push_str("<t:Attachments>");
        for attachment in &item.attachments {
            write_attachment(out, attachment);
        }
        out.push_str("</t:Attachments>");
    }
    if let Some(has) = item.has_attachments {
        let _ = write!(out, "<t:HasAttachments>{has}</t:HasAttachments>");
    }
    for property in &item.extended_properties {
        write_extended_property(out, property);
    }
    let _ = write!(out, "</t:{element}>");
}

fn write_extended_property(out: &mut String, property: &ExtendedProperty) {
    out.push_str("<t:ExtendedProperty>");
    write_extended_field_uri(out, &property.field);
    match &property.value {
        ExtendedPropertyValue::Value(v) => {
            let _ = write!(out, "<t:Value>{}</t:Value>", partial_escape(v));
        }
        ExtendedPropertyValue::Values(values) => {
            out.push_str("<t:Values>");
            for v in values {
                let _ = write!(out, "<t:Value>{}</t:Value>", partial_escape(v));
            }
            out.push_str("</t:Values>");
        }
    }
    out.push_str("</t:ExtendedProperty>");
}

fn write_attachment_common(
    out: &mut String,
    id: Option<&super::AttachmentId>,
    name: Option<&str>,
    content_type: Option<&str>,
) {
    if let Some(id) = id {
        let _ = write!(out, r#"<t:AttachmentId Id="{}""#, escape(&id.id));
        if let Some(root) = &id.root_item_id {
            let _ = write!(out, r#" RootItemId="{}""#, escape(root));
        }
        if let Some(ck) = &id.root_item_change_key {
            let _ = write!(out, r#" RootItemChangeKey="{}""#, escape(ck));
        }
        out.push_str("/>");
    }
    if let Some(name) = name {
        let _ = write!(out, "<t:Name>{}</t:Name>", partial_escape(name));
    }
    if let Some(ct) = content_type {
        let _ = write!(out, "<t:ContentType>{}</t:ContentType>", partial_escape(ct));
    }
}

fn write_attachment(out: &mut String, attachment: &Attachment) {
    match attachment {
        Attachment::File(f) => write_file_attachment(out, f),
        Attachment::Item(a) => write_item_attachment(out, a),
        Attachment::Other(name) => {
            let _ = write!(out, "<t:{}/>", element_name(name, "ReferenceAttachment"));
        }
    }
}

fn write_file_attachment(out: &mut String, f: &FileAttachment) {
    out.push_str("<t:FileAttachment>");
    write_attachment_common(
        out,
        f.attachment_id.as_ref(),
        f.name.as_deref(),
        f.content_type.as_deref(),
    );
    if let Some(cid) = &f.content_id {
        let _ = write!(out, "<t:ContentId>{}</t:ContentId>", partial_escape(cid));
    }
    if let Some(size) = f.size {
        let _ = write!(out, "<t:Size>{size}</t:Size>");
    }
    if let Some(inline) = f.is_inline {
        let _ = write!(out, "<t:IsInline>{inline}</t:IsInline>");
    }
    if let Some(photo) = f.is_contact_photo {
        let _ = write!(out, "<t:IsContactPhoto>{photo}</t:IsContactPhoto>");
    }
    if let Some(content) = &f.content {
        out.push_str("<t:Content>");
        base64::engine::general_purpose::STANDARD.encode_string(content, out);
        out.push_str("</t:Content>");
    }
    out.push_str("</t:FileAttachment>");
}

fn write_item_attachment(out: &mut String, a: &ItemAttachment) {
    out.push_str("<t:ItemAttachment>");
    write_attachment_common(
        out,
        a.attachment_id.as_ref(),
        a.name.as_deref(),
        a.content_type.as_deref(),
    );
    if let Some(size) = a.size {
        let _ = write!(out, "<t:Size>{size}</t:Size>");
    }
    if let Some(inline) = a.is_inline {
        let _ = write!(out, "<t:IsInline>{inline}</t:IsInline>");
    }
    out.push_str("</t:ItemAttachment>");
}
