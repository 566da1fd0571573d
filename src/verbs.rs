//! The verbs: each reads its input, routes IBM hosts to `ibm/` and every
//! other registry to the plain store, and has `protocol.rs` write the answer.

use std::io::{Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::protocol::{self, Action, Error};
use crate::registry::Registry;
use crate::store::{self, Record};
use crate::{configure, debug, doctor, ibm, kubelet, login, terminal, Env};

/// Runs one action. `input` is stdin, `out` is stdout; `now` is the clock.
pub fn run(
    action: Action,
    input: &mut dyn Read,
    out: &mut dyn Write,
    env: &Env,
    now: SystemTime,
) -> Result<(), Error> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let written = |r: std::io::Result<()>| r.context("writing stdout").map_err(Error::from);
    match action {
        Action::Store => {
            let creds = protocol::parse_store(&protocol::read_input(input)?)?;
            match Registry::parse(&creds.server_url) {
                Registry::Ibm(host) => ibm::store(env, host, creds, now),
                Registry::Other(key) => {
                    let record = Record {
                        username: creds.username.clone(),
                        secret: creds.secret.clone(),
                        stored_at: now,
                    };
                    store::open_for_write(env)?.put(key, &record)?;
                    debug!("store", "stored a credential for a non-IBM registry");
                    Ok(())
                }
            }
        }
        Action::Get => {
            let server_url = protocol::parse_server_url(&protocol::read_input(input)?)?;
            let answer = match Registry::parse(&server_url) {
                Registry::Ibm(host) => {
                    ibm::get(env, host, now, Box::new(|| store::open_for_read(env)))?
                }
                Registry::Other(key) => {
                    let store = store::open_for_read(env)?.ok_or(Error::NotFound)?;
                    let record = store.get(key)?.ok_or(Error::NotFound)?;
                    ibm::Answer {
                        username: record.username,
                        secret: record.secret,
                        expires_at: None,
                    }
                }
            };
            written(protocol::write_get(
                out,
                &server_url,
                &answer.username,
                &answer.secret,
            ))
        }
        Action::Erase => {
            let server_url = protocol::parse_server_url(&protocol::read_input(input)?)?;
            match Registry::parse(&server_url) {
                Registry::Ibm(host) => ibm::erase(env, host, now),
                Registry::Other(key) => {
                    if let Some(store) = store::open_for_read(env)? {
                        store.remove(key)?;
                    }
                    Ok(())
                }
            }
        }
        Action::List => {
            let entries = match store::open_for_read(env)? {
                Some(store) => store.list()?,
                None => Default::default(),
            };
            written(protocol::write_list(out, &entries))
        }
        Action::Version => written(protocol::write_version(out)),
        Action::Help => written(protocol::write_help(out)),
        Action::Configure(args) => {
            // What it did, even when it failed part-way; then the error line, if any.
            let report = configure::run(&args, env, real_uid());
            written(protocol::write_report(out, &report.lines))?;
            report.result.map_err(Error::from)
        }
        Action::Login(args) => {
            let line = login::run(&args, input, terminal::stdin(), env, now)?;
            written(protocol::write_line(out, &line))
        }
        Action::Doctor(args) => match doctor::run(&args, env, now, real_uid())? {
            doctor::Run::Usage(line) => written(protocol::write_line(out, line)),
            doctor::Run::Checked(report) => {
                written(protocol::write_doctor(out, &report))?;
                // The problem lines said what failed: exit 1, nothing more.
                match report.ok() {
                    true => Ok(()),
                    false => Err(Error::Reported),
                }
            }
        },
        Action::KubeletPlugin => {
            let request = kubelet::read_request(input)?;
            let response = kubelet::answer(&request, env, now)?;
            written(protocol::write_kubelet(out, &response))
        }
    }
}

/// The real user id, for `/run/containers/<uid>/auth.json`; read only by
/// `configure` and `doctor`, so no other verb pays for it.
fn real_uid() -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }
    #[cfg(not(unix))]
    0
}
