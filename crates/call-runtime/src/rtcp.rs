//! RTCP for a call's stream (RFC 3550 §6): a task sends a Sender Report with SDES CNAME every
//! ~5 s (randomised over 0.5–1.5 × the interval, RFC 3550 §6.3.5) on the RTP port + 1 — or the
//! port the far end's `a=rtcp` names (RFC 3605), or the RTP port itself with `rtcp-mux`
//! (RFC 5761) — reads the far end's reports about the stream (loss, jitter, round-trip time:
//! logged in the call's span, added to [`RtcpStats`]), and sends BYE when the media stop. Like
//! RTP, RTCP goes where the far end's RTCP comes from (RFC 4961).
//!
//! On an SRTP call every packet is SRTCP (RFC 3711 §3.4, [`crate::srtp::Srtcp`]): what is sent
//! is protected with openum's key, and what arrives is authenticated and decrypted with the far
//! end's before it is read; a packet that fails is dropped, logged and counted, and never moves
//! the destination.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use call_engine::rtcp::{self as packets, SenderInfo, REPORT_INTERVAL};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot, watch};

use crate::srtp::{Srtcp, SrtcpRefusal};
use crate::udp::MediaSocket;

/// What the stream has sent, kept by the media scheduler for the Sender Reports.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// RTP packets sent.
    pub packets: AtomicU32,
    /// RTP payload octets sent.
    pub octets: AtomicU32,
}

impl StreamCounters {
    /// Counts one packet of `payload` octets (the counts wrap, as RFC 3550 §6.4.1 says).
    pub fn count(&self, payload: usize) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.octets.fetch_add(
            u32::try_from(payload).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }
}

/// RTCP figures of every call, for `/metrics`.
#[derive(Debug, Default)]
pub struct RtcpStats {
    /// Compound packets sent (each with a Sender Report).
    pub sender_reports_sent: AtomicU64,
    /// Report blocks about our streams received from far ends.
    pub reports_received: AtomicU64,
    /// Packets the far ends reported lost (the growth of each call's cumulative count).
    pub packets_lost: AtomicU64,
    /// Sum of the reported interarrival jitter, µs.
    pub jitter_us_total: AtomicU64,
    /// Sum of the measured round-trip times, µs.
    pub round_trip_us_total: AtomicU64,
    /// Round-trip times measured.
    pub round_trips: AtomicU64,
    /// Datagrams on a call's RTCP socket that are not RTCP (dropped).
    pub dropped_not_rtcp: AtomicU64,
    /// SRTCP that failed authentication: a wrong tag, too short, or a replayed index (dropped).
    pub dropped_srtcp_auth: AtomicU64,
    /// SRTCP with the E flag clear (dropped: see [`crate::srtp::SrtcpRefusal::Unencrypted`]).
    pub dropped_srtcp_unencrypted: AtomicU64,
}

impl RtcpStats {
    /// The drop counters by `cause` label, for `/metrics`.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("not_rtcp", self.dropped_not_rtcp.load(Ordering::Relaxed)),
            (
                "srtcp_auth",
                self.dropped_srtcp_auth.load(Ordering::Relaxed),
            ),
            (
                "srtcp_unencrypted",
                self.dropped_srtcp_unencrypted.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// What the RTCP task needs to know about its call's stream.
pub(crate) struct Stream {
    /// Our SSRC.
    pub(crate) ssrc: u32,
    /// The first RTP timestamp and its instant (the stream's clock).
    pub(crate) first_timestamp: u32,
    pub(crate) origin: std::time::Instant,
    pub(crate) counters: Arc<StreamCounters>,
    /// SDES CNAME.
    pub(crate) cname: String,
}

/// A running RTCP task; [`Rtcp::stop`] sends BYE and ends it.
pub(crate) struct Rtcp {
    stop: Option<oneshot::Sender<()>>,
    /// RTCP datagrams that arrived on the RTP socket (rtcp-mux).
    pub(crate) muxed: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
}

impl Rtcp {
    /// Starts RTCP for `stream`. `socket` is the RTCP socket, or the RTP socket with rtcp-mux;
    /// incoming RTCP is read from `socket`, unless `forwarded`: then it comes through
    /// [`Rtcp::muxed`] (rtcp-mux, or sockets shared by many calls, read by the media shard).
    /// `destination` is where the far end's SDP says its RTCP goes ([`destination`]); `srtcp`
    /// protects and unprotects every packet of an SRTP call.
    pub(crate) fn start(
        socket: Arc<MediaSocket>,
        forwarded: bool,
        destination: watch::Receiver<SocketAddr>,
        stream: Stream,
        srtcp: Option<Srtcp>,
        stats: Arc<RtcpStats>,
    ) -> Self {
        use tracing::Instrument as _;
        let (stop, stopped) = oneshot::channel();
        let (muxed, from_rtp_socket) = mpsc::unbounded_channel();
        tokio::spawn(
            run(
                socket,
                forwarded,
                destination,
                stream,
                srtcp,
                stats,
                stopped,
                from_rtp_socket,
            )
            .instrument(tracing::Span::current()),
        );
        Self {
            stop: Some(stop),
            muxed,
        }
    }

    /// Sends the final SR + BYE and ends the task.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // A task that is already gone has nothing left to send.
            let _ = stop.send(());
        }
    }
}

impl Drop for Rtcp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now_ntp() -> u64 {
    // A clock before 1970 would be a broken host; NTP time 0 then says so in the reports.
    packets::ntp_timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn sender_info(stream: &Stream) -> SenderInfo {
    let now = tokio::time::Instant::now().into_std();
    SenderInfo {
        ssrc: stream.ssrc,
        ntp: now_ntp(),
        rtp_timestamp: call_engine::rtp::timestamp_at(stream.first_timestamp, stream.origin, now),
        packets: stream.counters.packets.load(Ordering::Relaxed),
        octets: stream.counters.octets.load(Ordering::Relaxed),
    }
}

/// The next interval: uniformly 0.5–1.5 × `base` (RFC 3550 §6.3.5).
fn randomised(base: Duration) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Where the far end's RTCP goes, from its SDP: its RTP address with `mux` (RFC 5761: the
/// `a=rtcp` then names that port, if any), else the address of its `a=rtcp` (RFC 3605), else the
/// RTP port + 1 (RFC 3550 §11).
pub(crate) fn destination(plan: &call_engine::sdp::MediaPlan, mux: bool) -> SocketAddr {
    if mux {
        plan.remote
    } else {
        plan.rtcp.unwrap_or_else(|| {
            SocketAddr::new(plan.remote.ip(), plan.remote.port().wrapping_add(1))
        })
    }
}

#[allow(clippy::too_many_arguments, reason = "one task's inputs, passed once")]
async fn run(
    socket: Arc<MediaSocket>,
    forwarded: bool,
    mut negotiated: watch::Receiver<SocketAddr>,
    stream: Stream,
    mut srtcp: Option<Srtcp>,
    stats: Arc<RtcpStats>,
    mut stopped: oneshot::Receiver<()>,
    mut muxed: mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>,
) {
    let mut destination = *negotiated.borrow_and_update();
    let mut latched = false;
    let mut last_lost: Option<i32> = None;
    // The first report after half an interval (RFC 3550 §6.3.1's initial interval).
    let mut next = tokio::time::Instant::now() + randomised(REPORT_INTERVAL / 2);
    let mut buffer = vec![0_u8; 2048];
    loop {
        let arrived: Option<(Vec<u8>, SocketAddr)> = tokio::select! {
            _ = &mut stopped => break,
            () = tokio::time::sleep_until(next) => {
                let packet = packets::report(&sender_info(&stream), &stream.cname);
                send(&socket, &packet, srtcp.as_mut(), destination, &stats);
                next = tokio::time::Instant::now() + randomised(REPORT_INTERVAL);
                None
            }
            changed = negotiated.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = *negotiated.borrow_and_update();
                if new != destination {
                    destination = new;
                    latched = false;
                }
                None
            }
            datagram = muxed.recv(), if forwarded => datagram,
            received = socket.recv_from(&mut buffer), if !forwarded => match received {
                Ok((len, from)) => Some((buffer[..len].to_vec(), from)),
                Err(error) => {
                    // ICMP port unreachable and the like: nothing to read, the socket goes on.
                    tracing::debug!(%error, "RTCP receive error");
                    None
                }
            },
        };
        let Some((data, from)) = arrived else {
            continue;
        };
        let Some(data) = accept(data, from, srtcp.as_mut(), &stats) else {
            continue;
        };
        if !latched {
            latched = true;
            if from != destination {
                tracing::info!(%from, sdp = %destination, "symmetric RTCP: sending where the far end's RTCP comes from");
                destination = from;
            }
        }
        for report in packets::reports_about(&data, stream.ssrc, now_ntp()) {
            record(&report, &mut last_lost, &stats);
        }
    }
    let packet = packets::goodbye(&sender_info(&stream), &stream.cname);
    send(&socket, &packet, srtcp.as_mut(), destination, &stats);
    tracing::debug!(to = %destination, srtcp = srtcp.is_some(), "RTCP BYE sent");
}

/// The plain RTCP in a datagram that arrived from `from`, or `None` (logged and counted):
/// not RTCP, or (with `srtcp`) not SRTCP protected with the far end's key.
fn accept(
    data: Vec<u8>,
    from: SocketAddr,
    srtcp: Option<&mut Srtcp>,
    stats: &RtcpStats,
) -> Option<Vec<u8>> {
    if !packets::is_rtcp(&data) {
        stats.dropped_not_rtcp.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, len = data.len(), "datagram on the RTCP socket is not RTCP: dropped");
        return None;
    }
    let Some(srtcp) = srtcp else {
        return Some(data);
    };
    match srtcp.unprotect(&data) {
        Ok(plain) => Some(plain),
        Err(refusal) => {
            let counter = match refusal {
                SrtcpRefusal::Unencrypted => &stats.dropped_srtcp_unencrypted,
                _ => &stats.dropped_srtcp_auth,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                %from,
                len = data.len(),
                cause = refusal.cause(),
                error = %calls::error_chain(&refusal),
                "SRTCP from the far end dropped"
            );
            None
        }
    }
}

/// Sends `packet`, protected as SRTCP when `srtcp` is given (never in the clear then).
fn send(
    socket: &MediaSocket,
    packet: &[u8],
    srtcp: Option<&mut Srtcp>,
    to: SocketAddr,
    stats: &RtcpStats,
) {
    let protected;
    let packet = match srtcp {
        None => packet,
        Some(srtcp) => match srtcp.protect(packet) {
            Ok(p) => {
                protected = p;
                &protected
            }
            Err(error) => {
                // RTCP is advisory: the report is skipped, the next one tried.
                tracing::warn!(error = %calls::error_chain(&error), %to, "cannot protect RTCP as SRTCP: not sent");
                return;
            }
        },
    };
    match socket.try_send_to(packet, to) {
        Ok(_) => {
            stats.sender_reports_sent.fetch_add(1, Ordering::Relaxed);
        }
        // RTCP is advisory: a report that cannot be sent is logged and the next one tried.
        Err(error) => tracing::debug!(%error, %to, "cannot send RTCP"),
    }
}

fn record(report: &packets::ReceptionReport, last_lost: &mut Option<i32>, stats: &RtcpStats) {
    let jitter = report.jitter_duration();
    tracing::info!(
        fraction_lost = report.fraction_lost,
        cumulative_lost = report.cumulative_lost,
        jitter_ms = jitter.as_secs_f64() * 1000.0,
        rtt_ms = report.round_trip.map(|r| r.as_secs_f64() * 1000.0),
        "RTCP report from the far end"
    );
    stats.reports_received.fetch_add(1, Ordering::Relaxed);
    let grown = report.cumulative_lost - last_lost.unwrap_or(0);
    if grown > 0 {
        stats
            .packets_lost
            .fetch_add(u64::from(grown.unsigned_abs()), Ordering::Relaxed);
    }
    *last_lost = Some(report.cumulative_lost.max(last_lost.unwrap_or(0)));
    stats.jitter_us_total.fetch_add(
        u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    if let Some(rtt) = report.round_trip {
        stats.round_trip_us_total.fetch_add(
            u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        stats.round_trips.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_packets_count_the_growth_of_each_calls_total() {
        let stats = RtcpStats::default();
        let mut last = None;
        let report = |lost| packets::ReceptionReport {
            fraction_lost: 0.0,
            cumulative_lost: lost,
            jitter: 80,
            round_trip: Some(Duration::from_millis(20)),
        };
        for lost in [2, 2, 5, -1, 6] {
            record(&report(lost), &mut last, &stats);
        }
        assert_eq!(stats.packets_lost.load(Ordering::Relaxed), 6);
        assert_eq!(stats.reports_received.load(Ordering::Relaxed), 5);
        assert_eq!(stats.jitter_us_total.load(Ordering::Relaxed), 50_000);
        assert_eq!(stats.round_trips.load(Ordering::Relaxed), 5);
        assert_eq!(stats.round_trip_us_total.load(Ordering::Relaxed), 100_000);
    }

    #[test]
    fn intervals_are_randomised_around_the_nominal_one() {
        for _ in 0..100 {
            let d = randomised(REPORT_INTERVAL);
            assert!(d >= Duration::from_millis(2500) && d < Duration::from_millis(7500));
        }
    }

    #[test]
    fn rtcp_goes_to_the_rtp_port_plus_one_or_the_a_rtcp_port_and_to_the_rtp_port_with_mux() {
        let mut plan = call_engine::sdp::MediaPlan {
            remote: "10.0.0.1:4000".parse().unwrap(),
            rtcp: None,
            codec: call_engine::sdp::Codec::Pcmu,
            payload_type: 0,
            ptime_ms: 20,
        };
        assert_eq!(destination(&plan, true), plan.remote);
        assert_eq!(destination(&plan, false), "10.0.0.1:4001".parse().unwrap());
        // a=rtcp (RFC 3605) names another port, or address; rtcp-mux still wins.
        plan.rtcp = Some("10.0.0.2:5009".parse().unwrap());
        assert_eq!(destination(&plan, false), "10.0.0.2:5009".parse().unwrap());
        assert_eq!(destination(&plan, true), plan.remote);
    }

    #[test]
    fn srtcp_that_fails_authentication_is_dropped_and_counted_by_cause_and_good_srtcp_is_read() {
        use call_engine::sdes::{CryptoSuite, MasterKey, SrtpKeys};
        let ours = SrtpKeys {
            suite: CryptoSuite::AesCm128HmacSha1_80,
            local: MasterKey::from_material(&[3; 30]),
            remote: MasterKey::from_material(&[4; 30]),
        };
        let far_end_keys = SrtpKeys {
            suite: ours.suite,
            local: ours.remote.clone(),
            remote: ours.local.clone(),
        };
        let mut openum = Srtcp::new(&ours).unwrap();
        let mut far_end = Srtcp::new(&far_end_keys).unwrap();
        let stats = RtcpStats::default();
        let from: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        // A receiver report about openum's stream (SSRC 7): RR from SSRC 9 with one block.
        let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 9, 0, 0, 0, 7];
        rr.extend_from_slice(&[
            0x10, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 80, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let good = far_end.protect(&rr).unwrap();
        let mut corrupted = good.clone();
        corrupted[12] ^= 0x80;
        assert_eq!(accept(corrupted, from, Some(&mut openum), &stats), None);
        let mut clear = far_end.protect(&rr).unwrap();
        clear[rr.len()] &= 0x7f;
        assert_eq!(accept(clear, from, Some(&mut openum), &stats), None);
        assert_eq!(
            accept(b"not rtcp".to_vec(), from, Some(&mut openum), &stats),
            None
        );
        // Plain RTCP on an SRTP call: no index with the E flag, no tag; refused.
        assert_eq!(accept(rr.clone(), from, Some(&mut openum), &stats), None);
        let plain = accept(good.clone(), from, Some(&mut openum), &stats).unwrap();
        assert_eq!(plain, rr);
        let reports = packets::reports_about(&plain, 7, now_ntp());
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].cumulative_lost, 3);
        // The same packet again is a replay.
        assert_eq!(accept(good, from, Some(&mut openum), &stats), None);
        assert_eq!(
            stats.dropped(),
            vec![("not_rtcp", 1), ("srtcp_auth", 2), ("srtcp_unencrypted", 2)]
        );
        // Without SRTP, plain RTCP is read as it is.
        assert_eq!(accept(rr.clone(), from, None, &stats), Some(rr));
    }
}
