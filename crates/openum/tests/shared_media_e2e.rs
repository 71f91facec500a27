//! `[sip] rtp_sockets = "shared"` end to end: every call on a media shard sends from, and is
//! reached at, the shard's one RTP socket (and RTCP on the next port). Real far ends — SIPp
//! holding and resuming, far ends on one IP address that must each get only their own call's
//! audio, baresip sending RTCP and demanding SRTP — while tcpdump records what reaches them and
//! tshark judges the RTCP. Ports 52000-52999.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::capture::{find, Capture, Udp};
use support::phone::Phone;
use support::rtcp::{assert_ends_with_bye, assert_periodic_sender_reports, sender_rtcp, ssrc};
use support::serve::Openum;
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(40);

fn ended(i: &ews_proto::PhoneCallInformation) -> bool {
    i.phone_call_state == S::Disconnected
}

/// An RTP packet (PCMU) with `ssrc`.
fn rtp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80_u8, 0, 0, 1, 0, 0, 0, 160];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(172, 0xff);
    p
}

/// The value of the metric line starting with `name` (0 if absent).
fn metric(metrics: &str, name: &str) -> u64 {
    support::ews::metric(metrics, name).unwrap_or(0)
}

#[tokio::test]
async fn a_call_on_a_shared_socket_is_held_and_resumed_by_sipp_and_plays_its_whole_message() {
    let options = Options {
        scenario: "uas_hold.xml",
        audio_seconds: 2.0,
        sipp_args: vec!["-m".into(), "1".into()],
        sip_config: "rtp_sockets = \"shared\"\nrtp_port_range = \"52100-52149\"\n".into(),
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let mp = h.sipp_media_port;
    let capture = h.capture_sipp("hold.pcap", &[mp]);
    let done = h.play_one_call(CALL).await;
    assert_eq!(done.sip_response_code, Some(200));
    let packets = capture.finish();

    let offer = find(&packets, 0, |t| t.starts_with("INVITE ")).expect("our INVITE");
    let advertised: u16 = packets[offer]
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(
        (52100..=52149).contains(&advertised) && advertised % 2 == 0,
        "{advertised}"
    );
    let hold_ok = find(&packets, 0, |t| {
        t.starts_with("SIP/2.0 200") && t.contains("CSeq: 2 INVITE")
    })
    .expect("200 to the hold");
    assert!(packets[hold_ok].text().contains("a=recvonly\r\n"));
    let hold_ack = find(&packets, 0, |t| {
        t.starts_with("ACK ") && t.contains("CSeq: 2 ACK")
    })
    .unwrap();
    let resume = find(&packets, 0, |t| {
        t.starts_with("INVITE ") && t.contains("CSeq: 3 INVITE")
    })
    .unwrap();
    let ours = |range: &[Udp]| -> Vec<Udp> {
        range
            .iter()
            .filter(|p| p.is_rtp() && p.dst_port == mp && !p.text().starts_with("SIP"))
            .cloned()
            .collect()
    };
    let all = ours(&packets);
    assert!(
        all.iter().all(|p| p.src_port == advertised),
        "every packet from the shard's advertised port"
    );
    assert_eq!(
        ours(&packets[hold_ack..resume]).len(),
        0,
        "RTP sent while held"
    );
    let after = ours(&packets[resume..]);
    assert!(
        !after.is_empty() && after[0].marker(),
        "a new talkspurt after the hold"
    );
    for w in all.windows(2) {
        assert_eq!(
            w[1].sequence(),
            w[0].sequence().wrapping_add(1),
            "no gap, no restart"
        );
    }
    // 2 s of message + 0.5 s of silence, as with a socket per call.
    assert!((124..=126).contains(&all.len()), "{} packets", all.len());
}

#[tokio::test]
async fn far_ends_on_one_ip_each_get_only_their_own_calls_audio_and_an_ambiguous_source_is_not_followed(
) {
    // More calls than shards: at least two calls share a shard's socket.
    let calls = std::thread::available_parallelism().map_or(1, usize::from) + 1;
    let far: Vec<UdpSocket> = (0..calls)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let far_ports: Vec<u16> = far.iter().map(|s| s.local_addr().unwrap().port()).collect();
    // A NAT's port on the same IP: RTP from it could belong to any call waiting for that IP.
    let nat = UdpSocket::bind("127.0.0.1:0").unwrap();
    let nat_port = nat.local_addr().unwrap().port();
    let inputs = tempfile::tempdir().unwrap();
    let csv = inputs.path().join("ports.csv");
    let lines: String = far_ports.iter().map(|p| format!("{p};\n")).collect();
    std::fs::write(&csv, format!("SEQUENTIAL\n{lines}")).unwrap();
    let options = Options {
        scenario: "uas_ports.xml",
        audio_seconds: 6.0,
        sipp_args: vec![
            "-m".into(),
            calls.to_string(),
            "-inf".into(),
            csv.display().to_string(),
        ],
        sip_config: "rtp_sockets = \"shared\"\nrtp_port_range = \"52150-52199\"\n".into(),
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let filter: Vec<String> = far_ports
        .iter()
        .chain([&nat_port])
        .map(|p| format!("udp port {p}"))
        .collect();
    let capture = Capture::start(h.dir.path(), "far-ends.pcap", &filter.join(" or "));
    let mut ids = Vec::new();
    for _ in 0..calls {
        ids.push(h.play("2005551234").await);
    }
    // Each far end's first packet: which shard socket it comes from, and the call's SSRC.
    let mut buffer = [0_u8; 2048];
    let mut first = Vec::new();
    for socket in &far {
        socket
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let (len, from) = socket.recv_from(&mut buffer).expect("RTP at each far end");
        assert_eq!(len, 172);
        first.push((from, u32::from_be_bytes(buffer[8..12].try_into().unwrap())));
    }
    let mut by_socket: BTreeMap<std::net::SocketAddr, Vec<usize>> = BTreeMap::new();
    for (i, (from, _)) in first.iter().enumerate() {
        assert!((52150..=52199).contains(&from.port()), "{from}");
        by_socket.entry(*from).or_default().push(i);
    }
    let (&shared, sharing) = by_socket
        .iter()
        .find(|(_, far_ends)| far_ends.len() >= 2)
        .expect("two calls on one shard");
    let sharing = sharing.clone();

    // Nobody has sent RTP yet, so every call on that shard waits for RTP from 127.0.0.1: RTP
    // from the NAT's port is ambiguous, dropped and counted, and nobody's audio goes there.
    nat.send_to(&rtp(0xDEAD_0001), shared).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = h.get("/metrics").await;
        if metric(
            &metrics,
            "openum_media_datagrams_dropped_total{cause=\"ambiguous\"} ",
        ) >= 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ambiguous drop counted\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // All far ends but the last on that socket send from their SDP port: attributed by
    // address, they latch where they are. The last one is then the only call waiting for
    // 127.0.0.1, and RTP from the NAT's port is its.
    let (&last, others) = sharing.split_last().unwrap();
    for &i in others {
        far[i]
            .send_to(&rtp(0xFA00_0000 + i as u32), shared)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Until the shard has seen the far ends' packets the NAT's is still ambiguous (and
        // dropped): sent again until it is answered.
        nat.send_to(&rtp(0xDEAD_0002), shared).unwrap();
        nat.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        if let Ok((len, from)) = nat.recv_from(&mut buffer) {
            assert_eq!((len, from), (172, shared));
            assert_eq!(
                u32::from_be_bytes(buffer[8..12].try_into().unwrap()),
                first[last].1,
                "the NAT's port gets the audio of the one call that waited for it"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the waiting call never latched");
    }

    for id in &ids {
        let done = h.wait_for(id, CALL, ended).await;
        assert_eq!(done.connection_failure_cause, C::None);
    }
    let sipp = h.sipp_exit(Duration::from_secs(10)).await;
    assert!(sipp.success(), "{sipp}\n{}", h.sipp_trace());
    let packets = capture.finish();
    let ours: Vec<&Udp> = packets
        .iter()
        .filter(|p| p.is_rtp() && (52150..=52199).contains(&p.src_port))
        .collect();
    // Every far end got one SSRC, its call's, and no two far ends the same one.
    let mut seen = BTreeSet::new();
    for (i, port) in far_ports.iter().enumerate() {
        let ssrcs: BTreeSet<u32> = ours
            .iter()
            .filter(|p| p.dst_port == *port)
            .map(|p| ssrc(p))
            .collect();
        assert_eq!(
            ssrcs,
            BTreeSet::from([first[i].1]),
            "far end {i} got another call's audio"
        );
        assert!(seen.insert(first[i].1), "two far ends with one SSRC");
    }
    let at_nat: BTreeSet<u32> = ours
        .iter()
        .filter(|p| p.dst_port == nat_port)
        .map(|p| ssrc(p))
        .collect();
    assert_eq!(at_nat, BTreeSet::from([first[last].1]));
    // Once latched, the last call's RTP goes only to the NAT's port.
    let to_last: Vec<&&Udp> = ours.iter().filter(|p| ssrc(p) == first[last].1).collect();
    let switch = to_last.iter().position(|p| p.dst_port == nat_port).unwrap();
    assert!(to_last[switch..].iter().all(|p| p.dst_port == nat_port));
    // 6 s of message + 0.5 s of silence per call, none lost to the latch.
    for (i, (_, s)) in first.iter().enumerate() {
        let n = ours.iter().filter(|p| ssrc(p) == *s).count();
        assert!((324..=326).contains(&n), "call {i}: {n} packets");
    }
}

#[tokio::test]
async fn rtcp_through_the_shared_sockets_reaches_baresip_and_its_reports_reach_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, rtp_lo, rtp_hi) = (52300, 52301, 52302, 52350, 52399);
    let phone = Phone::start(dir.path(), phone_sip, rtp_lo, rtp_hi);
    let capture = Capture::start(
        dir.path(),
        "far-end.pcap",
        &format!("udp portrange {rtp_lo}-{rtp_hi}"),
    );
    let openum = Openum::config(dir.path(), http, sip)
        .sip("rtp_sockets = \"shared\"\nrtp_port_range = \"52310-52349\"")
        .gateway(&format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\""))
        .tone(12.0)
        .log("info,openum_call_runtime=debug")
        .start()
        .await;
    let info = openum.call_until_ended(CALL).await;
    assert!(info.contains(">None<"), "{info}");
    let metrics = openum.metrics().await;
    drop(phone);
    let packets = capture.finish();
    let rtp_from = packets
        .iter()
        .find(|p| p.is_rtp() && (52310..=52349).contains(&p.src_port))
        .expect("our RTP from the shared range");
    let ours = ssrc(rtp_from);
    let our_rtcp = sender_rtcp(&packets, ours);
    assert!(
        our_rtcp.iter().all(|p| p.src_port == rtp_from.src_port + 1),
        "RTCP from the shard's RTCP socket (RTP port + 1)"
    );
    assert_ends_with_bye(&our_rtcp, ours);
    // 12.5 s of media: the first SR after 1.25-3.75 s, then every 2.5-7.5 s, and the BYE.
    assert_periodic_sender_reports(&dir.path().join("far-end.pcap"), ours, &our_rtcp);
    // baresip's reports arrived on the shared RTCP socket and were handed to the call.
    let received = metric(&metrics, "openum_rtcp_reports_received_total ");
    assert!(
        received >= 1,
        "no far-end report reached the call\n{metrics}\n{}",
        openum.log_text()
    );
    // One far end per socket: nothing is ambiguous. (Its RTP in flight when the call's stream
    // starts or after it stopped belongs to no call: dropped as unknown.)
    assert_eq!(
        metric(
            &metrics,
            "openum_media_datagrams_dropped_total{cause=\"ambiguous\"} "
        ),
        0,
        "{metrics}"
    );
}

#[tokio::test]
async fn srtp_through_the_shared_sockets_carries_the_message_intact_to_a_phone_that_demands_it() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip) = (52400, 52401, 52402);
    let phone = Phone::start_with(dir.path(), phone_sip, 52450, 52499, Some("srtp-mand"));
    let openum = Openum::config(dir.path(), http, sip)
        .sip("rtp_sockets = \"shared\"\nrtp_port_range = \"52410-52449\"")
        .gateway(&format!(
            "uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\nsrtp = \"mandatory\""
        ))
        .log("info,openum_call_runtime=debug")
        .start()
        .await;
    let info = openum.call_until_ended(CALL).await;
    assert!(info.contains(">None<"), "{info}\n{}", openum.log_text());
    // baresip with srtp-mand decodes nothing that is not SRTP under the offered key.
    openum.assert_phone_heard_the_message(&phone);
    let log = openum.log_text();
    assert!(log.contains("SRTP negotiated"), "{log}");
    assert!(log.contains("shared RTP sockets"), "{log}");
}
