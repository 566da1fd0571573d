//! `configure`: docker and the containers tools (podman, skopeo, buildah) set up to use
//! this helper for every IBM registry host (../shared/decisions.md §6).
//!
//! Files, in order:
//! 1. docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`): `credHelpers` for every
//!    host of [`HOSTS`](crate::registry::HOSTS) (they survive a podman login's rewrite of that file), and
//!    `credsStore` when none is set.
//! 2. `${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`: the same `credHelpers`; lasts
//!    across reboots. c/image ignores `credsStore` (../shared/protocol.md §2.3).
//! 3. the file `podman login` writes: `$XDG_RUNTIME_DIR/containers/auth.json`, else
//!    `/run/containers/<uid>/auth.json`; a login goes through a helper only when that same
//!    file names it. `$REGISTRY_AUTH_FILE`, when set, replaces 2 and 3.
//!
//! Every other key and value is kept; a changed file is written tab-indented as docker
//! writes it, with its keys sorted (serde_json's map). A file that would not change is not
//! touched; one that changes first gets a 0600 backup beside it (`<file>.ibmcr-backup`),
//! then an atomic replace that keeps its mode and owner. Symlinks are written through.
//! All files are read and checked before any is written, so a malformed one stops the run
//! with nothing changed.
//!
//! The run says what it did in a [`Report`]; `protocol.rs` writes it to stdout.

mod apply;
mod diff;
mod inspect;
mod options;
mod plan;
mod redact;
mod targets;
#[cfg(all(test, unix))]
mod testing;

use anyhow::Result;

use crate::env::Env;
pub use inspect::{containers_configs, docker_config, ConfigFile, Route};
use options::Options;
use plan::Plan;
use targets::targets;

/// The helper's name in `credsStore`/`credHelpers`: docker runs `docker-credential-ibmcr`.
pub const HELPER_NAME: &str = "ibmcr";

/// Suffix of the backup written beside each file before it changes.
pub const BACKUP_SUFFIX: &str = ".ibmcr-backup";

/// The most of docker's or the containers tools' file that is read: far
/// more than any such file holds. A larger one stops the run, nothing changed.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The usage line of the verb.
pub const USAGE: &str =
    "usage: docker-credential-ibmcr configure [--dry-run] [--undo] [--creds-store]";

const CREDS_STORE: &str = "credsStore";
const CRED_HELPERS: &str = "credHelpers";

/// `docker-credential-ibmcr configure [--dry-run] [--undo] [--creds-store]`
///
/// Writes the `credsStore`/`credHelpers` entries of the module docs into docker's
/// `config.json` and the containers tools' `auth.json` files found through `env`
/// (`uid` names `/run/containers/<uid>/auth.json` when `XDG_RUNTIME_DIR` is unset), and
/// reports one line per file and action.
///
/// - `--dry-run`: report what would change, as a diff of each file with the secrets of
///   `auths` redacted; write nothing.
/// - `--undo`: remove exactly what `configure` adds: `credHelpers` entries naming `ibmcr`
///   for IBM hosts (and `credHelpers` itself if that empties it), and `credsStore` if it
///   is `ibmcr`.
/// - `--creds-store`: replace a `credsStore` naming another helper (kept by default).
///
/// # Errors
/// In [`Report::result`]: an unknown option; no home directory to find a file in; a file
/// that is not a JSON object or cannot be read (nothing is written then); a write that
/// fails (files written before it stay written, each one whole, and are reported).
pub fn run(args: &[String], env: &Env, uid: u32) -> Report {
    let mut lines = Vec::new();
    let result = configure_files(args, env, uid, &mut lines);
    Report { lines, result }
}

/// What a run has to say, and how it ended.
#[derive(Debug)]
#[must_use]
pub struct Report {
    /// One line each, without its newline: to show before any error, since they stand
    /// even when the run failed part-way (a file written before the failure stays written).
    pub lines: Vec<String>,
    /// `Ok` when every file was set up (or there was nothing to do); else the error to
    /// show after the lines.
    pub result: Result<()>,
}

/// What `--help` says.
const HELP: [&str; 2] = [
    USAGE,
    "sets credHelpers (and credsStore) to ibmcr for every IBM registry host in docker's \
     config.json and the containers tools' auth.json",
];

/// The last line of a run that set files up: root's files are not the user's.
fn root_note(uid: u32) -> &'static str {
    if uid == 0 {
        "note: as root this set up root's own files (`sudo docker`, root podman); root \
         usually has no keyring, so `store` falls back to the file store"
    } else {
        "note: `sudo docker` and root podman read root's files, not these: run \
         `sudo docker-credential-ibmcr configure` for them"
    }
}

/// [`run`], saying what it does in `lines`.
fn configure_files(args: &[String], env: &Env, uid: u32, lines: &mut Vec<String>) -> Result<()> {
    let Some(options) = Options::parse(args)? else {
        lines.extend(HELP.map(str::to_owned));
        return Ok(());
    };
    // Every file read and checked before any is written.
    let plans = targets(env, uid)?
        .into_iter()
        .map(|target| Plan::new(target, &options))
        .collect::<Result<Vec<Plan>>>()?;
    for plan in &plans {
        plan.apply(&options, lines)?;
    }
    if !options.undo {
        lines.push(root_note(uid).to_owned());
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn fresh_machine_gets_three_private_files() {
        let s = Scratch::new("fresh");
        let out = configure(&s.env(&[]), &[]).unwrap();
        let docker = read_json(&s.docker());
        assert_eq!(docker[CREDS_STORE], HELPER_NAME);
        assert!(all_hosts_ibmcr(&docker));
        assert_eq!(docker[CRED_HELPERS].as_object().unwrap().len(), HOSTS.len());
        for p in [s.persistent(), s.runtime()] {
            let doc = read_json(&p);
            assert!(all_hosts_ibmcr(&doc), "{}", p.display());
            assert!(doc.get(CREDS_STORE).is_none(), "c/image ignores credsStore");
            assert_eq!(mode(&p), 0o600);
            assert!(!backup(&p).exists(), "nothing to back up");
        }
        assert_eq!(mode(&s.docker()), 0o600);
        assert_eq!(mode(&s.path("home/.docker")), 0o700);
        assert_eq!(mode(&s.path("home/.config")), 0o700);
        assert_eq!(mode(&s.path("home/.config/containers")), 0o700);
        let n = HOSTS.len();
        assert_contains(
            &out,
            &format!(
                "configured {}: credsStore=ibmcr, credHelpers for {n} IBM hosts (new file)\n",
                s.docker().display()
            ),
        );
        assert_contains(
            &out,
            &format!(
                "configured {}: credHelpers for {n} IBM hosts (new file)\n",
                s.persistent().display()
            ),
        );
        assert!(out.contains("sudo docker"), "root hint: {out}");
        // No temp files left behind.
        let names: Vec<_> = snapshot(&s.0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn a_malformed_file_stops_the_run_with_nothing_written() {
        let s = Scratch::new("malformed");
        let bad = format!(r#"{{"auths": {{"x": {{"auth": "{CANARY}"}}}},"#);
        write(&s.persistent(), &bad);
        let err = configure(&s.env(&[]), &[]).unwrap_err();
        let msg = format!("{err:#}");
        assert_eq!(
            msg,
            format!(
                "{}: malformed JSON at line 1 column {}; no file was changed",
                s.persistent().display(),
                bad.len()
            )
        );
        assert!(!msg.contains('\n') && !msg.contains(CANARY));
        assert_eq!(fs::read_to_string(s.persistent()).unwrap(), bad);
        assert!(
            !s.docker().exists(),
            "docker's file comes first, yet nothing was written"
        );
        assert!(!s.runtime().exists());

        for (text, why) in [
            ("[1, 2]", "not a JSON object"),
            (
                r#"{"credHelpers": ["x"]}"#,
                "credHelpers is not a JSON object",
            ),
            (r#"{"credsStore": 7}"#, "credsStore is not a string"),
        ] {
            write(&s.docker(), text);
            let err = configure(&s.env(&[]), &[]).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("{}: {why}; no file was changed", s.docker().display())
            );
            assert_eq!(fs::read_to_string(s.docker()).unwrap(), text);
        }
    }

    #[test]
    fn as_root_the_hint_says_so() {
        let s = Scratch::new("root");
        let out = stdout(run(&[], &s.env(&[]), 0)).unwrap();
        assert_contains(&out, "note: as root");
    }
}
