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

mod checks;
mod lock;
mod read;
mod write;

pub use checks::*;
pub use lock::*;
pub use read::*;
pub use write::*;

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
