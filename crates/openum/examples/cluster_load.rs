//! Cluster load (a benchmark, not a test): `openum serve` nodes on one private PostgreSQL, N
//! concurrent calls through SIP to a SIPp UAS spread over them, then `GetPhoneCallInformation`
//! for random calls on random nodes at a fixed total rate (open loop: one request per tick,
//! however long the others take). Every answer is checked against the truth (a sixth of the
//! calls were hung up through another node than their owner before the measurement; the rest
//! are connected). Three nodes first, then one node, in the same run.
//!
//! usage: `cluster_load OPENUM_BIN [calls=300] [rate=1000] [secs=10]` (see `bench/cluster_load.sh`)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark driver: a panic is a failed run"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use client::{Auth, Client};
use ews_proto::PhoneCallState as S;

const PASSWORD: &str = "bench password";
const BASE: u16 = 45900;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let bin = PathBuf::from(
        args.get(1)
            .context("usage: cluster_load OPENUM_BIN [calls] [rate] [secs]")?,
    );
    let calls: usize = args.get(2).map_or(Ok(300), |a| a.parse())?;
    let rate: u64 = args.get(3).map_or(Ok(1000), |a| a.parse())?;
    let secs: u64 = args.get(4).map_or(Ok(10), |a| a.parse())?;
    let pg = testkit::private_pg::PrivatePostgres::start();
    println!(
        "| nodes | calls | requests | achieved req/s | wrong answers | errors | p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (run, nodes) in [3u16, 1].into_iter().enumerate() {
        let r = run_once(&bin, &pg.url, run, nodes, calls, rate, secs).await?;
        println!(
            "| {nodes} | {calls} | {} | {:.0} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.requests, r.achieved, r.wrong, r.errors, r.p50_ms, r.p99_ms, r.max_ms
        );
    }
    Ok(())
}

struct Outcome {
    requests: usize,
    achieved: f64,
    wrong: usize,
    errors: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // The run is over: a process that already exited needs no signal.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

fn openum(bin: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OPENUM_POSTGRES_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("openum {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn run_once(
    bin: &Path,
    pg_url: &str,
    run: usize,
    nodes: u16,
    calls: usize,
    rate: u64,
    secs: u64,
) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir()?;
    let sipp_port = BASE + 90;
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new("timeout")
            .args(["600", "sipp", "-sf"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/uas_multi.xml"))
            .args(["-i", "127.0.0.1", "-p", &sipp_port.to_string()])
            .args(["-mp", &(BASE + 60).to_string()])
            .args([
                "-key", "user", "alice", "-key", "pass", "secret", "-nostdin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("sipp")?,
    );
    let configs: Vec<PathBuf> = (0..nodes)
        .map(|i| {
            let path = dir.path().join(format!("node{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nnode_name = \"bench{run}-{i}\"\n\
                     [store]\npostgres_url = \"{pg_url}\"\n[sip]\nlisten = \"127.0.0.1:{}\"\n\
                     [admission]\nmax_calls_per_user = 100000\n\
                     [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{sipp_port}\"\n\
                     max_concurrent_calls = 100000\ncalls_per_second = 100000\n",
                    BASE + i,
                    dir.path().join(format!("data{i}")).display(),
                    BASE + 10 + i,
                ),
            )
            .map(|()| path)
        })
        .collect::<Result<_, _>>()?;
    let user = format!("bench{run}-{}", std::process::id());
    openum(
        bin,
        &configs[0],
        &["user", "add", &user, "--password-stdin"],
        Some(PASSWORD),
    )?;
    let wav = dir.path().join("m.wav");
    let samples = testkit::tone(8000, 440.0, 300.0, 8000.0);
    std::fs::write(&wav, testkit::pcm_wav(8000, 1, &samples))?;
    let item = openum(
        bin,
        &configs[0],
        &[
            "voicemail",
            "import",
            "--user",
            &user,
            wav.to_str().context("utf-8")?,
        ],
        None,
    )?;
    for (i, config) in configs.iter().enumerate() {
        procs.0.push(
            Command::new(bin)
                .arg("--config")
                .arg(config)
                .arg("serve")
                .env_remove("OPENUM_POSTGRES_URL")
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(
                    dir.path().join(format!("node{i}.log")),
                )?)
                .spawn()?,
        );
    }
    let clients: Arc<Vec<Client>> = Arc::new(
        (0..nodes)
            .map(|i| {
                Client::new(
                    format!("http://127.0.0.1:{}/EWS/Exchange.asmx", BASE + i),
                    Auth::Basic {
                        user: user.clone(),
                        password: PASSWORD.into(),
                    },
                )
            })
            .collect::<Result<_, _>>()?,
    );
    let http = reqwest::Client::new();
    for i in 0..nodes {
        let started = Instant::now();
        while !http
            .get(format!("http://127.0.0.1:{}/readyz", BASE + i))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("node {i} did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Place the calls, spread over the nodes, 32 at a time.
    let mut ids = Vec::with_capacity(calls);
    for batch in (0..calls).collect::<Vec<_>>().chunks(32) {
        let mut tasks = Vec::new();
        for &c in batch {
            let (clients, item) = (Arc::clone(&clients), item.clone());
            tasks.push(tokio::spawn(async move {
                clients[c % clients.len()]
                    .play_on_phone(&item, &format!("2{c:09}"))
                    .await
            }));
        }
        for t in tasks {
            ids.push(t.await?.context("PlayOnPhone")?);
        }
    }
    wait_all(&clients, &ids, |_| S::Connected).await?;
    // The truth: every sixth call hung up through the next node, the rest connected.
    let ended = |c: usize| c % 6 == 0;
    for (c, id) in ids.iter().enumerate().filter(|(c, _)| ended(*c)) {
        clients[(c + 1) % clients.len()]
            .disconnect_phone_call(id)
            .await
            .context("DisconnectPhoneCall")?;
    }
    wait_all(&clients, &ids, |c| {
        if ended(c) {
            S::Disconnected
        } else {
            S::Connected
        }
    })
    .await?;

    let ids = Arc::new(ids);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Duration, Option<bool>)>();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate)?);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let started = Instant::now();
    let mut sent = 0usize;
    while started.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        // xorshift64: a fast, good-enough spread of calls and nodes.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let c = usize::try_from(seed % ids.len() as u64)?;
        let n = usize::try_from((seed >> 32) % clients.len() as u64)?;
        let (clients, ids, tx) = (Arc::clone(&clients), Arc::clone(&ids), tx.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let answer = clients[n].get_phone_call_information(&ids[c]).await;
            let want = if ended(c) {
                S::Disconnected
            } else {
                S::Connected
            };
            // The receiver lives until every sender is gone.
            let _ = tx.send((
                t0.elapsed(),
                answer.ok().map(|i| i.phone_call_state == want),
            ));
        });
        sent += 1;
    }
    drop(tx);
    let mut latencies = Vec::with_capacity(sent);
    let (mut wrong, mut errors) = (0, 0);
    while let Some((latency, verdict)) = rx.recv().await {
        latencies.push(latency);
        match verdict {
            Some(true) => {}
            Some(false) => wrong += 1,
            None => errors += 1,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let outcome = Outcome {
        requests: latencies.len(),
        achieved: latencies.len() as f64 / elapsed,
        wrong,
        errors,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    };
    // Hang the live calls up before the nodes stop.
    for (c, id) in ids.iter().enumerate().filter(|(c, _)| !ended(*c)) {
        if let Err(e) = clients[c % clients.len()].disconnect_phone_call(id).await {
            eprintln!("cannot hang up {id}: {e}");
        }
    }
    Ok(outcome)
}

/// Waits until every call reads `want(index)` (on its owner's node).
async fn wait_all(
    clients: &[Client],
    ids: &[String],
    want: impl Fn(usize) -> S,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..ids.len()).collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for c in pending {
            let info = clients[c % clients.len()]
                .get_phone_call_information(&ids[c])
                .await?;
            if info.phone_call_state != want(c) {
                still.push(c);
            }
        }
        pending = still;
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{} calls never reached their state", pending.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
