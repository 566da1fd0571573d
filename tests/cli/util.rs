//! A sandbox per test (its own HOME, data, cache and config dirs, a cleared
//! environment) and a runner that shows everything when an assertion fails.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_docker-credential-ibmcr");

/// One test's world.
pub struct Sandbox {
    /// Root of everything this test writes.
    pub root: PathBuf,
    vars: Vec<(String, String)>,
}

/// What a run printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// stdout, lossily decoded.
    pub stdout: String,
    /// stderr, lossily decoded.
    pub stderr: String,
    /// The command line, for failure messages.
    pub what: String,
}

impl Output {
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success\n{self}");
        self
    }

    /// Asserts exit 1 and returns self.
    #[track_caller]
    pub fn fails(self) -> Self {
        assert_eq!(self.code, 1, "expected exit 1\n{self}");
        self
    }

    /// Asserts exact stdout bytes.
    #[track_caller]
    pub fn stdout_is(self, want: &str) -> Self {
        assert_eq!(self.stdout, want, "stdout differs\n{self}");
        self
    }

    /// Asserts exact stderr bytes.
    #[track_caller]
    pub fn stderr_is(self, want: &str) -> Self {
        assert_eq!(self.stderr, want, "stderr differs\n{self}");
        self
    }

    /// Asserts the not-found answer: exact text on stdout, nothing on stderr, exit 1.
    #[track_caller]
    pub fn not_found(self) -> Self {
        self.fails()
            .stdout_is("credentials not found in native keychain\n")
            .stderr_is("")
    }

    /// Asserts a one-line error: exit 1, the same single line on stdout and
    /// stderr, containing `part`.
    #[track_caller]
    pub fn error_line(self, part: &str) -> Self {
        let s = self.fails();
        assert!(
            s.stdout.ends_with('\n') && s.stdout.matches('\n').count() == 1,
            "one line\n{s}"
        );
        assert_eq!(s.stdout, s.stderr, "same line on stdout and stderr\n{s}");
        assert!(
            s.stdout.contains(part),
            "error should contain {part:?}\n{s}"
        );
        s
    }

    /// Parses stdout as a `get` answer: (ServerURL, Username, Secret).
    #[track_caller]
    pub fn answer(&self) -> (String, String, String) {
        let v: serde_json::Value =
            serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{self}"));
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("no {k}\n{self}"))
                .to_string()
        };
        (s("ServerURL"), s("Username"), s("Secret"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Sandbox {
    /// A fresh sandbox: `HOME` inside it, the file store, nothing inherited
    /// but `PATH`.
    pub fn new() -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cli-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).unwrap();
        let mut s = Sandbox {
            root,
            vars: Vec::new(),
        };
        s.set("HOME", s.root.join("home").to_str().unwrap());
        let path = std::env::var("PATH").unwrap_or_default();
        s.set("PATH", &path);
        s.set("IBMCR_STORE", "file");
        s
    }

    /// Sets an environment variable for every later run.
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    /// Removes an environment variable.
    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.vars.retain(|(k, _)| k != key);
        self
    }

    /// `$HOME`.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// The data dir (`~/.local/share/ibmcr`).
    pub fn data_dir(&self) -> PathBuf {
        self.home().join(".local/share/ibmcr")
    }

    /// The cache dir (`~/.cache/ibmcr`).
    pub fn cache_dir(&self) -> PathBuf {
        self.home().join(".cache/ibmcr")
    }

    /// The file store.
    pub fn store_file(&self) -> PathBuf {
        self.data_dir().join("store.json")
    }

    /// The token cache.
    pub fn cache_file(&self) -> PathBuf {
        self.cache_dir().join("tokens.json")
    }

    /// A command for the binary with this sandbox's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }

    /// Runs the binary with `args`, feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.run_raw(args, stdin);
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what: format!("{} {}", BIN, args.join(" ")),
        }
    }

    /// Runs the binary with `args`, feeding `stdin`; the exact bytes it wrote.
    pub fn run_raw(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the helper");
        let mut pipe = child.stdin.take().unwrap();
        let _ = pipe.write_all(stdin); // the helper may not read it (list)
        drop(pipe);
        child.wait_with_output().unwrap()
    }

    /// `store` of a credential.
    pub fn store(&self, server_url: &str, username: &str, secret: &str) -> Output {
        let json =
            serde_json::json!({"ServerURL": server_url, "Username": username, "Secret": secret});
        self.run(&["store"], format!("{json}\n").as_bytes())
    }

    /// `get` of a server URL.
    pub fn get(&self, server_url: &str) -> Output {
        self.run(&["get"], server_url.as_bytes())
    }

    /// `erase` of a server URL.
    pub fn erase(&self, server_url: &str) -> Output {
        self.run(&["erase"], server_url.as_bytes())
    }

    /// `list`, with `unused` on stdin as docker sends it.
    pub fn list(&self) -> Output {
        self.run(&["list"], b"unused")
    }
}

// ---------------------------------------------------------------------------
// Added for protocol.rs, store.rs, redaction.rs, python.rs and keyring.rs:
// running other programs (real clients, `sh`) in a sandbox.

impl Sandbox {
    /// A command for another program (a real client, `sh`) with this
    /// sandbox's environment.
    pub fn program(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .args(args);
        cmd
    }

    /// The value a variable has for this sandbox's runs.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Runs `cmd`, feeding `stdin` and then closing it, and captures everything.
pub fn run_command(mut cmd: Command, stdin: &[u8]) -> Output {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut pipe = child.stdin.take().unwrap();
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

// ---------------------------------------------------------------------------
// The Go reference helper's own answers (issue 9): tests/fixtures/go holds
// cases captured from Debian's docker-credential-secretservice by
// scripts/capture-go-fixtures.sh; each step is the stdin fed to it, its
// exact stdout and its exit code. Our binary must give the same bytes.

/// The captured cases, one directory each.
pub const GO_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/go");

/// One step of a captured case.
pub struct GoStep {
    /// `CASE/NN-VERB`, as the files are named.
    pub name: String,
    /// `store`, `get`, `erase` or `list`.
    pub verb: String,
    /// What the Go helper was fed.
    pub stdin: Vec<u8>,
    /// What it wrote to stdout, byte for byte.
    pub stdout: Vec<u8>,
    /// Its exit code.
    pub exit: i32,
}

/// The steps of the captured case `case`, in order.
pub fn go_case(case: &str) -> Vec<GoStep> {
    let dir = Path::new(GO_FIXTURES).join(case);
    let read =
        |path: PathBuf| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".stdin").map(str::to_string))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no steps in {}", dir.display());
    names
        .into_iter()
        .map(|name| {
            let verb = name
                .split_once('-')
                .unwrap_or_else(|| panic!("{case}/{name}: not NN-VERB"))
                .1
                .to_string();
            let exit = String::from_utf8(read(dir.join(format!("{name}.exit"))))
                .unwrap()
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{case}/{name}.exit: {e}"));
            GoStep {
                stdin: read(dir.join(format!("{name}.stdin"))),
                stdout: read(dir.join(format!("{name}.stdout"))),
                verb,
                exit,
                name: format!("{case}/{name}"),
            }
        })
        .collect()
}

/// Replays every step of the captured case `case` in `s` (which must hold
/// nothing yet: the Go helper started from an empty keyring).
#[track_caller]
pub fn replay_go_case(s: &Sandbox, case: &str) {
    for step in go_case(case) {
        step.replay(s);
    }
}

impl GoStep {
    /// Runs this step in `s` and asserts the Go helper's exact stdout bytes
    /// and exit code; stderr as decisions §1 has it: empty on success and on
    /// not-found, else the same line as stdout.
    #[track_caller]
    pub fn replay(&self, s: &Sandbox) -> std::process::Output {
        self.replay_expecting(s, &self.stdout)
    }

    /// As [`GoStep::replay`], with `want` in place of the captured stdout
    /// (for a documented difference between Go versions only).
    #[track_caller]
    pub fn replay_expecting(&self, s: &Sandbox, want: &[u8]) -> std::process::Output {
        let out = s.run_raw(&[&self.verb], &self.stdin);
        let code = out.status.code().unwrap_or(-1);
        let report = format!(
            "Go fixture {}: {BIN} {}\n--- stdin ---\n{}\n--- Go's stdout (exit {}) ---\n{}\n\
             --- our stdout (exit {code}) ---\n{}\n--- our stderr ---\n{}\n---",
            self.name,
            self.verb,
            shown(&self.stdin),
            self.exit,
            shown(want),
            shown(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.stdout == want && code == self.exit,
            "stdout or exit code differs from Go's\n{report}"
        );
        let quiet = code == 0 || out.stdout == b"credentials not found in native keychain\n";
        let want_stderr: &[u8] = if quiet { b"" } else { &out.stdout };
        assert!(out.stderr == want_stderr, "stderr\n{report}");
        out
    }
}

/// `bytes` for a failure message: text as it is, control characters as
/// `⟨0a⟩`, U+2028/U+2029 as `⟨u+2028⟩`, bytes that are not UTF-8 as `⟨xff⟩`.
fn shown(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c as u32 {
                n @ (0..=0x1f | 0x7f..=0x9f) => out.push_str(&format!("⟨{n:02x}⟩")),
                n @ (0x2028 | 0x2029) => out.push_str(&format!("⟨u+{n:04x}⟩")),
                _ => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("⟨x{b:02x}⟩"));
        }
    }
    out
}

/// The bytes Go writes for `s` when nothing in it needs escaping: printable
/// ASCII other than `"`, `\`, `<`, `>` and `&`. Anything else panics: such
/// answers come from a captured Go case, never from a copy of our encoder.
fn plain(s: &str) -> &str {
    assert!(
        s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !b"\"\\<>&".contains(&b)),
        "{s:?} needs Go's escaping: compare with a case in tests/fixtures/go instead"
    );
    s
}

/// `get`'s answer for plain values (see `plain`); go::plain_answers_are_gos
/// checks the format against the Go helper's bytes.
pub fn plain_answer(server_url: &str, username: &str, secret: &str) -> String {
    format!(
        "{{\"ServerURL\":\"{}\",\"Username\":\"{}\",\"Secret\":\"{}\"}}\n",
        plain(server_url),
        plain(username),
        plain(secret)
    )
}

/// `list`'s answer for plain keys and usernames, keys sorted bytewise as Go
/// sorts a map's keys.
pub fn plain_list(entries: &[(&str, &str)]) -> String {
    let mut sorted = entries.to_vec();
    sorted.sort();
    let body: Vec<String> = sorted
        .iter()
        .map(|(k, u)| format!("\"{}\":\"{}\"", plain(k), plain(u)))
        .collect();
    format!("{{{}}}\n", body.join(","))
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o777
}
