//! Which files `configure` sets up: docker's `config.json` and the containers tools'
//! `auth.json` files, each once however many names it has, and where a symlink ends.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::env::{Env, DOCKER_CONFIG, REGISTRY_AUTH_FILE};

/// What a file is for: docker's config also gets `credsStore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Kind {
    Containers,
    Docker,
}

/// One file to set up.
#[derive(Debug)]
pub(super) struct Target {
    /// The path as the tools name it (shown to the user).
    pub(super) path: PathBuf,
    pub(super) kind: Kind,
    /// `/run/containers/<uid>/auth.json`, chosen only because `XDG_RUNTIME_DIR` is unset:
    /// a user who may not create it is told so and the run goes on.
    pub(super) runtime_fallback: bool,
}

/// The files to set up, in order, each once (two names of one file are merged).
pub(super) fn targets(env: &Env, uid: u32) -> Result<Vec<Target>> {
    let mut list = vec![Target {
        path: docker_file(env)?,
        kind: Kind::Docker,
        runtime_fallback: false,
    }];
    for (path, runtime_fallback) in containers_files(env, uid)? {
        list.push(Target {
            path,
            kind: Kind::Containers,
            runtime_fallback,
        });
    }
    let mut unique: Vec<(PathBuf, Target)> = Vec::with_capacity(list.len());
    for target in list {
        let id = identity(&target.path);
        match unique.iter_mut().find(|(other, _)| *other == id) {
            Some((_, kept)) => {
                kept.kind = kept.kind.max(target.kind);
                kept.runtime_fallback &= target.runtime_fallback;
            }
            None => unique.push((id, target)),
        }
    }
    Ok(unique.into_iter().map(|(_, t)| t).collect())
}

fn no_home(or: &str) -> anyhow::Error {
    anyhow!("no home directory: set HOME or {or}")
}

/// docker's `config.json`: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(super) fn docker_file(env: &Env) -> Result<PathBuf> {
    match (&env.docker_config, &env.home) {
        (Some(dir), _) => Ok(dir.join("config.json")),
        (None, Some(home)) => Ok(home.join(".docker").join("config.json")),
        (None, None) => Err(no_home(DOCKER_CONFIG)),
    }
}

/// The containers tools' files `configure` writes, each with whether it is
/// `/run/containers/<uid>/auth.json` chosen only because `XDG_RUNTIME_DIR`
/// is unset: `$REGISTRY_AUTH_FILE` alone, else the persistent file, then the
/// one `podman login` writes. c/image reads the last first.
pub(super) fn containers_files(env: &Env, uid: u32) -> Result<Vec<(PathBuf, bool)>> {
    if let Some(file) = &env.registry_auth_file {
        return Ok(vec![(file.clone(), false)]);
    }
    let config_home = match (&env.xdg_config_home, &env.home) {
        (Some(dir), _) => dir.clone(),
        (None, Some(home)) => home.join(".config"),
        (None, None) => return Err(no_home(REGISTRY_AUTH_FILE)),
    };
    let login = match &env.xdg_runtime_dir {
        Some(dir) => (dir.join("containers").join("auth.json"), false),
        None => (
            PathBuf::from(format!("/run/containers/{uid}/auth.json")),
            true,
        ),
    };
    Ok(vec![
        (config_home.join("containers").join("auth.json"), false),
        login,
    ])
}

/// A name that is the same for two paths of one file (as far as the file system can tell).
fn identity(path: &Path) -> PathBuf {
    let resolved = resolve_links(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(p) = fs::canonicalize(&resolved) {
        return p;
    }
    match (resolved.parent(), resolved.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(resolved),
        _ => resolved,
    }
}

/// The file a path ends at, following symlinks, including a dangling last one (so a
/// write creates the file the link points to, as docker does).
pub(super) fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)
                    .with_context(|| format!("reading the symlink {}", current.display()))?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e).with_context(|| format!("{}", current.display())),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

#[cfg(all(test, unix))]
mod tests {
    use std::ffi::OsString;

    use super::super::testing::*;
    use super::*;

    #[test]
    fn a_symlinked_file_is_written_through() {
        let s = Scratch::new("symlink");
        write(&s.path("dotfiles/docker.json"), EXISTING);
        fs::create_dir_all(s.path("home/.docker")).unwrap();
        std::os::unix::fs::symlink("../../dotfiles/docker.json", s.docker()).unwrap();
        // A dangling link: its target is created.
        fs::create_dir_all(s.path("home/.config/containers")).unwrap();
        std::os::unix::fs::symlink(s.path("dotfiles/auth.json"), s.persistent()).unwrap();
        configure(&s.env(&[]), &[]).unwrap();
        for (link, target) in [
            (s.docker(), s.path("dotfiles/docker.json")),
            (s.persistent(), s.path("dotfiles/auth.json")),
        ] {
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert!(all_hosts_ibmcr(&read_json(&target)), "{}", target.display());
        }
        assert_eq!(read_json(&s.docker())["psFormat"], "table {{.ID}}");
        assert_eq!(fs::read_to_string(backup(&s.docker())).unwrap(), EXISTING);
    }

    #[test]
    fn registry_auth_file_replaces_both_containers_files() {
        let s = Scratch::new("authfile");
        let file = s.path("auth/podman.json");
        let env = s.env(&[("REGISTRY_AUTH_FILE", file.clone())]);
        let out = configure(&env, &[]).unwrap();
        assert!(all_hosts_ibmcr(&read_json(&file)));
        assert!(s.docker().exists());
        assert!(!s.persistent().exists() && !s.runtime().exists());
        assert_eq!(out.matches("configured ").count(), 2, "{out}");
    }

    #[test]
    fn one_file_named_twice_is_configured_once_as_docker_s() {
        let s = Scratch::new("same");
        let env = s.env(&[
            ("DOCKER_CONFIG", s.path("conf")),
            ("REGISTRY_AUTH_FILE", s.path("conf/config.json")),
        ]);
        let out = configure(&env, &[]).unwrap();
        assert_eq!(out.matches("configured ").count(), 1, "{out}");
        assert_eq!(
            read_json(&s.path("conf/config.json"))[CREDS_STORE],
            HELPER_NAME
        );
    }

    #[test]
    fn the_files_follow_the_environment() {
        let s = Scratch::new("paths");
        let env = |vars: &[(&str, &str)]| {
            Env::from_lookup(
                |name| {
                    vars.iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| OsString::from(s.path(v)))
                },
                false,
            )
            .unwrap()
        };
        let paths = |env: &Env, uid| -> Vec<(PathBuf, Kind, bool)> {
            targets(env, uid)
                .unwrap()
                .into_iter()
                .map(|t| (t.path, t.kind, t.runtime_fallback))
                .collect()
        };
        assert_eq!(
            paths(&env(&[("HOME", "h")]), 1000),
            vec![
                (s.path("h/.docker/config.json"), Kind::Docker, false),
                (
                    s.path("h/.config/containers/auth.json"),
                    Kind::Containers,
                    false
                ),
                (
                    PathBuf::from("/run/containers/1000/auth.json"),
                    Kind::Containers,
                    true
                ),
            ]
        );
        assert_eq!(
            paths(
                &env(&[
                    ("HOME", "h"),
                    ("DOCKER_CONFIG", "d"),
                    ("XDG_CONFIG_HOME", "x"),
                    ("XDG_RUNTIME_DIR", "r")
                ]),
                0
            ),
            vec![
                (s.path("d/config.json"), Kind::Docker, false),
                (s.path("x/containers/auth.json"), Kind::Containers, false),
                (s.path("r/containers/auth.json"), Kind::Containers, false),
            ]
        );
        let err = targets(&env(&[]), 0).unwrap_err().to_string();
        assert_eq!(err, "no home directory: set HOME or DOCKER_CONFIG");
    }
}
