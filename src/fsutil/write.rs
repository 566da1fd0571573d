//! Replacing a file atomically (temp file, fsync, rename, fsync dir), and
//! removing the temp files writers left when they died.

use super::*;

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
    let dir = parent_dir(path);
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
pub(super) fn set_mode_and_owner(file: &File, options: WriteOptions<'_>) -> io::Result<()> {
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

/// The temp files [`write_atomic`] left beside `path` in processes that died
/// before their rename (a SIGKILL mid-write): `.<name>.tmp.<pid>.<n>` whose
/// pid is not alive. Reads the directory only.
pub fn stale_temps(path: &Path) -> Vec<PathBuf> {
    let (dir, Some(name)) = (parent_dir(path), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!(".{}.tmp.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let Some((pid, n)) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|rest| rest.split_once('.'))
            else {
                return false;
            };
            digits(pid) && digits(n) && pid.parse().is_ok_and(|pid| !alive(pid))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Removes [`stale_temps`] of `path`, best effort: they may hold secrets
/// erased since. `_lock` is the lock every writer of `path` holds, so no
/// writer is between its create and its rename meanwhile.
pub fn remove_stale_temps(path: &Path, _lock: &LockGuard) {
    for stale in stale_temps(path) {
        match fs::remove_file(&stale) {
            Ok(()) => crate::debug!(
                "fs",
                "removed `{}`, left by a writer that died",
                stale.display()
            ),
            Err(e) => crate::debug!("fs", "could not remove `{}`: {e}", stale.display()),
        }
    }
}

/// False only when no process `pid` exists (`kill(pid, 0)` fails with
/// `ESRCH`); a process of another user still counts, and so does this one.
pub(super) fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(id) = libc::pid_t::try_from(pid) else {
            return true;
        };
        if id <= 0 || pid == std::process::id() {
            return true;
        }
        // SAFETY: signal 0 sends nothing; it only asks whether `id` exists.
        let sent = unsafe { libc::kill(id, 0) };
        sent == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The directory `path` is in (`.` for a bare name).
pub(super) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}
