//! SIP/UDP read load (not a test): N OPTIONS requests sent to openum's SIP stack over UDP from
//! a client socket in the same process (16 in flight, which fit the default socket buffer even
//! padded), each answered 200 by the stack. Reports
//! the process CPU per request (stack and client together; the client's share is the same in
//! every build), for a small request (~330 bytes) and one padded to ~7 KB (under rsipstack's
//! own 8 KiB read buffer, so older builds can be compared). Built against two commits and run
//! alternately, it compares openum's own SIP/UDP reader with rsipstack's.
//!
//! usage: sip_read_load [N, default 20000] [rounds, default 3]

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark binary"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openum_call_runtime::settings::SipSettings;
use openum_call_runtime::sip::SipStack;

#[path = "common/proc_stats.rs"]
#[allow(dead_code, reason = "the benchmark uses only the CPU clock")]
mod proc_stats;
use proc_stats::cpu_time;

const IN_FLIGHT: usize = 16;

fn options(i: usize, to: SocketAddr, from: SocketAddr, padding: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:openum@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-bench-{i};rport\r\n\
         From: <sip:bench@{from}>;tag=b{i}\r\n\
         To: <sip:openum@{to}>\r\n\
         Call-ID: {i}@bench\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n{padding}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `n` OPTIONS (keeping IN_FLIGHT outstanding) and waits for their answers; the number
/// answered and the process CPU spent.
async fn run(
    client: &tokio::net::UdpSocket,
    to: SocketAddr,
    n: usize,
    first: usize,
    padding: &str,
) -> (usize, Duration) {
    let from = client.local_addr().unwrap();
    let cpu0 = cpu_time();
    let mut sent = 0;
    let mut answered = 0;
    let mut done = 0;
    let mut buf = vec![0_u8; 65_535];
    while sent < IN_FLIGHT.min(n) {
        client
            .send_to(&options(first + sent, to, from, padding), to)
            .await
            .unwrap();
        sent += 1;
    }
    while done < n {
        // A timeout is a lost request or answer: another is sent in its place.
        if let Ok(received) =
            tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf)).await
        {
            let (len, _) = received.unwrap();
            if !buf[..len].starts_with(b"SIP/2.0 200") {
                continue;
            }
            answered += 1;
        }
        done += 1;
        if sent < n {
            client
                .send_to(&options(first + sent, to, from, padding), to)
                .await
                .unwrap();
            sent += 1;
        }
    }
    (answered, cpu_time() - cpu0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let settings = SipSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        public_address: None,
        rtp_address: "127.0.0.1".parse().unwrap(),
        t1_ms: 500,
        user_agent: "openum-bench".into(),
        rtp_port_range: None,
        media_public_address: None,
        dns_servers: Vec::new(),
        rtp_sockets: openum_call_runtime::media::RtpSockets::PerCall,
    };
    let stack = SipStack::start(&settings).await.unwrap();
    let to = stack.local_addr();
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let padding = format!("X-Padding: {}\r\n", "p".repeat(6_800));
    // Warm-up.
    run(&client, to, 2_000, 0, "").await;
    println!("| request | N | answered | CPU µs per request | wall s |");
    println!("|---|---|---|---|---|");
    let mut first = 10_000_000;
    for _ in 0..rounds {
        for (name, pad) in [("small", ""), ("7 KB", padding.as_str())] {
            let start = Instant::now();
            let (answered, cpu) = run(&client, to, n, first, pad).await;
            first += n;
            println!(
                "| {name} | {n} | {answered} | {:.1} | {:.2} |",
                cpu.as_micros() as f64 / n as f64,
                start.elapsed().as_secs_f64()
            );
        }
    }
}
