//! Private files: 0700 directories, 0600 files from creation, atomic
//! replace (temp + fsync + rename + fsync dir), and lock files for
//! read-modify-write. What the helper reads is a regular file of bounded
//! size; its own files are never read through a symlink and must be owned
//! by the caller or root, in a directory nobody else can write to, as
//! OpenSSH asks of `~/.ssh`. Looser modes are refused, never repaired
//! silently.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};

/// Creates `dir` (and missing parents) 0700, or checks that an existing one
/// is owned by the caller (or root) and not open to group or others.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    create_private_dirs(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let meta = fs::metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    check_owner(dir, &meta)?;
    Ok(check_mode(dir, &meta, Checks::Private)?)
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

/// A file or directory that group or others can access (or, where only
/// that matters, write to): refused, with the `chmod` that fixes it, as
/// OpenSSH does. A type of its own so callers can tell it from "cannot
/// write here".
#[derive(Debug)]
pub struct LooseMode {
    path: PathBuf,
    mode: u32,
    want: u32,
    /// Refused for the write bits alone.
    writable: bool,
}

impl std::fmt::Display for LooseMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, mode, want) = (self.path.display(), self.mode, self.want);
        let access = if self.writable {
            "writable"
        } else {
            "accessible"
        };
        write!(
            f,
            "`{path}` is {access} by others (mode {mode:04o}): run `chmod {want:o} {path}`"
        )
    }
}

impl std::error::Error for LooseMode {}

/// A file or directory owned by someone other than the caller or root:
/// whoever owns it could have written it. Refused, as OpenSSH does; a type
/// of its own, like [`LooseMode`].
#[derive(Debug)]
pub struct ForeignOwner {
    path: PathBuf,
    owner: u32,
    me: u32,
    dir: bool,
}

impl std::fmt::Display for ForeignOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, owner, me) = (self.path.display(), self.owner, self.me);
        write!(
            f,
            "`{path}` is owned by uid {owner}, not by you (uid {me}): "
        )?;
        if self.dir {
            // Often root with a user's HOME (`sudo -E`): taking the user's
            // directory away is not the first fix to offer.
            let home = crate::env::IBMCR_HOME;
            write!(
                f,
                "use a directory of your own (set HOME or {home}) or run `chown {me} {path}`"
            )
        } else {
            write!(f, "run `chown {me} {path}` or remove it")
        }
    }
}

impl std::error::Error for ForeignOwner {}

/// Something other than a regular file where the helper reads one: a FIFO
/// would block the read forever, a device never end it, a symlink lead
/// anywhere.
#[derive(Debug)]
pub struct NotRegular {
    path: PathBuf,
    what: &'static str,
}

impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match self.what {
            SYMLINK => write!(
                f,
                "`{path}` is a symbolic link, which this helper does not follow: replace it with the file itself"
            ),
            what => write!(f, "`{path}` is a {what}, not a regular file"),
        }
    }
}

impl std::error::Error for NotRegular {}

const SYMLINK: &str = "symbolic link";

/// A file larger than its reader's bound: never read (a sparse file can
/// claim terabytes).
#[derive(Debug)]
pub struct TooLarge {
    path: PathBuf,
    limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, limit) = (self.path.display(), format_size(self.limit));
        write!(
            f,
            "`{path}` is larger than {limit}, the most this helper reads"
        )
    }
}

impl std::error::Error for TooLarge {}

/// `n` bytes as a message says it: `4 MiB`, `1 KiB`, `100 bytes`.
pub fn format_size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// What [`read_file`] checks besides the type and size every file read gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    /// The helper's own files holding secrets or choices (store, cache,
    /// keyring index, backend): never read through a symlink; the file owned
    /// by the caller or root and open to nobody else (0600); its directory
    /// owned likewise and writable by nobody else (a 0700 one is created).
    Private,
    /// The helper's settings file: as [`Checks::Private`], but group and
    /// others may read it (it holds no secrets); nobody else may write it.
    Settings,
    /// Another program's file (docker's `config.json`): symlinks followed,
    /// as that program does; its owner and mode are that program's business.
    Foreign,
}

/// The effective uid: what the kernel checks, and what owns what we create.
#[cfg(unix)]
fn my_uid() -> u32 {
    // SAFETY: no arguments, no failure, no memory touched.
    unsafe { libc::geteuid() }
}

/// Refuses a file or directory owned by someone other than the caller or
/// root ([`ForeignOwner`]): OpenSSH's rule.
#[cfg(unix)]
fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), ForeignOwner> {
    let (owner, me) = (meta.uid(), my_uid());
    if acceptable_owner(owner, me) {
        return Ok(());
    }
    Err(ForeignOwner {
        path: path.to_path_buf(),
        owner,
        me,
        dir: meta.is_dir(),
    })
}

/// OpenSSH's rule: the caller, or root (who could have written anything anyway).
fn acceptable_owner(owner: u32, me: u32) -> bool {
    owner == me || owner == 0
}

/// No owners to check on this platform.
#[cfg(not(unix))]
fn check_owner(_path: &Path, _meta: &fs::Metadata) -> Result<(), ForeignOwner> {
    Ok(())
}

/// Refuses a mode that gives others what `checks` keeps from them
/// ([`LooseMode`]): for a private file or a directory being written to, any
/// access by group or others; for a directory being read from, or the
/// settings file, write access (whoever can write there could have swapped
/// what is read).
#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata, checks: Checks) -> Result<(), LooseMode> {
    let mode = meta.mode() & 0o7777;
    let (forbidden, want) = match checks {
        Checks::Private if meta.is_dir() => (0o077, 0o700),
        Checks::Private => (0o077, 0o600),
        Checks::Settings => (0o022, mode & !0o022),
        Checks::Foreign => return Ok(()),
    };
    if mode & forbidden == 0 {
        return Ok(());
    }
    Err(LooseMode {
        path: path.to_path_buf(),
        mode,
        want,
        writable: forbidden == 0o022,
    })
}

/// No file modes to check on this platform.
#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &fs::Metadata, _checks: Checks) -> Result<(), LooseMode> {
    Ok(())
}

/// Refuses a directory others can write to, or that someone else owns: the
/// files in it cannot be trusted. The directory may be a symlink; what it
/// points to is checked. One `stat`.
fn check_dir_for_reading(path: &Path, checks: Checks) -> Result<()> {
    let dir = parent_dir(path);
    let meta = fs::metadata(dir).with_context(|| format!("reading `{}`", dir.display()))?;
    check_owner(dir, &meta)?;
    #[cfg(unix)]
    if meta.mode() & 0o022 != 0 {
        let mode = meta.mode() & 0o7777;
        let want = match checks {
            Checks::Settings => mode & !0o022,
            _ => 0o700,
        };
        return Err(LooseMode {
            path: dir.to_path_buf(),
            mode,
            want,
            writable: true,
        }
        .into());
    }
    #[cfg(not(unix))]
    let _ = checks;
    Ok(())
}

/// What a file that is not a regular one is, in words.
fn file_type_name(meta: &fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        } else if kind.is_char_device() {
            return "character device";
        } else if kind.is_block_device() {
            return "block device";
        } else if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        SYMLINK
    } else {
        "special file"
    }
}

/// Opens `path` with `options` without following a symlink at its end
/// (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`, which
/// regular files ignore). A symlink there is a [`NotRegular`].
fn open_no_follow(path: &Path, options: &mut OpenOptions) -> Result<File> {
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    options.open(path).map_err(|e| refuse_symlink(path, e))
}

/// An open error as said to the user: a symlink where none is followed is
/// named as such; anything else is the I/O error.
fn refuse_symlink(path: &Path, e: io::Error) -> anyhow::Error {
    let link = e.kind() != io::ErrorKind::NotFound
        && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if link {
        return NotRegular {
            path: path.to_path_buf(),
            what: SYMLINK,
        }
        .into();
    }
    anyhow::Error::new(e)
}

/// Reads a regular file of at most `limit` bytes that passes `checks`, with
/// the metadata of what was read: `None` when it does not exist. The file
/// is opened without blocking (a FIFO cannot hang the read) and, unless
/// [`Checks::Foreign`], without following a symlink; type, owner, mode and
/// size are those of the opened file (`fstat`), so nothing can be swapped in
/// between. Its directory is checked only when there is a file to trust.
pub fn read_file(
    path: &Path,
    checks: Checks,
    limit: u64,
) -> Result<Option<(Vec<u8>, fs::Metadata)>> {
    let reading = || format!("reading `{}`", path.display());
    let mut options = OpenOptions::new();
    options.read(true);
    let opened = match checks {
        Checks::Foreign => {
            #[cfg(unix)]
            options.custom_flags(libc::O_NONBLOCK);
            options.open(path).map_err(anyhow::Error::new)
        }
        _ => open_no_follow(path, &mut options),
    };
    let not_found = |e: &anyhow::Error| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
    };
    if matches!(&opened, Err(e) if not_found(e)) {
        return Ok(None);
    }
    if checks != Checks::Foreign {
        check_dir_for_reading(path, checks)?;
    }
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.is::<NotRegular>() => return Err(e),
        Err(e) => return Err(e).with_context(reading),
    };
    let meta = file.metadata().with_context(reading)?;
    if !meta.is_file() {
        let what = file_type_name(&meta);
        return Err(NotRegular {
            path: path.to_path_buf(),
            what,
        }
        .into());
    }
    if checks != Checks::Foreign {
        check_owner(path, &meta)?;
        check_mode(path, &meta, checks)?;
    }
    let too_large = || TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large().into());
    }
    // Sized from the metadata only once that is within the bound (one read
    // on the cached `get` path, not six); `take` stops a file that grew since.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(reading)?;
    if bytes.len() as u64 > limit {
        return Err(too_large().into());
    }
    Ok(Some((bytes, meta)))
}

/// Reads one of the helper's own files ([`Checks::Private`]) of at most
/// `limit` bytes: `None` when it does not exist.
pub fn read_private(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    Ok(read_file(path, Checks::Private, limit)?.map(|(bytes, _)| bytes))
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
fn alive(pid: u32) -> bool {
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
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
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
    if !meta.is_file() {
        let what = file_type_name(&meta);
        return Err(NotRegular {
            path: path.to_path_buf(),
            what,
        }
        .into());
    }
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
        assert_eq!(read_private(&f, 3).unwrap().unwrap(), b"two");
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
        let err = read_private(&f, 1 << 20).unwrap_err().to_string();
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
    fn the_owner_may_be_the_caller_or_root_only() {
        assert!(acceptable_owner(1000, 1000));
        assert!(acceptable_owner(0, 1000), "root's files, as OpenSSH allows");
        assert!(acceptable_owner(0, 0));
        assert!(!acceptable_owner(1001, 1000));
        assert!(!acceptable_owner(1000, 0), "root refuses a user's file");
    }

    #[test]
    fn reads_refuse_other_owners_links_special_files_and_big_files() {
        // issue 10.1, 10.4, 10.5
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("reads");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("s.json");
        write_atomic(&f, b"0123456789").unwrap();
        assert_eq!(read_private(&f, 10).unwrap().unwrap(), b"0123456789");
        let err = read_private(&f, 9).unwrap_err();
        assert!(err.is::<TooLarge>(), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is larger than 9 bytes, the most this helper reads",
                f.display()
            )
        );

        if my_uid() == 0 {
            std::os::unix::fs::chown(&f, Some(4321), None).unwrap();
            let err = read_private(&f, 10).unwrap_err();
            assert!(err.is::<ForeignOwner>(), "{err}");
            let path = f.display();
            assert_eq!(
                err.to_string(),
                format!("`{path}` is owned by uid 4321, not by you (uid 0): run `chown 0 {path}` or remove it")
            );
            std::os::unix::fs::chown(&f, Some(0), None).unwrap();
            std::os::unix::fs::chown(&dir, Some(4321), None).unwrap();
            let err = read_private(&f, 10).unwrap_err();
            let path = dir.display();
            assert_eq!(
                err.to_string(),
                format!("`{path}` is owned by uid 4321, not by you (uid 0): use a directory of your own (set HOME or IBMCR_HOME) or run `chown 0 {path}`")
            );
            assert!(ensure_private_dir(&dir).unwrap_err().is::<ForeignOwner>());
            std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        }

        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let err = read_private(&link, 10).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        let (bytes, _) = read_file(&link, Checks::Foreign, 10).unwrap().unwrap();
        assert_eq!(bytes, b"0123456789", "other programs' links are followed");

        let fifo = dir.join("fifo.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for checks in [Checks::Private, Checks::Settings, Checks::Foreign] {
            let err = read_file(&fifo, checks, 10).unwrap_err();
            assert!(err.is::<NotRegular>(), "{err}");
            assert!(
                err.to_string().ends_with("is a FIFO, not a regular file"),
                "{err}"
            );
        }
        let err = read_file(Path::new("/dev/zero"), Checks::Foreign, 10).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        assert!(read_private(&dir.join("missing"), 10).unwrap().is_none());

        // The directory: readable by others is fine for reading, writable is not.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        read_private(&f, 10).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = read_private(&f, 10).unwrap_err();
        assert!(err.is::<LooseMode>(), "{err}");
        assert!(err
            .to_string()
            .contains("is writable by others (mode 1777): run `chmod 700"));
        assert!(
            read_private(&dir.join("missing"), 10).unwrap().is_none(),
            "nothing to trust"
        );
    }

    #[test]
    fn settings_may_be_read_by_others_not_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("settings");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let f = dir.join("config.json");
        fs::write(&f, b"{}").unwrap();
        for (mode, ok) in [(0o644, true), (0o600, true), (0o664, false), (0o646, false)] {
            fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            let read = read_file(&f, Checks::Settings, 2);
            assert_eq!(read.is_ok(), ok, "{mode:o}: {read:?}");
        }
        let err = read_file(&f, Checks::Settings, 2).unwrap_err().to_string();
        let path = f.display();
        assert_eq!(
            err,
            format!("`{path}` is writable by others (mode 0646): run `chmod 644 {path}`")
        );
    }

    #[test]
    fn a_lock_is_never_taken_through_a_symlink_or_on_a_fifo() {
        // issue 10.1: a planted lock symlink made root create its target.
        let dir = temp_dir("lock-link");
        ensure_private_dir(&dir).unwrap();
        let (target, link) = (dir.join("nologin"), dir.join("store.lock"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = lock(&link, Duration::from_millis(50)).unwrap_err();
        assert!(err.is::<NotRegular>(), "{err}");
        assert!(!target.exists(), "nothing created through the link");

        let fifo = dir.join("tokens.lock");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = lock(&fifo, Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");

        if my_uid() == 0 {
            let theirs = dir.join("theirs.lock");
            fs::write(&theirs, b"").unwrap();
            std::os::unix::fs::chown(&theirs, Some(4321), None).unwrap();
            let err = lock(&theirs, Duration::from_millis(50)).unwrap_err();
            assert!(err.is::<ForeignOwner>(), "{err}");
        }
    }

    #[test]
    fn temp_files_of_dead_writers_are_found_and_removed_under_the_lock() {
        // issue 10.6
        let dir = temp_dir("stale-temps");
        ensure_private_dir(&dir).unwrap();
        let f = dir.join("s.json");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let me = std::process::id();
        let stale = [
            dir.join(format!(".s.json.tmp.{dead}.0")),
            dir.join(format!(".s.json.tmp.{dead}.17")),
        ];
        let kept = [
            dir.join(format!(".s.json.tmp.{me}.0")),       // alive
            dir.join(".s.json.tmp.1.0"),                   // init: alive
            dir.join(format!(".s.json.tmp.{dead}")),       // not our name
            dir.join(format!(".s.json.tmp.{dead}.x")),     // not our name
            dir.join(format!(".s.json.tmp.+{dead}.0")),    // not our name
            dir.join(format!(".other.json.tmp.{dead}.0")), // another file's
            dir.join(format!("s.json.tmp.{dead}.0")),      // not hidden
        ];
        for p in stale.iter().chain(&kept) {
            fs::write(p, b"x").unwrap();
        }
        let mut found = stale_temps(&f);
        found.sort();
        assert_eq!(found, stale);
        let lock = lock(&dir.join(".lock"), Duration::from_secs(1)).unwrap();
        remove_stale_temps(&f, &lock);
        assert!(stale.iter().all(|p| !p.exists()));
        assert!(kept.iter().all(|p| p.exists()));
        assert!(stale_temps(&dir.join("missing/s.json")).is_empty());
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
