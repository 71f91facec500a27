//! Where openum's memory per call goes (not a test): N calls placed through openum's SIP stack
//! to the SIPp UAS far end, with dhat counting every heap allocation. One phase per run:
//!
//! - `ringing`: calls to a number the UAS rings forever (INVITE sent, 180 received, no answer);
//! - `connected`: answered calls, streaming the message, 2 s after the last answer (the
//!   INVITE client transactions still wait out Timer M, RFC 6026: 64·T1 = 32 s);
//! - `streaming`: the same, 40 s after the last answer: what a call holds while it plays on.
//!
//! Prints the live heap per call (bytes and blocks) between "service started" and "all N in the
//! phase", the RSS per call, the sizes of openum's per-call types, and the allocation sites
//! holding the most bytes while the N calls are live (dhat's end-of-profile figures, taken with
//! the calls still up), grouped by the first frame in openum's crates or rsipstack.
//!
//! usage: caller_memory ringing|connected|streaming [N] [shared]   (default N 2000; `shared`:
//! `[sip] rtp_sockets = "shared"`). Needs sipp (sip-tester).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "benchmark binary"
)]

use std::collections::HashMap;
use std::time::Duration;

extern crate openum_server as server;

use calls::CallState;

#[path = "common/bench_store.rs"]
mod bench_store;
#[path = "caller/far_end.rs"]
#[allow(
    dead_code,
    reason = "shared with caller_compare: the gap capture is not used here"
)]
mod far_end;
#[path = "caller/openum.rs"]
mod openum;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Crates whose frames name the owner of an allocation.
const OWNERS: [&str; 7] = [
    "call_runtime::",
    "call_engine::",
    "openum_server::",
    "calls::",
    "rsipstack::",
    "rsip::",
    "caller_memory::",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let phase = args.get(1).map_or("connected", String::as_str).to_owned();
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2000);
    // `shared`: `[sip] rtp_sockets = "shared"` (one RTP/RTCP pair per scheduler shard).
    let shared = args.get(3).map(String::as_str) == Some("shared");
    let (number, state) = match phase.as_str() {
        "ringing" => ("4085551234", CallState::Alerted),
        "connected" | "streaming" => ("2005551234", CallState::Connected),
        other => panic!("phase must be ringing, connected or streaming, not {other}"),
    };
    far_end::require("sipp", "sip-tester");
    let dir = tempfile::tempdir().unwrap();
    let _uas = far_end::start_uas(dir.path());
    let json = dir.path().join("dhat-heap.json");
    let profiler = dhat::Profiler::builder().file_name(&json).build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pid = std::process::id();
    let mut delta = 0.0;
    runtime.block_on(async {
        let caller = openum::Caller::start(dir.path(), far_end::UAS_SIP, 300.0, shared).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = dhat::HeapStats::get();
        let rss0 = far_end::rss_of(pid);
        let ids = caller.place(n, number).await;
        let reached = caller.wait_for(&ids, state, Duration::from_secs(60)).await;
        assert_eq!(
            reached, n,
            "only {reached} of {n} calls reached {state:?} within 60 s"
        );
        // Settle: media is flowing for every call (and, streaming, Timer M is over).
        let settle = if phase == "streaming" { 40 } else { 2 };
        tokio::time::sleep(Duration::from_secs(settle)).await;
        let after = dhat::HeapStats::get();
        let rss1 = far_end::rss_of(pid);
        let per = |a: usize, b: usize| (a as f64 - b as f64) / n as f64;
        println!("## {phase}: {n} calls");
        println!();
        // RSS under dhat includes dhat's own record of every live block: shown, not compared.
        println!(
            "live heap per call: {:.0} B in {:.1} blocks (RSS per call under dhat: {:.1} KiB)",
            per(after.curr_bytes, before.curr_bytes),
            per(after.curr_blocks, before.curr_blocks),
            (rss1.saturating_sub(rss0)) as f64 / n as f64,
        );
        delta = after.curr_bytes as f64 - before.curr_bytes as f64;
        // Profile ends here, with the calls live: its end-of-run figures are what they hold.
        drop(profiler);
        caller.hang_up(&ids).await;
        caller.service.shutdown(Duration::from_secs(2)).await;
    });
    println!();
    println!("{}", call_runtime::footprint::report());
    println!();
    let shared = sites(&std::fs::read_to_string(&json).expect("dhat profile"), n);
    println!(
        "live heap per call without the shared sites: {:.0} B",
        (delta - shared) / n as f64
    );
}

/// The allocation sites live at the profile's end, grouped by owner frame, per call. Returns
/// the bytes of sites with fewer blocks than calls (shared, not per call).
fn sites(json: &str, n: usize) -> f64 {
    let profile: serde_json::Value = serde_json::from_str(json).expect("dhat JSON");
    let frames: Vec<&str> = profile["ftbl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let mut by_owner: HashMap<(String, String), (u64, u64)> = HashMap::new();
    for pp in profile["pps"].as_array().unwrap() {
        let bytes = pp["eb"].as_u64().unwrap_or(0);
        let blocks = pp["ebk"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let stack: Vec<&str> = pp["fs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| frames[usize::try_from(i.as_u64().unwrap()).unwrap()])
            .collect();
        let owner = stack
            .iter()
            .find(|f| OWNERS.iter().any(|o| f.contains(o)))
            .map_or_else(|| "(no openum or rsipstack frame)".to_owned(), |f| short(f));
        // The frame that asked the allocator: the first outside alloc/core/std/dhat.
        let allocator = stack
            .iter()
            .find(|f| {
                ![
                    "alloc::", "core::", "std::", "dhat::", "<alloc::", "<core::", "<std::",
                    "[root]",
                ]
                .iter()
                .any(|p| short(f).starts_with(p))
            })
            .map_or_else(String::new, |f| short(f));
        let entry = by_owner.entry((owner, allocator)).or_default();
        entry.0 += bytes;
        entry.1 += blocks;
    }
    let mut rows: Vec<_> = by_owner.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
    println!("| bytes per call | blocks per call | owner (first openum/rsipstack frame) | allocating frame |");
    println!("|---|---|---|---|");
    let mut shared = 0.0;
    for ((owner, allocator), (bytes, blocks)) in &rows {
        let b = *bytes as f64 / n as f64;
        // Fewer blocks than one per call: shared (the message's audio, tables), not per call.
        if (*blocks as f64 / n as f64) < 0.5 {
            shared += *bytes as f64;
            continue;
        }
        if b < 32.0 {
            continue;
        }
        println!(
            "| {b:.0} | {:.2} | {owner} | {allocator} |",
            *blocks as f64 / n as f64
        );
    }
    println!();
    println!(
        "(left out above: sites under 32 B per call, and {:.0} KiB live in sites with fewer blocks than calls — shared, such as the message's audio)",
        shared / 1024.0
    );
    shared
}

/// A dhat frame without its address and source location.
fn short(frame: &str) -> String {
    let name = frame.split_once(": ").map_or(frame, |(_, rest)| rest);
    let name = name.split(" (").next().unwrap_or(name);
    name.chars().take(140).collect()
}
