//! The `openum` command: run the server, manage users, tokens and voice mail, and place, watch
//! and end calls through any EWS endpoint.
//!
//! Exit codes: 0 success; 1 runtime or transport failure; 2 usage or configuration error;
//! 3 the EWS server answered with an error or a SOAP fault; 4 credentials refused.

mod watch;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use call_runtime::SipCallService;
use clap::{Parser, Subcommand};
use server::calls::{CallService, NoGateway};
use server::config::Config;
use server::registry::Registry;
use server::store::User;

// The request path allocates many small, short-lived objects (XML tree, headers, response
// strings); mimalloc handles that pattern markedly better than glibc malloc (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// openum — an EWS "Play on Phone" server: PlayOnPhone, GetPhoneCallInformation and
/// DisconnectPhoneCall for the EWS clients Exchange Unified Messaging used to serve.
#[derive(Debug, Parser)]
#[command(name = "openum", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded defaults apply.
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
struct Endpoint {
    /// The EWS endpoint [default: http://127.0.0.1:8080/EWS/Exchange.asmx].
    #[arg(long, env = "OPENUM_URL")]
    url: Option<String>,
    /// User for Basic authentication (password from OPENUM_PASSWORD or the config file).
    #[arg(long, env = "OPENUM_USER")]
    user: Option<String>,
}

#[derive(Debug, Subcommand)]
enum VoicemailCommand {
    /// Import an audio file (WAV: PCM or G.711, any rate, mono/stereo; MP3) as a voice-mail item
    /// of a user. Prints the item's EWS ItemId (one line) on success; nothing is stored on error.
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
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user, or set the password of an existing one.
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
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration file given with --config.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
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
    match runtime.block_on(run(cli.command, config, cli.config)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("openum: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: Command,
    mut config: Config,
    config_path: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { listen, json_logs } => {
            init_logging(json_logs);
            if let Some(listen) = listen {
                config.server.listen = listen;
            }
            let store = server::open_store(&config).await?;
            let node = config.node_name();
            // Nothing this node owned can still be live: a previous process died with it.
            let closed = store
                .close_orphaned_calls(&node, unix_now())
                .await
                .context("cannot close calls left over by a previous run")?;
            if closed > 0 {
                tracing::warn!(
                    closed,
                    "closed calls left live by a previous run as Disconnected/Other"
                );
            }
            let registry = Arc::new(Registry::new(store, node));
            let sip = match config.active_gateway() {
                Some(gateway) => Some(
                    SipCallService::start(
                        Arc::clone(&registry),
                        &config.sip,
                        gateway.clone(),
                        config.server.data_dir.clone(),
                    )
                    .await?,
                ),
                None => None,
            };
            let calls: Arc<dyn CallService> = match &sip {
                Some(service) => Arc::new(service.clone()),
                // No gateway: say so (ErrorUnifiedMessagingServerNotFound) instead of pretending.
                None => Arc::new(NoGateway),
            };
            // Other nodes ask this one to end the calls it owns (PostgreSQL NOTIFY).
            if let Some(mut requests) = registry.store().hangup_requests() {
                let calls = Arc::clone(&calls);
                let me = registry.node().to_owned();
                tokio::spawn(async move {
                    use tokio::sync::broadcast::error::RecvError;
                    loop {
                        match requests.recv().await {
                            Ok(request) if request.node == me => {
                                tracing::info!(call = %request.call_id, "hang-up requested by another node");
                                calls.hangup(&request.call_id).await;
                            }
                            Ok(_) => {}
                            // A burst outran this task: keep listening for the next ones.
                            Err(RecvError::Lagged(missed)) => {
                                tracing::warn!(missed, "hang-up requests were dropped");
                            }
                            Err(RecvError::Closed) => break,
                        }
                    }
                });
            }
            let state = server::app_state(&config, registry, calls);
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            tracing::info!(
                listen = %listener.local_addr()?,
                data_dir = %config.server.data_dir.display(),
                node = %state.node,
                gateway = config.active_gateway().map_or("none", |g| g.name.as_str()),
                "openum serving EWS at /EWS/Exchange.asmx"
            );
            server::run(&config, listener, state, shutdown_signal()).await;
            if let Some(sip) = sip {
                // Stop accepting calls first (done above), then end the live ones and record them.
                sip.shutdown(Duration::from_secs(2)).await;
            }
            tracing::info!("openum stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::User(UserCommand::Add {
            name,
            password_stdin,
            disable_play_on_phone,
        }) => {
            let password = read_password(password_stdin)?;
            if password.is_empty() {
                eprintln!("openum: the password is empty");
                return Ok(ExitCode::from(2));
            }
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                eprintln!("openum: a user name must be non-empty and contain no ':' or control characters");
                return Ok(ExitCode::from(2));
            }
            let store = server::open_store(&config).await?;
            let hash = server::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            store
                .upsert_user(User {
                    name: name.clone(),
                    password_hash: hash,
                    play_on_phone: !disable_play_on_phone,
                })
                .await?;
            eprintln!("user {name} saved");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Create { name, label }) => {
            let store = server::open_store(&config).await?;
            if store.user(&name).await?.is_none() {
                eprintln!("openum: no user named {name:?} (add it with `openum user add`)");
                return Ok(ExitCode::from(2));
            }
            let (token, hash) = server::auth::new_token();
            store.insert_token(&name, &hash, &label).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Voicemail(VoicemailCommand::Import {
            user,
            file,
            from,
            subject,
        }) => {
            let store = server::open_store(&config).await?;
            match server::voicemail::import(
                store.as_ref(),
                &config.server.data_dir,
                &user,
                &file,
                &from,
                &subject,
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
        Command::Voicemail(VoicemailCommand::List { user }) => {
            let store = server::open_store(&config).await?;
            for item in store.voicemail_items(&user).await? {
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
        Command::Call {
            endpoint,
            item,
            dial,
            wait,
            json,
        } => {
            let client = match ews_client(&endpoint, &config) {
                Ok(client) => client,
                Err(code) => return Ok(code),
            };
            let id = match client.play_on_phone(&item, &dial).await {
                Ok(id) => id,
                Err(error) => return Ok(client_failure(&error)),
            };
            if json {
                println!("{}", watch::json_call_id(&id));
            } else {
                println!("{id}");
            }
            if wait {
                return Ok(watch::follow(&client, &id, json).await);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { endpoint, id, json } => {
            let client = match ews_client(&endpoint, &config) {
                Ok(client) => client,
                Err(code) => return Ok(code),
            };
            match client.get_phone_call_information(&id).await {
                Ok(info) => {
                    println!(
                        "{}",
                        if json {
                            watch::json(&info)
                        } else {
                            watch::describe(&info)
                        }
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(client_failure(&error)),
            }
        }
        Command::Watch { endpoint, id, json } => {
            let client = match ews_client(&endpoint, &config) {
                Ok(client) => client,
                Err(code) => return Ok(code),
            };
            Ok(watch::follow(&client, &id, json).await)
        }
        Command::Hangup { endpoint, id, json } => {
            let client = match ews_client(&endpoint, &config) {
                Ok(client) => client,
                Err(code) => return Ok(code),
            };
            match client.disconnect_phone_call(&id).await {
                Ok(()) => {
                    if json {
                        println!("{}", watch::json_hung_up());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => Ok(client_failure(&error)),
            }
        }
        Command::Config(ConfigCommand::Check) => {
            match config_path {
                Some(path) => println!("{}: ok", path.display()),
                None => println!("no --config given: the embedded defaults apply"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The EWS client for the call commands, or the exit code of a usage error.
fn ews_client(endpoint: &Endpoint, config: &Config) -> Result<client::Client, ExitCode> {
    let file = &config.client;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let url = endpoint
        .url
        .clone()
        .or_else(|| file.url.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/EWS/Exchange.asmx".into());
    let token = env("OPENUM_TOKEN").or_else(|| file.token.clone());
    let user = endpoint.user.clone().or_else(|| file.user.clone());
    let auth = match (token, user) {
        (Some(token), _) => client::Auth::Bearer(token),
        (None, Some(user)) => client::Auth::Basic {
            user,
            password: env("OPENUM_PASSWORD")
                .or_else(|| file.password.clone())
                .unwrap_or_default(),
        },
        (None, None) => {
            eprintln!(
                "openum: give --user (with OPENUM_PASSWORD), set OPENUM_TOKEN, or fill [client] in the config file"
            );
            return Err(ExitCode::from(2));
        }
    };
    client::Client::new(url, auth).map_err(|error| {
        eprintln!("openum: {error}");
        ExitCode::FAILURE
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

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        anyhow::bail!("pass --password-stdin and write the password to standard input");
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    Ok(input.lines().next().unwrap_or_default().to_owned())
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENUM_LOG")
        // rsipstack logs whole SIP messages (dialled numbers, digest headers) at info: keep it
        // at warn unless OPENUM_LOG asks for more.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rsipstack=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
