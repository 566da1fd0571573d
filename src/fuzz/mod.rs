//! A corpus-driven mutation fuzzer for every parser of untrusted input
//! (issue 10, item 9), run by `cargo test` for a few seconds per target and
//! by hand for as long as you like:
//!
//! ```text
//! IBMCR_FUZZ_SECONDS=600 cargo test --release --lib fuzz -- --nocapture --test-threads 1
//! ```
//!
//! Each target ([`targets`]) first replays its committed corpus
//! (`fuzz/corpus/<target>/`: what docker, podman and skopeo send, real-shaped
//! files, IBM's documented replies, and every input that once failed), then
//! mutates it ([`mutate`]) until its time is up. Every input is checked under
//! `catch_unwind` for the README's promises: no panic; every error is one
//! line (no control character at all, so no line break and no terminal
//! escape); the planted [`CANARY`] secret appears in no error and in no
//! `Debug` output unless the input put it in a field that is not secret.
//! An input that breaks one is saved as `fuzz/corpus/<target>/crash-<hash>`
//! (replayed by every later run: rename it and commit it with the fix) and
//! fails the test.
//!
//! Why a small std-only fuzzer rather than cargo-fuzz or proptest:
//! cargo-fuzz needs nightly and a separate crate that sees only the public
//! API, while these parsers are private modules; proptest is a new
//! dependency (DEVELOPERS.md asks for a reason) whose strategies generate
//! from types, whereas the bugs worth finding here sit one mutation away
//! from real inputs (a documented IAM reply with a huge `expires_in`, a
//! cache file with a `\n` in a message), which a corpus plus JSON-aware
//! mutations reaches directly, and whose corpus is plain files a person can
//! read and extend. What it lacks is coverage feedback; it keeps mutants
//! that still parse as parents instead, which drives it past the syntax
//! check into the typed checks behind it.
//!
//! Knobs (test-only, not the helper's environment): `IBMCR_FUZZ_SECONDS`
//! (per target, default 2; fractions allowed), `IBMCR_FUZZ_SEED` (decimal
//! or `0x` hex; printed by every run, so a run can be repeated).
#![allow(clippy::print_stderr)] // the per-target report, for `--nocapture`

mod mutate;
mod targets;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use mutate::Rng;

/// A secret planted in corpus entries (a `Secret`, a token's signature, an
/// API key echoed in an error body) and by mutations: it must never show.
pub const CANARY: &str = "CANARY-7f3a9c";

/// Seconds per target when `IBMCR_FUZZ_SECONDS` is unset: about 20 s of
/// CPU for all targets in CI.
const DEFAULT_SECONDS: f64 = 2.0;
/// Mutants that parsed, kept as parents, at most.
const MAX_KEPT: usize = 512;
/// The longest mutant kept as a parent: long ones still get made (a long
/// string is one mutation away), but as parents they would slow every run.
const MAX_KEPT_LEN: usize = 8 << 10;
/// Distinct failures reported before a target stops early.
const MAX_FAILURES: usize = 20;
/// One mutant in this many also goes through the real loader (a temp file).
const SLOW_ONE_IN: usize = 32;

/// What a check found: the input parsed, or was refused as it should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Parsed: the mutant is kept as a parent.
    Parsed,
    /// Refused with a proper error.
    Refused,
}

/// A broken promise: `<what> | <detail>`; the part before ` | ` names the
/// failure, so a thousand inputs hitting one bug count as one.
pub type Checked = Result<Outcome, String>;

/// What a check gets besides the input.
pub struct Ctx {
    /// Also run the real loader, through a file in [`Ctx::dir`].
    pub slow: bool,
    /// A private (0700) scratch directory of this target.
    pub dir: PathBuf,
}

impl Ctx {
    /// Writes `bytes` to `name` in the scratch dir, 0600, and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&path).expect("scratch file");
        file.write_all(bytes).expect("scratch file");
        path
    }
}

thread_local! {
    /// Set while a check runs: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Where and why the last quiet panic happened.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the panic hook once: quiet on a fuzzing thread (thousands of
/// expected panics would flood the output), unchanged everywhere else.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                return previous(info);
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("panic at {place} | {}", crate::log::one_line(message));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

/// Runs one check; a panic becomes a failure named by its place.
fn run_one(check: fn(&[u8], &Ctx) -> Checked, input: &[u8], ctx: &Ctx) -> Checked {
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| check(input, ctx)));
    QUIET.with(|q| q.set(false));
    result.unwrap_or_else(|_| {
        Err(LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic | (no hook record)".into()))
    })
}

/// `IBMCR_FUZZ_SECONDS` and `IBMCR_FUZZ_SEED`, or the defaults (a random seed).
#[allow(clippy::disallowed_methods)] // test knobs, not the helper's environment
fn knobs() -> (Duration, u64) {
    let seconds = std::env::var("IBMCR_FUZZ_SECONDS")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .expect("IBMCR_FUZZ_SECONDS: seconds")
        })
        .unwrap_or(DEFAULT_SECONDS);
    let seed = match std::env::var("IBMCR_FUZZ_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .expect("IBMCR_FUZZ_SEED: a decimal or 0x-hex u64")
        }
        // RandomState is seeded from the OS: a fresh seed per run, no clock needed.
        Err(_) => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    };
    (Duration::from_secs_f64(seconds.max(0.0)), seed)
}

/// FNV-1a: names a crash file by its content, and derives per-target seeds.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The corpus of `target`, sorted by file name.
fn load_corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus `{}`: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("corpus file");
            (p, bytes)
        })
        .collect()
}

/// A private scratch dir for the real loaders, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(target: &str, seed: u64) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "ibmcr-fuzz-{target}-{}-{seed:x}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One distinct failure: its name, one example, and where the input is.
struct Failure {
    name: String,
    detail: String,
    input: PathBuf,
}

/// Fuzzes `check` with the corpus of `target`, then panics with every
/// distinct failure (each saved as a crash file), if any.
pub fn fuzz(target: &str, check: fn(&[u8], &Ctx) -> Checked) {
    install_panic_hook();
    let (budget, seed) = knobs();
    let mut rng = Rng::new(seed ^ fnv(target.as_bytes()));
    let corpus = load_corpus(target);
    assert!(!corpus.is_empty(), "{target}: empty corpus");
    let scratch = Scratch::new(target, seed);
    let mut ctx = Ctx {
        slow: true,
        dir: scratch.0.clone(),
    };
    let mut failures: Vec<Failure> = Vec::new();
    let note = |failures: &mut Vec<Failure>, why: String, input: &[u8], saved: Option<&Path>| {
        let (name, detail) = why.split_once(" | ").unwrap_or((&why, ""));
        if failures.iter().any(|f| f.name == name) {
            return;
        }
        let input = saved.map(Path::to_path_buf).unwrap_or_else(|| {
            let path = corpus_dir(target).join(format!("crash-{:016x}", fnv(input)));
            std::fs::write(&path, input).expect("saving a crash");
            path
        });
        let mut detail = detail.to_string();
        if let Some((cut, _)) = detail.char_indices().nth(300) {
            detail.truncate(cut);
            detail.push('…');
        }
        failures.push(Failure {
            name: name.to_string(),
            detail,
            input,
        });
    };

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut timed = |input: &[u8], ctx: &Ctx| {
        let t = Instant::now();
        let result = run_one(check, input, ctx);
        slowest = slowest.max(t.elapsed());
        result
    };
    for (path, input) in &corpus {
        if let Err(why) = timed(input, &ctx) {
            note(&mut failures, why, input, Some(path));
        }
    }
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let (mut runs, mut parsed) = (0u64, 0u64);
    let mutating = Instant::now();
    while mutating.elapsed() < budget && failures.len() < MAX_FAILURES {
        for _ in 0..16 {
            let parent = if kept.is_empty() || rng.one_in(2) {
                &seeds[rng.below(seeds.len())]
            } else {
                &kept[rng.below(kept.len())]
            };
            let pool = if rng.one_in(2) { &seeds } else { &kept };
            let pool = if pool.is_empty() { &seeds } else { pool };
            let input = mutate::mutate(&mut rng, parent, pool);
            ctx.slow = rng.one_in(SLOW_ONE_IN);
            runs += 1;
            match timed(&input, &ctx) {
                Ok(Outcome::Parsed) if input.len() > MAX_KEPT_LEN => parsed += 1,
                Ok(Outcome::Parsed) => {
                    parsed += 1;
                    if kept.len() < MAX_KEPT {
                        kept.push(input);
                    } else {
                        let i = rng.below(MAX_KEPT);
                        kept[i] = input;
                    }
                }
                Ok(Outcome::Refused) => {}
                Err(why) => note(&mut failures, why, &input, None),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "\nfuzz {target:<15} {:>4} corpus + {:>11} mutants ({:>3}% parsed) in {elapsed:>6.1} s \
         = {:>7}/s, slowest {:>6.1} ms, {} failures, seed {seed:#018x}",
        seeds.len(),
        thousands(runs),
        parsed * 100 / runs.max(1),
        thousands((runs as f64 / elapsed.max(1e-9)) as u64),
        slowest.as_secs_f64() * 1e3,
        failures.len(),
    );
    if !failures.is_empty() {
        let mut report = format!(
            "fuzz {target}: {} distinct failures (seed {seed:#018x}):\n",
            failures.len()
        );
        for f in &failures {
            let _ = writeln!(
                report,
                "- {}: {}\n  input: {}",
                f.name,
                f.detail,
                f.input.display()
            );
        }
        panic!("{report}");
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The shared invariant of error text: one line, no control character, no canary.
pub fn clean_error(what: &str, text: &str) -> Result<(), String> {
    if text.chars().any(char::is_control) {
        return Err(format!("{what}: error is not one clean line | {text:?}"));
    }
    if text.contains(CANARY) {
        return Err(format!("{what}: error shows the secret | {text:?}"));
    }
    Ok(())
}

/// The shared invariant of `Debug` output: the canary only where a field
/// that is not secret (`shown`, rendered without the secrets) has it.
pub fn hides_secret(what: &str, debug: &str, shown: &str) -> Result<(), String> {
    if debug.contains(CANARY) && !shown.contains(CANARY) {
        return Err(format!("{what}: Debug shows the secret | {debug:.300}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_numbers_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn a_panicking_check_is_a_failure_named_by_its_place() {
        install_panic_hook();
        let ctx = Ctx {
            slow: false,
            dir: std::env::temp_dir(),
        };
        let why = run_one(|_, _| panic!("boom"), b"", &ctx).unwrap_err();
        assert!(why.starts_with("panic at src/fuzz/mod.rs:"), "{why}");
        assert!(why.ends_with(" | boom"), "{why}");
        assert!(run_one(|_, _| Ok(Outcome::Parsed), b"", &ctx).is_ok());
    }
}
