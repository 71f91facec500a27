//! dnsmasq as the DNS server of the NAPTR/SRV tests: it answers from the records it is given
//! and NXDOMAIN for anything else under one domain; started only once its UDP port is bound,
//! stopped (SIGTERM, passed on by `timeout`) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::{udp_bound, wait_ready};

/// A running dnsmasq.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    /// dnsmasq on `127.0.0.1:port` serving `records` (its command-line options, e.g.
    /// `--srv-host=…`) as the only names under `domain`.
    pub fn start(port: u16, domain: &str, records: &[String]) -> Self {
        let child = Command::new("timeout")
            .arg("300")
            .arg("dnsmasq")
            .args(["-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--local=/{domain}/"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq is required for the DNS test (apt-get install dnsmasq-base)");
        let mut dnsmasq = Self(child);
        let process = &mut dnsmasq.0;
        let said = std::cell::RefCell::new(String::new());
        wait_ready(
            &format!("dnsmasq on UDP port {port}"),
            Duration::from_secs(10),
            || udp_bound(port),
            || {
                let status = process.try_wait().unwrap()?;
                if let Some(mut stderr) = process.stderr.take() {
                    // Its complaint, for the panic message; none is fine too.
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut said.borrow_mut());
                }
                Some(status)
            },
            || said.borrow().clone(),
        );
        dnsmasq
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // Best effort: the process may already have exited.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}
