//! PlayOnPhone answer time (not a test): an item imported into openum's own store against an
//! item in the caller's Exchange mailbox, fetched cold (GetItem + GetAttachment + decode every
//! time) and from the decoded-audio cache (GetItem only), measured in the same run and reported
//! as ratios to the local case.
//!
//! Everything runs in this process on loopback: openum's server (`server::app_state` +
//! `server::run`, SQLite store, a call service that accepts every call and ends it at once), the
//! mailbox server double of `openum-testkit` holding one mailbox with a voice message per cold
//! request, and a keep-alive HTTP client that sends the requests one after another. The three
//! cases are interleaved request by request, so background load on the machine falls on all of
//! them alike. Every answer must be a Success with a PhoneCallId, and the double's request log
//! must show exactly the mailbox requests each case implies; otherwise the run aborts.
//!
//! The message is 30 s of synthetic speech-like audio, 8 kHz mono 16-bit PCM WAV (480 kB), or
//! with `--mp3` the same encoded by `lame` at 16 kbit/s (60 kB). After the main table a second
//! one times the parts of a cold fetch on their own: `GetItem` and `GetAttachment` through
//! openum's mailbox client, the `GetAttachment` HTTP exchange without the client's XML decoding,
//! `audio::decode_to_8k_mono` on the attachment, and `MailboxService::fetch` of fresh items (the
//! whole mailbox part of a cold play, without the HTTP front and the store).
//!
//! The mailbox double and the client share the machine with the server. The cold case's tail
//! (p90, p99) comes from fresh memory: mimalloc asks for transparent huge pages, and a first touch
//! that faults in a 2 MiB page costs ~4-5 ms on the VM this was written on; run with
//! `MIMALLOC_ALLOW_THP=0` to see the case without them. Compare p50s across machines.
//! Memory: the double keeps every item's attachment (about 2 × N_cold copies of the message).
//!
//! usage: play_latency [--mp3] [N_local [N_cold [N_cached]]]   (default 200 100 200)

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark binary"
)]

extern crate openum_server as server;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use calls::{now_unix, CallRecord, CallService, CallState, Cause, Hangup, PlaceError};
use ews_proto::{ResponseClass, ResponseDocument};
use mailbox_client::{MailboxClient, MailboxSettings};
use server::config::{Config, MailboxConfig};
use server::mailbox::MailboxService;
use server::registry::Registry;
use server::store::{Store, User};
use testkit::mailbox::{Attachment, Item, Mailbox, MailboxDouble};

// Same allocator as the `openum` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RATE: usize = 8000;
const SECONDS: usize = 30;
const LOCAL_USER: &str = "alice";
const MAILBOX_LOGIN: &str = "bench@example.com";
const PASSWORD: &str = "correct horse";
const DIAL: &str = "5551212";
/// Runs of `decode_to_8k_mono` timed on their own.
const DECODES: usize = 20;

/// A call service that accepts every call and ends it at once, as a callee that hangs up
/// straight away would: `place` returns at once (as the SIP runtime's does once the INVITE is
/// on its way) and the end is recorded by a task of its own, so no concurrency cap ever bites.
struct InstantCalls {
    registry: Arc<Registry>,
}

#[async_trait::async_trait]
impl CallService for InstantCalls {
    fn available(&self) -> bool {
        true
    }

    async fn place(&self, call: &CallRecord) -> Result<(), PlaceError> {
        let ended = CallRecord {
            state: CallState::Disconnected,
            cause: Cause::None,
            sip_code: Some(200),
            sip_text: Some("OK".into()),
            ended_at: Some(now_unix()),
            ..call.clone()
        };
        let registry = Arc::clone(&self.registry);
        tokio::spawn(async move { registry.update(&ended).await.unwrap() });
        Ok(())
    }

    async fn hangup(&self, _id: &str) -> Hangup {
        Hangup::NotLive
    }
}

struct Args {
    mp3: bool,
    local: usize,
    cold: usize,
    cached: usize,
}

fn args() -> Args {
    let mut mp3 = false;
    let mut ns = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--mp3" {
            mp3 = true;
        } else {
            ns.push(arg.parse::<usize>().unwrap_or_else(|_| {
                panic!("usage: play_latency [--mp3] [N_local [N_cold [N_cached]]]; got {arg:?}")
            }));
        }
    }
    let n = |i: usize, default: usize| ns.get(i).copied().unwrap_or(default).max(1);
    Args {
        mp3,
        local: n(0, 200),
        cold: n(1, 100),
        cached: n(2, 200),
    }
}

/// 30 s of something shaped like speech: a voiced source (harmonics of a gliding 95-185 Hz
/// pitch, shaped by two formants) in syllables of ~0.2 s, phrases of ~2.5 s with pauses between,
/// over faint noise. 8 kHz mono 16-bit PCM in a RIFF/WAVE container.
fn speech_like_wav() -> Vec<u8> {
    let n = RATE * SECONDS;
    let mut samples = Vec::with_capacity(n);
    let mut phase = 0.0f64;
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    for i in 0..n {
        let t = i as f64 / RATE as f64;
        let pitch = 140.0
            + 30.0 * (2.0 * std::f64::consts::PI * 0.31 * t).sin()
            + 15.0 * (2.0 * std::f64::consts::PI * 1.7 * t).sin();
        phase += 2.0 * std::f64::consts::PI * pitch / RATE as f64;
        let formant1 = 500.0 + 250.0 * (2.0 * std::f64::consts::PI * 2.3 * t).sin();
        let formant2 = 1500.0 + 600.0 * (2.0 * std::f64::consts::PI * 1.1 * t).sin();
        let mut voiced = 0.0;
        for k in 1..=25 {
            let f = pitch * f64::from(k);
            if f >= RATE as f64 / 2.0 {
                break;
            }
            let gain = 1.0 / (1.0 + ((f - formant1) / 200.0).powi(2))
                + 0.5 / (1.0 + ((f - formant2) / 300.0).powi(2));
            voiced += gain * (phase * f64::from(k)).sin();
        }
        let syllable = (2.0 * std::f64::consts::PI * 2.5 * t)
            .sin()
            .max(0.0)
            .powf(0.7);
        let phrase = if t % 2.9 < 2.5 { 1.0 } else { 0.0 };
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let hiss = (noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let value = 6000.0 * voiced * syllable * phrase + 60.0 * hiss;
        samples.push(value.clamp(-32768.0, 32767.0) as i16);
    }
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + samples.len() * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&(RATE as u32).to_le_bytes());
    wav.extend_from_slice(&(RATE as u32 * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    wav
}

/// The WAV encoded as a voice-mail MP3 (mono, 16 kbit/s, 8 kHz) by `lame`.
fn encode_mp3(wav: &Path, mp3: &Path) -> Vec<u8> {
    let status = std::process::Command::new("lame")
        .args(["--quiet", "-m", "m", "-b", "16"])
        .arg(wav)
        .arg(mp3)
        .status()
        .expect("lame (apt-get install lame)");
    assert!(status.success(), "lame failed: {status}");
    std::fs::read(mp3).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn play_request(item_id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
<soap:Header><t:RequestServerVersion Version="Exchange2010_SP1"/></soap:Header><soap:Body><m:PlayOnPhone><m:ItemId Id="{item_id}"/><m:DialString>{DIAL}</m:DialString></m:PlayOnPhone></soap:Body></soap:Envelope>"#
    )
}

/// Plays items through openum's EWS endpoint and checks every answer.
struct Player {
    client: reqwest::Client,
    url: String,
}

impl Player {
    /// One PlayOnPhone; returns the time from sending the request to the whole answer read.
    async fn play(&self, authorization: &str, item_id: &str) -> Duration {
        let body = play_request(item_id);
        let started = Instant::now();
        let reply = self
            .client
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("Authorization", authorization)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let text = reply.text().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "PlayOnPhone answered HTTP {status}: {text}");
        let document = ews_proto::decode_response(text.as_bytes())
            .unwrap_or_else(|e| panic!("undecodable PlayOnPhone answer ({e}): {text}"));
        let ResponseDocument::Response(envelope) = document else {
            panic!("PlayOnPhone answered a fault: {text}");
        };
        let ews_proto::Response::PlayOnPhone(response) = envelope.body else {
            panic!("not a PlayOnPhoneResponse: {text}");
        };
        assert_eq!(
            response.message.response_class,
            ResponseClass::Success,
            "PlayOnPhone failed: {text}"
        );
        assert!(
            response.phone_call_id.is_some_and(|id| !id.id.is_empty()),
            "PlayOnPhone succeeded without a PhoneCallId: {text}"
        );
        elapsed
    }
}

struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

/// Nearest-rank percentiles and the mean, in milliseconds.
fn stats(times: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Stats {
        n: ms.len(),
        p50: rank(0.50),
        p90: rank(0.90),
        p99: rank(0.99),
        mean: ms.iter().sum::<f64>() / ms.len() as f64,
    }
}

async fn time_each<F, Fut>(n: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        times.push(started.elapsed());
    }
    times
}

fn count(double: &MailboxDouble, operation: &str) -> usize {
    double
        .requests()
        .iter()
        .filter(|r| r.operation.as_deref() == Some(operation))
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();

    // The voice message.
    let wav = speech_like_wav();
    let wav_path = dir.path().join("message.wav");
    std::fs::write(&wav_path, &wav).unwrap();
    let (audio_path, bytes, name, content_type) = if args.mp3 {
        let mp3_path = dir.path().join("message.mp3");
        let mp3 = encode_mp3(&wav_path, &mp3_path);
        (mp3_path, mp3, "audio.mp3", "audio/mpeg")
    } else {
        (wav_path.clone(), wav.clone(), "audio.wav", "audio/wav")
    };
    let extension = Path::new(name).extension().and_then(|e| e.to_str());
    let decoded = audio::decode_to_8k_mono(&bytes, extension).unwrap();
    let seconds = decoded.len() as f64 / RATE as f64;
    assert!(
        (seconds - SECONDS as f64).abs() < 0.5,
        "the message decodes to {seconds:.2} s"
    );

    // The mailbox server: one mailbox, a voice message per cold request plus the warm-up and
    // cached ones, all with the same attachment.
    let mut builder = MailboxDouble::builder();
    let mailbox = builder.mailbox(Mailbox::new(MAILBOX_LOGIN).password(PASSWORD));
    let message = |i: usize| {
        Item::voicemail(format!(
            "Voice Mail from +49 30 1234567 ({SECONDS} seconds) #{i}"
        ))
        .attachment(Attachment::file(name, content_type, bytes.clone()))
        .attachment_order(name)
    };
    const WARM: usize = 3;
    let items: Vec<String> = (0..WARM + args.cold + 1)
        .map(|i| builder.item(&mailbox, message(i)).id)
        .collect();
    let (warm_items, rest) = items.split_at(WARM);
    let (cold_items, cached_item) = rest.split_at(args.cold);
    let cached_item = &cached_item[0];
    let double = builder.start().await.unwrap();

    // openum, in process.
    let mut config = Config::default();
    config.server.data_dir = dir.path().join("data");
    config.server.node_name = Some("bench-node".into());
    config.admission.max_calls_per_user = 1_000_000;
    config.admission.max_calls_per_node = 1_000_000;
    config.mailbox = Some(MailboxConfig {
        ews_url: double.url(),
        // Long enough that the credential and audio caches outlive the run.
        credential_cache_secs: 24 * 3600,
        audio_cache_mb: 4096,
        ..MailboxConfig::default()
    });
    let sqlite = server::open_sqlite(&config).unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite);
    store
        .upsert_user(User {
            name: LOCAL_USER.into(),
            password_hash: server::auth::hash_password(PASSWORD).unwrap(),
            play_on_phone: true,
        })
        .await
        .unwrap();
    let local_item = server::voicemail::import(
        store.as_ref(),
        &config.server.data_dir,
        LOCAL_USER,
        &audio_path,
        "+49 30 1234567",
        "benchmark message",
    )
    .await
    .unwrap();
    let registry = Arc::new(Registry::new(store, "bench-node".into()));
    let calls = Arc::new(InstantCalls {
        registry: Arc::clone(&registry),
    });
    let state = server::app_state(&config, registry, calls).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_config = config.clone();
    let server_task = tokio::spawn(async move {
        server::run(&server_config, listener, state, async {
            let _ = stopped.await;
        })
        .await;
    });

    let player = Player {
        client: reqwest::Client::new(),
        url: format!("http://{addr}/EWS/Exchange.asmx"),
    };
    let local_auth = basic(LOCAL_USER, PASSWORD);
    let mailbox_auth = basic(MAILBOX_LOGIN, PASSWORD);

    // Warm-up, not measured: the local password check (Argon2), the mailbox login (GetFolder),
    // the connections, and the cached item's first download.
    for _ in 0..WARM {
        player.play(&local_auth, &local_item).await;
    }
    for item in warm_items {
        player.play(&mailbox_auth, item).await;
    }
    for _ in 0..WARM {
        player.play(&mailbox_auth, cached_item).await;
    }
    assert_eq!(
        count(&double, "GetFolder"),
        1,
        "the mailbox login is cached"
    );
    double.clear_requests();

    // Measured, interleaved request by request.
    let (mut local, mut cold, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = args.local.max(args.cold).max(args.cached);
    for i in 0..rounds {
        if i < args.local {
            local.push(player.play(&local_auth, &local_item).await);
        }
        if let Some(item) = cold_items.get(i) {
            cold.push(player.play(&mailbox_auth, item).await);
        }
        if i < args.cached {
            cached.push(player.play(&mailbox_auth, cached_item).await);
        }
    }
    assert_eq!(
        count(&double, "GetFolder"),
        0,
        "no login check while measuring"
    );
    assert_eq!(count(&double, "GetItem"), args.cold + args.cached);
    assert_eq!(
        count(&double, "GetAttachment"),
        args.cold,
        "one download per cold request, none for the cached item"
    );
    let attachment_request = double
        .requests()
        .into_iter()
        .find(|r| r.operation.as_deref() == Some("GetAttachment"))
        .unwrap()
        .body;
    double.clear_requests();
    let _ = stop.send(());
    server_task.await.unwrap();

    // The parts of a cold fetch, one at a time, against the same double.
    let client = MailboxClient::new(MailboxSettings {
        ews_url: double.url(),
        ca_file: None,
        timeout: Duration::from_secs(10),
        max_attachment_bytes: 64 << 20,
    })
    .unwrap();
    let voice = client
        .voice_message(&mailbox_auth, cached_item)
        .await
        .unwrap();
    let get_item = time_each(args.cached, |_| async {
        client
            .voice_message(&mailbox_auth, cached_item)
            .await
            .unwrap();
    })
    .await;
    let get_attachment = time_each(args.cold, |_| async {
        let content = client
            .attachment(&mailbox_auth, &voice.audio)
            .await
            .unwrap();
        assert_eq!(content.len(), bytes.len());
    })
    .await;
    let raw = reqwest::Client::new();
    let envelope_bytes = std::cell::Cell::new(0);
    let raw_attachment = time_each(args.cold, |_| {
        let request = raw
            .post(double.url())
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("Authorization", &mailbox_auth)
            .body(attachment_request.clone());
        let envelope_bytes = &envelope_bytes;
        async move {
            let reply = request.send().await.unwrap();
            assert_eq!(reply.status(), 200);
            envelope_bytes.set(reply.bytes().await.unwrap().len());
        }
    })
    .await;
    // The whole mailbox part of a cold play (no HTTP front, no store), on fresh items.
    let service = MailboxService::new(config.mailbox.as_ref().unwrap()).unwrap();
    service.verify(&mailbox_auth).await.unwrap().unwrap();
    let fresh: Vec<String> = (0..args.cold)
        .map(|i| {
            double
                .add_item(&mailbox, message(WARM + args.cold + 1 + i))
                .id
        })
        .collect();
    let fetch = time_each(args.cold, |i| {
        let (service, auth, item, samples) = (&service, &mailbox_auth, &fresh[i], decoded.len());
        async move {
            let pcm = service.fetch(auth, item).await.unwrap();
            assert_eq!(pcm.len(), samples);
        }
    })
    .await;
    let mut decode = Vec::with_capacity(DECODES);
    for _ in 0..DECODES {
        let started = Instant::now();
        let pcm = audio::decode_to_8k_mono(&bytes, extension).unwrap();
        decode.push(started.elapsed());
        assert_eq!(pcm.len(), decoded.len());
    }
    double.clear_requests();

    // Report.
    println!(
        "PlayOnPhone answer time, {seconds:.0} s message as {} ({} bytes; GetAttachment envelope {} bytes), sequential keep-alive requests, cases interleaved\n",
        if args.mp3 {
            "MP3 16 kbit/s mono"
        } else {
            "8 kHz 16-bit mono PCM WAV"
        },
        bytes.len(),
        envelope_bytes.get()
    );
    println!(
        "allocator: mimalloc, MIMALLOC_ALLOW_THP={}\n",
        std::env::var("MIMALLOC_ALLOW_THP")
            .unwrap_or_else(|_| "(unset: huge pages allowed)".into())
    );
    println!("| case | n | p50 | p90 | p99 | mean | p50 / local | mean / local |");
    println!("|---|---|---|---|---|---|---|---|");
    let base = stats(&local);
    for (label, times) in [
        ("local item (imported)", &local),
        ("mailbox, cold (GetItem + GetAttachment + decode)", &cold),
        ("mailbox, cached (GetItem)", &cached),
    ] {
        let s = stats(times);
        println!(
            "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1}× | {:.1}× |",
            s.n,
            s.p50,
            s.p90,
            s.p99,
            s.mean,
            s.p50 / base.p50,
            s.mean / base.mean
        );
    }
    println!("\nParts of a cold fetch, timed alone (same double, after the run):\n");
    println!("| part | n | p50 | p90 | mean |");
    println!("|---|---|---|---|---|");
    for (label, times) in [
        ("GetItem (openum's mailbox client)", &get_item),
        ("GetAttachment (openum's mailbox client)", &get_attachment),
        (
            "GetAttachment HTTP exchange only (no XML/base64 decode)",
            &raw_attachment,
        ),
        ("decode_to_8k_mono", &decode),
        (
            "MailboxService::fetch of a fresh item (all of the above, no HTTP front or store)",
            &fetch,
        ),
    ] {
        let s = stats(times);
        println!(
            "| {label} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            s.n, s.p50, s.p90, s.mean
        );
    }
}
