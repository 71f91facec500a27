//! The decoder of last resort: an `ffmpeg` process, for ASF files (Windows Media Audio 1 and 2,
//! WMA 9 Voice, Pro and Lossless), which no Rust crate decodes.
//!
//! The file goes to ffmpeg's standard input from one thread while others read its standard
//! output (8 kHz mono 16-bit PCM, at most [`MAX_SECONDS`](crate::MAX_SECONDS) of it) and its
//! standard error, so neither side can block the other; the process is killed when it runs past
//! the timeout or writes more audio than a message may hold. The command is
//! `ffmpeg -nostdin -hide_banner -loglevel error -i pipe:0 -vn -f s16le -ac 1 -ar 8000 pipe:1`.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::asf::AsfAudio;
use crate::{AudioError, MAX_SECONDS, RATE};

/// The environment variable that names the ffmpeg program to run, when set and not empty.
pub const FFMPEG_ENV: &str = "OPENUM_FFMPEG";

/// How much of ffmpeg's standard error is kept for the message.
const STDERR_KEPT: usize = 4096;

/// The ffmpeg program that was run (or could not be), and what chose it.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum FfmpegProgram {
    /// Given in [`DecodeOptions::ffmpeg`](crate::DecodeOptions::ffmpeg).
    Configured(PathBuf),
    /// Named by [`OPENUM_FFMPEG`](FFMPEG_ENV).
    Environment(PathBuf),
    /// `ffmpeg`, looked up on `PATH`.
    OnPath,
}

impl FfmpegProgram {
    /// The configured path, else `OPENUM_FFMPEG`, else `ffmpeg` on `PATH`.
    pub(crate) fn choose(configured: Option<&Path>) -> Self {
        if let Some(path) = configured {
            return Self::Configured(path.to_owned());
        }
        match std::env::var_os(FFMPEG_ENV) {
            Some(path) if !path.is_empty() => Self::Environment(path.into()),
            _ => Self::OnPath,
        }
    }

    fn program(&self) -> &OsStr {
        match self {
            Self::Configured(path) | Self::Environment(path) => path.as_os_str(),
            Self::OnPath => OsStr::new("ffmpeg"),
        }
    }
}

impl fmt::Display for FfmpegProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configured(path) => write!(f, "{} (configured)", path.display()),
            Self::Environment(path) => write!(f, "{} (from {FFMPEG_ENV})", path.display()),
            Self::OnPath => f.write_str("ffmpeg on PATH"),
        }
    }
}

/// How an ffmpeg run that produced no audio ended, for messages.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct FfmpegExit(pub ExitStatus);

impl fmt::Display for FfmpegExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.success() {
            f.write_str("it exited without writing any audio")
        } else {
            write!(f, "it failed with {}", self.0)
        }
    }
}

/// Decodes `bytes` (an ASF file described by `asf`) to 8 kHz mono with `program`, killing it
/// after `timeout`.
pub(crate) fn decode(
    bytes: &[u8],
    asf: AsfAudio,
    program: FfmpegProgram,
    timeout: Duration,
) -> Result<Vec<i16>, AudioError> {
    let io_error = |source| AudioError::FfmpegIo { asf, source };
    let mut child = Command::new(program.program())
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
        ])
        .args(["-vn", "-f", "s16le", "-ac", "1", "-ar"])
        .arg(RATE.to_string())
        .arg("pipe:1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AudioError::FfmpegUnavailable {
            asf,
            program,
            source,
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        stop(&mut child);
        return Err(io_error(io::Error::other("ffmpeg's pipes were not opened")));
    };
    let deadline = Instant::now() + timeout;
    let max_bytes = u64::from(MAX_SECONDS) * u64::from(RATE) * 2;
    // Detached threads, not scoped ones: if the program is a wrapper whose own child outlives
    // it after a kill, the pipes stay open, and the caller must not wait for them to close.
    let input: Arc<[u8]> = Arc::from(bytes);
    std::thread::spawn(move || {
        // ffmpeg may stop reading early (it failed, or was killed): the write then fails with
        // a broken pipe, which only means that it is done with the input.
        let _ = stdin.write_all(&input);
    });
    let (stderr_sender, stderr_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone only if the decode gave up already; nobody needs the text then.
        let _ = stderr_sender.send(read_keeping(stderr, STDERR_KEPT));
    });
    let (stdout_sender, stdout_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // As above: a closed receiver means the decode gave up.
        let _ = stdout_sender.send(read_at_most(stdout, max_bytes));
    });
    let output =
        match stdout_receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(Some(output))) => output,
            Ok(Ok(None)) => {
                stop(&mut child);
                return Err(AudioError::TooLong);
            }
            Ok(Err(source)) => {
                stop(&mut child);
                return Err(io_error(source));
            }
            Err(_) => {
                stop(&mut child);
                return Err(AudioError::FfmpegTimedOut { asf, timeout });
            }
        };
    let Some(status) = wait_until(&mut child, deadline).map_err(io_error)? else {
        return Err(AudioError::FfmpegTimedOut { asf, timeout });
    };
    // It has exited: its standard error ends now (a moment's grace for the reader).
    let stderr = stderr_receiver
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
    if !status.success() || (output.len() < 2 && !stderr.is_empty()) {
        return Err(AudioError::FfmpegFailed {
            asf,
            exit: FfmpegExit(status),
            stderr,
        });
    }
    Ok(output
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

/// Everything `reader` gives, or `None` once it gives more than `max` bytes.
fn read_at_most(reader: impl Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    reader.take(max + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= max).then_some(out))
}

/// The first `keep` bytes of what `reader` gives, reading on to its end so that the writer
/// never blocks.
fn read_keeping(mut reader: impl Read, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let room = keep.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

/// Waits for `child` to exit until `deadline`; past it (or when waiting fails), kills it and
/// answers `None` (or the error).
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                stop(child);
                return Ok(None);
            }
            Err(e) => {
                stop(child);
                return Err(e);
            }
        }
    }
}

/// Kills `child` and reaps it. It may have exited already, in which case there is nothing to
/// kill and the error says so; either way it is gone afterwards.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
