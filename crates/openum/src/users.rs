//! `openum user list|disable|enable|delete` and `openum token list|revoke`: account
//! administration on the store the service uses (found as `serve` finds it: `--config`,
//! `--data-dir`, `OPENUM_POSTGRES_URL`).
//!
//! Every change bumps the user's credential generation in the store, so it takes effect at once
//! in every `openum serve` sharing that store (see `server::auth`). Exit codes: 0 done; 2 no
//! such user or token (or a bad argument); 1 the store failed.

use std::process::ExitCode;

use server::config::Config;
use server::store::{TokenInfo, UserSummary};

/// `openum user list`.
pub(crate) async fn user_list(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = server::open_store(config).await?;
    let users = store.users().await?;
    if json {
        println!("{}", serde_json::to_string(&users)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", user_table(&users));
    Ok(ExitCode::SUCCESS)
}

fn user_table(users: &[UserSummary]) -> String {
    let width = users.iter().map(|u| u.name.len()).max().unwrap_or(0).max(4);
    let mut out = format!(
        "{:<width$}  {:<8}  {:<13}  {:>6}  {:>10}\n",
        "NAME", "STATUS", "PLAY_ON_PHONE", "TOKENS", "VOICEMAILS"
    );
    for u in users {
        out += &format!(
            "{:<width$}  {:<8}  {:<13}  {:>6}  {:>10}\n",
            u.name,
            if u.disabled { "disabled" } else { "enabled" },
            if u.play_on_phone { "yes" } else { "no" },
            u.tokens,
            u.voicemail_items
        );
    }
    out
}

/// `openum user disable` / `openum user enable`.
pub(crate) async fn user_set_disabled(
    config: &Config,
    name: &str,
    disabled: bool,
) -> anyhow::Result<ExitCode> {
    let store = server::open_store(config).await?;
    if !store.set_user_disabled(name, disabled).await? {
        eprintln!("openum: no user named {name:?}");
        return Ok(ExitCode::from(2));
    }
    if disabled {
        eprintln!(
            "user {name} disabled: its password and tokens are refused (HTTP 401) from now on, by every server on this store; calls already placed go on"
        );
    } else {
        eprintln!("user {name} enabled");
    }
    Ok(ExitCode::SUCCESS)
}

/// `openum user delete`: the user, its API tokens and its imported voice-mail items (records and
/// audio files) go; its call history stays until `[ews]` retention purges it.
pub(crate) async fn user_delete(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let store = server::open_store(config).await?;
    let Some(deleted) = store.delete_user(name).await? else {
        eprintln!("openum: no user named {name:?}");
        return Ok(ExitCode::from(2));
    };
    let mut kept = 0usize;
    for item in &deleted.voicemail_items {
        // Items without stored audio, or with an id that names no file, have nothing to remove.
        let Ok(uuid) = server::voicemail::parse_item_id(&item.id) else {
            continue;
        };
        let path = server::voicemail::audio_path(&config.server.data_dir, uuid);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                kept += 1;
                eprintln!(
                    "openum: cannot remove the audio file {} of item {}: {error}",
                    path.display(),
                    item.id
                );
            }
        }
    }
    eprintln!(
        "user {name} deleted with {} API token(s) and {} voice-mail item(s); its call history is kept until [ews] retention removes it",
        deleted.tokens,
        deleted.voicemail_items.len()
    );
    if kept > 0 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `openum token list`.
pub(crate) async fn token_list(
    config: &Config,
    user: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = server::open_store(config).await?;
    if let Some(name) = user {
        if store.credential_state(name).await?.is_none() {
            eprintln!("openum: no user named {name:?}");
            return Ok(ExitCode::from(2));
        }
    }
    let tokens = store.tokens(user).await?;
    if json {
        println!("{}", serde_json::to_string(&tokens)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", token_table(&tokens));
    Ok(ExitCode::SUCCESS)
}

fn token_table(tokens: &[TokenInfo]) -> String {
    let user_width = tokens
        .iter()
        .map(|t| t.user.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let id_width = server::store::TOKEN_ID_LEN;
    let mut out = format!(
        "{:<id_width$}  {:<user_width$}  {:<29}  LABEL\n",
        "ID", "USER", "CREATED"
    );
    for t in tokens {
        out += &format!(
            "{:<id_width$}  {:<user_width$}  {:<29}  {}\n",
            t.id,
            t.user,
            created(t.created_at),
            t.label
        );
    }
    out
}

/// A Unix time as an HTTP date (UTC), e.g. `Sun, 29 Nov 2026 12:00:00 GMT`.
fn created(at: calls::UnixSeconds) -> String {
    let seconds = u64::try_from(at).unwrap_or_default();
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
}

/// `openum token revoke ID` / `openum token revoke --label L`.
pub(crate) async fn token_revoke(
    config: &Config,
    id: Option<&str>,
    label: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let store = server::open_store(config).await?;
    let revoked = match (id, label) {
        (Some(id), None) => match store.revoke_token(id).await {
            Ok(found) => found.into_iter().collect::<Vec<_>>(),
            Err(server::store::StoreError::Conflict(what)) => {
                eprintln!("openum: {what}; revoke by --label, or give the id in full");
                return Ok(ExitCode::from(2));
            }
            Err(error) => return Err(error.into()),
        },
        (None, Some(label)) if !label.is_empty() => store.revoke_tokens_labelled(label).await?,
        (None, Some(_)) => {
            eprintln!("openum: --label must not be empty");
            return Ok(ExitCode::from(2));
        }
        // clap requires exactly one of them.
        _ => {
            eprintln!("openum: give a token id or --label");
            return Ok(ExitCode::from(2));
        }
    };
    if revoked.is_empty() {
        match (id, label) {
            (Some(id), _) => eprintln!("openum: no token with id {id:?} (see `openum token list`)"),
            (_, label) => eprintln!(
                "openum: no token labelled {:?} (see `openum token list`)",
                label.unwrap_or_default()
            ),
        }
        return Ok(ExitCode::from(2));
    }
    for t in &revoked {
        eprintln!(
            "token {} ({}, label {:?}) revoked: refused from now on by every server on this store",
            t.id, t.user, t.label
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_line_up_and_show_no_secret() {
        let users = user_table(&[UserSummary {
            name: "alice".into(),
            play_on_phone: true,
            disabled: true,
            tokens: 2,
            voicemail_items: 1,
        }]);
        assert_eq!(
            users.lines().nth(1).unwrap(),
            "alice  disabled  yes                 2           1"
        );
        let tokens = token_table(&[TokenInfo {
            id: "0123456789abcdef".into(),
            user: "alice".into(),
            label: "laptop".into(),
            created_at: 1_764_417_600,
        }]);
        assert_eq!(
            tokens.lines().nth(1).unwrap(),
            "0123456789abcdef  alice  Sat, 29 Nov 2025 12:00:00 GMT  laptop"
        );
    }
}
