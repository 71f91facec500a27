//! Symmetric RTP (RFC 4961): a call's RTP goes to where the far end's RTP comes from. Behind a
//! NAT the address in the far end's SDP is its private one; the first RTP packet it sends shows
//! the public address and port its NAT maps, and openum sends there from then on. The latch is
//! taken again after each renegotiation (a new address in an offer or answer), on RTP from
//! anywhere but the address openum sent to before it: packets from there are the old stream's
//! stragglers (still in flight, or reflected), not where the far end now wants its audio.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::media::{MediaHandle, StreamChange};
use crate::udp::MediaSocket;

/// How long after a renegotiation moved the stream RTP from where it went before is taken for
/// the old stream's stragglers (in flight, or reflected) rather than a source to latch onto. A
/// far end that keeps sending from there (a NAT whose ALG rewrote one SDP but not the next) is
/// latched onto after it.
pub(crate) const STRAGGLERS: Duration = Duration::from_secs(1);

/// Where to send, given what arrived. Pure (time is an input), so that its rules are tested
/// without sockets.
#[derive(Debug)]
pub(crate) struct Latch {
    /// The address the far end's SDP gave.
    negotiated: SocketAddr,
    /// The source of the far end's RTP since that negotiation.
    latched: Option<SocketAddr>,
    /// Where RTP went before the last renegotiation moved it, and until when packets from there
    /// are stragglers.
    previous: Option<(SocketAddr, Instant)>,
}

impl Latch {
    pub(crate) fn new(negotiated: SocketAddr) -> Self {
        Self {
            negotiated,
            latched: None,
            previous: None,
        }
    }

    /// A datagram `data` from `from` at `now`: where to send from now on, if it is the far end's
    /// first RTP packet since the negotiation (and not a straggler of the stream before it).
    /// That may be the negotiated address itself: the stream's destination is set again, in
    /// case an older latch's change reached the scheduler after the renegotiation's.
    pub(crate) fn on_datagram(
        &mut self,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Option<SocketAddr> {
        if self.latched.is_some() || !looks_like_rtp(data) {
            return None;
        }
        if from != self.negotiated
            && self
                .previous
                .is_some_and(|(previous, until)| previous == from && now < until)
        {
            return None;
        }
        self.latched = Some(from);
        Some(from)
    }

    /// The SDP gave a new address at `now`: send there until the far end's RTP shows otherwise.
    /// The same address keeps the latch (a re-offer after a hold from behind a NAT).
    pub(crate) fn renegotiated(&mut self, negotiated: SocketAddr, now: Instant) {
        if negotiated != self.negotiated {
            let sent_to = self.latched.unwrap_or(self.negotiated);
            self.previous = (sent_to != negotiated).then_some((sent_to, now + STRAGGLERS));
            self.negotiated = negotiated;
            self.latched = None;
        }
    }

    /// The address the far end's SDP gave.
    pub(crate) fn negotiated(&self) -> SocketAddr {
        self.negotiated
    }
}

/// RTP version 2 with a payload type outside 64–95, where RTCP packet types fall when they
/// share the port (RFC 5761 §4).
pub(crate) fn looks_like_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && data[0] >> 6 == 2 && !(64..=95).contains(&(data[1] & 0x7f))
}

/// Reads the call's RTP socket for as long as the call's media run (abort the task to stop),
/// moving stream `stream` to where the far end's RTP comes from, and handing RTCP that shares
/// the port (rtcp-mux) to `rtcp`.
pub(crate) fn spawn(
    socket: Arc<MediaSocket>,
    media: MediaHandle,
    stream: u64,
    mut negotiated: watch::Receiver<SocketAddr>,
    rtcp: Option<mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>>,
) -> tokio::task::JoinHandle<()> {
    use tracing::Instrument as _;
    tokio::spawn(
        async move {
            let mut latch = Latch::new(*negotiated.borrow_and_update());
            let mut buffer = vec![0_u8; 2048];
            loop {
                tokio::select! {
                    received = socket.recv_from(&mut buffer) => match received {
                        Ok((len, from)) => {
                            let data = &buffer[..len];
                            if let Some(rtcp) = rtcp.as_ref().filter(|_| call_engine::rtcp::is_rtcp(data)) {
                                // The RTCP task gone means the media are stopping: nothing to do.
                                let _ = rtcp.send((data.to_vec(), from));
                                continue;
                            }
                            if let Some(to) = latch.on_datagram(from, data, Instant::now()) {
                                if to != latch.negotiated() {
                                    tracing::info!(%from, sdp = %latch.negotiated(), "symmetric RTP: sending where the far end's RTP comes from");
                                }
                                media.change(stream, StreamChange::Remote(to));
                            }
                        }
                        // ICMP errors surface here on some systems (port unreachable): they say
                        // nothing about where to send, and the socket stays usable.
                        Err(error) => tracing::debug!(%error, "RTP receive error"),
                    },
                    changed = negotiated.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        latch.renegotiated(*negotiated.borrow_and_update(), Instant::now());
                    }
                }
            }
        }
        .instrument(tracing::Span::current()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.resize(172, 0);
        p
    }

    #[test]
    fn the_first_rtp_packet_decides_and_later_ones_do_not() {
        let t = Instant::now();
        let sdp: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let nat: SocketAddr = "198.51.100.1:61000".parse().unwrap();
        let other: SocketAddr = "198.51.100.1:61002".parse().unwrap();
        let mut latch = Latch::new(sdp);
        assert_eq!(latch.on_datagram(nat, b"not rtp", t), None);
        assert_eq!(latch.on_datagram(nat, &rtp(200), t), None, "RTCP SR (mux)");
        assert_eq!(latch.on_datagram(nat, &rtp(0), t), Some(nat));
        assert_eq!(latch.on_datagram(other, &rtp(0), t), None, "latched");
        // A renegotiation to a new address opens the latch again.
        latch.renegotiated("10.0.0.5:4002".parse().unwrap(), t);
        assert_eq!(latch.on_datagram(other, &rtp(8), t), Some(other));
        // A re-offer of the same address keeps the latch.
        latch.renegotiated("10.0.0.5:4002".parse().unwrap(), t);
        assert_eq!(latch.on_datagram(nat, &rtp(0), t), None, "still latched");
        // RTP from where the SDP said: the destination stays (is set again), once.
        let mut latch = Latch::new(sdp);
        assert_eq!(latch.on_datagram(sdp, &rtp(0), t), Some(sdp));
        assert_eq!(latch.on_datagram(nat, &rtp(0), t), None);
    }

    #[test]
    fn after_a_move_the_old_streams_stragglers_do_not_pull_it_back() {
        let t = Instant::now();
        let first: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let second: SocketAddr = "192.0.2.7:4002".parse().unwrap();
        let nat: SocketAddr = "198.51.100.1:61000".parse().unwrap();
        let mut latch = Latch::new(first);
        assert_eq!(latch.on_datagram(first, &rtp(0), t), Some(first));
        // Moved to the second port: a packet still coming from the first is not latched onto,
        // the far end's RTP from the second is (and sets the destination again).
        latch.renegotiated(second, t);
        assert_eq!(latch.on_datagram(first, &rtp(0), t), None, "straggler");
        assert_eq!(latch.on_datagram(second, &rtp(8), t), Some(second));
        // And back: the second port's stragglers are ignored in turn.
        latch.renegotiated(first, t);
        assert_eq!(latch.on_datagram(second, &rtp(8), t), None, "straggler");
        assert_eq!(latch.on_datagram(first, &rtp(0), t), Some(first));
        assert_eq!(
            latch.on_datagram(second, &rtp(8), t),
            None,
            "latched on the first"
        );
        // Behind a NAT, what was sent to is the latched source, and that is what is ignored.
        let mut latch = Latch::new(first);
        assert_eq!(latch.on_datagram(nat, &rtp(0), t), Some(nat));
        latch.renegotiated(second, t);
        assert_eq!(latch.on_datagram(nat, &rtp(0), t), None, "the old mapping");
        let new_nat: SocketAddr = "198.51.100.1:61010".parse().unwrap();
        assert_eq!(latch.on_datagram(new_nat, &rtp(0), t), Some(new_nat));
    }

    #[test]
    fn a_far_end_that_keeps_sending_from_the_old_source_is_followed_after_the_stragglers() {
        // The first SDP (rewritten by a NAT's ALG) named the public mapping; the re-offer names
        // the private address, and RTP keeps coming from the mapping.
        let t = Instant::now();
        let mapping: SocketAddr = "198.51.100.1:61000".parse().unwrap();
        let private: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut latch = Latch::new(mapping);
        assert_eq!(latch.on_datagram(mapping, &rtp(0), t), Some(mapping));
        latch.renegotiated(private, t);
        assert_eq!(latch.on_datagram(mapping, &rtp(0), t), None);
        let later = t + STRAGGLERS;
        assert_eq!(latch.on_datagram(mapping, &rtp(0), later), Some(mapping));
    }

    #[test]
    fn rtp_is_told_from_rtcp_and_junk() {
        assert!(looks_like_rtp(&rtp(0)) && looks_like_rtp(&rtp(0x80 | 8)));
        assert!(!looks_like_rtp(&rtp(72)) && !looks_like_rtp(&rtp(0x80 | 72)));
        assert!(!looks_like_rtp(&[0x80, 0, 0]));
        assert!(!looks_like_rtp(&[0x40; 20]));
    }
}
