//! One scheduler task paces every RTP stream of the process.
//!
//! Streams live in a min-heap keyed by their next due instant; the task sleeps until the earliest
//! one, sends every packet that is due (catching up if it woke late), and goes back to sleep. One
//! timer for all calls instead of a sleeping task per call keeps wake-ups and memory per call
//! small. Each stream's start is offset by a random fraction of its packet time so that thousands
//! of streams do not all fire in the same millisecond.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use call_engine::rtp::RtpStream;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Counters of the media scheduler.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// RTP packets handed to the kernel.
    pub packets_sent: AtomicU64,
    /// Packets the kernel refused (buffer full, unreachable): dropped, never retried.
    pub send_errors: AtomicU64,
    /// Sum of how late each packet went out, in microseconds.
    pub lateness_us_total: AtomicU64,
    /// The latest any packet went out, in microseconds.
    pub lateness_us_max: AtomicU64,
}

enum MediaCommand {
    Start {
        id: u64,
        socket: Arc<UdpSocket>,
        remote: SocketAddr,
        stream: RtpStream,
    },
    Stop {
        id: u64,
    },
}

/// Handle to the scheduler task.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::UnboundedSender<MediaCommand>,
    next_id: Arc<AtomicU64>,
    stats: Arc<MediaStats>,
}

impl MediaHandle {
    /// Spawns the scheduler on the current tokio runtime.
    pub fn spawn() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MediaStats::default());
        tokio::spawn(run(rx, Arc::clone(&stats)));
        Self {
            tx,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
        }
    }

    /// Starts sending `stream` from `socket` to `remote`; returns the id to stop it with.
    pub fn start(&self, socket: Arc<UdpSocket>, remote: SocketAddr, stream: RtpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(MediaCommand::Start {
            id,
            socket,
            remote,
            stream,
        });
        id
    }

    /// Stops a stream (no-op if it already stopped).
    pub fn stop(&self, id: u64) {
        let _ = self.tx.send(MediaCommand::Stop { id });
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }
}

struct Entry {
    socket: Arc<UdpSocket>,
    remote: SocketAddr,
    stream: RtpStream,
}

async fn run(mut rx: mpsc::UnboundedReceiver<MediaCommand>, stats: Arc<MediaStats>) {
    let mut streams: HashMap<u64, Entry> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(std::time::Instant, u64)>> = BinaryHeap::new();
    let mut packet = Vec::with_capacity(1500);
    loop {
        let next = heap.peek().map(|Reverse((due, _))| *due);
        tokio::select! {
            command = rx.recv() => match command {
                None => break,
                Some(MediaCommand::Start { id, socket, remote, stream }) => {
                    heap.push(Reverse((stream.next_due(), id)));
                    streams.insert(id, Entry { socket, remote, stream });
                }
                Some(MediaCommand::Stop { id }) => {
                    // Its heap entry is discarded when it comes up.
                    streams.remove(&id);
                }
            },
            () = tokio::time::sleep_until(next.map_or_else(Instant::now, Instant::from_std)),
                if next.is_some() =>
            {
                let now = std::time::Instant::now();
                while let Some(&Reverse((due, id))) = heap.peek() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    let Some(entry) = streams.get_mut(&id) else { continue };
                    while entry.stream.poll_transmit(now, &mut packet) {
                        let late = now.saturating_duration_since(due).as_micros() as u64;
                        stats.lateness_us_total.fetch_add(late, Ordering::Relaxed);
                        stats.lateness_us_max.fetch_max(late, Ordering::Relaxed);
                        match entry.socket.try_send_to(&packet, entry.remote) {
                            Ok(_) => stats.packets_sent.fetch_add(1, Ordering::Relaxed),
                            Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    heap.push(Reverse((entry.stream.next_due(), id)));
                }
            }
        }
    }
}
