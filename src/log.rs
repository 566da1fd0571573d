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

/// Text from elsewhere (a server's message, an error's cause, a URL) as a
/// short excerpt for a one-line message: [`one_line`], then runs of spaces
/// collapsed and the ends trimmed; longer than `max` characters, it is cut to
/// `max` characters, the last one `…`.
pub fn excerpt(text: &str, max: usize) -> String {
    let folded = one_line(text);
    let mut line = String::with_capacity(folded.len());
    for c in folded.chars() {
        if !(c == ' ' && line.ends_with(' ')) {
            line.push(c);
        }
    }
    let line = line.trim();
    if line.chars().count() <= max {
        line.to_string()
    } else {
        let mut capped: String = line.chars().take(max.saturating_sub(1)).collect();
        capped.push('…');
        capped
    }
}

/// A value the user gave (a setting, an option, a file's field) made safe
/// to quote in a one-line message: no control characters, at most 64 of them.
pub fn quoted(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// A command-line option that was not understood, fit to quote: only one
/// spelled as options are (`--word-word`, `-x`); anything else may be a
/// secret typed in the wrong place (an API key can start with `-`).
pub fn option_argument(arg: &str) -> Option<String> {
    let name = arg.trim_start_matches('-');
    let spelled = arg.len() <= 32
        && arg.len() - name.len() <= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    spelled.then(|| arg.to_string())
}

/// A command-line HOST that is not an IBM host, fit to quote: its user
/// info masked; one that does not look like a host name at all (no dot: an
/// API key typed in its place) is not quoted.
pub fn host_argument(arg: &str) -> Option<String> {
    let masked = redact_userinfo(arg);
    // `user:pw@host` without a scheme is no URL, but the same mistake.
    let masked = match masked.rsplit_once('@') {
        Some((_, host)) if !masked.contains("****@") => format!("****@{host}"),
        _ => masked,
    };
    masked.contains('.').then(|| quoted(&masked))
}

/// A URL for a message: `scheme://****@host…` when it carries a user name or
/// password (a proxy URL, an endpoint someone pasted with credentials).
/// The user info is looked for where URL parsers find it: after every
/// `://` (a URL pasted twice has two), and for the web's schemes also after
/// `scheme:` and any run of `/`, `\`, tab or line break, since
/// `https:user:pw@host` and `https:///user:pw@host` carry a password too.
pub fn redact_userinfo(url: &str) -> String {
    let web = url.split_once(':').and_then(|(scheme, rest)| {
        let scheme: String = scheme
            .trim_start()
            .chars()
            .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
            .collect();
        let web = ["http", "https", "ws", "wss", "ftp"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s));
        web.then(|| url.len() - rest.trim_start_matches(['/', '\\', '\t', '\n', '\r']).len())
    });
    let url = match web {
        Some(start) => redact_from(url, start),
        None => url.to_string(),
    };
    let mut url = url;
    let mut from = 0;
    while let Some(scheme_end) = url[from..].find("://") {
        from += scheme_end + 3;
        url = redact_from(&url, from);
    }
    url
}

/// `url` with everything before the last `@` of the authority that starts
/// at `start` replaced by `****`.
fn redact_from(url: &str, start: usize) -> String {
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}****@{}", &url[..start], &rest[at + 1..]),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_turns_each_control_character_into_a_space() {
        assert_eq!(one_line("a\r\nb\tc"), "a  b c");
    }

    #[test]
    fn excerpt_collapses_trims_and_caps() {
        assert_eq!(excerpt("  not\r\n\tfound \u{7}", 200), "not found");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("abcd", 3), "ab…");
        assert_eq!(excerpt("", 3), "");
    }

    #[test]
    fn quoted_drops_control_characters_and_stops_at_64() {
        assert_eq!(quoted("fast\nx"), "fastx");
        assert_eq!(quoted(&"y".repeat(100)), "y".repeat(64));
    }

    /// Issue 10 item 9 (fuzz/corpus/endpoint/regress-userinfo-*):
    /// URL parsers read `https:` followed by any slashes, or none, as the
    /// start of the authority.
    #[test]
    fn user_info_is_redacted_wherever_a_url_parser_finds_it() {
        for (url, shown) in [
            ("http://user:pass@proxy:3128", "http://****@proxy:3128"),
            (
                "https://k@iam.cloud.ibm.com/x@y",
                "https://****@iam.cloud.ibm.com/x@y",
            ),
            (
                "https:user:pw@iam.cloud.ibm.com",
                "https:****@iam.cloud.ibm.com",
            ),
            ("HTTPS:/user:pw@host/", "HTTPS:/****@host/"),
            ("https:///user:pw@host", "https:///****@host"),
            ("https:\\\\user:pw@host", "https:\\\\****@host"),
            ("https:/\t/user:pw@host", "https:/\t/****@host"),
            ("see https://u:p@h", "see https://****@h"),
            (
                "http://u:p@h:1x http://u:p@h:1",
                "http://****@h:1x http://****@h:1",
            ),
            ("https://iam.cloud.ibm.com", "https://iam.cloud.ibm.com"),
            ("user@example.com", "user@example.com"),
            ("mailto:user@example.com", "mailto:user@example.com"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url:?}");
        }
    }
}
