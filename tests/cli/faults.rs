//! Issue 10.10: the fault matrix. Every verb meets every fault in a world
//! that holds a stored API key (with its token cached) and a plain
//! credential; each cell checks the exit code the table expects, that an
//! error is one line (the same on stdout and stderr), that no canary leaks,
//! and that nothing is lost: the store's bytes are unchanged unless the verb
//! succeeded at changing them. One table row per fault, so a new fault is
//! one line. Mounts need root; the clock faults need libfaketime.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::hardening::{setup, Mounted};
use crate::support::fake_ibm::{FakeIbm, Fault, FaultKind};
use crate::util::{Output, Sandbox};

const NEW_KEY: &str = "CANARY-apikey-hardening-new-9d8e";
const PLAIN: &str = "registry.example.test";
const PLAIN_SECRET: &str = "CANARY-plain-secret-31f0";
const CANARIES: &[&str] = &[
    "CANARY-apikey-hardening-5c4b",
    NEW_KEY,
    PLAIN_SECRET,
    "CANARY-apikey",
];
const IAM: &str = "/identity/token";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The verbs, in the order of a row's expectations.
#[derive(Clone, Copy, Debug)]
enum Verb {
    /// `store` of a new API key for us.icr.io.
    Store,
    /// `get` of us.icr.io.
    Get,
    /// `get` of the plain registry.
    GetPlain,
    /// `erase` of us.icr.io.
    Erase,
    /// `list`.
    List,
}

const VERBS: [Verb; 5] = [
    Verb::Store,
    Verb::Get,
    Verb::GetPlain,
    Verb::Erase,
    Verb::List,
];

/// What a cell expects.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Exit 0.
    Ok,
    /// Exit 1 with one error line.
    Fails,
    /// Exit 1 with the not-found text.
    NotFound,
}
use Expect::{Fails, NotFound, Ok};

/// A world: the fake, the sandbox and what holds the fault in place.
struct World {
    fake: FakeIbm,
    s: Sandbox,
    _hold: Vec<Mounted>,
}

impl World {
    fn new() -> World {
        let (fake, s) = setup();
        s.store(PLAIN, "user", PLAIN_SECRET).ok();
        s.get("us.icr.io").ok(); // the token is cached
        World {
            fake,
            s,
            _hold: Vec::new(),
        }
    }

    fn run(&self, verb: Verb) -> Output {
        match verb {
            Verb::Store => self.s.store("us.icr.io", "iamapikey", NEW_KEY),
            Verb::Get => self.s.get("us.icr.io"),
            Verb::GetPlain => self.s.get(PLAIN),
            Verb::Erase => self.s.erase("us.icr.io"),
            Verb::List => self.s.list(),
        }
    }

    fn clock(&mut self, offset: &str) {
        assert!(Path::new(LIBFAKETIME).exists(), "run scripts/deps.sh");
        self.s.set("LD_PRELOAD", LIBFAKETIME);
        self.s.set("FAKETIME", offset);
    }

    /// No cached token: the next `get` must mint.
    fn forget_tokens(&self) {
        fs::remove_file(self.s.cache_file()).unwrap();
    }

    fn iam_fault(&self, kind: FaultKind) {
        self.forget_tokens();
        self.fake.inject(Fault::new(IAM, kind, 0));
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// The file moved aside and a symlink to it put in its place.
fn symlink_in_place(path: &Path) {
    let real = path.with_extension("real");
    fs::rename(path, &real).unwrap();
    std::os::unix::fs::symlink(&real, path).unwrap();
}

/// A FIFO in place of the file (a reader that opens it blocking hangs).
fn fifo(path: &Path) {
    fs::remove_file(path).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo");
    chmod(path, 0o600);
}

/// A sparse 15 TB file in place of the file.
fn huge(path: &Path) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(15_000_000_000_000).unwrap();
}

/// The store's bytes, when it is a regular file of a sane size (a fault may
/// put a FIFO or a sparse giant there: then its type and length stand in).
fn store_bytes(s: &Sandbox) -> Option<Vec<u8>> {
    let path = s.store_file();
    let meta = fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_file() && meta.len() < 1 << 20 {
        fs::read(&path).ok()
    } else {
        Some(format!("{:?} {}", meta.file_type(), meta.len()).into_bytes())
    }
}

/// Checks one cell; returns what went wrong, if anything.
fn cell(fault: &str, setup: fn(&mut World), verb: Verb, expect: Expect) -> Option<String> {
    let mut world = World::new();
    setup(&mut world);
    let store_before = store_bytes(&world.s);
    let started = Instant::now();
    let out = world.run(verb);
    let took = started.elapsed();
    let store_after = store_bytes(&world.s);
    drop(world); // unmount before the next cell
    let mut wrong = Vec::new();
    let got = match out.code {
        0 => Ok,
        1 if out.stdout == "credentials not found in native keychain\n" => NotFound,
        1 => Fails,
        _ => {
            wrong.push(format!("exit {} (killed or aborted)", out.code));
            Fails
        }
    };
    if got != expect {
        wrong.push(format!("expected {expect:?}, got {got:?}"));
    }
    if got == Fails {
        let one_line = out.stdout.ends_with('\n') && out.stdout.matches('\n').count() == 1;
        if !one_line || out.stdout != out.stderr {
            wrong.push("not one line, the same on stdout and stderr".into());
        }
    }
    if got == NotFound && !out.stderr.is_empty() {
        wrong.push("not-found with a stderr".into());
    }
    let answer = matches!(verb, Verb::Get | Verb::GetPlain) && got == Ok;
    for canary in CANARIES {
        if out.stderr.contains(canary) || (!answer && out.stdout.contains(canary)) {
            wrong.push(format!("{canary} leaked"));
        }
    }
    let changes_store = matches!(verb, Verb::Store | Verb::Erase) && got == Ok;
    if !changes_store && store_before != store_after {
        wrong.push("the store changed".into());
    }
    if took > Duration::from_secs(30) {
        wrong.push(format!("took {took:?}"));
    }
    (!wrong.is_empty()).then(|| format!("{fault} × {verb:?}: {}\n{out}", wrong.join("; ")))
}

/// Runs every verb of one row.
fn row(fault: &str, setup: fn(&mut World), expect: [Expect; 5]) {
    let failures: Vec<String> = VERBS
        .iter()
        .zip(expect)
        .filter_map(|(&verb, expect)| cell(fault, setup, verb, expect))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One `#[test]` per fault: `name: |world| setup => [store, get, get plain, erase, list]`.
macro_rules! faults {
    ($($name:ident: $setup:expr => $expect:expr;)*) => {$(
        #[test]
        fn $name() {
            row(stringify!($name), $setup, $expect);
        }
    )*};
}

faults! {
    no_fault: |_| {} => [Ok, Ok, Ok, Ok, Ok];
    read_only_data_dir: |w| w._hold.push(Mounted::read_only(&w.s.data_dir())) => [Fails, Ok, Ok, Fails, Ok];
    read_only_cache_dir: |w| w._hold.push(Mounted::read_only(&w.s.cache_dir())) => [Fails, Ok, Ok, Fails, Ok];
    full_data_dir: |w| w._hold.push(Mounted::full(&w.s.data_dir())) => [Fails, Ok, Ok, Fails, Ok];
    full_cache_dir: |w| w._hold.push(Mounted::full(&w.s.cache_dir())) => [Ok, Ok, Ok, Ok, Ok];
    loose_store_mode: |w| chmod(&w.s.store_file(), 0o644) => [Fails, Ok, Fails, Fails, Fails];
    loose_cache_mode: |w| chmod(&w.s.cache_file(), 0o644) => [Fails, Fails, Ok, Fails, Ok];
    foreign_store_owner: |w| chown(&w.s.store_file(), 4321) => [Fails, Ok, Fails, Fails, Fails];
    foreign_cache_owner: |w| chown(&w.s.cache_file(), 4321) => [Fails, Fails, Ok, Fails, Ok];
    symlinked_store: |w| symlink_in_place(&w.s.store_file()) => [Fails, Ok, Fails, Fails, Fails];
    symlinked_cache: |w| symlink_in_place(&w.s.cache_file()) => [Ok, Ok, Ok, Ok, Ok];
    fifo_store: |w| fifo(&w.s.store_file()) => [Fails, Ok, Fails, Fails, Fails];
    fifo_cache: |w| fifo(&w.s.cache_file()) => [Ok, Ok, Ok, Ok, Ok];
    huge_store: |w| huge(&w.s.store_file()) => [Fails, Ok, Fails, Fails, Fails];
    huge_cache: |w| huge(&w.s.cache_file()) => [Ok, Ok, Ok, Ok, Ok];
    clock_a_day_fast: |w| w.clock("+1d") => [Ok, Ok, Ok, Ok, Ok];
    clock_a_day_slow: |w| w.clock("-1d") => [Ok, Ok, Ok, Ok, Ok];
    iam_500: |w| w.iam_fault(FaultKind::Status(500)) => [Ok, Fails, Ok, Ok, Ok];
    iam_429: |w| w.iam_fault(FaultKind::TooManyRequests { retry_after_secs: 1 }) => [Ok, Fails, Ok, Ok, Ok];
    iam_timeout: |w| w.iam_fault(FaultKind::Delay(Duration::from_secs(20))) => [Ok, Fails, Ok, Ok, Ok];
    iam_garbage: |w| w.iam_fault(FaultKind::GarbageJson) => [Ok, Fails, Ok, Ok, Ok];
    iam_closes: |w| w.iam_fault(FaultKind::Close) => [Ok, Fails, Ok, Ok, Ok];
}
