//! The namespace URIs of the EWS contract, in one place.
//!
//! All of them are `http://` URIs. The `https://` spellings that Microsoft's documentation showed
//! between 2020 and 2024 are a documentation bug; elements in those namespaces are foreign elements.

/// SOAP 1.1 envelope namespace.
pub const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace (recognised only to name it in a fault).
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// EWS messages namespace (`m:`): operations, responses, `PhoneCallId`, `ItemId`.
pub const MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// EWS types namespace (`t:`): headers and the children of `PhoneCallInformation`.
pub const TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// EWS errors namespace (`e:`): the children of a SOAP fault's `detail`.
pub const ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";
/// XML Schema instance namespace.
pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// XML Schema namespace.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema";
/// The reserved `xml:` namespace.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
