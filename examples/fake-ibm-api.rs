//! The fake IBM Cloud API (IAM, registry token API, nginx `auth_request` target) as a process,
//! for shell and end-to-end tests. It prints one line, `listening on http://127.0.0.1:PORT`,
//! then serves until killed. Control it with curl on `/_fake/*` (see fake-ibm/src/lib.rs).
//!
//! ```text
//! cargo run --example fake-ibm-api -- --port 0 --api-key KEY=0123456789abcdef0123456789abcdef
//! ```

// This program's interface is its stdout line and its stderr usage errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use fake_ibm::{Config, FakeIbm};

const USAGE: &str = "usage: fake-ibm-api [--port N] [--api-key KEY=ACCOUNT]... \
[--iam-lifetime SECS] [--registry-token-lifetime SECS] [--refuse-token-creation] \
[--plain-user HOST=USER:PASS]... [--port-file PATH]";

struct Args {
    config: Config,
    port_file: Option<PathBuf>,
}

fn parse_args(argv: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let mut config = Config::default();
    let mut port_file = None;
    let mut argv = argv.map(|a| {
        a.into_string()
            .map_err(|_| "arguments must be UTF-8".to_string())
    });
    while let Some(flag) = argv.next() {
        let flag = flag?;
        let mut value = || -> Result<String, String> {
            argv.next()
                .unwrap_or_else(|| Err(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => config.port = parse_number(&flag, &value()?)?,
            "--iam-lifetime" => config.iam_lifetime = parse_number(&flag, &value()?)?,
            "--registry-token-lifetime" => {
                config.registry_token_lifetime = parse_number(&flag, &value()?)?;
            }
            "--refuse-token-creation" => config.refuse_token_creation = true,
            "--api-key" => {
                let v = value()?;
                let (key, account) = v.split_once('=').ok_or("--api-key takes KEY=ACCOUNT")?;
                if key.is_empty() {
                    return Err("--api-key: KEY must not be empty".to_string());
                }
                if account.len() != 32 || !account.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("--api-key: ACCOUNT must be 32 hex digits".to_string());
                }
                config
                    .api_keys
                    .insert(key.to_string(), account.to_ascii_lowercase());
            }
            "--plain-user" => {
                let v = value()?;
                let parsed = v
                    .split_once('=')
                    .and_then(|(host, up)| Some((host, up.split_once(':')?)));
                let Some((host, (user, pass))) = parsed.filter(|(h, _)| !h.is_empty()) else {
                    return Err("--plain-user takes HOST=USER:PASS".to_string());
                };
                config
                    .plain_users
                    .insert(host.to_string(), (user.to_string(), pass.to_string()));
            }
            "--port-file" => port_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(Args { config, port_file }))
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a valid number"))
}

/// Writes the port beside the target, then renames, so a poller never reads half a file.
fn write_port_file(path: &PathBuf, port: u16) -> std::io::Result<()> {
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-ibm-api: {message} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    let port = args.config.port;
    let server = match FakeIbm::try_start(args.config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-ibm-api: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.port_file {
        if let Err(e) = write_port_file(path, server.port()) {
            eprintln!("fake-ibm-api: cannot write `{}`: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "listening on {}", server.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    // Serve until killed; `server` stays alive on this frame.
    loop {
        std::thread::park();
    }
}
