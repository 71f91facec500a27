//! Test support: ffmpeg for fixtures and references, temporary directories, correlation.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness shared by several test binaries"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs ffmpeg with `args` (after `-nostdin -hide_banner -loglevel error -y`) and returns its
/// standard output. Panics, failing the test, when ffmpeg is missing or fails.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "ffmpeg is required by these tests ({e}): install it (Debian package `ffmpeg`, \
                 `apt-get install ffmpeg`)"
            )
        });
    assert!(
        output.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// ffmpeg's own decode of `file` to 8 kHz mono 16-bit, with `decoder` when given.
pub fn ffmpeg_decode(file: &Path, decoder: Option<&str>) -> Vec<i16> {
    let mut args = Vec::new();
    if let Some(decoder) = decoder {
        args.extend(["-c:a", decoder]);
    }
    let file = file.to_str().unwrap();
    args.extend([
        "-i", file, "-f", "s16le", "-ac", "1", "-ar", "8000", "pipe:1",
    ]);
    read_s16le(&ffmpeg(&args))
}

/// Little-endian 16-bit samples.
pub fn read_s16le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The best normalised cross-correlation of `b` against `a` over lags `-max_lag..=max_lag`
/// (`b[i + lag]` against `a[i]`), and its lag.
pub fn best_correlation(a: &[i16], b: &[i16], max_lag: usize) -> (f64, i64) {
    let max_lag = max_lag as i64;
    (-max_lag..=max_lag)
        .map(|lag| (correlation_at(a, b, lag), lag))
        .fold((f64::MIN, 0), |best, c| if c.0 > best.0 { c } else { best })
}

fn correlation_at(a: &[i16], b: &[i16], lag: i64) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (i, &x) in a.iter().enumerate() {
        let j = i as i64 + lag;
        let Some(&y) = usize::try_from(j).ok().and_then(|j| b.get(j)) else {
            continue;
        };
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// A directory under the system's temporary directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "openum-audio-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
