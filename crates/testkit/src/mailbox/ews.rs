//! The EWS operations the double answers — `GetFolder`, `GetItem`, `GetAttachment`, `FindItem` —
//! and the SOAP faults for requests it cannot process. Responses are written with plain string
//! formatting in the shapes of Microsoft's documented examples (see
//! `fixtures/mailbox/README.md`), and the tests validate them against the official schema.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::ids::{self, IdKind};
use super::xml::{self, escape, escape_attr, Element, ERRORS, MESSAGES, SOAP, TYPES};
use super::{FolderKind, ForeignItemError, Store, StoredAttachment, StoredItem};

/// What the HTTP layer sends back for an authenticated `POST`.
#[derive(Debug)]
pub(super) enum Reply {
    /// HTTP 200 with this SOAP document (per-message errors included).
    Document(String),
    /// HTTP 500 with this SOAP fault.
    Fault(String),
}

/// The local name of the SOAP body's first element, when the body is a well-formed envelope.
pub(super) fn operation_name(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let root = xml::parse(text).ok()?;
    let op = root.child(SOAP, "Body")?.children.first()?;
    Some(op.local.clone())
}

/// Answers one request from the mailbox at `caller` (an index into `store.mailboxes`).
pub(super) fn respond(store: &Store, caller: usize, body: &[u8]) -> Reply {
    let Ok(text) = std::str::from_utf8(body) else {
        return Reply::Fault(Refusal::Invalid.fault(""));
    };
    let answer = xml::parse(text)
        .map_err(|_| Refusal::Invalid)
        .and_then(|root| {
            let op = operation(&root)?;
            let ctx = Context { store, caller };
            let messages = match op.local.as_str() {
                "GetFolder" => ctx.get_folder(op)?,
                "GetItem" => ctx.get_item(op)?,
                "GetAttachment" => ctx.get_attachment(op)?,
                "FindItem" => ctx.find_item(op)?,
                other => return Err(Refusal::Unsupported(other.to_owned())),
            };
            Ok(document(&op.local, &messages))
        });
    match answer {
        Ok(doc) => Reply::Document(doc),
        Err(refusal) => Reply::Fault(refusal.fault(text)),
    }
}

/// Why a request as a whole cannot be processed: each is one SOAP fault (HTTP 500).
#[derive(Debug)]
enum Refusal {
    /// Not well-formed, or a body without an operation: `ErrorInvalidRequest`.
    Invalid,
    /// Breaks the schema: `ErrorSchemaValidation`, with where and what.
    Schema { offset: usize, violation: String },
    /// A real EWS operation the double does not implement: `ErrorInvalidOperation`.
    Unsupported(String),
}

impl Refusal {
    fn schema(at: &Element, violation: String) -> Self {
        Self::Schema {
            offset: at.offset,
            violation,
        }
    }

    fn missing(parent: &Element, ns: &str, local: &str) -> Self {
        Self::schema(
            parent,
            format!(
                "The element {} has incomplete content. List of possible elements expected: '{local}' in namespace '{ns}'.",
                parent.describe()
            ),
        )
    }

    fn fault(&self, text: &str) -> String {
        match self {
            Self::Invalid => fault("ErrorInvalidRequest", "The request is invalid.", None),
            Self::Schema { offset, violation } => {
                let (line, column) = xml::line_column(text, *offset);
                let detail = format!(
                    "<t:MessageXml xmlns:t=\"{TYPES}\"><t:LineNumber>{line}</t:LineNumber><t:LinePosition>{column}</t:LinePosition><t:Violation>{}</t:Violation></t:MessageXml>",
                    escape(violation)
                );
                fault_with(
                    "ErrorSchemaValidation",
                    &format!("The request failed schema validation: {violation}"),
                    "The request failed schema validation.",
                    Some(&detail),
                )
            }
            Self::Unsupported(name) => fault(
                "ErrorInvalidOperation",
                &format!("The operation '{name}' is not supported by this mailbox double. Supported operations: GetFolder, GetItem, GetAttachment, FindItem."),
                None,
            ),
        }
    }
}

/// The operation element of a SOAP 1.1 envelope.
fn operation(root: &Element) -> Result<&Element, Refusal> {
    if !root.is(SOAP, "Envelope") {
        return Err(Refusal::schema(
            root,
            format!(
                "The root element must be 'Envelope' in namespace '{SOAP}', not {}.",
                root.describe()
            ),
        ));
    }
    let body = root
        .child(SOAP, "Body")
        .ok_or_else(|| Refusal::missing(root, SOAP, "Body"))?;
    let op = match body.children.as_slice() {
        [] => return Err(Refusal::Invalid),
        [op] => op,
        [_, second, ..] => {
            return Err(Refusal::schema(
                second,
                format!(
                    "The element 'Body' in namespace '{SOAP}' has invalid child element {}.",
                    second.describe()
                ),
            ))
        }
    };
    let is_ews_operation = op.ns == MESSAGES && ews_proto::WSDL_OPERATIONS.contains(&&*op.local);
    if !is_ews_operation {
        return Err(Refusal::schema(
            op,
            format!(
                "The element 'Body' in namespace '{SOAP}' has invalid child element {}.",
                op.describe()
            ),
        ));
    }
    Ok(op)
}

/// A per-message error code, with the `MessageText` Exchange sends with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Code {
    AccessDenied,
    BatchProcessingStopped,
    FolderNotFound,
    InvalidIdEmpty,
    InvalidIdMalformed,
    ItemNotFound,
    NonExistentMailbox,
}

impl Code {
    fn name(self) -> &'static str {
        match self {
            Self::AccessDenied => "ErrorAccessDenied",
            Self::BatchProcessingStopped => "ErrorBatchProcessingStopped",
            Self::FolderNotFound => "ErrorFolderNotFound",
            Self::InvalidIdEmpty => "ErrorInvalidIdEmpty",
            Self::InvalidIdMalformed => "ErrorInvalidIdMalformed",
            Self::ItemNotFound => "ErrorItemNotFound",
            Self::NonExistentMailbox => "ErrorNonExistentMailbox",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::AccessDenied => "Access is denied. Check credentials and try again.",
            Self::BatchProcessingStopped => {
                "Item was not processed as a result of a previous error."
            }
            Self::FolderNotFound => "The specified folder could not be found in the store.",
            Self::InvalidIdEmpty => "Id must be non-empty.",
            Self::InvalidIdMalformed => "Id is malformed.",
            Self::ItemNotFound => "The specified object was not found in the store.",
            Self::NonExistentMailbox => "The SMTP address has no mailbox associated with it.",
        }
    }

    /// `ErrorBatchProcessingStopped` is a warning; everything else an error.
    fn class(self) -> &'static str {
        match self {
            Self::BatchProcessingStopped => "Warning",
            _ => "Error",
        }
    }
}

/// Which properties a response shape asks for.
#[derive(Debug)]
struct Shape {
    /// `IdOnly` (false) or `Default`/`AllProperties` (true).
    defaults: bool,
    /// `FieldURI` values asked for in `AdditionalProperties`.
    fields: Vec<String>,
    /// `ExtendedFieldURI` tags asked for, with their `PropertyType`.
    extended: Vec<(u16, String)>,
}

impl Shape {
    fn read(shape: &Element) -> Result<Self, Refusal> {
        let base = shape
            .child(TYPES, "BaseShape")
            .ok_or_else(|| Refusal::missing(shape, TYPES, "BaseShape"))?;
        let defaults = match base.text.trim() {
            "IdOnly" => false,
            "Default" | "AllProperties" => true,
            other => {
                return Err(Refusal::schema(
                    base,
                    format!("The '{TYPES}:BaseShape' element is invalid - The value '{other}' is invalid according to its datatype '{TYPES}:DefaultShapeNamesType' - The Enumeration constraint failed."),
                ))
            }
        };
        let mut fields = Vec::new();
        let mut extended = Vec::new();
        if let Some(additional) = shape.child(TYPES, "AdditionalProperties") {
            for path in &additional.children {
                match path.local.as_str() {
                    "FieldURI" => fields.extend(path.attr("FieldURI").map(str::to_owned)),
                    "ExtendedFieldURI" => {
                        let tag = path.attr("PropertyTag").and_then(property_tag);
                        let kind = path.attr("PropertyType").unwrap_or_default();
                        extended.extend(tag.map(|t| (t, kind.to_owned())));
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            defaults,
            fields,
            extended,
        })
    }

    /// Whether `field` is in the response: asked for, or in the `Default` set `defaulted`.
    fn wants(&self, field: &str, defaulted: bool) -> bool {
        (self.defaults && defaulted) || self.fields.iter().any(|f| f == field)
    }
}

/// `PropertyTag` is "either a hexadecimal or a short integer" (`extendedfielduri`).
fn property_tag(value: &str) -> Option<u16> {
    let v = value.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// One request, from one authenticated mailbox.
struct Context<'a> {
    store: &'a Store,
    caller: usize,
}

/// A folder a request names: which mailbox, which folder.
type FolderRef = (usize, FolderKind);

impl Context<'_> {
    fn get_folder(&self, op: &Element) -> Result<Vec<String>, Refusal> {
        let shape = Shape::read(required(op, "FolderShape")?)?;
        let ids = required(op, "FolderIds")?;
        let mut messages = Vec::new();
        for id in &ids.children {
            messages.push(match self.folder(id) {
                Ok((mailbox, kind)) => success(
                    "GetFolder",
                    &format!(
                        "<m:Folders>{}</m:Folders>",
                        self.render_folder(mailbox, kind, &shape)
                    ),
                ),
                Err(code) => error("GetFolder", code, "<m:Folders/>"),
            });
        }
        Ok(messages)
    }

    fn get_item(&self, op: &Element) -> Result<Vec<String>, Refusal> {
        let shape = Shape::read(required(op, "ItemShape")?)?;
        let ids = required(op, "ItemIds")?;
        let mut stopped = false;
        let mut messages = Vec::new();
        for id in ids.children.iter().filter(|c| c.is(TYPES, "ItemId")) {
            let found = if stopped {
                Err(Code::BatchProcessingStopped)
            } else {
                self.item(id.attr("Id").unwrap_or_default(), IdKind::Item)
            };
            stopped |= matches!(found, Err(Code::AccessDenied));
            messages.push(match found {
                Ok(item) => success(
                    "GetItem",
                    &format!("<m:Items>{}</m:Items>", render_item(item, &shape, true)),
                ),
                Err(code) => error("GetItem", code, "<m:Items/>"),
            });
        }
        Ok(messages)
    }

    fn get_attachment(&self, op: &Element) -> Result<Vec<String>, Refusal> {
        let ids = required(op, "AttachmentIds")?;
        let mut stopped = false;
        let mut messages = Vec::new();
        for id in ids.children.iter().filter(|c| c.is(TYPES, "AttachmentId")) {
            let id = id.attr("Id").unwrap_or_default();
            let found = if stopped {
                Err(Code::BatchProcessingStopped)
            } else {
                self.item(id, IdKind::Attachment).and_then(|item| {
                    item.attachments
                        .iter()
                        .find(|a| a.id == id)
                        .ok_or(Code::ItemNotFound)
                })
            };
            stopped |= matches!(found, Err(Code::AccessDenied));
            messages.push(match found {
                Ok(a) => {
                    let mut xml = String::from("<m:Attachments><t:FileAttachment>");
                    attachment_metadata(&mut xml, a);
                    let _ = write!(
                        xml,
                        "<t:IsContactPhoto>false</t:IsContactPhoto><t:Content>{}</t:Content></t:FileAttachment></m:Attachments>",
                        STANDARD.encode(&a.bytes)
                    );
                    success("GetAttachment", &xml)
                }
                Err(code) => error("GetAttachment", code, "<m:Attachments/>"),
            });
        }
        Ok(messages)
    }

    fn find_item(&self, op: &Element) -> Result<Vec<String>, Refusal> {
        let traversal = op.attr("Traversal").ok_or_else(|| {
            Refusal::schema(op, "The required attribute 'Traversal' is missing.".into())
        })?;
        if !matches!(traversal, "Shallow" | "SoftDeleted" | "Associated") {
            return Err(Refusal::schema(
                op,
                format!("The 'Traversal' attribute is invalid - The value '{traversal}' is invalid according to its datatype '{TYPES}:ItemQueryTraversalType' - The Enumeration constraint failed."),
            ));
        }
        let shape = Shape::read(required(op, "ItemShape")?)?;
        let page = op.child(MESSAGES, "IndexedPageItemView").map(|view| {
            let number = |name: &str| view.attr(name).and_then(|v| v.parse::<usize>().ok());
            (number("Offset").unwrap_or(0), number("MaxEntriesReturned"))
        });
        let parents = required(op, "ParentFolderIds")?;
        let mut messages = Vec::new();
        for parent in &parents.children {
            let (mailbox, kind) = match self.folder(parent) {
                Ok(found) => found,
                Err(code) => {
                    messages.push(error("FindItem", code, ""));
                    continue;
                }
            };
            // Soft-deleted and associated items are not modelled: those views are empty.
            let mut items: Vec<&StoredItem> = if traversal == "Shallow" {
                self.store.mailboxes[mailbox]
                    .items
                    .iter()
                    .filter(|i| !i.deleted && kind.contains(i))
                    .collect()
            } else {
                Vec::new()
            };
            // Newest first, as a folder view is sorted by default.
            items.sort_by(|a, b| {
                b.received
                    .cmp(&a.received)
                    .then(b.sequence.cmp(&a.sequence))
            });
            let total = items.len();
            let (offset, max) = page.unwrap_or((0, None));
            let shown: Vec<&StoredItem> = items
                .into_iter()
                .skip(offset)
                .take(max.unwrap_or(usize::MAX))
                .collect();
            let end = offset.saturating_add(shown.len());
            let mut xml = String::from("<m:RootFolder");
            if page.is_some() {
                let _ = write!(xml, " IndexedPagingOffset=\"{end}\"");
            }
            let _ = write!(
                xml,
                " TotalItemsInView=\"{total}\" IncludesLastItemInRange=\"{}\"><t:Items>",
                end >= total
            );
            for item in shown {
                xml.push_str(&render_item(item, &shape, false));
            }
            xml.push_str("</t:Items></m:RootFolder>");
            messages.push(success("FindItem", &xml));
        }
        Ok(messages)
    }

    /// Resolves a `DistinguishedFolderId` or `FolderId`.
    fn folder(&self, id: &Element) -> Result<FolderRef, Code> {
        let mailboxes = &self.store.mailboxes;
        if id.is(TYPES, "DistinguishedFolderId") {
            let kind = FolderKind::from_distinguished(id.attr("Id").unwrap_or_default())
                .ok_or(Code::FolderNotFound)?;
            let owner = match id.child(TYPES, "Mailbox") {
                None => self.caller,
                Some(mailbox) => {
                    let address = mailbox
                        .child(TYPES, "EmailAddress")
                        .map(|e| e.text.trim())
                        .unwrap_or_default();
                    mailboxes
                        .iter()
                        .position(|m| m.answers_to(address))
                        .ok_or(Code::NonExistentMailbox)?
                }
            };
            return self.own((owner, kind), Code::FolderNotFound);
        }
        if id.is(TYPES, "FolderId") {
            let value = id.attr("Id").unwrap_or_default();
            if value.is_empty() {
                return Err(Code::InvalidIdEmpty);
            }
            let shape = ids::parse(value).ok_or(Code::InvalidIdMalformed)?;
            if shape.kind != IdKind::Folder {
                return Err(Code::InvalidIdMalformed);
            }
            let owner = mailboxes
                .iter()
                .position(|m| m.ids.guid() == shape.mailbox_guid)
                .ok_or(Code::FolderNotFound)?;
            let kind = FolderKind::ALL
                .into_iter()
                .find(|k| mailboxes[owner].folder_id(*k) == value)
                .ok_or(Code::FolderNotFound)?;
            return self.own((owner, kind), Code::FolderNotFound);
        }
        Err(Code::InvalidIdMalformed)
    }

    /// Resolves an item id (or, for `IdKind::Attachment`, the item an attachment id belongs to).
    fn item(&self, id: &str, kind: IdKind) -> Result<&StoredItem, Code> {
        if id.is_empty() {
            return Err(Code::InvalidIdEmpty);
        }
        let shape = ids::parse(id).ok_or(Code::InvalidIdMalformed)?;
        if shape.kind != kind {
            return Err(Code::InvalidIdMalformed);
        }
        let owner = self
            .store
            .mailboxes
            .iter()
            .position(|m| m.ids.guid() == shape.mailbox_guid)
            .ok_or(Code::ItemNotFound)?;
        let (owner, ()) = self.own((owner, ()), Code::ItemNotFound)?;
        self.store.mailboxes[owner]
            .items
            .iter()
            .filter(|i| !i.deleted)
            .find(|i| match kind {
                IdKind::Attachment => i.attachments.iter().any(|a| a.id == id),
                _ => i.id == id,
            })
            .ok_or(Code::ItemNotFound)
    }

    /// Lets the caller through to its own mailbox; another mailbox answers the configured
    /// error (`not_found` standing for "not found" in this context).
    fn own<T>(&self, (owner, what): (usize, T), not_found: Code) -> Result<(usize, T), Code> {
        if owner == self.caller {
            return Ok((owner, what));
        }
        Err(match self.store.foreign_item_error {
            ForeignItemError::AccessDenied => Code::AccessDenied,
            ForeignItemError::ItemNotFound => not_found,
        })
    }

    fn render_folder(&self, mailbox: usize, kind: FolderKind, shape: &Shape) -> String {
        let owner = &self.store.mailboxes[mailbox];
        let element = if kind == FolderKind::VoiceMail {
            "SearchFolder"
        } else {
            "Folder"
        };
        let count = owner
            .items
            .iter()
            .filter(|i| !i.deleted && kind.contains(i))
            .count();
        let mut xml = format!(
            "<t:{element}><t:FolderId Id=\"{}\" ChangeKey=\"{}\"/>",
            owner.folder_id(kind),
            owner.folder_change_key(kind)
        );
        if let Some(class) = kind
            .folder_class()
            .filter(|_| shape.wants("folder:FolderClass", false))
        {
            let _ = write!(xml, "<t:FolderClass>{class}</t:FolderClass>");
        }
        if shape.wants("folder:DisplayName", true) {
            let _ = write!(
                xml,
                "<t:DisplayName>{}</t:DisplayName>",
                kind.display_name()
            );
        }
        if shape.wants("folder:TotalCount", true) {
            let _ = write!(xml, "<t:TotalCount>{count}</t:TotalCount>");
        }
        if shape.wants("folder:ChildFolderCount", true) {
            xml.push_str("<t:ChildFolderCount>0</t:ChildFolderCount>");
        }
        if shape.wants("folder:UnreadCount", true) {
            let _ = write!(xml, "<t:UnreadCount>{count}</t:UnreadCount>");
        }
        let _ = write!(xml, "</t:{element}>");
        xml
    }
}

fn required<'a>(op: &'a Element, local: &str) -> Result<&'a Element, Refusal> {
    op.child(MESSAGES, local)
        .ok_or_else(|| Refusal::missing(op, MESSAGES, local))
}

/// A `t:Message` in schema order (ItemId, ParentFolderId, ItemClass, Subject, Attachments,
/// DateTimeReceived, HasAttachments, ExtendedProperty). `FindItem` never returns attachments.
fn render_item(item: &StoredItem, shape: &Shape, get_item: bool) -> String {
    let mut xml = format!(
        "<t:Message><t:ItemId Id=\"{}\" ChangeKey=\"{}\"/>",
        item.id, item.change_key
    );
    if shape.wants("item:ParentFolderId", false) {
        let _ = write!(
            xml,
            "<t:ParentFolderId Id=\"{}\" ChangeKey=\"{}\"/>",
            item.parent_folder_id, item.parent_folder_change_key
        );
    }
    if shape.wants("item:ItemClass", true) {
        let _ = write!(
            xml,
            "<t:ItemClass>{}</t:ItemClass>",
            escape(&item.item_class)
        );
    }
    if shape.wants("item:Subject", true) {
        let _ = write!(xml, "<t:Subject>{}</t:Subject>", escape(&item.subject));
    }
    if get_item && shape.wants("item:Attachments", true) && !item.attachments.is_empty() {
        xml.push_str("<t:Attachments>");
        for a in &item.attachments {
            xml.push_str("<t:FileAttachment>");
            attachment_metadata(&mut xml, a);
            xml.push_str("<t:IsContactPhoto>false</t:IsContactPhoto></t:FileAttachment>");
        }
        xml.push_str("</t:Attachments>");
    }
    if shape.wants("item:DateTimeReceived", true) {
        let _ = write!(
            xml,
            "<t:DateTimeReceived>{}</t:DateTimeReceived>",
            item.received
        );
    }
    if shape.wants("item:HasAttachments", true) {
        let _ = write!(
            xml,
            "<t:HasAttachments>{}</t:HasAttachments>",
            item.has_attachments()
        );
    }
    for (tag, kind) in &shape.extended {
        let value = item
            .extended
            .iter()
            .find(|(t, k, _)| t == tag && k == kind)
            .map(|(_, _, v)| v);
        if let Some(value) = value {
            let _ = write!(
                xml,
                "<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag=\"0x{tag:x}\" PropertyType=\"{}\"/><t:Value>{}</t:Value></t:ExtendedProperty>",
                escape_attr(kind),
                escape(value)
            );
        }
    }
    xml.push_str("</t:Message>");
    xml
}

/// `AttachmentId` … `IsInline` of a file attachment, in schema order.
fn attachment_metadata(xml: &mut String, a: &StoredAttachment) {
    let _ = write!(
        xml,
        "<t:AttachmentId Id=\"{}\"/><t:Name>{}</t:Name><t:ContentType>{}</t:ContentType>",
        a.id,
        escape(&a.name),
        escape(&a.content_type)
    );
    if let Some(cid) = &a.content_id {
        let _ = write!(xml, "<t:ContentId>{}</t:ContentId>", escape(cid));
    }
    let _ = write!(
        xml,
        "<t:Size>{}</t:Size><t:LastModifiedTime>{}</t:LastModifiedTime><t:IsInline>{}</t:IsInline>",
        a.bytes.len(),
        a.last_modified,
        a.inline
    );
}

fn success(op: &str, content: &str) -> String {
    format!(
        "<m:{op}ResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>{content}</m:{op}ResponseMessage>"
    )
}

fn error(op: &str, code: Code, empty: &str) -> String {
    format!(
        "<m:{op}ResponseMessage ResponseClass=\"{}\"><m:MessageText>{}</m:MessageText><m:ResponseCode>{}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{empty}</m:{op}ResponseMessage>",
        code.class(),
        code.text(),
        code.name()
    )
}

/// The whole response document: envelope, `ServerVersionInfo` header, one `…Response`.
fn document(op: &str, messages: &[String]) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
            "<s:Envelope xmlns:s=\"{soap}\"><s:Header>",
            "<h:ServerVersionInfo MajorVersion=\"15\" MinorVersion=\"0\" MajorBuildNumber=\"939\" MinorBuildNumber=\"12\" Version=\"V2_11\"",
            " xmlns:h=\"{t}\" xmlns=\"{t}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"/>",
            "</s:Header><s:Body xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">",
            "<m:{op}Response xmlns:m=\"{m}\" xmlns:t=\"{t}\"><m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>",
            "</s:Body></s:Envelope>"
        ),
        soap = SOAP,
        t = TYPES,
        m = MESSAGES,
        op = op,
        messages = messages.concat()
    )
}

fn fault(code: &str, text: &str, message_xml: Option<&str>) -> String {
    fault_with(code, text, text, message_xml)
}

/// A SOAP 1.1 fault as Exchange sends it: no header, `faultcode` a QName in the types
/// namespace, the code and message again in `detail` in the errors namespace.
fn fault_with(code: &str, fault_string: &str, message: &str, message_xml: Option<&str>) -> String {
    format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>",
            "<s:Envelope xmlns:s=\"{soap}\"><s:Body><s:Fault>",
            "<faultcode xmlns:a=\"{t}\">a:{code}</faultcode>",
            "<faultstring xml:lang=\"en-US\">{fault_string}</faultstring>",
            "<detail><e:ResponseCode xmlns:e=\"{e}\">{code}</e:ResponseCode>",
            "<e:Message xmlns:e=\"{e}\">{message}</e:Message>{message_xml}</detail>",
            "</s:Fault></s:Body></s:Envelope>"
        ),
        soap = SOAP,
        t = TYPES,
        e = ERRORS,
        code = code,
        fault_string = escape(fault_string),
        message = escape(message),
        message_xml = message_xml.unwrap_or_default()
    )
}

impl StoredItem {
    /// Exchange reports `HasAttachments` false when every attachment is inline.
    fn has_attachments(&self) -> bool {
        self.attachments.iter().any(|a| !a.inline)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ATTACHMENT_ORDER_TAG;
    use super::*;

    #[test]
    fn property_tags_read_as_hex_or_decimal() {
        assert_eq!(property_tag("0x6805"), Some(ATTACHMENT_ORDER_TAG));
        assert_eq!(property_tag("0X6805"), Some(0x6805));
        assert_eq!(property_tag("26629"), Some(0x6805));
        assert_eq!(property_tag("0xZZ"), None);
    }
}
