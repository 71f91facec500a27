//! Process CPU time and resident memory from /proc (Linux), and the command line, for the load
//! benchmarks.

use std::time::Duration;

/// utime + stime of the whole process (clock ticks of 10 ms).
pub(crate) fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Resident set size in KiB.
pub(crate) fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 4
}

/// `[seconds] [N …]` from the command line: seconds per measurement (default 10) and the
/// concurrency levels (default `default_ns`).
pub(crate) fn seconds_and_levels(default_ns: &[usize]) -> (u64, Vec<usize>) {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let ns: Vec<usize> = args.filter_map(|a| a.parse().ok()).collect();
    if ns.is_empty() {
        return (secs, default_ns.to_vec());
    }
    (secs, ns)
}
