//! The call commands: place, show, follow and end calls through any EWS endpoint.

use std::process::ExitCode;

use server::config::Config;

use crate::{watch, Endpoint};

/// `openum call`.
pub(crate) async fn call(
    endpoint: &Endpoint,
    config: &Config,
    item: &str,
    dial: &str,
    wait: bool,
    json: bool,
) -> ExitCode {
    let client = match ews_client(endpoint, config) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let id = match client.play_on_phone(item, dial).await {
        Ok(id) => id,
        Err(error) => return client_failure(&error),
    };
    if json {
        println!("{}", watch::json_call_id(&id));
    } else {
        println!("{id}");
    }
    if wait {
        return watch::follow(&client, &id, json).await;
    }
    ExitCode::SUCCESS
}

/// `openum status`.
pub(crate) async fn status(endpoint: &Endpoint, config: &Config, id: &str, json: bool) -> ExitCode {
    let client = match ews_client(endpoint, config) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.get_phone_call_information(id).await {
        Ok(info) => {
            println!(
                "{}",
                if json {
                    watch::json(&info)
                } else {
                    watch::describe(&info)
                }
            );
            ExitCode::SUCCESS
        }
        Err(error) => client_failure(&error),
    }
}

/// `openum watch`.
pub(crate) async fn watch(endpoint: &Endpoint, config: &Config, id: &str, json: bool) -> ExitCode {
    match ews_client(endpoint, config) {
        Ok(client) => watch::follow(&client, id, json).await,
        Err(code) => code,
    }
}

/// `openum hangup`.
pub(crate) async fn hangup(endpoint: &Endpoint, config: &Config, id: &str, json: bool) -> ExitCode {
    let client = match ews_client(endpoint, config) {
        Ok(client) => client,
        Err(code) => return code,
    };
    match client.disconnect_phone_call(id).await {
        Ok(()) => {
            if json {
                println!("{}", watch::json_hung_up());
            }
            ExitCode::SUCCESS
        }
        Err(error) => client_failure(&error),
    }
}

/// The EWS client for the call commands, or the exit code of a usage error.
fn ews_client(endpoint: &Endpoint, config: &Config) -> Result<client::Client, ExitCode> {
    let url = endpoint
        .url
        .clone()
        .or_else(|| config.client.url.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/EWS/Exchange.asmx".into());
    let Some(auth) = credentials(endpoint, config) else {
        return Err(ExitCode::from(2));
    };
    client::Client::new(url, auth).map_err(|error| {
        eprintln!("openum: {error}");
        ExitCode::FAILURE
    })
}

/// The credentials of the call commands: OPENUM_TOKEN (Bearer), else --user/OPENUM_USER with
/// OPENUM_PASSWORD, else `[client]`; `None` (after saying so) when there are none.
fn credentials(endpoint: &Endpoint, config: &Config) -> Option<client::Auth> {
    let file = &config.client;
    // Unset, empty or not Unicode: the next source (flag, config file, default) decides.
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let token = env("OPENUM_TOKEN").or_else(|| file.token.clone());
    let user = endpoint.user.clone().or_else(|| file.user.clone());
    match (token, user) {
        (Some(token), _) => Some(client::Auth::Bearer(token)),
        (None, Some(user)) => Some(client::Auth::Basic {
            user,
            password: env("OPENUM_PASSWORD")
                .or_else(|| file.password.clone())
                .unwrap_or_default(),
        }),
        (None, None) => {
            eprintln!(
                "openum: give --user (with OPENUM_PASSWORD), set OPENUM_TOKEN, or fill [client] in the config file"
            );
            None
        }
    }
}

/// [`credentials`] as an `Authorization` header value.
pub(crate) fn authorization(endpoint: &Endpoint, config: &Config) -> Option<String> {
    use base64::Engine as _;
    Some(match credentials(endpoint, config)? {
        client::Auth::Bearer(token) => format!("Bearer {token}"),
        client::Auth::Basic { user, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    })
}

/// Prints a client error and picks the documented exit code.
pub(crate) fn client_failure(error: &client::Error) -> ExitCode {
    eprintln!("openum: {error}");
    match error {
        client::Error::Unauthorized => ExitCode::from(4),
        client::Error::Fault(_) | client::Error::Response { .. } => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    }
}
