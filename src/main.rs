//! `docker-credential-ibmcr`: argv → action, the environment read once,
//! `run`, and the error line on stdout (and stderr) with exit 1.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use docker_credential_ibmcr::protocol::{self, Action, Error};
use docker_credential_ibmcr::{helper, log, Env};

fn main() -> ExitCode {
    // A panic message could hold anything: say where, never what.
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("{}: internal error{at}; please report it", protocol::NAME);
        let _ = protocol::write_line(&mut std::io::stdout(), &line);
        log::say(&line);
    }));
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut stdout = std::io::stdout().lock();
    let action = match Action::from_args(&args) {
        Ok(action) => action,
        Err(bad) => {
            let _ = protocol::write_line(&mut stdout, &bad.to_string());
            log::say(&bad.to_string()); // an error: stderr too (decisions §1)
            return ExitCode::FAILURE;
        }
    };
    // Nothing in the environment can break these two.
    let plain = match action {
        Action::Version => Some(protocol::write_version(&mut stdout)),
        Action::Help => Some(protocol::write_line(&mut stdout, &protocol::usage())),
        _ => None,
    };
    if let Some(written) = plain {
        return if written.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let result = Env::from_process().map_err(Error::from).and_then(|env| {
        log::init(env.debug);
        #[allow(clippy::disallowed_methods)] // main reads the clock for everyone
        let now = SystemTime::now();
        helper::run(action, &mut std::io::stdin().lock(), &mut stdout, &env, now)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = e.to_string();
            let _ = protocol::write_line(&mut stdout, &line);
            let _ = stdout.flush();
            if !matches!(e, Error::NotFound) {
                log::say(&line);
            }
            ExitCode::FAILURE
        }
    }
}
