//! What makes a file or directory the helper's own: its owner, mode and
//! type, and the typed errors that say which check failed and how to fix it.

use super::*;

/// A file or directory that group or others can access (or, where only
/// that matters, write to): refused, with the `chmod` that fixes it, as
/// OpenSSH does. A type of its own so callers can tell it from "cannot
/// write here".
#[derive(Debug)]
pub struct LooseMode {
    pub(super) path: PathBuf,
    pub(super) mode: u32,
    pub(super) want: u32,
    /// Refused for the write bits alone.
    pub(super) writable: bool,
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
    pub(super) path: PathBuf,
    pub(super) owner: u32,
    pub(super) me: u32,
    pub(super) dir: bool,
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
    pub(super) path: PathBuf,
    pub(super) what: &'static str,
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

pub(super) const SYMLINK: &str = "symbolic link";

/// A file larger than its reader's bound: never read (a sparse file can
/// claim terabytes).
#[derive(Debug)]
pub struct TooLarge {
    pub(super) path: PathBuf,
    pub(super) limit: u64,
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
pub(super) fn my_uid() -> u32 {
    // SAFETY: no arguments, no failure, no memory touched.
    unsafe { libc::geteuid() }
}

/// Refuses a file or directory owned by someone other than the caller or
/// root ([`ForeignOwner`]): OpenSSH's rule.
#[cfg(unix)]
pub(super) fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), ForeignOwner> {
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
pub(super) fn acceptable_owner(owner: u32, me: u32) -> bool {
    owner == me || owner == 0
}

/// No owners to check on this platform.
#[cfg(not(unix))]
pub(super) fn check_owner(_path: &Path, _meta: &fs::Metadata) -> Result<(), ForeignOwner> {
    Ok(())
}

/// Refuses a mode that gives others what `checks` keeps from them
/// ([`LooseMode`]): for a private file or a directory being written to, any
/// access by group or others; for a directory being read from, or the
/// settings file, write access (whoever can write there could have swapped
/// what is read).
#[cfg(unix)]
pub(super) fn check_mode(
    path: &Path,
    meta: &fs::Metadata,
    checks: Checks,
) -> Result<(), LooseMode> {
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
pub(super) fn check_mode(
    _path: &Path,
    _meta: &fs::Metadata,
    _checks: Checks,
) -> Result<(), LooseMode> {
    Ok(())
}

/// Refuses a directory others can write to, or that someone else owns: the
/// files in it cannot be trusted. The directory may be a symlink; what it
/// points to is checked. One `stat`.
pub(super) fn check_dir_for_reading(path: &Path, checks: Checks) -> Result<()> {
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
pub(super) fn file_type_name(meta: &fs::Metadata) -> &'static str {
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

/// Refuses anything but a regular file (`meta` of the opened file at `path`).
pub(super) fn check_regular(path: &Path, meta: &fs::Metadata) -> Result<(), NotRegular> {
    if meta.is_file() {
        return Ok(());
    }
    Err(NotRegular {
        path: path.to_path_buf(),
        what: file_type_name(meta),
    })
}
