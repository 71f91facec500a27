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

use calls::{CallRecord, UnixSeconds};

use super::{
    CallRow, Credential, CredentialState, DeletedUser, HangupRequest, Store, StoreError,
    TokenCredential, TokenInfo, User, UserSummary, VoicemailItem, TOKEN_ID_LEN,
};

mod history;

const CHANNEL: &str = "openum_hangup";

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
];

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
                        match n.payload().split_once(' ') {
                            Some((node, id)) => {
                                // No receiver means nothing on this node listens for hang-ups
                                // (a CLI command, not `serve`): there is no one to deliver to.
                                let _ = sender.send(HangupRequest {
                                    node: node.to_owned(),
                                    call_id: id.to_owned(),
                                });
                            }
                            None => tracing::warn!(
                                payload = n.payload(),
                                "malformed hang-up notification ignored"
                            ),
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
        self.client
            .execute(
                "INSERT INTO users (name, password_hash, play_on_phone) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash,
                                                  play_on_phone = excluded.play_on_phone,
                                                  generation = users.generation + 1",
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
        row.map(|r| r.try_get(0).map_err(pg)).transpose()
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
        row.as_ref().map(to_call).transpose()
    }

    async fn close_orphaned_calls(
        &self,
        node: &str,
        now: UnixSeconds,
    ) -> Result<usize, StoreError> {
        let n = self
            .client
            .execute(
                "UPDATE calls SET state = 'Disconnected', cause = 'Other', ended_at = $2
                 WHERE node = $1 AND state <> 'Disconnected'",
                &[&node, &now],
            )
            .await
            .map_err(pg)?;
        // A row count fits in usize on every 64-bit target openum supports.
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn voicemail_item(&self, id: &str) -> Result<Option<VoicemailItem>, StoreError> {
        let row = self
            .client
            .query_opt("SELECT * FROM voicemail_items WHERE id = $1", &[&id])
            .await
            .map_err(pg)?;
        row.as_ref().map(to_item).transpose()
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
        rows.iter().map(to_item).collect()
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

    fn history(&self) -> Option<&dyn super::History> {
        Some(self)
    }

    async fn credential(&self, name: &str) -> Result<Option<Credential>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT name, password_hash, generation, disabled FROM users WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
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
            .client
            .query_opt(
                "SELECT generation, disabled FROM users WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(pg)?;
        row.map(|r| {
            Ok(CredentialState {
                generation: r.try_get(0).map_err(pg)?,
                disabled: r.try_get(1).map_err(pg)?,
            })
        })
        .transpose()
    }

    async fn token_credential(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenCredential>, StoreError> {
        let row = self
            .client
            .query_opt(
                "SELECT u.name, u.generation, u.disabled
                 FROM tokens t JOIN users u ON u.name = t.user_name WHERE t.hash = $1",
                &[&token_hash],
            )
            .await
            .map_err(pg)?;
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
        let n = self
            .client
            .execute(
                "UPDATE users SET password_hash = $2, generation = generation + 1 WHERE name = $1",
                &[&name, &password_hash],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<bool, StoreError> {
        let n = self
            .client
            .execute(
                "UPDATE users SET disabled = $2, generation = generation + 1 WHERE name = $1",
                &[&name, &disabled],
            )
            .await
            .map_err(pg)?;
        Ok(n == 1)
    }

    async fn delete_user(&self, name: &str) -> Result<Option<DeletedUser>, StoreError> {
        // One statement: every part sees the same snapshot, so the items and the token count
        // returned are exactly what the cascade removed. Each row carries the counts; with no
        // item, the LEFT JOIN gives one row of NULL item columns.
        let rows = self
            .client
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
            .await
            .map_err(pg)?;
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
            .client
            .query(
                "SELECT u.name, u.play_on_phone, u.disabled,
                        (SELECT count(*) FROM tokens t WHERE t.user_name = u.name),
                        (SELECT count(*) FROM voicemail_items v WHERE v.owner = u.name)
                 FROM users u ORDER BY u.name",
                &[],
            )
            .await
            .map_err(pg)?;
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
            .client
            .query(
                &format!(
                    "SELECT substr(hash, 1, {TOKEN_ID_LEN}), user_name, label, created_at
                     FROM tokens WHERE $1::TEXT IS NULL OR user_name = $1
                     ORDER BY user_name, created_at, hash"
                ),
                &[&user],
            )
            .await
            .map_err(pg)?;
        rows.iter().map(to_token).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<Option<TokenInfo>, StoreError> {
        // Revoked only when the id names exactly one token; the users' generations are bumped
        // in the same statement.
        let rows = self
            .client
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
            .await
            .map_err(pg)?;
        if let Some(row) = rows.first() {
            return to_token(row).map(Some);
        }
        let matching: i64 = self
            .client
            .query_one(
                &format!("SELECT count(*) FROM tokens WHERE substr(hash, 1, {TOKEN_ID_LEN}) = $1"),
                &[&id],
            )
            .await
            .map_err(pg)?
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
        let rows = self
            .client
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
            .await
            .map_err(pg)?;
        rows.iter().map(to_token).collect()
    }
}

fn to_token(r: &Row) -> Result<TokenInfo, StoreError> {
    Ok(TokenInfo {
        id: r.try_get(0).map_err(pg)?,
        user: r.try_get(1).map_err(pg)?,
        label: r.try_get(2).map_err(pg)?,
        created_at: r.try_get(3).map_err(pg)?,
    })
}
