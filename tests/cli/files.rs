//! Issue 10.1, 10.4–10.6: the files the helper reads and writes. Files and
//! directories another user owns, symlinks, FIFOs, devices, huge files and
//! the temp files of killed writers. Each test failed before its fix. They
//! need root (chown to another uid, mknod), like the rest of issue 10's.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::hardening::setup;
use crate::util::{Output, Sandbox, BIN};

/// Another user: no account is needed to own a file.
const OTHER: u32 = 4321;
/// A secret only the file under test holds.
const CANARY: &str = "CANARY-secret-files-7e21";

/// One terabyte, for sparse files that take no disk space.
const TB: u64 = 1_000_000_000_000;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A FIFO at `path` (mode 0600), replacing whatever was there.
fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let ok = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

/// A sparse file of `len` bytes at `path` (mode 0600), replacing whatever was there.
fn sparse(path: &Path, len: u64) {
    let _ = fs::remove_file(path);
    let file = fs::File::create(path).unwrap();
    file.set_len(len).unwrap();
    chmod(path, 0o600);
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Runs the helper with at most 1 GiB of address space, killed after 10 s: a
/// read that never ends or never stops growing shows up as a timeout or an
/// abort, not as a hung test or a machine out of memory.
fn bounded(s: &Sandbox, args: &[&str], stdin: &[u8]) -> Output {
    let mut all = vec!["--as=1073741824", "--", BIN];
    all.extend_from_slice(args);
    let mut child = s
        .program("prlimit", &all)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prlimit (util-linux)");
    let mut pipe = child.stdin.take().unwrap();
    let _ = std::io::Write::write_all(&mut pipe, stdin);
    drop(pipe);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut timed_out = false;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            timed_out = true;
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    let code = match (out.status.code(), out.status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => -1,
    };
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if timed_out {
        stderr.push_str("[killed: still running after 10 s]");
    }
    Output {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
        what: format!("{BIN} {}", args.join(" ")),
    }
}

/// Every regular file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.is_file() {
                let bytes = fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// A store document holding `secret` for `key`, as the helper writes it.
fn store_document(key: &str, secret: &str) -> String {
    serde_json::json!({"v": 1, "credentials": {key: {"username": "u", "secret": secret, "stored_at": 1}}})
        .to_string()
}

/// Asserts a bearer answer and returns the token.
#[track_caller]
fn bearer(out: &Output) -> String {
    let (_, username, secret) = out.answer();
    assert_eq!(username, "iambearer", "{out}");
    secret
}

#[test]
fn a_home_another_user_owns_is_refused() {
    // issue 10.1: root with an IBMCR_HOME another user made stored its key in
    // that user's directory, and answered the store they put there.
    let mut s = Sandbox::new();
    let home = s.root.join("theirs");
    fs::create_dir(&home).unwrap();
    chmod(&home, 0o700);
    chown(&home, OTHER);
    s.set("IBMCR_HOME", home.to_str().unwrap());
    let owned = format!(
        "`{0}` is owned by uid {OTHER}, not by you (uid 0): use a directory of your own (set HOME or IBMCR_HOME) or run `chown 0 {0}`",
        home.display()
    );
    s.store("ghcr.io", "u", CANARY).error_line(&owned);
    assert_eq!(
        fs::read_dir(&home).unwrap().count(),
        0,
        "nothing written there"
    );

    // Their own store, in their own directory.
    let file = home.join("store.json");
    fs::write(&file, store_document("ghcr.io", CANARY)).unwrap();
    chmod(&file, 0o600);
    chown(&file, OTHER);
    let out = s.get("ghcr.io").error_line("is owned by uid 4321");
    assert!(!out.stdout.contains(CANARY), "{out}");
    s.list().error_line("is owned by uid 4321");
}

#[test]
fn files_another_user_swapped_in_are_refused() {
    // issue 10.1: a tokens.json or store.json owned by someone else was answered.
    let (fake, s) = setup();
    s.store("ghcr.io", "u", CANARY).ok();
    let token = bearer(&s.get("us.icr.io").ok());

    chown(&s.cache_file(), OTHER);
    let fix = format!("run `chown 0 {}`", s.cache_file().display());
    let out = s.get("us.icr.io").error_line(&fix);
    assert!(out.stdout.contains("owned by uid 4321"), "{out}");
    assert!(!out.stdout.contains(&token), "{out}");
    chown(&s.cache_file(), 0);
    assert_eq!(
        bearer(&s.get("us.icr.io").ok()),
        token,
        "answered once ours again"
    );

    chown(&s.store_file(), OTHER);
    let fix = format!("run `chown 0 {}`", s.store_file().display());
    s.get("ghcr.io").error_line(&fix);
    s.list().error_line(&fix);
    s.store("quay.io", "u", "p").error_line(&fix);
    assert_eq!(fake.stats().iam_mints, 1);
}

#[test]
fn a_lock_file_symlink_is_never_followed() {
    // issue 10.1: a store.lock symlink made root create an empty file where
    // it pointed (`/etc/nologin` stops every login).
    let (_fake, s) = setup();
    let nologin = s.root.join("nologin");
    let lock = s.data_dir().join("store.lock");
    fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&nologin, &lock).unwrap();
    s.store("ghcr.io", "u", "p").error_line("store.lock");
    assert!(!nologin.exists(), "no file created through the link");

    let nologin = s.root.join("nologin-cache");
    let lock = s.cache_dir().join("tokens.lock");
    let _ = fs::remove_file(&lock);
    std::os::unix::fs::symlink(&nologin, &lock).unwrap();
    let _ = s.get("us.icr.io");
    assert!(!nologin.exists(), "no file created through the link");
}

#[test]
fn a_shared_directory_is_checked_on_reads() {
    // issue 10.1: with IBMCR_HOME at mode 1777, root answered a store another
    // user planted, and a store anyone could have swapped.
    let mut s = Sandbox::new();
    let home = s.root.join("shared");
    fs::create_dir(&home).unwrap();
    chmod(&home, 0o1777);
    s.set("IBMCR_HOME", home.to_str().unwrap());
    let fix = format!("run `chmod 700 {}`", home.display());
    let file = home.join("store.json");
    fs::write(&file, store_document("ghcr.io", CANARY)).unwrap();
    chmod(&file, 0o600);
    chown(&file, OTHER);
    let out = s.get("ghcr.io").error_line(&fix);
    assert!(
        out.stdout.contains("is writable by others (mode 1777)"),
        "{out}"
    );
    assert!(!out.stdout.contains(CANARY), "{out}");

    // Root's own file, in a directory anyone can write to (and so swap it).
    chown(&file, 0);
    s.get("ghcr.io").error_line(&fix);
    s.list().error_line(&fix);

    // Others may list the directory, not write to it: read as before.
    chmod(&home, 0o755);
    s.get("ghcr.io").ok();
}

#[test]
fn a_symlinked_store_is_not_followed() {
    // issue 10.1: read_private followed a symlink at store.json wherever it pointed.
    let s = Sandbox::new();
    s.store("ghcr.io", "u", "p").ok();
    let elsewhere = s.root.join("elsewhere.json");
    fs::write(&elsewhere, store_document("ghcr.io", CANARY)).unwrap();
    chmod(&elsewhere, 0o600);
    fs::remove_file(s.store_file()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.store_file()).unwrap();
    let out = s.get("ghcr.io").error_line("is a symbolic link");
    assert!(!out.stdout.contains(CANARY), "{out}");
}

#[test]
fn a_fifo_in_place_of_a_file_never_hangs() {
    // issue 10.4: a FIFO at tokens.json or store.json hung `get` forever.
    let (fake, mut s) = setup();
    s.store("ghcr.io", "u", "p").ok();
    bearer(&s.get("us.icr.io").ok());

    // The cache: ignored (one debug line), minted again, replaced.
    mkfifo(&s.cache_file());
    s.set("IBMCR_LOG", "debug");
    let out = bounded(&s, &["get"], b"us.icr.io").ok();
    bearer(&out);
    assert!(
        out.stderr.contains("ignoring `") && out.stderr.contains("not a regular file"),
        "{out}"
    );
    s.unset("IBMCR_LOG");
    assert!(fs::metadata(s.cache_file()).unwrap().is_file(), "replaced");
    assert_eq!(fake.stats().iam_mints, 2);

    // The store and the settings file: one line.
    mkfifo(&s.store_file());
    bounded(&s, &["get"], b"ghcr.io").error_line("is a FIFO, not a regular file");
    bounded(&s, &["list"], b"").error_line("is a FIFO, not a regular file");
    fs::remove_file(s.store_file()).unwrap();
    let settings = s.home().join(".config/ibmcr/config.json");
    fs::create_dir_all(settings.parent().unwrap()).unwrap();
    mkfifo(&settings);
    bounded(&s, &["get"], b"us.icr.io").error_line("is a FIFO, not a regular file");
}

#[test]
fn a_settings_file_that_is_a_device_or_a_link_to_one_is_refused() {
    // issue 10.4: a settings file linked to /dev/zero ate 3 GB in 10 s.
    let (_fake, s) = setup();
    let settings = s.home().join(".config/ibmcr/config.json");
    fs::create_dir_all(settings.parent().unwrap()).unwrap();
    let ok = Command::new("mknod")
        .arg(&settings)
        .args(["c", "1", "5"])
        .status()
        .unwrap();
    assert!(ok.success(), "mknod (root only)");
    bounded(&s, &["get"], b"us.icr.io").error_line("is a character device, not a regular file");
    fs::remove_file(&settings).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &settings).unwrap();
    bounded(&s, &["get"], b"us.icr.io").error_line("is a symbolic link");
}

#[test]
fn configure_reads_regular_files_of_a_bounded_size() {
    // issue 10.4, 10.5: configure follows symlinks by design (decisions §6),
    // so a config.json linked to /dev/zero was read until memory ran out.
    let mut s = Sandbox::new();
    let docker = s.root.join("docker");
    fs::create_dir(&docker).unwrap();
    s.set("DOCKER_CONFIG", docker.to_str().unwrap());
    s.set("XDG_RUNTIME_DIR", s.root.join("run").to_str().unwrap());
    let config = docker.join("config.json");
    std::os::unix::fs::symlink("/dev/zero", &config).unwrap();
    let out = bounded(&s, &["configure"], b"").fails();
    assert!(
        out.stderr
            .contains("is a character device, not a regular file"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out}");

    fs::remove_file(&config).unwrap();
    sparse(&config, 15 * TB);
    let out = bounded(&s, &["configure"], b"").fails();
    assert!(out.stderr.contains("is larger than"), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    fs::remove_file(&config).unwrap();
}

#[test]
fn huge_files_never_abort() {
    // issue 10.5: a 15 TB sparse store or cache aborted the process (SIGABRT,
    // exit 134, no protocol line); a 1 GB one cost 1 GB of memory.
    let (fake, mut s) = setup();
    s.store("ghcr.io", "u", "p").ok();
    bearer(&s.get("us.icr.io").ok());

    // The cache: ignored with a debug line, minted again, replaced.
    sparse(&s.cache_file(), 15 * TB);
    s.set("IBMCR_LOG", "debug");
    let out = bounded(&s, &["get"], b"us.icr.io").ok();
    bearer(&out);
    assert!(
        out.stderr.contains("ignoring `") && out.stderr.contains("is larger than"),
        "{out}"
    );
    s.unset("IBMCR_LOG");
    assert!(
        fs::metadata(s.cache_file()).unwrap().len() < 1 << 20,
        "replaced"
    );
    assert_eq!(fake.stats().iam_mints, 2);

    // A valid cache just past the bound is not read either.
    let mut cache = fs::read(s.cache_file()).unwrap();
    cache.resize((1 << 20) + 1, b' ');
    fs::write(s.cache_file(), &cache).unwrap();
    bearer(&bounded(&s, &["get"], b"us.icr.io").ok());
    assert_eq!(fake.stats().iam_mints, 3, "the oversized cache was ignored");

    // The store: one line.
    sparse(&s.store_file(), 15 * TB);
    let fix = format!("`{}` is larger than", s.store_file().display());
    bounded(&s, &["get"], b"ghcr.io").error_line(&fix);
    bounded(&s, &["list"], b"").error_line(&fix);
    bounded(
        &s,
        &["store"],
        br#"{"ServerURL":"quay.io","Username":"u","Secret":"p"}"#,
    )
    .error_line(&fix);
    fs::remove_file(s.store_file()).unwrap();
}

#[test]
fn an_erase_leaves_no_copy_of_the_erased_secret() {
    // issue 10.6: `.store.json.tmp.PID.N` files survived a SIGKILL mid-`store`
    // and kept secrets that were erased later.
    let s = Sandbox::new();
    s.store("ghcr.io", "u", CANARY).ok();
    s.store("quay.io", "u", "p").ok();
    let dead = dead_pid();
    // What a `store` killed before its rename leaves: the whole document.
    let stale = s.data_dir().join(format!(".store.json.tmp.{dead}.0"));
    fs::copy(s.store_file(), &stale).unwrap();
    // A writer that is still alive keeps its temp file.
    let live = s
        .data_dir()
        .join(format!(".store.json.tmp.{}.0", std::process::id()));
    fs::write(&live, b"{}").unwrap();
    s.erase("ghcr.io").ok();
    assert_eq!(files_holding(&s.data_dir(), CANARY), Vec::<PathBuf>::new());
    assert!(live.exists(), "a live writer's temp file stays");

    // A secret only a killed first `store` wrote: the erase finds nothing
    // stored, and still leaves no copy.
    let stale = s.data_dir().join(format!(".store.json.tmp.{dead}.1"));
    fs::write(&stale, store_document("ghcr.io", CANARY)).unwrap();
    chmod(&stale, 0o600);
    s.erase("ghcr.io").ok();
    assert_eq!(files_holding(&s.data_dir(), CANARY), Vec::<PathBuf>::new());
    s.get("quay.io").ok();
}

#[test]
fn a_cache_rewrite_removes_temp_files_of_dead_writers() {
    // issue 10.6: the same for the token cache, on the erase of its host.
    let (_fake, s) = setup();
    bearer(&s.get("us.icr.io").ok());
    let stale = s
        .cache_dir()
        .join(format!(".tokens.json.tmp.{}.3", dead_pid()));
    let mut bytes = fs::read(s.cache_file()).unwrap();
    bytes.extend_from_slice(CANARY.as_bytes());
    fs::write(&stale, bytes).unwrap();
    chmod(&stale, 0o600);
    s.erase("us.icr.io").ok();
    assert!(!stale.exists(), "{} left", stale.display());
    assert_eq!(files_holding(&s.cache_dir(), CANARY), Vec::<PathBuf>::new());
}
