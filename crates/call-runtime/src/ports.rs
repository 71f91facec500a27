//! The RTP port of a call: any free port, or an even one from `[sip] rtp_port_range` (RFC 3550
//! §11: RTP on an even port, RTCP on the next one), so that a firewall can open just the range.

use std::io;
use std::net::{IpAddr, SocketAddr};

use rand::Rng as _;
use tokio::net::UdpSocket;

/// Binds a UDP socket for RTP on `ip`: a port chosen by the kernel, or an even port in
/// `range` (inclusive), tried from a random one on so that calls spread over the range.
pub(crate) async fn bind_rtp(ip: IpAddr, range: Option<(u16, u16)>) -> io::Result<UdpSocket> {
    let Some((low, high)) = range else {
        return UdpSocket::bind(SocketAddr::new(ip, 0)).await;
    };
    let candidates = even_ports(low, high);
    let count = candidates.len();
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the RTP port range {low}-{high} has no even port"),
        ));
    }
    let start = rand::thread_rng().gen_range(0..count);
    for i in 0..count {
        let port = candidates.nth_port((start + i) % count);
        match UdpSocket::bind(SocketAddr::new(ip, port)).await {
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

/// The even ports of `low..=high`.
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
    let count = if first > high || first % 2 == 1 {
        0
    } else {
        usize::from((high - first) / 2) + 1
    };
    EvenPorts { first, count }
}

/// Reads `"LOW-HIGH"` (inclusive, LOW ≤ HIGH, at least one even port, LOW ≥ 1024).
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
        return Err(format!("{text:?} has no even port for RTP"));
    }
    Ok((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_and_checked() {
        assert_eq!(parse_port_range("20000-29999"), Ok((20000, 29999)));
        assert_eq!(parse_port_range(" 40001 - 40002 "), Ok((40001, 40002)));
        for bad in [
            "",
            "20000",
            "a-b",
            "30000-20000",
            "80-90",
            "40001-40001",
            "1-70000",
        ] {
            assert!(parse_port_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_even_ports_are_candidates() {
        let e = even_ports(40001, 40006);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (0..e.len()).map(|n| e.nth_port(n)).collect::<Vec<_>>(),
            [40002, 40004, 40006]
        );
        assert_eq!(even_ports(65535, 65535).len(), 0);
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
