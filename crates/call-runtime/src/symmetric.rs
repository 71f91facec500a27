//! Symmetric RTP (RFC 4961): a call's RTP goes to where the far end's RTP comes from. Behind a
//! NAT the address in the far end's SDP is its private one; the first RTP packet it sends shows
//! the public address and port its NAT maps, and openum sends there from then on. The latch is
//! taken again after each renegotiation (a new address in an offer or answer), on RTP from
//! anywhere but the address openum sent to before it: packets from there are the old stream's
//! stragglers (still in flight, or reflected), not where the far end now wants its audio.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::media::{MediaHandle, StreamChange};
use crate::udp::MediaSocket;

/// Where to send, given what arrived. Pure, so that its rules are tested without sockets.
#[derive(Debug)]
pub(crate) struct Latch {
    /// The address the far end's SDP gave.
    negotiated: SocketAddr,
    /// The source of the far end's RTP since that negotiation.
    latched: Option<SocketAddr>,
    /// Where RTP went before the last renegotiation moved it: not latched onto.
    previous: Option<SocketAddr>,
}

impl Latch {
    pub(crate) fn new(negotiated: SocketAddr) -> Self {
        Self {
            negotiated,
            latched: None,
            previous: None,
        }
    }

    /// A datagram `data` from `from`: the new destination if it is the far end's first RTP
    /// packet since the negotiation and comes from elsewhere than the SDP said (and than where
    /// the stream went before the negotiation).
    pub(crate) fn on_datagram(&mut self, from: SocketAddr, data: &[u8]) -> Option<SocketAddr> {
        if self.latched.is_some() || !looks_like_rtp(data) || self.previous == Some(from) {
            return None;
        }
        self.latched = Some(from);
        (from != self.negotiated).then_some(from)
    }

    /// The SDP gave a new address: send there until the far end's RTP shows otherwise. The
    /// same address keeps the latch (a re-offer after a hold from behind a NAT).
    pub(crate) fn renegotiated(&mut self, negotiated: SocketAddr) {
        if negotiated != self.negotiated {
            let sent_to = self.latched.unwrap_or(self.negotiated);
            self.previous = (sent_to != negotiated).then_some(sent_to);
            self.negotiated = negotiated;
            self.latched = None;
        }
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
                            if let Some(to) = latch.on_datagram(from, data) {
                                tracing::info!(%from, sdp = %latch.negotiated, "symmetric RTP: sending where the far end's RTP comes from");
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
                        latch.renegotiated(*negotiated.borrow_and_update());
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
        let sdp: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let nat: SocketAddr = "198.51.100.1:61000".parse().unwrap();
        let other: SocketAddr = "198.51.100.1:61002".parse().unwrap();
        let mut latch = Latch::new(sdp);
        assert_eq!(latch.on_datagram(nat, b"not rtp"), None);
        assert_eq!(latch.on_datagram(nat, &rtp(200)), None, "RTCP SR (mux)");
        assert_eq!(latch.on_datagram(nat, &rtp(0)), Some(nat));
        assert_eq!(latch.on_datagram(other, &rtp(0)), None, "latched");
        // A renegotiation to a new address opens the latch again.
        latch.renegotiated("10.0.0.5:4002".parse().unwrap());
        assert_eq!(latch.on_datagram(other, &rtp(8)), Some(other));
        // A re-offer of the same address keeps the latch.
        latch.renegotiated("10.0.0.5:4002".parse().unwrap());
        assert_eq!(latch.on_datagram(nat, &rtp(0)), None, "still latched");
        // RTP from where the SDP said changes nothing.
        let mut latch = Latch::new(sdp);
        assert_eq!(latch.on_datagram(sdp, &rtp(0)), None);
        assert_eq!(latch.on_datagram(nat, &rtp(0)), None);
    }

    #[test]
    fn after_a_move_the_old_streams_stragglers_do_not_pull_it_back() {
        let first: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let second: SocketAddr = "192.0.2.7:4002".parse().unwrap();
        let nat: SocketAddr = "198.51.100.1:61000".parse().unwrap();
        let mut latch = Latch::new(first);
        assert_eq!(latch.on_datagram(first, &rtp(0)), None);
        // Moved to the second port: a packet still coming from the first is not latched onto,
        // the far end's RTP from the second is.
        latch.renegotiated(second);
        assert_eq!(latch.on_datagram(first, &rtp(0)), None, "straggler");
        assert_eq!(latch.on_datagram(second, &rtp(8)), None, "as negotiated");
        // And back: the second port's stragglers are ignored in turn.
        latch.renegotiated(first);
        assert_eq!(latch.on_datagram(second, &rtp(8)), None, "straggler");
        assert_eq!(latch.on_datagram(first, &rtp(0)), None);
        assert_eq!(
            latch.on_datagram(second, &rtp(8)),
            None,
            "latched on the first"
        );
        // Behind a NAT, what was sent to is the latched source, and that is what is ignored.
        let mut latch = Latch::new(first);
        assert_eq!(latch.on_datagram(nat, &rtp(0)), Some(nat));
        latch.renegotiated(second);
        assert_eq!(latch.on_datagram(nat, &rtp(0)), None, "the old mapping");
        let new_nat: SocketAddr = "198.51.100.1:61010".parse().unwrap();
        assert_eq!(latch.on_datagram(new_nat, &rtp(0)), Some(new_nat));
    }

    #[test]
    fn rtp_is_told_from_rtcp_and_junk() {
        assert!(looks_like_rtp(&rtp(0)) && looks_like_rtp(&rtp(0x80 | 8)));
        assert!(!looks_like_rtp(&rtp(72)) && !looks_like_rtp(&rtp(0x80 | 72)));
        assert!(!looks_like_rtp(&[0x80, 0, 0]));
        assert!(!looks_like_rtp(&[0x40; 20]));
    }
}
