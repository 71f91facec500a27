//! The in-memory size of what openum keeps per call, for the memory benchmark
//! (`crates/server/examples/caller_memory.rs`): the call task's future as spawned (recorded at
//! the first spawn, since its type cannot be named) and the per-call types inside it.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Size of the last call task's `CallTask::run` future (boxed), and of the spawned block
/// around it (0 before the first call).
static CALL_TASK_RUN: AtomicUsize = AtomicUsize::new(0);
static CALL_TASK_BLOCK: AtomicUsize = AtomicUsize::new(0);

/// Records the sizes of a call task's futures (`std::mem::size_of_val`, before spawning).
pub(crate) fn record_call_task(run: usize, block: usize) {
    CALL_TASK_RUN.store(run, Relaxed);
    CALL_TASK_BLOCK.store(block, Relaxed);
}

/// The sizes, as Markdown table rows: `| type | bytes |`.
pub fn report() -> String {
    let rows = [
        (
            "CallTask::run future (boxed: CallTask, engine, locals across awaits)",
            CALL_TASK_RUN.load(Relaxed),
        ),
        (
            "spawned block around it (hang-up bookkeeping, dialogue close)",
            CALL_TASK_BLOCK.load(Relaxed),
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
