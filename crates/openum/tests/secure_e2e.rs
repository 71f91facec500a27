//! SIP over TLS and SRTP against real peers: baresip (its `srtp` module, `mediaenc=srtp-mand`)
//! records what it decrypts; Kamailio (`tls.so`) is the TLS proxy in front of it, refusing any
//! request that did not reach it over TLS; certificates come from the `openssl` command.
//! Ports 48000-48999 and 49000-49099.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::phone::{chirp_wav, correlation, Phone};
use support::{add_user_with_message, openum_bin, Processes, PASSWORD};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// A running `openum serve` whose log goes to a file.
struct Openum {
    url: String,
    log: PathBuf,
    item: String,
    wav: PathBuf,
    _process: Processes,
}

impl Openum {
    /// Starts openum on `http`/`sip` with one gateway described by `gateway` (TOML lines), and
    /// a user with the chirp message.
    fn start(dir: &Path, http: u16, sip: u16, gateway: &str) -> Self {
        Self::start_with_sip(dir, http, sip, "", gateway)
    }

    /// [`Self::start`], with `sip_extra` (TOML lines) in `[sip]`.
    fn start_with_sip(dir: &Path, http: u16, sip: u16, sip_extra: &str, gateway: &str) -> Self {
        let config = dir.join("openum.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{http}\"\ndata_dir = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{sip}\"\n\
                 {sip_extra}\n[[gateway]]\n{gateway}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let wav = dir.join("chirp.wav");
        chirp_wav(&wav);
        let item = add_user_with_message(&config, "alice", &wav);
        let log = dir.join("openum.log");
        let child = Command::new(openum_bin())
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self {
            url: format!("http://127.0.0.1:{http}/EWS/Exchange.asmx"),
            log,
            item,
            wav,
            _process: Processes(vec![child]),
        }
    }

    async fn post(&self, body: String) -> Result<String, reqwest::Error> {
        reqwest::Client::new()
            .post(&self.url)
            .basic_auth("alice", Some(PASSWORD))
            .body(format!("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\"><s:Body>{body}</s:Body></s:Envelope>"))
            .send()
            .await?
            .text()
            .await
    }

    /// Plays the message to 4711 and returns GetPhoneCallInformation's answer once the call
    /// is Disconnected.
    async fn call_until_ended(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let reply = loop {
            match self.post(format!("<m:PlayOnPhone><m:ItemId Id=\"{}\"/><m:DialString>4711</m:DialString></m:PlayOnPhone>", self.item)).await {
                Ok(r) => break r,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("{e}\n{}", self.log_text()),
            }
        };
        let id = reply
            .split("PhoneCallId Id=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("{reply}"))
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let info = self
                .post(format!(
                    "<m:GetPhoneCallInformation><m:PhoneCallId Id=\"{id}\"/></m:GetPhoneCallInformation>"
                ))
                .await
                .unwrap();
            if info.contains(">Disconnected<") {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "call did not end: {info}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts the phone's new recording is the message (correlation ≥ 0.9).
    fn assert_phone_heard_the_message(&self, phone: &Phone) {
        let got = phone.new_recording(&[]);
        let reference =
            audio::decode_to_8k_mono(&std::fs::read(&self.wav).unwrap(), Some("wav")).unwrap();
        let (score, lag) = correlation(&reference, &got, 8000);
        assert!(
            score >= 0.9,
            "correlation {score:.4} at lag {lag} samples\n{}",
            self.log_text()
        );
    }
}

/// The text of `<name>…</name>` in an EWS answer (any prefix).
fn element(info: &str, name: &str) -> Option<String> {
    let at = info.find(&format!(":{name}"))?;
    let text = &info[at..];
    let text = &text[text.find('>')? + 1..];
    Some(text.split('<').next()?.to_owned())
}

/// Runs `openssl` with `args` in `dir`; fails the test if it is missing or fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `<name>-ca.pem`/`.key`, and with `leaf`, `<name>-<leaf>.pem`/`.key` it signed, valid for
/// `localhost` and 127.0.0.1.
fn make_ca(dir: &Path, name: &str, leaves: &[&str]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca_key, ca_pem) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    let ca_subject = format!("/CN=openum {name} CA");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend([
        "-keyout",
        &ca_key,
        "-out",
        &ca_pem,
        "-days",
        "2",
        "-subj",
        &ca_subject,
    ]);
    openssl(dir, &args);
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,DNS:sbc.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for leaf in leaves {
        let (key, csr, pem) = (
            format!("{name}-{leaf}.key"),
            format!("{name}-{leaf}.csr"),
            format!("{name}-{leaf}.pem"),
        );
        let subject = format!("/CN={leaf}");
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext.to_str().unwrap(),
            ],
        );
    }
}

/// Kamailio listening on TLS `tls_port` (not the phone's SIP port + 1: baresip listens for TLS
/// there) (certificate `test-localhost.pem`) and UDP `udp_port`,
/// relaying every call that arrived over TLS to the phone on `phone_port` over UDP, and
/// refusing with 403 any that did not. With `client_ca`, it demands a client certificate
/// signed by that CA (mutual TLS).
struct Kamailio {
    log: PathBuf,
    _process: Processes,
}

impl Kamailio {
    fn start(
        dir: &Path,
        tls_port: u16,
        udp_port: u16,
        phone_port: u16,
        client_ca: Option<&str>,
    ) -> Self {
        let run = dir.join("kamailio");
        std::fs::create_dir_all(&run).unwrap();
        let tls_cfg = run.join("tls.cfg");
        let client_check = match client_ca {
            Some(ca) => format!(
                "verify_certificate = yes\nrequire_certificate = yes\nca_list = {}\n",
                dir.join(ca).display()
            ),
            None => "verify_certificate = no\nrequire_certificate = no\n".to_owned(),
        };
        std::fs::write(
            &tls_cfg,
            format!(
                "[server:default]\nmethod = TLSv1.2+\n{client_check}private_key = {}\ncertificate = {}\n\n\
                 [client:default]\nverify_certificate = no\nrequire_certificate = no\n",
                dir.join("test-localhost.key").display(),
                dir.join("test-localhost.pem").display(),
            ),
        )
        .unwrap();
        let cfg = run.join("kamailio.cfg");
        std::fs::write(
            &cfg,
            format!(
                r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
enable_tls=yes
tcp_accept_aliases=yes
listen=udp:127.0.0.1:{udp_port}
listen=tls:127.0.0.1:{tls_port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
modparam("rr", "enable_double_rr", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{
            xlog("L_INFO", "in-dialog $rm over $pr from $si\n");
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if ($pr != "tls") {{
        xlog("L_WARN", "refusing $rm over $pr from $si\n");
        sl_send_reply("403", "TLS Required");
        exit;
    }}
    xlog("L_INFO", "relaying $rm for $ru over $pr from $si\n");
    record_route();
    $ru = "sip:" + $rU + "@127.0.0.1:{phone_port}";
    t_relay();
}}
"#,
                tls_cfg = tls_cfg.display(),
            ),
        )
        .unwrap();
        let log = run.join("kamailio.log");
        let child = Command::new("timeout")
            .args(["300", "kamailio", "-DD", "-E", "-f"])
            .arg(&cfg)
            .arg("-Y")
            .arg(&run)
            .args(["-m", "64", "-M", "8"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kamailio is required (apt-get install kamailio kamailio-tls-modules)");
        let kamailio = Self {
            log,
            _process: Processes(vec![child]),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        // Polled in /proc/net/tcp, not by connecting: a connect to a loopback port in the
        // ephemeral range can connect to itself and take the port away from Kamailio.
        while !listening(tls_port) {
            assert!(
                Instant::now() < deadline,
                "kamailio did not open its TLS port:\n{}",
                kamailio.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kamailio
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether something listens on TCP 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

#[tokio::test]
async fn mandatory_srtp_carries_the_message_intact_to_a_phone_that_demands_srtp() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip) = (48000, 48001, 48002);
    let phone = Phone::start_with(dir.path(), phone_sip, 48050, 48099, Some("srtp-mand"));
    let openum = Openum::start(
        dir.path(),
        http,
        sip,
        &format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\nsrtp = \"mandatory\""),
    );
    let info = openum.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("None"),
        "{info}"
    );
    // baresip with srtp-mand decodes nothing that is not SRTP under the offered key.
    openum.assert_phone_heard_the_message(&phone);
    let log = openum.log_text();
    assert!(log.contains("SRTP negotiated"), "{log}");
    // Its RTCP is SRTCP: judged in srtcp_e2e.
}

#[tokio::test]
async fn mandatory_srtp_refused_by_a_plain_phone_ends_the_call_as_other_with_its_sip_code() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip) = (48100, 48101, 48102);
    let _phone = Phone::start(dir.path(), phone_sip, 48150, 48199);
    let openum = Openum::start(
        dir.path(),
        http,
        sip,
        &format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\nsrtp = \"mandatory\""),
    );
    let info = openum.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("Other"),
        "{info}"
    );
    let code: u16 = element(&info, "SIPResponseCode")
        .unwrap_or_else(|| panic!("no SIP code: {info}"))
        .parse()
        .unwrap();
    // baresip without SRTP refuses the RTP/SAVP offer: 488 Not Acceptable Here.
    assert_eq!(code, 488, "{info}");
}

#[tokio::test]
async fn tls_signalling_through_kamailio_and_srtp_media_reach_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, tls, udp) = (48200, 48201, 48202, 48210, 48211);
    make_ca(dir.path(), "test", &["localhost"]);
    let phone = Phone::start_with(dir.path(), phone_sip, 48250, 48299, Some("srtp-mand"));
    let kamailio = Kamailio::start(dir.path(), tls, udp, phone_sip, None);
    let openum = Openum::start(
        dir.path(),
        http,
        sip,
        &format!(
            "uri = \"sips:{{number}}@localhost:{tls}\"\naddress = \"127.0.0.1:{tls}\"\n\
             ca_file = \"{}\"\nsrtp = \"mandatory\"",
            dir.path().join("test-ca.pem").display()
        ),
    );
    let info = openum.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("None"),
        "{info}\n{}\n{}",
        openum.log_text(),
        kamailio.log_text()
    );
    openum.assert_phone_heard_the_message(&phone);
    let log = kamailio.log_text();
    assert!(log.contains("relaying INVITE"), "{log}");
    assert!(log.contains("over tls"), "{log}");
    assert!(!log.contains("refusing"), "{log}");
    // openum's BYE follows the Record-Route back through the proxy, over its TLS connection.
    assert!(log.contains("in-dialog BYE over tls"), "{log}");
    assert!(openum.log_text().contains("SIP TLS connection open"));
}

#[tokio::test]
async fn a_gateway_certificate_from_an_untrusted_ca_ends_the_call_with_the_reason_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, tls, udp) = (48300, 48301, 48302, 48310, 48311);
    make_ca(dir.path(), "test", &["localhost"]);
    make_ca(dir.path(), "other", &[]);
    let _phone = Phone::start(dir.path(), phone_sip, 48350, 48399);
    let kamailio = Kamailio::start(dir.path(), tls, udp, phone_sip, None);
    let openum = Openum::start(
        dir.path(),
        http,
        sip,
        &format!(
            "uri = \"sips:{{number}}@localhost:{tls}\"\naddress = \"127.0.0.1:{tls}\"\n\
             ca_file = \"{}\"",
            dir.path().join("other-ca.pem").display()
        ),
    );
    let info = openum.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("Other"),
        "{info}"
    );
    let log = openum.log_text();
    assert!(log.contains("TLS handshake with 127.0.0.1"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(!kamailio.log_text().contains("relaying INVITE"));
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate_the_proxy_demands() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, tls, udp) = (48400, 48401, 48402, 48410, 48411);
    make_ca(dir.path(), "test", &["localhost", "openum"]);
    let phone = Phone::start(dir.path(), phone_sip, 48450, 48499);
    let kamailio = Kamailio::start(dir.path(), tls, udp, phone_sip, Some("test-ca.pem"));
    let gateway = |client: bool| {
        let mut g = format!(
            "uri = \"sip:{{number}}@localhost:{tls};transport=tls\"\ntransport = \"tls\"\n\
             address = \"127.0.0.1:{tls}\"\nca_file = \"{}\"\n",
            dir.path().join("test-ca.pem").display()
        );
        if client {
            g.push_str(&format!(
                "client_cert = \"{}\"\nclient_key = \"{}\"\n",
                dir.path().join("test-openum.pem").display(),
                dir.path().join("test-openum.key").display()
            ));
        }
        g
    };
    let openum = Openum::start(dir.path(), http, sip, &gateway(true));
    let info = openum.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("None"),
        "{info}\n{}\n{}",
        openum.log_text(),
        kamailio.log_text()
    );
    openum.assert_phone_heard_the_message(&phone);
    assert!(kamailio.log_text().contains("relaying INVITE"));

    // The same gateway without the client certificate: the proxy refuses the connection.
    let bare = dir.path().join("without-client-cert");
    std::fs::create_dir_all(&bare).unwrap();
    let without = Openum::start(&bare, http + 5, sip + 5, &gateway(false));
    let info = without.call_until_ended().await;
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("Other"),
        "{info}\n{}",
        without.log_text()
    );
    assert_eq!(element(&info, "SIPResponseCode"), None, "{info}");
    let log = without.log_text();
    assert!(
        log.contains("closed before the INVITE was answered"),
        "{log}"
    );
}

/// Issue 11 items 1-3 together: a TLS gateway whose certificate does not verify is a transport
/// failure, so the call moves on to the group's next gateway — TLS through Kamailio with SRTP
/// mandatory — whose INVITE goes over its own TLS connection and offers what *it* needs
/// (RTP/SAVP with a key: the phone behind it refuses anything else with 488), although the
/// first gateway had SRTP off.
#[tokio::test]
async fn a_tls_gateway_whose_certificate_does_not_verify_hands_the_call_to_a_tls_srtp_one() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, tls, udp) = (49000, 49001, 49002, 49010, 49011);
    make_ca(dir.path(), "test", &["localhost"]);
    make_ca(dir.path(), "other", &[]);
    let phone = Phone::start_with(dir.path(), phone_sip, 49050, 49099, Some("srtp-mand"));
    let kamailio = Kamailio::start(dir.path(), tls, udp, phone_sip, None);
    let openum = Openum::start(
        dir.path(),
        http,
        sip,
        &format!(
            "name = \"untrusted\"\nuri = \"sips:{{number}}@localhost:{tls}\"\n\
             address = \"127.0.0.1:{tls}\"\nca_file = \"{}\"\nsrtp = \"off\"\n\
             [[gateway]]\nname = \"sbc\"\nuri = \"sips:{{number}}@localhost:{tls}\"\n\
             address = \"127.0.0.1:{tls}\"\nca_file = \"{}\"\nsrtp = \"mandatory\"",
            dir.path().join("other-ca.pem").display(),
            dir.path().join("test-ca.pem").display()
        ),
    );
    let info = openum.call_until_ended().await;
    let log = openum.log_text();
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("None"),
        "{info}\n{log}\n{}",
        kamailio.log_text()
    );
    openum.assert_phone_heard_the_message(&phone);
    // The first attempt failed on the certificate, before any INVITE left…
    assert!(log.contains("TLS handshake with 127.0.0.1"), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("moving the call to the next gateway"), "{log}");
    assert!(log.contains("to=sbc"), "{log}");
    // …and the second one negotiated SRTP over its own verified connection.
    assert!(log.contains("SRTP negotiated"), "{log}");
    assert!(log.contains("SIP TLS connection open"), "{log}");
    let relayed = kamailio.log_text();
    assert_eq!(
        relayed.matches("relaying INVITE").count(),
        1,
        "one INVITE reached the proxy:\n{relayed}"
    );
    assert!(relayed.contains("over tls"), "{relayed}");
}

/// dnsmasq answering for `sbc.test` from `records` (its command-line options) on
/// `127.0.0.1:port`; stopped when dropped.
struct Dnsmasq(std::process::Child);

impl Dnsmasq {
    fn start(port: u16, records: &[String]) -> Self {
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
            .arg("--local=/sbc.test/")
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq is required for the DNS test (apt-get install dnsmasq-base)");
        Self(child)
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

/// RFC 3263 for a `sips:` gateway: NAPTR `SIPS+D2T` (a `SIP+D2U` one of better order is passed
/// over) → SRV `_sips._tcp` under a name only the NAPTR gives → the target's address and port;
/// the certificate is checked against the configured host `sbc.test`, which the proxy's
/// certificate names, not the SRV target `proxy.sbc.test`, which it does not.
#[tokio::test]
async fn a_sips_gateway_is_located_by_naptr_sips_d2t_and_sips_srv_and_verified_as_its_host() {
    let dir = tempfile::tempdir().unwrap();
    let (http, sip, phone_sip, dns, tls, udp) = (49100, 49101, 49102, 49105, 49110, 49111);
    make_ca(dir.path(), "test", &["localhost"]);
    let _dnsmasq = Dnsmasq::start(
        dns,
        &[
            "--naptr-record=sbc.test,5,10,S,SIP+D2U,,_sip._udp.plain.sbc.test".to_owned(),
            "--naptr-record=sbc.test,10,10,S,SIPS+D2T,,_sips._tcp.via-naptr.sbc.test".to_owned(),
            format!("--srv-host=_sip._udp.plain.sbc.test,proxy.sbc.test,{udp},10,1"),
            format!("--srv-host=_sips._tcp.via-naptr.sbc.test,proxy.sbc.test,{tls},10,1"),
            "--host-record=proxy.sbc.test,127.0.0.1".to_owned(),
        ],
    );
    let phone = Phone::start_with(dir.path(), phone_sip, 49150, 49199, Some("srtp-mand"));
    let kamailio = Kamailio::start(dir.path(), tls, udp, phone_sip, None);
    let openum = Openum::start_with_sip(
        dir.path(),
        http,
        sip,
        &format!("dns_servers = [\"127.0.0.1:{dns}\"]"),
        &format!(
            "uri = \"sips:{{number}}@sbc.test\"\nca_file = \"{}\"\nsrtp = \"mandatory\"",
            dir.path().join("test-ca.pem").display()
        ),
    );
    let info = openum.call_until_ended().await;
    let log = openum.log_text();
    assert_eq!(
        element(&info, "ConnectionFailureCause").as_deref(),
        Some("None"),
        "{info}\n{log}\n{}",
        kamailio.log_text()
    );
    openum.assert_phone_heard_the_message(&phone);
    assert!(log.contains("gateway host resolved"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{tls}")), "{log}");
    assert!(log.contains("name=sbc.test"), "{log}");
    let relayed = kamailio.log_text();
    assert!(relayed.contains("relaying INVITE"), "{relayed}");
    // Over TLS, not the UDP port the SIP+D2U NAPTR leads to.
    assert!(!relayed.contains("refusing"), "{relayed}");
}
