//! A real SIPp far end on loopback running one of the scenarios in `tests/peers`, started only
//! once it has bound its ports (so that a test's first INVITE or OPTIONS cannot race its
//! start-up), its message trace kept in a file, and stopped with SIGTERM (which coreutils
//! `timeout` passes on; SIGKILL would orphan SIPp) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::ports::{tcp_listening, udp_bound, wait_child_ready};
use super::{peers_dir, poll};

/// How to start SIPp; made by [`Sipp::uas`].
pub struct SippCommand {
    scenario: PathBuf,
    port: u16,
    media_port: u16,
    trace: PathBuf,
    rtp_echo: bool,
    tcp: bool,
    args: Vec<String>,
}

impl SippCommand {
    /// Extra SIPp arguments (e.g. `-m 1`: exit after one call, status 0 if it passed).
    pub fn args(mut self, args: &[String]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Signalling over TCP (`-t t1`) instead of UDP.
    pub fn tcp(mut self, tcp: bool) -> Self {
        self.tcp = tcp;
        self
    }

    /// Without `-rtp_echo`: SIPp then sends no RTP back.
    pub fn no_rtp_echo(mut self) -> Self {
        self.rtp_echo = false;
        self
    }

    /// Starts SIPp; returns once its SIP port is bound (listening, over TCP) and its media
    /// port too. Panics with SIPp's own words if it exits first or is not ready within 10 s.
    pub fn start(self) -> Sipp {
        let output = self.trace.with_extension("out");
        let mut sipp = Command::new("timeout");
        sipp.arg("300")
            .arg("sipp")
            .arg("-sf")
            .arg(&self.scenario)
            .args(["-i", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-mp", &self.media_port.to_string()]);
        if self.rtp_echo {
            sipp.arg("-rtp_echo");
        }
        sipp.arg("-nostdin")
            // uas_multi.xml's digest branch reads these.
            .args(["-key", "user", "alice", "-key", "pass", "secret"])
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(&self.trace)
            .args(&self.args);
        if self.tcp {
            sipp.args(["-t", "t1"]);
        }
        let child = sipp
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&output).unwrap())
            .spawn()
            .expect("sipp is required for the end-to-end tests (apt-get install sip-tester)");
        let mut sipp = Sipp {
            child,
            trace: self.trace,
        };
        let (port, media_port, tcp) = (self.port, self.media_port, self.tcp);
        wait_child_ready(
            &format!(
                "SIPp on {} port {port} (media {media_port})",
                if tcp { "TCP" } else { "UDP" }
            ),
            Duration::from_secs(10),
            || {
                (if tcp {
                    tcp_listening(port)
                } else {
                    udp_bound(port)
                }) && udp_bound(media_port)
            },
            &mut sipp.child,
            &output,
        );
        sipp
    }
}

/// A running SIPp.
pub struct Sipp {
    child: Child,
    trace: PathBuf,
}

impl Sipp {
    /// SIPp running `scenario` (a file in `tests/peers`) as a UAS on 127.0.0.1:`port`, its RTP
    /// on `media_port` (and the next ports) echoed back, writing the messages it sends and
    /// receives to `trace`.
    pub fn uas(scenario: &str, port: u16, media_port: u16, trace: &Path) -> SippCommand {
        SippCommand {
            scenario: peers_dir().join(scenario),
            port,
            media_port,
            trace: trace.to_owned(),
            rtp_echo: true,
            tcp: false,
            args: Vec::new(),
        }
    }

    /// The SIP messages SIPp received and sent so far.
    pub fn trace(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    /// How many INVITEs (initial and re-INVITEs) SIPp received or sent so far.
    pub fn invites(&self) -> usize {
        self.trace().matches("INVITE sip:").count()
    }

    /// Waits until SIPp's trace contains `needle`.
    pub async fn wait_for_trace(&self, needle: &str, within: Duration) {
        poll::until(within, Duration::from_millis(50), || async {
            let trace = self.trace();
            if trace.contains(needle) {
                Ok(())
            } else {
                Err(format!("SIPp never saw {needle:?}\n{trace}"))
            }
        })
        .await;
    }

    /// Waits (up to `within`) for SIPp to exit (run with `-m N`); its status: success when
    /// every call passed the scenario.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let (child, trace) = (&mut self.child, &self.trace);
        poll::until(within, Duration::from_millis(50), || {
            let exited = child.try_wait().unwrap();
            async move {
                exited.ok_or_else(|| {
                    format!(
                        "SIPp still running\n{}",
                        std::fs::read_to_string(trace).unwrap_or_default()
                    )
                })
            }
        })
        .await
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        // Best effort: stopping a SIPp that is gone can only fail, which changes nothing.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }
}
