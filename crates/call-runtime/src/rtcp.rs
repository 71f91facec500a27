//! RTCP for a call's stream (RFC 3550 §6): a task sends a Sender Report with SDES CNAME every
//! ~5 s (randomised over 0.5–1.5 × the interval, RFC 3550 §6.3.5) on the RTP port + 1, or on the
//! RTP port itself with `rtcp-mux` (RFC 5761), reads the far end's reports about the stream (loss,
//! jitter, round-trip time: logged in the call's span, added to [`RtcpStats`]), and sends BYE
//! when the media stop. Like RTP, RTCP goes where the far end's RTCP comes from (RFC 4961).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use call_engine::rtcp::{self as packets, SenderInfo, REPORT_INTERVAL};
use rand::Rng as _;
use tokio::sync::{mpsc, oneshot, watch};

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
    /// Starts RTCP for `stream`. `socket` is the RTCP socket, or the RTP socket when `mux`;
    /// incoming RTCP is read from `socket`, unless `forwarded`: then it comes through
    /// [`Rtcp::muxed`] (rtcp-mux, or sockets shared by many calls, read by the media shard).
    /// `negotiated` is the far end's RTP address from its SDP.
    pub(crate) fn start(
        socket: Arc<MediaSocket>,
        mux: bool,
        forwarded: bool,
        negotiated: watch::Receiver<SocketAddr>,
        stream: Stream,
        stats: Arc<RtcpStats>,
    ) -> Self {
        use tracing::Instrument as _;
        let (stop, stopped) = oneshot::channel();
        let (muxed, from_rtp_socket) = mpsc::unbounded_channel();
        tokio::spawn(
            run(
                socket,
                mux,
                forwarded,
                negotiated,
                stream,
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

fn rtcp_address(rtp: SocketAddr, mux: bool) -> SocketAddr {
    if mux {
        rtp
    } else {
        SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
    }
}

#[allow(clippy::too_many_arguments, reason = "one task's inputs, passed once")]
async fn run(
    socket: Arc<MediaSocket>,
    mux: bool,
    forwarded: bool,
    mut negotiated: watch::Receiver<SocketAddr>,
    stream: Stream,
    stats: Arc<RtcpStats>,
    mut stopped: oneshot::Receiver<()>,
    mut muxed: mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>,
) {
    let mut destination = rtcp_address(*negotiated.borrow_and_update(), mux);
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
                send(&socket, &packet, destination, &stats);
                next = tokio::time::Instant::now() + randomised(REPORT_INTERVAL);
                None
            }
            changed = negotiated.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = rtcp_address(*negotiated.borrow_and_update(), mux);
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
        if !packets::is_rtcp(&data) {
            continue;
        }
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
    send(&socket, &packet, destination, &stats);
    tracing::debug!(to = %destination, "RTCP BYE sent");
}

fn send(socket: &MediaSocket, packet: &[u8], to: SocketAddr, stats: &RtcpStats) {
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
        let rtp: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(rtcp_address(rtp, true), rtp);
        assert_eq!(rtcp_address(rtp, false).port(), 4001);
    }
}
