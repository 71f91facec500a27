//! RTCP at a real far end: baresip answers and sends its own RTCP; tcpdump captures the far end's
//! ports and tshark (an independent dissector) judges openum's Sender Reports; the far end's
//! reports show up in openum's /metrics.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::capture::Capture;
use support::phone::Phone;
use support::{add_user_with_message, openum_bin, tone_wav, Processes, PASSWORD};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// `(time, sender SSRC, malformed?)` of every RTCP Sender Report tshark finds in `pcap`.
fn sender_reports(pcap: &std::path::Path) -> Vec<(f64, u32, bool)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-n",
            "--enable-heuristic",
            "rtcp_udp",
            "-Y",
            "rtcp.pt == 200",
        ])
        .args(["-T", "fields", "-E", "separator=;"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "rtcp.senderssrc",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .expect("tshark is required (apt-get install tshark)");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            let ssrc = f[1].split(',').next().unwrap();
            let ssrc = u32::from_str_radix(ssrc.trim_start_matches("0x"), 16)
                .unwrap_or_else(|e| panic!("{l}: {e}"));
            (f[0].parse().unwrap(), ssrc, !f[2].is_empty())
        })
        .collect()
}

#[tokio::test]
async fn sender_reports_reach_a_real_phone_every_five_seconds_and_its_reports_reach_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let base = 46000 + (std::process::id() % 8) as u16 * 100;
    let (http, sip, phone_sip, rtp_lo, rtp_hi) = (base, base + 1, base + 2, base + 50, base + 99);
    let phone = Phone::start(dir.path(), phone_sip, rtp_lo, rtp_hi);
    let capture = Capture::start(
        dir.path(),
        "far-end.pcap",
        &format!("udp portrange {rtp_lo}-{rtp_hi}"),
    );
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
    let wav = dir.path().join("message.wav");
    tone_wav(&wav, 17.0);
    let item = add_user_with_message(&config, "alice", &wav);
    let _openum = Processes(vec![Command::new(openum_bin())
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("OPENUM_LOG", "info,openum_call_runtime=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("openum.log")).unwrap())
        .spawn()
        .unwrap()]);
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{http}/EWS/Exchange.asmx");
    let post = |body: String| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            client
                .post(url)
                .basic_auth("alice", Some(PASSWORD))
                .body(format!("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\"><s:Body>{body}</s:Body></s:Envelope>"))
                .send()
                .await?
                .text()
                .await
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
    let deadline = Instant::now() + Duration::from_secs(60);
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = client
        .get(format!("http://127.0.0.1:{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    drop(phone);
    let packets = capture.finish();

    // Our SSRC: the RTP we sent to the phone (to a port in its range, from one outside).
    let ours = packets
        .iter()
        .find(|p| {
            p.is_rtp()
                && (rtp_lo..=rtp_hi).contains(&p.dst_port)
                && !(rtp_lo..=rtp_hi).contains(&p.src_port)
        })
        .map(|p| u32::from_be_bytes(p.payload[8..12].try_into().unwrap()))
        .expect("our RTP in the capture");
    // Every RTCP packet we sent, as the capture has it (SR + SDES; the last one with BYE).
    let ours_rtcp: Vec<&support::capture::Udp> = packets
        .iter()
        .filter(|p| {
            p.payload.len() >= 16
                && p.payload[1] == 200
                && u32::from_be_bytes(p.payload[4..8].try_into().unwrap()) == ours
        })
        .collect();
    // The last one carries the BYE (RFC 3550 §6.6): SR, SDES, then BYE (PT 203) with our SSRC.
    let last = ours_rtcp.last().expect("our RTCP in the capture");
    let bye = &last.payload[last.payload.len() - 8..];
    assert_eq!(bye[..4], [0x81, 203, 0, 1], "no RTCP BYE at the end");
    assert_eq!(u32::from_be_bytes(bye[4..].try_into().unwrap()), ours);
    let reports: Vec<(f64, u32, bool)> = sender_reports(&dir.path().join("far-end.pcap"))
        .into_iter()
        .filter(|r| r.1 == ours)
        .collect();
    assert!(
        reports.iter().all(|r| !r.2),
        "tshark finds malformed RTCP: {reports:?}"
    );
    let times: Vec<f64> = reports.iter().map(|r| r.0).collect();
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "our Sender Reports at the far end: {} in the capture, {} dissected by tshark ({gaps:.2?} s apart)",
        ours_rtcp.len(),
        times.len()
    );
    assert_eq!(
        times.len(),
        ours_rtcp.len(),
        "tshark does not take every one for RTCP"
    );
    // 17.5 s of media: the first SR after 1.25-3.75 s, then every 2.5-7.5 s (RFC 3550 §6.3.5),
    // and a last one with the BYE.
    assert!(times.len() >= 3, "{} sender reports", times.len());
    let periodic = &gaps[..gaps.len() - 1];
    assert!(
        periodic.iter().all(|g| (2.4..=7.6).contains(g)),
        "intervals {gaps:?}"
    );
    // The far end's reports about our stream, as /metrics shows them.
    let received: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("openum_rtcp_reports_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    let sent: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("openum_rtcp_sender_reports_sent_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    eprintln!("metrics: {received} reports received, {sent} RTCP packets sent");
    assert!(
        received >= 1,
        "no far-end report reached the metrics\n{metrics}"
    );
    assert!(sent >= 3);
}
