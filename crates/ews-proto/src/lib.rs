//! The EWS "Play on Phone" wire model: `PlayOnPhone`, `GetPhoneCallInformation`,
//! `DisconnectPhoneCall`, their responses, the SOAP 1.1 envelope and headers, and SOAP faults.
//!
//! Pure: no async, no HTTP, no I/O. The server decodes requests and encodes responses with it;
//! the client encodes requests and decodes responses with the same types.
//!
//! # Layout
//!
//! - [`ns`]: the namespace URIs, in one place.
//! - [`types`]: `t:` wire types (`PhoneCallId`, `ItemId`, `PhoneCallInformation`, enums, headers).
//! - [`messages`]: `m:` wire types (the operations, their responses, envelopes, [`Fault`]).
//! - [`mailbox`]: the mailbox operations openum's mailbox backend sends as a client
//!   (`GetFolder`, `GetItem`, `GetAttachment`), their responses and codecs in both directions.
//! - [`ResponseCode`]: the schema's full `ResponseCodeType` enumeration, in schema order.
//! - `decode/`: namespace-aware decoding (any prefixes, default namespaces, BOM, whitespace) on the
//!   element tree of `xml.rs` (quick-xml, [`Limits`], no DTD), in three modules:
//!   - `decode/request.rs`: [`decode_request`] (server side): envelope and headers, body
//!     dispatch, the three operations; every problem is a [`RequestError`] that maps to the
//!     exact EWS fault ([`RequestError::to_fault`]).
//!   - `decode/rules.rs`: the schema rules requests are checked against (sequence order,
//!     declared/required attributes, content models, `xs:language`), with .NET-style violation
//!     text and the line/position of [`SchemaViolation`].
//!   - `decode/response.rs`: [`decode_response`] (client side): responses and faults, read as
//!     tolerantly as the Microsoft clients read them ([`ResponseError`]).
//! - [`encode_response`] / [`encode_fault`] / [`encode_request`]: output in the byte shape the
//!   Microsoft clients require (see `ews-contract.md` §5.2).
//! - `schema/`: the vendored official `services.wsdl`, `messages.xsd`, `types.xsd`
//!   (Exchange 2010 SP1), served by the server and used by the tests ([`schema`]).
//!
//! # Example
//!
//! ```
//! use openum_ews_proto::{decode_request, Limits, Request};
//!
//! let xml = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
//!     xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
//!   <s:Body><m:DisconnectPhoneCall><m:PhoneCallId Id="OWVl4NWb3N29t"/></m:DisconnectPhoneCall></s:Body>
//! </s:Envelope>"#;
//! let request = decode_request(xml.as_bytes(), Limits::default()).unwrap();
//! assert!(matches!(request.body, Request::DisconnectPhoneCall(ref d) if d.phone_call_id.id == "OWVl4NWb3N29t"));
//! ```

mod decode;
mod encode;
pub mod mailbox;
pub mod messages;
pub mod ns;
mod response_code;
pub mod types;
mod wsdl_ops;
mod xml;

pub use decode::{decode_request, decode_response, RequestError, ResponseError, SchemaViolation};
pub use encode::{encode_document, encode_fault, encode_request, encode_response};
pub use messages::*;
pub use response_code::ResponseCode;
pub use types::*;
pub use wsdl_ops::WSDL_OPERATIONS;
pub use xml::{Limits, Position, XmlError};

/// The vendored official schema files, byte for byte (provenance in `schema/SOURCE.md`).
pub mod schema {
    /// `services.wsdl`.
    pub const SERVICES_WSDL: &str = include_str!("../schema/services.wsdl");
    /// `messages.xsd`.
    pub const MESSAGES_XSD: &str = include_str!("../schema/messages.xsd");
    /// `types.xsd`.
    pub const TYPES_XSD: &str = include_str!("../schema/types.xsd");
}
