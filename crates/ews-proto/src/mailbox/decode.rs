//! Decoding of mailbox documents on the element tree of `crate::xml` (namespace-aware, no DTD,
//! depth and element limits): responses (client side), tolerant the way the Microsoft clients
//! are, and requests (for a test double of the mailbox server).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::{
    Attachment, AttachmentId, BaseFolderId, BaseShape, DistinguishedFolderId, ExtendedFieldUri,
    ExtendedProperty, ExtendedPropertyValue, FileAttachment, Folder, FolderId, FolderShape,
    GetAttachment, GetAttachmentResponseMessage, GetFolder, GetFolderResponseMessage, GetItem,
    GetItemResponseMessage, Item, ItemAttachment, ItemShape, MailboxRequest,
    MailboxRequestEnvelope, MailboxResponse, MailboxResponseDocument, MailboxResponseEnvelope,
    MailboxResponseMessage, MapiPropertyType, PropertyPath, ResponseCodeValue,
};
use crate::decode::{decode_fault, decode_server_version_info, message_xml_values, ResponseError};
use crate::ns;
use crate::types::{ExchangeVersion, ItemId, ResponseClass};
use crate::xml::{self, Element, Limits, XmlError};

/// Limits applied while decoding a mailbox response.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct DecodeLimits {
    /// Nesting and element-count limits of the XML reader.
    pub xml: Limits,
    /// Largest decoded `t:Content` accepted, in bytes; checked before decoding.
    pub max_content_bytes: u64,
}

impl Default for DecodeLimits {
    /// The reader's default limits; 64 MiB of attachment content.
    fn default() -> Self {
        Self {
            xml: Limits::default(),
            max_content_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a mailbox document could not be decoded.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxDecodeError {
    /// Not well-formed XML (or over the reader's limits).
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// Well-formed, but not an EWS mailbox document of these operations.
    #[error("unexpected content: {0}")]
    Unexpected(String),
    /// A `t:Content` decodes to more than [`DecodeLimits::max_content_bytes`].
    #[error("attachment content of {size} bytes exceeds the limit of {limit} bytes")]
    ContentTooLarge {
        /// The limit.
        limit: u64,
        /// The decoded size the content would have.
        size: u64,
    },
}

impl From<ResponseError> for MailboxDecodeError {
    fn from(e: ResponseError) -> Self {
        match e {
            ResponseError::Xml(x) => Self::Xml(x),
            ResponseError::Unexpected(what) => Self::Unexpected(what),
        }
    }
}

type Result<T> = std::result::Result<T, MailboxDecodeError>;

fn unexpected(what: impl Into<String>) -> MailboxDecodeError {
    MailboxDecodeError::Unexpected(what.into())
}

/// The envelope's `Header` (if any) and the first element of its `Body`.
fn envelope(root: &Element) -> Result<(Option<&Element>, &Element)> {
    if !root.is(ns::SOAP, "Envelope") {
        return Err(unexpected(format!("root element is {}", root.qualified())));
    }
    let header = root.children.iter().find(|c| c.is(ns::SOAP, "Header"));
    let body = root
        .children
        .iter()
        .find(|c| c.is(ns::SOAP, "Body"))
        .ok_or_else(|| unexpected("no soap:Body"))?;
    let first = body
        .children
        .first()
        .ok_or_else(|| unexpected("empty soap:Body"))?;
    Ok((header, first))
}

fn children<'a>(el: &'a Element, ns: &'a str, local: &'a str) -> impl Iterator<Item = &'a Element> {
    el.children.iter().filter(move |c| c.is(ns, local))
}

fn child<'a>(el: &'a Element, ns: &str, local: &str) -> Option<&'a Element> {
    el.children.iter().find(|c| c.is(ns, local))
}

fn t<'a>(el: &'a Element, local: &str) -> Option<&'a Element> {
    child(el, ns::TYPES, local)
}

fn required_attribute<'a>(el: &'a Element, name: &str) -> Result<&'a str> {
    el.attribute(name)
        .ok_or_else(|| unexpected(format!("{} without {name}", el.local)))
}

fn optional(el: &Element, name: &str) -> Option<String> {
    el.attribute(name).map(str::to_owned)
}

fn boolean(el: &Element) -> Result<bool> {
    match el.text.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(unexpected(format!(
            "{} is not a boolean: {other:?}",
            el.local
        ))),
    }
}

/// Decodes a mailbox response document: a `GetFolder`, `GetItem` or `GetAttachment` response,
/// or a SOAP fault.
///
/// Unknown elements are skipped; any item element of `m:Items` is read; a response code outside
/// the vendored enumeration is kept as [`ResponseCodeValue::Other`]; an unreadable
/// `ServerVersionInfo` header is dropped. `t:Content` is base64-decoded (whitespace ignored,
/// padding optional) after checking its decoded size against `limits.max_content_bytes`.
pub fn decode_mailbox_response(
    input: &[u8],
    limits: DecodeLimits,
) -> Result<MailboxResponseDocument> {
    let root = xml::parse(xml::document_text(input)?, limits.xml)?;
    let (header, first) = envelope(&root)?;
    if first.is(ns::SOAP, "Fault") {
        return Ok(MailboxResponseDocument::Fault(decode_fault(first)?));
    }
    let server_version_info = header
        .and_then(|h| t(h, "ServerVersionInfo"))
        // The header is informational for a client: an unreadable one is dropped, the body
        // still answers the request.
        .and_then(|info| decode_server_version_info(info).ok());
    if first.ns != ns::MESSAGES {
        return Err(unexpected(format!("body element {}", first.qualified())));
    }
    let messages = |name: &'static str| -> Result<Vec<&Element>> {
        let container = child(first, ns::MESSAGES, "ResponseMessages")
            .ok_or_else(|| unexpected(format!("{} without ResponseMessages", first.local)))?;
        Ok(children(container, ns::MESSAGES, name).collect())
    };
    let body = match first.local.as_str() {
        "GetFolderResponse" => MailboxResponse::GetFolder(
            messages("GetFolderResponseMessage")?
                .into_iter()
                .map(|m| {
                    Ok(GetFolderResponseMessage {
                        message: decode_message(m)?,
                        folders: child(m, ns::MESSAGES, "Folders")
                            .map(|f| f.children.iter().map(decode_folder).collect())
                            .transpose()?
                            .unwrap_or_default(),
                    })
                })
                .collect::<Result<_>>()?,
        ),
        "GetItemResponse" => MailboxResponse::GetItem(
            messages("GetItemResponseMessage")?
                .into_iter()
                .map(|m| {
                    Ok(GetItemResponseMessage {
                        message: decode_message(m)?,
                        items: child(m, ns::MESSAGES, "Items")
                            .map(|i| i.children.iter().map(|c| decode_item(c, limits)).collect())
                            .transpose()?
                            .unwrap_or_default(),
                    })
                })
                .collect::<Result<_>>()?,
        ),
        "GetAttachmentResponse" => MailboxResponse::GetAttachment(
            messages("GetAttachmentResponseMessage")?
                .into_iter()
                .map(|m| {
                    Ok(GetAttachmentResponseMessage {
                        message: decode_message(m)?,
                        attachments: child(m, ns::MESSAGES, "Attachments")
                            .map(|a| decode_attachments(a, limits))
                            .transpose()?
                            .unwrap_or_default(),
                    })
                })
                .collect::<Result<_>>()?,
        ),
        other => return Err(unexpected(format!("unknown response element {other}"))),
    };
    Ok(MailboxResponseDocument::Response(MailboxResponseEnvelope {
        server_version_info,
        body,
    }))
}

fn decode_message(el: &Element) -> Result<MailboxResponseMessage> {
    let class = required_attribute(el, "ResponseClass")?;
    let response_class = ResponseClass::from_wire(class.trim())
        .ok_or_else(|| unexpected(format!("unknown ResponseClass {class:?}")))?;
    let m = |name: &str| child(el, ns::MESSAGES, name);
    Ok(MailboxResponseMessage {
        response_class,
        message_text: m("MessageText").map(|c| c.text.clone()),
        response_code: m("ResponseCode").map(|c| ResponseCodeValue::from_wire(&c.text)),
        // Always 0 in practice and unused by openum: a non-number reads as absent.
        descriptive_link_key: m("DescriptiveLinkKey").and_then(|c| c.text.trim().parse().ok()),
        message_xml: m("MessageXml").map(message_xml_values),
    })
}

fn decode_folder(el: &Element) -> Result<Folder> {
    Ok(Folder {
        element: el.local.clone(),
        folder_id: t(el, "FolderId").map(decode_folder_id).transpose()?,
        display_name: t(el, "DisplayName").map(|c| c.text.clone()),
    })
}

fn decode_folder_id(el: &Element) -> Result<FolderId> {
    Ok(FolderId {
        id: required_attribute(el, "Id")?.to_owned(),
        change_key: optional(el, "ChangeKey"),
    })
}

fn decode_item_id(el: &Element) -> Result<ItemId> {
    Ok(ItemId {
        id: required_attribute(el, "Id")?.to_owned(),
        change_key: optional(el, "ChangeKey"),
    })
}

fn decode_item(el: &Element, limits: DecodeLimits) -> Result<Item> {
    let mut item = Item {
        element: el.local.clone(),
        item_id: None,
        item_class: None,
        subject: None,
        attachments: Vec::new(),
        has_attachments: None,
        extended_properties: Vec::new(),
    };
    for c in el.children.iter().filter(|c| c.ns == ns::TYPES) {
        match c.local.as_str() {
            "ItemId" => item.item_id = Some(decode_item_id(c)?),
            "ItemClass" => item.item_class = Some(c.text.trim().to_owned()),
            "Subject" => item.subject = Some(c.text.clone()),
            "Attachments" => item.attachments = decode_attachments(c, limits)?,
            "HasAttachments" => item.has_attachments = Some(boolean(c)?),
            "ExtendedProperty" => item.extended_properties.extend(decode_extended_property(c)),
            _ => {}
        }
    }
    Ok(item)
}

fn decode_attachments(el: &Element, limits: DecodeLimits) -> Result<Vec<Attachment>> {
    el.children
        .iter()
        .filter(|c| c.ns == ns::TYPES)
        .map(|c| match c.local.as_str() {
            "FileAttachment" => decode_file_attachment(c, limits).map(Attachment::File),
            "ItemAttachment" => decode_item_attachment(c).map(Attachment::Item),
            other => Ok(Attachment::Other(other.to_owned())),
        })
        .collect()
}

fn decode_attachment_id(el: &Element) -> Result<AttachmentId> {
    Ok(AttachmentId {
        id: required_attribute(el, "Id")?.to_owned(),
        root_item_id: optional(el, "RootItemId"),
        root_item_change_key: optional(el, "RootItemChangeKey"),
    })
}

/// `xs:int` sizes; an unreadable or negative value is dropped (the size is only advisory).
fn size(el: &Element) -> Option<u64> {
    t(el, "Size").and_then(|s| s.text.trim().parse().ok())
}

fn decode_file_attachment(el: &Element, limits: DecodeLimits) -> Result<FileAttachment> {
    let text = |name: &str| t(el, name).map(|c| c.text.clone());
    Ok(FileAttachment {
        attachment_id: t(el, "AttachmentId")
            .map(decode_attachment_id)
            .transpose()?,
        name: text("Name"),
        content_type: t(el, "ContentType").map(|c| c.text.trim().to_owned()),
        content_id: text("ContentId"),
        size: size(el),
        is_inline: t(el, "IsInline").map(boolean).transpose()?,
        is_contact_photo: t(el, "IsContactPhoto").map(boolean).transpose()?,
        content: t(el, "Content")
            .map(|c| decode_content(&c.text, limits.max_content_bytes))
            .transpose()?,
    })
}

fn decode_item_attachment(el: &Element) -> Result<ItemAttachment> {
    Ok(ItemAttachment {
        attachment_id: t(el, "AttachmentId")
            .map(decode_attachment_id)
            .transpose()?,
        name: t(el, "Name").map(|c| c.text.clone()),
        content_type: t(el, "ContentType").map(|c| c.text.trim().to_owned()),
        size: size(el),
        is_inline: t(el, "IsInline").map(boolean).transpose()?,
    })
}

/// Base64 as `xs:base64Binary` allows it: whitespace anywhere; padding tolerated when missing.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_content(text: &str, limit: u64) -> Result<Vec<u8>> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let padding = compact.iter().rev().take_while(|&&b| b == b'=').count();
    let symbols = (compact.len() - padding) as u64;
    // Every 4 symbols are 3 bytes; a trailing 2 or 3 symbols are 1 or 2 more.
    let size = symbols / 4 * 3 + (symbols % 4).saturating_sub(1);
    if size > limit {
        return Err(MailboxDecodeError::ContentTooLarge { limit, size });
    }
    BASE64
        .decode(&compact)
        .map_err(|e| unexpected(format!("Content is not base64: {e}")))
}

/// `PropertyTag`: hexadecimal with `0x`, else decimal (servers write both).
/// A property tag, hex (`0x6805`) or decimal; `None` (the field is unreadable) otherwise.
fn property_tag(value: &str) -> Option<u16> {
    let value = value.trim();
    match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

/// `None` when the field's `PropertyType` or `PropertyTag` is unreadable.
fn decode_extended_field_uri(el: &Element) -> Option<ExtendedFieldUri> {
    let property_type = MapiPropertyType::from_wire(el.attribute("PropertyType")?.trim())?;
    let property_tag = match el.attribute("PropertyTag") {
        Some(tag) => Some(property_tag(tag)?),
        None => None,
    };
    Some(ExtendedFieldUri {
        distinguished_property_set_id: optional(el, "DistinguishedPropertySetId"),
        property_set_id: optional(el, "PropertySetId"),
        property_tag,
        property_name: optional(el, "PropertyName"),
        property_id: el
            .attribute("PropertyId")
            .and_then(|v| v.trim().parse().ok()),
        property_type,
    })
}

/// `None` (the property is dropped) when its field or value cannot be read.
fn decode_extended_property(el: &Element) -> Option<ExtendedProperty> {
    let field = decode_extended_field_uri(t(el, "ExtendedFieldURI")?)?;
    let value = match (t(el, "Value"), t(el, "Values")) {
        (Some(v), _) => ExtendedPropertyValue::Value(v.text.clone()),
        (None, Some(vs)) => ExtendedPropertyValue::Values(
            children(vs, ns::TYPES, "Value")
                .map(|v| v.text.clone())
                .collect(),
        ),
        (None, None) => return None,
    };
    Some(ExtendedProperty { field, value })
}

/// Decodes a mailbox request (`GetFolder`, `GetItem`, `GetAttachment`), as a test double of
/// the mailbox server reads it.
///
/// Reads what [`super::encode_mailbox_request`] writes and the documented variants of it;
/// elements of the shapes openum does not use (`IncludeMimeContent`, `BodyType`, …) and
/// `m:AttachmentShape` are skipped. Paths other than `t:FieldURI`/`t:ExtendedFieldURI`, ids
/// other than `t:ItemId`/`t:FolderId`/`t:DistinguishedFolderId`, are refused.
pub fn decode_mailbox_request(input: &[u8], limits: Limits) -> Result<MailboxRequestEnvelope> {
    let root = xml::parse(xml::document_text(input)?, limits)?;
    let (header, first) = envelope(&root)?;
    let version = header
        .and_then(|h| t(h, "RequestServerVersion"))
        .map(|v| {
            let name = required_attribute(v, "Version")?;
            ExchangeVersion::from_wire(name.trim())
                .ok_or_else(|| unexpected(format!("unknown RequestServerVersion {name:?}")))
        })
        .transpose()?;
    if first.ns != ns::MESSAGES {
        return Err(unexpected(format!("body element {}", first.qualified())));
    }
    let m = |name: &str| {
        child(first, ns::MESSAGES, name)
            .ok_or_else(|| unexpected(format!("{} without {name}", first.local)))
    };
    let body = match first.local.as_str() {
        "GetFolder" => {
            let (base_shape, additional_properties) = decode_shape(m("FolderShape")?)?;
            MailboxRequest::GetFolder(GetFolder {
                folder_shape: FolderShape {
                    base_shape,
                    additional_properties,
                },
                folder_ids: m("FolderIds")?
                    .children
                    .iter()
                    .map(|c| match (c.ns == ns::TYPES, c.local.as_str()) {
                        (true, "FolderId") => decode_folder_id(c).map(BaseFolderId::FolderId),
                        (true, "DistinguishedFolderId") => {
                            Ok(BaseFolderId::DistinguishedFolderId(DistinguishedFolderId {
                                id: required_attribute(c, "Id")?.to_owned(),
                            }))
                        }
                        _ => Err(unexpected(format!(
                            "unsupported folder id {}",
                            c.qualified()
                        ))),
                    })
                    .collect::<Result<_>>()?,
            })
        }
        "GetItem" => {
            let (base_shape, additional_properties) = decode_shape(m("ItemShape")?)?;
            MailboxRequest::GetItem(GetItem {
                item_shape: ItemShape {
                    base_shape,
                    additional_properties,
                },
                item_ids: m("ItemIds")?
                    .children
                    .iter()
                    .map(|c| {
                        if c.is(ns::TYPES, "ItemId") {
                            decode_item_id(c)
                        } else {
                            Err(unexpected(format!("unsupported item id {}", c.qualified())))
                        }
                    })
                    .collect::<Result<_>>()?,
            })
        }
        "GetAttachment" => MailboxRequest::GetAttachment(GetAttachment {
            attachment_ids: m("AttachmentIds")?
                .children
                .iter()
                .map(|c| {
                    if c.is(ns::TYPES, "AttachmentId") {
                        decode_attachment_id(c)
                    } else {
                        Err(unexpected(format!(
                            "unsupported attachment id {}",
                            c.qualified()
                        )))
                    }
                })
                .collect::<Result<_>>()?,
        }),
        other => return Err(unexpected(format!("unsupported operation {other}"))),
    };
    Ok(MailboxRequestEnvelope { version, body })
}

fn decode_shape(el: &Element) -> Result<(BaseShape, Vec<PropertyPath>)> {
    let base =
        t(el, "BaseShape").ok_or_else(|| unexpected(format!("{} without BaseShape", el.local)))?;
    let base_shape = BaseShape::from_wire(base.text.trim())
        .ok_or_else(|| unexpected(format!("unknown BaseShape {:?}", base.text)))?;
    let paths = t(el, "AdditionalProperties")
        .map(|a| {
            a.children
                .iter()
                .map(|p| match (p.ns == ns::TYPES, p.local.as_str()) {
                    (true, "FieldURI") => Ok(PropertyPath::FieldUri(
                        required_attribute(p, "FieldURI")?.to_owned(),
                    )),
                    (true, "ExtendedFieldURI") => decode_extended_field_uri(p)
                        .map(PropertyPath::ExtendedFieldUri)
                        .ok_or_else(|| unexpected("unreadable ExtendedFieldURI")),
                    _ => Err(unexpected(format!(
                        "unsupported property path {}",
                        p.qualified()
                    ))),
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok((base_shape, paths))
}
