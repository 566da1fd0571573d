//! Private files: 0700 directories, 0600 files from creation, atomic
//! replace (temp + fsync + rename + fsync dir), and lock files for
//! read-modify-write. Looser modes are refused, never repaired silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

/// Creates `dir` (and missing parents) 0700, or checks that an existing one
/// is not open to group or others.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    create_private_dirs(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    check_mode(
        dir,
        &fs::metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?,
    )
}

/// Creates `dir` and any missing parents, each 0700. An existing directory is
/// left as it is, whatever its mode: for files that are not ours alone (docker's
/// `~/.docker` is often 0755), where [`ensure_private_dir`] would refuse it.
pub fn create_private_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)
}

/// A file or directory that group or others can access: refused, with the
/// `chmod` that fixes it, as OpenSSH does. A type of its own so callers can
/// tell it from "cannot write here".
#[derive(Debug)]
pub struct LooseMode {
    path: PathBuf,
    mode: u32,
    dir: bool,
}

impl std::fmt::Display for LooseMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let want = if self.dir { "700" } else { "600" };
        let path = self.path.display();
        write!(
            f,
            "`{path}` is accessible by others (mode {:04o}): run `chmod {want} {path}`",
            self.mode
        )
    }
}

impl std::error::Error for LooseMode {}

/// Refuses a file or directory that group or others can access ([`LooseMode`]).
#[cfg(unix)]
pub fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<()> {
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LooseMode {
            path: path.to_path_buf(),
            mode,
            dir: meta.is_dir(),
        }
        .into());
    }
    Ok(())
}

/// No file modes to check on this platform.
#[cfg(not(unix))]
pub fn check_mode(_path: &Path, _meta: &fs::Metadata) -> Result<()> {
    Ok(())
}

/// Reads a private file: `None` when it does not exist, an error when its
/// mode is too open or it cannot be read.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading `{}`", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("reading `{}`", path.display()))?;
    check_mode(path, &meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading `{}`", path.display()))?;
    Ok(Some(bytes))
}

/// Replaces `path` with `bytes` atomically: a 0600 temp file in the same
/// directory, written, fsynced, renamed over `path`, then the directory
/// fsynced. On any failure the previous file is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, WriteOptions::default())
        .with_context(|| format!("writing `{}`", path.display()))
}

/// How [`write_atomic_with`] leaves the file it writes. The default is
/// [`write_atomic`]'s: 0600 from creation, owned by the caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions<'a> {
    /// Permission bits the file gets exactly, set on the temp file before any
    /// byte is written; the temp file is created with no more than 0600 of
    /// them, so it is never wider than `mode` in between. `None`: created
    /// 0600 under the umask, nothing set afterwards.
    pub mode: Option<u32>,
    /// A file whose owner and group the new file takes where allowed (only
    /// root may give a file away; elsewhere this is a no-op), as docker's own
    /// save does: a user's file rewritten by `sudo` stays theirs.
    pub owner_of: Option<&'a fs::Metadata>,
}

/// [`write_atomic`] with a chosen mode and owner. `path` itself is replaced:
/// a symlink there is replaced, not written through, so a caller that means
/// to write through resolves it first. The error is the bare I/O error, for
/// the caller to put in context.
pub fn write_atomic_with(path: &Path, bytes: &[u8], options: WriteOptions<'_>) -> io::Result<()> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let mut open = OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    open.mode(0o600 & options.mode.unwrap_or(0o600));
    #[cfg(not(unix))]
    let _ = options;
    // A name left by a crashed process with our pid: take the next one.
    let (tmp, mut file) = loop {
        let tmp: PathBuf = dir.join(format!(
            ".{name}.tmp.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match open.open(&tmp) {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    };
    let result = (|| -> io::Result<()> {
        #[cfg(unix)]
        set_mode_and_owner(&file, options)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Gives a fresh, still empty temp file the mode and owner `options` ask for.
#[cfg(unix)]
fn set_mode_and_owner(file: &File, options: WriteOptions<'_>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = options.mode {
        // Created under the umask: give it exactly `mode`.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    if let Some(like) = options.owner_of {
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (like.uid(), like.gid()) {
            // Best effort, as docker's copyFilePermissions: only root may give files away.
            let _ = std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid()));
        }
    }
    Ok(())
}

/// Another process held a lock for longer than we wait: a type of its own so
/// callers tell it from a lock file they cannot open.
#[derive(Debug)]
pub struct LockTimeout {
    path: PathBuf,
    wait: Duration,
}

impl std::fmt::Display for LockTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (secs, path) = (self.wait.as_secs(), self.path.display());
        write!(f, "timed out after {secs}s waiting for the lock `{path}`")
    }
}

impl std::error::Error for LockTimeout {}

/// An exclusive lock on a never-renamed lock file, released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// Turns core dumps off for this process (no core file, no ptrace by
/// others of the same user): it holds secrets in memory.
pub fn no_core_dumps() {
    #[cfg(unix)]
    // SAFETY: plain system calls on this process with valid arguments; a
    // failure leaves the limits as they were, which is no worse.
    unsafe {
        let zero = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// How long a process waits for a lock another one holds (a mint, a store).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

/// Takes the exclusive lock on `path` (created 0600), waiting at most `wait`.
pub fn lock(path: &Path, wait: Duration) -> Result<LockGuard> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    let file = options
        .open(path)
        .with_context(|| format!("opening lock file `{}`", path.display()))?;
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < wait => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(25));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(LockTimeout {
                    path: path.to_path_buf(),
                    wait,
                }
                .into())
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking `{}`", path.display()))
            }
        }
    }
}

#[cfg(all(test, unix))]
pub(crate) mod tests {
    use super::*;

    /// A fresh path under the system temp dir (not yet created), for any module's tests.
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ibmcr-fsutil-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn dirs_and_files_are_private_from_creation() {
        let dir = temp_dir("modes").join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let f = dir.join("x.json");
        write_atomic(&f, b"one").unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        write_atomic(&f, b"two").unwrap();
        assert_eq!(read_private(&f).unwrap().unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left");
    }

    #[test]
    fn loose_modes_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("loose");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("s.json");
        write_atomic(&f, b"{}").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private(&f).unwrap_err().to_string();
        assert!(
            err.contains("mode 0644") && err.contains("chmod 600"),
            "{err}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("chmod 700"), "{err}");
        assert_eq!(
            fs::metadata(&dir).unwrap().mode() & 0o777,
            0o755,
            "not repaired silently"
        );
    }

    /// The file [`a_failed_write_leaves_the_old_file`] writes, in the child's
    /// working directory.
    const NO_ROOM_FILE: &str = "s.json";

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        // style.md §10: a failed write leaves the previous file byte-identical.
        // The write fails as on a full disk: in a child process whose files may
        // not grow (`ulimit -f 0`; SIGXFSZ ignored, so write(2) returns EFBIG
        // instead of killing it). Mode bits would not stop root; this does.
        let dir = temp_dir("fail");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join(NO_ROOM_FILE);
        write_atomic(&f, b"good").unwrap();
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"",
                &std::env::current_exe().unwrap().to_string_lossy(),
                "fsutil::tests::write_atomic_with_no_room",
                "--exact",
                "--ignored",
                "--test-threads=1",
            ])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "the child's write_atomic must fail cleanly\n{}{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        assert!(
            String::from_utf8_lossy(&child.stdout).contains("1 passed"),
            "the child ran the write\n{}",
            String::from_utf8_lossy(&child.stdout)
        );
        assert_eq!(fs::read(&f).unwrap(), b"good", "the old bytes are intact");
        assert_eq!(mode(&f), 0o600);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [NO_ROOM_FILE], "temp file removed");
    }

    /// The failing write of [`a_failed_write_leaves_the_old_file`], run by it
    /// in a child with `ulimit -f 0` and the target's directory as cwd.
    #[test]
    #[ignore = "run by a_failed_write_leaves_the_old_file in a child where files cannot grow"]
    fn write_atomic_with_no_room() {
        let f = std::env::current_dir().unwrap().join(NO_ROOM_FILE);
        assert!(
            f.exists(),
            "run only by a_failed_write_leaves_the_old_file, in its temp dir"
        );
        let err = write_atomic(&f, b"bad").expect_err("a write with no room must fail");
        assert_eq!(
            err.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::FileTooLarge),
            "fails for want of room: {err:#}"
        );
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn write_atomic_with_sets_the_exact_mode_asked_for() {
        let dir = temp_dir("with-mode");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("config.json");
        for mode in [0o644, 0o400, 0o600] {
            let options = WriteOptions {
                mode: Some(mode),
                owner_of: None,
            };
            write_atomic_with(&f, format!("{mode:o}").as_bytes(), options).unwrap();
            assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, mode);
            assert_eq!(fs::read_to_string(&f).unwrap(), format!("{mode:o}"));
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp files left");
    }

    #[test]
    fn write_atomic_with_keeps_the_owner_of_the_file_it_replaces() {
        // Only root may give a file away; elsewhere the owner is the caller anyway.
        if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
            return;
        }
        let dir = temp_dir("with-owner");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("config.json");
        write_atomic(&f, b"old").unwrap();
        std::os::unix::fs::chown(&f, Some(4321), Some(4321)).unwrap();
        let old = fs::metadata(&f).unwrap();
        let options = WriteOptions {
            mode: Some(0o644),
            owner_of: Some(&old),
        };
        write_atomic_with(&f, b"new", options).unwrap();
        let new = fs::metadata(&f).unwrap();
        assert_eq!((new.uid(), new.gid()), (4321, 4321));
        assert_eq!(fs::read(&f).unwrap(), b"new");
        write_atomic(&f, b"mine").unwrap();
        let mine = fs::metadata(&f).unwrap();
        assert_eq!(
            (mine.uid(), mine.mode() & 0o777),
            (0, 0o600),
            "no owner_of: the caller's"
        );
    }

    #[test]
    fn write_atomic_with_replaces_a_symlink_rather_than_following_it() {
        let dir = temp_dir("with-link");
        ensure_private_dir(&dir).unwrap();
        let (target, link) = (dir.join("target.json"), dir.join("link.json"));
        fs::write(&target, b"target").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic_with(&link, b"new", WriteOptions::default()).unwrap();
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&link).unwrap(), b"new");
        assert_eq!(fs::read(&target).unwrap(), b"target");
    }

    #[test]
    fn write_atomic_with_steps_over_a_stale_temp_file() {
        let dir = temp_dir("stale");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("s.json");
        // Names a crashed process with our pid could have left, for the counter values
        // this test process is likely to be at.
        let stale: Vec<PathBuf> = (0..1000)
            .map(|n| dir.join(format!(".s.json.tmp.{}.{n}", std::process::id())))
            .collect();
        for p in &stale {
            fs::write(p, b"stale").unwrap();
        }
        write_atomic(&f, b"fresh").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"fresh");
        assert!(stale.iter().all(|p| fs::read(p).unwrap() == b"stale"));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), stale.len() + 1);
    }

    #[test]
    fn create_private_dirs_makes_new_dirs_private_and_leaves_old_ones() {
        use std::os::unix::fs::PermissionsExt;
        let top = temp_dir("dirs");
        fs::create_dir(&top).unwrap();
        fs::set_permissions(&top, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dirs(&top.join("a/b")).unwrap();
        assert_eq!(fs::metadata(&top).unwrap().mode() & 0o777, 0o755, "left");
        for d in [top.join("a"), top.join("a/b")] {
            assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        create_private_dirs(&top).unwrap();
        assert_eq!(fs::metadata(&top).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn lock_is_exclusive_and_times_out() {
        let dir = temp_dir("lock");
        ensure_private_dir(&dir).unwrap();
        let p = dir.join(".lock");
        let held = lock(&p, Duration::from_secs(1)).unwrap();
        let err = lock(&p, Duration::from_millis(50)).unwrap_err().to_string();
        assert!(err.contains("waiting for the lock"), "{err}");
        drop(held);
        lock(&p, Duration::from_millis(50)).unwrap();
    }
}
