//! Lock files for read-modify-write: taken without following links, waited
//! for at most a bound.

use super::*;

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

/// How long a process waits for a lock another one holds (a mint, a store).
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

/// Takes the exclusive lock on `path` (created 0600), waiting at most `wait`.
/// A symlink there is refused, never followed (a link planted to
/// `/etc/nologin` would have root create that file), and so is anything but
/// a regular file of the caller's or root's.
pub fn lock(path: &Path, wait: Duration) -> Result<LockGuard> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    options.mode(0o600);
    let file = open_no_follow(path, &mut options).map_err(|e| match e.is::<NotRegular>() {
        true => e,
        false => e.context(format!("opening lock file `{}`", path.display())),
    })?;
    let meta = file
        .metadata()
        .with_context(|| format!("opening lock file `{}`", path.display()))?;
    check_regular(path, &meta)?;
    check_owner(path, &meta)?;
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
