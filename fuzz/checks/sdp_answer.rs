//! The `sdp_answer` property: any bytes given to the SDP answer parser either give a
//! [`MediaPlan`] or an [`AnswerError`], never a panic, and a plan is always one the RTP sender can
//! use (a real port and address, a G.711 payload, a `ptime` of 10 to 60 ms in steps of 10).
//!
//! Shared by `fuzz_targets/sdp_answer.rs` (libFuzzer) and the call-engine smoke test
//! (`crates/call-engine/tests/fuzz_smoke.rs`).

use openum_call_engine::sdp::{parse_answer, AnswerError, MediaPlan};

/// Runs one input through the answer parser.
pub(crate) fn check(data: &[u8]) {
    let result: Result<MediaPlan, AnswerError> = parse_answer(data);
    if let Ok(plan) = result {
        assert_ne!(plan.remote.port(), 0, "{plan:?}");
        assert!(!plan.remote.ip().is_unspecified(), "{plan:?}");
        assert!(
            (10..=60).contains(&plan.ptime_ms) && plan.ptime_ms % 10 == 0,
            "{plan:?}"
        );
    }
}
