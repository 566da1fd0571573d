//! Reading a file: never through a symlink (for the helper's own files),
//! never blocking on a FIFO, a regular file of bounded size, checked on the
//! opened descriptor.

use super::*;

/// Opens `path` with `options` without following a symlink at its end
/// (`O_NOFOLLOW`) and without blocking on a FIFO (`O_NONBLOCK`, which
/// regular files ignore). A symlink there is a [`NotRegular`].
pub(super) fn open_no_follow(path: &Path, options: &mut OpenOptions) -> Result<File> {
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    options.open(path).map_err(|e| refuse_symlink(path, e))
}

/// An open error as said to the user: a symlink where none is followed is
/// named as such; anything else is the I/O error.
pub(super) fn refuse_symlink(path: &Path, e: io::Error) -> anyhow::Error {
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
            options.open(path)
        }
        _ => {
            #[cfg(unix)]
            options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
            options.open(path)
        }
    };
    // A missing file is the common case (no settings file): answered before
    // any error value exists, since an `anyhow::Error` captures a backtrace
    // when RUST_BACKTRACE is set, which costs a static binary milliseconds.
    if matches!(&opened, Err(e) if e.kind() == io::ErrorKind::NotFound) {
        return Ok(None);
    }
    let opened = opened.map_err(|e| match checks {
        Checks::Foreign => anyhow::Error::new(e),
        _ => refuse_symlink(path, e),
    });
    if checks != Checks::Foreign {
        check_dir_for_reading(path, checks)?;
    }
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if e.is::<NotRegular>() => return Err(e),
        Err(e) => return Err(e).with_context(reading),
    };
    let meta = file.metadata().with_context(reading)?;
    check_regular(path, &meta)?;
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
