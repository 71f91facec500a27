//! Which call a datagram on a shared RTP or RTCP socket belongs to (`rtp_sockets = "shared"`).
//!
//! With a socket per call the socket says it; with one socket per scheduler shard the datagram
//! must. RTP is attributed, in this order:
//! 1. by its source address: the far end's address from its SDP, or the address the call
//!    latched onto (symmetric RTP) — if exactly one call has it;
//! 2. by its SSRC, once a call has learned its far end's SSRC;
//! 3. otherwise, to the one call whose far end's SDP named the datagram's IP address and that
//!    has not received RTP since its last negotiation: a NAT or SBC that rewrote the port. The
//!    call then latches onto that source and sends there (RFC 4961).
//!
//! Anything else is dropped and counted, in particular when several calls wait for RTP from the
//! same IP address: openum never guesses, so audio is never sent to a far end that is not the
//! call's. A far end whose SDP carries another IP address than its RTP comes from (a private
//! address behind a NAT) is therefore not followed in this mode; per-call sockets follow it.
//!
//! RTCP is attributed by the SSRCs of its report blocks (openum's SSRC is unique per call), then
//! its sender's SSRC (the far end's, learned from its RTP), then by source address as RTP.
//!
//! The last packets of a stream that ended or moved elsewhere (from the address it sent to, or
//! with the far end's SSRC) are nobody's for a while: they are not latched onto and not given
//! to another call by IP address, so a new call cannot take a finished call's far end for its
//! own.
//!
//! Pure: no sockets; time is an input ([`Demux::advance`]). The shard calls it for every
//! datagram.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What to do with a datagram.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum Verdict {
    /// It belongs to stream `id`; with `latch`, send the stream's RTP there from now on.
    Stream { id: u64, latch: Option<SocketAddr> },
    /// It belongs to no single call.
    Drop(DropCause),
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum DropCause {
    /// Neither RTP nor RTCP (on the RTCP socket: not RTCP).
    Malformed,
    /// No call expects it.
    Unknown,
    /// Several calls could own it.
    Ambiguous,
}

impl DropCause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ambiguous => "several calls could own it",
            Self::Malformed => "neither RTP nor RTCP",
            Self::Unknown => "no call expects it",
        }
    }
}

#[derive(Debug)]
struct Peer {
    /// The far end's RTP address from the latest SDP.
    negotiated: SocketAddr,
    /// Where its RTP came from since that negotiation.
    latched: Option<SocketAddr>,
    /// Its SSRC, once seen.
    far_ssrc: Option<u32>,
    /// Our stream's SSRC.
    our_ssrc: u32,
}

/// How long the SSRC of a far end whose call ended (or that changed its SSRC) is known as
/// nobody's: its last packets are dropped rather than given to a call waiting for RTP from its
/// IP address.
const GONE_SSRC: Duration = Duration::from_secs(30);

/// The calls of one shard and what identifies their datagrams.
#[derive(Debug)]
pub(crate) struct Demux {
    /// The time, as the shard last said ([`Self::advance`]).
    now: Instant,
    peers: HashMap<u64, Peer>,
    /// Negotiated and latched addresses → the calls that have them.
    by_address: HashMap<SocketAddr, Vec<u64>>,
    /// Calls not latched yet, by the IP address of their negotiated address.
    waiting_by_ip: HashMap<IpAddr, Vec<u64>>,
    by_far_ssrc: HashMap<u32, u64>,
    by_our_ssrc: HashMap<u32, u64>,
    /// Addresses a call stopped sending to (it ended, or a renegotiation moved it), for
    /// [`crate::symmetric::STRAGGLERS`]: their packets are not latched onto, and not given to
    /// another call by IP address.
    gone_addresses: Recent<SocketAddr>,
    /// SSRCs of far ends whose calls ended or who changed SSRC, for [`GONE_SSRC`].
    gone_ssrcs: Recent<u32>,
}

impl Default for Demux {
    fn default() -> Self {
        Self {
            now: Instant::now(),
            peers: HashMap::new(),
            by_address: HashMap::new(),
            waiting_by_ip: HashMap::new(),
            by_far_ssrc: HashMap::new(),
            by_our_ssrc: HashMap::new(),
            gone_addresses: Recent::default(),
            gone_ssrcs: Recent::default(),
        }
    }
}

impl Demux {
    /// The time is `now` (the shard says so before it hands over datagrams or commands).
    pub(crate) fn advance(&mut self, now: Instant) {
        self.now = now;
        self.gone_addresses.prune(now);
        self.gone_ssrcs.prune(now);
    }

    /// A stream to `negotiated` with our SSRC `our_ssrc` (replaces any stream `id`).
    pub(crate) fn insert(&mut self, id: u64, negotiated: SocketAddr, our_ssrc: u32) {
        self.remove(id);
        push(&mut self.by_address, negotiated, id);
        push(&mut self.waiting_by_ip, negotiated.ip(), id);
        self.by_our_ssrc.insert(our_ssrc, id);
        self.peers.insert(
            id,
            Peer {
                negotiated,
                latched: None,
                far_ssrc: None,
                our_ssrc,
            },
        );
    }

    /// Forgets stream `id`.
    pub(crate) fn remove(&mut self, id: u64) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        let stragglers = self.now + crate::symmetric::STRAGGLERS;
        pull(&mut self.by_address, peer.negotiated, id);
        self.gone_addresses.insert(peer.negotiated, stragglers);
        if let Some(latched) = peer.latched {
            pull(&mut self.by_address, latched, id);
            self.gone_addresses.insert(latched, stragglers);
        } else {
            pull(&mut self.waiting_by_ip, peer.negotiated.ip(), id);
        }
        if let Some(ssrc) = peer.far_ssrc {
            self.by_far_ssrc.remove(&ssrc);
            self.gone_ssrcs.insert(ssrc, self.now + GONE_SSRC);
        }
        if self.by_our_ssrc.get(&peer.our_ssrc) == Some(&id) {
            self.by_our_ssrc.remove(&peer.our_ssrc);
        }
    }

    /// The far end's SDP gave `negotiated`: if it is new, the call waits for RTP from there and
    /// may latch again (as `symmetric::Latch` does), and this returns true.
    pub(crate) fn renegotiated(&mut self, id: u64, negotiated: SocketAddr) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        if peer.negotiated == negotiated {
            return false;
        }
        let (old, latched) = (peer.negotiated, peer.latched.take());
        let sent_to = latched.unwrap_or(old);
        if sent_to != negotiated {
            self.gone_addresses
                .insert(sent_to, self.now + crate::symmetric::STRAGGLERS);
        }
        peer.negotiated = negotiated;
        pull(&mut self.by_address, old, id);
        match latched {
            Some(latched) => pull(&mut self.by_address, latched, id),
            None => pull(&mut self.waiting_by_ip, old.ip(), id),
        }
        push(&mut self.by_address, negotiated, id);
        push(&mut self.waiting_by_ip, negotiated.ip(), id);
        true
    }

    /// Where the RTP datagram `data` from `from` belongs.
    pub(crate) fn rtp(&mut self, from: SocketAddr, data: &[u8]) -> Verdict {
        if !crate::symmetric::looks_like_rtp(data) {
            return Verdict::Drop(DropCause::Malformed);
        }
        let ssrc = call_engine::rtcp::rtp_ssrc(data);
        let by_ssrc = ssrc.and_then(|s| self.by_far_ssrc.get(&s).copied());
        let id = match self.by_address.get(&from).map(Vec::as_slice) {
            Some(&[id]) => id,
            // Two calls were told the same address: only a learned SSRC tells them apart.
            Some(ids) => match by_ssrc.filter(|id| ids.contains(id)) {
                Some(id) => id,
                None => return Verdict::Drop(DropCause::Ambiguous),
            },
            None => match by_ssrc {
                Some(id) => id,
                // The last packets of a stream that ended or moved: nobody's.
                None if self.gone_addresses.contains(&from, self.now)
                    || ssrc.is_some_and(|s| self.gone_ssrcs.contains(&s, self.now)) =>
                {
                    return Verdict::Drop(DropCause::Unknown)
                }
                None => match self.waiting_by_ip.get(&from.ip()).map(Vec::as_slice) {
                    Some(&[id]) => id,
                    Some([_, _, ..]) => return Verdict::Drop(DropCause::Ambiguous),
                    _ => return Verdict::Drop(DropCause::Unknown),
                },
            },
        };
        let latch = self.latch(id, from);
        if let Some(ssrc) = ssrc {
            self.learn(id, ssrc);
        }
        Verdict::Stream { id, latch }
    }

    /// Where the RTCP datagram `data` from `from` belongs; `muxed`: it arrived on the RTP socket
    /// (rtcp-mux), else on the RTCP socket (port + 1 of the far end's RTP, RFC 3550 §11).
    pub(crate) fn rtcp(&self, from: SocketAddr, data: &[u8], muxed: bool) -> Verdict {
        if !call_engine::rtcp::is_rtcp(data) {
            return Verdict::Drop(DropCause::Malformed);
        }
        let (sender, reported) = call_engine::rtcp::ssrcs(data);
        let mut owners = reported.iter().filter_map(|s| self.by_our_ssrc.get(s));
        if let Some(&id) = owners.next() {
            return if owners.all(|&other| other == id) {
                Verdict::Stream { id, latch: None }
            } else {
                Verdict::Drop(DropCause::Ambiguous)
            };
        }
        if let Some(&id) = sender.and_then(|s| self.by_far_ssrc.get(&s)) {
            return Verdict::Stream { id, latch: None };
        }
        let rtp_from = if muxed {
            from
        } else {
            SocketAddr::new(from.ip(), from.port().wrapping_sub(1))
        };
        match self.by_address.get(&rtp_from).map(Vec::as_slice) {
            Some(&[id]) => Verdict::Stream { id, latch: None },
            Some([_, _, ..]) => Verdict::Drop(DropCause::Ambiguous),
            _ => Verdict::Drop(DropCause::Unknown),
        }
    }

    /// The call's first RTP since its negotiation came from `from`: the new destination if that
    /// is not the negotiated address.
    fn latch(&mut self, id: u64, from: SocketAddr) -> Option<SocketAddr> {
        let gone = self.gone_addresses.contains(&from, self.now);
        let peer = self.peers.get_mut(&id)?;
        if peer.latched.is_some() || (gone && from != peer.negotiated) {
            return None;
        }
        peer.latched = Some(from);
        let negotiated = peer.negotiated;
        pull(&mut self.waiting_by_ip, negotiated.ip(), id);
        if from == negotiated {
            return None;
        }
        push(&mut self.by_address, from, id);
        Some(from)
    }

    /// The call's far end sends with `ssrc` (kept unless another call already has it).
    fn learn(&mut self, id: u64, ssrc: u32) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if peer.far_ssrc == Some(ssrc) || self.by_far_ssrc.contains_key(&ssrc) {
            return;
        }
        if let Some(old) = peer.far_ssrc.replace(ssrc) {
            self.by_far_ssrc.remove(&old);
            self.gone_ssrcs.insert(old, self.now + GONE_SSRC);
        }
        self.by_far_ssrc.insert(ssrc, id);
    }
}

/// Keys that are remembered until a deadline, each (the deadlines of one set come in the order
/// of their insertion: one window per set).
#[derive(Debug)]
struct Recent<K> {
    until: HashMap<K, Instant>,
    order: VecDeque<(Instant, K)>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Self {
            until: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Recent<K> {
    fn insert(&mut self, key: K, until: Instant) {
        self.until.insert(key, until);
        self.order.push_back((until, key));
    }

    fn contains(&self, key: &K, now: Instant) -> bool {
        self.until.get(key).is_some_and(|&until| now < until)
    }

    /// Forgets what expired by `now`.
    fn prune(&mut self, now: Instant) {
        while let Some(&(until, key)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            // A later insertion of the same key has its own, later entry.
            if self.until.get(&key) == Some(&until) {
                self.until.remove(&key);
            }
        }
    }
}

fn push<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u64>>, key: K, id: u64) {
    let ids = map.entry(key).or_default();
    if !ids.contains(&id) {
        ids.push(id);
    }
}

fn pull<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u64>>, key: K, id: u64) {
    if let Some(ids) = map.get_mut(&key) {
        ids.retain(|&other| other != id);
        if ids.is_empty() {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.resize(172, 0xff);
        p
    }

    /// An RR from `sender` with one report block about `about`.
    fn rr(sender: u32, about: Option<u32>) -> Vec<u8> {
        let mut p = vec![0x80 | u8::from(about.is_some()), 201, 0, 1];
        p.extend_from_slice(&sender.to_be_bytes());
        if let Some(about) = about {
            p[3] = 7;
            p.extend_from_slice(&about.to_be_bytes());
            p.extend_from_slice(&[0; 20]);
        }
        p
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn to(id: u64) -> Verdict {
        Verdict::Stream { id, latch: None }
    }

    #[test]
    fn two_calls_to_the_same_ip_are_told_apart_by_port_then_by_ssrc() {
        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        demux.insert(2, addr("192.0.2.7:6002"), 0xA2);
        assert_eq!(demux.rtp(addr("192.0.2.7:6002"), &rtp(0xB2)), to(2));
        assert_eq!(demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)), to(1));
        // Now latched and known by SSRC: a packet from a third port is still the right call's,
        // and does not move where the call sends.
        assert_eq!(demux.rtp(addr("192.0.2.7:7000"), &rtp(0xB1)), to(1));
        assert_eq!(
            demux.rtp(addr("192.0.2.7:7000"), &rtp(0xB9)),
            Verdict::Drop(DropCause::Unknown)
        );
    }

    #[test]
    fn after_a_move_the_old_streams_stragglers_are_the_calls_but_do_not_pull_it_back() {
        let (first, second) = (addr("192.0.2.7:6000"), addr("192.0.2.7:6002"));
        let mut demux = Demux::default();
        demux.insert(1, first, 0xA1);
        assert_eq!(demux.rtp(first, &rtp(0xB1)), to(1));
        assert!(demux.renegotiated(1, second));
        // Still in flight from the first port: the call's (by SSRC), and no latch.
        assert_eq!(demux.rtp(first, &rtp(0xB1)), to(1));
        assert_eq!(demux.rtp(second, &rtp(0xB1)), to(1));
        // And back, before the far end learned our SSRC: no latch on the straggler either.
        let mut demux = Demux::default();
        demux.insert(1, first, 0xA1);
        assert!(demux.renegotiated(1, second));
        assert_eq!(
            demux.rtp(first, &rtp(0xB1)),
            Verdict::Drop(DropCause::Unknown),
            "straggler"
        );
        assert_eq!(
            demux.rtp(addr("192.0.2.7:7000"), &rtp(0xB1)),
            Verdict::Stream {
                id: 1,
                latch: Some(addr("192.0.2.7:7000"))
            },
            "a NAT's new mapping is still followed"
        );
        // A re-offer of the same address changes nothing.
        assert!(!demux.renegotiated(1, second));
    }

    #[test]
    fn a_far_end_that_keeps_sending_from_the_old_source_is_followed_after_the_stragglers() {
        let (mapping, moved) = (addr("192.0.2.7:6000"), addr("192.0.2.7:6100"));
        let t = Instant::now();
        let mut demux = Demux::default();
        demux.advance(t);
        demux.insert(1, mapping, 0xA1);
        assert_eq!(demux.rtp(mapping, &rtp(0xB1)), to(1));
        assert!(demux.renegotiated(1, moved));
        assert_eq!(demux.rtp(mapping, &rtp(0xB1)), to(1), "by SSRC, no latch");
        demux.advance(t + crate::symmetric::STRAGGLERS);
        assert_eq!(
            demux.rtp(mapping, &rtp(0xB1)),
            Verdict::Stream {
                id: 1,
                latch: Some(mapping)
            }
        );
    }

    #[test]
    fn an_ended_calls_last_packets_are_nobodys_not_the_next_waiting_calls() {
        // One trunk: every far end on one IP. W played and ended; X waits for its first RTP.
        let t = Instant::now();
        let (w, x) = (addr("192.0.2.7:6000"), addr("192.0.2.7:6002"));
        let mut demux = Demux::default();
        demux.advance(t);
        demux.insert(1, w, 0xA1);
        assert_eq!(demux.rtp(w, &rtp(0xB1)), to(1));
        demux.remove(1);
        demux.insert(2, x, 0xA2);
        // W's far end has not handled the BYE yet: from W's address, and with W's SSRC from a
        // port its SBC picked anew.
        assert_eq!(demux.rtp(w, &rtp(0xB1)), Verdict::Drop(DropCause::Unknown));
        assert_eq!(
            demux.rtp(addr("192.0.2.7:6500"), &rtp(0xB1)),
            Verdict::Drop(DropCause::Unknown)
        );
        // X's own RTP from where its SDP said: X's, no latch.
        assert_eq!(demux.rtp(x, &rtp(0xB2)), to(2));
        // A call that reuses W's address (the trunk gave W's port to a new call) owns it at once.
        demux.insert(3, w, 0xA3);
        assert_eq!(demux.rtp(w, &rtp(0xB3)), to(3));
        // Later, the window passed: an unknown SSRC from an unknown port of that IP is a NAT's
        // rewrite again, and goes to the one waiting call.
        demux.remove(3);
        demux.insert(4, addr("192.0.2.7:6004"), 0xA4);
        demux.advance(t + GONE_SSRC);
        assert_eq!(
            demux.rtp(addr("192.0.2.7:6600"), &rtp(0xB4)),
            Verdict::Stream {
                id: 4,
                latch: Some(addr("192.0.2.7:6600"))
            }
        );
        // The sets forget what expired.
        assert!(demux.gone_ssrcs.until.len() <= 1 && demux.gone_addresses.until.is_empty());
    }

    #[test]
    fn a_rewritten_port_is_latched_only_when_one_call_waits_for_that_ip() {
        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        let nat = addr("192.0.2.7:41000");
        assert_eq!(
            demux.rtp(nat, &rtp(0xB1)),
            Verdict::Stream {
                id: 1,
                latch: Some(nat)
            }
        );
        assert_eq!(demux.rtp(nat, &rtp(0xB1)), to(1), "latched once");

        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        demux.insert(2, addr("192.0.2.7:6002"), 0xA2);
        // Either call could be behind that port: neither latches, both keep their SDP address.
        assert_eq!(
            demux.rtp(addr("192.0.2.7:41000"), &rtp(0xB1)),
            Verdict::Drop(DropCause::Ambiguous)
        );
        // Once call 1 got its RTP from its SDP address, only call 2 waits for that IP.
        assert_eq!(demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)), to(1));
        assert_eq!(
            demux.rtp(addr("192.0.2.7:41002"), &rtp(0xB2)),
            Verdict::Stream {
                id: 2,
                latch: Some(addr("192.0.2.7:41002"))
            }
        );
        // A private SDP address behind a NAT is never matched with another IP.
        demux.insert(3, addr("10.0.0.5:4000"), 0xA3);
        assert_eq!(
            demux.rtp(addr("198.51.100.1:61000"), &rtp(0xB3)),
            Verdict::Drop(DropCause::Unknown)
        );
    }

    #[test]
    fn the_same_sdp_address_for_two_calls_needs_a_learned_ssrc() {
        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        demux.insert(2, addr("192.0.2.7:6000"), 0xA2);
        assert_eq!(
            demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)),
            Verdict::Drop(DropCause::Ambiguous)
        );
        demux.remove(2);
        assert_eq!(demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)), to(1));
    }

    #[test]
    fn a_renegotiation_opens_the_latch_again_and_forgets_the_old_addresses() {
        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        assert_eq!(demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)), to(1));
        assert!(
            !demux.renegotiated(1, addr("192.0.2.7:6000")),
            "same address"
        );
        assert!(demux.renegotiated(1, addr("192.0.2.8:6100")));
        assert_eq!(
            demux.rtp(addr("192.0.2.8:41000"), &rtp(0xB7)),
            Verdict::Stream {
                id: 1,
                latch: Some(addr("192.0.2.8:41000"))
            }
        );
        demux.remove(1);
        for from in ["192.0.2.7:6000", "192.0.2.8:6100", "192.0.2.8:41000"] {
            assert_eq!(
                demux.rtp(addr(from), &rtp(0xB1)),
                Verdict::Drop(DropCause::Unknown)
            );
        }
        assert!(demux.by_address.is_empty() && demux.waiting_by_ip.is_empty());
        assert!(demux.by_far_ssrc.is_empty() && demux.by_our_ssrc.is_empty());
    }

    #[test]
    fn rtcp_goes_by_report_block_then_sender_then_address() {
        let mut demux = Demux::default();
        demux.insert(1, addr("192.0.2.7:6000"), 0xA1);
        demux.insert(2, addr("192.0.2.7:6002"), 0xA2);
        // About our SSRC 0xA2, from anywhere.
        assert_eq!(
            demux.rtcp(addr("203.0.113.1:9"), &rr(0xC0, Some(0xA2)), false),
            to(2)
        );
        // From call 1's far end, known by the SSRC of its RTP.
        assert_eq!(demux.rtp(addr("192.0.2.7:6000"), &rtp(0xB1)), to(1));
        assert_eq!(
            demux.rtcp(addr("203.0.113.1:9"), &rr(0xB1, None), false),
            to(1)
        );
        // Port + 1 of call 2's RTP address, or the RTP address itself with rtcp-mux.
        assert_eq!(
            demux.rtcp(addr("192.0.2.7:6003"), &rr(0xC2, None), false),
            to(2)
        );
        assert_eq!(
            demux.rtcp(addr("192.0.2.7:6002"), &rr(0xC2, None), true),
            to(2)
        );
        assert_eq!(
            demux.rtcp(addr("192.0.2.7:6009"), &rr(0xC2, None), false),
            Verdict::Drop(DropCause::Unknown)
        );
        assert_eq!(
            demux.rtcp(addr("192.0.2.7:6003"), &rtp(0xB1), false),
            Verdict::Drop(DropCause::Malformed)
        );
    }
}
