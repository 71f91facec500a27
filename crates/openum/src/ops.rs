//! Day-to-day operations on the service's store: call history (`calls list`, `calls export`),
//! `voicemail delete`, `backup`/`restore` of the SQLite store, and the schema version
//! (`migrate`, `migrate --check`). Every command opens the store the service uses, found the
//! same way `serve` finds it, and says on stderr which one it opened.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use calls::{CallRecord, UnixSeconds};
use server::config::Config;
use server::store::history::{CallFilter, History, ItemDeletion, SchemaStatus};
use server::store::{PostgresStore, SqliteStore, Store};

/// Where the configuration comes from when neither `--config` nor `OPENUM_CONFIG` names a file:
/// this file, when it exists (the systemd unit's configuration), else the embedded defaults.
pub(crate) const DEFAULT_CONFIG: &str = "/etc/openum/openum.toml";

/// `migrate --check`: migrations are pending.
pub(crate) const EXIT_MIGRATIONS_PENDING: u8 = 10;
/// `migrate --check`: the store's schema is newer than this binary.
pub(crate) const EXIT_SCHEMA_NEWER: u8 = 11;

/// The configuration file to load: the one given, else [`DEFAULT_CONFIG`] if it exists.
pub(crate) fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.is_file().then_some(default)
    })
}

use server::backup::StoreLocation as Location;

fn location(config: &Config) -> Location {
    Location::of(config)
}

/// Opens the service's store (applying pending migrations, as `serve` does) and says which.
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    eprintln!("openum: using {}", location(config));
    server::open_store(config).await
}

fn history(store: &dyn Store) -> anyhow::Result<&dyn History> {
    store
        .history()
        .context("this store has no call history operations")
}

/// Parses `--since`: `YYYY-MM-DD` (UTC midnight), `YYYY-MM-DDTHH:MM:SSZ`, or an age such as
/// `90m`, `12h`, `7d` (before now).
pub(crate) fn parse_since(text: &str, now: UnixSeconds) -> Result<UnixSeconds, String> {
    let bad = || {
        format!("--since {text:?} is not a date (2026-11-01), a UTC time (2026-11-01T08:00:00Z) or an age (90m, 12h, 7d)")
    };
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| matches!(c, 'm' | 'h' | 'd')) {
        let count: i64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        return count
            .checked_mul(secs)
            .map(|ago| now.saturating_sub(ago))
            .ok_or_else(bad);
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let numbers = |s: &str, sep: char| -> Result<Vec<i64>, String> {
        s.split(sep)
            .map(|p| p.parse::<i64>().map_err(|_| bad()))
            .collect()
    };
    let [y, m, d] = numbers(date, '-')?[..] else {
        return Err(bad());
    };
    let [hh, mm, ss] = match time {
        Some(t) => match numbers(t, ':')?[..] {
            [hh, mm, ss] => [hh, mm, ss],
            _ => return Err(bad()),
        },
        None => [0, 0, 0],
    };
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&hh)
        || !(0..60).contains(&mm)
        || !(0..61).contains(&ss)
    {
        return Err(bad());
    }
    Ok(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time.
pub(crate) fn rfc3339(t: UnixSeconds) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One call as `calls list --json` and `calls export` give it.
#[derive(Debug, serde::Serialize)]
struct CallLine<'a> {
    id: &'a str,
    owner: &'a str,
    node: &'a str,
    started: String,
    ended: Option<String>,
    /// The number as stored: masked with `[privacy] store_dialled_numbers = "masked"`.
    number: &'a str,
    state: &'static str,
    cause: &'static str,
    sip_code: Option<u16>,
    sip_text: Option<&'a str>,
    /// From INVITE to the end, in seconds; `None` while live.
    duration_secs: Option<i64>,
    item_id: &'a str,
}

impl<'a> From<&'a CallRecord> for CallLine<'a> {
    fn from(c: &'a CallRecord) -> Self {
        Self {
            id: &c.id,
            owner: &c.owner,
            node: &c.node,
            started: rfc3339(c.created_at),
            ended: c.ended_at.map(rfc3339),
            number: &c.dialled,
            state: c.state.as_str(),
            cause: c.cause.as_str(),
            sip_code: c.sip_code,
            sip_text: c.sip_text.as_deref(),
            duration_secs: c.ended_at.map(|e| e.saturating_sub(c.created_at)),
            item_id: &c.item_id,
        }
    }
}

const CSV_COLUMNS: [&str; 12] = [
    "id",
    "owner",
    "node",
    "started",
    "ended",
    "number",
    "state",
    "cause",
    "sip_code",
    "sip_text",
    "duration_secs",
    "item_id",
];

impl CallLine<'_> {
    fn fields(&self) -> [String; 12] {
        [
            self.id.to_owned(),
            self.owner.to_owned(),
            self.node.to_owned(),
            self.started.clone(),
            self.ended.clone().unwrap_or_default(),
            self.number.to_owned(),
            self.state.to_owned(),
            self.cause.to_owned(),
            self.sip_code.map(|c| c.to_string()).unwrap_or_default(),
            self.sip_text.unwrap_or_default().to_owned(),
            self.duration_secs
                .map(|d| d.to_string())
                .unwrap_or_default(),
            self.item_id.to_owned(),
        ]
    }
}

/// One CSV record (RFC 4180): a field holding a comma, quote, CR or LF is quoted, quotes
/// doubled; lines end with CRLF.
pub(crate) fn csv_record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| {
            let f = f.as_ref();
            if f.contains([',', '"', '\r', '\n']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Output of `calls export`.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// RFC 4180 CSV with a header line.
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `openum calls …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CallsCommand {
    /// List call history, oldest first: PhoneCallId, owner, start (UTC), number as stored,
    /// state, cause, SIP code and text, duration.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write call history to standard output as CSV or JSON lines.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// csv (RFC 4180, header line) or jsonl (one JSON object per line).
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
    },
}

/// `--user`, `--since`.
#[derive(Debug, clap::Args)]
pub(crate) struct FilterArgs {
    /// Only this user's calls.
    #[arg(long)]
    user: Option<String>,
    /// Only calls placed since WHEN: 2026-11-01, 2026-11-01T08:00:00Z (UTC), or an age
    /// (90m, 12h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
}

/// `openum calls list|export`.
pub(crate) async fn calls(config: &Config, command: CallsCommand) -> anyhow::Result<ExitCode> {
    let args = match &command {
        CallsCommand::List { filter, .. } | CallsCommand::Export { filter, .. } => filter,
    };
    let since = match args
        .since
        .as_deref()
        .map(|s| parse_since(s, calls::now_unix()))
    {
        Some(Err(message)) => {
            eprintln!("openum: {message}");
            return Ok(ExitCode::from(2));
        }
        Some(Ok(t)) => Some(t),
        None => None,
    };
    let filter = CallFilter {
        owner: args.user.clone(),
        since,
    };
    let store = open_store(config).await?;
    let records = history(store.as_ref())?
        .calls(&filter)
        .await
        .context("cannot read call history")?;
    let lines: Vec<CallLine<'_>> = records.iter().map(CallLine::from).collect();
    let mut out = String::new();
    match command {
        CallsCommand::List { json: true, .. } => {
            out = serde_json::to_string_pretty(&lines)?;
            out.push('\n');
        }
        CallsCommand::List { json: false, .. } => {
            out.push_str("ID\tOWNER\tSTARTED\tNUMBER\tSTATE\tCAUSE\tSIP\tDURATION\n");
            for l in &lines {
                let sip = match (l.sip_code, l.sip_text) {
                    (Some(code), Some(text)) => format!("{code} {text}"),
                    (Some(code), None) => code.to_string(),
                    _ => "-".into(),
                };
                let duration = l
                    .duration_secs
                    .map_or_else(|| "live".into(), |d| format!("{d}s"));
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{sip}\t{duration}\n",
                    l.id, l.owner, l.started, l.number, l.state, l.cause
                ));
            }
        }
        CallsCommand::Export {
            format: ExportFormat::Csv,
            ..
        } => {
            out.push_str(&csv_record(&CSV_COLUMNS));
            for l in &lines {
                out.push_str(&csv_record(&l.fields()));
            }
        }
        CallsCommand::Export {
            format: ExportFormat::Jsonl,
            ..
        } => {
            for l in &lines {
                out.push_str(&serde_json::to_string(l)?);
                out.push('\n');
            }
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// `openum voicemail delete --user U ID`: exit 0 deleted; 2 no such item of that user; 1 a live
/// call plays it (nothing deleted; try again when it ends).
pub(crate) async fn voicemail_delete(
    config: &Config,
    user: &str,
    id: &str,
) -> anyhow::Result<ExitCode> {
    let store = open_store(config).await?;
    let owned = store
        .voicemail_item(id)
        .await
        .with_context(|| format!("cannot read voice-mail item {id}"))?
        .is_some_and(|item| item.owner == user);
    if !owned {
        eprintln!("openum: user {user:?} has no voice-mail item {id}");
        return Ok(ExitCode::from(2));
    }
    match history(store.as_ref())?
        .delete_voicemail_item(id)
        .await
        .with_context(|| format!("cannot delete voice-mail item {id}"))?
    {
        ItemDeletion::Deleted(_) => {
            let data_dir = &config.server.data_dir;
            server::retention::remove_audio(data_dir, id).with_context(|| {
                format!("the item's record is deleted, but not its audio file under {} (the retention task removes it within the hour)", data_dir.join("voicemail").display())
            })?;
            eprintln!("voice-mail item {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        ItemDeletion::InUse(live) => {
            eprintln!(
                "openum: voice-mail item {id} is playing in a live call ({}); nothing deleted — try again when the call has ended",
                live.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        ItemDeletion::NotFound => {
            eprintln!("openum: user {user:?} has no voice-mail item {id}");
            Ok(ExitCode::from(2))
        }
    }
}

fn sqlite_only(config: &Config, command: &str) -> Result<PathBuf, ExitCode> {
    match location(config) {
        Location::Sqlite(path) => {
            eprintln!("openum: using {}", Location::Sqlite(path.clone()));
            Ok(path)
        }
        postgres @ Location::Postgres { .. } => {
            eprintln!(
                "openum: {command} copies the embedded SQLite store, but this configuration uses the {postgres}; use pg_dump/pg_restore (see the README, \"Backup and restore\")"
            );
            Err(ExitCode::from(2))
        }
    }
}

/// `openum backup DIR`.
pub(crate) fn backup(config: &Config, dir: &Path) -> anyhow::Result<ExitCode> {
    if let Err(code) = sqlite_only(config, "backup") {
        return Ok(code);
    }
    let report = server::backup::backup(&config.server.data_dir, dir)?;
    summarise("backed up to", dir, &report);
    Ok(ExitCode::SUCCESS)
}

/// `openum restore DIR [--force]`.
pub(crate) fn restore(config: &Config, dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if let Err(code) = sqlite_only(config, "restore") {
        return Ok(code);
    }
    let report = server::backup::restore(dir, &config.server.data_dir, force)?;
    summarise("restored from", dir, &report);
    Ok(ExitCode::SUCCESS)
}

fn summarise(what: &str, dir: &Path, report: &server::backup::BackupReport) {
    let version = report.schema.map_or(0, |s| s.stored);
    println!(
        "{what} {}: database (schema version {version}), {} voice-mail items, {} audio files",
        dir.display(),
        report.items,
        report.audio_files
    );
    if !report.missing_audio.is_empty() {
        eprintln!(
            "openum: warning: {} items have no audio file (deleted meanwhile, or imported on another node): {}",
            report.missing_audio.len(),
            report.missing_audio.join(", ")
        );
    }
}

async fn schema_status(config: &Config) -> anyhow::Result<SchemaStatus> {
    let place = location(config);
    eprintln!("openum: using {place}");
    match &place {
        Location::Sqlite(path) if !path.exists() => Ok(SchemaStatus {
            stored: 0,
            known: SqliteStore::known_schema_version(),
        }),
        Location::Sqlite(path) => SqliteStore::schema_status_at(path)
            .with_context(|| format!("cannot read the schema version of {}", path.display())),
        Location::Postgres { url, .. } => PostgresStore::schema_status_at(url)
            .await
            .context("cannot read the schema version from PostgreSQL"),
    }
}

/// `openum migrate [--check]`. With `--check`: exit 0 when the schema is current,
/// [`EXIT_MIGRATIONS_PENDING`] when migrations are pending, [`EXIT_SCHEMA_NEWER`] when the
/// store is newer than this binary. Without: applies pending migrations (exit 0), or refuses a
/// newer schema ([`EXIT_SCHEMA_NEWER`]).
pub(crate) async fn migrate(config: &Config, check: bool) -> anyhow::Result<ExitCode> {
    let status = schema_status(config).await?;
    let (stored, known) = (status.stored, status.known);
    if status.too_new() {
        eprintln!(
            "openum: the store's schema is version {stored}, newer than this openum ({}) knows (version {known}); run the newer openum that upgraded it",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(ExitCode::from(EXIT_SCHEMA_NEWER));
    }
    if check {
        if status.pending() {
            println!("schema version {stored}; this openum migrates it to {known} (run `openum migrate`)");
            return Ok(ExitCode::from(EXIT_MIGRATIONS_PENDING));
        }
        println!("schema version {stored}: up to date");
        return Ok(ExitCode::SUCCESS);
    }
    // Opening the store applies the pending migrations, as `serve` does at start.
    let store = server::open_store(config).await?;
    let after = history(store.as_ref())?.schema_status().await?.stored;
    if after == stored {
        println!("schema version {after}: up to date");
    } else {
        println!("schema migrated from version {stored} to {after}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_utc_times_and_ages() {
        assert_eq!(parse_since("1970-01-02", 0), Ok(86_400));
        assert_eq!(parse_since("2026-11-01", 0), Ok(1_793_491_200));
        assert_eq!(parse_since("2026-11-01T08:30:05Z", 0), Ok(1_793_521_805));
        assert_eq!(parse_since("7d", 1_000_000), Ok(1_000_000 - 7 * 86_400));
        assert_eq!(parse_since("12h", 100_000), Ok(100_000 - 12 * 3600));
        assert_eq!(parse_since("90m", 10_000), Ok(10_000 - 90 * 60));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-01T08:30",
            "x7d",
            "2026-11",
        ] {
            let error = parse_since(bad, 0).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_793_521_805), "2026-11-01T08:30:05Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for t in [0, 951_782_400, 1_793_521_805, 4_102_444_799] {
            assert_eq!(parse_since(&rfc3339(t), 0), Ok(t));
        }
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(
            csv_record(&["a", "b,c", "say \"hi\"", "two\nlines", ""]),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }
}
