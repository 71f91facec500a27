//! The UDP socket media go through: a non-blocking `std::net::UdpSocket` watched by tokio for
//! readability only.
//!
//! A `tokio::net::UdpSocket` is registered with epoll for reading *and* writing, edge-triggered:
//! every datagram it sends frees send-buffer space a moment later, which the kernel reports as a
//! write-readiness event that tokio's reactor wakes up to process — one wasted wake-up per RTP
//! packet (≈ 18 % of the sender's CPU, BENCHMARKS.md). RTP never waits for send space (a packet
//! the kernel refuses is dropped and counted, not retried: it would be late anyway), so media
//! sockets send with a plain `sendto` and are registered with [`Interest::READABLE`] only.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A media (RTP or RTCP) socket; see the module docs.
#[derive(Debug)]
pub struct MediaSocket {
    fd: AsyncFd<UdpSocket>,
}

impl MediaSocket {
    /// Binds a socket to `addr` (port 0: any free port). Must be called within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_std(UdpSocket::bind(addr)?)
    }

    /// Wraps a bound socket, making it non-blocking and registering it for readability.
    pub fn from_std(socket: UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        // tokio 1.54 deprecates the safe constructors because an arbitrary `AsRawFd` type
        // could hand out a different descriptor later; its replacement is `unsafe`, which the
        // workspace forbids. Here the contract holds by construction: the `AsyncFd` owns the
        // `UdpSocket`, which owns its descriptor and never replaces or closes it early.
        #[allow(
            deprecated,
            reason = "sound for an owned std UdpSocket; see the comment above"
        )]
        let fd = AsyncFd::with_interest(socket, Interest::READABLE)?;
        Ok(Self { fd })
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Sends one datagram now; `WouldBlock` when the send buffer is full (never waits).
    pub fn try_send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.fd.get_ref().send_to(packet, to)
    }

    /// Waits for a datagram.
    pub async fn recv_from(&self, buffer: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let mut ready = self.fd.readable().await?;
            match ready.try_io(|fd| fd.get_ref().recv_from(buffer)) {
                Ok(received) => return received,
                // Readiness was stale (another reader took the datagram): wait again.
                Err(_would_block) => {}
            }
        }
    }

    /// The socket, for batched system calls (the `batch` module).
    pub(crate) fn std(&self) -> &UdpSocket {
        self.fd.get_ref()
    }

    /// Waits until the socket may have datagrams to read; the guard clears the readiness when
    /// a read finds nothing.
    pub(crate) async fn readable(
        &self,
    ) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, UdpSocket>> {
        self.fd.readable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_go_out_without_waiting_and_come_in_when_ready() {
        let a = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = b.local_addr().unwrap();
        assert_eq!(a.try_send_to(b"one", to).unwrap(), 3);
        let mut buffer = [0_u8; 16];
        let (len, from) = b.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..len], b"one");
        assert_eq!(from, a.local_addr().unwrap());
    }
}
