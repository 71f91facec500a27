//! A running `openum serve` for the tests that bring their own far end (baresip, Kamailio,
//! several SIPp processes): its configuration written from a few TOML lines, a user `alice`
//! with one voice-mail message, the process started and waited for (`/healthz`), its log kept
//! in a file, and EWS calls to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ews_proto::{PhoneCallInformation, PhoneCallState};

use super::phone::{chirp_wav, correlation, Phone};
use super::{add_user_with_message, ews, openum_bin, poll, text_of, tone_wav, Processes};

/// Starts `openum --config <config> serve`: stdout discarded, stderr appended to `log`, with
/// `OPENUM_LOG` set to `filter` (openum's default when `None`); the `OPENUM_*` variables that
/// would override a test's configuration (`OPENUM_LOG`, `OPENUM_LISTEN`, `OPENUM_POSTGRES_URL`)
/// are not passed on from the test's environment.
pub fn spawn(config: &Path, log: &Path, filter: Option<&str>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut serve = Command::new(openum_bin());
    serve
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("OPENUM_LOG")
        .env_remove("OPENUM_LISTEN")
        .env_remove("OPENUM_POSTGRES_URL")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(filter) = filter {
        serve.env("OPENUM_LOG", filter);
    }
    serve.spawn().expect("run openum serve")
}

/// What [`Openum::start`] writes and runs; made by [`Openum::config`].
pub struct Config {
    dir: PathBuf,
    http: u16,
    sip: u16,
    server: String,
    sip_lines: String,
    tables: String,
    message: Message,
    log_filter: Option<String>,
}

enum Message {
    Chirp,
    Tone(f32),
}

impl Config {
    /// Lines appended to `[server]` (after `listen` and `data_dir`).
    pub fn server(mut self, lines: &str) -> Self {
        self.server.push_str(lines);
        self.server.push('\n');
        self
    }

    /// Lines appended to `[sip]` (after `listen`).
    pub fn sip(mut self, lines: &str) -> Self {
        self.sip_lines.push_str(lines);
        self.sip_lines.push('\n');
        self
    }

    /// One `[[gateway]]` table with `lines` (TOML lines: `uri = …`, and any others).
    pub fn gateway(mut self, lines: &str) -> Self {
        self.tables.push_str("[[gateway]]\n");
        self.tables.push_str(lines);
        self.tables.push('\n');
        self
    }

    /// TOML written as it is after `[sip]`: tables such as `[[gateway]]` or
    /// `[[dialplan.rule]]`, or keys of `[sip]` before them.
    pub fn tables(mut self, toml: &str) -> Self {
        self.tables.push_str(toml);
        self
    }

    /// The message: a 440 Hz tone of `seconds` (default: the 2.5 s chirp of
    /// [`chirp_wav`]).
    pub fn tone(mut self, seconds: f32) -> Self {
        self.message = Message::Tone(seconds);
        self
    }

    /// `OPENUM_LOG` for the server (default: not set, openum's own default).
    pub fn log(mut self, filter: &str) -> Self {
        self.log_filter = Some(filter.to_owned());
        self
    }

    /// Writes the configuration and the message, adds alice with it, and starts
    /// `openum serve`; returns once `/healthz` answers (panics with the log after 20 s).
    pub async fn start(self) -> Openum {
        std::fs::create_dir_all(&self.dir).unwrap();
        let config = self.dir.join("openum.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\n{}\
                 [sip]\nlisten = \"127.0.0.1:{}\"\n{}{}",
                self.http,
                self.dir.join("data").display(),
                self.server,
                self.sip,
                self.sip_lines,
                self.tables,
            ),
        )
        .unwrap();
        let wav = match self.message {
            Message::Chirp => {
                let wav = self.dir.join("chirp.wav");
                chirp_wav(&wav);
                wav
            }
            Message::Tone(seconds) => {
                let wav = self.dir.join("message.wav");
                tone_wav(&wav, seconds);
                wav
            }
        };
        let item = add_user_with_message(&config, "alice", &wav);
        let log = self.dir.join("openum.log");
        let serve = spawn(&config, &log, self.log_filter.as_deref());
        let openum = Openum {
            dir: self.dir,
            config,
            http_port: self.http,
            base: format!("http://127.0.0.1:{}", self.http),
            http: reqwest::Client::new(),
            item,
            wav,
            log,
            process: Processes(vec![serve]),
        };
        poll::until(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || async {
                match openum
                    .http
                    .get(format!("{}/healthz", openum.base))
                    .send()
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!(
                        "openum did not start ({e}); its log:\n{}",
                        openum.log_text()
                    )),
                }
            },
        )
        .await;
        openum
    }
}

/// A running `openum serve` (stopped when dropped) with alice and her message.
pub struct Openum {
    /// Its configuration, data and log live here.
    pub dir: PathBuf,
    pub config: PathBuf,
    pub http_port: u16,
    /// `http://127.0.0.1:<http_port>`.
    pub base: String,
    pub http: reqwest::Client,
    /// The message's ItemId.
    pub item: String,
    /// The message as imported.
    pub wav: PathBuf,
    log: PathBuf,
    process: Processes,
}

impl Openum {
    /// A configuration for a server in `dir` with HTTP on `http` and SIP on `sip` (both on
    /// 127.0.0.1), to which the test adds its gateways.
    pub fn config(dir: &Path, http: u16, sip: u16) -> Config {
        Config {
            dir: dir.to_owned(),
            http,
            sip,
            server: String::new(),
            sip_lines: String::new(),
            tables: String::new(),
            message: Message::Chirp,
            log_filter: None,
        }
    }

    /// The process id of `openum serve`.
    pub fn pid(&self) -> u32 {
        self.process.0[0].id()
    }

    /// Everything openum logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path`; the body.
    pub async fn get(&self, path: &str) -> String {
        text_of(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await
    }

    /// Waits until `/metrics` contains `needle`.
    pub async fn wait_for_metric(&self, needle: &str, within: Duration) {
        poll::until(within, Duration::from_millis(100), || async {
            let metrics = self.metrics().await;
            if metrics.contains(needle) {
                Ok(())
            } else {
                Err(format!(
                    "{needle} never appeared in\n{metrics}\n--- log ---\n{}",
                    self.log_text()
                ))
            }
        })
        .await;
    }

    /// PlayOnPhone of the message to `dial`, which must succeed; the PhoneCallId.
    pub async fn play(&self, dial: &str) -> String {
        ews::play(&self.http, &self.base, &self.item, dial).await
    }

    /// PlayOnPhone to `dial`, which openum must refuse (ErrorUnifiedMessagingRequestFailed).
    pub async fn play_refused(&self, dial: &str) {
        ews::play_refused(&self.http, &self.base, &self.item, dial).await;
    }

    /// GetPhoneCallInformation of the call `id`.
    pub async fn info(&self, id: &str) -> PhoneCallInformation {
        ews::info(&self.http, &self.base, id).await
    }

    /// Every state the call `id` showed until it was Disconnected (within `within`), and its
    /// last information.
    pub async fn follow(
        &self,
        id: &str,
        within: Duration,
    ) -> (Vec<PhoneCallState>, PhoneCallInformation) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let info = self.info(id).await;
            if seen.last() != Some(&info.phone_call_state) {
                seen.push(info.phone_call_state);
            }
            if info.phone_call_state == PhoneCallState::Disconnected {
                return (seen, info);
            }
            assert!(
                Instant::now() < deadline,
                "call never ended; last {info:?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Plays the message to 4711 and returns GetPhoneCallInformation's answer (its text) once
    /// the call is Disconnected; panics with the log if it is not within `within`.
    pub async fn call_until_ended(&self, within: Duration) -> String {
        let reply = ews::post(
            &self.http,
            &self.base,
            &ews::play_on_phone(&self.item, "4711"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()));
        let id = ews::phone_call_id(&reply, &self.log_text());
        let request = ews::get_phone_call_information(&id);
        poll::until(within, Duration::from_millis(100), || async {
            let info = ews::post(&self.http, &self.base, &request).await.unwrap();
            if info.contains(">Disconnected<") {
                Ok(info)
            } else {
                Err(format!("call did not end: {info}\n{}", self.log_text()))
            }
        })
        .await
    }

    /// How well `phone`'s new recording matches the message: the best normalised correlation
    /// and its lag in samples.
    pub fn heard(&self, phone: &Phone) -> (f64, isize) {
        let got = phone.new_recording(&[]);
        let reference =
            audio::decode_to_8k_mono(&std::fs::read(&self.wav).unwrap(), Some("wav")).unwrap();
        correlation(&reference, &got, 8000)
    }

    /// Asserts `phone`'s new recording is the message (correlation ≥ 0.9).
    pub fn assert_phone_heard_the_message(&self, phone: &Phone) {
        let (score, lag) = self.heard(phone);
        assert!(
            score >= 0.9,
            "correlation {score:.4} at lag {lag} samples\n{}",
            self.log_text()
        );
    }
}
