//! The client library and the `openum call/status/hangup` commands against the real server over
//! HTTP, with SIPp as the far end — including every error class.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is a test failure"
)]

mod support;

use std::process::Command;
use std::time::Duration;

use client::{Auth, Client, Error};
use ews_proto::{ConnectionFailureCause as C, ExchangeVersion, PhoneCallState as S, ResponseCode};
use support::{openum_bin, Harness, Options, PASSWORD};

fn alice(h: &Harness) -> Client {
    Client::new(
        format!("{}/EWS/Exchange.asmx", h.base),
        Auth::Basic {
            user: "alice".into(),
            password: PASSWORD.into(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn client_places_watches_and_ends_a_call() {
    let h = Harness::start(Options {
        audio_seconds: 10.0,
        ..Options::default()
    })
    .await;
    let client = alice(&h);
    let id = client.play_on_phone(&h.item, "200-555-1234").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let info = client.get_phone_call_information(&id).await.unwrap();
        if info.phone_call_state == S::Connected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{info:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.disconnect_phone_call(&id).await.unwrap();
    let info = client.get_phone_call_information(&id).await.unwrap();
    assert_eq!(
        (info.phone_call_state, info.connection_failure_cause),
        (S::Disconnected, C::None)
    );
    // Idempotent hang-up.
    client.disconnect_phone_call(&id).await.unwrap();
}

#[tokio::test]
async fn every_error_class_is_surfaced_typed() {
    let h = Harness::start(Options::default()).await;
    let url = format!("{}/EWS/Exchange.asmx", h.base);
    // Per-message error.
    let err = alice(&h)
        .get_phone_call_information("no-such-call")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Response { code: ResponseCode::ErrorInvalidPhoneCallId, message } if message == "The phone call ID isn't valid"),
        "{err:?}"
    );
    let err = alice(&h)
        .play_on_phone("AkAjzQTbY/i=", "5551212")
        .await
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::ErrorInvalidIdMalformed)
    );
    let err = alice(&h)
        .play_on_phone(&h.item, "+1 900 555 1212")
        .await
        .unwrap_err();
    assert_eq!(
        err.response_code(),
        Some(ResponseCode::ErrorPhoneNumberNotDialable)
    );
    // SOAP fault.
    let old = alice(&h).with_version(ExchangeVersion::Exchange2007_SP1);
    let err = old.get_phone_call_information("x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Fault(f) if f.code == ResponseCode::ErrorIncorrectSchemaVersion),
        "{err:?}"
    );
    // Credentials.
    let wrong = Client::new(
        url.clone(),
        Auth::Basic {
            user: "alice".into(),
            password: "nope".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        wrong.get_phone_call_information("x").await,
        Err(Error::Unauthorized)
    ));
    let bearer = Client::new(url.clone(), Auth::Bearer("oum_bogus".into())).unwrap();
    assert!(matches!(
        bearer.get_phone_call_information("x").await,
        Err(Error::Unauthorized)
    ));
    // HTTP status and transport.
    let lost = Client::new(
        format!("{}/EWS/Nothing.asmx", h.base),
        Auth::Bearer("t".into()),
    )
    .unwrap();
    assert!(matches!(
        lost.get_phone_call_information("x").await,
        Err(Error::Status(404))
    ));
    let closed = Client::new(
        "http://127.0.0.1:9/EWS/Exchange.asmx",
        Auth::Bearer("t".into()),
    )
    .unwrap();
    assert!(matches!(
        closed.get_phone_call_information("x").await,
        Err(Error::Transport(_))
    ));
    // Credentials never show in Debug output.
    assert!(!format!("{:?}", alice(&h)).contains(PASSWORD));
}

fn cli(h: &Harness, args: &[&str], password: &str) -> (i32, String, String) {
    let out = Command::new(openum_bin())
        .args(args)
        .env("OPENUM_URL", format!("{}/EWS/Exchange.asmx", h.base))
        .env("OPENUM_USER", "alice")
        .env("OPENUM_PASSWORD", password)
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_call_status_hangup_and_exit_codes() {
    let h = Harness::start(Options {
        audio_seconds: 1.0,
        ..Options::default()
    })
    .await;
    let item = h.item.clone();
    let hh = &h;
    // call --wait follows the call to its end.
    let (code, out, err) = tokio::task::block_in_place(|| {
        cli(
            hh,
            &["call", "--item", &item, "--dial", "2005551234", "--wait"],
            PASSWORD,
        )
    });
    assert_eq!(code, 0, "{err}");
    // Not a terminal: the id, then one line per state change.
    let mut lines = out.lines();
    let id = lines.next().unwrap().to_owned();
    let states: Vec<&str> = lines.collect();
    assert!(states.iter().any(|l| l.starts_with("Alerted")), "{out}");
    assert!(states.iter().any(|l| l.starts_with("Connected")), "{out}");
    assert_eq!(
        states.last(),
        Some(&"Disconnected None 200 OK"),
        "{out}\n{err}"
    );
    let (code, json, _) =
        tokio::task::block_in_place(|| cli(hh, &["status", &id, "--json"], PASSWORD));
    assert_eq!(code, 0);
    assert_eq!(
        json.trim(),
        r#"{"state":"Disconnected","cause":"None","sip_code":200,"sip_text":"OK"}"#
    );
    // A busy callee: the call itself succeeds (exit 0); its outcome is in the status.
    let (_, busy, _) = tokio::task::block_in_place(|| {
        cli(
            hh,
            &["call", "--item", &item, "--dial", "4865551234"],
            PASSWORD,
        )
    });
    let busy = busy.trim().to_owned();
    // watch --json: one JSON object per change, ending with the final state.
    let (code, watched, _) =
        tokio::task::block_in_place(|| cli(hh, &["watch", &busy, "--json"], PASSWORD));
    assert_eq!(code, 0);
    assert_eq!(
        watched.lines().last(),
        Some(
            r#"{"state":"Disconnected","cause":"UserBusy","sip_code":486,"sip_text":"Busy Here"}"#
        ),
        "{watched}"
    );
    let (_, text, _) = tokio::task::block_in_place(|| cli(hh, &["status", &busy], PASSWORD));
    assert_eq!(text.trim(), "Disconnected UserBusy 486 Busy Here");
    let (code, out, _) =
        tokio::task::block_in_place(|| cli(hh, &["hangup", &busy, "--json"], PASSWORD));
    assert_eq!((code, out.trim()), (0, r#"{"response_code":"NoError"}"#));
    // Credentials from the config file's [client] section.
    let file = hh.dir.path().join("client.toml");
    std::fs::write(
        &file,
        format!(
            "[client]\nurl = \"{}/EWS/Exchange.asmx\"\nuser = \"alice\"\npassword = \"{PASSWORD}\"\n",
            hh.base
        ),
    )
    .unwrap();
    let out = Command::new(openum_bin())
        .arg("--config")
        .arg(&file)
        .args(["status", &busy])
        .env_remove("OPENUM_URL")
        .env_remove("OPENUM_USER")
        .env_remove("OPENUM_PASSWORD")
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Error classes → exit codes.
    let (code, _, err) =
        tokio::task::block_in_place(|| cli(hh, &["hangup", "no-such-call"], PASSWORD));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("ErrorInvalidPhoneCallId"), "{err}");
    let (code, _, _) = tokio::task::block_in_place(|| cli(hh, &["status", &id], "wrong password"));
    assert_eq!(code, 4);
    let out = Command::new(openum_bin())
        .args(["status", &id])
        .env_remove("OPENUM_USER")
        .env_remove("OPENUM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
