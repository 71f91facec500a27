//! Decoding, split by concern:
//!
//! - [`request`]: requests (server side): envelope, headers, body dispatch and the three
//!   operations, schema-checked.
//! - [`rules`]: the schema rules requests are checked against, with .NET-style violation text.
//! - [`response`]: responses and faults (client side), tolerant the way the Microsoft clients
//!   are.

mod request;
mod response;
mod rules;

pub use request::{decode_request, RequestError, SchemaViolation};
pub(crate) use response::{decode_fault, decode_server_version_info, message_xml_values};
pub use response::{decode_response, ResponseError};
