//! The mailbox side of EWS that openum uses as a client: `GetFolder`, `GetItem` and
//! `GetAttachment`, with the `t:` types they carry, mirroring `messages.xsd`/`types.xsd`.
//!
//! Pure, like the rest of the crate: openum's mailbox backend fetches a voice-mail message from
//! the user's Exchange (or grommunio) mailbox with these requests and reads the answers with
//! these decoders. Both directions are provided for each document, so a test double of the
//! mailbox server can speak the same types:
//!
//! - requests: [`encode_mailbox_request`] (client) and [`decode_mailbox_request`] (double);
//! - responses: [`encode_mailbox_response`] (double) and [`decode_mailbox_response`] (client).
//!
//! Responses are read as tolerantly as the Microsoft clients read them: any prefixes, unknown
//! elements skipped, any item element (`t:Message`, `t:Item`, `t:CalendarItem`, …), response
//! codes outside the vendored 2010 SP1 enumeration kept as text ([`ResponseCodeValue::Other`]).
//! Base64 attachment content is decoded, bounded by [`DecodeLimits::max_content_bytes`].
//!
//! ```
//! use openum_ews_proto::mailbox::*;
//! use openum_ews_proto::{ExchangeVersion, ItemId};
//!
//! let request = MailboxRequest::GetItem(GetItem::voice_message(ItemId {
//!     id: "AAMkAGI2".into(),
//!     change_key: None,
//! }));
//! let xml = encode_mailbox_request(ExchangeVersion::Exchange2013, &request);
//! assert!(xml.contains(r#"<t:ExtendedFieldURI PropertyTag="0x6805" PropertyType="String"/>"#));
//! ```

mod decode;
mod encode;

pub use decode::{
    decode_mailbox_request, decode_mailbox_response, DecodeLimits, MailboxDecodeError,
};
pub use encode::{encode_mailbox_request, encode_mailbox_response};

use crate::messages::{Fault, MessageXmlValue};
use crate::response_code::ResponseCode;
use crate::types::{wire_enum, ExchangeVersion, ItemId, ResponseClass, ServerVersionInfo};

/// The MAPI property tag of `PidTagVoiceMessageAttachmentOrder` (`PtypString`).
///
/// [MS-OXPROPS] §2.1060: property ID `0x6805`, type `PtypString` (`0x001F`), area Unified
/// Messaging, defined by [MS-OXOUM] §2.2.5.9: the `;`-separated `PidTagAttachLongFilename`s of
/// the audio attachments to play, **most recently added first** (the reverse of the order in
/// which they were added).
///
/// <https://learn.microsoft.com/en-us/openspecs/exchange_server_protocols/ms-oxprops/b4869fba-07f7-4f3e-b0e1-3e5d1461fbed>
pub const PID_TAG_VOICE_MESSAGE_ATTACHMENT_ORDER: u16 = 0x6805;

/// `t:FieldURI` values (`t:UnindexedFieldURIType`) that openum requests.
pub mod field_uri {
    /// `item:ItemClass`.
    pub const ITEM_CLASS: &str = "item:ItemClass";
    /// `item:Subject`.
    pub const SUBJECT: &str = "item:Subject";
    /// `item:HasAttachments`.
    pub const HAS_ATTACHMENTS: &str = "item:HasAttachments";
    /// `item:Attachments`.
    pub const ATTACHMENTS: &str = "item:Attachments";
}

wire_enum! {
    /// `t:DefaultShapeNamesType`: how many properties a response carries.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/baseshape>
    BaseShape {
        /// Only the identifier (plus the `AdditionalProperties`).
        IdOnly,
        /// The default set.
        Default,
        /// Every property of the shape.
        AllProperties,
    }
}

wire_enum! {
    /// `t:MapiPropertyTypeType`: the type of an extended property.
    ///
    /// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/extendedfielduri>
    MapiPropertyType {
        /// `PtypTime` application time.
        ApplicationTime,
        /// Multi-valued application time.
        ApplicationTimeArray,
        /// `PtypBinary`.
        Binary,
        /// Multi-valued binary.
        BinaryArray,
        /// `PtypBoolean`.
        Boolean,
        /// `PtypGuid`.
        CLSID,
        /// Multi-valued GUID.
        CLSIDArray,
        /// `PtypCurrency`.
        Currency,
        /// Multi-valued currency.
        CurrencyArray,
        /// `PtypFloating64`.
        Double,
        /// Multi-valued double.
        DoubleArray,
        /// `PtypErrorCode`.
        Error,
        /// `PtypFloating32`.
        Float,
        /// Multi-valued float.
        FloatArray,
        /// `PtypInteger32`.
        Integer,
        /// Multi-valued 32-bit integer.
        IntegerArray,
        /// `PtypInteger64`.
        Long,
        /// Multi-valued 64-bit integer.
        LongArray,
        /// `PtypNull`.
        Null,
        /// `PtypObject`.
        Object,
        /// Multi-valued object.
        ObjectArray,
        /// `PtypInteger16`.
        Short,
        /// Multi-valued 16-bit integer.
        ShortArray,
        /// `PtypTime`.
        SystemTime,
        /// Multi-valued time.
        SystemTimeArray,
        /// `PtypString` (Unicode).
        String,
        /// Multi-valued string.
        StringArray,
    }
}

/// `t:PathToExtendedFieldType` (`t:ExtendedFieldURI`): names an extended MAPI property, either
/// by `PropertyTag` or by property set plus name or id.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/extendedfielduri>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct ExtendedFieldUri {
    /// `DistinguishedPropertySetId`.
    pub distinguished_property_set_id: Option<String>,
    /// `PropertySetId` (a GUID).
    pub property_set_id: Option<String>,
    /// `PropertyTag`: the 16-bit property ID, written `0x6805`; read as hexadecimal with `0x`
    /// or decimal without, as servers write both.
    pub property_tag: Option<u16>,
    /// `PropertyName`.
    pub property_name: Option<String>,
    /// `PropertyId`.
    pub property_id: Option<i32>,
    /// `PropertyType` (required).
    pub property_type: MapiPropertyType,
}

impl ExtendedFieldUri {
    /// A property named by its tag.
    pub const fn tag(property_tag: u16, property_type: MapiPropertyType) -> Self {
        Self {
            distinguished_property_set_id: None,
            property_set_id: None,
            property_tag: Some(property_tag),
            property_name: None,
            property_id: None,
            property_type,
        }
    }

    /// `PidTagVoiceMessageAttachmentOrder` ([`PID_TAG_VOICE_MESSAGE_ATTACHMENT_ORDER`], String).
    pub const VOICE_MESSAGE_ATTACHMENT_ORDER: Self = Self::tag(
        PID_TAG_VOICE_MESSAGE_ATTACHMENT_ORDER,
        MapiPropertyType::String,
    );
}

/// One property path of `t:AdditionalProperties` (`t:BasePathToElementType` choice).
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub enum PropertyPath {
    /// `t:FieldURI` with its `FieldURI` value (see [`field_uri`]).
    FieldUri(String),
    /// `t:ExtendedFieldURI`.
    ExtendedFieldUri(ExtendedFieldUri),
}

/// `t:FolderIdType`.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/folderid>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct FolderId {
    /// `Id` (required).
    pub id: String,
    /// `ChangeKey`.
    pub change_key: Option<String>,
}

/// `t:DistinguishedFolderIdType` (without the optional `t:Mailbox`: openum reads the caller's
/// own mailbox).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/distinguishedfolderid>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct DistinguishedFolderId {
    /// `Id`: a `t:DistinguishedFolderIdNameType` value such as `inbox`.
    pub id: String,
}

impl DistinguishedFolderId {
    /// `inbox`.
    pub fn inbox() -> Self {
        Self { id: "inbox".into() }
    }
}

/// One folder of `m:FolderIds` (`t:NonEmptyArrayOfBaseFolderIdsType` choice).
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub enum BaseFolderId {
    /// `t:FolderId`.
    FolderId(FolderId),
    /// `t:DistinguishedFolderId`.
    DistinguishedFolderId(DistinguishedFolderId),
}

/// `t:FolderResponseShapeType` (`m:FolderShape`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct FolderShape {
    /// `t:BaseShape`.
    pub base_shape: BaseShape,
    /// `t:AdditionalProperties` (omitted when empty).
    pub additional_properties: Vec<PropertyPath>,
}

/// `t:ItemResponseShapeType` (`m:ItemShape`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ItemShape {
    /// `t:BaseShape`.
    pub base_shape: BaseShape,
    /// `t:AdditionalProperties` (omitted when empty).
    pub additional_properties: Vec<PropertyPath>,
}

/// `m:GetFolder` (`m:GetFolderType`).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetFolder {
    /// `m:FolderShape`.
    pub folder_shape: FolderShape,
    /// `m:FolderIds`.
    pub folder_ids: Vec<BaseFolderId>,
}

impl GetFolder {
    /// What openum sends to check credentials and learn the mailbox's identity: the inbox,
    /// `IdOnly`.
    pub fn inbox_id() -> Self {
        Self {
            folder_shape: FolderShape {
                base_shape: BaseShape::IdOnly,
                additional_properties: Vec::new(),
            },
            folder_ids: vec![BaseFolderId::DistinguishedFolderId(
                DistinguishedFolderId::inbox(),
            )],
        }
    }
}

/// `m:GetItem` (`m:GetItemType`).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetItem {
    /// `m:ItemShape`.
    pub item_shape: ItemShape,
    /// `m:ItemIds` (`t:ItemId` only; `ChangeKey` written only when present and non-empty).
    pub item_ids: Vec<ItemId>,
}

impl GetItem {
    /// What openum sends to find a voice message's audio: `IdOnly` plus `item:ItemClass`,
    /// `item:Subject`, `item:HasAttachments`, `item:Attachments` and
    /// `PidTagVoiceMessageAttachmentOrder`.
    pub fn voice_message(item_id: ItemId) -> Self {
        Self {
            item_shape: ItemShape {
                base_shape: BaseShape::IdOnly,
                additional_properties: vec![
                    PropertyPath::FieldUri(field_uri::ITEM_CLASS.into()),
                    PropertyPath::FieldUri(field_uri::SUBJECT.into()),
                    PropertyPath::FieldUri(field_uri::HAS_ATTACHMENTS.into()),
                    PropertyPath::FieldUri(field_uri::ATTACHMENTS.into()),
                    PropertyPath::ExtendedFieldUri(
                        ExtendedFieldUri::VOICE_MESSAGE_ATTACHMENT_ORDER,
                    ),
                ],
            },
            item_ids: vec![item_id],
        }
    }
}

/// `t:AttachmentIdType` (in requests `t:RequestAttachmentIdType`: only `Id` is written).
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/attachmentid>
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct AttachmentId {
    /// `Id` (required).
    pub id: String,
    /// `RootItemId`.
    pub root_item_id: Option<String>,
    /// `RootItemChangeKey`.
    pub root_item_change_key: Option<String>,
}

impl AttachmentId {
    /// An attachment id with only `Id`.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            root_item_id: None,
            root_item_change_key: None,
        }
    }
}

/// `m:GetAttachment` (`m:GetAttachmentType`) without `m:AttachmentShape`.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getattachment-operation>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetAttachment {
    /// `m:AttachmentIds`.
    pub attachment_ids: Vec<AttachmentId>,
}

/// The body of a mailbox request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum MailboxRequest {
    /// `m:GetFolder`.
    GetFolder(GetFolder),
    /// `m:GetItem`.
    GetItem(GetItem),
    /// `m:GetAttachment`.
    GetAttachment(GetAttachment),
}

impl MailboxRequest {
    /// The operation's element name.
    pub fn operation_name(&self) -> &'static str {
        match self {
            Self::GetFolder(_) => "GetFolder",
            Self::GetItem(_) => "GetItem",
            Self::GetAttachment(_) => "GetAttachment",
        }
    }
}

/// A mailbox request document: the `t:RequestServerVersion` header and the operation.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MailboxRequestEnvelope {
    /// `t:RequestServerVersion/@Version` (`None` when the header is absent).
    pub version: Option<ExchangeVersion>,
    /// The operation.
    pub body: MailboxRequest,
}

/// An `m:ResponseCode` value: one of the vendored schema's codes, or the text of a code that
/// a newer server sent.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub enum ResponseCodeValue {
    /// A code of [`ResponseCode`].
    Known(ResponseCode),
    /// Any other code, verbatim (trimmed).
    Other(String),
}

impl ResponseCodeValue {
    /// Parses wire text (case-sensitive, like the schema).
    pub fn from_wire(value: &str) -> Self {
        let value = value.trim();
        ResponseCode::from_wire(value).map_or_else(|| Self::Other(value.to_owned()), Self::Known)
    }

    /// The code as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(code) => code.as_str(),
            Self::Other(text) => text,
        }
    }

    /// The known code, if it is one.
    pub fn known(&self) -> Option<ResponseCode> {
        match self {
            Self::Known(code) => Some(*code),
            Self::Other(_) => None,
        }
    }
}

/// The common part of every response message (`m:ResponseMessageType`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MailboxResponseMessage {
    /// `ResponseClass`.
    pub response_class: ResponseClass,
    /// `m:MessageText`.
    pub message_text: Option<String>,
    /// `m:ResponseCode`.
    pub response_code: Option<ResponseCodeValue>,
    /// `m:DescriptiveLinkKey`.
    pub descriptive_link_key: Option<i32>,
    /// `m:MessageXml` values (`t:Value` children only).
    pub message_xml: Option<Vec<MessageXmlValue>>,
}

impl MailboxResponseMessage {
    /// `Success` with `NoError`.
    pub fn success() -> Self {
        Self {
            response_class: ResponseClass::Success,
            message_text: None,
            response_code: Some(ResponseCodeValue::Known(ResponseCode::NoError)),
            descriptive_link_key: None,
            message_xml: None,
        }
    }

    /// `Error` in Exchange's shape: `MessageText`, `ResponseCode`, `DescriptiveLinkKey` 0.
    pub fn error(code: ResponseCode, text: impl Into<String>) -> Self {
        Self {
            response_class: ResponseClass::Error,
            message_text: Some(text.into()),
            response_code: Some(ResponseCodeValue::Known(code)),
            descriptive_link_key: Some(0),
            message_xml: None,
        }
    }

    /// Whether the class is `Success` (`Warning` counts as a failure, as the managed API
    /// treats it).
    pub fn is_success(&self) -> bool {
        self.response_class == ResponseClass::Success
    }
}

/// A folder of `m:Folders` (any folder element: `t:Folder`, `t:CalendarFolder`, …).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Folder {
    /// The element's local name (`Folder`, `CalendarFolder`, `ContactsFolder`, …).
    pub element: String,
    /// `t:FolderId`.
    pub folder_id: Option<FolderId>,
    /// `t:DisplayName`.
    pub display_name: Option<String>,
}

/// `t:FileAttachmentType`.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/fileattachment>
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct FileAttachment {
    /// `t:AttachmentId`.
    pub attachment_id: Option<AttachmentId>,
    /// `t:Name` (`PidTagAttachLongFilename`).
    pub name: Option<String>,
    /// `t:ContentType` (`PidTagAttachMimeTag`).
    pub content_type: Option<String>,
    /// `t:ContentId`.
    pub content_id: Option<String>,
    /// `t:Size` in bytes (`xs:int`; an unreadable or negative value is dropped).
    pub size: Option<u64>,
    /// `t:IsInline`.
    pub is_inline: Option<bool>,
    /// `t:IsContactPhoto`.
    pub is_contact_photo: Option<bool>,
    /// `t:Content`, base64-decoded (`GetAttachment` only).
    pub content: Option<Vec<u8>>,
}

/// `t:ItemAttachmentType`: its common fields only; the attached item is not decoded.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ItemAttachment {
    /// `t:AttachmentId`.
    pub attachment_id: Option<AttachmentId>,
    /// `t:Name`.
    pub name: Option<String>,
    /// `t:ContentType`.
    pub content_type: Option<String>,
    /// `t:Size`.
    pub size: Option<u64>,
    /// `t:IsInline`.
    pub is_inline: Option<bool>,
}

/// One attachment of `t:Attachments` / `m:Attachments`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Attachment {
    /// `t:FileAttachment`.
    File(FileAttachment),
    /// `t:ItemAttachment`.
    Item(ItemAttachment),
    /// Any other attachment element (e.g. `t:ReferenceAttachment` of later schemas), by local
    /// name.
    Other(String),
}

/// The value of an extended property.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum ExtendedPropertyValue {
    /// `t:Value`.
    Value(String),
    /// `t:Values/t:Value` (multi-valued properties).
    Values(Vec<String>),
}

/// `t:ExtendedPropertyType`.
///
/// <https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/extendedproperty>
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ExtendedProperty {
    /// `t:ExtendedFieldURI`.
    pub field: ExtendedFieldUri,
    /// `t:Value` or `t:Values`.
    pub value: ExtendedPropertyValue,
}

/// An item of `m:Items`: any item element (`t:Message`, `t:Item`, `t:MeetingRequest`, …) with
/// the properties openum requests.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Item {
    /// The element's local name (`Message`, `Item`, `CalendarItem`, …).
    pub element: String,
    /// `t:ItemId`.
    pub item_id: Option<ItemId>,
    /// `t:ItemClass`.
    pub item_class: Option<String>,
    /// `t:Subject`.
    pub subject: Option<String>,
    /// `t:Attachments`, in document order (empty when absent).
    pub attachments: Vec<Attachment>,
    /// `t:HasAttachments`.
    pub has_attachments: Option<bool>,
    /// `t:ExtendedProperty` elements (properties with an unknown `PropertyType` are dropped).
    pub extended_properties: Vec<ExtendedProperty>,
}

impl Item {
    /// The single value of the extended property with tag `tag`, if present.
    pub fn extended_value(&self, tag: u16) -> Option<&str> {
        self.extended_properties
            .iter()
            .filter(|p| p.field.property_tag == Some(tag))
            .find_map(|p| match &p.value {
                ExtendedPropertyValue::Value(v) => Some(v.as_str()),
                ExtendedPropertyValue::Values(_) => None,
            })
    }

    /// `PidTagVoiceMessageAttachmentOrder`, if the server returned it.
    pub fn voice_message_attachment_order(&self) -> Option<&str> {
        self.extended_value(PID_TAG_VOICE_MESSAGE_ATTACHMENT_ORDER)
    }
}

/// `m:GetFolderResponseMessage`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetFolderResponseMessage {
    /// Class, code and text.
    pub message: MailboxResponseMessage,
    /// `m:Folders`.
    pub folders: Vec<Folder>,
}

/// `m:GetItemResponseMessage`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetItemResponseMessage {
    /// Class, code and text.
    pub message: MailboxResponseMessage,
    /// `m:Items`.
    pub items: Vec<Item>,
}

/// `m:GetAttachmentResponseMessage`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GetAttachmentResponseMessage {
    /// Class, code and text.
    pub message: MailboxResponseMessage,
    /// `m:Attachments`.
    pub attachments: Vec<Attachment>,
}

/// The body of a mailbox response: one response message per requested id.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum MailboxResponse {
    /// `m:GetFolderResponse/m:ResponseMessages`.
    GetFolder(Vec<GetFolderResponseMessage>),
    /// `m:GetItemResponse/m:ResponseMessages`.
    GetItem(Vec<GetItemResponseMessage>),
    /// `m:GetAttachmentResponse/m:ResponseMessages`.
    GetAttachment(Vec<GetAttachmentResponseMessage>),
}

impl MailboxResponse {
    /// The response element's name.
    pub fn element_name(&self) -> &'static str {
        match self {
            Self::GetFolder(_) => "GetFolderResponse",
            Self::GetItem(_) => "GetItemResponse",
            Self::GetAttachment(_) => "GetAttachmentResponse",
        }
    }
}

/// A mailbox response envelope.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MailboxResponseEnvelope {
    /// `t:ServerVersionInfo` (dropped when unreadable: it plays no part in these operations).
    pub server_version_info: Option<ServerVersionInfo>,
    /// The response.
    pub body: MailboxResponse,
}

/// What a mailbox response document holds.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum MailboxResponseDocument {
    /// A response (HTTP 200).
    Response(MailboxResponseEnvelope),
    /// A SOAP fault (HTTP 500), decoded as [`crate::decode_response`] decodes faults.
    Fault(Fault),
}
