//! The `openum` command: run the server, manage users, tokens and voice mail, and place, watch
//! and end calls through any EWS endpoint.
//!
//! Exit codes: 0 success; 1 runtime or transport failure; 2 usage or configuration error;
//! 3 the EWS server answered with an error or a SOAP fault; 4 credentials refused; 5 (`watch`,
//! `call --wait`) the call ended with a failure cause; `migrate --check`: 10 migrations pending,
//! 11 the store's schema is newer than this binary. README "The openum command" has the table.
//!
//! # Layout
//!
//! - this file: the command line (clap) and one call per command; `serve` is
//!   `server::serve::serve`.
//! - `admin`: users, tokens, voice-mail items, configuration check.
//! - `remote`: the call commands, through the EWS client.
//! - `watch`: following a call, and the `--json` output (serde_json).
//! - `users`: `user list|disable|enable|delete`, `token list|revoke`.
//! - `ops`: call history, voice-mail deletion, backup/restore, schema migrations; which store
//!   the service uses (and the default configuration file).

mod admin;
mod ops;
mod remote;
mod users;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use server::config::Config;

// The request path allocates many small, short-lived objects (XML tree, headers, response
// strings); mimalloc handles that pattern markedly better than glibc malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// openum — an EWS "Play on Phone" server: PlayOnPhone, GetPhoneCallInformation and
/// DisconnectPhoneCall for the EWS clients Exchange Unified Messaging used to serve.
#[derive(Debug, Parser)]
#[command(name = "openum", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Without it, /etc/openum/openum.toml if it exists, else the
    /// embedded defaults.
    #[arg(long, short = 'c', global = true, env = "OPENUM_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `server.data_dir`).
    #[arg(long, global = true, env = "OPENUM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the EWS endpoint (POST /EWS/Exchange.asmx) until SIGTERM or Ctrl-C.
    Serve {
        /// Listen address (overrides `server.listen`), e.g. 0.0.0.0:8080.
        #[arg(long, env = "OPENUM_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Log as JSON lines instead of human-readable text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Manage users (the accounts EWS clients log in with).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens (for `Authorization: Bearer`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage voice-mail items (the messages PlayOnPhone plays).
    #[command(subcommand)]
    Voicemail(VoicemailCommand),
    /// Check a configuration file and report the first problem (key, file and line).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Call history: list or export the calls the store keeps.
    #[command(subcommand)]
    Calls(ops::CallsCommand),
    /// Copy the SQLite store and its audio files into a new or empty directory, consistently,
    /// while `serve` runs.
    Backup {
        /// The backup directory.
        dir: PathBuf,
    },
    /// Replace the SQLite store and its audio files with a backup (stop `serve` first).
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// Replace an existing store and audio files.
        #[arg(long)]
        force: bool,
    },
    /// Apply pending schema migrations; with --check only report (exit 0 current, 10 pending,
    /// 11 newer than this binary).
    Migrate {
        /// Report only, change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Place a call that plays a voice-mail item (EWS PlayOnPhone); prints the PhoneCallId.
    Call {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The voice-mail item's ItemId.
        #[arg(long)]
        item: String,
        /// The number to dial.
        #[arg(long)]
        dial: String,
        /// Then follow the call until it ends, like `openum watch`.
        #[arg(long)]
        wait: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a call's state once (EWS GetPhoneCallInformation).
    Status {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The PhoneCallId.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Follow a call's state live until it ends: a progress line on a terminal, one line (or
    /// JSON object) per change otherwise.
    Watch {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The PhoneCallId.
        id: String,
        /// Print one JSON object per change.
        #[arg(long)]
        json: bool,
    },
    /// Hang up a call (EWS DisconnectPhoneCall).
    Hangup {
        #[command(flatten)]
        endpoint: Endpoint,
        /// The PhoneCallId.
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Where and as whom the call commands talk EWS: flags, then the environment, then the
/// `[client]` section of the configuration file.
#[derive(Debug, clap::Args)]
pub(crate) struct Endpoint {
    /// The EWS endpoint [default: http://127.0.0.1:8080/EWS/Exchange.asmx].
    #[arg(long, env = "OPENUM_URL")]
    pub(crate) url: Option<String>,
    /// User for Basic authentication (password from OPENUM_PASSWORD or the config file).
    #[arg(long, env = "OPENUM_USER")]
    pub(crate) user: Option<String>,
    /// A PEM file of extra trusted CA certificates for an https URL (a private CA), besides the
    /// system's root store [config: client.ca_file].
    #[arg(long, env = "OPENUM_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Seconds one request may take, connecting included.
    #[arg(long, env = "OPENUM_TIMEOUT", default_value_t = 30, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) timeout: u64,
}

#[derive(Debug, Subcommand)]
enum VoicemailCommand {
    /// Import an audio file (WAV: PCM, G.711 or GSM 06.10, any rate, mono/stereo; MP3; WMA,
    /// through ffmpeg) as a voice-mail item of a user. Prints the item's EWS ItemId (one line) on
    /// success; nothing is stored on error.
    Import {
        /// The owning user.
        #[arg(long)]
        user: String,
        /// The audio file.
        file: PathBuf,
        /// Who left the message.
        #[arg(long, default_value = "")]
        from: String,
        /// Subject line.
        #[arg(long, default_value = "")]
        subject: String,
    },
    /// List a user's voice-mail items (ItemId, duration, from, subject).
    List {
        /// The owning user.
        #[arg(long)]
        user: String,
    },
    /// Delete a voice-mail item (record and audio); refused while a live call plays it.
    Delete {
        /// The owning user.
        #[arg(long)]
        user: String,
        /// The item's ItemId.
        id: String,
    },
    /// Check the mailbox backend (`[mailbox]`) with one item: log in to the mailbox server as the
    /// user, fetch the item's voice message and decode it, as a call would. Credentials: --user
    /// with OPENUM_PASSWORD, or OPENUM_TOKEN (a Bearer token), or [client] in the config file.
    PlayTest {
        /// The mailbox login (e.g. alice@example.com or EXAMPLE\alice).
        #[arg(long, env = "OPENUM_USER")]
        user: Option<String>,
        /// The Exchange ItemId of the voice mail (from FindItem).
        #[arg(long)]
        item: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user, or set the password of an existing one. On a terminal the password is asked
    /// twice, without echo.
    Add {
        /// The login name.
        name: String,
        /// Read the password from standard input (one line) instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        /// Create the user with Play on Phone disabled.
        #[arg(long)]
        disable_play_on_phone: bool,
    },
    /// List users: name, enabled or disabled, Play on Phone, token and voice-mail counts.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: its password and tokens are refused at once, by every server on the store.
    Disable {
        /// The login name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The login name.
        name: String,
    },
    /// Delete a user with its API tokens and imported voice-mail items (records and audio
    /// files); its call history is kept until retention removes it.
    Delete {
        /// The login name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create an API token for a user and print it (shown once; only its hash is stored).
    Create {
        /// The user the token acts as.
        name: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List API tokens (id, user, created, label; never the secret).
    List {
        /// Only this user's tokens.
        name: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (from `token list`), or every token with a label; refused at once
    /// by every server on the store.
    Revoke {
        /// The token's id.
        #[arg(required_unless_present = "label", conflicts_with = "label")]
        id: Option<String>,
        /// Revoke every token with this label instead.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration file given with --config.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config_path = ops::config_path(cli.config);
    let mut config = match Config::load(config_path.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("openum: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &cli.data_dir {
        config.server.data_dir.clone_from(dir);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("openum: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config, config_path)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openum: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: Command,
    config: Config,
    config_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { listen, json_logs } => {
            let effective = listen.unwrap_or(config.server.listen);
            if let Some(refusal) =
                admin::plain_http_refused(&config, effective, config_path.as_deref())
            {
                eprintln!("openum: {refusal}");
                return Ok(ExitCode::from(2));
            }
            init_logging(json_logs);
            server::serve::serve(&config, listen, server::serve::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Add {
            name,
            password_stdin,
            disable_play_on_phone,
        }) => admin::user_add(&config, &name, password_stdin, disable_play_on_phone).await,
        Command::Token(TokenCommand::Create { name, label }) => {
            admin::token_create(&config, &name, &label).await
        }
        Command::User(UserCommand::List { json }) => users::user_list(&config, json).await,
        Command::User(UserCommand::Disable { name }) => {
            users::user_set_disabled(&config, &name, true).await
        }
        Command::User(UserCommand::Enable { name }) => {
            users::user_set_disabled(&config, &name, false).await
        }
        Command::User(UserCommand::Delete { name }) => users::user_delete(&config, &name).await,
        Command::Token(TokenCommand::List { name, json }) => {
            users::token_list(&config, name.as_deref(), json).await
        }
        Command::Token(TokenCommand::Revoke { id, label }) => {
            users::token_revoke(&config, id.as_deref(), label.as_deref()).await
        }
        Command::Voicemail(VoicemailCommand::Import {
            user,
            file,
            from,
            subject,
        }) => admin::voicemail_import(&config, &user, &file, &from, &subject).await,
        Command::Voicemail(VoicemailCommand::List { user }) => {
            admin::voicemail_list(&config, &user).await
        }
        Command::Voicemail(VoicemailCommand::PlayTest { user, item }) => {
            let endpoint = Endpoint {
                url: None,
                user,
                ca_file: None,
                timeout: 30,
            };
            let Some(authorization) = remote::authorization(&endpoint, &config) else {
                return Ok(ExitCode::from(2));
            };
            Ok(admin::voicemail_play_test(&config, &authorization, &item).await)
        }
        Command::Config(ConfigCommand::Check) => {
            Ok(admin::config_check(&config, config_path.as_deref()))
        }
        Command::Calls(command) => ops::calls(&config, command).await,
        Command::Voicemail(VoicemailCommand::Delete { user, id }) => {
            ops::voicemail_delete(&config, &user, &id).await
        }
        Command::Backup { dir } => ops::backup(&config, &dir),
        Command::Restore { dir, force } => ops::restore(&config, &dir, force),
        Command::Migrate { check } => ops::migrate(&config, check).await,
        Command::Call {
            endpoint,
            item,
            dial,
            wait,
            json,
        } => Ok(remote::call(&endpoint, &config, &item, &dial, wait, json).await),
        Command::Status { endpoint, id, json } => {
            Ok(remote::status(&endpoint, &config, &id, json).await)
        }
        Command::Watch { endpoint, id, json } => {
            Ok(remote::watch(&endpoint, &config, &id, json).await)
        }
        Command::Hangup { endpoint, id, json } => {
            Ok(remote::hangup(&endpoint, &config, &id, json).await)
        }
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENUM_LOG")
        // rsipstack logs whole SIP messages (dialled numbers, digest headers) at info: keep it
        // at warn unless OPENUM_LOG asks for more.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rsipstack=warn"));
    // Colour codes only for a person at a terminal: not in files, journald or pipes, nor when
    // NO_COLOR (https://no-color.org) is set.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
