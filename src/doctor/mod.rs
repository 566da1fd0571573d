//! `doctor [HOST] [--json]`: why a pull from HOST (default `us.icr.io`)
//! would fail, checked in the order a pull meets the causes, one line each:
//!
//! 1. `binary`: the `docker-credential-ibmcr` docker would run (the first on
//!    `PATH`), copies it shadows or that shadow it, its version;
//! 2. `docker`: docker's `config.json` sends HOST to ibmcr (`credHelpers` or
//!    `credsStore`), and no `auths` entry answers it instead;
//! 3. `containers`: the files podman, skopeo and buildah read, in their
//!    order, send HOST to ibmcr before any `auths` entry does;
//! 4. `store`: the credential store answers (keyring reachable, file modes);
//! 5. `identity`: where HOST's answer comes from, the chain and the source
//!    that wins, never the secret;
//! 6. `cache`: the token cache's state for that identity;
//! 7. `clock`: this clock against the `Date` of IAM's reply;
//! 8. `mint`: one real IAM mint when no valid token is cached, so `ok`
//!    means a pull gets credentials;
//! 9. `cp.icr.io`: IBM's Entitled Registry sent to ibmcr by mistake.
//!
//! It prints no secret and writes nothing but the token cache (the mint's
//! token, as a `get` would cache it). `protocol.rs` writes the report.

mod binary;
mod files;
mod identity;

use crate::protocol::Error;
use crate::registry::{IbmHost, Registry};
use crate::{log, Env};

/// The usage line of the verb.
pub const USAGE: &str = "usage: docker-credential-ibmcr doctor [HOST] [--json]";
/// The host checked when none is given: the region most pulls go to.
pub const DEFAULT_HOST: &str = "us.icr.io";

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// `binary`, `docker`, `containers`, `store`, `identity`, `cache`,
    /// `clock`, `mint` or `cp.icr.io`.
    pub name: &'static str,
    /// True when nothing is wrong.
    pub ok: bool,
    /// What was found, in one line, without a secret.
    pub detail: String,
    /// For a problem whose detail does not already say it: what fixes it.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: String) -> Check {
        Check {
            name,
            ok: true,
            detail,
            fix: None,
        }
    }

    fn problem(name: &'static str, detail: String, fix: Option<String>) -> Check {
        Check {
            name,
            ok: false,
            detail,
            fix,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    /// The host checked.
    pub host: IbmHost,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// `--json`: one JSON document instead of lines.
    pub json: bool,
}

impl Report {
    /// True when every check passed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// What `doctor` was asked to do.
#[derive(Debug)]
pub enum Run {
    /// `--help`: print this line.
    Usage(&'static str),
    /// The checks ran.
    Checked(Report),
}

/// `doctor [HOST] [--json]`. `now` is the clock; `uid` names
/// `/run/containers/<uid>/auth.json` when `XDG_RUNTIME_DIR` is unset.
///
/// # Errors
/// Only for arguments it does not understand, or a HOST that is not an IBM
/// registry host: everything else it finds is a problem line.
pub fn run(args: &[String], env: &Env, now: u64, uid: u32) -> Result<Run, Error> {
    let (mut host, mut json) = (None, false);
    for arg in args {
        match arg.as_str() {
            "--json" => json = true,
            "-h" | "--help" => return Ok(Run::Usage(USAGE)),
            flag if flag.starts_with('-') => {
                return Err(line(match log::option_argument(flag) {
                    Some(flag) => format!("doctor: unknown option `{flag}`; {USAGE}"),
                    None => format!("doctor: an unknown option; {USAGE}"),
                }))
            }
            name if host.is_none() => host = Some(name),
            _ => return Err(line(format!("doctor: one HOST at most; {USAGE}"))),
        }
    }
    let name = host.unwrap_or(DEFAULT_HOST);
    let Registry::Ibm(host) = Registry::parse(name) else {
        return Err(line(match log::host_argument(name) {
            Some(name) => format!(
                "doctor: `{name}` is not an IBM Cloud Container Registry host (the README lists them)"
            ),
            None => "doctor: HOST is not an IBM Cloud Container Registry host such as us.icr.io (the README lists them)".to_string(),
        }));
    };
    let mut checks = vec![
        binary::check(env),
        files::docker(env, host),
        files::containers(env, uid, host),
    ];
    let found = identity::checks(env, host, now);
    checks.extend(found.checks);
    checks.push(files::entitled_registry(env, uid, found.entitled_stored));
    Ok(Run::Checked(Report { host, checks, json }))
}

fn line(text: String) -> Error {
    Error::Other(anyhow::anyhow!(text))
}

/// The fix for a file that does not send the host to ibmcr.
const CONFIGURE_FIX: &str = "run `docker-credential-ibmcr configure`";

/// [`CONFIGURE_FIX`] as a check's fix.
fn configure_fix() -> Option<String> {
    Some(CONFIGURE_FIX.to_string())
}

/// A span of seconds for a person: `45 s`, `59 min`, `3 h`, `2 d`.
fn human(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7_200 => format!("{} min", secs / 60),
        7_200..172_800 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_the_largest_unit_that_fits_twice() {
        let spans = [0, 119, 120, 3_599, 7_199, 7_200, 172_799, 172_800];
        let read: Vec<String> = spans.iter().map(|s| human(*s)).collect();
        assert_eq!(
            read,
            ["0 s", "119 s", "2 min", "59 min", "119 min", "2 h", "47 h", "2 d"]
        );
    }
}
