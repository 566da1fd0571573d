//! `docker-credential-ibmcr`: argv → action, the environment read once,
//! `run`, and the error line on stdout (and stderr) with exit 1.
//!
//! The process starts at the C `main` below, not through Rust's own
//! start-up (`std::rt::lang_start`): a credential helper runs once per
//! registry request, and on Linux that start-up reads `/proc/self/maps`
//! through `pthread_getattr_np` (a scanf over the file, with the locale
//! tables it needs) only to place a stack-overflow message, which cost a
//! cached `get` about a tenth of its pages and time (bench/run.sh). What it
//! does that matters here is done by hand: SIGPIPE ignored, so a closed
//! stdout is a write error rather than a kill, and stdout flushed at the end.
//! `std::env::args_os` still works: glibc hands std the arguments itself.
// (Not in the unit-test build of this file, whose main is libtest's.)
#![cfg_attr(not(test), no_main)]

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use docker_credential_ibmcr::{self as ibmcr, Action, Env, Error};

/// The C entry point (see the module comment).
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = helper();
    let flushed = std::io::stdout().flush().is_ok();
    if code == ExitCode::SUCCESS && flushed {
        0
    } else {
        1
    }
}

#[cfg_attr(test, allow(dead_code))]
fn helper() -> ExitCode {
    // Before any secret is read: this process holds API keys and tokens in
    // memory, and a core file would keep them on disk.
    ibmcr::no_core_dumps();
    let mut argv = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let argv0 = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let parsed = Action::from_invocation(&argv0, &args);
    // The kubelet decodes stdout as a response: its errors go to stderr only.
    let kubelet = matches!(parsed, Ok(Action::KubeletPlugin));
    // A panic message could hold anything: say where, never what.
    std::panic::set_hook(Box::new(move |info| {
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = format!("{}: internal error{at}; please report it", ibmcr::NAME);
        if !kubelet {
            let _ = ibmcr::write_line(&mut std::io::stdout(), &line);
        }
        ibmcr::say(&line);
    }));
    let mut stdout = std::io::stdout().lock();
    let action = match parsed {
        Ok(action) => action,
        Err(bad) => {
            let _ = ibmcr::write_bad_args(&mut stdout, &bad);
            ibmcr::say(&bad.to_string()); // an error: its line on stderr too (decisions §1)
            return ExitCode::FAILURE;
        }
    };
    // Nothing in the environment can break these two.
    let plain = match action {
        Action::Version => Some(ibmcr::write_version(&mut stdout)),
        Action::Help => Some(ibmcr::write_help(&mut stdout)),
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
        ibmcr::init_log(env.debug);
        #[allow(clippy::disallowed_methods)] // main reads the clock for everyone
        let now = SystemTime::now();
        ibmcr::run(action, &mut std::io::stdin().lock(), &mut stdout, &env, now)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Its output said what failed.
        Err(Error::Reported) => ExitCode::FAILURE,
        Err(e) => {
            let line = e.to_string();
            if !kubelet {
                let _ = ibmcr::write_line(&mut stdout, &line);
                let _ = stdout.flush();
            }
            if !matches!(e, Error::NotFound) {
                ibmcr::say(&line);
            }
            ExitCode::FAILURE
        }
    }
}
