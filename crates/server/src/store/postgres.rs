//! The PostgreSQL store, for several openum nodes sharing one database.
//!
//! One `tokio_postgres` connection (it pipelines concurrent queries) for queries, and the same
//! connection's notification stream for cross-node hang-up requests: a node that receives
//! `DisconnectPhoneCall` for a call another node owns sends `NOTIFY openum_hangup, '<node> <id>'`,
//! and the owner, which `LISTEN`s, ends the call (decisions §12, style.md "Multi-node note").

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row};

use super::{HangupRequest, Store, StoreError, User, VoicemailItem};
use crate::calls::{CallRecord, CallState, FailureCause};

const CHANNEL: &str = "openum_hangup";

const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// A PostgreSQL-backed store.
#[derive(Clone)]
pub struct PostgresStore {
    client: Arc<Client>,
    hangups: broadcast::Sender<HangupRequest>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`), applies migrations and starts
    /// listening for cross-node hang-up requests.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.map_err(pg)?;
        let (hangups, _) = broadcast::channel(1024);
        let sender = hangups.clone();
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                        if let Some((node, id)) = n.payload().split_once(' ') {
                            let _ = sender.send(HangupRequest {
                                node: node.to_owned(),
                                call_id: id.to_owned(),
                            });
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "PostgreSQL connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        // Migrations run once per version, serialised across nodes by an advisory lock.
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
            .and_then(|r| r.get::<_, Option<i32>>(0))
            .unwrap_or(0);
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
            .batch_execute(&format!(
                "SELECT pg_advisory_unlock(7303); LISTEN {CHANNEL};"
            ))
            .await
            .map_err(pg)?;
        Ok(Self {
            client: Arc::new(client),
            hangups,
        })
    }
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(e.to_string());
    }
    StoreError::Backend(Box::new(e))
}

fn to_call(r: &Row) -> CallRecord {
    let state: String = r.get("state");
    let cause: String = r.get("cause");
    let sip_code: Option<i32> = r.get("sip_code");
    CallRecord {
        id: r.get("id"),
        owner: r.get("owner"),
        node: r.get("node"),
        state: CallState::parse(&state).unwrap_or(CallState::Disconnected),
        cause: FailureCause::parse(&cause).unwrap_or(FailureCause::Other),
        sip_code: sip_code.and_then(|c| u16::try_from(c).ok()),
        sip_text: r.get("sip_text"),
        dialled: r.get("dialled"),
        item_id: r.get("item_id"),
        created_at: r.get("created_at"),
        ended_at: r.get("ended_at"),
    }
}

fn to_item(r: &Row) -> VoicemailItem {
    VoicemailItem {
        id: r.get("id"),
        owner: r.get("owner"),
        has_audio: r.get("has_audio"),
        from: r.get("from_text"),
        subject: r.get("subject"),
        duration_ms: r.get("duration_ms"),
        created_at: r.get("created_at"),
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn upsert_user(&self, user: User) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO users (name, password_hash, play_on_phone) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                                                  play_on_phone = excluded.play_on_phone",
                &[&user.name, &user.password_hash, &user.play_on_phone],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT name, password_hash, play_on_phone FROM users WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        Ok(row.map(|r| User {
            name: r.get(0),
            password_hash: r.get(1),
            play_on_phone: r.get(2),
        }))
    }

    async fn insert_token(&self, user: &str, hash: &str, label: &str) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO tokens (hash, user_name, label, created_at)
                 VALUES ($1, $2, $3, extract(epoch FROM now())::BIGINT)",
                &[&hash, &user, &label],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn token_user(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT user_name FROM tokens WHERE hash = $1", &[&hash])
            .await
            .map_err(pg)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn insert_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        let code = c.sip_code.map(i32::from);
        let inserted = self
            .client
            .execute(
                "INSERT INTO calls (id, owner, node, state, cause, sip_code, sip_text, dialled,
                                    item_id, created_at, ended_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &c.id,
                    &c.owner,
                    &c.node,
                    &c.state.as_str(),
                    &c.cause.as_str(),
                    &code,
                    &c.sip_text,
                    &c.dialled,
                    &c.item_id,
                    &c.created_at,
                    &c.ended_at,
                ],
            )
            .await
            .map_err(pg)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("call {}", c.id)));
        }
        Ok(())
    }

    async fn update_call(&self, c: &CallRecord) -> Result<(), StoreError> {
        let code = c.sip_code.map(i32::from);
        self.client
            .execute(
                "UPDATE calls SET state = $2, cause = $3, sip_code = $4, sip_text = $5,
                                  ended_at = $6
                 WHERE id = $1",
                &[
                    &c.id,
                    &c.state.as_str(),
                    &c.cause.as_str(),
                    &code,
                    &c.sip_text,
                    &c.ended_at,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT * FROM calls WHERE id = $1", &[&id])
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(to_call))
    }

    async fn close_orphaned_calls(&self, node: &str, now: i64) -> Result<usize, StoreError> {
        let n = self
            .client
            .execute(
                "UPDATE calls SET state = 'Disconnected', cause = 'Other', ended_at = $2
                 WHERE node = $1 AND state <> 'Disconnected'",
                &[&node, &now],
            )
            .await
            .map_err(pg)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT * FROM voicemail_items WHERE id = $1", &[&id])
            .await
            .map_err(pg)?;
        Ok(row.as_ref().map(to_item))
    }

    async fn insert_voicemail_item(&self, i: &VoicemailItem) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO voicemail_items (id, owner, has_audio, from_text, subject,
                                              duration_ms, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &i.id,
                    &i.owner,
                    &i.has_audio,
                    &i.from,
                    &i.subject,
                    &i.duration_ms,
                    &i.created_at,
                ],
            )
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn voicemail_items(&self, owner: &str) -> Result<Vec<VoicemailItem>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT * FROM voicemail_items WHERE owner = $1 ORDER BY created_at DESC, id",
                &[&owner],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(to_item).collect())
    }

    async fn request_hangup(&self, node: &str, call_id: &str) -> Result<(), StoreError> {
        let payload = format!("{node} {call_id}");
        self.client
            .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(pg)?;
        Ok(())
    }

    fn hangup_requests(&self) -> Option<broadcast::Receiver<HangupRequest>> {
        Some(self.hangups.subscribe())
    }
}
