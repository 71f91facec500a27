//! The call commands: place, show, follow and end calls through any EWS endpoint.

use std::process::ExitCode;
use std::time::Duration;

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
    let report = Report { json };
    let client = match ews_client(endpoint, config, report) {
        Ok(client) => client,
        Err(code) => return code,
    };
    let id = match client.play_on_phone(item, dial).await {
        Ok(id) => id,
        Err(error) => return report.client(&error),
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
    let report = Report { json };
    let client = match ews_client(endpoint, config, report) {
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
        Err(error) => report.client(&error),
    }
}

/// `openum watch`.
pub(crate) async fn watch(endpoint: &Endpoint, config: &Config, id: &str, json: bool) -> ExitCode {
    match ews_client(endpoint, config, Report { json }) {
        Ok(client) => watch::follow(&client, id, json).await,
        Err(code) => code,
    }
}

/// `openum hangup`.
pub(crate) async fn hangup(endpoint: &Endpoint, config: &Config, id: &str, json: bool) -> ExitCode {
    let report = Report { json };
    let client = match ews_client(endpoint, config, report) {
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
        Err(error) => report.client(&error),
    }
}

/// The EWS client for the call commands, or the exit code of a usage error (said on stderr).
fn ews_client(
    endpoint: &Endpoint,
    config: &Config,
    report: Report,
) -> Result<client::Client, ExitCode> {
    let url = endpoint
        .url
        .clone()
        .or_else(|| config.client.url.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/EWS/Exchange.asmx".into());
    let auth = credentials(endpoint, config).map_err(|problem| report.usage(&problem))?;
    let options = client::ClientOptions {
        ca_file: endpoint
            .ca_file
            .clone()
            .or_else(|| config.client.ca_file.clone()),
        timeout: Some(Duration::from_secs(endpoint.timeout)),
    };
    client::Client::with_options(url, auth, &options).map_err(|error| report.client(&error))
}

/// The credentials of the call commands: OPENUM_TOKEN (Bearer), else --user/OPENUM_USER with
/// OPENUM_PASSWORD, else `[client]`; what is missing when there are none.
fn credentials(endpoint: &Endpoint, config: &Config) -> Result<client::Auth, String> {
    let file = &config.client;
    // Unset, empty or not Unicode: the next source (flag, config file, default) decides.
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let token = env("OPENUM_TOKEN").or_else(|| file.token.clone());
    let user = endpoint.user.clone().or_else(|| file.user.clone());
    match (token, user) {
        (Some(token), _) => Ok(client::Auth::Bearer(token)),
        (None, Some(user)) => match env("OPENUM_PASSWORD").or_else(|| file.password.clone()) {
            Some(password) => Ok(client::Auth::Basic { user, password }),
            None => Err(format!(
                "user {user:?} has no password: set OPENUM_PASSWORD (or `password` in [client] \
                 of the config file), or use OPENUM_TOKEN instead"
            )),
        },
        (None, None) => Err("give --user (with OPENUM_PASSWORD), set OPENUM_TOKEN, or fill [client] in the config file".to_owned()),
    }
}

/// [`credentials`] as an `Authorization` header value; `None` after saying what is missing.
pub(crate) fn authorization(endpoint: &Endpoint, config: &Config) -> Option<String> {
    use base64::Engine as _;
    let auth = match credentials(endpoint, config) {
        Ok(auth) => auth,
        Err(problem) => {
            eprintln!("openum: {problem}");
            return None;
        }
    };
    Some(match auth {
        client::Auth::Bearer(token) => format!("Bearer {token}"),
        client::Auth::Basic { user, password } => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ),
    })
}

/// The documented exit codes of the call commands (README "The openum command").
pub(crate) mod exit {
    /// A runtime or transport failure (the server could not be reached, …).
    pub(crate) const FAILURE: u8 = 1;
    /// A usage or configuration error (no credentials, an invalid URL, an unusable CA file).
    pub(crate) const USAGE: u8 = 2;
    /// The EWS server answered with an error or a SOAP fault.
    pub(crate) const EWS_ERROR: u8 = 3;
    /// The credentials were refused.
    pub(crate) const UNAUTHORIZED: u8 = 4;
    /// `watch`, `call --wait`: the call ended with a failure cause (UserBusy, NoAnswer,
    /// Unavailable, Other).
    pub(crate) const CALL_FAILED: u8 = 5;
}

/// How the call commands report a failure on stderr: `openum: …` text, or with `--json` one
/// JSON object `{"error":…,"class":…,"exit_code":…}` (see [`crate::watch::json_error`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Report {
    /// `--json` was given.
    pub(crate) json: bool,
}

impl Report {
    /// Reports `message` of `class` and returns exit code `code`.
    pub(crate) fn fail(self, code: u8, class: &str, message: &str) -> ExitCode {
        if self.json {
            eprintln!("{}", watch::json_error(message, class, code));
        } else {
            eprintln!("openum: {message}");
        }
        ExitCode::from(code)
    }

    /// A usage error (exit 2).
    fn usage(self, message: &str) -> ExitCode {
        self.fail(exit::USAGE, "usage", message)
    }

    /// Prints a client error and picks the documented exit code.
    pub(crate) fn client(self, error: &client::Error) -> ExitCode {
        use client::Error as E;
        let (code, class) = match error {
            E::Unauthorized => (exit::UNAUTHORIZED, "unauthorized".to_owned()),
            E::Fault(_) => (exit::EWS_ERROR, "soap_fault".to_owned()),
            E::Response { .. } => (exit::EWS_ERROR, "ews_error".to_owned()),
            E::InvalidUrl { .. } => (exit::USAGE, "invalid_url".to_owned()),
            E::CaFile { .. } => (exit::USAGE, "ca_file".to_owned()),
            E::Transport { cause, .. } => (exit::FAILURE, transport_class(*cause).to_owned()),
            E::Status(_) => (exit::FAILURE, "http_status".to_owned()),
            _ => (exit::FAILURE, "bad_response".to_owned()),
        };
        let mut message = calls::error_chain(error);
        if error.transport_cause().is_some_and(|c| c.is_certificate()) {
            message.push_str(
                "; to trust a private CA, give its certificate with --ca-file FILE \
                 (or OPENUM_CA_FILE, or ca_file in [client])",
            );
        }
        self.fail(code, &class, &message)
    }
}

/// The `class` of a transport failure in `--json` errors.
fn transport_class(cause: client::TransportCause) -> &'static str {
    use client::TransportCause as T;
    match cause {
        T::CertificateExpired => "certificate_expired",
        T::CertificateHostnameMismatch => "certificate_hostname_mismatch",
        T::CertificateNotTrusted => "certificate_not_trusted",
        T::CertificateRejected => "certificate_rejected",
        T::ConnectionRefused => "connection_refused",
        T::ConnectionReset => "connection_reset",
        T::DnsFailure => "dns_failure",
        T::Timeout => "timeout",
        T::Tls => "tls",
        _ => "transport",
    }
}
