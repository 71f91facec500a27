//! The administration commands: users, API tokens, voice-mail items, configuration check. They
//! work on the store the service uses, found the same way (`--config`, `--data-dir`).

use std::io::{IsTerminal as _, Read as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use server::config::Config;
use server::store::User;

/// `openum user add`.
pub(crate) async fn user_add(
    config: &Config,
    name: &str,
    password_stdin: bool,
    disable_play_on_phone: bool,
) -> anyhow::Result<ExitCode> {
    let password = match read_password(name, password_stdin)? {
        Ok(password) => password,
        Err(problem) => {
            eprintln!("openum: {problem}");
            return Ok(ExitCode::from(2));
        }
    };
    if password.is_empty() {
        eprintln!("openum: the password is empty");
        return Ok(ExitCode::from(2));
    }
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        eprintln!("openum: a user name must be non-empty and contain no ':' or control characters");
        return Ok(ExitCode::from(2));
    }
    let store = crate::ops::open_store(config).await?;
    let hash = server::auth::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    // An existing user gets only a new password (Play on Phone, enabled state and tokens are
    // kept; the old password is refused at once everywhere) unless a setting is asked for.
    if !disable_play_on_phone && store.set_password(name, &hash).await? {
        eprintln!("password of user {name} changed");
        return Ok(ExitCode::SUCCESS);
    }
    store
        .upsert_user(User {
            name: name.to_owned(),
            password_hash: hash,
            play_on_phone: !disable_play_on_phone,
        })
        .await?;
    eprintln!("user {name} saved");
    Ok(ExitCode::SUCCESS)
}

/// `openum token create`.
pub(crate) async fn token_create(
    config: &Config,
    name: &str,
    label: &str,
) -> anyhow::Result<ExitCode> {
    let store = crate::ops::open_store(config).await?;
    if store.user(name).await?.is_none() {
        eprintln!("openum: no user named {name:?} (add it with `openum user add`)");
        return Ok(ExitCode::from(2));
    }
    let (token, hash) = server::auth::new_token();
    store.insert_token(name, &hash, label).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// `openum voicemail import`.
pub(crate) async fn voicemail_import(
    config: &Config,
    user: &str,
    file: &Path,
    from: &str,
    subject: &str,
) -> anyhow::Result<ExitCode> {
    let store = crate::ops::open_store(config).await?;
    match server::voicemail::import(
        store.as_ref(),
        &config.server.data_dir,
        user,
        file,
        from,
        subject,
    )
    .await
    {
        Ok(id) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("openum: {error}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `openum voicemail list`.
pub(crate) async fn voicemail_list(config: &Config, user: &str) -> anyhow::Result<ExitCode> {
    let store = crate::ops::open_store(config).await?;
    for item in store.voicemail_items(user).await? {
        println!(
            "{}\t{:.1}s\t{}\t{}",
            item.id,
            item.duration_ms as f64 / 1000.0,
            item.from,
            item.subject
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `openum voicemail play-test`: exit 0 when the item would play; 2 without `[mailbox]`; 4 when
/// the mailbox server refuses the credentials; 3 when it answers with an error about the item or
/// the audio cannot be decoded; 1 when it cannot be reached.
pub(crate) async fn voicemail_play_test(
    config: &Config,
    authorization: &str,
    item: &str,
) -> ExitCode {
    use server::mailbox::{FetchError, MailboxService, PlayTestError};
    let Some(mailbox) = &config.mailbox else {
        eprintln!("openum: the configuration has no [mailbox] section (mailbox.ews_url)");
        return ExitCode::from(2);
    };
    let service = match MailboxService::new(mailbox) {
        Ok(service) => service,
        Err(error) => {
            eprintln!("openum: [mailbox]: {}", calls::error_chain(&error));
            return ExitCode::from(2);
        }
    };
    match service.play_test(authorization, item).await {
        Ok(report) => {
            let [login, get_item, download, decode] = report.timings.map(|t| t.as_millis());
            let m = &report.message;
            println!("mailbox    {} ({})", mailbox.ews_url, report.owner);
            println!(
                "item       {} {:?}",
                m.item_class,
                m.subject.as_deref().unwrap_or_default()
            );
            println!(
                "attachment {:?} {} {} bytes",
                m.audio.name,
                m.audio
                    .content_type
                    .as_deref()
                    .unwrap_or("(no content type)"),
                report.attachment_bytes
            );
            println!("audio      {:.1} s at 8 kHz", report.seconds);
            println!(
                "timings    login {login} ms, GetItem {get_item} ms, GetAttachment {download} ms, decode {decode} ms"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("openum: {}", calls::error_chain(&error));
            match error {
                PlayTestError::Refused => ExitCode::from(4),
                PlayTestError::Fetch(FetchError::Mailbox(
                    mailbox_client::MailboxError::Unavailable(_)
                    | mailbox_client::MailboxError::BadResponse(_),
                )) => ExitCode::FAILURE,
                PlayTestError::Fetch(_) => ExitCode::from(3),
            }
        }
    }
}

/// `openum config check` (the file was loaded and validated before the command ran): also
/// what `serve` checks at start — plain HTTP on a public address, and the TLS certificate and
/// key (readable, and the key fits the certificate).
pub(crate) fn config_check(config: &Config, path: Option<&Path>) -> ExitCode {
    if let Some(refusal) = plain_http_refused(config, config.server.listen, path) {
        eprintln!("openum: {refusal}");
        return ExitCode::from(2);
    }
    let mut tls = String::new();
    if let Some((cert, key)) = config.server.tls_files() {
        match server::tls::load(cert, key) {
            Ok(loaded) => {
                tls = format!(
                    " (TLS: {} certificate(s), leaf sha256 {}, key fits)",
                    loaded.chain_len, loaded.fingerprint
                );
            }
            Err(error) => {
                let file =
                    path.map_or_else(String::new, |p| format!("config file {}: ", p.display()));
                eprintln!("openum: {file}{}", calls::error_chain(&error));
                return ExitCode::from(2);
            }
        }
    }
    match path {
        Some(path) => println!("{}: ok{tls}", path.display()),
        None => println!("no --config given: the embedded defaults apply{tls}"),
    }
    ExitCode::SUCCESS
}

/// Why `serve` on `listen` must not start on plain HTTP (naming `server.allow_plain_http` and
/// the file), if it must not.
pub(crate) fn plain_http_refused(
    config: &Config,
    listen: std::net::SocketAddr,
    path: Option<&Path>,
) -> Option<String> {
    let problem = config.server.check_plain_http(listen).err()?;
    Some(match path {
        Some(path) => server::config::ConfigError::Invalid {
            path: path.to_owned(),
            problem: problem.into(),
        }
        .to_string(),
        None => format!("{problem} (no --config file given: set it in one)"),
    })
}

/// The password of `user add`: one line of standard input with `--password-stdin`; else asked
/// twice on the terminal without echo (rpassword). `Ok(Err(problem))` is a usage error: no
/// terminal to ask on, or two different answers.
fn read_password(name: &str, from_stdin: bool) -> anyhow::Result<Result<String, String>> {
    if from_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the password from standard input")?;
        return Ok(Ok(input.lines().next().unwrap_or_default().to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(Err(
            "standard input is not a terminal, so there is no one to ask for the \
                       password: pass --password-stdin and write it to standard input"
                .to_owned(),
        ));
    }
    let first = rpassword::prompt_password(format!("Password for {name}: "))
        .context("cannot read the password from the terminal")?;
    let second = rpassword::prompt_password("The same password again: ")
        .context("cannot read the password from the terminal")?;
    if first != second {
        return Ok(Err("the two passwords differ; nothing was saved".to_owned()));
    }
    Ok(Ok(first))
}
