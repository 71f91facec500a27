//! The CI-sized stand-in for the libFuzzer runs: every seed of a target's corpus, then a fixed
//! number of deterministic mutations of them (bit flips, interesting bytes, deletions,
//! duplications, truncations and splices, driven by a fixed-seed xorshift), each given to the same
//! `check` function the fuzz target calls. Runs on stable in plain `cargo test`, in well under a
//! second per target; it finds shallow panics, the real fuzzer finds the deep ones.
//!
//! Included with `#[path]` by `crates/ews-proto/tests/fuzz_smoke.rs` and
//! `crates/call-engine/tests/fuzz_smoke.rs`.

use std::path::PathBuf;

/// xorshift64 (Marsaglia): tiny, deterministic and good enough to pick mutations.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
}

/// Bytes that matter to XML, SDP and header parsers, plus UTF-8 edge cases.
const INTERESTING: &[u8] =
    b"<>&;\"'=/:,. \t\r\n\0\x01\x7f\xc3\xa9\xe2\x82\xac\xef\xbb\xbf\xff-_09aZ[]!?#%";

fn mutate(rng: &mut XorShift, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let at = rng.below(len + 1);
                out.insert(at, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = out[at..end].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            5 => out.truncate(rng.below(len + 1)),
            _ => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let at = rng.below(other.len());
                    let end = (at + 1 + rng.below(128)).min(other.len());
                    let to = rng.below(len + 1);
                    out.splice(to..to, other[at..end].iter().copied());
                }
            }
        }
    }
    out
}

/// The seed corpus of `target` (`fuzz/corpus/<target>/`), in file-name order.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

/// Runs `check` on every seed of `target` and on `mutations` mutations of them; a panic names
/// the input that caused it. Returns how many inputs were run.
pub(crate) fn run(target: &str, mutations: usize, seed: u64, check: fn(&[u8])) -> usize {
    let seeds = corpus(target);
    let bytes: Vec<Vec<u8>> = seeds.iter().map(|(_, b)| b.clone()).collect();
    let run_one = |label: &str, input: &[u8]| {
        if let Err(panic) = std::panic::catch_unwind(|| check(input)) {
            eprintln!(
                "{target}: {label} panicked; input ({} bytes): {:?}",
                input.len(),
                String::from_utf8_lossy(input)
            );
            std::panic::resume_unwind(panic);
        }
    };
    for (name, input) in &seeds {
        run_one(name, input);
    }
    let mut rng = XorShift::new(seed);
    for i in 0..mutations {
        let from = rng.below(seeds.len());
        let input = mutate(&mut rng, &bytes[from], &bytes);
        run_one(&format!("mutation {i} of {}", seeds[from].0), &input);
    }
    seeds.len() + mutations
}
