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
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating `{}`", dir.display()))?;
    check_mode(
        dir,
        &fs::metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?,
    )
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
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&tmp)?;
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
    result.with_context(|| format!("writing `{}`", path.display()))
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
mod tests {
    use super::*;

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

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = temp_dir("fail");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("s.json");
        write_atomic(&f, b"good").unwrap();
        // A directory where the temp file's rename target would need to be a file.
        let target = dir.join("sub");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"").unwrap();
        assert!(write_atomic(&target, b"bad").is_err());
        assert_eq!(fs::read(&f).unwrap(), b"good");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2, "temp file removed");
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
