//! Secure call load (not a test): N concurrent calls through openum's SIP stack, three ways in
//! one run — plain RTP over UDP signalling (the baseline), SRTP (SDES, AES_CM_128_HMAC_SHA1_80)
//! to a SIPp UAS that answers with `a=crypto` (`tests/peers/uas_srtp.xml`), and plain RTP with
//! SIP over TLS through a Kamailio TLS proxy in front of SIPp. Reports, per mode, CPU per call
//! while all N play, RTP send lateness p99, and CPU spent per call while they were set up, each
//! with its ratio to the baseline.
//!
//! usage: secure_call_load [seconds] [N …]   (default 10 s; 200). Needs sipp, kamailio with
//! kamailio-tls-modules, and openssl.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark binary"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

extern crate openum_server as server;

use call_runtime::SipCallService;
use server::config::{GatewayConfig, SipConfig, SipTransport, SrtpMode};
use server::registry::Registry;
use server::voicemail::LocalAudio;

#[path = "common/place.rs"]
mod place;
use place::{place_calls, wait_connected};

#[path = "common/bench_store.rs"]
mod bench_store;
use bench_store::bench_store;
#[path = "common/setup.rs"]
mod setup;
use setup::{hang_up_all, sipp, Killed};

#[path = "../../call-runtime/examples/common/proc_stats.rs"]
#[allow(dead_code, reason = "shared helpers: memory is not reported here")]
mod proc_stats;
use proc_stats::{cpu_time, seconds_and_levels};

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)")
        .success();
    assert!(ok, "openssl {args:?} failed");
}

/// A CA and a `localhost` certificate it signed, in `dir`.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=bench CA",
    ]);
    openssl(dir, &ca);
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    let mut leaf = vec!["req"];
    leaf.extend(ec);
    leaf.extend([
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &leaf);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// Kamailio: TLS on `tls`, UDP on `udp`, relaying to SIPp on `sipp_port`.
fn kamailio(dir: &Path, tls: u16, udp: u16, sipp_port: u16) -> Child {
    let tls_cfg = dir.join("tls.cfg");
    std::fs::write(
        &tls_cfg,
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
             private_key = {}\ncertificate = {}\n[client:default]\nverify_certificate = no\n",
            dir.join("srv.key").display(),
            dir.join("srv.pem").display()
        ),
    )
    .unwrap();
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(
        &cfg,
        format!(
            r#"#!KAMAILIO
debug=1
log_stderror=yes
children=2
tcp_children=2
enable_tls=yes
tcp_accept_aliases=yes
listen=udp:127.0.0.1:{udp}
listen=tls:127.0.0.1:{tls}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "tls.so"
modparam("tls", "config", "{}")
modparam("rr", "enable_double_rr", 1)
request_route {{
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    record_route();
    $ru = "sip:" + $rU + "@127.0.0.1:{sipp_port}";
    t_relay();
}}
"#,
            tls_cfg.display()
        ),
    )
    .unwrap();
    Command::new("timeout")
        .args(["900", "kamailio", "-DD", "-E", "-f"])
        .arg(&cfg)
        .arg("-Y")
        .arg(dir)
        .args(["-m", "256", "-M", "16"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kamailio (apt-get install kamailio kamailio-tls-modules)")
}

/// What one mode measured at one N.
struct Measured {
    connected: usize,
    setup_cpu_us_per_call: f64,
    cpu_us_per_call_s: f64,
    p99_ms: f64,
    send_errors: u64,
}

async fn run(
    service: &SipCallService,
    registry: &Registry,
    item: &str,
    n: usize,
    secs: u64,
) -> Measured {
    let cpu_setup = cpu_time();
    let ids = place_calls(service, registry, item, n).await;
    let connected = wait_connected(registry, &ids, Duration::from_millis(200)).await;
    let setup = cpu_time() - cpu_setup;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = service.media().stats();
    stats.reset();
    let cpu0 = cpu_time();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let cpu = cpu_time() - cpu0;
    let measured = Measured {
        connected,
        setup_cpu_us_per_call: setup.as_micros() as f64 / n as f64,
        cpu_us_per_call_s: cpu.as_micros() as f64 / n as f64 / secs as f64,
        p99_ms: stats.lateness_percentile_us(0.99) as f64 / 1000.0,
        send_errors: stats.send_errors.load(std::sync::atomic::Ordering::Relaxed),
    };
    hang_up_all(service, &ids).await;
    measured
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (secs, ns) = seconds_and_levels(&[200]);
    if let Ok(filter) = std::env::var("OPENUM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let _peers = Killed(vec![
        sipp("uas_multi.xml", 48570, 48600),
        sipp("uas_srtp.xml", 48571, 48700),
        sipp("uas_multi.xml", 48572, 48800),
        kamailio(dir.path(), 48580, 48581, 48572),
    ]);
    // Kamailio listens once its configuration is loaded (polled in /proc/net/tcp: connecting
    // to a loopback port in the ephemeral range can connect to itself).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .any(|l| l.contains(&format!("0100007F:{:04X} 00000000:0000 0A", 48580)))
    {
        assert!(
            Instant::now() < deadline,
            "kamailio did not open its TLS port 48580"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (registry, item) = bench_store(dir.path(), 120.0).await;
    let base = GatewayConfig {
        max_concurrent_calls: 100_000,
        calls_per_second: 100_000,
        ring_timeout_secs: 60,
        ..GatewayConfig::default()
    };
    let modes = [
        (
            "plain RTP, SIP/UDP (baseline)",
            48540,
            GatewayConfig {
                uri: "sip:{number}@127.0.0.1:48570".into(),
                ..base.clone()
            },
        ),
        (
            "SRTP (SDES), SIP/UDP",
            48541,
            GatewayConfig {
                uri: "sip:{number}@127.0.0.1:48571".into(),
                srtp: SrtpMode::Mandatory,
                ..base.clone()
            },
        ),
        (
            "plain RTP, SIP/TLS via Kamailio",
            48542,
            GatewayConfig {
                uri: "sip:{number}@localhost:48580;transport=tls".into(),
                transport: SipTransport::Tls,
                address: Some("127.0.0.1:48580".into()),
                ca_file: Some(dir.path().join("ca.pem")),
                ..base.clone()
            },
        ),
    ];
    println!("| calls | mode | connected | CPU µs per call·s | ratio | lateness p99 ms | ratio | setup CPU µs per call | ratio | send errors |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (level, n) in ns.into_iter().enumerate() {
        let mut baseline: Option<Measured> = None;
        for (name, port, gateway) in &modes {
            // A port per level: the previous level's stack may still hold its socket.
            let port = port + 3 * level as u16;
            let sip = SipConfig {
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                ..SipConfig::default()
            };
            let service = SipCallService::start(
                Arc::clone(&registry) as _,
                Arc::new(LocalAudio::new(dir.path().to_owned())),
                &(&sip).into(),
                gateway.into(),
            )
            .await
            .unwrap();
            let m = run(&service, &registry, &item, n, secs).await;
            service.shutdown(Duration::from_secs(2)).await;
            let b = baseline.as_ref().unwrap_or(&m);
            println!(
                "| {n} | {name} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {} |",
                m.connected,
                m.cpu_us_per_call_s,
                m.cpu_us_per_call_s / b.cpu_us_per_call_s,
                m.p99_ms,
                m.p99_ms / b.p99_ms,
                m.setup_cpu_us_per_call,
                m.setup_cpu_us_per_call / b.setup_cpu_us_per_call,
                m.send_errors,
            );
            if baseline.is_none() {
                baseline = Some(m);
            }
        }
    }
}
