//! Several `openum serve` processes on one real PostgreSQL, failing the way an operator's day
//! does: the database restarts under live calls, a node is SIGKILLed mid-call, three nodes take
//! PlayOnPhone requests for one capped user at once. SIPp is the far end of every call.
//!
//! Each node has its own data directory: the database is all they share, voice-mail audio
//! included. Each test has a database of its own (on the shared server, or a private server for
//! the restart), because its nodes close the calls of any node of their database whose heartbeat
//! is old, and another test's nodes must never be in reach.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use client::{Auth, Client};
use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::phone::{chirp_wav, correlation, Phone};
use support::serve;
use support::sipp::Sipp;
use support::{add_user_with_message, tone_wav, PASSWORD};

/// Ports 45000-45999 are this suite's; each test (0 to 5) takes its own block of 160.
fn base_port(test: u16) -> u16 {
    45000 + test * 160
}

/// What a [`Cluster`] runs.
struct Setup {
    test: u16,
    /// PostgreSQL; SQLite under each node's data directory when `None`.
    pg_url: Option<String>,
    n: u16,
    store_extra: String,
    extra: String,
    /// A baresip phone's SIP port: calls go there instead of SIPp.
    phone_port: Option<u16>,
    /// The message imported (default: a minute of tone).
    wav: Option<PathBuf>,
    /// The data directory (one node only).
    data_dir: Option<PathBuf>,
    /// Node 0's PostgreSQL URL, when it differs from the others' (through a proxy).
    first_node_pg_url: Option<String>,
}

impl Setup {
    fn new(test: u16, n: u16) -> Self {
        Self {
            test,
            pg_url: None,
            n,
            store_extra: String::new(),
            extra: String::new(),
            phone_port: None,
            wav: None,
            data_dir: None,
            first_node_pg_url: None,
        }
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    base: u16,
    nodes: Vec<Option<Child>>,
    sipp: Sipp,
    user: String,
    item: String,
    configs: Vec<PathBuf>,
}

impl Cluster {
    /// `n` nodes on `pg_url`; `store_extra`/`extra` are appended to `[store]` and to the file.
    fn start(test: u16, pg_url: &str, n: u16, store_extra: &str, extra: &str) -> Self {
        Self::start_with(Setup {
            pg_url: Some(pg_url.to_owned()),
            store_extra: store_extra.to_owned(),
            extra: extra.to_owned(),
            ..Setup::new(test, n)
        })
    }

    fn start_with(setup: Setup) -> Self {
        let Setup {
            test,
            pg_url,
            n,
            store_extra,
            extra,
            phone_port,
            wav,
            data_dir,
            first_node_pg_url,
        } = setup;
        let dir = tempfile::tempdir().unwrap();
        let base = base_port(test);
        let sipp_port = base + 9;
        let gateway_port = phone_port.unwrap_or(sipp_port);
        let sipp_messages = dir.path().join("sipp.log");
        let sipp = Sipp::uas("uas_multi.xml", sipp_port, base + 8, &sipp_messages)
            .no_rtp_echo()
            .start();
        let configs: Vec<PathBuf> = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("node{i}.toml"));
                std::fs::write(
                    &path,
                    format!(
                        "[server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nnode_name = \"node{i}-{}\"\n\
                         [store]\n{}{store_extra}\n[sip]\nlisten = \"127.0.0.1:{}\"\n\
                         [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{gateway_port}\"\nmax_concurrent_calls = 1000\n\
                         calls_per_second = 1000\n{extra}\n",
                        base + i,
                        data_dir
                            .clone()
                            .unwrap_or_else(|| dir.path().join(format!("data{i}")))
                            .display(),
                        std::process::id(),
                        first_node_pg_url
                            .as_ref()
                            .filter(|_| i == 0)
                            .or(pg_url.as_ref())
                            .map_or(String::new(), |url| format!("postgres_url = \"{url}\"\n")),
                        base + 4 + i,
                    ),
                )
                .unwrap();
                path
            })
            .collect();
        let user = format!("c{test}-{}-alice", std::process::id());
        let wav = wav.unwrap_or_else(|| {
            let wav = dir.path().join("m.wav");
            tone_wav(&wav, 60.0);
            wav
        });
        let item = add_user_with_message(&configs[0], &user, &wav);
        let mut cluster = Self {
            dir,
            base,
            nodes: Vec::new(),
            sipp,
            user,
            item,
            configs,
        };
        for i in 0..n {
            let child = cluster.spawn(i);
            cluster.nodes.push(Some(child));
        }
        for i in 0..n {
            cluster.wait_ready(i, Duration::from_secs(20));
        }
        cluster
    }

    fn spawn(&self, i: u16) -> Child {
        serve::spawn(
            &self.configs[usize::from(i)],
            &self.dir.path().join(format!("node{i}.log")),
            None,
        )
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for i in 0..self.configs.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            all.push_str(&format!(
                "--- node{i} ---\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        all
    }

    fn client(&self, i: u16) -> Client {
        Client::new(
            format!("http://127.0.0.1:{}/EWS/Exchange.asmx", self.base + i),
            Auth::Basic {
                user: self.user.clone(),
                password: PASSWORD.into(),
            },
        )
        .unwrap()
    }

    /// `/readyz` answers 200 within `bound`, else the test fails with the logs.
    fn wait_ready(&self, i: u16, bound: Duration) -> Duration {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/readyz", self.base + i);
        loop {
            let ok = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(&url)
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if ok {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < bound,
                "node {i} not ready within {bound:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    async fn wait_state(&self, node: u16, id: &str, want: S, bound: Duration) -> (S, C) {
        let started = Instant::now();
        loop {
            match self.client(node).get_phone_call_information(id).await {
                Ok(info) if info.phone_call_state == want => {
                    return (info.phone_call_state, info.connection_failure_cause)
                }
                seen => assert!(
                    started.elapsed() < bound,
                    "node {node} never saw {id} {want:?} within {bound:?}: {seen:?}\n{}",
                    self.logs()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// PlayOnPhone of the item to `dial` through node `on`; the PhoneCallId.
    async fn play(&self, on: u16, dial: &str) -> String {
        self.client(on)
            .play_on_phone(&self.item, dial)
            .await
            .unwrap_or_else(|e| panic!("node {on}: {e}\n{}", self.logs()))
    }

    /// [`Self::play`] through node `on`, then waits (15 s at most) until node `seen_on` reads the
    /// call Connected; the PhoneCallId.
    async fn play_until_connected(&self, on: u16, seen_on: u16, dial: &str) -> String {
        let id = self.play(on, dial).await;
        self.wait_state(seen_on, &id, S::Connected, Duration::from_secs(15))
            .await;
        id
    }

    fn byes(&self) -> usize {
        self.sipp.trace().matches("BYE sip:").count()
    }

    fn kill(&mut self, i: u16, signal: &str) {
        let child = self.nodes[usize::from(i)].as_mut().unwrap();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap();
        self.nodes[usize::from(i)] = None;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.nodes.iter_mut().flatten() {
            // The test is over: a node that already exited needs no signal.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
        // SIPp is stopped by its own Drop.
    }
}

/// Bounds short enough for a test; the same rule as the defaults (fence < dead).
const FAST_CLUSTER: &str =
    "[cluster]\nheartbeat_secs = 1\nfence_after_secs = 2\ndead_after_secs = 4\nhangup_wait_secs = 3\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_heals_every_node_and_loses_no_call() {
    let pg = testkit::private_pg::PrivatePostgres::start();
    // Bounds longer than the outage: the calls must survive it.
    let cluster = Cluster::start(
        0,
        &pg.url,
        2,
        "",
        "[cluster]\nheartbeat_secs = 1\nfence_after_secs = 20\ndead_after_secs = 30\n",
    );
    let mut ids = Vec::new();
    for node in 0..2 {
        let id = cluster.play(node, &format!("20055500{node}")).await;
        ids.push(id);
    }
    for id in &ids {
        for node in 0..2 {
            cluster
                .wait_state(node, id, S::Connected, Duration::from_secs(15))
                .await;
        }
    }

    pg.stop();
    // /readyz tells the truth: not ready while the database is away.
    for node in 0..2 {
        let url = format!("http://127.0.0.1:{}/readyz", cluster.base + node);
        let code = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
                &url,
            ])
            .output()
            .unwrap()
            .stdout;
        assert_eq!(
            code, b"503",
            "node {node} claimed readiness without its database"
        );
    }
    // A hang-up asked during the outage is answered with an error, never a silent success.
    let during = cluster.client(1).disconnect_phone_call(&ids[0]).await;
    assert!(
        during.is_err(),
        "a hang-up during the outage claimed success"
    );
    pg.start_again();
    for node in 0..2 {
        let took = cluster.wait_ready(node, Duration::from_secs(10));
        eprintln!("node {node} ready {took:?} after PostgreSQL came back");
    }
    // No record lost: both calls are still live on both nodes, and were never ended by the
    // unanswered hang-up.
    for id in &ids {
        for node in 0..2 {
            let info = cluster
                .client(node)
                .get_phone_call_information(id)
                .await
                .unwrap();
            assert_eq!(info.phone_call_state, S::Connected, "{}", cluster.logs());
        }
    }
    // Cross-node hang-ups work again once the LISTEN connection is back: each node ends the
    // other's call, and the owner sends BYE.
    cluster
        .client(1)
        .disconnect_phone_call(&ids[0])
        .await
        .unwrap();
    cluster
        .client(0)
        .disconnect_phone_call(&ids[1])
        .await
        .unwrap();
    for id in &ids {
        for node in 0..2 {
            let (_, cause) = cluster
                .wait_state(node, id, S::Disconnected, Duration::from_secs(5))
                .await;
            assert_eq!(cause, C::None);
        }
    }
    let started = Instant::now();
    while cluster.byes() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the owners did not send BYE\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_nodes_call_reads_disconnected_on_its_peer_within_the_bound() {
    let pg = testkit::Postgres::start();
    let db = pg
        .own_database(&format!("openum_sigkill_{}", std::process::id()))
        .await;
    let mut cluster = Cluster::start(1, &db, 2, "", FAST_CLUSTER);
    let id = cluster.play_until_connected(0, 1, "2005551000").await;
    cluster.kill(0, "KILL");
    let killed = Instant::now();
    // dead_after_secs (4) plus one heartbeat period of the peer that notices, plus slack for a
    // loaded machine.
    let (_, cause) = cluster
        .wait_state(1, &id, S::Disconnected, Duration::from_secs(4 + 1 + 10))
        .await;
    eprintln!(
        "peer reported the call Disconnected {:?} after SIGKILL",
        killed.elapsed()
    );
    assert_eq!(cause, C::Other);
    // The killed node comes back: the call stays ended (not resurrected).
    let child = cluster.spawn(0);
    cluster.nodes[0] = Some(child);
    cluster.wait_ready(0, Duration::from_secs(20));
    let info = cluster
        .client(0)
        .get_phone_call_information(&id)
        .await
        .unwrap();
    assert_eq!(
        (info.phone_call_state, info.connection_failure_cause),
        (S::Disconnected, C::Other)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_user_cap_of_two_holds_across_three_nodes_under_concurrent_requests() {
    let pg = testkit::Postgres::start();
    let db = pg
        .own_database(&format!("openum_cap_{}", std::process::id()))
        .await;
    let cluster = Cluster::start(
        2,
        &db,
        3,
        "",
        &format!("{FAST_CLUSTER}[admission]\nmax_calls_per_user = 2\n"),
    );
    let mut tasks = Vec::new();
    for i in 0..9u16 {
        let client = cluster.client(i % 3);
        let item = cluster.item.clone();
        tasks.push(tokio::spawn(async move {
            client.play_on_phone(&item, &format!("20055520{i}")).await
        }));
    }
    let mut placed = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(id) => placed.push(id),
            Err(e) => refused.push(e.to_string()),
        }
    }
    assert_eq!(placed.len(), 2, "refusals: {refused:?}\n{}", cluster.logs());
    for e in &refused {
        assert!(e.contains("cap (2)"), "refused for another reason: {e}");
    }
    // A slot freed on one node is usable from another.
    cluster
        .client(0)
        .disconnect_phone_call(&placed[0])
        .await
        .unwrap();
    cluster
        .wait_state(2, &placed[0], S::Disconnected, Duration::from_secs(5))
        .await;
    let again = cluster.play(2, "2005552999").await;
    for id in [&placed[1], &again] {
        cluster.client(1).disconnect_phone_call(id).await.unwrap();
    }
}

/// An item imported through node A plays through nodes B and C: its audio lives in PostgreSQL,
/// and what a real phone records from each correlates with the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_imported_through_one_node_plays_through_the_others() {
    let pg = testkit::Postgres::start();
    let db = pg
        .own_database(&format!("openum_audio_{}", std::process::id()))
        .await;
    let base = base_port(3);
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = Phone::start(phone_dir.path(), base + 7, base + 100, base + 159);
    let wav = phone_dir.path().join("chirp.wav");
    chirp_wav(&wav);
    let cluster = Cluster::start_with(Setup {
        pg_url: Some(db.clone()),
        extra: FAST_CLUSTER.into(),
        phone_port: Some(phone.sip_port),
        wav: Some(wav.clone()),
        ..Setup::new(3, 3)
    });
    assert!(
        !cluster.dir.path().join("data0/voicemail").exists(),
        "the imported audio went to the importing node's disk, not the store"
    );
    let reference = audio::decode_to_8k_mono(&std::fs::read(&wav).unwrap(), Some("wav")).unwrap();
    for node in [1, 2] {
        let before = phone.recordings();
        let id = cluster.play(node, "4711").await;
        let (_, cause) = cluster
            .wait_state(node, &id, S::Disconnected, Duration::from_secs(30))
            .await;
        assert_eq!(cause, C::None, "{}", cluster.logs());
        let got = phone.new_recording(&before);
        let (score, lag) = correlation(&reference, &got, 8000);
        eprintln!("node {node}: correlation {score:.4} at lag {lag}");
        assert!(
            score >= 0.9,
            "node {node}: correlation {score:.4} at lag {lag}"
        );
        assert!(
            cluster
                .dir
                .path()
                .join(format!("data{node}/voicemail-cache"))
                .read_dir()
                .unwrap()
                .count()
                == 1,
            "node {node} keeps the audio in its cache"
        );
    }
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`) at `at`. Needs root; fails loudly otherwise.
    fn mount(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("the mount tool is required");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (this test fills a small disk and must run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at)
    }

    /// Fills the file system to the last byte with `filler`.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0u8; chunk];
            while file.write_all(&block).is_ok() {}
        }
        // The last write failed for want of space: the file system is full.
        assert!(file.write_all(&[0]).is_err());
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a process still holding a file there cannot leave it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// One node on SQLite whose disk fills while calls are live: hung-up calls read Disconnected
/// with their real SIP code at once and after the space is back, their cap slots are free, and a
/// restart finds the same records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sqlite_disk_never_bends_the_truth_of_hung_up_calls() {
    let mount_dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(mount_dir.path().join("disk"), "8m");
    let wav = mount_dir.path().join("m.wav");
    tone_wav(&wav, 20.0);
    let mut node = Cluster::start_with(Setup {
        extra: "[admission]\nmax_calls_per_user = 2\n".into(),
        wav: Some(wav),
        data_dir: Some(disk.0.join("data")),
        ..Setup::new(4, 1)
    });
    let client = node.client(0);
    // One call rings for ever (SIPp's 408 prefix), one is answered.
    let ringing = node.play(0, "4085550001").await;
    let answered = node.play(0, "2005550002").await;
    node.wait_state(0, &ringing, S::Alerted, Duration::from_secs(15))
        .await;
    node.wait_state(0, &answered, S::Connected, Duration::from_secs(15))
        .await;

    let filler = disk.fill();
    client.disconnect_phone_call(&ringing).await.unwrap();
    client.disconnect_phone_call(&answered).await.unwrap();
    // At once: both ended, the ringing one with the 487 its CANCEL drew.
    let (_, cause) = node
        .wait_state(0, &ringing, S::Disconnected, Duration::from_secs(5))
        .await;
    let first = client.get_phone_call_information(&ringing).await.unwrap();
    assert_eq!(
        (cause, first.sip_response_code),
        (C::None, Some(487)),
        "{first:?}"
    );
    let second = client.get_phone_call_information(&answered).await.unwrap();
    assert_eq!(second.phone_call_state, S::Disconnected);
    // The store refused the changes: /readyz says so.
    let readyz = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{}/readyz", node.base)])
        .output()
        .unwrap();
    let readyz = String::from_utf8_lossy(&readyz.stdout).into_owned();
    assert!(
        readyz.contains("not yet written"),
        "the full disk refused nothing: {readyz}\n{}",
        node.logs()
    );
    // The space comes back: the changes land, and nothing has moved.
    std::fs::remove_file(filler).unwrap();
    node.wait_ready(0, Duration::from_secs(15));
    assert_unchanged(&client, [(&ringing, &first), (&answered, &second)]).await;
    // The cap slots are free: two new calls fit under the cap of 2.
    let mut again = Vec::new();
    for n in ["2005550003", "2005550004"] {
        again.push(node.play(0, n).await);
    }
    for id in &again {
        client.disconnect_phone_call(id).await.unwrap();
    }
    // A restart reads the same records from the disk.
    node.kill(0, "TERM");
    let child = node.spawn(0);
    node.nodes[0] = Some(child);
    node.wait_ready(0, Duration::from_secs(20));
    assert_unchanged(&client, [(&ringing, &first), (&answered, &second)]).await;
}

/// Asserts that each call still reads exactly as it did before.
async fn assert_unchanged(client: &Client, calls: [(&str, &ews_proto::PhoneCallInformation); 2]) {
    for (id, before) in calls {
        assert_eq!(
            &client.get_phone_call_information(id).await.unwrap(),
            before
        );
    }
}

/// A TCP proxy to PostgreSQL that the test can cut, as a network failure between one node and
/// its database (the other nodes keep theirs).
struct Cuttable {
    port: u16,
    cut: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Cuttable {
    fn start(to: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (cut, cut_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let mut connections = tokio::task::JoinSet::new();
                tokio::pin!(cut_rx);
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((mut client, _)) = accepted else { continue };
                            connections.spawn(async move {
                                if let Ok(mut server) =
                                    tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                                {
                                    // Ends when either side closes or the proxy is cut.
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                        }
                        _ = &mut cut_rx => break,
                    }
                }
                // Cut: every connection dropped, nothing accepted any more.
                connections.abort_all();
                drop(listener);
            });
        });
        Self {
            port,
            cut: Some(cut),
            thread: Some(thread),
        }
    }

    fn cut(&mut self) {
        if let Some(cut) = self.cut.take() {
            // The proxy thread may have ended already; either way nothing passes any more.
            let _ = cut.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A node cut off from its database (its peers still reach it) hangs up its own call — SIPp
/// sees the BYE — before its peer declares the node dead and reports the call
/// Disconnected/Other: never Disconnected while the owner still plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_hangs_up_before_its_peer_declares_it_dead() {
    let pg = testkit::private_pg::PrivatePostgres::start();
    let mut proxy = Cuttable::start(pg.port);
    let mut cluster = Cluster::start_with(Setup {
        pg_url: Some(pg.url.clone()),
        first_node_pg_url: Some(
            pg.url
                .replace(&format!(":{}/", pg.port), &format!(":{}/", proxy.port)),
        ),
        extra: FAST_CLUSTER.into(),
        ..Setup::new(5, 2)
    });
    let id = cluster.play_until_connected(0, 1, "2005555000").await;
    assert_eq!(cluster.byes(), 0);
    proxy.cut();
    let started = Instant::now();
    loop {
        let byes_before = cluster.byes();
        let info = cluster
            .client(1)
            .get_phone_call_information(&id)
            .await
            .unwrap();
        if info.phone_call_state == S::Disconnected {
            assert_eq!(
                info.connection_failure_cause,
                C::Other,
                "{}",
                cluster.logs()
            );
            assert!(
                byes_before >= 1,
                "the peer reported the call ended before its owner hung up\n{}",
                cluster.logs()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the peer never declared the cut-off node dead: {info:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.kill(0, "KILL");
}
