//! A few scheduler tasks (one per core) pace every RTP stream of the process.
//!
//! In each shard, streams live in a min-heap keyed by their next due instant; the task sleeps
//! until the earliest one, sends every packet that is due (catching up if it woke late), and goes
//! back to sleep. One timer per shard instead of a sleeping task per call keeps wake-ups and
//! memory per call small; one shard per core lets the sends use every core. Each stream's start is
//! offset by a random fraction of its packet time so that thousands of streams do not all fire in
//! the same millisecond.
//!
//! # Sockets (`[sip] rtp_sockets`)
//!
//! - `per-call`: every call has its own RTP and RTCP socket; the shard sends each packet with
//!   one `sendto` on the call's socket, and a task per call reads it (symmetric RTP, RTCP).
//! - `shared`: each shard owns one RTP socket and one RTCP socket (RTP port + 1), which every
//!   call on the shard advertises in its SDP. A wake-up sends all its due packets with one
//!   `sendmmsg`, and the shard itself reads both sockets with `recvmmsg`, handing each datagram
//!   to its call by the `demux` module (symmetric-RTP latching included) or dropping and counting
//!   it. SRTP protects each packet before it joins the batch.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use call_engine::rtp::RtpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::batch::{RecvBatch, SendBatch};
use crate::demux::{Demux, DropCause, Verdict};
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
    /// Shared sockets: datagrams read and handed to a call.
    pub datagrams_received: AtomicU64,
    /// Shared sockets: datagrams dropped because no call expects them.
    pub dropped_unknown: AtomicU64,
    /// Shared sockets: datagrams dropped because several calls could own them.
    pub dropped_ambiguous: AtomicU64,
    /// Shared sockets: datagrams dropped as neither RTP nor RTCP, or RTCP for a call that does
    /// not run RTCP (SRTP).
    pub dropped_malformed: AtomicU64,
    /// Shared sockets: `sendmmsg` calls (packets sent ÷ this = the mean batch).
    pub send_batches: AtomicU64,
}

impl Default for MediaStats {
    fn default() -> Self {
        Self {
            packets_sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            lateness_us_total: AtomicU64::new(0),
            lateness_us_max: AtomicU64::new(0),
            lateness_histogram: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            datagrams_received: AtomicU64::new(0),
            dropped_unknown: AtomicU64::new(0),
            dropped_ambiguous: AtomicU64::new(0),
            dropped_malformed: AtomicU64::new(0),
            send_batches: AtomicU64::new(0),
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

    /// Datagrams dropped by the shared sockets' demultiplexer, whatever the cause.
    pub fn datagrams_dropped(&self) -> u64 {
        self.dropped_unknown.load(Ordering::Relaxed)
            + self.dropped_ambiguous.load(Ordering::Relaxed)
            + self.dropped_malformed.load(Ordering::Relaxed)
    }

    fn count_drop(&self, cause: DropCause) {
        let counter = match cause {
            DropCause::Ambiguous => &self.dropped_ambiguous,
            DropCause::Malformed => &self.dropped_malformed,
            DropCause::Unknown => &self.dropped_unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Clears the sending counters (benchmarks measure one phase at a time).
    pub fn reset(&self) {
        self.packets_sent.store(0, Ordering::Relaxed);
        self.send_errors.store(0, Ordering::Relaxed);
        self.lateness_us_total.store(0, Ordering::Relaxed);
        self.lateness_us_max.store(0, Ordering::Relaxed);
        self.send_batches.store(0, Ordering::Relaxed);
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
    /// Shared sockets: where the stream's incoming RTCP goes.
    Rtcp {
        id: u64,
        sink: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
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

/// How calls' RTP and RTCP leave and enter the process (`[sip] rtp_sockets`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub enum RtpSockets {
    /// A socket pair per call (the default; see the module docs).
    #[default]
    PerCall,
    /// A socket pair per scheduler shard, shared by its calls, with batched I/O.
    Shared,
}

/// One shard's shared sockets.
#[derive(Clone)]
struct ShardSockets {
    rtp: Arc<MediaSocket>,
    rtcp: Arc<MediaSocket>,
}

/// Handle to the scheduler shards.
#[derive(Clone)]
pub struct MediaHandle {
    shards: Arc<[mpsc::UnboundedSender<MediaCommand>]>,
    /// Shared mode: each shard's sockets, in shard order.
    sockets: Option<Arc<[ShardSockets]>>,
    next_id: Arc<AtomicU64>,
    stats: Arc<MediaStats>,
    rtcp: Arc<RtcpStats>,
}

impl MediaHandle {
    /// Spawns one scheduler shard per available core on the current tokio runtime, each
    /// sending from the calls' own sockets.
    pub fn spawn() -> Self {
        Self::spawn_shards(cores())
    }

    /// Spawns `shards` scheduler tasks (at least one), sending from the calls' own sockets.
    pub fn spawn_shards(shards: usize) -> Self {
        let stats = Arc::new(MediaStats::default());
        let shards: Arc<[_]> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(rx, Arc::clone(&stats), None));
                tx
            })
            .collect();
        Self {
            shards,
            sockets: None,
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
            rtcp: Arc::default(),
        }
    }

    /// Spawns one shard per available core, each with its own RTP socket (an even port on `ip`,
    /// from `range` if given) and RTCP socket (the next port), shared by its calls.
    pub async fn spawn_shared(ip: IpAddr, range: Option<(u16, u16)>) -> io::Result<Self> {
        Self::spawn_shared_shards(ip, range, cores()).await
    }

    /// [`Self::spawn_shared`] with `shards` shards (at least one).
    pub async fn spawn_shared_shards(
        ip: IpAddr,
        range: Option<(u16, u16)>,
        shards: usize,
    ) -> io::Result<Self> {
        let mut sockets = Vec::with_capacity(shards.max(1));
        for _ in 0..shards.max(1) {
            let (rtp, rtcp) = crate::ports::bind_pair(ip, range).await?;
            sockets.push(ShardSockets {
                rtp: Arc::new(rtp),
                rtcp: Arc::new(rtcp),
            });
        }
        let stats = Arc::new(MediaStats::default());
        let shards: Arc<[_]> = sockets
            .iter()
            .map(|sockets| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(rx, Arc::clone(&stats), Some(sockets.clone())));
                tx
            })
            .collect();
        let ports: Vec<u16> = sockets
            .iter()
            .filter_map(|s| s.rtp.local_addr().ok())
            .map(|a| a.port())
            .collect();
        tracing::info!(
            ?ports,
            "shared RTP sockets (one per scheduler shard; RTCP on port + 1)"
        );
        Ok(Self {
            shards,
            sockets: Some(sockets.into()),
            next_id: Arc::new(AtomicU64::new(1)),
            stats,
            rtcp: Arc::default(),
        })
    }

    fn index(&self, id: u64) -> usize {
        usize::try_from(id).unwrap_or(0) % self.shards.len()
    }

    fn shard(&self, id: u64) -> &mpsc::UnboundedSender<MediaCommand> {
        &self.shards[self.index(id)]
    }

    /// A new stream id (it decides the stream's shard).
    pub fn next_stream_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Shared mode: the RTP and RTCP sockets of stream `id`'s shard, which its SDP advertises
    /// and its RTCP is sent from; `None` with per-call sockets.
    pub fn shared_sockets(&self, id: u64) -> Option<(Arc<MediaSocket>, Arc<MediaSocket>)> {
        let sockets = &self.sockets.as_ref()?[self.index(id)];
        Some((Arc::clone(&sockets.rtp), Arc::clone(&sockets.rtcp)))
    }

    /// Whether the shards own shared sockets.
    pub fn is_shared(&self) -> bool {
        self.sockets.is_some()
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
        let id = self.next_stream_id();
        self.start_stream(id, socket, remote, stream, srtp, counters);
        id
    }

    /// [`Self::start_with`] under an id from [`Self::next_stream_id`] (in shared mode, the one
    /// whose shard's port the SDP advertised). `socket` is unused in shared mode (the shard
    /// sends from its own).
    pub fn start_stream(
        &self,
        id: u64,
        socket: Arc<MediaSocket>,
        remote: SocketAddr,
        stream: RtpStream,
        srtp: Option<SrtpSender>,
        counters: Option<Arc<StreamCounters>>,
    ) {
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
    }

    /// Shared mode: hands the RTCP that arrives for stream `id` to `sink`.
    pub(crate) fn attach_rtcp(&self, id: u64, sink: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>) {
        // A scheduler that is gone reads nothing any more: there is no RTCP to hand on.
        let _ = self.shard(id).send(MediaCommand::Rtcp { id, sink });
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

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

struct Entry {
    socket: Arc<MediaSocket>,
    /// Where its packets go: the negotiated address, or where the far end's RTP comes from.
    remote: SocketAddr,
    /// The address the last offer/answer gave (per-call mode; the shared mode's demultiplexer
    /// keeps its own).
    negotiated: SocketAddr,
    stream: RtpStream,
    srtp: Option<SrtpSender>,
    counters: Option<Arc<StreamCounters>>,
    /// Shared mode: where its incoming RTCP goes.
    rtcp: Option<mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>>,
}

/// A packet in a shared shard's send batch: its stream, RTP payload octets and the stream's
/// counters (for RTCP's counts), and its due instant (for the lateness).
struct Queued {
    id: u64,
    payload: usize,
    counters: Option<Arc<StreamCounters>>,
    due: std::time::Instant,
}

/// Packets per `sendmmsg` at most: a batch this full is sent before more are queued.
const FLUSH_AT: usize = 256;

/// Rounds of `recvmmsg` per wake-up before the shard looks at its timer again.
const READ_ROUNDS: usize = 8;

/// Waits until `socket` (if any) may be read.
async fn readable(
    socket: Option<&MediaSocket>,
) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, std::net::UdpSocket>> {
    match socket {
        Some(socket) => socket.readable().await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<MediaCommand>,
    stats: Arc<MediaStats>,
    shared: Option<ShardSockets>,
) {
    let mut streams: HashMap<u64, Entry> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(std::time::Instant, u64)>> = BinaryHeap::new();
    let mut packet = Vec::with_capacity(1500);
    let mut demux = Demux::default();
    let mut batch: SendBatch<Queued> = SendBatch::default();
    let mut reader = RecvBatch::default();
    let (rtp_socket, rtcp_socket) = match &shared {
        Some(s) => (Some(Arc::clone(&s.rtp)), Some(Arc::clone(&s.rtcp))),
        None => (None, None),
    };
    loop {
        let next = heap.peek().map(|Reverse((due, _))| *due);
        if shared.is_some() {
            demux.advance(std::time::Instant::now());
        }
        tokio::select! {
            // Commands first: a pause or a new destination queued before a packet fell due
            // applies to that packet. Then sending, then reading.
            biased;
            command = rx.recv() => match command {
                None => break,
                Some(MediaCommand::Start { id, socket, remote, stream, srtp, counters }) => {
                    if shared.is_some() {
                        demux.insert(id, remote, stream.ssrc());
                    }
                    heap.push(Reverse((stream.next_due(), id)));
                    streams.insert(id, Entry { socket, remote, negotiated: remote, stream, srtp, counters, rtcp: None });
                }
                Some(MediaCommand::Stop { id }) => {
                    // Its heap entry is discarded when it comes up.
                    streams.remove(&id);
                    demux.remove(id);
                }
                Some(MediaCommand::Rtcp { id, sink }) => {
                    if let Some(entry) = streams.get_mut(&id) {
                        entry.rtcp = Some(sink);
                    }
                }
                Some(MediaCommand::Change { id, change }) => {
                    if let Some(entry) = streams.get_mut(&id) {
                        let due = entry.stream.next_due();
                        let paused = entry.stream.is_paused();
                        match change {
                            StreamChange::Plan(plan) => {
                                entry.stream.change_plan(&plan);
                                if shared.is_none() {
                                    // As the call's latch (symmetric.rs): the same address keeps
                                    // a latched destination (a NAT'd far end re-offering after a
                                    // hold); a new one is sent to until its RTP shows otherwise.
                                    if plan.remote != entry.negotiated {
                                        entry.negotiated = plan.remote;
                                        entry.remote = plan.remote;
                                    }
                                } else if demux.renegotiated(id, plan.remote) {
                                    // A new address: send there until its RTP shows otherwise.
                                    // The same address keeps a latched destination.
                                    entry.remote = plan.remote;
                                }
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
                        let payload = packet.len() - call_engine::rtp::HEADER_LEN;
                        if let Some(socket) = rtp_socket.as_deref() {
                            let counters = entry.counters.clone();
                            queue(&mut batch, entry, &packet, Queued { id, payload, counters, due: packet_due }, &stats);
                            // A wake-up far behind (a stalled machine) must not build a huge
                            // batch: sent in chunks as it fills.
                            if batch.len() >= FLUSH_AT {
                                flush(&mut batch, socket, &stats);
                            }
                            continue;
                        }
                        let late = now.saturating_duration_since(packet_due).as_micros();
                        stats.record_lateness(u64::try_from(late).unwrap_or(u64::MAX));
                        match send(entry.srtp.as_mut(), &entry.socket, &packet, entry.remote) {
                            Ok(_) => {
                                // RTCP counts the RTP payload octets (RFC 3550 §6.4.1), before
                                // any SRTP tag.
                                if let Some(counters) = &entry.counters {
                                    counters.count(payload);
                                }
                                stats.packets_sent.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(_) => stats.send_errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    heap.push(Reverse((entry.stream.next_due(), id)));
                }
                if let Some(socket) = rtp_socket.as_deref().filter(|_| batch.len() > 0) {
                    flush(&mut batch, socket, &stats);
                }
            }
            ready = readable(rtp_socket.as_deref()) => {
                receive(ready, &mut reader, false, &mut demux, &mut streams, &stats);
            }
            ready = readable(rtcp_socket.as_deref()) => {
                receive(ready, &mut reader, true, &mut demux, &mut streams, &stats);
            }
        }
    }
}

/// Shared mode: protects (SRTP) and queues one packet of `entry`.
fn queue(
    batch: &mut SendBatch<Queued>,
    entry: &mut Entry,
    packet: &[u8],
    queued: Queued,
    stats: &MediaStats,
) {
    match entry.srtp.as_mut() {
        None => batch.push(packet, entry.remote, queued),
        Some(srtp) => match srtp.protect(packet) {
            Ok(protected) => batch.push(protected.as_ref(), entry.remote, queued),
            // Never sent in the clear.
            Err(error) => {
                tracing::debug!(error = %calls::error_chain(&error), stream = queued.id, "SRTP protect failed: packet dropped");
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        },
    }
}

/// Shared mode: sends the batch with `sendmmsg`.
fn flush(batch: &mut SendBatch<Queued>, socket: &MediaSocket, stats: &MediaStats) {
    // Lateness counts until the batch is handed to the kernel, so it includes the batching.
    let handed = std::time::Instant::now();
    stats.send_batches.fetch_add(1, Ordering::Relaxed);
    batch.flush(socket, |queued, result| {
        let late = handed.saturating_duration_since(queued.due).as_micros();
        stats.record_lateness(u64::try_from(late).unwrap_or(u64::MAX));
        match result {
            Ok(()) => {
                if let Some(counters) = &queued.counters {
                    counters.count(queued.payload);
                }
                stats.packets_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::debug!(%error, stream = queued.id, "RTP packet refused by the kernel: dropped");
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// Shared mode: reads what arrived on a shard socket (the RTCP one if `rtcp_socket`) and
/// hands each datagram to its call, or drops and counts it.
fn receive(
    ready: io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, std::net::UdpSocket>>,
    reader: &mut RecvBatch,
    rtcp_socket: bool,
    demux: &mut Demux,
    streams: &mut HashMap<u64, Entry>,
    stats: &MediaStats,
) {
    let mut ready = match ready {
        Ok(ready) => ready,
        Err(error) => {
            // The reactor is shutting down; nothing more will be read.
            tracing::warn!(%error, "shared RTP socket: readiness failed");
            return;
        }
    };
    for _ in 0..READ_ROUNDS {
        let read = ready.try_io(|socket| {
            reader.read(socket.get_ref(), |data, from| {
                dispatch(data, from, rtcp_socket, demux, streams, stats);
            })
        });
        match read {
            Ok(Ok(n)) if n == RecvBatch::capacity() => {}
            // Drained: readiness is cleared unless a datagram arrived meanwhile (tokio compares
            // the readiness event's tick).
            Ok(Ok(_)) => {
                ready.clear_ready();
                break;
            }
            // ICMP errors (port unreachable after a far end went away) surface here; the socket
            // stays usable and the next read gets the datagrams behind the error.
            Ok(Err(error)) => {
                tracing::debug!(%error, "shared RTP socket: receive error");
                break;
            }
            // Nothing was waiting: readiness cleared by try_io.
            Err(_would_block) => break,
        }
    }
}

fn dispatch(
    data: &[u8],
    from: SocketAddr,
    rtcp_socket: bool,
    demux: &mut Demux,
    streams: &mut HashMap<u64, Entry>,
    stats: &MediaStats,
) {
    let muxed = !rtcp_socket && call_engine::rtcp::is_rtcp(data);
    let is_rtcp = rtcp_socket || muxed;
    let verdict = if is_rtcp {
        demux.rtcp(from, data, muxed)
    } else {
        demux.rtp(from, data)
    };
    let kind = if is_rtcp { "RTCP" } else { "RTP" };
    let id = match verdict {
        Verdict::Stream { id, latch } => {
            if let (Some(to), Some(entry)) = (latch, streams.get_mut(&id)) {
                tracing::info!(stream = id, %from, sdp = %entry.remote, "symmetric RTP: sending where the far end's RTP comes from");
                entry.remote = to;
            }
            id
        }
        Verdict::Drop(cause) => {
            stats.count_drop(cause);
            tracing::debug!(%from, kind, cause = cause.as_str(), "datagram on a shared socket dropped");
            return;
        }
    };
    if !is_rtcp {
        stats.datagrams_received.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match streams.get(&id).and_then(|e| e.rtcp.as_ref()) {
        Some(sink) if sink.send((data.to_vec(), from)).is_ok() => {
            stats.datagrams_received.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            stats.count_drop(DropCause::Malformed);
            tracing::debug!(stream = id, %from, "RTCP for a call whose RTCP task is not running dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use call_engine::rtp::{PreparedAudio, RtpSeed};
    use call_engine::sdp::{Codec, MediaPlan};

    use super::*;

    fn plan(remote: SocketAddr) -> MediaPlan {
        MediaPlan {
            remote,
            rtcp: None,
            codec: Codec::Pcmu,
            payload_type: 0,
            ptime_ms: 20,
        }
    }

    /// Waits for the next datagram on `socket` (panics after 5 s: the stream stopped).
    async fn next(socket: &tokio::net::UdpSocket) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("no RTP within 5 s")
            .unwrap();
        buf.truncate(n);
        buf
    }

    /// Empties what `socket` has queued.
    fn drain(socket: &tokio::net::UdpSocket) -> usize {
        let mut buf = vec![0u8; 2048];
        let mut n = 0;
        while socket.try_recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[tokio::test]
    async fn a_re_offer_of_the_same_address_keeps_the_latched_destination_and_a_new_one_moves_it() {
        let sdp_sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let nat_sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let new_sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (sdp, nat, new) = (
            sdp_sink.local_addr().unwrap(),
            nat_sink.local_addr().unwrap(),
            new_sink.local_addr().unwrap(),
        );
        let media = MediaHandle::spawn_shards(1);
        let socket = Arc::new(MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let audio = PreparedAudio::from_pcm(&vec![0i16; 8000 * 30]);
        let seed = RtpSeed {
            ssrc: 7,
            sequence: 1,
            timestamp: 1,
        };
        let stream = RtpStream::new(&plan(sdp), &audio, seed, std::time::Instant::now());
        let id = media.start(socket, sdp, stream);
        next(&sdp_sink).await;
        // The far end's RTP came from elsewhere (symmetric RTP): the call moves the stream.
        media.change(id, StreamChange::Remote(nat));
        next(&nat_sink).await;
        // A re-offer naming the same address (resume after a hold): still the latched one.
        media.change(id, StreamChange::Plan(plan(sdp)));
        for _ in 0..10 {
            next(&nat_sink).await;
        }
        drain(&sdp_sink);
        for _ in 0..10 {
            next(&nat_sink).await;
        }
        assert_eq!(drain(&sdp_sink), 0, "RTP went back to the SDP address");
        // A re-offer naming a new address: sent there.
        media.change(id, StreamChange::Plan(plan(new)));
        next(&new_sink).await;
        media.stop(id);
    }
}
