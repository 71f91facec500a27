//! A tcpdump capture of UDP on the loopback interface, read back as packets with their capture
//! timestamps: what the far end's network saw, and when.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One UDP datagram from the capture.
#[derive(Clone, Debug)]
pub struct Udp {
    /// Capture time, µs since the epoch.
    pub at_us: u64,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl Udp {
    /// The payload as text (SIP), lossy.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }

    /// An RTP packet (version 2, not RTCP's payload types 200–204)?
    pub fn is_rtp(&self) -> bool {
        self.payload.len() >= 12
            && self.payload[0] >> 6 == 2
            && !(72..=76).contains(&(self.payload[1] & 0x7f))
    }

    /// RTP payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload[1] & 0x7f
    }

    /// RTP sequence number.
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.payload[2], self.payload[3]])
    }

    /// RTP marker bit.
    pub fn marker(&self) -> bool {
        self.payload[1] & 0x80 != 0
    }
}

/// A running `tcpdump -i lo` writing a pcap file.
pub struct Capture {
    path: PathBuf,
    child: Child,
}

impl Capture {
    /// Starts capturing `filter` (a pcap filter expression) into `dir/name`; returns once
    /// tcpdump says the capture is armed.
    pub fn start(dir: &Path, name: &str, filter: &str) -> Self {
        let path = dir.join(name);
        let mut child = Command::new("timeout")
            .args([
                "300",
                "tcpdump",
                "-i",
                "lo",
                "-n",
                "-U",
                "--immediate-mode",
                "-w",
            ])
            .arg(&path)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump is required (apt-get install tcpdump)");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut said = Vec::new();
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = ready_tx.send(Ok(()));
                }
                said.push(line);
            }
            let _ = ready_tx.send(Err(said.join("\n")));
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(said)) => panic!("tcpdump did not start (it needs CAP_NET_RAW): {said}"),
            Err(_) => panic!("tcpdump did not start within 10 s"),
        }
        Self { path, child }
    }

    /// Stops the capture and reads it. tcpdump stops reading on its signal, so what the kernel
    /// captured but tcpdump had not yet written would be lost (the last BYEs of a test, say):
    /// first wait (at most 3 s) until the file has not grown for 300 ms.
    pub fn finish(mut self) -> Vec<Udp> {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let (deadline, mut last, mut quiet_since) =
            (Instant::now() + Duration::from_secs(3), 0, Instant::now());
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            let now = size(&self.path);
            if now != last {
                (last, quiet_since) = (now, Instant::now());
            } else if quiet_since.elapsed() >= Duration::from_millis(300) {
                break;
            }
        }
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        read_pcap(&self.path)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// UDP datagrams from a pcap file of `lo` (linktype EN10MB, IPv4).
pub fn read_pcap(path: &Path) -> Vec<Udp> {
    let data = std::fs::read(path).unwrap();
    assert!(data.len() >= 24, "empty pcap");
    assert_eq!(&data[0..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    let linktype = u32::from_le_bytes(data[20..24].try_into().unwrap());
    assert_eq!(linktype, 1, "expected an Ethernet capture of lo");
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let sec = u64::from(u32::from_le_bytes(data[at..at + 4].try_into().unwrap()));
        let usec = u64::from(u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()));
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &data[at + 16..(at + 16 + len).min(data.len())];
        at += 16 + len;
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let udp = &ip[ihl..];
        out.push(Udp {
            at_us: sec * 1_000_000 + usec,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            payload: udp[8..].to_vec(),
        });
    }
    out
}

/// The index of the first packet at or after `from` whose text satisfies `is`.
pub fn find(packets: &[Udp], from: usize, is: impl Fn(&str) -> bool) -> Option<usize> {
    packets[from..]
        .iter()
        .position(|p| is(&p.text()))
        .map(|i| i + from)
}
