//! Many datagrams per system call on one socket: `sendmmsg` for every RTP packet a scheduler
//! shard has due in one wake-up, `recvmmsg` for what arrived on its shared sockets
//! (`rtp_sockets = "shared"`). Through nix's safe wrappers: the workspace forbids `unsafe`.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{
    recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrLike as _, SockaddrStorage,
};

use crate::udp::MediaSocket;

/// Messages per system call (well below the kernel's UIO_MAXIOV of 1024).
const CHUNK: usize = 256;
/// Largest datagram read (RTP and RTCP of a voice call are far smaller).
const DATAGRAM: usize = 2048;
/// Datagrams read per `recvmmsg`.
const RECV_CHUNK: usize = 64;

/// Packets queued for one `sendmmsg` round: their bytes back to back, and each one's end and
/// destination.
pub(crate) struct SendBatch<T> {
    bytes: Vec<u8>,
    packets: Vec<(usize, SocketAddr)>,
    /// What each packet is reported by, in the same order.
    tags: Vec<T>,
}

impl<T> Default for SendBatch<T> {
    fn default() -> Self {
        Self {
            bytes: Vec::with_capacity(CHUNK * 200),
            packets: Vec::with_capacity(CHUNK),
            tags: Vec::with_capacity(CHUNK),
        }
    }
}

impl<T> SendBatch<T> {
    /// Queues `packet` for `to`, with `tag` to report it by.
    pub(crate) fn push(&mut self, packet: &[u8], to: SocketAddr, tag: T) {
        self.bytes.extend_from_slice(packet);
        self.packets.push((self.bytes.len(), to));
        self.tags.push(tag);
    }

    /// Packets queued.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Sends everything queued from `socket` and empties the batch. `done` hears of each
    /// packet, in order: its tag and whether the kernel took it. A packet the kernel refuses
    /// is not retried (it would be late): `done` gets the error, and the rest are still sent.
    pub(crate) fn flush(&mut self, socket: &MediaSocket, mut done: impl FnMut(T, io::Result<()>)) {
        let fd = socket.std().as_raw_fd();
        let mut tags = self.tags.drain(..);
        let mut report = |n: usize, result: &dyn Fn() -> io::Result<()>| {
            for tag in tags.by_ref().take(n) {
                done(tag, result());
            }
        };
        let mut next = 0;
        while next < self.packets.len() {
            let chunk = &self.packets[next..self.packets.len().min(next + CHUNK)];
            let start_of = |i: usize| {
                if next + i == 0 {
                    0
                } else {
                    self.packets[next + i - 1].0
                }
            };
            let slices: Vec<[IoSlice<'_>; 1]> = chunk
                .iter()
                .enumerate()
                .map(|(i, (end, _))| [IoSlice::new(&self.bytes[start_of(i)..*end])])
                .collect();
            let addresses: Vec<Option<SockaddrStorage>> = chunk
                .iter()
                .map(|(_, to)| Some(SockaddrStorage::from(*to)))
                .collect();
            // nix's headers hold raw pointers (not `Send`), so they cannot live in a shard's
            // future across its awaits: two small allocations per system call instead.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
            let sent = sendmmsg(
                fd,
                &mut headers,
                &slices,
                &addresses,
                [],
                MsgFlags::MSG_DONTWAIT,
            )
            .map(|results| results.count());
            drop(slices);
            match sent {
                // The kernel took the first `n`; the one after them (if any) failed and is
                // reported by the next call.
                Ok(n) if n > 0 => {
                    report(n, &|| Ok(()));
                    next += n;
                }
                Ok(_) => {
                    report(1, &|| Err(io::Error::other("sendmmsg sent nothing")));
                    next += 1;
                }
                Err(errno) => {
                    report(1, &|| Err(io::Error::from(errno)));
                    next += 1;
                }
            }
        }
        self.bytes.clear();
        self.packets.clear();
    }
}

/// Buffers for reading a shared socket with `recvmmsg`.
pub(crate) struct RecvBatch {
    buffers: Vec<u8>,
    received: Vec<(usize, Option<SocketAddr>)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            buffers: vec![0; RECV_CHUNK * DATAGRAM],
            received: Vec::with_capacity(RECV_CHUNK),
        }
    }
}

impl RecvBatch {
    /// Reads what is waiting on `socket` without blocking (`WouldBlock` if nothing is) and
    /// hands each datagram to `each` with its source. Returns how many were read; fewer than
    /// a full batch means the socket is drained.
    pub(crate) fn read(
        &mut self,
        socket: &std::net::UdpSocket,
        mut each: impl FnMut(&[u8], SocketAddr),
    ) -> io::Result<usize> {
        self.received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .buffers
                .chunks_mut(DATAGRAM)
                .map(|b| [IoSliceMut::new(b)])
                .collect();
            // Not kept between reads: see `SendBatch::flush`.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RECV_CHUNK, None);
            let results = recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for message in results {
                self.received
                    .push((message.bytes, message.address.and_then(to_socket_addr)));
            }
        }
        for (i, &(len, from)) in self.received.iter().enumerate() {
            // A datagram without an IP source cannot come on a UDP/IP socket.
            if let Some(from) = from {
                let start = i * DATAGRAM;
                each(&self.buffers[start..start + len.min(DATAGRAM)], from);
            }
        }
        Ok(self.received.len())
    }

    /// Datagrams per read.
    pub(crate) fn capacity() -> usize {
        RECV_CHUNK
    }
}

fn to_socket_addr(address: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    address
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
        .filter(|_| address.len() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_in_order_and_comes_in_with_its_sources() {
        let sender = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let receivers: Vec<MediaSocket> = (0..2)
            .map(|_| MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap())
            .collect();
        let mut batch = SendBatch::<u64>::default();
        // More than a chunk, to two destinations.
        for i in 0..(CHUNK + 10) {
            let to = receivers[i % 2].local_addr().unwrap();
            batch.push(&[u8::try_from(i % 256).unwrap(); 20], to, i as u64);
        }
        let mut reported = Vec::new();
        batch.flush(&sender, |tag, result| {
            result.unwrap();
            reported.push(tag);
        });
        assert_eq!(reported, (0..(CHUNK + 10) as u64).collect::<Vec<_>>());
        assert_eq!(batch.len(), 0);
        let mut seen = Vec::new();
        let mut reader = RecvBatch::default();
        while seen.len() < (CHUNK + 10) / 2 {
            let _ready = receivers[1].readable().await.unwrap();
            match reader.read(receivers[1].std(), |data, from| {
                assert_eq!(from, sender.local_addr().unwrap());
                seen.push(data[0]);
            }) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        let odd: Vec<u8> = (0..(CHUNK + 10))
            .filter(|i| i % 2 == 1)
            .map(|i| (i % 256) as u8)
            .collect();
        assert_eq!(seen, odd);
    }

    #[test]
    fn a_refused_packet_is_reported_and_the_rest_still_go() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let sender = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = SendBatch::<u64>::default();
        batch.push(b"ok", sink.local_addr().unwrap(), 1);
        // An IPv6 destination from an IPv4 socket: refused (EAFNOSUPPORT / EINVAL).
        batch.push(b"refused", "[::1]:9".parse().unwrap(), 2);
        batch.push(b"ok too", sink.local_addr().unwrap(), 3);
        let mut results = Vec::new();
        batch.flush(&sender, |tag, result| results.push((tag, result.is_ok())));
        assert_eq!(results, [(1, true), (2, false), (3, true)]);
    }
}
