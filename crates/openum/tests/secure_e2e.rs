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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::dnsmasq::Dnsmasq;
use support::ews::element;
use support::kamailio::Kamailio;
use support::phone::Phone;
use support::ports::tcp_listening;
use support::serve::Openum;

/// How long a call may take to end.
const CALL: Duration = Duration::from_secs(40);

/// openum on `http`/`sip` with one gateway described by `gateway` (TOML lines), and a user with
/// the chirp message.
async fn start_openum(dir: &Path, http: u16, sip: u16, gateway: &str) -> Openum {
    Openum::config(dir, http, sip)
        .gateway(gateway)
        .start()
        .await
}

/// Asserts that the call whose GetPhoneCallInformation answer is `info` ended with connection
/// failure cause `cause`; shows the answer and `context` (logs) when it did not.
fn assert_cause(info: &str, cause: &str, context: &str) {
    assert_eq!(
        element(info, "ConnectionFailureCause").as_deref(),
        Some(cause),
        "{info}\n{context}"
    );
}

/// The lines of a gateway reached as `sips:{number}@localhost` at Kamailio's TLS port `tls`,
/// trusting the CA in `ca` (a file in `dir`), and `extra` lines.
fn sips_gateway(dir: &Path, tls: u16, ca: &str, extra: &str) -> String {
    format!(
        "uri = \"sips:{{number}}@localhost:{tls}\"\naddress = \"127.0.0.1:{tls}\"\n\
         ca_file = \"{}\"\n{extra}",
        dir.join(ca).display()
    )
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
fn start_kamailio(
    dir: &Path,
    tls_port: u16,
    udp_port: u16,
    phone_port: u16,
    client_ca: Option<&str>,
) -> Kamailio {
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
    // Ready once it listens on TLS: polled in /proc/net/tcp, not by connecting (a connect to a
    // loopback port in the ephemeral range can connect to itself and take the port away).
    Kamailio::start(
        |k| {
            k.args(["-DD", "-E", "-f"])
                .arg(&cfg)
                .arg("-Y")
                .arg(&run)
                .args(["-m", "64", "-M", "8"]);
        },
        &run.join("kamailio.log"),
        || tcp_listening(tls_port),
        "kamailio kamailio-tls-modules",
    )
}

/// A call with SRTP mandatory straight to a phone (baresip with `mediaenc`) on the ports at `base`:
/// HTTP `base`, openum's SIP `base + 1`, the phone's SIP `base + 2` and RTP `base + 50..=base + 99`.
/// openum, the phone, and GetPhoneCallInformation's answer once the call ended.
async fn mandatory_srtp_call(
    dir: &Path,
    base: u16,
    mediaenc: Option<&str>,
) -> (Openum, Phone, String) {
    let phone_sip = base + 2;
    let phone = Phone::start_with(dir, phone_sip, base + 50, base + 99, mediaenc);
    let openum = start_openum(
        dir,
        base,
        base + 1,
        &format!("uri = \"sip:{{number}}@127.0.0.1:{phone_sip}\"\nsrtp = \"mandatory\""),
    )
    .await;
    let info = openum.call_until_ended(CALL).await;
    (openum, phone, info)
}

#[tokio::test]
async fn mandatory_srtp_carries_the_message_intact_to_a_phone_that_demands_srtp() {
    let dir = tempfile::tempdir().unwrap();
    let (openum, phone, info) = mandatory_srtp_call(dir.path(), 48000, Some("srtp-mand")).await;
    assert_cause(&info, "None", "");
    // baresip with srtp-mand decodes nothing that is not SRTP under the offered key.
    openum.assert_phone_heard_the_message(&phone);
    let log = openum.log_text();
    assert!(log.contains("SRTP negotiated"), "{log}");
    // Its RTCP is SRTCP: judged in srtcp_e2e.
}

#[tokio::test]
async fn mandatory_srtp_refused_by_a_plain_phone_ends_the_call_as_other_with_its_sip_code() {
    let dir = tempfile::tempdir().unwrap();
    let (_openum, _phone, info) = mandatory_srtp_call(dir.path(), 48100, None).await;
    assert_cause(&info, "Other", "");
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
    let kamailio = start_kamailio(dir.path(), tls, udp, phone_sip, None);
    let openum = start_openum(
        dir.path(),
        http,
        sip,
        &sips_gateway(dir.path(), tls, "test-ca.pem", "srtp = \"mandatory\""),
    )
    .await;
    let info = openum.call_until_ended(CALL).await;
    assert_cause(
        &info,
        "None",
        &format!("{}\n{}", openum.log_text(), kamailio.log_text()),
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
    let kamailio = start_kamailio(dir.path(), tls, udp, phone_sip, None);
    let openum = start_openum(
        dir.path(),
        http,
        sip,
        &sips_gateway(dir.path(), tls, "other-ca.pem", ""),
    )
    .await;
    let info = openum.call_until_ended(CALL).await;
    assert_cause(&info, "Other", "");
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
    let kamailio = start_kamailio(dir.path(), tls, udp, phone_sip, Some("test-ca.pem"));
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
    let openum = start_openum(dir.path(), http, sip, &gateway(true)).await;
    let info = openum.call_until_ended(CALL).await;
    assert_cause(
        &info,
        "None",
        &format!("{}\n{}", openum.log_text(), kamailio.log_text()),
    );
    openum.assert_phone_heard_the_message(&phone);
    assert!(kamailio.log_text().contains("relaying INVITE"));

    // The same gateway without the client certificate: the proxy refuses the connection.
    let bare = dir.path().join("without-client-cert");
    std::fs::create_dir_all(&bare).unwrap();
    let without = start_openum(&bare, http + 5, sip + 5, &gateway(false)).await;
    let info = without.call_until_ended(CALL).await;
    assert_cause(&info, "Other", &without.log_text());
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
    let kamailio = start_kamailio(dir.path(), tls, udp, phone_sip, None);
    let openum = start_openum(
        dir.path(),
        http,
        sip,
        &format!(
            "name = \"untrusted\"\n{}[[gateway]]\nname = \"sbc\"\n{}",
            sips_gateway(dir.path(), tls, "other-ca.pem", "srtp = \"off\"\n"),
            sips_gateway(dir.path(), tls, "test-ca.pem", "srtp = \"mandatory\""),
        ),
    )
    .await;
    let info = openum.call_until_ended(CALL).await;
    let log = openum.log_text();
    assert_cause(&info, "None", &format!("{log}\n{}", kamailio.log_text()));
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
        "sbc.test",
        &[
            "--naptr-record=sbc.test,5,10,S,SIP+D2U,,_sip._udp.plain.sbc.test".to_owned(),
            "--naptr-record=sbc.test,10,10,S,SIPS+D2T,,_sips._tcp.via-naptr.sbc.test".to_owned(),
            format!("--srv-host=_sip._udp.plain.sbc.test,proxy.sbc.test,{udp},10,1"),
            format!("--srv-host=_sips._tcp.via-naptr.sbc.test,proxy.sbc.test,{tls},10,1"),
            "--host-record=proxy.sbc.test,127.0.0.1".to_owned(),
        ],
    );
    let phone = Phone::start_with(dir.path(), phone_sip, 49150, 49199, Some("srtp-mand"));
    let kamailio = start_kamailio(dir.path(), tls, udp, phone_sip, None);
    let openum = Openum::config(dir.path(), http, sip)
        .sip(&format!("dns_servers = [\"127.0.0.1:{dns}\"]"))
        .gateway(&format!(
            "uri = \"sips:{{number}}@sbc.test\"\nca_file = \"{}\"\nsrtp = \"mandatory\"",
            dir.path().join("test-ca.pem").display()
        ))
        .start()
        .await;
    let info = openum.call_until_ended(CALL).await;
    let log = openum.log_text();
    assert_cause(&info, "None", &format!("{log}\n{}", kamailio.log_text()));
    openum.assert_phone_heard_the_message(&phone);
    assert!(log.contains("gateway host resolved"), "{log}");
    assert!(log.contains(&format!("127.0.0.1:{tls}")), "{log}");
    assert!(log.contains("name=sbc.test"), "{log}");
    let relayed = kamailio.log_text();
    assert!(relayed.contains("relaying INVITE"), "{relayed}");
    // Over TLS, not the UDP port the SIP+D2U NAPTR leads to.
    assert!(!relayed.contains("refusing"), "{relayed}");
}
