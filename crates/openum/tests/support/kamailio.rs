//! A real Kamailio (SIP proxy, registrar) for the tests: started with the arguments a test
//! gives it, its log kept in a file, returned only once it is ready (its port bound), and
//! stopped (SIGTERM, passed on by `timeout`) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::ports::wait_child_ready;
use super::Processes;

/// A running Kamailio.
pub struct Kamailio {
    log: PathBuf,
    _process: Processes,
}

impl Kamailio {
    /// Runs `kamailio` with the arguments `args` adds (configuration, listeners, sizes), its
    /// output to `log`; returns once `ready` holds (15 s at most), or fails with Kamailio's log
    /// if it exits first. `install` names the Debian packages it needs, for the message if it is
    /// missing.
    pub fn start(
        args: impl FnOnce(&mut Command),
        log: &Path,
        ready: impl FnMut() -> bool,
        install: &str,
    ) -> Self {
        let mut kamailio = Command::new("timeout");
        kamailio.args(["300", "kamailio"]);
        args(&mut kamailio);
        let mut child = kamailio
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("kamailio is required (apt-get install {install}): {e}"));
        wait_child_ready("kamailio", Duration::from_secs(15), ready, &mut child, log);
        Self {
            log: log.to_owned(),
            _process: Processes(vec![child]),
        }
    }

    /// Everything Kamailio logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
