//! The `ews_request` property: any bytes given to the server-side request decoder (with the
//! default [`Limits`]) either decode or are refused with a [`RequestError`], never a panic. What
//! follows on either path holds too:
//!
//! - a refusal's SOAP fault, encoded, is read back by the client decoder as a fault with the same
//!   code (the client understands every fault the server sends);
//! - a decoded request, re-encoded by the client encoder, is accepted again by the decoder.
//!
//! Shared by `fuzz_targets/ews_request.rs` (libFuzzer) and the ews-proto smoke test
//! (`crates/ews-proto/tests/fuzz_smoke.rs`), so both exercise exactly the same entry points.

use openum_ews_proto::{
    decode_request, decode_response, encode_fault, encode_request, Limits, RequestError,
    ResponseDocument,
};

/// Runs one input through the decoder and what the server and client do with its result.
pub(crate) fn check(data: &[u8]) {
    match decode_request(data, Limits::default()) {
        Ok(envelope) => {
            let encoded = encode_request(&envelope);
            if let Err(error) = decode_request(encoded.as_bytes(), Limits::default()) {
                panic!("a re-encoded request was refused: {error}\n{encoded}");
            }
        }
        Err(error) => {
            if let RequestError::Schema(violation) = &error {
                assert!(
                    violation.at.line >= 1 && violation.at.column >= 1,
                    "positions are 1-based: {violation:?}"
                );
            }
            let fault = error.to_fault();
            let encoded = encode_fault(&fault);
            match decode_response(encoded.as_bytes()) {
                Ok(ResponseDocument::Fault(read)) => assert_eq!(read.code, fault.code, "{encoded}"),
                other => panic!("the client cannot read the fault: {other:?}\n{encoded}"),
            }
        }
    }
}
