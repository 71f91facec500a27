//! The far end both callers call (one SIPp UAS, `tests/peers/uas_multi.xml`), and what the
//! harness reads about processes and packets: CPU time and RSS of a process from /proc, the
//! RTP packets that reached the UAS's media socket, and inter-arrival gaps of a sample of the
//! streams captured with tcpdump.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The UAS's SIP port and the media port its SDP answers name (every stream goes there).
pub(crate) const UAS_SIP: u16 = 53070;
pub(crate) const UAS_MEDIA: u16 = 54000;

/// A child process killed (SIGTERM, then waited for) when dropped, so that a failing run
/// leaves no SIPp or tcpdump behind.
pub(crate) struct Peer {
    pub(crate) child: Child,
    pub(crate) what: &'static str,
}

impl Peer {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics, naming the peer, if it has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("child status") {
            panic!("{} exited early: {status}", self.what);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // A failed kill means the process is already gone: nothing left to stop.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SIGTERM ignored for 5 s: SIGKILL; the error case is again "already gone".
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails loudly when a tool the benchmark needs is not installed.
pub(crate) fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is not installed (Debian package {package}): the comparison needs it"
    );
}

pub(crate) fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

/// Starts the SIPp UAS far end and waits until its SIP port is bound.
pub(crate) fn start_uas(dir: &Path) -> Peer {
    // SIPp binds the media port + 2 too (video); all three are in the ephemeral range, where
    // another program's socket may sit for a while.
    wait_free(&[UAS_SIP, UAS_MEDIA, UAS_MEDIA + 2], "the SIPp UAS far end");
    let child = Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(peers_dir().join("uas_multi.xml"))
        .args(["-i", "127.0.0.1", "-p", &UAS_SIP.to_string()])
        .args(["-mp", &UAS_MEDIA.to_string(), "-cp", "53090"])
        .args([
            "-nostdin", "-l", "30000", "-key", "user", "x", "-key", "pass", "y",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp (Debian package sip-tester)");
    let mut uas = Peer {
        child,
        what: "the SIPp UAS far end",
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while udp_socket(UAS_SIP).is_none() || udp_socket(UAS_MEDIA).is_none() {
        uas.assert_running();
        assert!(
            Instant::now() < deadline,
            "the SIPp UAS did not bind 127.0.0.1:{UAS_SIP} and :{UAS_MEDIA} within 10 s (port taken?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    uas
}

/// Waits (up to 30 s) until no UDP socket is bound to any of `ports` on 127.0.0.1; panics
/// naming the port otherwise.
pub(crate) fn wait_free(ports: &[u16], who: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(port) = ports.iter().find(|p| udp_socket(**p).is_some()) {
        assert!(
            Instant::now() < deadline,
            "127.0.0.1:{port} stayed bound by another process for 30 s: {who} needs it"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A bound UDP socket on 127.0.0.1:`port` from /proc/net/udp: (rx_queue bytes, drops).
fn udp_socket(port: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) {
            return None;
        }
        let rx_queue = fields[4].split(':').nth(1)?;
        let rx_queue = u64::from_str_radix(rx_queue, 16).ok()?;
        let drops = fields.last()?.parse().ok()?;
        Some((rx_queue, drops))
    })
}

/// RTP packets that have reached the UAS's media socket so far. The UAS never reads it (no
/// `-rtp_echo`), so once its receive buffer is full every arriving packet is counted in the
/// socket's drop counter: differences of this over a window are the packets that arrived.
pub(crate) fn far_end_packets() -> u64 {
    udp_socket(UAS_MEDIA)
        .expect("the UAS's media socket is gone from /proc/net/udp")
        .1
}

/// utime + stime of process `pid` (all its threads).
pub(crate) fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// Resident set size of process `pid`, KiB.
pub(crate) fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Threads of process `pid`.
pub(crate) fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Inter-arrival gaps at the far end, over the sampled streams.
pub(crate) struct Gaps {
    pub(crate) streams: usize,
    pub(crate) packets: usize,
    pub(crate) kernel_dropped: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// Captures, for `secs`, the RTP arriving at the UAS from about one stream in 31 (chosen by
/// SSRC, so it works for SIPp's single source port as for openum's port per call) and
/// measures the gaps between consecutive packets of each stream.
pub(crate) fn capture_gaps(dir: &Path, secs: u64) -> Gaps {
    let file = dir.join("gaps.pcap");
    // RTP's SSRC is at UDP payload offset 8, i.e. udp[16:4].
    let filter = format!("udp and dst port {UAS_MEDIA} and udp[16:4] % 31 = 0");
    let child = Command::new("tcpdump")
        .args(["-i", "lo", "-nn", "-s", "64", "-B", "16384", "-w"])
        .arg(&file)
        .arg(&filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump (Debian package tcpdump)");
    let mut tcpdump = Peer {
        child,
        what: "tcpdump",
    };
    let mut stderr = BufReader::new(tcpdump.child.stderr.take().expect("tcpdump stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("tcpdump stderr");
    assert!(
        line.contains("listening on"),
        "tcpdump did not start: {line}"
    );
    std::thread::sleep(Duration::from_secs(secs));
    let ok = Command::new("kill")
        .arg("-INT")
        .arg(tcpdump.pid().to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot stop tcpdump");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).expect("tcpdump stderr");
    let status = tcpdump.child.wait().expect("tcpdump exit");
    assert!(status.success(), "tcpdump failed ({status}): {rest}");
    let kernel_dropped = rest
        .lines()
        .find_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("tcpdump's summary has no drop count: {rest}"));
    let pcap = std::fs::read(&file).expect("capture file");
    let mut gaps = stream_gaps(&pcap);
    gaps.kernel_dropped = kernel_dropped;
    gaps
}

/// Gaps between consecutive packets of each SSRC in a pcap of Ethernet-framed (Linux
/// loopback) IPv4/UDP/RTP packets.
fn stream_gaps(pcap: &[u8]) -> Gaps {
    assert!(pcap.len() >= 24, "capture file too short");
    let magic = u32::from_le_bytes(pcap[0..4].try_into().expect("4 bytes"));
    let nanos = match magic {
        0xa1b2_c3d4 => false,
        0xa1b2_3c4d => true,
        _ => panic!("not a little-endian pcap file (magic {magic:#x})"),
    };
    let linktype = u32::from_le_bytes(pcap[20..24].try_into().expect("4 bytes"));
    assert_eq!(
        linktype, 1,
        "loopback capture expected as Ethernet (linktype 1)"
    );
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut gaps_us: Vec<u64> = Vec::new();
    let mut packets = 0;
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let word = |o: usize| u32::from_le_bytes(pcap[at + o..at + o + 4].try_into().expect("4"));
        let (secs, frac, caplen) = (u64::from(word(0)), u64::from(word(4)), word(8) as usize);
        let us = secs * 1_000_000 + if nanos { frac / 1000 } else { frac };
        let data = &pcap[at + 16..(at + 16 + caplen).min(pcap.len())];
        at += 16 + caplen;
        // Ethernet 14, IPv4 header (IHL words), UDP 8, then RTP: SSRC at 8..12.
        if data.len() < 14 + 20 {
            continue;
        }
        let ihl = usize::from(data[14] & 0x0f) * 4;
        let rtp = 14 + ihl + 8;
        if data.len() < rtp + 12 {
            continue;
        }
        let ssrc = u32::from_be_bytes(data[rtp + 8..rtp + 12].try_into().expect("4"));
        packets += 1;
        if let Some(previous) = last.insert(ssrc, us) {
            gaps_us.push(us.saturating_sub(previous));
        }
    }
    gaps_us.sort_unstable();
    let pick = |q: f64| {
        if gaps_us.is_empty() {
            return f64::NAN;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a non-empty list"
        )]
        let i = ((gaps_us.len() - 1) as f64 * q).round() as usize;
        #[allow(clippy::cast_precision_loss, reason = "report figures")]
        let ms = gaps_us[i] as f64 / 1000.0;
        ms
    };
    Gaps {
        streams: last.len(),
        packets,
        kernel_dropped: 0,
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        max_ms: pick(1.0),
    }
}

/// A PCMU (G.711 µ-law) rendering of the benchmark's tone, headerless, for SIPp's rtp_stream.
pub(crate) fn pcmu_tone(seconds: f32) -> Vec<u8> {
    testkit::tone(8000, 440.0, seconds, 8000.0)
        .into_iter()
        .map(call_engine::g711::linear_to_ulaw)
        .collect()
}
