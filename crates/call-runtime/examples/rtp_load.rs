//! RTP load benchmark (not a test): N concurrent G.711 streams paced by openum's scheduler
//! shards — with a socket per stream (`rtp_sockets = "per-call"`) and with one shared socket per
//! shard and `sendmmsg` (`"shared"`) — against a naive baseline of one tokio task with its own
//! 20 ms interval per stream, in the same run. Reports CPU per stream, send lateness p50/p99/max and memory per
//! stream. Loopback only: streams go to sink sockets in this process that never read (the kernel
//! drops what overflows), so the measured cost is the sender's.
//!
//! usage: rtp_load [seconds per phase] [N …]   (default: 10 s; 500 2000 5000)
//! `RTP_LOAD_ONLY=shared` (or `per-call`) runs that scheduler mode alone, for a profiler.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark binary"
)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use call_engine::rtp::{PreparedAudio, RtpSeed, RtpStream};
use call_engine::sdp::{Codec, MediaPlan};
use openum_call_runtime::media::{MediaHandle, MediaStats};
use openum_call_runtime::udp::MediaSocket;
use rand::Rng as _;
use tokio::net::UdpSocket;

struct Result {
    cpu_us_per_stream_second: f64,
    cpu_percent_of_one_core: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    rss_kib_per_stream: f64,
    packets: u64,
    errors: u64,
}

#[path = "common/proc_stats.rs"]
mod proc_stats;
use proc_stats::{cpu_time, rss_kib, seconds_and_levels};

fn plan(remote: SocketAddr) -> MediaPlan {
    MediaPlan {
        remote,
        rtcp: None,
        codec: Codec::Pcmu,
        payload_type: 0,
        ptime_ms: 20,
    }
}

fn seed() -> RtpSeed {
    let mut rng = rand::thread_rng();
    RtpSeed {
        ssrc: rng.gen(),
        sequence: rng.gen(),
        timestamp: rng.gen(),
    }
}

async fn sockets(n: usize) -> Vec<Arc<UdpSocket>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
    }
    v
}

fn media_sockets(n: usize) -> Vec<Arc<MediaSocket>> {
    (0..n)
        .map(|_| Arc::new(MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap()))
        .collect()
}

fn summarise(
    stats: &MediaStats,
    n: usize,
    secs: f64,
    cpu: Duration,
    rss_before: u64,
    rss_after: u64,
) -> Result {
    Result {
        cpu_us_per_stream_second: cpu.as_micros() as f64 / n as f64 / secs,
        cpu_percent_of_one_core: cpu.as_secs_f64() / secs * 100.0,
        p50_us: stats.lateness_percentile_us(0.50),
        p99_us: stats.lateness_percentile_us(0.99),
        max_us: stats.lateness_us_max.load(Ordering::Relaxed),
        rss_kib_per_stream: rss_after.saturating_sub(rss_before) as f64 / n as f64,
        packets: stats.packets_sent.load(Ordering::Relaxed),
        errors: stats.send_errors.load(Ordering::Relaxed),
    }
}

async fn scheduler(
    n: usize,
    secs: u64,
    audio: &PreparedAudio,
    sinks: &[SocketAddr],
    shared: bool,
) -> Result {
    let rss_before = rss_kib();
    let media = if shared {
        MediaHandle::spawn_shared("127.0.0.1".parse().unwrap(), None)
            .await
            .unwrap()
    } else {
        MediaHandle::spawn()
    };
    let socks = if shared { Vec::new() } else { media_sockets(n) };
    let mut rng = rand::thread_rng();
    let now = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let remote = sinks[i % sinks.len()];
        let start = now + Duration::from_micros(rng.gen_range(0..20_000));
        let stream = RtpStream::new(&plan(remote), audio, seed(), start);
        let id = media.next_stream_id();
        let socket = match media.shared_sockets(id) {
            Some((rtp, _)) => rtp,
            None => Arc::clone(&socks[i]),
        };
        media.start_stream(id, socket, remote, stream, None, None);
        ids.push(id);
    }
    // Let every stream start, then measure a clean window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    media.stats().reset();
    let cpu0 = cpu_time();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_time() - cpu0;
    let rss_after = rss_kib();
    let result = summarise(media.stats(), n, secs as f64, cpu, rss_before, rss_after);
    if shared {
        let batches = media.stats().send_batches.load(Ordering::Relaxed);
        eprintln!(
            "shared, {n} streams: {:.1} packets per sendmmsg",
            result.packets as f64 / batches.max(1) as f64
        );
    }
    for id in ids {
        media.stop(id);
    }
    result
}

async fn naive(n: usize, secs: u64, audio: &PreparedAudio, sinks: &[SocketAddr]) -> Result {
    let rss_before = rss_kib();
    let stats = Arc::new(MediaStats::default());
    let socks = sockets(n).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(n);
    for (i, sock) in socks.into_iter().enumerate() {
        let remote = sinks[i % sinks.len()];
        let audio = audio.clone();
        let stats = Arc::clone(&stats);
        let stop = Arc::clone(&stop);
        tasks.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = Instant::now();
            let mut stream = RtpStream::new(&plan(remote), &audio, seed(), start);
            let mut packet = Vec::with_capacity(200);
            loop {
                tokio::select! {
                    tick = interval.tick() => {
                        let now = Instant::now();
                        let late = now.saturating_duration_since(tick.into_std()).as_micros() as u64;
                        if stream.poll_transmit(tick.into_std().max(stream.next_due()), &mut packet) {
                            stats.record_lateness(late);
                            match sock.send_to(&packet, remote).await {
                                Ok(_) => stats.packets_sent.fetch_add(1, Ordering::Relaxed),
                                Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                            };
                        }
                    }
                    () = stop.notified() => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stats.reset();
    let cpu0 = cpu_time();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_time() - cpu0;
    let rss_after = rss_kib();
    let result = summarise(&stats, n, secs as f64, cpu, rss_before, rss_after);
    stop.notify_waiters();
    for t in tasks {
        t.abort();
    }
    result
}

fn print(label: &str, n: usize, r: &Result) {
    println!(
        "| {n} | {label} | {:.1} | {:.0} % | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} |",
        r.cpu_us_per_stream_second,
        r.cpu_percent_of_one_core,
        r.p50_us as f64 / 1000.0,
        r.p99_us as f64 / 1000.0,
        r.max_us as f64 / 1000.0,
        r.rss_kib_per_stream,
        r.packets,
        r.errors
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (secs, ns) = seconds_and_levels(&[500, 2000, 5000]);
    // 60 s of a tone: longer than any phase, so every packet carries message audio.
    let pcm: Vec<i16> = (0..8000 * 60)
        .map(|i| ((i as f32 * 0.345).sin() * 8000.0) as i16)
        .collect();
    let audio = PreparedAudio::from_pcm(&pcm);
    let mut sinks = Vec::new();
    let mut sink_sockets = Vec::new();
    for _ in 0..8 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sinks.push(s.local_addr().unwrap());
        sink_sockets.push(s);
    }
    println!("| streams | sender | CPU µs per stream·s | CPU (one core = 100 %) | lateness p50 ms | p99 ms | max ms | RSS KiB per stream | packets | send errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let ratio = |label: &str, n: usize, ours: &Result, base: &Result| {
        println!(
            "| {n} | ratio {label}/baseline | {:.2} | | {:.2} | {:.2} | {:.2} | {:.2} | | |",
            ours.cpu_us_per_stream_second / base.cpu_us_per_stream_second,
            ours.p50_us as f64 / base.p50_us.max(1) as f64,
            ours.p99_us as f64 / base.p99_us.max(1) as f64,
            ours.max_us as f64 / base.max_us.max(1) as f64,
            ours.rss_kib_per_stream / base.rss_kib_per_stream.max(0.001),
        );
    };
    // RTP_LOAD_ONLY=shared|per-call: that mode alone (for a profiler), no baseline.
    if let Ok(only) = std::env::var("RTP_LOAD_ONLY") {
        for n in ns {
            let r = scheduler(n, secs, &audio, &sinks, only == "shared").await;
            print(&only, n, &r);
        }
        return;
    }
    for n in ns {
        let shared = scheduler(n, secs, &audio, &sinks, true).await;
        print("openum scheduler, shared sockets (sendmmsg)", n, &shared);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let per_call = scheduler(n, secs, &audio, &sinks, false).await;
        print("openum scheduler, socket per stream", n, &per_call);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let base = naive(n, secs, &audio, &sinks).await;
        print("task per stream (baseline)", n, &base);
        ratio("shared", n, &shared, &base);
        ratio("per-stream sockets", n, &per_call, &base);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(sink_sockets);
}
