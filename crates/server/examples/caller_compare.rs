//! openum vs SIPp as the caller (not a test): the same N calls to the same SIPp UAS far end
//! (`tests/peers/uas_multi.xml`), placed and streamed by openum (its SIP stack, scheduler
//! and G.711 message, in a child process of this program; once with an RTP socket pair per call,
//! once with `[sip] rtp_sockets = "shared"`) and by SIPp
//! (`tests/peers/uac_rtp_stream.xml`: `rtp_stream` looping a PCMU file), alternately, several
//! rounds. For each: CPU of the caller process per call·s over a steady window with all N
//! connected (from /proc), RSS per call (RSS with N connected minus before, ÷ N), the RTP
//! packets that reached the far end in that window against the 50 per call·s expected, and the
//! inter-arrival gaps of a sample of streams at the far end (tcpdump, a second window). openum's
//! own send lateness is reported too. Ratios openum/SIPp per round at the end.
//!
//! usage: caller_compare [seconds] [rounds] [N …]   (default 8 s, 2 rounds, 500 2000 5000)
//! Needs sipp (sip-tester) and tcpdump; run as root (tcpdump on lo). Ports: SIP 53060–53091,
//! RTP 54000–54102 (SIPp) and ephemeral ports (openum).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "benchmark binary"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

extern crate openum_server as server;

use calls::CallState;

#[path = "common/bench_store.rs"]
mod bench_store;
#[path = "caller/far_end.rs"]
mod far_end;
#[path = "caller/openum.rs"]
mod openum;

use far_end::{capture_gaps, cpu_of, far_end_packets, rss_of, threads_of, Gaps, Peer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Calls per second, for both callers.
const RATE: usize = 500;
/// Seconds of the gap capture that follows the CPU window.
const GAP_SECS: u64 = 4;
/// The SIPp UAC's ports.
const SIPP_UAC_SIP: u16 = 53080;
const SIPP_UAC_CONTROL: u16 = 53091;
const SIPP_UAC_MEDIA: u16 = 54100;

struct Phase {
    caller: &'static str,
    n: usize,
    connected: usize,
    cpu_us_per_call_s: f64,
    cpu_percent: f64,
    rss_kib_per_call: f64,
    delivered: u64,
    threads: usize,
    gaps: Gaps,
    /// openum only: send lateness p50/p99/max ms, packets sent, send errors.
    lateness: Option<String>,
    /// SIPp only: failed calls as SIPp counts them.
    failed: Option<u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--openum-child") {
        let shared = args.get(4).map(String::as_str) == Some("shared");
        openum_child(args[2].parse().unwrap(), args[3].parse().unwrap(), shared);
        return;
    }
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2);
    let mut ns: Vec<usize> = args.iter().skip(3).filter_map(|a| a.parse().ok()).collect();
    if ns.is_empty() {
        ns = vec![500, 2000, 5000];
    }
    far_end::require("sipp", "sip-tester");
    far_end::require("tcpdump", "tcpdump");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("caller_compare.ulaw"),
        far_end::pcmu_tone(10.0),
    )
    .unwrap();
    let mut uas = far_end::start_uas(dir.path());
    let mut phases = Vec::new();
    println!("| calls | round | caller | connected | CPU µs per call·s | CPU (one core = 100 %) | RSS KiB per call | threads | far-end packets / expected | gap p50 / p99 / max ms (streams) | openum send lateness p50 / p99 / max ms, sent, errors | SIPp failed calls |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &ns {
        for round in 1..=rounds {
            // Rotate which caller goes first, so a drift of the machine's load hits all three.
            let mut order: Vec<fn(&Path, usize, u64) -> Phase> =
                vec![openum_phase, openum_shared_phase, sipp_phase];
            order.rotate_left((round - 1) % 3);
            for phase in order {
                uas.assert_running();
                let p = phase(dir.path(), n, secs);
                print_row(&p, round, secs);
                phases.push((round, p));
                // Let the far end's dialogs finish (SIPp's 2 s timewait) before the next phase.
                std::thread::sleep(Duration::from_secs(3));
            }
        }
    }
    println!();
    println!("| calls | round | openum sockets | CPU ratio openum/SIPp | RSS per call ratio | gap p99 ratio |");
    println!("|---|---|---|---|---|---|");
    for &n in &ns {
        for round in 1..=rounds {
            let find = |caller: &str| {
                phases
                    .iter()
                    .find(|(r, p)| *r == round && p.n == n && p.caller == caller)
                    .map(|(_, p)| p)
                    .unwrap()
            };
            let s = find("SIPp");
            for (sockets, o) in [
                ("per-call", find("openum")),
                ("shared", find("openum shared")),
            ] {
                println!(
                    "| {n} | {round} | {sockets} | {:.2} | {:.2} | {:.2} |",
                    o.cpu_us_per_call_s / s.cpu_us_per_call_s,
                    o.rss_kib_per_call / s.rss_kib_per_call,
                    o.gaps.p99_ms / s.gaps.p99_ms,
                );
            }
        }
    }
}

fn print_row(p: &Phase, round: usize, secs: u64) {
    let expected = p.n as u64 * 50 * secs;
    println!(
        "| {} | {round} | {} | {} | {:.1} | {:.0} % | {:.1} | {} | {} / {} ({:.3}) | {:.1} / {:.1} / {:.1} ({}, {} pkts, {} dropped by tcpdump) | {} | {} |",
        p.n,
        p.caller,
        p.connected,
        p.cpu_us_per_call_s,
        p.cpu_percent,
        p.rss_kib_per_call,
        p.threads,
        p.delivered,
        expected,
        p.delivered as f64 / expected as f64,
        p.gaps.p50_ms,
        p.gaps.p99_ms,
        p.gaps.max_ms,
        p.gaps.streams,
        p.gaps.packets,
        p.gaps.kernel_dropped,
        p.lateness.as_deref().unwrap_or("–"),
        p.failed.map_or_else(|| "–".to_owned(), |f| f.to_string()),
    );
}

/// The window both phases measure once all N calls are connected: CPU and RSS of `pid`, far-end
/// packets, then the gap capture. Returns (CPU, RSS KiB at the end, packets, gaps, threads).
fn measure(dir: &Path, pid: u32, secs: u64) -> (Duration, u64, u64, Gaps, usize) {
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_of(pid);
    let packets0 = far_end_packets();
    std::thread::sleep(Duration::from_secs(secs));
    let cpu = cpu_of(pid) - cpu0;
    let packets = far_end_packets() - packets0;
    let rss = rss_of(pid);
    let threads = threads_of(pid);
    let gaps = capture_gaps(dir, GAP_SECS);
    (cpu, rss, packets, gaps, threads)
}

/// openum places N calls (in a fresh child process, so its RSS starts from the same point as
/// SIPp's) and plays its message to the far end.
fn openum_phase(dir: &Path, n: usize, secs: u64) -> Phase {
    openum_phase_with(dir, n, secs, false)
}

/// [`openum_phase`] with `[sip] rtp_sockets = "shared"`.
fn openum_shared_phase(dir: &Path, n: usize, secs: u64) -> Phase {
    openum_phase_with(dir, n, secs, true)
}

fn openum_phase_with(dir: &Path, n: usize, secs: u64, shared: bool) -> Phase {
    let message_secs = (n / RATE) as u64 + secs + GAP_SECS + 30;
    let sockets = if shared { "shared" } else { "per-call" };
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--openum-child",
            &n.to_string(),
            &message_secs.to_string(),
            sockets,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the openum child process");
    let mut peer = Peer {
        child,
        what: "the openum caller (child process)",
    };
    let pid = peer.pid();
    let mut to_child = peer.child.stdin.take().unwrap();
    let mut from_child = BufReader::new(peer.child.stdout.take().unwrap());
    let mut line = String::new();
    let mut expect = |line: &mut String, word: &str| {
        line.clear();
        from_child.read_line(line).expect("child output");
        assert!(
            line.starts_with(word),
            "openum child said {line:?}, expected {word}"
        );
    };
    expect(&mut line, "ready");
    let rss0 = rss_of(pid);
    writeln!(to_child, "go").unwrap();
    expect(&mut line, "connected");
    let connected: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        connected, n,
        "openum: only {connected} of {n} calls connected within 60 s"
    );
    let (cpu, rss1, delivered, gaps, threads) = measure(dir, pid, secs);
    writeln!(to_child, "stop").unwrap();
    expect(&mut line, "lateness");
    let lateness = line.trim_start_matches("lateness").trim().to_owned();
    let status = peer.child.wait().unwrap();
    assert!(status.success(), "openum child failed: {status}");
    Phase {
        caller: if shared { "openum shared" } else { "openum" },
        n,
        connected,
        cpu_us_per_call_s: cpu.as_micros() as f64 / n as f64 / secs as f64,
        cpu_percent: cpu.as_secs_f64() / secs as f64 * 100.0,
        rss_kib_per_call: rss1.saturating_sub(rss0) as f64 / n as f64,
        delivered,
        threads,
        gaps,
        lateness: Some(lateness),
        failed: None,
    }
}

/// The child process of [`openum_phase`]: says `ready`, waits for `go`, places the calls, says
/// `connected K`, waits for `stop`, says `lateness …`, hangs up and exits.
fn openum_child(n: usize, message_secs: u64, shared: bool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let caller =
            openum::Caller::start(dir.path(), far_end::UAS_SIP, message_secs as f32, shared).await;
        let mut stdin = BufReader::new(std::io::stdin());
        let mut line = String::new();
        println!("ready");
        stdin.read_line(&mut line).unwrap();
        let ids = caller.place(n, "2005551234").await;
        let connected = caller
            .wait_for(&ids, CallState::Connected, Duration::from_secs(60))
            .await;
        if connected < n {
            // Say where the others are, for the parent's failure message.
            let mut by_state = std::collections::BTreeMap::new();
            for id in &ids {
                let state = caller.registry.get(id).await.unwrap().map(|r| r.state);
                *by_state.entry(format!("{state:?}")).or_insert(0) += 1;
            }
            eprintln!("openum child: calls by state after 60 s: {by_state:?}");
        }
        let stats = caller.service.media().stats();
        stats.reset();
        println!("connected {connected}");
        line.clear();
        stdin.read_line(&mut line).unwrap();
        println!(
            "lateness {:.2} / {:.2} / {:.2}, {}, {}",
            stats.lateness_percentile_us(0.5) as f64 / 1000.0,
            stats.lateness_percentile_us(0.99) as f64 / 1000.0,
            stats.lateness_us_max.load(Ordering::Relaxed) as f64 / 1000.0,
            stats.packets_sent.load(Ordering::Relaxed),
            stats.send_errors.load(Ordering::Relaxed),
        );
        caller.hang_up(&ids).await;
        caller.service.shutdown(Duration::from_secs(2)).await;
    });
}

/// The last line of SIPp's `-trace_counts` file, as (column name, value) pairs.
fn sipp_counts(dir: &Path, pid: u32) -> Option<Vec<(String, u64)>> {
    let text =
        std::fs::read_to_string(dir.join(format!("uac_rtp_stream_{pid}_counts.csv"))).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.last()?.split(';').collect();
    Some(
        header
            .iter()
            .zip(&last)
            .filter_map(|(h, v)| Some(((*h).to_owned(), v.parse().ok()?)))
            .collect(),
    )
}

fn count(counts: &[(String, u64)], suffix: &str) -> u64 {
    counts
        .iter()
        .find(|(h, _)| h.ends_with(suffix))
        .map_or(0, |(_, v)| *v)
}

/// SIPp places the same N calls at the same rate and streams the PCMU file with rtp_stream.
fn sipp_phase(dir: &Path, n: usize, secs: u64) -> Phase {
    // Every call streams until the last is connected and both windows are over, with margin.
    let hold_ms = (n / RATE) as u64 * 1000 + (secs + GAP_SECS + 6) * 1000;
    far_end::wait_free(
        &[
            SIPP_UAC_SIP,
            SIPP_UAC_CONTROL,
            SIPP_UAC_MEDIA,
            SIPP_UAC_MEDIA + 2,
        ],
        "the SIPp UAC caller",
    );
    let child = Command::new("sipp")
        .current_dir(dir)
        .arg(format!("127.0.0.1:{}", far_end::UAS_SIP))
        .arg("-sf")
        .arg(far_end::peers_dir().join("uac_rtp_stream.xml"))
        .args(["-i", "127.0.0.1", "-p", &SIPP_UAC_SIP.to_string()])
        .args(["-cp", &SIPP_UAC_CONTROL.to_string()])
        .args(["-mp", &SIPP_UAC_MEDIA.to_string()])
        // Rate per 10 ms period: 5 calls every 10 ms, as evenly as openum's one per 2 ms (a
        // per-second period sends each second's calls in a burst that overflows the UAS's
        // socket buffer, and SIPp then counts INVITE retransmission timeouts).
        .args([
            "-m",
            &n.to_string(),
            "-l",
            &n.to_string(),
            "-r",
            "0",
            "-rp",
            "10",
        ])
        .args(["-d", &hold_ms.to_string(), "-s", "2005551234"])
        .args([
            "-nostdin",
            "-trace_counts",
            "-trace_stat",
            "-trace_err",
            "-fd",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    let mut peer = Peer {
        child,
        what: "the SIPp UAC caller",
    };
    let pid = peer.pid();
    // Up, with no call yet (rate 0): its RSS before.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sipp_counts(dir, pid).is_none() {
        sipp_running(dir, &mut peer);
        assert!(
            Instant::now() < deadline,
            "SIPp UAC wrote no counts within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rss0 = rss_of(pid);
    let set_rate = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    set_rate
        .send_to(
            format!("cset rate {}", RATE / 100).as_bytes(),
            ("127.0.0.1", SIPP_UAC_CONTROL),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs((n / RATE) as u64 + 60);
    let connected = loop {
        sipp_running(dir, &mut peer);
        let counts = sipp_counts(dir, pid).unwrap();
        let answered = count(&counts, "_200_Recv");
        if answered >= n as u64 || Instant::now() >= deadline {
            break answered;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        connected, n as u64,
        "SIPp: only {connected} of {n} calls answered within the deadline"
    );
    let (cpu, rss1, delivered, gaps, threads) = measure(dir, pid, secs);
    let counts = sipp_counts(dir, pid).unwrap();
    assert_eq!(
        count(&counts, "_BYE_Sent"),
        0,
        "SIPp hung up before the windows ended: the hold time is too short"
    );
    // The calls end on their own (BYE after the hold); SIPp exits once all N are done.
    let status = peer.child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(peer.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("Cannot read/cache rtpstream file"),
        "SIPp could not read the PCMU file: {stderr}"
    );
    let failed = sipp_failed(dir, pid);
    assert!(
        status.success() && failed == 0,
        "SIPp UAC reports {failed} failed calls (exit {status}): {stderr}"
    );
    Phase {
        caller: "SIPp",
        n,
        connected: connected as usize,
        cpu_us_per_call_s: cpu.as_micros() as f64 / n as f64 / secs as f64,
        cpu_percent: cpu.as_secs_f64() / secs as f64 * 100.0,
        rss_kib_per_call: rss1.saturating_sub(rss0) as f64 / n as f64,
        delivered,
        threads,
        gaps,
        lateness: None,
        failed: Some(failed),
    }
}

/// Panics with SIPp's own words (stderr, the end of its error log) if the UAC has exited.
fn sipp_running(dir: &Path, peer: &mut Peer) {
    let Some(status) = peer.child.try_wait().unwrap() else {
        return;
    };
    let mut stderr = String::new();
    if let Some(pipe) = peer.child.stderr.as_mut() {
        // What SIPp said, if anything: the panic below names the exit status either way.
        let _ = std::io::Read::read_to_string(pipe, &mut stderr);
    }
    let errors =
        std::fs::read_to_string(dir.join(format!("uac_rtp_stream_{}_errors.log", peer.pid())))
            .unwrap_or_default();
    let tail: Vec<&str> = errors.lines().rev().take(5).collect();
    panic!(
        "the SIPp UAC exited early ({status}); failed calls {}; stderr: {stderr}; error log (last lines): {tail:?}",
        sipp_failed(dir, peer.pid())
    );
}

/// `FailedCall(C)` from the last line of SIPp's `-trace_stat` file.
fn sipp_failed(dir: &Path, pid: u32) -> u64 {
    let file = dir.join(format!("uac_rtp_stream_{pid}_.csv"));
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("SIPp statistics {}: {e}", file.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(';').collect();
    let last: Vec<&str> = lines.last().unwrap().split(';').collect();
    let column = header
        .iter()
        .position(|h| *h == "FailedCall(C)")
        .expect("FailedCall(C) column");
    last[column].parse().expect("FailedCall(C) value")
}
