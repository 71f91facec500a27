//! Audio fidelity and RTP pacing, measured at a real far end: baresip auto-answers and records
//! what it hears (sndfile); tcpdump captures the RTP on the loopback interface.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::phone::{chirp_wav, correlation, Phone};
use support::{add_user_with_message, openum_bin, PASSWORD};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

struct Packet {
    at_us: u64,
    src_port: u16,
    dst_port: u16,
    rtp: Vec<u8>,
}

/// UDP packets from a tcpdump capture of `lo` (linktype EN10MB, IPv4).
fn read_pcap(path: &Path) -> Vec<Packet> {
    let data = std::fs::read(path).unwrap();
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
        out.push(Packet {
            at_us: sec * 1_000_000 + usec,
            src_port: u16::from_be_bytes([udp[0], udp[1]]),
            dst_port: u16::from_be_bytes([udp[2], udp[3]]),
            rtp: udp[8..].to_vec(),
        });
    }
    out
}

#[tokio::test]
async fn the_message_reaches_a_real_phone_intact_and_evenly_paced() {
    let dir = tempfile::tempdir().unwrap();
    let base = 30000 + (std::process::id() % 200) as u16 * 100;
    let (http, sip, phone_sip, rtp_lo, rtp_hi) = (base, base + 1, base + 2, base + 50, base + 99);
    // baresip: auto-answer, no sound card, record what it decodes (telephony.md §5.3).
    let phone = Phone::start(dir.path(), phone_sip, rtp_lo, rtp_hi);
    let mut children = support::Processes(Vec::new());
    let pcap = dir.path().join("rtp.pcap");
    let mut tcpdump = Command::new("timeout")
        .args(["120", "tcpdump", "-i", "lo", "-n", "-U", "-w"])
        .arg(&pcap)
        .arg(format!("udp dst portrange {rtp_lo}-{rtp_hi}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is required (apt-get install tcpdump)");
    // tcpdump says "listening on lo" once the capture is armed.
    let stderr = tcpdump.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("listening on") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump did not start");

    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{http}\"\ndata_dir = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{sip}\"\n\
             [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let wav = dir.path().join("chirp.wav");
    chirp_wav(&wav);
    let item = add_user_with_message(&config, "alice", &wav);
    children.0.push(
        Command::new(openum_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/EWS/Exchange.asmx");
    let post = |body: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let text = client
                .post(url)
                .basic_auth("alice", Some(PASSWORD))
                .body(format!("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\"><s:Body>{body}</s:Body></s:Envelope>"))
                .send()
                .await?
                .text()
                .await?;
            Ok::<_, reqwest::Error>(text)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        match post(format!("<m:PlayOnPhone><m:ItemId Id=\"{item}\"/><m:DialString>4711</m:DialString></m:PlayOnPhone>")).await {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    };
    let id = reply
        .split("PhoneCallId Id=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = post(format!(
            "<m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation>"
        ))
        .await
        .unwrap();
        if info.contains(">Disconnected<") {
            assert!(info.contains(">None<"), "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "call did not end: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let baresip close its recording and tcpdump flush.
    let got = phone.new_recording(&[]);
    let reference = audio::decode_to_8k_mono(&std::fs::read(&wav).unwrap(), Some("wav")).unwrap();
    let (score, lag) = correlation(&reference, &got, 8000);
    assert!(score > 0.9, "correlation {score:.4} at lag {lag} samples");

    // --- pacing: our RTP as it arrived at the phone ---
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(tcpdump.id().to_string())
        .status();
    let _ = tcpdump.wait();
    let packets: Vec<Packet> = read_pcap(&pcap)
        .into_iter()
        .filter(|p| p.rtp.len() == 172 && p.rtp[0] == 0x80)
        .collect();
    // The message is 2.5 s and 0.5 s of silence follows: 150 packets of 20 ms.
    let ours: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.src_port != p.dst_port)
        .collect();
    assert!(ours.len() >= 149, "only {} RTP packets arrived", ours.len());
    let seqs: Vec<u16> = ours
        .iter()
        .map(|p| u16::from_be_bytes([p.rtp[2], p.rtp[3]]))
        .collect();
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "loss or reordering on loopback");
    }
    let intervals: Vec<f64> = ours
        .windows(2)
        .map(|w| (w[1].at_us - w[0].at_us) as f64 / 1000.0)
        .collect();
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    assert!((mean - 20.0).abs() <= 0.5, "mean interval {mean:.3} ms");
    let first_marker = ours[0].rtp[1] & 0x80 != 0;
    assert!(first_marker, "marker bit on the first packet");
    eprintln!(
        "correlation {score:.4} (lag {lag}), {} packets, mean interval {mean:.3} ms, max {:.3} ms",
        ours.len(),
        intervals.iter().cloned().fold(0.0, f64::max)
    );
}
