//! The `binary` check: the `docker-credential-ibmcr` docker would run is the
//! first one on `PATH` (docker, podman and skopeo all look it up there);
//! its version should be this one's.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Check;
use crate::protocol::{version_line, NAME};
use crate::{log, Env};

/// How long a copy found on `PATH` may take to print its version.
const VERSION_WAIT: Duration = Duration::from_secs(5);

/// The `binary` check.
pub fn check(env: &Env) -> Check {
    let found = on_path(env);
    let Some((first, others)) = found.split_first() else {
        return Check::problem(
            "binary",
            format!("no {NAME} on PATH: docker, podman and skopeo cannot run it"),
            Some(
                "install it (./install.sh or the .deb) or add the directory that holds it to PATH"
                    .to_string(),
            ),
        );
    };
    let this = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let ours = version_line();
    let theirs = match first.canonicalize().ok() == this {
        true => Ok(ours.clone()),
        false => version_of(first),
    };
    let shadowed = match others {
        [] => String::new(),
        _ => format!(
            "; it shadows {}",
            others
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let first_shown = first.display();
    match theirs {
        Ok(v) if v == ours => Check::ok(
            "binary",
            format!("docker runs {first_shown} ({}){shadowed}", short(&v)),
        ),
        Ok(v) => {
            let here = this
                .as_deref()
                .and_then(Path::parent)
                .map(|d| format!(", or put {} first on PATH", d.display()))
                .unwrap_or_default();
            let this_one = match others.iter().any(|p| p.canonicalize().ok() == this) {
                true => "which shadows this one",
                false => "not this one",
            };
            Check::problem(
                "binary",
                format!(
                    "docker runs {first_shown} ({}), {this_one} ({}){shadowed}",
                    short(&v),
                    short(&ours)
                ),
                Some(format!("replace or remove {first_shown}{here}")),
            )
        }
        Err(why) => Check::problem(
            "binary",
            format!("docker runs {first_shown}, which does not answer `version` ({why})"),
            Some(format!("reinstall it, or remove {first_shown}")),
        ),
    }
}

/// Every executable `docker-credential-ibmcr` on `PATH`, in `PATH` order,
/// each file once. Relative entries are skipped, as Go's `exec.LookPath`
/// (docker's) refuses what they find.
fn on_path(env: &Env) -> Vec<PathBuf> {
    let Some(path) = &env.path_var else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(path).filter(|d| d.is_absolute()) {
        let candidate = dir.join(NAME);
        if !is_executable(&candidate) {
            continue;
        }
        let real = candidate
            .canonicalize()
            .unwrap_or_else(|_| candidate.clone());
        if !seen.contains(&real) {
            seen.push(real);
            found.push(candidate);
        }
    }
    found
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// What `<path> version` prints on its first line, within [`VERSION_WAIT`].
fn version_of(path: &Path) -> Result<String, String> {
    let mut child = Command::new(path)
        .arg("version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run it: {}", log::one_line(&e.to_string())))?;
    let deadline = Instant::now() + VERSION_WAIT;
    let late = || format!("no answer within {}s", VERSION_WAIT.as_secs());
    // Its first line, read aside: a child it left running may hold the
    // pipe open long after it exits, and nothing may wait past the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            let mut line = Vec::new();
            let _ = BufReader::new(stdout.take(4096)).read_until(b'\n', &mut line);
            let _ = tx.send(line);
        });
    }
    let line = rx.recv_timeout(VERSION_WAIT);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let (Ok(line), Some(status)) = (line, status) else {
        return Err(late());
    };
    let first = String::from_utf8_lossy(&line).trim().to_string();
    match (status.success(), first.is_empty()) {
        (true, false) => Ok(log::excerpt(&first, 200)),
        _ => Err(format!("exit {}", status.code().unwrap_or(-1))),
    }
}

/// `v0.1.0, commit abc1234`: a version line without the names before it.
fn short(version: &str) -> String {
    let prefix = format!("{NAME} ({}) ", crate::protocol::PACKAGE);
    let version = version.strip_prefix(&prefix).unwrap_or(version);
    match version
        .strip_suffix(')')
        .and_then(|v| v.split_once(" (commit "))
    {
        Some((v, commit)) => format!("{v}, commit {commit}"),
        None => version.to_string(),
    }
}
