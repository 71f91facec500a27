//! The call after the answer, end to end: a real SIPp far end renegotiates the session in the
//! dialog (hold/resume, codec and port change, a re-INVITE without SDP) while tcpdump records
//! what reaches it; the RTP it receives is judged packet by packet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::Duration;

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::capture::{find, Udp};
use support::{Harness, Options};

const CALL: Duration = Duration::from_secs(30);

fn ended(i: &ews_proto::PhoneCallInformation) -> bool {
    i.phone_call_state == S::Disconnected
}

/// A SIP message from the capture: the first whose text starts with `start` and has `cseq`.
fn message(packets: &[Udp], start: &str, cseq: &str) -> usize {
    find(packets, 0, |t| t.starts_with(start) && t.contains(cseq))
        .unwrap_or_else(|| panic!("no {start:?} with {cseq:?} in the capture"))
}

/// Our RTP packets (to the far end's `ports`) in `packets`.
fn rtp_to<'a>(packets: &'a [Udp], ports: &[u16]) -> Vec<&'a Udp> {
    packets
        .iter()
        .filter(|p| p.is_rtp() && ports.contains(&p.dst_port) && !p.text().starts_with("SIP"))
        .collect()
}

fn assert_contiguous(rtp: &[&Udp]) {
    for w in rtp.windows(2) {
        assert_eq!(
            w[1].sequence(),
            w[0].sequence().wrapping_add(1),
            "the sequence runs on without a gap or a restart"
        );
    }
}

#[tokio::test]
async fn a_pbx_hold_gets_recvonly_no_rtp_flows_while_held_and_the_message_resumes() {
    let options = Options {
        scenario: "uas_hold.xml",
        audio_seconds: 2.0,
        sipp_args: vec!["-m".into(), "1".into()],
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let mp = h.sipp_media_port;
    let capture = h.capture_sipp("hold.pcap", &[mp]);
    let done = h.play_one_call(CALL).await;
    assert_eq!(done.sip_response_code, Some(200));
    let packets = capture.finish();

    let hold_ok = message(&packets, "SIP/2.0 200", "CSeq: 2 INVITE");
    let answer = packets[hold_ok].text();
    assert!(answer.contains("a=recvonly\r\n"), "{answer}");
    assert!(
        answer.contains(" 2 IN IP4 127.0.0.1\r\n"),
        "o= version 2: {answer}"
    );
    let hold_ack = message(&packets, "ACK ", "CSeq: 2 ACK");
    let resume = message(&packets, "INVITE ", "CSeq: 3 INVITE");
    let resume_ok = message(&packets, "SIP/2.0 200", "CSeq: 3 INVITE");
    assert!(packets[resume_ok].text().contains("a=sendrecv\r\n"));

    let before = rtp_to(&packets[..hold_ok], &[mp]);
    let held = rtp_to(&packets[hold_ack..resume], &[mp]);
    // The first packet after the hold may go out before the 200 is captured: count from the
    // resuming re-INVITE.
    let after = rtp_to(&packets[resume..], &[mp]);
    let held_ms = (packets[resume].at_us - packets[hold_ack].at_us) / 1000;
    eprintln!(
        "RTP packets: {} before the hold, {} during {held_ms} ms of hold, {} after",
        before.len(),
        held.len(),
        after.len()
    );
    assert!(
        held_ms >= 1500,
        "the scenario holds 2 s ({held_ms} ms seen)"
    );
    assert_eq!(held.len(), 0, "RTP sent while held");
    assert!(!before.is_empty() && !after.is_empty());
    assert!(after[0].marker(), "a new talkspurt after the hold");
    // The message resumes where it paused: no packet skipped or repeated, and the whole
    // 2 s message + 0.5 s of silence (125 packets) is sent, as in a call without a hold.
    let all = rtp_to(&packets, &[mp]);
    assert_contiguous(&all);
    assert!((124..=126).contains(&all.len()), "{} packets", all.len());
}

#[tokio::test]
async fn codec_and_port_changes_a_re_invite_without_sdp_and_glare_are_handled() {
    let options = Options {
        scenario: "uas_reoffer.xml",
        audio_seconds: 4.0,
        sipp_args: vec!["-m".into(), "1".into()],
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let (mp, mp2) = (h.sipp_media_port, h.sipp_media_port + 2);
    let capture = h.capture_sipp("reoffer.pcap", &[mp, mp2]);
    h.play_one_call(CALL).await;
    let packets = capture.finish();

    // (1) PCMA only, on another port: answered with PCMA alone, and followed.
    let ok2 = message(&packets, "SIP/2.0 200", "CSeq: 2 INVITE");
    let answer = packets[ok2].text();
    assert!(answer.contains("RTP/AVP 8\r\n"), "{answer}");
    assert!(
        !answer.contains("PCMU") && !answer.contains("telephone-event"),
        "{answer}"
    );
    let ack2 = message(&packets, "ACK ", "CSeq: 2 ACK");
    // (2) No SDP: our offer in the 200, the answer (PCMU, first port) in the ACK.
    let ok3 = message(&packets, "SIP/2.0 200", "CSeq: 3 INVITE");
    let offer = packets[ok3].text();
    assert!(offer.contains("RTP/AVP 0 8 101\r\n"), "{offer}");
    assert!(
        offer.contains(" 3 IN IP4 127.0.0.1\r\n"),
        "o= version 3: {offer}"
    );
    let ack3 = message(&packets, "ACK ", "CSeq: 3 ACK");
    // An offer crossing ours (before the ACK's answer): 491 (RFC 3311 §5.2), and nothing moved.
    let glare = message(&packets, "SIP/2.0 491", "CSeq: 4 UPDATE");
    assert!(glare > ok3 && glare < ack3);
    // (3) The UPDATE refresh got its 200 (SIPp checked) and changed nothing.
    message(&packets, "SIP/2.0 200", "CSeq: 5 UPDATE");

    // Where each of our packets went, as runs of (port, payload type) in capture order: PCMU to
    // the first port, PCMA to the second, PCMU to the first again. Each switch follows the SIP
    // message that caused it (the re-INVITE offering PCMA; the ACK carrying the answer).
    let invite2 = message(&packets, "INVITE ", "CSeq: 2 INVITE");
    let mut runs: Vec<(usize, u16, u8, usize)> = Vec::new(); // (first index, port, pt, count)
    for (i, p) in packets.iter().enumerate() {
        if !(p.is_rtp() && [mp, mp2].contains(&p.dst_port) && !p.text().starts_with("SIP")) {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.1 == p.dst_port && run.2 == p.payload_type() => run.3 += 1,
            _ => runs.push((i, p.dst_port, p.payload_type(), 1)),
        }
    }
    eprintln!("RTP runs (first capture index, port, payload type, packets): {runs:?}");
    assert_eq!(
        runs.iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        [(mp, 0), (mp2, 8), (mp, 0)],
        "{runs:?} (SIP at {invite2} {ok2} {ack2} {ok3} {ack3})"
    );
    assert!(runs[1].0 > invite2 && runs[1].0 < ok3, "{runs:?}");
    assert!(runs[2].0 > ack3, "{runs:?}");
    let all = rtp_to(&packets, &[mp, mp2]);
    assert_contiguous(&all);
    // 4 s of message and 0.5 s of silence: 225 packets, whatever the renegotiations.
    assert!((224..=226).contains(&all.len()), "{} packets", all.len());
}

#[tokio::test]
async fn behind_a_nat_rtp_uses_the_range_advertises_the_public_address_and_goes_where_the_far_ends_rtp_comes_from(
) {
    let call = nat_call("uas_nat.xml", "rtp_port_range = \"46900-46999\"\n").await;
    // Our offer, as SIPp received it: the public address, a port from the range.
    let invite = &call.offer;
    assert!(invite.contains("c=IN IP4 203.0.113.7\r\n"), "{invite}");
    assert!(
        invite.contains(" IN IP4 203.0.113.7\r\ns="),
        "o= line: {invite}"
    );
    assert!(
        invite.contains(";rport"),
        "RFC 3581 rport in our Via: {invite}"
    );
    assert!(
        (46900..=46999).contains(&call.ours) && call.ours % 2 == 0,
        "RTP port {}",
        call.ours
    );
}

/// A far end behind a NAT holds the call and resumes it with another codec, both re-offers
/// naming its SDP's (private) address as before: once resumed, openum's RTP still goes where the far end's RTP
/// comes from, with a socket per call and with shared sockets.
#[tokio::test]
async fn behind_a_nat_a_hold_and_a_resume_to_another_codec_keep_rtp_where_the_far_end_sends_from() {
    for sockets in ["per-call", "shared"] {
        let config = format!("rtp_port_range = \"46800-46899\"\nrtp_sockets = \"{sockets}\"\n");
        let call = nat_call("uas_nat_hold.xml", &config).await;
        assert!(
            (46800..=46899).contains(&call.ours),
            "{sockets}: {}",
            call.ours
        );
        // The resume changed the codec (a new plan, to the same address): PCMU, then PCMA.
        assert_eq!(call.payload_types, [0, 8], "{sockets}");
    }
}

/// What [`nat_call`] saw.
struct NatCall {
    /// Our INVITE as SIPp received it.
    offer: String,
    /// Our RTP port.
    ours: u16,
    /// The payload types of our RTP, in order, each once per run.
    payload_types: Vec<u8>,
}

/// Plays a 3 s message to SIPp running `scenario` (which answers with the "private" RTP port
/// `-set sdp_port`) with `[sip]` settings `sip_config` and the public address 203.0.113.7; sends
/// the far end's RTP from a second ("NAT") port; and checks that our RTP went to the SDP's port
/// until then and to the NAT's port from then on, contiguous and complete, and that SIPp
/// counted the call successful.
async fn nat_call(scenario: &'static str, sip_config: &str) -> NatCall {
    // The far end's RTP port as its SDP gives it ("private"), and the one its NAT maps it to.
    let private = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let nat = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let private_port = private.local_addr().unwrap().port();
    let nat_port = nat.local_addr().unwrap().port();
    let options = Options {
        scenario,
        audio_seconds: 3.0,
        sipp_args: vec![
            "-m".into(),
            "1".into(),
            "-set".into(),
            "sdp_port".into(),
            private_port.to_string(),
        ],
        sip_config: format!("{sip_config}media_public_address = \"203.0.113.7\"\n"),
        ..Options::default()
    };
    let mut h = Harness::start(options).await;
    let capture = h.capture_sipp("nat.pcap", &[private_port, nat_port]);
    let id = h.play("2005551234").await;
    h.wait_for(&id, CALL, |i| i.phone_call_state == S::Connected)
        .await;
    let trace = h.sipp_trace();
    let offer = trace
        .split("-----------------------------------------------")
        .find(|m| m.contains("INVITE sip:") && m.contains("message received"))
        .unwrap()
        .to_owned();
    let ours: u16 = offer
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap();

    // Before the far end's RTP arrives, ours goes where its SDP said.
    let mut buffer = [0_u8; 2048];
    private
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (_, from) = private
        .recv_from(&mut buffer)
        .expect("RTP to the SDP's port");
    assert_eq!(
        from.port(),
        ours,
        "symmetric: sent from the advertised port"
    );
    // The far end's RTP, as its NAT forwards it: from another port. (The NAT is on the way to
    // the public address; here openum's bound address stands for it.)
    let mut rtp = vec![0x80_u8, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
    rtp.resize(172, 0xff);
    nat.send_to(&rtp, ("127.0.0.1", ours)).unwrap();
    nat.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (len, from) = nat
        .recv_from(&mut buffer)
        .expect("our RTP at the port the far end's RTP comes from");
    assert_eq!((len, from.port()), (172, ours));

    let done = h.wait_for(&id, CALL, ended).await;
    assert_eq!(done.connection_failure_cause, C::None);
    let sipp = h.sipp_exit(Duration::from_secs(10)).await;
    assert!(sipp.success(), "{sipp}\n{}", h.sipp_trace());
    let packets = capture.finish();
    let sent: Vec<&Udp> = packets
        .iter()
        .filter(|p| p.src_port == ours && p.is_rtp())
        .collect();
    let switch = sent
        .iter()
        .position(|p| p.dst_port == nat_port)
        .expect("RTP to the NAT's port");
    eprintln!(
        "{scenario}, {sip_config:?}: RTP packets: {switch} to the SDP's port, then {} to the NAT's",
        sent.len() - switch
    );
    assert!(switch > 0);
    let strays = sent[switch..]
        .iter()
        .filter(|p| p.dst_port != nat_port)
        .count();
    assert_eq!(
        strays,
        0,
        "{scenario}, {sip_config:?}: once latched, RTP stays at the NAT's port ({} packets after the switch)",
        sent.len() - switch
    );
    assert_contiguous(&sent);
    // 3 s of message and 0.5 s of silence: 175 packets, none lost to the switch or the hold.
    assert!((174..=176).contains(&sent.len()), "{} packets", sent.len());
    let mut payload_types: Vec<u8> = sent.iter().map(|p| p.payload_type()).collect();
    payload_types.dedup();
    NatCall {
        offer,
        ours,
        payload_types,
    }
}
