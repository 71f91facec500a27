//! Authentication hardening against the real `openum serve` over real HTTP: failed logins logged
//! and counted, throttled per client address and per user name (behind a trusted proxy), and
//! password resets, `user disable` and `token revoke` made in another process taking effect at
//! once — on SQLite (the CLI beside a running server) and on two servers sharing PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{openum, serve, Processes};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";

/// Ports in this engineer's range (42000-42999): 8 per test process.
fn port(offset: u16) -> u16 {
    42000 + (std::process::id() % 120) as u16 * 8 + offset
}

/// One `openum serve` with its log file.
struct Server {
    base: String,
    log: PathBuf,
}

impl Server {
    /// The log so far, without colour codes.
    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn write_config(dir: &Path, name: &str, http: u16, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:{http}\"\ndata_dir = \"{}\"\nnode_name = \"{name}\"\n{extra}",
            dir.join(format!("data-{name}")).display()
        ),
    )
    .unwrap();
    path
}

async fn start(procs: &mut Processes, dir: &Path, name: &str, config: &Path, http: u16) -> Server {
    let log = dir.join(format!("{name}.log"));
    procs.0.push(serve::spawn(config, &log, None));
    let server = Server {
        base: format!("http://127.0.0.1:{http}"),
        log,
    };
    let http_client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .map_or(true, |r| !r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "{name} did not start\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

enum Credential<'a> {
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// A GetPhoneCallInformation for an unknown call with these credentials, as if forwarded for
/// `forwarded_for` (when given); the HTTP status (200: authenticated, 401: refused).
async fn ews_status(
    server: &Server,
    credential: &Credential<'_>,
    forwarded_for: Option<&str>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/EWS/Exchange.asmx", server.base))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\"><s:Body>\
             <m:GetPhoneCallInformation><m:PhoneCallId Id=\"no-such-call\"/></m:GetPhoneCallInformation>\
             </s:Body></s:Envelope>"
        ));
    request = match credential {
        Credential::Basic(user, password) => request.basic_auth(user, Some(password)),
        Credential::Bearer(token) => request.bearer_auth(token),
    };
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    let status = request.send().await.unwrap().status().as_u16();
    assert!(
        status == 200 || status == 401,
        "unexpected HTTP {status}\n{}",
        server.log()
    );
    status
}

async fn metrics(server: &Server) -> String {
    reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn add_user(config: &Path, name: &str, password: &str, extra: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    args.extend_from_slice(extra);
    let (ok, _, err) = openum(config, &args, Some(password));
    assert!(ok, "user add {name}: {err}");
}

/// The log line of the failure numbered `nth` (0-based) whose text contains every needle.
fn assert_logged(server: &Server, needles: &[&str]) {
    let log = server.log();
    assert!(
        log.lines()
            .any(|line| needles.iter().all(|n| line.contains(n))),
        "no log line with all of {needles:?}\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_logged_counted_and_throttled_per_address_and_user_behind_a_trusted_proxy(
) {
    let dir = tempfile::tempdir().unwrap();
    let http = port(0);
    let config = write_config(
        dir.path(),
        "throttle",
        http,
        "trusted_proxies = [\"127.0.0.0/8\"]\n[auth]\nmax_failures = 3\nlockout_secs = 600\n",
    );
    for user in ["alice", "bob", "carol"] {
        add_user(&config, user, &format!("{user}-right"), &[]);
    }
    let mut procs = Processes(Vec::new());
    let server = start(&mut procs, dir.path(), "throttle", &config, http).await;
    let x = Some("6.6.6.6, 198.51.100.9");

    // A failure: 401, one log line naming the user as given, the client behind the proxy
    // (the right-most untrusted X-Forwarded-For entry), scheme and reason; never the password.
    assert_eq!(
        ews_status(&server, &Credential::Basic("mallory", "guess-XYZZY"), x).await,
        401
    );
    assert_logged(
        &server,
        &[
            "login failed",
            "user=\"mallory\"",
            "client=198.51.100.9",
            "scheme=\"basic\"",
            "reason=\"unknown_user\"",
        ],
    );
    assert!(!server.log().contains("XYZZY"), "{}", server.log());
    assert!(!server.log().contains("6.6.6.6"), "{}", server.log());

    // Fewer than max_failures, then a success: the address and the user start afresh.
    assert_eq!(
        ews_status(&server, &Credential::Basic("alice", "wrong"), x).await,
        401
    );
    assert_eq!(
        ews_status(&server, &Credential::Basic("alice", "alice-right"), x).await,
        200
    );
    for _ in 0..2 {
        assert_eq!(
            ews_status(&server, &Credential::Basic("alice", "wrong"), x).await,
            401
        );
    }
    assert_eq!(
        ews_status(&server, &Credential::Basic("alice", "alice-right"), x).await,
        200,
        "a success must have reset the counts\n{}",
        server.log()
    );

    // Three failures of bob from z lock out z and bob: the right password is then refused
    // from z (any user) and for bob (any address), but not for carol from elsewhere.
    let z = Some("203.0.113.5");
    let w = Some("203.0.113.6");
    for _ in 0..3 {
        assert_eq!(
            ews_status(&server, &Credential::Basic("bob", "wrong"), z).await,
            401
        );
    }
    assert_logged(
        &server,
        &[
            "too many failed logins: locked out",
            "locked=\"address\"",
            "client=203.0.113.5",
        ],
    );
    assert_logged(
        &server,
        &[
            "too many failed logins: locked out",
            "locked=\"user\"",
            "user=\"bob\"",
        ],
    );
    assert_eq!(
        ews_status(&server, &Credential::Basic("bob", "bob-right"), z).await,
        401
    );
    assert_eq!(
        ews_status(&server, &Credential::Basic("bob", "bob-right"), w).await,
        401
    );
    assert_eq!(
        ews_status(&server, &Credential::Basic("carol", "carol-right"), z).await,
        401
    );
    assert_logged(
        &server,
        &[
            "login failed",
            "user=\"carol\"",
            "client=203.0.113.5",
            "reason=\"throttled\"",
        ],
    );
    assert_eq!(
        ews_status(&server, &Credential::Basic("carol", "carol-right"), w).await,
        200
    );
    // A password this server verified already is no guess: alice keeps working from z.
    assert_eq!(
        ews_status(&server, &Credential::Basic("alice", "alice-right"), z).await,
        200
    );

    // A token nobody issued.
    assert_eq!(
        ews_status(
            &server,
            &Credential::Bearer("oum_forged"),
            Some("192.0.2.77")
        )
        .await,
        401
    );
    assert_logged(
        &server,
        &[
            "login failed",
            "client=192.0.2.77",
            "scheme=\"bearer\"",
            "reason=\"unknown_token\"",
        ],
    );

    let text = metrics(&server).await;
    for needle in [
        "openum_auth_failures_total{scheme=\"basic\",reason=\"unknown_user\"} 1",
        "openum_auth_failures_total{scheme=\"basic\",reason=\"bad_password\"} 6",
        "openum_auth_failures_total{scheme=\"basic\",reason=\"throttled\"} 3",
        "openum_auth_failures_total{scheme=\"bearer\",reason=\"unknown_token\"} 1",
        "openum_auth_lockouts_total 2",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

/// Password reset, disable/enable and token revocation through the CLI (another process), each
/// checked against every server in `servers` as soon as the store's documented bound for
/// noticing another process's change (`lag`) has passed since the CLI returned.
async fn changes_take_effect_at_once(
    config: &Path,
    servers: &[&Server],
    user: &str,
    lag: Duration,
) {
    add_user(config, user, "old-password", &["--disable-play-on-phone"]);
    let (ok, token, err) = openum(
        config,
        &["token", "create", user, "--label", "laptop"],
        None,
    );
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    let old = Credential::Basic(user, "old-password");
    let new = Credential::Basic(user, "new-password");
    let bearer = Credential::Bearer(&token);
    // Each server verifies (and remembers) the old password and the token.
    for s in servers {
        assert_eq!(ews_status(s, &old, None).await, 200, "{}", s.log());
        assert_eq!(ews_status(s, &old, None).await, 200);
        assert_eq!(ews_status(s, &bearer, None).await, 200);
    }

    // Reset: the old password is refused at once everywhere, the new one works, and the user's
    // other settings are untouched.
    add_user(config, user, "new-password", &[]);
    tokio::time::sleep(lag).await;
    for s in servers {
        assert_eq!(ews_status(s, &old, None).await, 401, "{}", s.log());
        assert_eq!(ews_status(s, &new, None).await, 200, "{}", s.log());
        assert_eq!(ews_status(s, &bearer, None).await, 200);
    }
    let (ok, listed, err) = openum(config, &["user", "list", "--json"], None);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .unwrap();
    assert_eq!(me["play_on_phone"], false, "{me}");
    assert_eq!(me["disabled"], false, "{me}");
    assert_eq!(me["tokens"], 1, "{me}");

    // Disable: password and token refused at once, and logged as such; enable: back.
    let (ok, _, err) = openum(config, &["user", "disable", user], None);
    assert!(ok, "{err}");
    tokio::time::sleep(lag).await;
    for s in servers {
        assert_eq!(ews_status(s, &new, None).await, 401, "{}", s.log());
        assert_eq!(ews_status(s, &bearer, None).await, 401);
        assert_logged(
            s,
            &[
                "login failed",
                &format!("user=\"{user}\""),
                "reason=\"disabled\"",
            ],
        );
        assert_logged(
            s,
            &["login failed", "scheme=\"bearer\"", "reason=\"disabled\""],
        );
    }
    let (ok, _, err) = openum(config, &["user", "enable", user], None);
    assert!(ok, "{err}");
    tokio::time::sleep(lag).await;
    for s in servers {
        assert_eq!(ews_status(s, &new, None).await, 200, "{}", s.log());
        assert_eq!(ews_status(s, &bearer, None).await, 200);
    }

    // Revoke the token by its listed id: refused at once; the password still works.
    let (ok, tokens, err) = openum(config, &["token", "list", user, "--json"], None);
    assert!(ok, "{err}");
    let tokens: serde_json::Value = serde_json::from_str(&tokens).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 1, "{tokens}");
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    assert!(!tokens.to_string().contains(&token), "a secret was listed");
    let (ok, _, err) = openum(config, &["token", "revoke", &id], None);
    assert!(ok, "{err}");
    tokio::time::sleep(lag).await;
    for s in servers {
        assert_eq!(ews_status(s, &bearer, None).await, 401, "{}", s.log());
        assert_eq!(ews_status(s, &new, None).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_disable_and_revoke_from_the_cli_take_effect_at_once_in_a_running_sqlite_server() {
    let dir = tempfile::tempdir().unwrap();
    let http = port(2);
    let config = write_config(dir.path(), "sqlite", http, "");
    let mut procs = Processes(Vec::new());
    // The user exists before the server starts (the store is created by the first command).
    add_user(&config, "someone", "x", &[]);
    let server = start(&mut procs, dir.path(), "sqlite", &config, http).await;
    changes_take_effect_at_once(
        &config,
        &[&server],
        "alice",
        server::store::SQLITE_CREDENTIAL_LAG,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_disable_and_revoke_take_effect_at_once_on_two_servers_sharing_postgresql() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("[store]\npostgres_url = \"{}\"\n", pg.url);
    let (h1, h2) = (port(4), port(5));
    let c1 = write_config(dir.path(), "pg1", h1, &store);
    let c2 = write_config(dir.path(), "pg2", h2, &store);
    let mut procs = Processes(Vec::new());
    let user = format!("auth{}-alice", std::process::id());
    add_user(&c1, &user, "x", &[]);
    let s1 = start(&mut procs, dir.path(), "pg1", &c1, h1).await;
    let s2 = start(&mut procs, dir.path(), "pg2", &c2, h2).await;
    changes_take_effect_at_once(
        &c1,
        &[&s1, &s2],
        &user,
        server::store::POSTGRES_CREDENTIAL_LAG,
    )
    .await;
}
