//! Diagnostics on stderr: off unless `IBMCR_LOG=debug`. Never bodies,
//! headers or secrets: hosts, regions, endpoints, statuses, reasons.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug records on or off (main, from `Env`).
pub fn init(debug: bool) {
    DEBUG.store(debug, Ordering::Relaxed);
}

/// True when debug records are written.
pub fn enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one debug record: `debug|ibmcr::<target>: <message>`.
pub fn record(target: &str, args: fmt::Arguments<'_>) {
    let line = one_line(&args.to_string());
    let _ = writeln!(std::io::stderr().lock(), "debug|ibmcr::{target}: {line}");
}

/// Writes one line to stderr for the user: an error (docker shows only a
/// failing helper's stderr) or a notice such as a refused token creation.
pub fn say(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", one_line(message));
}

/// Folds a message onto one line: control characters become spaces.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A value the user gave (a setting, an option, a file's field) made safe
/// to quote in a one-line message: no control characters, at most 64 of them.
pub fn quoted(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// A URL for a message: `scheme://****@host…` when it carries a user name or
/// password (a proxy URL, an endpoint someone pasted with credentials).
pub fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://****@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `debug!("target", "format", args…)`: a debug record when enabled.
#[macro_export]
macro_rules! debug {
    ($target:expr, $($arg:tt)*) => {
        if $crate::log::enabled() {
            $crate::log::record($target, format_args!($($arg)*))
        }
    };
}
