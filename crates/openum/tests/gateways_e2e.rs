//! Several gateways, end to end: the real `openum` binary placing calls through a gateway group
//! whose members are real SIPp processes on loopback — one that refuses with 503
//! (`tests/peers/uas_refuse.xml`), one that never answers, one that works
//! (`tests/peers/uas_multi.xml`) — and OPTIONS pings marking a gateway down and up again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::dnsmasq::Dnsmasq;
use support::kamailio::Kamailio;
use support::ports::udp_bound;
use support::serve::Openum;
use support::sipp::Sipp;
use support::{openum, peers_dir};

const CALL: Duration = Duration::from_secs(40);

/// Ports for one test, in this file's range (47000-47999): HTTP, openum's SIP, then pairs of
/// (SIPp SIP, SIPp media). SIPp's media takes its port and the next ones (RTP, RTCP, echo), so
/// media ports sit 10 apart, away from every SIP port.
fn ports() -> [u16; 6] {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 47000 + (std::process::id() % 7) as u16 * 128;
    let b = base + NEXT.fetch_add(1, Ordering::Relaxed) % 4 * 32;
    [b, b + 1, b + 2, b + 10, b + 3, b + 20]
}

/// A SIPp UAS on loopback running `scenario`, its trace in `dir/<name>-messages.log`.
fn sipp(dir: &Path, name: &str, scenario: &str, port: u16, media_port: u16) -> Sipp {
    Sipp::uas(
        scenario,
        port,
        media_port,
        &dir.join(format!("{name}-messages.log")),
    )
    .start()
}

/// openum serving on `http_port` with `gateways` (TOML `[[gateway]]` tables, or `[sip]` keys
/// before them).
async fn node(dir: &Path, http_port: u16, sip_port: u16, gateways: &str) -> Openum {
    Openum::config(dir, http_port, sip_port)
        .server("node_name = \"gw\"")
        .sip("t1_ms = 100")
        .tables(gateways)
        .tone(1.0)
        .log("info,rsipstack=debug")
        .start()
        .await
}

fn gateway(name: &str, uri: &str, extra: &str) -> String {
    format!("[[gateway]]\nname = \"{name}\"\nuri = \"{uri}\"\n{extra}")
}

/// Two SIPp gateways: one refusing every call with 503 (`uas_refuse.xml`) on `refusing` and
/// one that answers (`uas_multi.xml`) on `working`.
fn refuser_and_answerer(
    dir: &Path,
    [refusing, refusing_media, working, working_media]: [u16; 4],
) -> (Sipp, Sipp) {
    (
        sipp(dir, "refuser", "uas_refuse.xml", refusing, refusing_media),
        sipp(dir, "answerer", "uas_multi.xml", working, working_media),
    )
}

/// Plays the message to 2005551234, which must end normally (cause None); the states the call
/// showed and how it ended.
async fn call_ends_normally(node: &Openum) -> (Vec<S>, ews_proto::PhoneCallInformation) {
    let id = node.play("2005551234").await;
    let (states, done) = node.follow(&id, CALL).await;
    assert_eq!(
        done.connection_failure_cause,
        C::None,
        "{states:?}\n{}",
        node.log_text()
    );
    (states, done)
}

#[tokio::test]
async fn a_503_gateway_hands_the_call_to_the_next_one_which_plays_it() {
    let [http, sip, refusing, refusing_media, working, working_media] = ports();
    let dir = tempfile::tempdir().unwrap();
    let (refuser, answerer) = refuser_and_answerer(
        dir.path(),
        [refusing, refusing_media, working, working_media],
    );
    let config = [
        gateway(
            "refuser",
            &format!("sip:{{number}}@127.0.0.1:{refusing}"),
            "priority = 1\n",
        ),
        gateway(
            "answerer",
            &format!("sip:{{number}}@127.0.0.1:{working}"),
            "priority = 2\n",
        ),
    ]
    .concat();
    let node = node(dir.path(), http, sip, &config).await;
    let (states, done) = call_ends_normally(&node).await;
    assert_eq!(done.sip_response_code, Some(200));
    assert!(states.contains(&S::Connected), "{states:?}");
    // The refusing gateway was tried first and said 503; the call then went to the other.
    assert_eq!(refuser.invites(), 1, "{}", refuser.trace());
    assert!(refuser.trace().contains("SIP/2.0 503 Service Unavailable"));
    assert_eq!(answerer.invites(), 1, "{}", answerer.trace());
    assert!(
        node.log_text()
            .contains("moving the call to the next gateway"),
        "{}",
        node.log_text()
    );
}

#[tokio::test]
async fn a_silent_gateway_hands_the_call_on_after_timer_b_with_no_invented_408() {
    let [http, sip, silent_port, silent_media, port, media] = ports();
    let dir = tempfile::tempdir().unwrap();
    // uas_multi.xml never answers numbers starting 000: that SIPp is the silent gateway.
    let silent = sipp(
        dir.path(),
        "silent",
        "uas_multi.xml",
        silent_port,
        silent_media,
    );
    let peer = sipp(dir.path(), "peer", "uas_multi.xml", port, media);
    let config = [
        gateway(
            "silent",
            &format!("sip:000{{number}}@127.0.0.1:{silent_port}"),
            "",
        ),
        gateway("working", &format!("sip:{{number}}@127.0.0.1:{port}"), ""),
    ]
    .concat();
    let node = node(dir.path(), http, sip, &config).await;
    let (_, done) = call_ends_normally(&node).await;
    assert_eq!(done.sip_response_code, Some(200));
    assert!(silent.trace().contains("INVITE sip:0002005551234@"));
    assert_eq!(peer.invites(), 1, "{}", peer.trace());
    // Nothing ever answered the silent attempt: no 408 shows anywhere.
    assert!(
        !silent.trace().contains("SIP/2.0 408"),
        "{}",
        silent.trace()
    );
    let log = node.log_text();
    let moved = log
        .lines()
        .find(|l| l.contains("moving the call to the next gateway"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(moved.contains("NoResponse"), "{moved}");
    assert!(!moved.contains("408"), "{moved}");
}

#[tokio::test]
async fn a_503_after_ringing_stays_with_its_gateway() {
    let [http, sip, port, media, ..] = ports();
    let dir = tempfile::tempdir().unwrap();
    // uas_multi.xml rings (180 with a To-tag: an early dialog), then answers 503 to 503*.
    let peer = sipp(dir.path(), "peer", "uas_multi.xml", port, media);
    let config = [
        gateway(
            "ringing",
            &format!("sip:503{{number}}@127.0.0.1:{port}"),
            "",
        ),
        gateway("spare", &format!("sip:{{number}}@127.0.0.1:{port}"), ""),
    ]
    .concat();
    let node = node(dir.path(), http, sip, &config).await;
    let id = node.play("2005551234").await;
    let (states, done) = node.follow(&id, CALL).await;
    assert!(states.contains(&S::Alerted), "{states:?}");
    assert_eq!(done.connection_failure_cause, C::Unavailable);
    assert_eq!(done.sip_response_code, Some(503));
    assert_eq!(peer.invites(), 1, "{}", peer.trace());
}

#[tokio::test]
async fn options_pings_mark_a_gateway_down_and_up_and_calls_skip_it_while_down() {
    let [http, sip, pinged, pinged_media, spare, spare_media] = ports();
    let dir = tempfile::tempdir().unwrap();
    let up = sipp(dir.path(), "pinged", "uas_refuse.xml", pinged, pinged_media);
    let working = sipp(dir.path(), "spare", "uas_multi.xml", spare, spare_media);
    let config = [
        gateway(
            "pinged",
            &format!("sip:{{number}}@127.0.0.1:{pinged}"),
            "options_interval_secs = 1\noptions_down_after = 2\noptions_up_after = 1\n",
        ),
        gateway("spare", &format!("sip:{{number}}@127.0.0.1:{spare}"), ""),
    ]
    .concat();
    let node = node(dir.path(), http, sip, &config).await;
    let within = Duration::from_secs(30);
    node.wait_for_metric("openum_gateway_up{gateway=\"pinged\"} 1", within)
        .await;
    node.wait_for_metric("openum_gateway_up{gateway=\"spare\"} 1", within)
        .await;
    let deadline = Instant::now() + within;
    while !up.trace().contains("OPTIONS sip:") {
        assert!(Instant::now() < deadline, "no OPTIONS reached SIPp");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up.trace().contains("SIP/2.0 200 OK"), "{}", up.trace());
    drop(up);
    node.wait_for_metric("openum_gateway_up{gateway=\"pinged\"} 0", within)
        .await;
    assert!(
        node.log_text().contains("gateway down"),
        "{}",
        node.log_text()
    );
    // While it is down, calls go straight to the spare: no attempt through the pinged one.
    call_ends_normally(&node).await;
    assert_eq!(working.invites(), 1);
    assert!(
        !node
            .log_text()
            .contains("moving the call to the next gateway"),
        "{}",
        node.log_text()
    );
    // Back again: one answered ping marks it up.
    let back = sipp(
        dir.path(),
        "pinged-again",
        "uas_refuse.xml",
        pinged,
        pinged_media,
    );
    node.wait_for_metric("openum_gateway_up{gateway=\"pinged\"} 1", within)
        .await;
    assert!(
        node.log_text().contains("gateway up"),
        "{}",
        node.log_text()
    );
    assert!(back.trace().contains("OPTIONS sip:"));
}

/// Kamailio as a registrar (`tests/peers/kamailio-registrar.cfg`) on UDP `port`, ready once
/// the port is bound (its first REGISTER must not race Kamailio's start-up).
fn start_registrar(dir: &Path, port: u16) -> Kamailio {
    let run = dir.join("kamailio");
    std::fs::create_dir_all(&run).unwrap();
    Kamailio::start(
        |k| {
            k.arg("-f")
                .arg(peers_dir().join("kamailio-registrar.cfg"))
                .args(["-l", &format!("udp:127.0.0.1:{port}")])
                .args(["-DD", "-E", "-n", "1", "-m", "32", "-M", "8"])
                .arg("-Y")
                .arg(&run)
                .arg("-P")
                .arg(run.join("kamailio.pid"))
                .arg("-w")
                .arg(&run);
        },
        &dir.join("kamailio.log"),
        || udp_bound(port),
        "kamailio",
    )
}

#[tokio::test]
async fn registers_with_kamailio_by_digest_and_a_refused_registration_keeps_calls_off_the_gateway()
{
    let [http, sip, registrar, ..] = ports();
    let dir = tempfile::tempdir().unwrap();
    let kamailio = start_registrar(dir.path(), registrar);
    let config = [
        gateway(
            "provider",
            &format!("sip:{{number}}@127.0.0.1:{registrar}"),
            "username = \"alice\"\npassword = \"secret\"\nregister = true\nregister_expires_secs = 60\n",
        ),
        gateway(
            "wrong-password",
            &format!("sip:{{number}}@127.0.0.1:{registrar}"),
            "group = \"refused\"\nusername = \"alice\"\npassword = \"not the secret\"\nregister = true\nregister_wait_secs = 1\n",
        ),
        "[[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"8xxxxxxxxx\"\ndial = \"8xxxxxxxxx\"\ngateway_group = \"refused\"\n".to_owned(),
        "[[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\n".to_owned(),
    ]
    .concat();
    let node = node(dir.path(), http, sip, &config).await;
    let within = Duration::from_secs(30);
    node.wait_for_metric("openum_gateway_registered{gateway=\"provider\"} 1", within)
        .await;
    node.wait_for_metric(
        "openum_gateway_registered{gateway=\"wrong-password\"} 0",
        within,
    )
    .await;
    let deadline = Instant::now() + within;
    while !node.log_text().contains("gateway registration failed") {
        assert!(Instant::now() < deadline, "{}", node.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = kamailio.log_text();
    assert!(log.contains("CHALLENGED sip:alice@127.0.0.1"), "{log}");
    assert!(
        log.contains(&format!("REGISTERED sip:alice@127.0.0.1:{registrar}"))
            || log.contains("REGISTERED sip:alice@127.0.0.1"),
        "{log}"
    );
    let failed = node
        .log_text()
        .lines()
        .find(|l| l.contains("gateway registration failed"))
        .unwrap()
        .to_owned();
    assert!(failed.contains("wrong-password"), "{failed}");
    assert!(failed.contains("refused the credentials"), "{failed}");
    // A call routed to the group whose only gateway is not registered is not placed.
    node.play_refused("8005551234").await;
    assert!(
        node.log_text().contains("gateway skipped: not registered"),
        "{}",
        node.log_text()
    );
}

#[tokio::test]
async fn a_gateway_host_is_located_by_naptr_and_srv_and_its_targets_are_tried_in_order() {
    let [http, sip, refusing, refusing_media, working, working_media] = ports();
    let dns = http + 5;
    let dir = tempfile::tempdir().unwrap();
    let _dnsmasq = Dnsmasq::start(
        dns,
        "pbx.test",
        &[
            // The SRV records sit under the name only the NAPTR record gives (not the
            // `_sip._udp.pbx.test` fallback), so the call connects only if NAPTR was followed;
            // a TCP-only NAPTR must be passed over for this UDP gateway.
            "--naptr-record=pbx.test,5,10,S,SIP+D2T,,_sip._tcp.nowhere.pbx.test".to_owned(),
            "--naptr-record=pbx.test,10,10,S,SIP+D2U,,_sip._udp.via-naptr.pbx.test".to_owned(),
            format!("--srv-host=_sip._udp.via-naptr.pbx.test,first.pbx.test,{refusing},10,1"),
            format!("--srv-host=_sip._udp.via-naptr.pbx.test,second.pbx.test,{working},20,1"),
            "--host-record=first.pbx.test,127.0.0.1".to_owned(),
            "--host-record=second.pbx.test,127.0.0.1".to_owned(),
            "--host-record=remote.pbx.test,198.51.100.7".to_owned(),
        ],
    );
    let (refuser, answerer) = refuser_and_answerer(
        dir.path(),
        [refusing, refusing_media, working, working_media],
    );
    let config = format!(
        "dns_servers = [\"127.0.0.1:{dns}\"]\n{}{}",
        gateway("provider", "sip:{number}@pbx.test", ""),
        gateway("lost", "sip:{number}@missing.pbx.test", "group = \"lost\"\n"),
    ) + &gateway(
        "remote",
        "sip:{number}@remote.pbx.test:5060",
        "group = \"remote\"\n",
    ) + "[[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"7xxxxxxxxx\"\ndial = \"7xxxxxxxxx\"\ngateway_group = \"remote\"\n\
         [[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"8xxxxxxxxx\"\ndial = \"8xxxxxxxxx\"\ngateway_group = \"lost\"\n\
         [[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\n";
    let node = node(dir.path(), http, sip, &config).await;
    call_ends_normally(&node).await;
    // SRV priority 10 first (it refused with 503), then priority 20, which played the message.
    assert_eq!(refuser.invites(), 1, "{}", refuser.trace());
    assert_eq!(answerer.invites(), 1, "{}", answerer.trace());
    // The Request-URI keeps the name; only the destination came from DNS.
    assert!(answerer.trace().contains("INVITE sip:2005551234@pbx.test"));
    // A host that does not resolve: the call is refused, and the log names the host.
    node.play_refused("8005551234").await;
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cannot resolve the gateway host"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("missing.pbx.test"), "{line}");
    // A host that resolves to an address the loopback SIP listener cannot reach: refused too,
    // and the log says which address and which setting.
    node.play_refused("7005551234").await;
    let log = node.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("skipping a gateway address"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("198.51.100.7:5060") && line.contains("sip.listen 127.0.0.1"),
        "{line}"
    );
    assert!(!log.contains(" 408"), "{log}");
}

#[test]
fn config_check_refuses_a_remote_gateway_behind_the_loopback_default_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        "[[gateway]]\nname = \"pbx\"\nuri = \"sip:{number}@198.51.100.7:5060\"\n",
    )
    .unwrap();
    let (ok, _, err) = openum(&config, &["config", "check"], None);
    assert!(!ok, "{err}");
    assert!(err.contains("gateway[0].uri"), "{err}");
    assert!(err.contains("sip.listen 127.0.0.1"), "{err}");
    assert!(err.contains(&config.display().to_string()), "{err}");
    // Port out of range: refused by config check, not at call time.
    std::fs::write(
        &config,
        "[[gateway]]\nname = \"pbx\"\nuri = \"sip:{number}@127.0.0.1:99999\"\n",
    )
    .unwrap();
    let (ok, _, err) = openum(&config, &["config", "check"], None);
    assert!(!ok, "{err}");
    assert!(
        err.contains("gateway[0].uri") && err.contains("99999"),
        "{err}"
    );
}
