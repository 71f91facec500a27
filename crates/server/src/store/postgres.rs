//! The PostgreSQL store, for several openum nodes sharing one database.
//!
//! Queries go through a pool (deadpool-postgres): each connection is checked before it is
//! handed out (`RecyclingMethod::Verified`), a broken one is dropped and a new one opened on
//! demand, so a PostgreSQL restart heals by itself; connecting, waiting for a connection and
//! checking one are each bounded so a database gone silent fails requests instead of holding
//! them. TLS (`store.postgres_sslmode = "verify-full"`) uses rustls.
//!
//! Cross-node hang-up (decisions §12, style.md "Multi-node note"): the table `hangup_requests`
//! is the source of truth, `NOTIFY openum_hangup` the wake-up. One dedicated connection
//! `LISTEN`s; when it breaks it is re-established with back-off and the table is read again,
//! so a request made while it was away is delivered after it. The owner confirms with
//! `NOTIFY openum_hangup_done`, which the requesting node waits for (bounded).
//!
//! Liveness: table `nodes` holds each node's heartbeat (the database's clock, so node clocks
//! never matter); a node whose heartbeat is too old has its live calls closed by one UPDATE whose
//! WHERE clause is the condition, so each call is closed once however many nodes try. Such a
//! call is marked `closed_by`, and its owner's later writes never change it again.
//!
//! Admission: a call is inserted only if its owner has fewer live calls than the cap, counted
//! and inserted in one transaction under a per-user advisory lock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use calls::sync::lock;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use calls::{CallRecord, UnixSeconds};

use super::{
    CallRow, Credential, CredentialState, DeletedUser, HangupRequest, Store, StoreError,
    TokenCredential, TokenInfo, User, UserSummary, VoicemailItem, TOKEN_ID_LEN,
};

mod credentials;
mod history;
use crate::config::PgSslMode;

pub use credentials::POSTGRES_CREDENTIAL_LAG;

const CHANNEL: &str = "openum_hangup";
const DONE_CHANNEL: &str = "openum_hangup_done";

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    play_on_phone  BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE IF NOT EXISTS tokens (
    hash        TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS voicemail_items (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    has_audio   BOOLEAN NOT NULL DEFAULT FALSE,
    from_text   TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    duration_ms BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS voicemail_owner ON voicemail_items(owner);
CREATE TABLE IF NOT EXISTS calls (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    node        TEXT NOT NULL,
    state       TEXT NOT NULL,
    cause       TEXT NOT NULL,
    sip_code    INTEGER,
    sip_text    TEXT,
    dialled     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    ended_at    BIGINT
);
CREATE INDEX IF NOT EXISTS calls_owner ON calls(owner);
CREATE INDEX IF NOT EXISTS calls_node_live ON calls(node) WHERE state <> 'Disconnected';
"#,
    // Credential generations and disabled users (store/users.rs).
    r#"
ALTER TABLE users ADD COLUMN IF NOT EXISTS generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_name);
"#,
    r#"
CREATE TABLE IF NOT EXISTS hangup_requests (
    call_id      TEXT PRIMARY KEY,
    node         TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS hangup_requests_node ON hangup_requests(node);
CREATE TABLE IF NOT EXISTS nodes (
    name         TEXT PRIMARY KEY,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
ALTER TABLE calls ADD COLUMN IF NOT EXISTS closed_by TEXT;
CREATE INDEX IF NOT EXISTS calls_owner_live ON calls(owner) WHERE state <> 'Disconnected';
CREATE TABLE IF NOT EXISTS voicemail_audio (
    item_id TEXT NOT NULL REFERENCES voicemail_items(id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (item_id, seq)
);
"#,
    // Credential-change notifications (postgres/credentials.rs).
    credentials::MIGRATION,
];

/// Voice-mail audio is stored in chunks of this many bytes (16 s of 8 kHz 16-bit audio), so no
/// single value is large.
const AUDIO_CHUNK: usize = 256 * 1024;

/// How to reach PostgreSQL besides the URL (`[store]` and `[cluster]`).
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `store.postgres_sslmode`.
    pub sslmode: PgSslMode,
    /// `store.postgres_ca_file`.
    pub ca_file: Option<PathBuf>,
    /// `store.postgres_pool_size`.
    pub pool_size: usize,
    /// `cluster.hangup_wait_secs`.
    pub hangup_wait: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            sslmode: PgSslMode::Disable,
            ca_file: None,
            pool_size: 16,
            hangup_wait: Duration::from_secs(3),
        }
    }
}

/// Bounds on reaching the database: a connection attempt, waiting for a pooled connection, and
/// checking one before use.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The `LISTEN` connection is re-established after this long, doubling up to [`LISTEN_RETRY_MAX`].
const LISTEN_RETRY_FIRST: Duration = Duration::from_millis(100);
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

/// A PostgreSQL-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    shared: Arc<Shared>,
    hangup_wait: Duration,
}

/// What the `LISTEN` task and the store share.
struct Shared {
    hangups: broadcast::Sender<HangupRequest>,
    /// Calls whose owner confirmed a hang-up this node forwarded.
    done: broadcast::Sender<String>,
    /// This node's name, once `serve` asks for its hang-up requests.
    node: std::sync::OnceLock<String>,
    node_set: tokio::sync::Notify,
    /// Why the `LISTEN` connection is down; `None` while it is up.
    listen_down: std::sync::Mutex<Option<String>>,
    /// Credential changes counted from `NOTIFY openum_credentials` (see `credentials.rs`).
    credentials: credentials::CredentialWatch,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`) with default options.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PgOptions::default()).await
    }

    /// Connects to `url` with `options`, applies migrations and starts listening for
    /// cross-node hang-up requests.
    pub async fn connect_with(url: &str, options: &PgOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(pg)?;
        let tls = match options.sslmode {
            PgSslMode::Disable => {
                if config.get_ssl_mode() == SslMode::Require {
                    return Err(StoreError::Backend(
                        "the PostgreSQL URL asks for sslmode=require but store.postgres_sslmode is \"disable\"; set it to \"verify-full\"".into(),
                    ));
                }
                config.ssl_mode(SslMode::Disable);
                Tls::Plain
            }
            PgSslMode::VerifyFull => {
                config.ssl_mode(SslMode::Require);
                Tls::Rustls(MakeRustlsConnect::new(rustls_config(
                    options.ca_file.as_deref(),
                )?))
            }
        };
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        };
        let manager = match &tls {
            Tls::Plain => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::Rustls(t) => Manager::from_config(config.clone(), t.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let (hangups, _) = broadcast::channel(1024);
        let (done, _) = broadcast::channel(1024);
        let store = Self {
            pool,
            shared: Arc::new(Shared {
                hangups,
                done,
                node: std::sync::OnceLock::new(),
                node_set: tokio::sync::Notify::new(),
                listen_down: std::sync::Mutex::new(Some("not connected yet".into())),
                credentials: credentials::CredentialWatch::new(),
            }),
            hangup_wait: options.hangup_wait,
        };
        store.migrate().await?;
        tokio::spawn(listen(
            config,
            tls,
            store.pool.clone(),
            Arc::clone(&store.shared),
        ));
        Ok(store)
    }

    /// Runs the migrations not yet applied, once per version, serialised across nodes by an
    /// advisory lock (held by this session until it unlocks).
    async fn migrate(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .batch_execute(
                "SELECT pg_advisory_lock(7303);
                 CREATE TABLE IF NOT EXISTS openum_schema (version INTEGER NOT NULL);",
            )
            .await
            .map_err(pg)?;
        let current: i32 = client
            .query_opt("SELECT max(version) FROM openum_schema", &[])
            .await
            .map_err(pg)?
            .map(|r| r.try_get::<_, Option<i32>>(0))
            .transpose()
            .map_err(pg)?
            .flatten()
            // No row, or max() of an empty table: no migration has run yet.
            .unwrap_or(0);
        history::guard(i64::from(current))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            if current < version {
                client.batch_execute(sql).await.map_err(pg)?;
                client
                    .execute(
                        "INSERT INTO openum_schema (version) VALUES ($1)",
                        &[&version],
                    )
                    .await
                    .map_err(pg)?;
            }
        }
        client
            .batch_execute("SELECT pg_advisory_unlock(7303)")
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query_opt(&statement, params).await.map_err(pg)
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query_one(&statement, params).await.map_err(pg)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.query(&statement, params).await.map_err(pg)
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg)?;
        client.execute(&statement, params).await.map_err(pg)
    }
}

/// The rustls client configuration: the CA file's certificates, or the system's roots.
fn rustls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            let bad = |e: String| {
                StoreError::Backend(
                    format!("store.postgres_ca_file {}: {e}", path.display()).into(),
                )
            };
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                // Unreadable system certificates narrow the trust; the others still count.
                tracing::debug!(%error, "a system root certificate could not be loaded");
            }
            for cert in native.certs {
                if let Err(error) = roots.add(cert) {
                    tracing::debug!(%error, "a system root certificate was refused");
                }
            }
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Backend(Box::new(e)))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Keeps one connection `LISTEN`ing, re-established with back-off whenever it breaks; after
/// each (re)connect, and on each wake-up, delivers this node's recorded hang-up requests.
async fn listen(config: tokio_postgres::Config, tls: Tls, pool: Pool, shared: Arc<Shared>) {
    let mut wait = LISTEN_RETRY_FIRST;
    loop {
        let outcome = listen_once(&config, &tls, &pool, &shared).await;
        // Credential changes are not heard until it is back: every request checks the store.
        shared.credentials.lost();
        match outcome {
            Ok(()) => wait = LISTEN_RETRY_FIRST,
            Err(error) => {
                tracing::warn!(error = %calls::error_chain(&error), retry_in = ?wait, "the PostgreSQL LISTEN connection is down");
                *lock(&shared.listen_down) = Some(calls::error_chain(&error));
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LISTEN_RETRY_MAX);
    }
}

/// One `LISTEN` session: returns when the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &Tls,
    pool: &Pool,
    shared: &Shared,
) -> Result<(), StoreError> {
    let (tx, mut notifications) = mpsc::unbounded_channel();
    let client = match tls {
        Tls::Plain => {
            let (client, connection) = config.connect(NoTls).await.map_err(pg)?;
            tokio::spawn(pump(connection, tx));
            client
        }
        Tls::Rustls(t) => {
            let (client, connection) = config.connect(t.clone()).await.map_err(pg)?;
            tokio::spawn(pump(connection, tx));
            client
        }
    };
    client
        .batch_execute(&format!(
            "LISTEN {CHANNEL}; LISTEN {DONE_CHANNEL}; LISTEN {};",
            credentials::CHANNEL
        ))
        .await
        .map_err(pg)?;
    // Credential changes made while nobody listened were not heard: whatever was verified
    // before is checked again, and from now on every change is heard.
    shared.credentials.bump();
    shared.credentials.confirmed(shared.credentials.now());
    *lock(&shared.listen_down) = None;
    tracing::info!("listening for cross-node hang-up requests and credential changes");
    // Requests made while nobody listened are in the table.
    deliver_requests(pool, shared).await?;
    let mut ping = tokio::time::interval(credentials::PING);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            notification = notifications.recv() => {
                let Some(n) = notification else {
                    *lock(&shared.listen_down) = Some("the LISTEN connection closed".into());
                    return Err(StoreError::Backend("the LISTEN connection closed".into()));
                };
                on_notification(&n, pool, shared).await?;
            }
            () = shared.node_set.notified() => deliver_requests(pool, shared).await?,
            _ = ping.tick() => {
                let sent = shared.credentials.now();
                match tokio::time::timeout(POSTGRES_CREDENTIAL_LAG, client.batch_execute("SELECT 1")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(pg(error)),
                    Err(elapsed) => {
                        return Err(StoreError::Backend(
                            format!("the LISTEN connection did not answer a ping in {POSTGRES_CREDENTIAL_LAG:?}: {elapsed}").into(),
                        ));
                    }
                }
                // Notifications sent before the ping's answer were taken off the connection
                // before it: handle them, then vouch for everything committed before `sent`.
                while let Ok(n) = notifications.try_recv() {
                    on_notification(&n, pool, shared).await?;
                }
                shared.credentials.confirmed(sent);
            }
        }
    }
}

/// One notification on the `LISTEN` connection.
async fn on_notification(
    n: &tokio_postgres::Notification,
    pool: &Pool,
    shared: &Shared,
) -> Result<(), StoreError> {
    if n.channel() == credentials::CHANNEL {
        shared.credentials.bump();
    } else if n.channel() == DONE_CHANNEL {
        // No receiver: no hang-up from this node is waiting for it.
        let _ = shared.done.send(n.payload().to_owned());
    } else if n.channel() == CHANNEL
        && shared.node.get().is_some_and(|me| {
            n.payload()
                .split_once(' ')
                .is_some_and(|(node, _)| node == me)
        })
    {
        deliver_requests(pool, shared).await?;
    }
    Ok(())
}

/// Takes this node's recorded hang-up requests out of the table and hands them to `serve`.
async fn deliver_requests(pool: &Pool, shared: &Shared) -> Result<(), StoreError> {
    let Some(me) = shared.node.get() else {
        return Ok(());
    };
    let client = pool.get().await.map_err(pool_error)?;
    let rows = client
        .query(
            "DELETE FROM hangup_requests WHERE node = $1 RETURNING call_id",
            &[me],
        )
        .await
        .map_err(pg)?;
    for row in rows {
        let call_id: String = row.try_get(0).map_err(pg)?;
        if shared
            .hangups
            .send(HangupRequest {
                node: me.clone(),
                call_id: call_id.clone(),
            })
            .is_err()
        {
            tracing::error!(call = %call_id, "a hang-up request arrived but nothing on this node handles them");
        }
    }
    Ok(())
}

/// Drives a `LISTEN` connection, forwarding its notifications until it ends.
async fn pump<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<tokio_postgres::Notification>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if tx.send(n).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(error = %calls::error_chain(&error), "the PostgreSQL LISTEN connection failed");
                return;
            }
            None => return,
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => StoreError::Backend(Box::new(other)),
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(e.to_string());
    }
    StoreError::Backend(Box::new(e))
}

// `try_get`, never `get`: `Row::get` panics on a column of an unexpected type.
fn to_call(r: &Row) -> Result<CallRecord, StoreError> {
    let sip_code: Option<i32> = r.try_get("sip_code").map_err(pg)?;
    CallRow {
        id: r.try_get("id").map_err(pg)?,
        owner: r.try_get("owner").map_err(pg)?,
        node: r.try_get("node").map_err(pg)?,
        state: r.try_get("state").map_err(pg)?,
        cause: r.try_get("cause").map_err(pg)?,
        sip_code: sip_code.map(i64::from),
        sip_text: r.try_get("sip_text").map_err(pg)?,
        dialled: r.try_get("dialled").map_err(pg)?,
        item_id: r.try_get("item_id").map_err(pg)?,
        created_at: r.try_get("created_at").map_err(pg)?,
        ended_at: r.try_get("ended_at").map_err(pg)?,
    }
    .decode()
}

fn to_item(r: &Row) -> Result<VoicemailItem, StoreError> {
    Ok(VoicemailItem {
        id: r.try_get("id").map_err(pg)?,
        owner: r.try_get("owner").map_err(pg)?,
        has_audio: r.try_get("has_audio").map_err(pg)?,
        from: r.try_get("from_text").map_err(pg)?,
        subject: r.try_get("subject").map_err(pg)?,
        duration_ms: r.try_get("duration_ms").map_err(pg)?,
        created_at: r.try_get("created_at").map_err(pg)?,
    })
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_user(&self, user: User) -> Result<(), StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        self.execute(
            "INSERT INTO users (name, password_hash, play_on_phone, generation)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                                              play_on_phone = excluded.play_on_phone,
                                              generation = users.generation + 1",
            &[
                &user.name,
                &user.password_hash,
                &user.play_on_phone,
                &super::first_generation(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = self
            .query_opt(
                "SELECT name, password_hash, play_on_phone FROM users WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| {
            Ok(User {
                name: r.try_get(0).map_err(pg)?,
                password_hash: r.try_get(1).map_err(pg)?,
                play_on_phone: r.try_get(2).map_err(pg)?,
            })
        })
        .transpose()
    }

    async fn insert_token(&self, user: &str, hash: &str, label: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO tokens (hash, user_name, label, created_at)
             VALUES ($1, $2, $3, extract(epoch FROM now())::BIGINT)",
            &[&hash, &user, &label],
        )
        .await?;
        Ok(())
    }

    async fn token_user(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .query_opt("SELECT user_name FROM tokens WHERE hash = $1", &[&hash])
            .await?;
        row.map(|r| r.try_get(0).map_err(pg)).transpose()
    }

    async fn insert_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        let derived = CallColumns::of(c);
        let inserted = self.execute(INSERT_CALL, &derived.insert_params(c)).await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("call {}", c.id)));
        }
        Ok(())
    }

    async fn insert_call_capped(
        &self,
        c: &CallRecord,
        per_user: usize,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // One user's admissions queue behind each other on every node; other users' do not.
        tx.execute(
            "SELECT pg_advisory_xact_lock(7304, hashtext($1))",
            &[&c.owner],
        )
        .await
        .map_err(pg)?;
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM calls WHERE owner = $1 AND state <> 'Disconnected'",
                &[&c.owner],
            )
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        if usize::try_from(live).unwrap_or(usize::MAX) >= per_user {
            tx.rollback().await.map_err(pg)?;
            return Ok(false);
        }
        let derived = CallColumns::of(c);
        let inserted = tx
            .execute(INSERT_CALL, &derived.insert_params(c))
            .await
            .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("call {}", c.id)));
        }
        Ok(true)
    }

    async fn update_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        let code = c.sip_code.map(i32::from);
        // A call another node closed (its owner was declared dead) is never changed again: the
        // owner, back, must not resurrect it. Nor is an ended call written back to a live
        // state (a write that timed out may land after a newer one; see registry/writer.rs).
        self.execute(
            "UPDATE calls SET state = $2, cause = $3, sip_code = $4, sip_text = $5,
                              ended_at = $6
             WHERE id = $1 AND closed_by IS NULL
               AND (state <> 'Disconnected' OR $2 = 'Disconnected')",
            &[
                &c.id,
                &c.state.as_str(),
                &c.cause.as_str(),
                &code,
                &c.sip_text,
                &c.ended_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let row = self
            .query_opt("SELECT * FROM calls WHERE id = $1", &[&id])
            .await?;
        row.as_ref().map(to_call).transpose()
    }

    async fn close_orphaned_calls(
        &self,
        node: &str,
        now: UnixSeconds,
    ) -> Result<usize, StoreError> {
        let n = self
            .execute(
                "UPDATE calls SET state = 'Disconnected', cause = 'Other', ended_at = $2
                 WHERE node = $1 AND state <> 'Disconnected'",
                &[&node, &now],
            )
            .await?;
        // A row count fits in usize on every 64-bit target openum supports.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
        let row = self
            .query_opt("SELECT * FROM voicemail_items WHERE id = $1", &[&id])
            .await?;
        row.as_ref().map(to_item).transpose()
    }

    async fn insert_voicemail_item(&self, i: &VoicemailItem) -> Result<(), StoreError> {
        self.execute(INSERT_ITEM, &item_params(i)).await?;
        Ok(())
    }

    async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError> {
        let rows = self
            .query(
                "SELECT * FROM voicemail_items WHERE owner = $1 ORDER BY created_at DESC, id",
                &[&owner],
            )
            .await?;
        rows.iter().map(to_item).collect()
    }

    async fn request_hangup(&self, node: &str, call_id: &str) -> Result<(), StoreError> {
        // Subscribed before asking, so the confirmation cannot slip past.
        let mut confirmations = self.shared.done.subscribe();
        {
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute(
                "INSERT INTO hangup_requests (call_id, node) VALUES ($1, $2)
                 ON CONFLICT (call_id) DO UPDATE SET node = excluded.node, requested_at = now()",
                &[&call_id, &node],
            )
            .await
            .map_err(pg)?;
            // Delivered at commit, with the row.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{node} {call_id}")],
            )
            .await
            .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
        }
        let deadline = tokio::time::sleep(self.hangup_wait);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                confirmation = confirmations.recv() => match confirmation {
                    Ok(id) if id == call_id => return Ok(()),
                    Ok(_) => {}
                    // Confirmations were missed: the call record says whether this one came.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if self.call(call_id).await?.is_some_and(|r| r.is_finished()) {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = &mut deadline => break,
            }
        }
        // No confirmation (this node's LISTEN may be down, or the owner's): the record decides.
        if self.call(call_id).await?.is_some_and(|r| r.is_finished()) {
            return Ok(());
        }
        Err(StoreError::Backend(
            format!(
                "node {node} did not confirm the hang-up of call {call_id} within {} s; the request stays recorded and that node acts on it when it reaches the database",
                self.hangup_wait.as_secs()
            )
            .into(),
        ))
    }

    fn hangup_requests(&self, node: &str) -> Option<broadcast::Receiver<HangupRequest>> {
        let receiver = self.shared.hangups.subscribe();
        if self.shared.node.set(node.to_owned()).is_err()
            && self.shared.node.get().is_some_and(|n| n != node)
        {
            tracing::error!(
                node,
                "hang-up requests asked for a second node name on one store; only the first is served"
            );
        }
        self.shared.node_set.notify_one();
        Some(receiver)
    }

    async fn hangup_done(&self, call_id: &str) -> Result<(), StoreError> {
        self.execute("SELECT pg_notify($1, $2)", &[&DONE_CHANNEL, &call_id])
            .await?;
        Ok(())
    }

    fn multi_node(&self) -> bool {
        true
    }

    fn unready_reason(&self) -> Option<String> {
        lock(&self.shared.listen_down)
            .as_ref()
            .map(|why| format!("not listening for cross-node hang-ups: {why}"))
    }

    async fn heartbeat(&self, node: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO nodes (name, heartbeat_at) VALUES ($1, now())
             ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()",
            &[&node],
        )
        .await?;
        Ok(())
    }

    async fn close_calls_of_dead_nodes(
        &self,
        me: &str,
        dead_after: Duration,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // One statement: a row another node closed first no longer matches `state <>
        // 'Disconnected'` once its lock is released, so each call is closed exactly once.
        let rows = self
            .query(
                "UPDATE calls SET state = 'Disconnected', cause = 'Other',
                                  ended_at = extract(epoch FROM now())::BIGINT, closed_by = $1
                 WHERE state <> 'Disconnected' AND node <> $1
                   AND node IN (SELECT name FROM nodes
                                WHERE heartbeat_at < now() - make_interval(secs => $2))
                 RETURNING id, node",
                &[&me, &dead_after.as_secs_f64()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0).map_err(pg)?, r.try_get(1).map_err(pg)?)))
            .collect()
    }

    fn shares_audio(&self) -> bool {
        true
    }

    async fn insert_voicemail_item_with_audio(
        &self,
        i: &VoicemailItem,
        audio: &[u8],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute(INSERT_ITEM, &item_params(i)).await.map_err(pg)?;
        insert_audio(&tx, &i.id, audio).await?;
        tx.commit().await.map_err(pg)
    }

    async fn voicemail_audio(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let rows = self
            .query(
                "SELECT data FROM voicemail_audio WHERE item_id = $1 ORDER BY seq",
                &[&id],
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut audio = Vec::new();
        for row in rows {
            let chunk: &[u8] = row.try_get(0).map_err(pg)?;
            audio.extend_from_slice(chunk);
        }
        Ok(Some(audio))
    }

    async fn adopt_voicemail_audio(&self, id: &str, audio: &[u8]) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        // Locks the item's row: two nodes migrating the same item at once store it once.
        let item = tx
            .query_opt(
                "SELECT 1 FROM voicemail_items WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(pg)?;
        let stored = tx
            .query_opt(
                "SELECT 1 FROM voicemail_audio WHERE item_id = $1 LIMIT 1",
                &[&id],
            )
            .await
            .map_err(pg)?;
        if item.is_none() || stored.is_some() {
            tx.rollback().await.map_err(pg)?;
            return Ok(false);
        }
        insert_audio(&tx, id, audio).await?;
        tx.commit().await.map_err(pg)?;
        Ok(true)
    }

    async fn closed_by_peers(&self, node: &str, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .query(
                "SELECT id FROM calls WHERE node = $1 AND closed_by IS NOT NULL
                   AND closed_by <> $1 AND id = ANY($2)",
                &[&node, &ids],
            )
            .await?;
        rows.iter().map(|r| r.try_get(0).map_err(pg)).collect()
    }

    fn history(&self) -> Option<&dyn super::History> {
        Some(self)
    }

    async fn credential(&self, name: &str) -> Result<Option<Credential>, StoreError> {
        let row = self
            .query_opt(
                "SELECT name, password_hash, generation, disabled FROM users WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| {
            Ok(Credential {
                name: r.try_get(0).map_err(pg)?,
                password_hash: r.try_get(1).map_err(pg)?,
                generation: r.try_get(2).map_err(pg)?,
                disabled: r.try_get(3).map_err(pg)?,
            })
        })
        .transpose()
    }

    async fn credential_state(&self, name: &str) -> Result<Option<CredentialState>, StoreError> {
        let row = self
            .query_opt(
                "SELECT generation, disabled FROM users WHERE name = $1",
                &[&name],
            )
            .await?;
        row.map(|r| {
            Ok(CredentialState {
                generation: r.try_get(0).map_err(pg)?,
                disabled: r.try_get(1).map_err(pg)?,
            })
        })
        .transpose()
    }

    async fn credential_epoch(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.shared.credentials.current())
    }

    async fn token_credential(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenCredential>, StoreError> {
        let row = self
            .query_opt(
                "SELECT u.name, u.generation, u.disabled
                 FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = $1",
                &[&token_hash],
            )
            .await?;
        row.map(|r| {
            Ok(TokenCredential {
                user: r.try_get(0).map_err(pg)?,
                generation: r.try_get(1).map_err(pg)?,
                disabled: r.try_get(2).map_err(pg)?,
            })
        })
        .transpose()
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        let n = self
            .execute(
                "UPDATE users SET password_hash = $2, generation = generation + 1 WHERE name = $1",
                &[&name, &password_hash],
            )
            .await?;
        Ok(n == 1)
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        let n = self
            .execute(
                "UPDATE users SET disabled = $2, generation = generation + 1 WHERE name = $1",
                &[&name, &disabled],
            )
            .await?;
        Ok(n == 1)
    }

    async fn delete_user(&self, name: &str) -> Result<Option<DeletedUser>, StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        // One statement: every part sees the same snapshot, so the items and the token count
        // returned are exactly what the cascade removed. Each row carries the counts; with no
        // item, the LEFT JOIN gives one row of NULL item columns.
        let rows = self
            .query(
                "WITH gone AS (DELETE FROM users WHERE name = $1 RETURNING name)
                 SELECT (SELECT count(*) FROM gone) AS deleted,
                        (SELECT count(*) FROM tokens WHERE user_name = $1) AS tokens,
                        v.id, v.owner, v.has_audio, v.from_text, v.subject, v.duration_ms,
                        v.created_at
                 FROM (SELECT 1) AS one
                 LEFT JOIN voicemail_items v ON v.owner = $1
                 ORDER BY v.created_at DESC, v.id",
                &[&name],
            )
            .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let deleted: i64 = first.try_get("deleted").map_err(pg)?;
        if deleted == 0 {
            return Ok(None);
        }
        let tokens: i64 = first.try_get("tokens").map_err(pg)?;
        let mut items = Vec::new();
        for r in &rows {
            let id: Option<String> = r.try_get("id").map_err(pg)?;
            if id.is_some() {
                items.push(to_item(r)?);
            }
        }
        Ok(Some(DeletedUser {
            tokens: u64::try_from(tokens).unwrap_or_default(),
            voicemail_items: items,
        }))
    }

    async fn users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let rows = self
            .query(
                "SELECT u.name, u.play_on_phone, u.disabled,
                        (SELECT count(*) FROM tokens t WHERE t.user_name = u.name),
                        (SELECT count(*) FROM voicemail_items v WHERE v.owner = u.name)
                 FROM users u ORDER BY u.name",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UserSummary {
                    name: r.try_get(0).map_err(pg)?,
                    play_on_phone: r.try_get(1).map_err(pg)?,
                    disabled: r.try_get(2).map_err(pg)?,
                    tokens: r.try_get(3).map_err(pg)?,
                    voicemail_items: r.try_get(4).map_err(pg)?,
                })
            })
            .collect()
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self
            .query(
                &format!(
                    "SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at
                     FROM tokens WHERE $1::TEXT IS NULL OR user_name = $1
                     ORDER BY user_name, created_at, hash"
                ),
                &[&user],
            )
            .await?;
        rows.iter().map(to_token).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>, StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        // Revoked only when the id names exactly one token; the users' generations are bumped
        // in the same statement.
        let rows = self
            .query(
                &format!(
                    "WITH matching AS (SELECT hash FROM tokens
                                       WHERE substr(hash, 1, {TOKEN_ID_LEN}) = $1),
                          gone AS (DELETE FROM tokens
                                   WHERE hash IN (SELECT hash FROM matching)
                                     AND (SELECT count(*) FROM matching) = 1
                                   RETURNING hash, user_name, label, created_at),
                          bumped AS (UPDATE users SET generation = generation + 1
                                     WHERE name IN (SELECT user_name FROM gone))
                     SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at,
                            (SELECT count(*) FROM matching) AS matching
                     FROM gone"
                ),
                &[&id],
            )
            .await?;
        if let Some(row) = rows.first() {
            return to_token(row).map(Some);
        }
        let matching: i64 = self
            .query_one(
                &format!("SELECT count(*) FROM tokens WHERE substr(hash, 1, {TOKEN_ID_LEN}) = $1"),
                &[&id],
            )
            .await?
            .try_get(0)
            .map_err(pg)?;
        if matching > 1 {
            return Err(StoreError::Conflict(format!(
                "{matching} tokens with id {id:?} (none was revoked)"
            )));
        }
        Ok(None)
    }

    async fn revoke_tokens_labelled(&self, label: &str) -> Result<Vec<TokenInfo>, StoreError> {
        // Counts on this node at once (other nodes hear the trigger's NOTIFY).
        let _changed = self.shared.credentials.bump_on_drop();
        let rows = self
            .query(
                &format!(
                    "WITH gone AS (DELETE FROM tokens WHERE label = $1
                                   RETURNING hash, user_name, label, created_at),
                          bumped AS (UPDATE users SET generation = generation + 1
                                     WHERE name IN (SELECT user_name FROM gone))
                     SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at
                     FROM gone ORDER BY user_name, created_at, hash"
                ),
                &[&label],
            )
            .await?;
        rows.iter().map(to_token).collect()
    }
}

/// The one INSERT of a voice-mail item record (with or without its audio).
const INSERT_ITEM: &str = "INSERT INTO voicemail_items (id, owner, has_audio, from_text, subject,
                                                     duration_ms, created_at)
                           VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// [`INSERT_ITEM`]'s parameters.
fn item_params(i: &VoicemailItem) -> [&(dyn ToSql + Sync); 7] {
    [
        &i.id,
        &i.owner,
        &i.has_audio,
        &i.from,
        &i.subject,
        &i.duration_ms,
        &i.created_at,
    ]
}

fn to_token(r: &Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: r.try_get(0).map_err(pg)?,
        user: r.try_get(1).map_err(pg)?,
        label: r.try_get(2).map_err(pg)?,
        created_at: r.try_get(3).map_err(pg)?,
    })
}

async fn insert_audio(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    audio: &[u8],
) -> Result<(), StoreError> {
    let statement = tx
        .prepare("INSERT INTO voicemail_audio (item_id, seq, data) VALUES ($1, $2, $3)")
        .await
        .map_err(pg)?;
    for (seq, chunk) in audio.chunks(AUDIO_CHUNK).enumerate() {
        let seq = i32::try_from(seq).map_err(|e| StoreError::Backend(Box::new(e)))?;
        tx.execute(&statement, &[&id, &seq, &chunk])
            .await
            .map_err(pg)?;
    }
    Ok(())
}

const INSERT_CALL: &str =
    "INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled, item_id,
                        created_at, ended_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (id) DO NOTHING";

/// A call's columns that are not fields of its record as they are.
struct CallColumns {
    state: &'static str,
    cause: &'static str,
    sip_code: Option<i32>,
}

impl CallColumns {
    fn of(c: &CallRecord) -> Self {
        Self {
            state: c.state.as_str(),
            cause: c.cause.as_str(),
            sip_code: c.sip_code.map(i32::from),
        }
    }

    /// [`INSERT_CALL`]'s parameters for `c`.
    fn insert_params<'a>(&'a self, c: &'a CallRecord) -> [&'a (dyn ToSql + Sync); 11] {
        [
            &c.id,
            &c.owner,
            &c.node,
            &self.state,
            &self.cause,
            &self.sip_code,
            &c.sip_text,
            &c.dialled,
            &c.item_id,
            &c.created_at,
            &c.ended_at,
        ]
    }
}
