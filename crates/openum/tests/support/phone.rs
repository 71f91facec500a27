//! A real phone for the audio tests: baresip auto-answers on loopback and records what it
//! decodes (sndfile), one `*-dec.wav` per call; and the measure the tests judge it by.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Processes;

/// A running baresip that answers `sip:4711@127.0.0.1:<sip_port>` and records every call.
pub struct Phone {
    pub sip_port: u16,
    rec: PathBuf,
    _process: Processes,
}

impl Phone {
    /// Starts baresip under `dir` with its SIP on `sip_port` and RTP in `rtp_lo..=rtp_hi`.
    pub fn start(dir: &Path, sip_port: u16, rtp_lo: u16, rtp_hi: u16) -> Self {
        Self::start_with(dir, sip_port, rtp_lo, rtp_hi, None)
    }

    /// [`Self::start`], with baresip's media encryption `mediaenc` (e.g. `srtp-mand`: SDES-keyed
    /// SRTP or no call) when given, through its `srtp` module.
    pub fn start_with(
        dir: &Path,
        sip_port: u16,
        rtp_lo: u16,
        rtp_hi: u16,
        mediaenc: Option<&str>,
    ) -> Self {
        Self::start_configured(dir, sip_port, rtp_lo, rtp_hi, mediaenc, false)
    }

    /// [`Self::start_with`], and with `rtcp_mux`, RTCP on the RTP port (RFC 5761: baresip
    /// offers and accepts `a=rtcp-mux`).
    pub fn start_configured(
        dir: &Path,
        sip_port: u16,
        rtp_lo: u16,
        rtp_hi: u16,
        mediaenc: Option<&str>,
        rtcp_mux: bool,
    ) -> Self {
        let phone = dir.join("phone");
        let rec = dir.join("rec");
        std::fs::create_dir_all(&phone).unwrap();
        std::fs::create_dir_all(&rec).unwrap();
        std::fs::write(
            phone.join("config"),
            format!(
                "poll_method epoll\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
                 sip_listen 127.0.0.1:{sip_port}\ncall_local_timeout 120\n\
                 audio_player aubridge,nil\naudio_source ausine,440\naudio_alert aubridge,nil\n\
                 ausrc_srate 48000\nauplay_srate 48000\nausrc_channels 2\nauplay_channels 2\n\
                 rtp_ports {rtp_lo}-{rtp_hi}\nmodule_path /usr/lib/baresip/modules\n\
                 module g711.so\nmodule sndfile.so\nmodule aubridge.so\nmodule ausine.so\n\
                 module_tmp account.so\nmodule_app menu.so\nsnd_path {}\n{}{}",
                rec.display(),
                if mediaenc.is_some() {
                    "module srtp.so\n"
                } else {
                    ""
                },
                if rtcp_mux { "rtcp_mux yes\n" } else { "" }
            ),
        )
        .unwrap();
        std::fs::write(
            phone.join("accounts"),
            format!(
                "<sip:4711@127.0.0.1:{sip_port}>;regint=0;answermode=auto;audio_codecs=pcmu,pcma{}\n",
                mediaenc.map(|m| format!(";mediaenc={m}")).unwrap_or_default()
            ),
        )
        .unwrap();
        std::fs::write(phone.join("contacts"), "").unwrap();
        let log = phone.join("baresip.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("timeout")
            .args(["300", "baresip", "-f"])
            .arg(&phone)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("baresip is required (apt-get install baresip-core)");
        let mut process = Processes(vec![child]);
        wait_until_answering(sip_port, &mut process, &log);
        Self {
            sip_port,
            rec,
            _process: process,
        }
    }

    /// The recordings made so far.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.rec)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        found.sort();
        found
    }

    /// The decoded audio of the recording that appears after the `before` ones, at 8 kHz
    /// (waits up to 5 s for baresip to close it).
    pub fn new_recording(&self, before: &[PathBuf]) -> Vec<i16> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(path) = self.recordings().into_iter().find(|p| !before.contains(p)) {
                // baresip writes the header when it closes the file.
                std::thread::sleep(Duration::from_millis(800));
                return audio::decode_to_8k_mono(&std::fs::read(&path).unwrap(), Some("wav"))
                    .unwrap();
            }
            assert!(Instant::now() < deadline, "baresip recorded nothing");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits (up to 10 s) until baresip answers an OPTIONS on its SIP port, so that a test's first
/// call cannot race baresip's start-up; panics with baresip's own output if it exits or never
/// answers (a port another process holds, a missing module).
fn wait_until_answering(sip_port: u16, process: &mut Processes, log: &Path) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    for attempt in 0u32.. {
        let options = format!(
            "OPTIONS sip:4711@127.0.0.1:{sip_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-ready-{attempt};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=ready\r\n\
             To: <sip:4711@127.0.0.1:{sip_port}>\r\nCall-ID: ready-{sip_port}@{local}\r\n\
             CSeq: {} OPTIONS\r\nContent-Length: 0\r\n\r\n",
            attempt + 1
        );
        socket
            .send_to(options.as_bytes(), ("127.0.0.1", sip_port))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 ") {
                return;
            }
        }
        let output = || std::fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = process.0[0].try_wait().unwrap() {
            panic!(
                "baresip on SIP port {sip_port} exited ({status}):\n{}",
                output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not answer OPTIONS on SIP port {sip_port} within 10 s:\n{}",
            output()
        );
    }
}

/// A 2.5 s linear chirp (300 → 3000 Hz) at 16 kHz with a slow tremolo: not periodic, so the
/// correlation peak is unambiguous, and it exercises the resampler.
pub fn chirp(rate: u32) -> Vec<i16> {
    let n = (rate as f32 * 2.5) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / rate as f32;
            let f0 = 300.0;
            let k = (3000.0 - f0) / 2.5;
            let phase = std::f32::consts::TAU * (f0 * t + 0.5 * k * t * t);
            let envelope = 0.6 + 0.4 * (std::f32::consts::TAU * 1.3 * t).sin();
            (phase.sin() * envelope * 12000.0) as i16
        })
        .collect()
}

/// [`chirp`] at 16 kHz as a PCM WAV file.
pub fn chirp_wav(path: &Path) {
    std::fs::write(path, testkit::pcm_wav(16000, 1, &chirp(16000))).unwrap();
}

/// Best normalised cross-correlation of `got` against `reference` over lags
/// `-max_lag..max_lag` (a negative lag: `got` starts that many samples into `reference`, as a
/// decoder that drops its codec delay does).
pub fn correlation(reference: &[i16], got: &[i16], max_lag: usize) -> (f64, isize) {
    let r: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    let g: Vec<f64> = got.iter().map(|&s| f64::from(s)).collect();
    let mut best = (0.0, 0);
    for lag in -(max_lag as isize)..max_lag as isize {
        let (a, b) = if lag >= 0 {
            (&r[..], g.get(lag as usize..).unwrap_or_default())
        } else {
            (r.get((-lag) as usize..).unwrap_or_default(), &g[..])
        };
        let n = a.len().min(b.len());
        if n < r.len() / 2 {
            continue;
        }
        let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for i in 0..n {
            dot += a[i] * b[i];
            aa += a[i] * a[i];
            bb += b[i] * b[i];
        }
        let c = dot / (aa.sqrt() * bb.sqrt() + 1e-9);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}
