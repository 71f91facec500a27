//! The `digest_challenge` property: any text given to the challenge parser as one or more
//! `WWW-Authenticate` / `Proxy-Authenticate` values (one per line) is either answered or refused
//! with a [`DigestError`], never a panic, and an answerable challenge yields an `Authorization`
//! value that names its algorithm.
//!
//! Shared by `fuzz_targets/digest_challenge.rs` (libFuzzer) and the call-engine smoke test
//! (`crates/call-engine/tests/fuzz_smoke.rs`).

use openum_call_engine::digest::{answer, choose, parse_challenge, DigestError, Request};

/// Runs one input through the challenge parser and, when it parses, the answer.
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let request = Request {
        method: "INVITE",
        uri: "sip:+15550100@pbx.example.invalid",
        username: "openum",
        password: "secret",
        cnonce: "0a4f113b",
        nonce_count: 1,
    };
    // The whole input as one header value, as a SIP stack hands a single header over.
    if let Ok(challenge) = parse_challenge(&text) {
        let _ = answer(&challenge, &request);
    }
    // Each line as one header value, as when a response carries several challenges.
    let chosen: Result<_, DigestError> = choose(text.lines());
    if let Ok(challenge) = chosen {
        let authorization = answer(&challenge, &request);
        assert!(authorization.starts_with("Digest "), "{authorization}");
        assert!(
            authorization.contains(&format!("algorithm={}", challenge.algorithm.token())),
            "{authorization}"
        );
    }
}
