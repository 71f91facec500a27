//! An openum server started in-process on a real TCP port, with a temporary SQLite store and a
//! scriptable call service, plus a real HTTP client (reqwest) to talk to it.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "shared by several test binaries"
)]

extern crate openum_server as server;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use calls::{CallRecord, CallService, CallState, Cause, Hangup, PlaceError};
use server::config::Config;
use server::registry::Registry;
use server::store::{SqliteStore, Store, StoreError, User, VoicemailItem};
use tokio::sync::{oneshot, Notify};

pub const PASSWORD: &str = "correct horse";

/// A call service double: remembers what it was asked, and behaves by dialled number.
pub struct FakeCalls {
    pub registry: Arc<Registry>,
    pub available: bool,
    pub placed: Mutex<Vec<String>>,
    pub hung_up: Mutex<Vec<String>>,
    pub live: Mutex<HashSet<String>>,
    /// Released by the test to let a `place` of number 999 finish.
    pub gate: Notify,
}

#[async_trait]
impl CallService for FakeCalls {
    fn available(&self) -> bool {
        self.available
    }

    async fn place(&self, call: &CallRecord) -> Result<(), PlaceError> {
        self.placed.lock().unwrap().push(call.dialled.clone());
        match call.dialled.as_str() {
            "999" => self.gate.notified().await,
            "5550000" => {
                return Err(PlaceError::OverCapacity(
                    calls::service::Capacity::GatewayCalls {
                        gateway: "fake".into(),
                        cap: 2,
                    },
                ))
            }
            "5550001" => {
                return Err(PlaceError::Signalling(
                    std::io::Error::other("engine refused").into(),
                ))
            }
            _ => {}
        }
        self.live.lock().unwrap().insert(call.id.clone());
        Ok(())
    }

    async fn hangup(&self, id: &str) -> Hangup {
        self.hung_up.lock().unwrap().push(id.to_owned());
        if !self.live.lock().unwrap().remove(id) {
            return Hangup::NotLive;
        }
        let mut record = self.registry.get(id).await.unwrap().unwrap();
        record.state = CallState::Disconnected;
        record.cause = Cause::None;
        record.sip_code = Some(200);
        record.sip_text = Some("OK".into());
        record.ended_at = Some(now());
        self.registry.update(&record).await.unwrap();
        Hangup::Ending
    }
}

/// A store that fails reads of the call id `boom` (to provoke ErrorInternalServerError).
pub struct FlakyStore(pub SqliteStore);

server::store_double!(FlakyStore, 0, {
    async fn upsert_user(&self, user: User) -> Result<(), StoreError> {
        self.0.upsert_user(user).await
    }
    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        self.0.user(name).await
    }
    async fn insert_token(&self, u: &str, h: &str, l: &str) -> Result<(), StoreError> {
        self.0.insert_token(u, h, l).await
    }
    async fn token_user(&self, h: &str) -> Result<Option<String>, StoreError> {
        self.0.token_user(h).await
    }
    async fn insert_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        self.0.insert_call(c).await
    }
    async fn update_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        self.0.update_call(c).await
    }
    async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        if id == "boom" {
            return Err(StoreError::Backend("disk on fire".into()));
        }
        self.0.call(id).await
    }
    async fn close_orphaned_calls(&self, node: &str, now: i64) -> Result<usize, StoreError> {
        self.0.close_orphaned_calls(node, now).await
    }
    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
        self.0.voicemail_item(id).await
    }
    async fn insert_voicemail_item(&self, item: &VoicemailItem) -> Result<(), StoreError> {
        self.0.insert_voicemail_item(item).await
    }
    async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError> {
        self.0.voicemail_items(owner).await
    }
});

pub struct TestServer {
    pub addr: SocketAddr,
    pub sqlite: SqliteStore,
    pub calls: Arc<FakeCalls>,
    pub token: String,
    pub client: reqwest::Client,
    pub scheme: Scheme,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// What the conformance suites run over: each test runs once per scheme
/// ([`over_http_and_https!`]), with the same assertions.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Scheme {
    Http,
    /// TLS with a certificate chain from a test CA made by `openssl` at test time; the client
    /// trusts only that CA's root.
    Https,
}

/// One test PKI per test binary: (its directory, the root, a served certificate).
fn test_pki() -> &'static (tempfile::TempDir, std::path::PathBuf, testkit::tls::Issued) {
    static PKI: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf, testkit::tls::Issued)> =
        std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = testkit::tls::TestCa::new(dir.path());
        let issued = ca.issue("server", "localhost", 1, testkit::tls::KeyFormat::EcPkcs8);
        (dir, ca.root.clone(), issued)
    })
}

/// Generates `over_http::NAME` and `over_https::NAME` tests calling `NAME(Scheme)`.
#[allow(
    unused_macros,
    reason = "used by the conformance suites, not every test binary"
)]
macro_rules! over_http_and_https {
    ($($name:ident),* $(,)?) => {
        mod over_http {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::Scheme::Http).await;
                }
            )*
        }
        mod over_https {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::support::Scheme::Https).await;
                }
            )*
        }
    };
}
#[allow(
    unused_imports,
    reason = "used by the conformance suites, not every test binary"
)]
pub(crate) use over_http_and_https;

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Config::default(), true).await
    }

    pub async fn start_with(config: Config, gateway: bool) -> Self {
        Self::start_over(Scheme::Http, config, gateway).await
    }

    /// [`TestServer::start`] over `scheme`.
    pub async fn over(scheme: Scheme) -> Self {
        Self::start_over(scheme, Config::default(), true).await
    }

    pub async fn start_over(scheme: Scheme, mut config: Config, gateway: bool) -> Self {
        let mut client = reqwest::Client::builder();
        let mut tls = None;
        if scheme == Scheme::Https {
            let (_, root, issued) = test_pki();
            config.server.tls_cert = Some(issued.chain.clone());
            config.server.tls_key = Some(issued.key.clone());
            tls = server::tls::Tls::from_config(&config.server).unwrap();
            let root = std::fs::read(root).unwrap();
            client = client
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
                .https_only(true);
        }
        let dir = tempfile::tempdir().unwrap();
        config.server.data_dir = dir.path().to_owned();
        config.server.node_name = Some("test-node".into());
        let sqlite = server::open_sqlite(&config).unwrap();
        let store: Arc<dyn Store> = Arc::new(FlakyStore(sqlite.clone()));
        for (name, enabled) in [("alice", true), ("bob", true), ("carol", false)] {
            store
                .upsert_user(User {
                    name: name.into(),
                    password_hash: server::auth::hash_password(PASSWORD).unwrap(),
                    play_on_phone: enabled,
                })
                .await
                .unwrap();
        }
        let (token, hash) = server::auth::new_token();
        store.insert_token("alice", &hash, "tests").await.unwrap();
        let registry = Arc::new(Registry::new(store, "test-node".into()));
        let calls = Arc::new(FakeCalls {
            registry: Arc::clone(&registry),
            available: gateway,
            placed: Mutex::default(),
            hung_up: Mutex::default(),
            live: Mutex::default(),
            gate: Notify::new(),
        });
        let state = server::app_state(&config, registry, calls.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run_tls(&config, listener, state, tls, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            addr,
            sqlite,
            calls,
            token,
            client: client.build().unwrap(),
            scheme,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        match self.scheme {
            Scheme::Http => format!("http://{}{path}", self.addr),
            Scheme::Https => format!("https://{}{path}", self.addr),
        }
    }

    pub fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    /// POSTs `body` to /EWS/Exchange.asmx as alice.
    pub async fn ews(&self, body: impl Into<reqwest::Body>) -> Reply {
        self.ews_as(Some(&Self::basic("alice", PASSWORD)), body)
            .await
    }

    pub async fn ews_as(&self, auth: Option<&str>, body: impl Into<reqwest::Body>) -> Reply {
        let mut req = self
            .client
            .post(self.url("/EWS/Exchange.asmx"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    /// Adds a voice-mail item owned by `owner`; returns its ItemId.
    pub async fn add_item(&self, owner: &str, has_audio: bool) -> String {
        let id = server::voicemail::mint_item_id();
        self.sqlite
            .insert_voicemail_item(&VoicemailItem {
                id: id.clone(),
                owner: owner.into(),
                has_audio,
                ..VoicemailItem::default()
            })
            .await
            .unwrap();
        id
    }

    /// Stores a call record directly (as the engine would have).
    pub async fn add_call(&self, id: &str, owner: &str, state: CallState, cause: Cause) {
        let record = CallRecord {
            state,
            cause,
            ..CallRecord::dialling(id, owner, "test-node", "5551212", "x", now())
        };
        self.sqlite.insert_call(&record).await.unwrap();
        if state != CallState::Disconnected {
            self.calls.live.lock().unwrap().insert(id.into());
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Request envelope text around an operation element (EWS Managed API shape).
pub fn envelope(version: Option<&str>, body: &str) -> String {
    let header = version
        .map(|v| format!(r#"<soap:Header><t:RequestServerVersion Version="{v}"/></soap:Header>"#))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
{header}<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

pub fn play(item: &str, dial: &str) -> String {
    envelope(
        Some("Exchange2010_SP1"),
        &format!(
            r#"<m:PlayOnPhone><m:ItemId Id="{item}"/><m:DialString>{dial}</m:DialString></m:PlayOnPhone>"#
        ),
    )
}

pub fn get_info(id: &str) -> String {
    envelope(
        Some("Exchange2010"),
        &format!(
            r#"<m:GetPhoneCallInformation><m:PhoneCallId Id="{id}"/></m:GetPhoneCallInformation>"#
        ),
    )
}

pub fn disconnect(id: &str) -> String {
    envelope(
        Some("Exchange2010"),
        &format!(r#"<m:DisconnectPhoneCall><m:PhoneCallId Id="{id}"/></m:DisconnectPhoneCall>"#),
    )
}

/// Decodes a server reply with the shared wire types.
pub fn decode(reply: &Reply) -> ews_proto::ResponseDocument {
    ews_proto::decode_response(reply.body.as_bytes())
        .unwrap_or_else(|e| panic!("undecodable reply: {e}\n{}", reply.body))
}

/// The response code of a per-message reply, or of a fault.
pub fn code(reply: &Reply) -> ews_proto::ResponseCode {
    match decode(reply) {
        ews_proto::ResponseDocument::Response(r) => r.body.message().response_code.unwrap(),
        ews_proto::ResponseDocument::Fault(f) => f.code,
    }
}

pub use calls::now_unix as now;
