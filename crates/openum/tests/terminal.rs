//! What `openum` does with a terminal and without one: log colour codes only on a terminal (and
//! not with NO_COLOR), and `user add` asking for the password twice, without echo, on a
//! terminal — driven through a real pseudo-terminal (python3's `pty` module).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::openum_bin;

/// Runs `argv` on a new pseudo-terminal (stdin, stdout and stderr all on it). For each
/// `(prompt, answer)` it waits for `prompt` in the output and for the program to turn the
/// terminal's echo off (as a password prompt must), then types `answer`; then, with
/// `stop_at`, it waits for that text and sends SIGTERM. Returns the exit code and everything
/// the terminal showed.
fn on_a_terminal(
    argv: &[&str],
    env: &[(&str, &str)],
    steps: &[(&str, &str)],
    stop_at: Option<&str>,
) -> (i32, String) {
    const DRIVER: &str = r#"
import json, os, pty, select, signal, sys, termios, time
argv, steps, stop_at = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b""
def read_until(needle):
    global out
    while needle.encode() not in out:
        ready, _, _ = select.select([fd], [], [], 60)
        if not ready:
            sys.exit("nothing more while waiting for %r; so far %r" % (needle, out))
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            sys.exit("the program ended while waiting for %r; it showed %r" % (needle, out))
        out += chunk
def echo_off():
    # On Linux the master reports the terminal's settings; the prompt is written just before
    # echo is switched off, so wait for that rather than type too early.
    for _ in range(6000):
        if not termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.01)
    sys.exit("the terminal's echo stayed on after %r" % out)
for prompt, answer in steps:
    read_until(prompt)
    echo_off()
    os.write(fd, answer.encode())
if stop_at:
    read_until(stop_at)
    os.kill(pid, signal.SIGTERM)
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "shown": out.decode("utf-8", "replace")}))
"#;
    let steps: Vec<[&str; 2]> = steps.iter().map(|(p, a)| [*p, *a]).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(serde_json::to_string(argv).unwrap())
        .arg(serde_json::to_string(&steps).unwrap())
        .arg(stop_at.unwrap_or(""))
        .env_remove("NO_COLOR")
        .env_remove("OPENUM_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("python3 is required by this test (it drives a pseudo-terminal)");
    assert!(
        out.status.success(),
        "the pty driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        i32::try_from(report["code"].as_i64().unwrap()).unwrap(),
        report["shown"].as_str().unwrap().to_owned(),
    )
}

/// `openum serve` on `data_dir`, port 0, stderr piped; returns it, its port and its log up to
/// the line saying it serves.
fn serve(data_dir: &Path, extra: &[&str]) -> (support::Processes, u16, String) {
    let mut child: Child = Command::new(openum_bin())
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("OPENUM_CONFIG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("openum serve ended before serving:\n{log}"))
            .unwrap();
        log.push_str(&line);
        log.push('\n');
        let marker = ["listen=127.0.0.1:", "\"listen\":\"127.0.0.1:"]
            .into_iter()
            .find_map(|m| line.find(m).map(|at| at + m.len()));
        if let Some(at) = marker {
            let rest = &line[at..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            break digits.parse().unwrap();
        }
    };
    // Keep draining its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (support::Processes(vec![child]), port, log)
}

#[test]
fn logs_carry_colour_codes_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    // stderr a pipe (as for journald, a file or a log collector): no escape codes.
    let (server, _, log) = serve(&dir.path().join("piped"), &[]);
    drop(server);
    assert!(log.contains("openum serving EWS"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log: {log:?}"
    );

    // stderr a terminal: coloured, as tracing-subscriber does for people.
    let data = dir.path().join("tty");
    let argv = [
        openum_bin(),
        "--data-dir",
        data.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ];
    let (_, shown) = on_a_terminal(&argv, &[], &[], Some("openum serving EWS"));
    assert!(
        shown.contains("\u{1b}["),
        "no colour on a terminal: {shown:?}"
    );
    // NO_COLOR (https://no-color.org) turns it off even there.
    let (_, shown) = on_a_terminal(&argv, &[("NO_COLOR", "1")], &[], Some("serving EWS"));
    assert!(shown.contains("openum serving EWS"), "{shown:?}");
    assert!(
        !shown.contains('\u{1b}'),
        "colour despite NO_COLOR: {shown:?}"
    );
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _, log) = serve(dir.path(), &["--json-logs"]);
    drop(server);
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert!(log.contains("\"message\":\"openum serving EWS"), "{log}");
}

/// HTTP status of a GetPhoneCallInformation as `user:password` (401 when refused).
fn status_as(port: u16, credentials: &str) -> String {
    let body = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
        <m:GetPhoneCallInformation xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\">\
        <m:PhoneCallId Id=\"x\"/></m:GetPhoneCallInformation></s:Body></s:Envelope>";
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            credentials,
        ])
        .args(["-H", "Content-Type: text/xml", "--data-binary", body])
        .arg(format!("http://127.0.0.1:{port}/EWS/Exchange.asmx"))
        .output()
        .expect("curl is required by this test");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn user_add_asks_twice_without_echo_on_a_terminal_and_refuses_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let secret = "correct horse battery";

    // Two different answers: refused, nothing saved.
    let (code, shown) = on_a_terminal(
        &[openum_bin(), "--data-dir", data, "user", "add", "alice"],
        &[],
        &[
            ("Password for alice: ", "first try\n"),
            ("The same password again: ", "second try\n"),
        ],
        None,
    );
    assert_eq!(code, 2, "{shown}");
    assert!(
        shown.contains("openum: the two passwords differ; nothing was saved"),
        "{shown}"
    );

    // The same answer twice: saved, and never shown.
    let (code, shown) = on_a_terminal(
        &[openum_bin(), "--data-dir", data, "user", "add", "alice"],
        &[],
        &[
            ("Password for alice: ", &format!("{secret}\n")),
            ("The same password again: ", &format!("{secret}\n")),
        ],
        None,
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("user alice saved"), "{shown}");
    assert!(!shown.contains(secret), "the password was echoed: {shown}");

    // No terminal and no --password-stdin: a usage error that says what to do.
    let out = Command::new(openum_bin())
        .args(["--data-dir", data, "user", "add", "bob"])
        .env_remove("OPENUM_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "openum: standard input is not a terminal, so there is no one to ask for the password: \
         pass --password-stdin and write it to standard input"
    );

    // The password typed on the terminal is the one the server accepts.
    let (server, port, _) = serve(Path::new(data), &[]);
    assert_eq!(status_as(port, &format!("alice:{secret}")), "200");
    assert_eq!(status_as(port, "alice:first try"), "401");
    assert_eq!(status_as(port, "bob:anything"), "401");
    drop(server);
}
