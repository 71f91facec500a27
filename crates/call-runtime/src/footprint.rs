//! The in-memory size of what openum keeps per call, for the memory benchmark
//! (`crates/server/examples/caller_memory.rs`): the call task's future as spawned (recorded at
//! the first spawn, since its type cannot be named) and the per-call types inside it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Size of the future of the last call task spawned (0 before the first call).
static CALL_TASK_FUTURE: AtomicUsize = AtomicUsize::new(0);

/// Records the size of a call task's future (`std::mem::size_of_val` of it, before spawning).
pub(crate) fn record_call_task(bytes: usize) {
    CALL_TASK_FUTURE.store(bytes, Relaxed);
}

/// The sizes, as Markdown table rows: `| type | bytes |`.
pub fn report() -> String {
    let rows = [
        (
            "call task future (tokio task body: CallTask + engine + dialogue + locals)",
            CALL_TASK_FUTURE.load(Relaxed),
        ),
        (
            "CallTask<RsipDialogue>",
            std::mem::size_of::<crate::task::CallTask<crate::sip::RsipDialogue>>(),
        ),
        (
            "RsipDialogue",
            std::mem::size_of::<crate::sip::RsipDialogue>(),
        ),
        (
            "call_engine::call::Call",
            std::mem::size_of::<call_engine::call::Call>(),
        ),
        (
            "call_engine::rtp::RtpStream",
            std::mem::size_of::<call_engine::rtp::RtpStream>(),
        ),
        (
            "calls::CallRecord",
            std::mem::size_of::<calls::CallRecord>(),
        ),
    ];
    let mut out = String::from("| per-call type | bytes |\n|---|---|\n");
    for (name, bytes) in rows {
        out.push_str(&format!("| {name} | {bytes} |\n"));
    }
    out
}
