//! Two `openum serve` processes sharing one PostgreSQL: a call placed through node 1 is visible
//! through node 2, and node 2 can end it (node 1, the owner, hangs up: SIPp sees the BYE).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::time::{Duration, Instant};

use client::{Auth, Client};
use ews_proto::{ConnectionFailureCause as C, PhoneCallState as S};
use support::serve;
use support::sipp::Sipp;
use support::{add_user_with_message, tone_wav, Processes, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_placed_on_one_node_is_seen_and_ended_from_the_other() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let base = 33000 + (std::process::id() % 200) as u16 * 10;
    let sipp_port = base + 9;
    let messages = dir.path().join("sipp.log");
    let sipp = Sipp::uas("uas_multi.xml", sipp_port, base + 6, &messages)
        .no_rtp_echo()
        .start();
    let mut procs = Processes(Vec::new());
    let config = |n: u16| {
        let path = dir.path().join(format!("node{n}.toml"));
        std::fs::write(
            &path,
            format!(
                "[server]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\nnode_name = \"node{n}\"\n\
                 [store]\npostgres_url = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{}\"\n\
                 [[gateway]]\nuri = \"sip:{{number}}@127.0.0.1:{sipp_port}\"\n",
                base + n,
                dir.path().join(format!("data{n}")).display(),
                pg.url,
                base + 2 + n,
            ),
        )
        .unwrap();
        path
    };
    let (c1, c2) = (config(1), config(2));
    let tag = format!("n{}", std::process::id());
    let user = format!("{tag}-alice");
    let wav = dir.path().join("m.wav");
    tone_wav(&wav, 20.0);
    let item = add_user_with_message(&c1, &user, &wav);
    for (n, c) in [(1, &c1), (2, &c2)] {
        let log = dir.path().join(format!("node{n}.log"));
        procs.0.push(serve::spawn(c, &log, None));
    }
    let logs = || {
        let read = |n: u16| {
            std::fs::read_to_string(dir.path().join(format!("node{n}.log"))).unwrap_or_default()
        };
        format!("--- node1 ---\n{}\n--- node2 ---\n{}", read(1), read(2))
    };
    let client = |n: u16| {
        Client::new(
            format!("http://127.0.0.1:{}/EWS/Exchange.asmx", base + n),
            Auth::Basic {
                user: user.clone(),
                password: PASSWORD.into(),
            },
        )
        .unwrap()
    };
    let (node1, node2) = (client(1), client(2));
    let http = reqwest::Client::new();
    for n in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while http
            .get(format!("http://127.0.0.1:{}/healthz", base + n))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "node {n} did not start\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let id = node1
        .play_on_phone(item.trim(), "2005551234")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen = node2.get_phone_call_information(&id).await.unwrap();
        if seen.phone_call_state == S::Connected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never saw the call connected: {seen:?}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node2.disconnect_phone_call(&id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sipp.trace().contains("BYE sip:") {
        assert!(Instant::now() < deadline, "the owner never sent BYE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in [&node1, &node2] {
        let info = node.get_phone_call_information(&id).await.unwrap();
        assert_eq!(
            (info.phone_call_state, info.connection_failure_cause),
            (S::Disconnected, C::None)
        );
    }
}
