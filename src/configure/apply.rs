//! Carrying a plan out: the lines that report it, then a redacted diff (`--dry-run`) or a
//! 0600 backup and an atomic replace that keeps the file's mode and owner.

use std::fs;
use std::io;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::diff::unified_diff;
use super::options::Options;
use super::plan::{render, Plan, StoreChange};
use super::redact::redacted;
use super::targets::resolve_links;
use super::{BACKUP_SUFFIX, CREDS_STORE, CRED_HELPERS};
use crate::env::REGISTRY_AUTH_FILE;
use crate::fsutil::{self, WriteOptions};

impl Plan {
    /// Says in `lines` what the plan changes (or that it changes nothing), and makes the
    /// change unless `--dry-run`, where the lines end with the file's redacted diff.
    pub(super) fn apply(&self, options: &Options, lines: &mut Vec<String>) -> Result<()> {
        let shown = self.target.path.display().to_string();
        let undo = options.undo;
        if let StoreChange::Kept(old) = &self.store {
            lines.push(format!(
                "kept {CREDS_STORE}={} in {shown}: docker asks it for every other registry; \
                 `configure --creds-store` replaces it",
                crate::log::quoted(old)
            ));
        }
        if !self.foreign.is_empty() {
            lines.push(format!(
                "kept {CRED_HELPERS} in {shown} that name another helper, so ibmcr does not \
                 serve those hosts: {}",
                self.foreign.join(", ")
            ));
        }
        let exists = self.before.is_some();
        let changed = if undo {
            exists && self.before_doc != self.after_doc
        } else {
            !exists || self.before_doc != self.after_doc
        };
        if !changed {
            if undo {
                lines.push(format!("{shown}: nothing to undo"));
            } else {
                lines.push(format!("{shown} already configured"));
            }
            return Ok(());
        }
        let summary = self.summary();
        if options.dry_run {
            let new = if exists { "" } else { " (new file)" };
            if undo {
                lines.push(format!("would undo {shown}: remove {summary}"));
            } else {
                lines.push(format!("would configure {shown}{new}: {summary}"));
            }
            let before = if exists {
                render(&redacted(&self.before_doc))?
            } else {
                String::new()
            };
            let after = render(&redacted(&self.after_doc))?;
            let before_name = if exists { shown.as_str() } else { "/dev/null" };
            let diff = unified_diff(&before, &after, before_name, &shown);
            // Every line of the diff ends in `\n`: split so, the lines join back to it.
            lines.extend(diff.split_terminator('\n').map(str::to_owned));
            return Ok(());
        }
        let bytes = render(&self.after_doc)?;
        let written = self.write(bytes.as_bytes());
        match written {
            Ok(backup) => {
                let note = match backup {
                    Some(b) => format!(" (backup: {})", b.display()),
                    None => " (new file)".to_string(),
                };
                if undo {
                    lines.push(format!("undid {shown}: removed {summary}{note}"));
                } else {
                    lines.push(format!("configured {shown}: {summary}{note}"));
                }
                Ok(())
            }
            Err(e) if self.target.runtime_fallback && is_permission_denied(&e) => {
                lines.push(format!(
                    "skipped {shown}: permission denied (XDG_RUNTIME_DIR is unset; podman sets \
                     it itself, skopeo needs it or {REGISTRY_AUTH_FILE})"
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Backs up the old bytes (if any) and replaces the file; returns the backup's path.
    fn write(&self, bytes: &[u8]) -> Result<Option<PathBuf>> {
        let shown = self.target.path.display();
        let parent = match self.write_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fsutil::create_private_dirs(&parent)
            .with_context(|| format!("{shown}: creating {}", parent.display()))?;
        let backup = match &self.before {
            Some((old, meta)) => {
                let mut name = self.target.path.clone().into_os_string();
                name.push(BACKUP_SUFFIX);
                let backup = PathBuf::from(name);
                let backup_target = resolve_links(&backup)?;
                let options = WriteOptions {
                    mode: Some(0o600),
                    owner_of: Some(meta),
                };
                fsutil::write_atomic_with(&backup_target, old, options)
                    .with_context(|| format!("{shown}: writing the backup {}", backup.display()))?;
                Some(backup)
            }
            None => None,
        };
        // An existing file keeps its mode and owner: a user's `config.json` rewritten by
        // `sudo … configure` stays theirs and readable to them.
        let options = match &self.before {
            Some((_, meta)) => WriteOptions {
                mode: Some(file_mode(meta)),
                owner_of: Some(meta),
            },
            None => WriteOptions {
                mode: Some(0o600),
                owner_of: None,
            },
        };
        fsutil::write_atomic_with(&self.write_path, bytes, options)
            .with_context(|| format!("{shown}: writing it"))?;
        Ok(backup)
    }
}

/// The write failed for want of permission, at whatever step.
fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
    })
}

/// The permission bits a replaced file keeps (setuid and friends included).
#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_meta: &fs::Metadata) -> u32 {
    0o600
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn dry_run_writes_nothing_and_shows_no_secret() {
        let s = Scratch::new("dry");
        write(&s.docker(), EXISTING);
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--dry-run", "--creds-store"]).unwrap();
        assert_eq!(snapshot(&s.0), before, "nothing written");
        assert!(!out.contains(CANARY), "{out}");
        assert!(!out.contains("user:pw"), "{out}");
        assert_contains(
            &out,
            &format!(
            "would configure {}: credsStore=ibmcr (was desktop), credHelpers for {} IBM hosts\n",
            s.docker().display(),
            HOSTS.len()
        ),
        );
        assert_contains(&out, "-\t\"credsStore\": \"desktop\",\n");
        assert_contains(&out, "+\t\"credsStore\": \"ibmcr\",\n");
        assert_contains(&out, "+\t\t\"de.icr.io\": \"ibmcr\",\n");
        assert_contains(
            &out,
            &format!(
                "would configure {} (new file): credHelpers for {} IBM hosts\n--- /dev/null\n",
                s.persistent().display(),
                HOSTS.len()
            ),
        );
        // The whole document, as a diff with full context, shows the redacted values.
        let shown = unified_diff(
            "",
            &render(&redacted(&read_json(&s.docker()))).unwrap(),
            "a",
            "b",
        );
        assert!(shown.contains("\"auth\": \"****\""), "{shown}");
        assert!(shown.contains("http://****@proxy:3128"), "{shown}");
        assert!(!shown.contains(CANARY));
        // A dry run of undo also writes nothing.
        let out = configure(&s.env(&[]), &["--undo", "-n"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert_contains(&out, "nothing to undo");
    }

    #[test]
    fn dry_run_of_a_configured_file_says_so() {
        let s = Scratch::new("dry-done");
        configure(&s.env(&[]), &[]).unwrap();
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--dry-run"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert_eq!(out.matches(" already configured\n").count(), 3, "{out}");
        let out = configure(&s.env(&[]), &["--dry-run", "--undo"]).unwrap();
        assert_contains(
            &out,
            &format!(
                "would undo {}: remove credsStore=ibmcr",
                s.docker().display()
            ),
        );
        assert_contains(&out, "-\t\"credsStore\": \"ibmcr\"");
        assert_eq!(snapshot(&s.0), before);
    }

    #[test]
    fn a_replaced_file_keeps_its_owner_when_root_writes_it() {
        // Only root may give a file away; elsewhere the owner is the caller anyway.
        if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
            return;
        }
        let s = Scratch::new("owner");
        write(&s.docker(), "{}");
        std::os::unix::fs::chown(s.docker(), Some(4321), Some(4321)).unwrap();
        configure(&s.env(&[]), &[]).unwrap();
        for p in [s.docker(), backup(&s.docker())] {
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4321, 4321), "{}", p.display());
        }
        assert!(all_hosts_ibmcr(&read_json(&s.docker())));
    }
}
