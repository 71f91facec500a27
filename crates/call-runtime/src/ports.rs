//! The RTP and RTCP ports of a call (RFC 3550 §11: RTP on an even port, RTCP on the next one):
//! any free pair, or one from `[sip] rtp_port_range`, so that a firewall can open just the range.

use std::io;
use std::net::{IpAddr, SocketAddr};

use crate::udp::MediaSocket;
use rand::Rng as _;

/// How many kernel-chosen ports are tried for a free pair before giving up.
const FREE_PAIR_TRIES: usize = 64;

/// Binds the RTP socket (even port) and the RTCP socket (the next port) on `ip`: a pair the
/// kernel offers, or one in `range` (inclusive), tried from a random one on so that calls spread
/// over the range.
pub(crate) async fn bind_pair(
    ip: IpAddr,
    range: Option<(u16, u16)>,
) -> io::Result<(MediaSocket, MediaSocket)> {
    if range.is_some() {
        let mut taken = Vec::new();
        loop {
            // Sockets whose neighbour was taken stay bound (in `taken`) until a pair is found,
            // so the search moves on; bind_rtp fails once the range is exhausted.
            let rtp = bind_rtp(ip, range).await?;
            // bind_rtp only returns ports whose successor is in the range.
            let port = rtp.local_addr()?.port();
            match MediaSocket::bind(SocketAddr::new(ip, port + 1)) {
                Ok(rtcp) => return Ok((rtp, rtcp)),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => taken.push(rtp),
                Err(e) => return Err(e),
            }
        }
    }
    for _ in 0..FREE_PAIR_TRIES {
        let rtp = MediaSocket::bind(SocketAddr::new(ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 == 1 || port == u16::MAX {
            continue;
        }
        match MediaSocket::bind(SocketAddr::new(ip, port + 1)) {
            Ok(rtcp) => return Ok((rtp, rtcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free even/odd port pair for RTP/RTCP in {FREE_PAIR_TRIES} tries"),
    ))
}

/// Binds a UDP socket for RTP on `ip`: a port chosen by the kernel, or an even port in
/// `range` (inclusive) whose successor (for RTCP) is in the range too.
pub(crate) async fn bind_rtp(ip: IpAddr, range: Option<(u16, u16)>) -> io::Result<MediaSocket> {
    let Some((low, high)) = range else {
        return MediaSocket::bind(SocketAddr::new(ip, 0));
    };
    let candidates = even_ports(low, high);
    let count = candidates.len();
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the RTP port range {low}-{high} has no even/odd port pair"),
        ));
    }
    let start = rand::thread_rng().gen_range(0..count);
    for i in 0..count {
        let port = candidates.nth_port((start + i) % count);
        match MediaSocket::bind(SocketAddr::new(ip, port)) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("every RTP port in {low}-{high} is in use"),
    ))
}

/// The even ports of `low..=high` whose successor is in the range too.
struct EvenPorts {
    first: u16,
    count: usize,
}

impl EvenPorts {
    fn len(&self) -> usize {
        self.count
    }

    fn nth_port(&self, n: usize) -> u16 {
        // n < count, and first + 2·(count − 1) ≤ high: no overflow.
        self.first + u16::try_from(n * 2).unwrap_or(0)
    }
}

fn even_ports(low: u16, high: u16) -> EvenPorts {
    let first = low.saturating_add(low % 2);
    let count = if first >= high || first % 2 == 1 {
        0
    } else {
        usize::from((high - first - 1) / 2) + 1
    };
    EvenPorts { first, count }
}

/// Reads `"LOW-HIGH"` (inclusive, LOW ≤ HIGH, at least one even/odd pair, LOW ≥ 1024).
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not LOW-HIGH (e.g. \"20000-29999\")"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|e| format!("{text:?}: {p:?} is not a port number ({e})"))
    };
    let (low, high) = (parse(low)?, parse(high)?);
    if low < 1024 {
        return Err(format!("{text:?} starts below 1024"));
    }
    if low > high {
        return Err(format!("{text:?} ends before it starts"));
    }
    if even_ports(low, high).len() == 0 {
        return Err(format!(
            "{text:?} has no even port with the next one free for RTCP"
        ));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_and_checked() {
        assert_eq!(parse_port_range("20000-29999"), Ok((20000, 29999)));
        assert_eq!(parse_port_range(" 40001 - 40003 "), Ok((40001, 40003)));
        for bad in [
            "",
            "20000",
            "a-b",
            "30000-20000",
            "80-90",
            "40001-40002",
            "40000-40000",
            "1-70000",
        ] {
            assert!(parse_port_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_even_ports_are_candidates() {
        let e = even_ports(40001, 40006);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (0..e.len()).map(|n| e.nth_port(n)).collect::<Vec<_>>(),
            [40002, 40004],
            "40006 has no successor in the range"
        );
        assert_eq!(even_ports(40000, 40001).len(), 1);
        assert_eq!(even_ports(65535, 65535).len(), 0);
    }

    #[tokio::test]
    async fn pairs_are_even_and_odd_neighbours() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        for range in [None, Some((46960, 46969))] {
            let (rtp, rtcp) = bind_pair(ip, range).await.unwrap();
            let (a, b) = (
                rtp.local_addr().unwrap().port(),
                rtcp.local_addr().unwrap().port(),
            );
            assert!(a % 2 == 0 && b == a + 1, "{a} {b}");
        }
    }

    #[tokio::test]
    async fn sockets_come_from_the_range_until_it_is_full() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let range = Some((46950, 46955));
        let mut held = Vec::new();
        for _ in 0..3 {
            let socket = bind_rtp(ip, range).await.unwrap();
            let port = socket.local_addr().unwrap().port();
            assert!((46950..=46955).contains(&port) && port % 2 == 0, "{port}");
            held.push(socket);
        }
        let full = bind_rtp(ip, range).await.unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::AddrInUse);
        assert!(full.to_string().contains("46950-46955"), "{full}");
    }
}
