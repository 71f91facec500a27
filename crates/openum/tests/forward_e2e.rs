//! One EWS URL end to end: `openum serve` forwarding 30 MB requests and answers between a client
//! and the mailbox double, with bounded memory (the `openum serve` process's resident set is
//! read from `/proc`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use support::{serve, Processes};
use testkit::mailbox::{Mailbox, MailboxDouble, Mode};

const M: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
const T: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
const MB30: usize = 30 * 1024 * 1024;

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// POSTs `body` to `url` with `auth` as its Authorization header; the response.
async fn post(
    http: &reqwest::Client,
    url: &str,
    auth: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    http.post(url)
        .header("Authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// openum's HTTP port, from this file's block (54000-54099), outside the ephemeral range used
/// in CI: a port picked with `bind(0)` and bound again later by openum could meanwhile be taken
/// by another process's outgoing connection.
fn http_port() -> u16 {
    54000 + (std::process::id() % 100) as u16
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_megabytes_each_way_pass_with_bounded_memory() {
    let mut builder = MailboxDouble::builder();
    builder.mailbox(Mailbox::new("alice@example.com").password("pw"));
    let double = builder.start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = http_port();
    let config = dir.path().join("openum.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n\
             [mailbox]\news_url = \"{}\"\ntimeout_secs = 2\n",
            dir.path().join("data").display(),
            double.url()
        ),
    )
    .unwrap();
    let child = serve::spawn(&config, &dir.path().join("openum.log"), None);
    let pid = child.id();
    let _process = Processes(vec![child]);
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/EWS/Exchange.asmx");
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice@example.com:pw")
    );
    let small = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\" xmlns:t=\"{T}\"><s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id=\"inbox\"/></m:FolderIds></m:GetFolder></s:Body></s:Envelope>"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http
            .post(&url)
            .header("Authorization", &auth)
            .body(small.clone())
            .send()
            .await
        {
            Ok(r) => {
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // 30 MB up: a CreateItem whose body text is 30 MB.
    let head = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"{M}\" xmlns:t=\"{T}\"><s:Body><m:CreateItem><m:Items><t:Message><t:Body BodyType=\"Text\">"
    );
    let tail = "</t:Body></t:Message></m:Items></m:CreateItem></s:Body></s:Envelope>";
    let mut big = Vec::with_capacity(MB30);
    big.extend_from_slice(head.as_bytes());
    big.resize(MB30 - tail.len(), b'a');
    big.extend_from_slice(tail.as_bytes());
    // Warm the forwarding path (1 MB through it) so the baseline includes the allocator's
    // first-use segments: what is measured is what 30 MB adds.
    let warm: Vec<u8> = [&big[..head.len()], &vec![b'a'; 1 << 20], tail.as_bytes()].concat();
    let reply = post(&http, &url, &auth, warm).await;
    reply.bytes().await.unwrap();
    let (baseline, _) = memory_kib(pid);
    double.clear_requests();
    let started = Instant::now();
    let reply = post(&http, &url, &auth, big.clone()).await;
    let status = reply.status();
    reply.bytes().await.unwrap();
    let up = started.elapsed();
    let seen = double.requests();
    assert_eq!(seen.len(), 1, "status {status}");
    assert_eq!(seen[0].body.len(), MB30);
    assert!(seen[0].body == big, "the 30 MB request was changed");
    drop(seen);
    let (after_up, peak_up) = memory_kib(pid);
    // More of the same: nothing accumulates per request. The first repeats may still warm the
    // allocator's other worker-thread heaps; from then on the peak must stay put.
    let mut peaks_up = Vec::new();
    for _ in 0..4 {
        double.clear_requests();
        let reply = post(&http, &url, &auth, big.clone()).await;
        reply.bytes().await.unwrap();
        peaks_up.push(memory_kib(pid).1);
    }
    double.clear_requests();
    let peak_ups = peaks_up[1];

    // 30 MB down.
    double.set_mode(Mode::Huge(MB30)).await;
    let started = Instant::now();
    let mut reply = post(&http, &url, &auth, small.clone()).await;
    assert_eq!(reply.status(), 200);
    let mut received = 0usize;
    while let Some(chunk) = reply.chunk().await.unwrap() {
        received += chunk.len();
    }
    let down = started.elapsed();
    assert_eq!(received, MB30);
    let (after_down, peak_down) = memory_kib(pid);
    let mut peaks_down = Vec::new();
    for _ in 0..4 {
        let mut reply = post(&http, &url, &auth, small.clone()).await;
        while reply.chunk().await.unwrap().is_some() {}
        peaks_down.push(memory_kib(pid).1);
    }
    let peak_downs = peaks_down[1];
    println!(
        "openum serve RSS: baseline {baseline} KiB; after 30 MB up {after_up} KiB (peak {peak_up}, \
         {up:?}; peak after 2 more {peak_ups}); after 30 MB down {after_down} KiB (peak \
         {peak_down}, {down:?}; peak after 2 more {peak_downs})"
    );
    // Each direction's first 30 MB: the allocator's high-water mark of streaming buffers, not
    // the body.
    assert!(
        peak_up.saturating_sub(baseline) < 16 * 1024,
        "30 MB up: peak RSS grew by {} KiB",
        peak_up.saturating_sub(baseline)
    );
    assert!(
        peak_down.saturating_sub(peak_ups) < 16 * 1024,
        "30 MB down: peak RSS grew by {} KiB",
        peak_down.saturating_sub(peak_ups)
    );
    // And repeating them does not accumulate: four more 30 MB transfers each way add less than
    // one body in all (a per-request copy would add ~120 MB). What they do add is the allocator
    // bringing further worker-thread heaps to the same high-water mark, in ~8 MB steps.
    assert!(
        peaks_up[3].saturating_sub(peak_up) < 24 * 1024,
        "repeated 30 MB uploads: peaks {peak_up} then {peaks_up:?} KiB"
    );
    assert!(
        peaks_down[3].saturating_sub(peak_down) < 24 * 1024,
        "repeated 30 MB downloads: peaks {peak_down} then {peaks_down:?} KiB"
    );
}
