//! A few scheduler tasks (one per core) pace every RTP stream of the process.
//!
//! In each shard, streams live in a min-heap keyed by their next due instant; the task sleeps
//! until the earliest one, sends every packet that is due (catching up if it woke late), and goes
//! back to sleep. One timer per shard instead of a sleeping task per call keeps wake-ups and
//! memory per call small; one shard per core lets the sends use every core. Each stream's start is
//! offset by a random fraction of its packet time so that thousands of streams do not all fire in
//! the same millisecond.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use call_engine::rtp::RtpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::rtcp::{RtcpStats, StreamCounters};
use crate::srtp::{send, SrtpSender};
use crate::udp::MediaSocket;

/// Resolution and range of the lateness histogram.
const BUCKET_US: u64 = 50;
const BUCKETS: usize = 2000; // 0..100 ms

/// Counters of the media scheduler.
#[derive(Debug)]
pub struct MediaStats {
    /// RTP packets handed to the kernel.
    pub packets_sent: AtomicU64,
    /// Packets the kernel refused (buffer full, unreachable): dropped, never retried.
    pub send_errors: AtomicU64,
    /// Sum of how late each packet went out, in microseconds.
    pub lateness_us_total: AtomicU64,
    /// The latest any packet went out, in microseconds.
    pub lateness_us_max: AtomicU64,
    /// How late packets went out: 50 µs buckets up to 100 ms (the last bucket holds the rest).
    lateness_histogram: Box<[AtomicU64]>,
}

impl Default for MediaStats {
    fn default() -> Self {
        Self {
            packets_sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            lateness_us_total: AtomicU64::new(0),
            lateness_us_max: AtomicU64::new(0),
            lateness_histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl MediaStats {
    /// Records that a packet went out `late_us` after it was due.
    pub fn record_lateness(&self, late_us: u64) {
        self.lateness_us_total.fetch_add(late_us, Ordering::Relaxed);
        self.lateness_us_max.fetch_max(late_us, Ordering::Relaxed);
        let bucket =
            usize::try_from(late_us / BUCKET_US).map_or(BUCKETS - 1, |b| b.min(BUCKETS - 1));
        self.lateness_histogram[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The lateness below which `fraction` (0..=1) of packets went out, in microseconds
    /// (upper edge of the 50 µs bucket).
    pub fn lateness_percentile_us(&self, fraction: f64) -> u64 {
        let counts: Vec<u64> = self
            .lateness_histogram
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * fraction).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return (i as u64 + 1) * BUCKET_US;
            }
        }
        BUCKETS as u64 * BUCKET_US
    }

    /// Clears every counter (benchmarks measure one phase at a time).
    pub fn reset(&self) {
        self.packets_sent.store(0, Ordering::Relaxed);
        self.send_errors.store(0, Ordering::Relaxed);
        self.lateness_us_total.store(0, Ordering::Relaxed);
        self.lateness_us_max.store(0, Ordering::Relaxed);
        for c in self.lateness_histogram.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

enum MediaCommand {
    Start {
        id: u64,
        socket: Arc<MediaSocket>,
        remote: SocketAddr,
        stream: RtpStream,
        srtp: Option<SrtpSender>,
        counters: Option<Arc<StreamCounters>>,
    },
    Stop {
        id: u64,
    },
    Change {
        id: u64,
        change: StreamChange,
    },
}

/// A change to a running stream, from offer/answer in the dialog.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StreamChange {
    /// Send to a new address with a new codec / payload type / packet time.
    Plan(call_engine::sdp::MediaPlan),
    /// Send to a new address only (symmetric RTP: where the far end's RTP comes from).
    Remote(SocketAddr),
    /// Stop sending for now, keeping the place in the message.
    Pause,
    /// Send again from where it paused.
    Resume,
}

/// Handle to the scheduler shards.
#[derive(Clone)]
pub struct MediaHandle {
    shards: Arc<[mpsc::UnboundedSender<MediaCommand>]>,
    next_id: Arc<AtomicU64>,
    stats: Arc<MediaStats>,
    rtcp: Arc<RtcpStats>,
}

impl MediaHandle {
    /// Spawns one scheduler shard per available core on the current tokio runtime.
    pub fn spawn() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::spawn_shards(cores)
    }

    /// Spawns `shards` scheduler tasks (at least one).
    pub fn spawn_shards(shards: usize) -> Self {
        let stats = Arc::new(MediaStats::default());
        let shards: Arc<[_]> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(rx, Arc::clone(&stats)));
                tx
            })
            .collect();
        Self {
            shards,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
            rtcp: Arc::default(),
        }
    }

    fn shard(&self, id: u64) -> &mpsc::UnboundedSender<MediaCommand> {
        let index = usize::try_from(id).unwrap_or(0) % self.shards.len();
        &self.shards[index]
    }

    /// Starts sending `stream` from `socket` to `remote`; returns the id to stop it with.
    pub fn start(&self, socket: Arc<MediaSocket>, remote: SocketAddr, stream: RtpStream) -> u64 {
        self.start_with(socket, remote, stream, None, None)
    }

    /// [`Self::start`], every packet protected by `srtp` when given (see [`crate::srtp`]), and
    /// what is sent counted into `counters` (for RTCP) when given.
    pub fn start_with(
        &self,
        socket: Arc<MediaSocket>,
        remote: SocketAddr,
        stream: RtpStream,
        srtp: Option<SrtpSender>,
        counters: Option<Arc<StreamCounters>>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sent = self.shard(id).send(MediaCommand::Start {
            id,
            socket,
            remote,
            stream,
            srtp,
            counters,
        });
        if sent.is_err() {
            // The shard's task only ends when the runtime shuts down (or it panicked).
            tracing::error!(
                stream = id,
                "the RTP scheduler is gone: the stream is not sent"
            );
        }
        id
    }

    /// Stops a stream (no-op if it already stopped).
    pub fn stop(&self, id: u64) {
        // A scheduler that is gone sends nothing any more: the stream is stopped either way.
        let _ = self.shard(id).send(MediaCommand::Stop { id });
    }

    /// Changes a running stream (no-op if it stopped).
    pub fn change(&self, id: u64, change: StreamChange) {
        // A scheduler that is gone sends nothing any more: there is no stream left to change.
        let _ = self.shard(id).send(MediaCommand::Change { id, change });
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }

    /// RTCP figures of every call.
    pub fn rtcp_stats(&self) -> &Arc<RtcpStats> {
        &self.rtcp
    }
}

struct Entry {
    socket: Arc<MediaSocket>,
    remote: SocketAddr,
    stream: RtpStream,
    srtp: Option<SrtpSender>,
    counters: Option<Arc<StreamCounters>>,
}

async fn run(mut rx: mpsc::UnboundedReceiver<MediaCommand>, stats: Arc<MediaStats>) {
    let mut streams: HashMap<u64, Entry> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(std::time::Instant, u64)>> = BinaryHeap::new();
    let mut packet = Vec::with_capacity(1500);
    loop {
        let next = heap.peek().map(|Reverse((due, _))| *due);
        tokio::select! {
            // Commands first: a pause or a new destination queued before a packet fell due
            // applies to that packet.
            biased;
            command = rx.recv() => match command {
                None => break,
                Some(MediaCommand::Start { id, socket, remote, stream, srtp, counters }) => {
                    heap.push(Reverse((stream.next_due(), id)));
                    streams.insert(id, Entry { socket, remote, stream, srtp, counters });
                }
                Some(MediaCommand::Stop { id }) => {
                    // Its heap entry is discarded when it comes up.
                    streams.remove(&id);
                }
                Some(MediaCommand::Change { id, change }) => {
                    if let Some(entry) = streams.get_mut(&id) {
                        let due = entry.stream.next_due();
                        let paused = entry.stream.is_paused();
                        match change {
                            StreamChange::Plan(plan) => {
                                entry.remote = plan.remote;
                                entry.stream.change_plan(&plan);
                            }
                            StreamChange::Remote(remote) => entry.remote = remote,
                            StreamChange::Pause => entry.stream.pause(),
                            StreamChange::Resume => {
                                entry.stream.resume(std::time::Instant::now());
                            }
                        }
                        // A stream whose schedule changed gets a new heap entry; the old one is
                        // recognised as stale when it comes up.
                        let (new_due, new_paused) =
                            (entry.stream.next_due(), entry.stream.is_paused());
                        if !new_paused && (paused || new_due != due) {
                            heap.push(Reverse((new_due, id)));
                        }
                    }
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
                    // Paused, or rescheduled by a change (which pushed its own entry).
                    if entry.stream.is_paused() || entry.stream.next_due() != due {
                        continue;
                    }
                    loop {
                        let packet_due = entry.stream.next_due();
                        if !entry.stream.poll_transmit(now, &mut packet) {
                            break;
                        }
                        let late = now.saturating_duration_since(packet_due).as_micros();
                        stats.record_lateness(u64::try_from(late).unwrap_or(u64::MAX));
                        match send(entry.srtp.as_mut(), &entry.socket, &packet, entry.remote) {
                            Ok(_) => {
                                // RTCP counts the RTP payload octets (RFC 3550 §6.4.1), before
                                // any SRTP tag.
                                if let Some(counters) = &entry.counters {
                                    counters.count(packet.len() - call_engine::rtp::HEADER_LEN);
                                }
                                stats.packets_sent.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    heap.push(Reverse((entry.stream.next_due(), id)));
                }
            }
        }
    }
}
