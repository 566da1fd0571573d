//! `login [HOST]`: an IBM Cloud API key from stdin, checked with one IAM
//! mint, then stored as `iamapikey` for HOST (default `icr.io`, whose key
//! serves every IBM host that has none of its own). Unlike
//! `docker login -u iamapikey`, which a Docker engine checks at the
//! registry, the key goes to IAM and nowhere else; the token IAM answers
//! goes to the token cache, so the next pull makes no call. What it prints
//! names the host and the account, never the key.

use std::io::Read;

use anyhow::{anyhow, Context};

use crate::ibm;
use crate::protocol::{Credentials, Error, MAX_LINE};
use crate::registry::{IbmHost, Registry, GLOBAL_HOST};
use crate::secret::Secret;
use crate::terminal::{self, Terminal};
use crate::{log, Env};

/// The usage line of the verb.
pub const USAGE: &str = "usage: docker-credential-ibmcr login [HOST] < api-key-file";

/// `login [HOST]`: reads the key (the first line of `input`, trimmed; on a
/// `terminal`, typed at a prompt without echo), checks it with IAM, stores
/// it. The line to print on success.
///
/// # Errors
/// A HOST that is not an IBM registry host, no key on stdin, IAM refusing
/// the key (one line with IBM's code; nothing is stored), a store that
/// cannot be written.
pub fn run(
    args: &[String],
    input: &mut dyn Read,
    terminal: Option<Terminal>,
    env: &Env,
    now: u64,
) -> Result<String, Error> {
    let host = match args {
        [] => GLOBAL_HOST,
        [flag] if flag == "-h" || flag == "--help" => return Ok(USAGE.to_string()),
        [flag] if flag.starts_with('-') => bail_line(match log::option_argument(flag) {
            Some(flag) => format!("login: unknown option `{flag}`; {USAGE}"),
            None => format!("login: an unknown option; {USAGE}"),
        })?,
        [host] => host.as_str(),
        _ => bail_line(format!("login: one HOST at most; {USAGE}"))?,
    };
    let host = match Registry::parse(host) {
        Registry::Ibm(host) => host,
        Registry::Other(_) => bail_line(match log::host_argument(host) {
            Some(host) => format!("login: `{host}` is not an IBM Cloud Container Registry host (the README lists them); nothing stored"),
            None => "login: HOST is not an IBM Cloud Container Registry host such as us.icr.io (the README lists them); nothing stored".to_string(),
        })?,
    };
    let key = read_key(host, input, terminal)?;
    let verified = ibm::verify_key(env, host, &key, now)
        .map_err(|e| anyhow!("login: {e:#}; nothing stored"))?;
    let creds = Credentials {
        server_url: host.name().to_string(),
        username: ibm::APIKEY.to_string(),
        secret: key,
    };
    ibm::store(env, host, creds, now)?;
    let account = match &verified.account {
        Some(account) => format!("account {account}"),
        None => "an account IAM did not name".to_string(),
    };
    Ok(match host.is_global() {
        true => format!(
            "logged in to {host} with an API key of {account}; it serves every IBM registry host without a key of its own"
        ),
        false => format!("logged in to {host} with an API key of {account}"),
    })
}

fn bail_line<T>(line: String) -> Result<T, Error> {
    Err(Error::Other(anyhow!(line)))
}

/// The key: the first line of stdin, trimmed; on a terminal, typed at a
/// prompt without echo.
fn read_key(
    host: IbmHost,
    input: &mut dyn Read,
    terminal: Option<Terminal>,
) -> Result<Secret<String>, Error> {
    let line = match &terminal {
        Some(t) => t.read_hidden(&format!("IBM Cloud API key for {host}: "), input, MAX_LINE),
        None => terminal::read_line(input, MAX_LINE),
    }
    .context("login: reading the API key from stdin")?;
    let Ok(line) = String::from_utf8(line) else {
        bail_line("login: the API key on stdin is not UTF-8; nothing stored".to_string())?
    };
    let key = line.trim();
    if key.is_empty() {
        bail_line(format!(
            "login: no API key on stdin: pipe it in (`docker-credential-ibmcr login {host} < api-key-file`) or type it at the prompt"
        ))?;
    }
    Ok(Secret::new(key.to_string()))
}
