//! Names the commit the helper is built from, for `version` and `doctor`:
//! `IBMCR_COMMIT` is the short hash of `HEAD`, with `-dirty` when the
//! sources of the binary differ from it, or `unknown` outside a git
//! checkout of this crate (a `cargo install` from a tarball).

// A build script reads cargo's variables; the crate's rule (clippy.toml) is for the helper.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binary is built from: a change in any of these can change it.
const SOURCES: &[&str] = &["src", "build.rs", "Cargo.toml", "Cargo.lock"];

fn main() {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = commit(&dir).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=IBMCR_COMMIT={commit}");
}

/// `git` in `dir`, its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The short hash of `HEAD` (and `-dirty`), when `dir` is the top of a git
/// work tree: a crate unpacked inside someone else's repository is not it.
fn commit(dir: &Path) -> Option<String> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // Build again when HEAD moves (a commit, a checkout) or a source changes.
    rerun_if(git(dir, &["rev-parse", "--git-path", "HEAD"]).map(|p| dir.join(p)));
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        rerun_if(git(dir, &["rev-parse", "--git-path", &branch]).map(|p| dir.join(p)));
    }
    rerun_if(git(dir, &["rev-parse", "--git-path", "packed-refs"]).map(|p| dir.join(p)));
    for source in SOURCES {
        rerun_if(Some(dir.join(source)));
    }
    let hash = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let mut diff = vec!["diff", "--quiet", "HEAD", "--"];
    diff.extend(SOURCES);
    let clean = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(&diff)
        .status()
        .ok()?;
    Some(match clean.code() {
        Some(0) => hash,
        Some(1) => format!("{hash}-dirty"),
        _ => return None,
    })
}

/// Tells cargo to run this again when `path` changes; only for a path that
/// exists (a missing one would make cargo run it on every build).
fn rerun_if(path: Option<PathBuf>) {
    if let Some(path) = path.filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
