//! End-to-end harness: the real `openum` binary, a real SIPp far end (`tests/peers/uas_multi.xml`),
//! and a real HTTP client talking EWS to it over TCP.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness shared by several test binaries"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ews_proto::{PhoneCallInformation, ResponseCode, ResponseDocument};

pub mod capture;
pub mod dnsmasq;
pub mod ews;
pub mod kamailio;
pub mod phone;
pub mod poll;
pub mod ports;
pub mod rtcp;
pub mod serve;
pub mod sipp;

pub const PASSWORD: &str = "e2e password";

/// Ports for one harness: HTTP, our SIP, SIPp's SIP, SIPp's media.
fn ports(base: Option<u16>) -> (u16, u16, u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Test binaries run one at a time; within one, each harness gets its own block of 10.
    let base = base.unwrap_or(20000 + (std::process::id() % 300) as u16 * 100);
    let b = base + NEXT.fetch_add(1, Ordering::Relaxed) % 10 * 10;
    (b, b + 1, b + 2, b + 4)
}

pub struct Options {
    /// The SIPp scenario in tests/peers (default `uas_multi.xml`).
    pub scenario: &'static str,
    pub tcp: bool,
    pub gateway_password: Option<&'static str>,
    pub audio_seconds: f32,
    pub ring_timeout_secs: u64,
    /// Extra SIPp arguments (e.g. `-m 1`: exit after one call, status 0 if it succeeded).
    pub sipp_args: Vec<String>,
    /// Extra lines appended to the `[sip]` section of openum's configuration.
    pub sip_config: String,
    /// The first of 100 ports for this test binary's harnesses (default: from the process id).
    pub port_base: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scenario: "uas_multi.xml",
            tcp: false,
            gateway_password: None,
            audio_seconds: 2.0,
            ring_timeout_secs: 30,
            sipp_args: Vec::new(),
            sip_config: String::new(),
            port_base: None,
        }
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub http: reqwest::Client,
    pub base: String,
    pub item: String,
    pub sipp_messages: PathBuf,
    pub sipp_port: u16,
    /// SIPp's RTP port (`-mp`).
    pub sipp_media_port: u16,
    /// openum's SIP port (UDP and TCP).
    pub sip_port: u16,
    openum: Child,
    sipp: sipp::Sipp,
}

pub fn openum_bin() -> &'static str {
    env!("CARGO_BIN_EXE_openum")
}

/// A mono 8 kHz PCM WAV of a 440 Hz tone, `seconds` long.
pub fn tone_wav(path: &Path, seconds: f32) {
    let samples = testkit::tone(8000, 440.0, seconds, 10000.0);
    std::fs::write(path, testkit::pcm_wav(8000, 1, &samples)).unwrap();
}

/// Child processes stopped with SIGTERM (which coreutils `timeout` passes on) when dropped.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

/// `openum user add USER` (password [`PASSWORD`]) and `openum voicemail import` of `wav` for
/// that user, through the binary; returns the ItemId it printed.
pub fn add_user_with_message(config: &Path, user: &str, wav: &Path) -> String {
    let (ok, _, err) = openum(
        config,
        &["user", "add", user, "--password-stdin"],
        Some(PASSWORD),
    );
    assert!(ok, "user add failed: {err}");
    let (ok, item, err) = openum(
        config,
        &["voicemail", "import", "--user", user, wav.to_str().unwrap()],
        None,
    );
    assert!(ok, "voicemail import failed: {err}");
    item.trim().to_owned()
}

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers")
}

/// Runs `openum` with `args` and the harness config; returns stdout.
pub fn openum(config: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(openum_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openum");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Harness {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (http_port, sip_port, sipp_port, media_port) = ports(options.port_base);
        let sipp_messages = dir.path().join("sipp-messages.log");
        let sipp = sipp::Sipp::uas(options.scenario, sipp_port, media_port, &sipp_messages)
            .args(&options.sipp_args)
            .tcp(options.tcp)
            .start();
        let password = options
            .gateway_password
            .map(|p| format!("username = \"alice\"\npassword = \"{p}\"\n"))
            .unwrap_or_default();
        let config = dir.path().join("openum.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{http_port}\"\ndata_dir = \"{}\"\nnode_name = \"e2e\"\n\
                 [sip]\nlisten = \"127.0.0.1:{sip_port}\"\nt1_ms = 100\n{}\
                 [[dialplan.rule]]\ngroup = \"silent\"\nkind = \"national\"\nmask = \"7xxxxxxxxx\"\ndial = \"000xxxxxxxxx\"\n\
                 [[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\n\
                 [[gateway]]\nname = \"sipp\"\nuri = \"sip:{{number}}@127.0.0.1:{sipp_port}\"\n\
                 transport = \"{}\"\nring_timeout_secs = {}\n{password}",
                dir.path().join("data").display(),
                options.sip_config,
                if options.tcp { "tcp" } else { "udp" },
                options.ring_timeout_secs,
            ),
        )
        .unwrap();
        let wav = dir.path().join("message.wav");
        tone_wav(&wav, options.audio_seconds);
        let item = add_user_with_message(&config, "alice", &wav);
        let openum = spawn_serve(&config, dir.path());
        let base = format!("http://127.0.0.1:{http_port}");
        let http = reqwest::Client::new();
        wait_healthy(&http, &base, dir.path()).await;
        Self {
            dir,
            config,
            http,
            base,
            item,
            sipp_messages,
            sipp_port,
            sipp_media_port: media_port,
            sip_port,
            openum,
            sipp,
        }
    }

    pub async fn ews(&self, body: &str) -> ResponseDocument {
        ews::ews(&self.http, &self.base, body).await
    }

    /// `GET path` on the server; the body.
    pub async fn get(&self, path: &str) -> String {
        text_of(self.http.get(format!("{}{path}", self.base))).await
    }

    /// PlayOnPhone; returns the PhoneCallId.
    pub async fn play(&self, dial: &str) -> String {
        ews::play(&self.http, &self.base, &self.item, dial).await
    }

    pub async fn info(&self, id: &str) -> PhoneCallInformation {
        ews::info(&self.http, &self.base, id).await
    }

    pub async fn disconnect(&self, id: &str) -> ResponseCode {
        ews::disconnect(&self.http, &self.base, id).await
    }

    /// Polls GetPhoneCallInformation until `done` holds (or panics after `within`).
    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&PhoneCallInformation) -> bool,
    ) -> PhoneCallInformation {
        let deadline = Instant::now() + within;
        loop {
            let info = self.info(id).await;
            if done(&info) {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; last state {info:?}\n--- openum log ---\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("openum.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The SIP messages SIPp received and sent so far.
    pub fn sipp_trace(&self) -> String {
        self.sipp.trace()
    }

    /// Waits until SIPp's trace contains `needle`.
    pub async fn wait_for_trace(&self, needle: &str, within: Duration) {
        self.sipp.wait_for_trace(needle, within).await;
    }

    /// Waits (up to `within`) for SIPp to exit (run with `-m N`); its status: success when
    /// every call passed the scenario.
    pub async fn sipp_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        self.sipp.exit(within).await
    }

    /// A tcpdump of SIPp's SIP port and of `media_ports` (UDP), started now.
    pub fn capture_sipp(&self, name: &str, media_ports: &[u16]) -> capture::Capture {
        let ports: Vec<String> = std::iter::once(self.sipp_port)
            .chain(media_ports.iter().copied())
            .map(|p| format!("udp port {p}"))
            .collect();
        capture::Capture::start(self.dir.path(), name, &ports.join(" or "))
    }

    /// Plays the message to 2005551234 and waits (up to `within`) for the call to end normally
    /// (connection failure cause None), then for SIPp (run with `-m 1`) to exit counting it
    /// passed; the call's last information.
    pub async fn play_one_call(&mut self, within: Duration) -> PhoneCallInformation {
        let id = self.play("2005551234").await;
        let done = self
            .wait_for(&id, within, |i| {
                i.phone_call_state == ews_proto::PhoneCallState::Disconnected
            })
            .await;
        assert_eq!(
            done.connection_failure_cause,
            ews_proto::ConnectionFailureCause::None
        );
        let sipp = self.sipp_exit(Duration::from_secs(10)).await;
        assert!(
            sipp.success(),
            "SIPp counted the call as failed ({sipp})\n{}",
            self.sipp_trace()
        );
        done
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to openum and waits for it to exit.
    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.openum.id().to_string())
            .status();
        self.openum.wait().unwrap()
    }

    /// Starts openum again on the same configuration and data.
    pub async fn restart(&mut self) {
        self.openum = spawn_serve(&self.config, self.dir.path());
        wait_healthy(&self.http, &self.base, self.dir.path()).await;
    }
}

fn spawn_serve(config: &Path, dir: &Path) -> Child {
    serve::spawn(
        config,
        &dir.join("openum.log"),
        Some("info,rsipstack=debug"),
    )
}

/// Waits (20 s at most) until `/healthz` answers; panics with the tail of openum's log in `dir`
/// if it does not.
async fn wait_healthy(http: &reqwest::Client, base: &str, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(dir.join("openum.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            panic!(
                "openum did not start; the end of its log:\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Best effort: openum may already have exited (SIPp is stopped by its own Drop).
        let _ = self.openum.kill();
        let _ = self.openum.wait();
    }
}

/// Sends `request` and returns the answer's body.
pub async fn text_of(request: reqwest::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}
