//! Full-path call load (not a test): N concurrent calls placed through openum's SIP stack to a
//! real SIPp UAS on loopback, each answered and playing a long message. Reports CPU per call,
//! RTP send lateness p50/p99/max and memory per call while all N are connected, for each RTP
//! socket mode (`[sip] rtp_sockets`: a socket pair per call, then one per media shard), one
//! after the other at each N in the same process (two services, one SIPp UAS). Compare with
//! `rtp_load` (same machine, same run via bench/call_load.sh) for the naive baseline.
//!
//! usage: call_load [seconds] [N …]   (default 10 s; 200 1000)

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark binary"
)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

extern crate openum_server as server;

use call_runtime::SipCallService;
use server::config::{GatewayConfig, RtpSocketsMode, SipConfig};
use server::voicemail::LocalAudio;

#[path = "common/place.rs"]
mod place;
use place::{place_calls, wait_connected};

#[path = "common/bench_store.rs"]
mod bench_store;
use bench_store::bench_store;
#[path = "common/setup.rs"]
mod setup;
use setup::{hang_up_all, sipp, Killed};

#[path = "../../call-runtime/examples/common/proc_stats.rs"]
mod proc_stats;
use proc_stats::{cpu_time, rss_kib, seconds_and_levels};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (secs, ns) = seconds_and_levels(&[200, 1000]);
    let dir = tempfile::tempdir().unwrap();
    let _sipp = Killed(vec![sipp("uas_multi.xml", 25070, 26000)]);
    let (registry, item) = bench_store(dir.path(), 120.0).await;
    let mut services = Vec::new();
    for (label, listen, mode) in [
        ("per-call", "127.0.0.1:25060", RtpSocketsMode::PerCall),
        ("shared", "127.0.0.1:25062", RtpSocketsMode::Shared),
    ] {
        let sip = SipConfig {
            listen: listen.parse().unwrap(),
            rtp_sockets: mode,
            ..SipConfig::default()
        };
        let gateway = GatewayConfig {
            uri: "sip:{number}@127.0.0.1:25070".into(),
            max_concurrent_calls: 100_000,
            calls_per_second: 100_000,
            ring_timeout_secs: 60,
            ..GatewayConfig::default()
        };
        let service = SipCallService::start(
            Arc::clone(&registry) as _,
            Arc::new(LocalAudio::new(dir.path().to_owned())),
            &(&sip).into(),
            (&gateway).into(),
        )
        .await
        .unwrap();
        services.push((label, service));
    }

    println!("| calls | rtp_sockets | connected | CPU µs per call·s | CPU (one core = 100 %) | lateness p50 ms | p99 ms | max ms | RSS KiB per call | packets | send errors | set-up CPU µs per call | hang-up CPU µs per call |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for n in ns {
        for (label, service) in &services {
            let rss0 = rss_kib();
            // Set-up: from the first INVITE to every call connected (SIP, plus the RTP of the
            // calls already connected meanwhile); hang-up: from the first BYE to the last call gone.
            let setup0 = cpu_time();
            let ids = place_calls(service, &registry, &item, n).await;
            let connected = wait_connected(&registry, &ids, Duration::from_millis(500)).await;
            let setup = cpu_time() - setup0;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stats = service.media().stats();
            stats.reset();
            let cpu0 = cpu_time();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let cpu = cpu_time() - cpu0;
            let rss1 = rss_kib();
            let hangup0 = cpu_time();
            hang_up_all(service, &ids).await;
            let hangup = cpu_time() - hangup0;
            println!(
                "| {n} | {label} | {connected} | {:.1} | {:.0} % | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {:.0} | {:.0} |",
                cpu.as_micros() as f64 / n as f64 / secs as f64,
                cpu.as_secs_f64() / secs as f64 * 100.0,
                stats.lateness_percentile_us(0.5) as f64 / 1000.0,
                stats.lateness_percentile_us(0.99) as f64 / 1000.0,
                stats.lateness_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
                rss1.saturating_sub(rss0) as f64 / n as f64,
                stats.packets_sent.load(Ordering::Relaxed),
                stats.send_errors.load(Ordering::Relaxed),
                setup.as_micros() as f64 / n as f64,
                hangup.as_micros() as f64 / n as f64,
            );
        }
    }
    for (_, service) in &services {
        service.shutdown(Duration::from_secs(2)).await;
    }
}
