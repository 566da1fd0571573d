//! The Docker credential-helper protocol, byte for byte as
//! docker/docker-credential-helpers speaks it (../shared/protocol.md §1).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};

use serde_json::Value;

use crate::secret::Secret;

/// The executable's name, as the reference prints it in usage and errors.
pub const NAME: &str = "docker-credential-ibmcr";
/// What `version` prints in the package slot.
pub const PACKAGE: &str = "docker-credential-ibmcr";
/// Version, as `v<semver>`.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
/// The commit the binary was built from (`build.rs`): a short hash, with
/// `-dirty` when its sources differed from it, or `unknown`.
pub const COMMIT: &str = env!("IBMCR_COMMIT");
/// The not-found text clients match exactly (after trimming).
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// A `store`, `get` or `erase` without a server URL.
pub const MISSING_SERVER_URL: &str = "no credentials server URL";
/// A `store` without a username.
pub const MISSING_USERNAME: &str = "no credentials username";
/// Go's bufio.Scanner refuses lines of this many bytes or more.
pub const MAX_LINE: usize = 64 * 1024;
/// Total stdin we accept; far above any real credential.
pub const MAX_INPUT: usize = 4 * 1024 * 1024;

/// What argv asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `store`: JSON credentials on stdin.
    Store,
    /// `get`: a server URL on stdin.
    Get,
    /// `erase`: a server URL on stdin.
    Erase,
    /// `list`: stdin never read.
    List,
    /// `version`, `--version`, `-v`.
    Version,
    /// `help`, `--help`, `-h`: every verb, one line each.
    Help,
    /// `configure [flags]`: not part of the protocol; sets up docker and podman.
    Configure(Vec<String>),
    /// `login [HOST]`: an API key from stdin, checked with IAM, then stored.
    Login(Vec<String>),
    /// `doctor [HOST] [--json]`: what a pull from HOST needs, checked.
    Doctor(Vec<String>),
    /// `kubelet-plugin`, or the binary run as `ibmcr-credential-provider`:
    /// one kubelet `CredentialProviderRequest` on stdin (../shared/fleet.md §6).
    KubeletPlugin,
}

/// Why argv was not understood: print usage, or name the unknown action.
#[derive(Debug, PartialEq, Eq)]
pub enum BadArgs {
    /// Wrong argument count.
    Usage,
    /// `docker-credential-ibmcr: unknown action: X`.
    Unknown(String),
}

impl Action {
    /// Parses `argv`: the kubelet plugin when the binary's file name is
    /// `ibmcr-credential-provider` (with no arguments, or `kubelet-plugin`),
    /// else [`Action::from_args`] on `argv[1..]`.
    pub fn from_invocation(argv0: &str, args: &[String]) -> Result<Action, BadArgs> {
        let name = std::path::Path::new(argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match (name, args) {
            (crate::kubelet::LINK_NAME, []) => Ok(Action::KubeletPlugin),
            _ => Action::from_args(args),
        }
    }

    /// Parses `argv[1..]` as the reference `Serve` does: exactly one argument.
    /// `configure`, `login` and `doctor` take arguments of their own; `help`
    /// ignores any.
    pub fn from_args(args: &[String]) -> Result<Action, BadArgs> {
        if let Some((verb, rest)) = args.split_first() {
            match verb.as_str() {
                "configure" => return Ok(Action::Configure(rest.to_vec())),
                "login" => return Ok(Action::Login(rest.to_vec())),
                "doctor" => return Ok(Action::Doctor(rest.to_vec())),
                "help" => return Ok(Action::Help),
                _ => {}
            }
        }
        let [arg] = args else {
            return Err(BadArgs::Usage);
        };
        Ok(match arg.as_str() {
            "store" => Action::Store,
            "get" => Action::Get,
            "erase" => Action::Erase,
            "list" => Action::List,
            "version" | "--version" | "-v" => Action::Version,
            "--help" | "-h" => Action::Help,
            crate::kubelet::ARG => Action::KubeletPlugin,
            other => return Err(BadArgs::Unknown(other.to_string())),
        })
    }
}

impl fmt::Display for BadArgs {
    /// The one line for stderr, and the first on stdout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadArgs::Usage => f.write_str(&usage()),
            BadArgs::Unknown(action) => write!(f, "{NAME}: unknown action: {action}"),
        }
    }
}

/// Every verb with its one line of help, in the order `help` lists them:
/// the protocol's first (docker, podman and skopeo run them), then the ones
/// people run.
pub const VERBS: &[(&str, &str)] = &[
    (
        "store",
        "store the credential on stdin (JSON, as docker login sends it)",
    ),
    ("get", "print the credential for the server URL on stdin"),
    ("erase", "erase the credential for the server URL on stdin"),
    ("list", "list the stored server URLs and their usernames"),
    (
        "version",
        "print the version and the commit it was built from",
    ),
    (
        "configure",
        "set up docker, podman, skopeo and buildah to use this helper",
    ),
    (
        "login [HOST]",
        "check an API key from stdin with IAM, then store it (HOST: icr.io)",
    ),
    (
        "doctor [HOST]",
        "say why a pull from HOST would fail (HOST: us.icr.io; --json)",
    ),
    (
        "kubelet-plugin",
        "answer the kubelet as an image credential provider",
    ),
    ("help", "print this list"),
];

/// `Usage: docker-credential-ibmcr <command> [args]`: the first line of [`help`].
pub fn usage() -> String {
    format!("Usage: {NAME} <command> [args]")
}

/// What `help` prints: [`usage`], then every verb of [`VERBS`] on a line of
/// its own; no final newline.
pub fn help() -> String {
    let width = VERBS.iter().map(|(verb, _)| verb.len()).max().unwrap_or(0);
    let mut text = usage();
    text.push_str("\n\nCommands:");
    for (verb, what) in VERBS {
        text.push_str(&format!("\n  {verb:width$}  {what}"));
    }
    text.push_str(&format!(
        "\n\nconfigure, login and doctor take --help. The manual: man {NAME}"
    ));
    text
}

/// The outcomes the protocol distinguishes.
#[derive(Debug)]
pub enum Error {
    /// Nothing stored or mintable: exactly [`NOT_FOUND`], nothing on stderr.
    NotFound,
    /// [`MISSING_SERVER_URL`].
    MissingServerUrl,
    /// [`MISSING_USERNAME`].
    MissingUsername,
    /// Anything else: one line on stdout and stderr.
    Other(anyhow::Error),
    /// The verb's own output already says what failed (`doctor`'s problem
    /// lines): exit 1, nothing more written.
    Reported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str(NOT_FOUND),
            Error::MissingServerUrl => f.write_str(MISSING_SERVER_URL),
            Error::MissingUsername => f.write_str(MISSING_USERNAME),
            Error::Other(e) => f.write_str(&crate::log::one_line(&format!("{e:#}"))),
            Error::Reported => f.write_str("the output above says what failed"),
        }
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Other(e)
    }
}

/// Credentials as `store` receives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `ServerURL`, exactly as sent.
    pub server_url: String,
    /// `Username`.
    pub username: String,
    /// `Secret`.
    pub secret: Secret<String>,
}

/// Reads stdin as the reference does: lines joined without separators (a
/// trailing `\r` dropped from each), a line of [`MAX_LINE`] bytes or more refused.
pub fn read_input(input: &mut dyn Read) -> Result<Vec<u8>, Error> {
    let mut raw = Vec::new();
    input
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::Other(anyhow::Error::new(e).context("reading stdin")))?;
    if raw.len() > MAX_INPUT {
        return Err(Error::Other(anyhow::anyhow!(
            "stdin is larger than {MAX_INPUT} bytes"
        )));
    }
    let mut joined = Vec::with_capacity(raw.len());
    for line in raw.split(|&b| b == b'\n') {
        if line.len() >= MAX_LINE {
            return Err(Error::Other(anyhow::anyhow!(
                "stdin line too long: {} bytes or more (bufio.Scanner: token too long)",
                MAX_LINE
            )));
        }
        joined.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
    }
    Ok(joined)
}

/// The server URL of a `get` or `erase`: the input, whitespace-trimmed.
pub fn parse_server_url(input: &[u8]) -> Result<String, Error> {
    let url = String::from_utf8_lossy(input).trim().to_string();
    if url.is_empty() {
        return Err(Error::MissingServerUrl);
    }
    Ok(url)
}

/// Parses `store` input with Go's `encoding/json` rules: keys match
/// case-insensitively, unknown keys and bytes after the first value are
/// ignored, `null` leaves a field empty. ServerURL is checked before Username.
pub fn parse_store(input: &[u8]) -> Result<Credentials, Error> {
    let text = go_surrogates(&go_utf8(input));
    let top = serde_json::Deserializer::from_str(&text)
        .into_iter::<TopLevel>()
        .next()
        .unwrap_or_else(|| Err(serde::de::Error::custom("EOF while parsing a value")));
    // serde_json's syntax errors name positions, never content.
    let top =
        top.map_err(|e| Error::Other(anyhow::anyhow!("malformed credentials JSON on stdin: {e}")))?;
    let TopLevel::Object(map) = top else {
        return Err(Error::Other(anyhow::anyhow!(
            "malformed credentials JSON on stdin: expected an object with ServerURL, Username and Secret"
        )));
    };
    let (mut server_url, mut username, mut secret) = (String::new(), String::new(), String::new());
    for (key, value) in map {
        let field = match key.to_ascii_lowercase().as_str() {
            "serverurl" => &mut server_url,
            "username" => &mut username,
            "secret" => &mut secret,
            _ => continue,
        };
        *field = match value {
            Value::String(s) => s,
            Value::Null => continue, // Go leaves the field as it was
            _ => {
                return Err(Error::Other(anyhow::anyhow!(
                    "malformed credentials JSON on stdin: `{key}` must be a string"
                )))
            }
        };
    }
    if server_url.is_empty() {
        return Err(Error::MissingServerUrl);
    }
    if username.is_empty() {
        return Err(Error::MissingUsername);
    }
    Ok(Credentials {
        server_url,
        username,
        secret: Secret::new(secret),
    })
}

/// Go's reading of invalid UTF-8: one U+FFFD per byte that starts no valid
/// sequence (`utf8.DecodeRune` answers `RuneError, 1`), where Rust's
/// `from_utf8_lossy` writes one per maximal invalid run.
fn go_utf8(mut input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len());
    loop {
        match std::str::from_utf8(input) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, rest) = input.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                input = rest.get(1..).unwrap_or_default();
            }
        }
    }
}

/// Go's reading of `\uXXXX` escapes of UTF-16 surrogates that do not form
/// a pair: U+FFFD, where serde_json refuses the whole document. Rewrites
/// each such escape inside a string to `\ufffd`; pairs and everything else
/// stay as they are.
fn go_surrogates(text: &str) -> String {
    let surrogate = |hex: &str| {
        u16::from_str_radix(hex, 16)
            .ok()
            .filter(|u| (0xD800..=0xDFFF).contains(u))
    };
    let bytes = text.as_bytes();
    let escape_at = |i: usize| {
        text.get(i..i + 6)
            .filter(|e| e.starts_with("\\u"))
            .and_then(|e| surrogate(&e[2..]))
    };
    let (mut out, mut i, mut in_string) = (String::with_capacity(text.len()), 0, false);
    while let Some(&b) = bytes.get(i) {
        let mut step = 1;
        if !in_string {
            in_string = b == b'"';
        } else if b == b'"' {
            in_string = false;
        } else if b == b'\\' {
            step = 2;
            if let Some(high) = escape_at(i) {
                let paired = (0xD800..0xDC00).contains(&high)
                    && escape_at(i + 6).is_some_and(|low| low >= 0xDC00);
                if paired {
                    out.push_str(&text[i..i + 12]);
                    i += 12;
                    continue;
                }
                out.push_str("\\ufffd");
                i += 6;
                continue;
            }
        }
        let end = (i + step).min(bytes.len());
        // Whole characters only: a backslash's next byte may start a multibyte one.
        let end = (end..=bytes.len())
            .find(|&e| text.is_char_boundary(e))
            .unwrap_or(bytes.len());
        out.push_str(&text[i..end]);
        i = end;
    }
    out
}

/// The first JSON value on stdin: an object's members in input order (Go
/// assigns fields as it meets keys, so with repeated keys the last one
/// wins), or something else.
enum TopLevel {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TopLevel, D::Error> {
        d.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> serde::de::Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(TopLevel::Object(members))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(TopLevel::Other)
    }

    fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
        Ok(TopLevel::Other)
    }

    /// Go decodes `null` into a struct as a no-op: all fields stay empty.
    fn visit_unit<E>(self) -> Result<TopLevel, E> {
        Ok(TopLevel::Object(Vec::new()))
    }
}

/// Writes `get`'s answer: `{"ServerURL":…,"Username":…,"Secret":…}` + `\n`,
/// with Go's HTML-safe escaping, so the bytes match a Go helper's.
pub fn write_get(
    out: &mut dyn Write,
    server_url: &str,
    username: &str,
    secret: &Secret<String>,
) -> io::Result<()> {
    let mut s = String::with_capacity(64 + secret.expose().len());
    s.push_str("{\"ServerURL\":");
    go_json_string(&mut s, server_url);
    s.push_str(",\"Username\":");
    go_json_string(&mut s, username);
    s.push_str(",\"Secret\":");
    go_json_string(&mut s, secret.expose());
    s.push_str("}\n");
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Writes `list`'s answer: a JSON object of key → username, keys sorted, + `\n`.
pub fn write_list(out: &mut dyn Write, entries: &BTreeMap<String, String>) -> io::Result<()> {
    let mut s = String::from("{");
    for (i, (key, username)) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        go_json_string(&mut s, key);
        s.push(':');
        go_json_string(&mut s, username);
    }
    s.push_str("}\n");
    out.write_all(s.as_bytes())?;
    out.flush()
}

/// Writes `version`'s answer: `<Name> (<Package>) <Version>`, as the
/// reference does, then `(commit <COMMIT>)` + `\n`.
pub fn write_version(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", version_line())?;
    out.flush()
}

/// `version`'s line, without its newline.
pub fn version_line() -> String {
    format!("{NAME} ({PACKAGE}) {VERSION} (commit {COMMIT})")
}

/// Writes a kubelet `CredentialProviderResponse`: compact JSON (the field
/// names and nothing else the v1 types define) + `\n`.
pub fn write_kubelet(out: &mut dyn Write, response: &crate::kubelet::Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)?;
    out.flush()
}

/// Writes [`help`] + `\n`.
pub fn write_help(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", help())?;
    out.flush()
}

/// Writes what a command line that was not understood gets on stdout: the
/// unknown action's line (the reference's), if that was it, then [`help`].
pub fn write_bad_args(out: &mut dyn Write, bad: &BadArgs) -> io::Result<()> {
    if let BadArgs::Unknown(_) = bad {
        writeln!(out, "{bad}")?;
    }
    write_help(out)
}

/// Writes one line (an error, or usage) + `\n` to stdout, where clients read it.
pub fn write_line(out: &mut dyn Write, line: &str) -> io::Result<()> {
    writeln!(out, "{line}")?;
    out.flush()
}

/// Writes `doctor`'s report: a line per check, `ok <check>: <detail>` or
/// `problem <check>: <detail>; fix: <fix>`, then a line that counts the
/// problems; with `--json`, one JSON document
/// `{"host":…,"ok":…,"checks":[{"check":…,"ok":…,"detail":…,"fix":…}]}` + `\n`
/// (`fix` is `null` where there is none).
pub fn write_doctor(out: &mut dyn Write, report: &crate::doctor::Report) -> io::Result<()> {
    if report.json {
        let checks: Vec<Value> = report
            .checks
            .iter()
            .map(|c| serde_json::json!({"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix}))
            .collect();
        let doc = serde_json::json!({
            "host": report.host.name(),
            "ok": report.ok(),
            "checks": checks,
        });
        writeln!(out, "{doc}")?;
        return out.flush();
    }
    for c in &report.checks {
        let verdict = if c.ok { "ok" } else { "problem" };
        match &c.fix {
            Some(fix) => writeln!(out, "{verdict} {}: {}; fix: {fix}", c.name, c.detail)?,
            None => writeln!(out, "{verdict} {}: {}", c.name, c.detail)?,
        }
    }
    match report.checks.iter().filter(|c| !c.ok).count() {
        0 => writeln!(out, "{}: every check passed", report.host.name())?,
        1 => writeln!(out, "{}: 1 problem", report.host.name())?,
        n => writeln!(out, "{}: {n} problems", report.host.name())?,
    }
    out.flush()
}

/// Writes a report (what `configure` did, file by file): each line + `\n`.
/// Not part of Docker's protocol: only a person reads it.
pub fn write_report(out: &mut dyn Write, lines: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Appends `s` as a JSON string escaped the way Go's `encoding/json` does
/// with HTML escaping on: `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
fn go_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_like_serve() {
        assert_eq!(Action::from_args(&args(&["get"])), Ok(Action::Get));
        assert_eq!(Action::from_args(&args(&["-v"])), Ok(Action::Version));
        assert_eq!(Action::from_args(&args(&["--help"])), Ok(Action::Help));
        assert_eq!(Action::from_args(&args(&[])), Err(BadArgs::Usage));
        assert_eq!(Action::from_args(&args(&["get", "x"])), Err(BadArgs::Usage));
        assert_eq!(
            Action::from_args(&args(&["configure", "--dry-run"])),
            Ok(Action::Configure(args(&["--dry-run"])))
        );
        assert_eq!(
            Action::from_args(&args(&["kubelet-plugin"])),
            Ok(Action::KubeletPlugin)
        );
        let link = "/usr/libexec/kubernetes/kubelet-plugins/ibmcr-credential-provider";
        assert_eq!(
            Action::from_invocation(link, &[]),
            Ok(Action::KubeletPlugin)
        );
        assert_eq!(
            Action::from_invocation(link, &args(&["kubelet-plugin"])),
            Ok(Action::KubeletPlugin)
        );
        assert_eq!(
            Action::from_invocation("/usr/bin/docker-credential-ibmcr", &[]),
            Err(BadArgs::Usage)
        );
        assert_eq!(
            Action::from_invocation("ibmcr-credential-provider", &args(&["get"])),
            Ok(Action::Get)
        );
        let bad = Action::from_args(&args(&["bogus"])).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "docker-credential-ibmcr: unknown action: bogus"
        );
        assert_eq!(
            BadArgs::Usage.to_string(),
            "Usage: docker-credential-ibmcr <command> [args]"
        );
        // The verbs for people take arguments of their own; `help` ignores any.
        assert_eq!(
            Action::from_args(&args(&["login", "us.icr.io"])),
            Ok(Action::Login(args(&["us.icr.io"])))
        );
        assert_eq!(
            Action::from_args(&args(&["doctor", "--json"])),
            Ok(Action::Doctor(args(&["--json"])))
        );
        assert_eq!(Action::from_args(&args(&["help", "x"])), Ok(Action::Help));
    }

    #[test]
    fn a_report_is_its_lines_each_ended_by_a_newline() {
        let mut out = Vec::new();
        write_report(&mut out, &[]).unwrap();
        assert_eq!(out, b"");
        let lines = [
            "configured /a: x".to_string(),
            String::new(),
            "--- b".into(),
        ];
        write_report(&mut out, &lines).unwrap();
        assert_eq!(out, b"configured /a: x\n\n--- b\n");
    }

    #[test]
    fn get_bytes_match_the_go_reference() {
        let mut out = Vec::new();
        write_get(
            &mut out,
            "us.icr.io",
            "<token>",
            &Secret::new("s3cr&t".into()),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"ServerURL\":\"us.icr.io\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"s3cr\\u0026t\"}\n"
        );
        let mut s = String::new();
        go_json_string(&mut s, "a\"b\\c\n\u{1}\u{2028}>é");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\\u2028\\u003eé\"");
    }

    #[test]
    fn list_is_sorted_and_empty_is_braces() {
        let mut out = Vec::new();
        write_list(&mut out, &BTreeMap::new()).unwrap();
        assert_eq!(out, b"{}\n");
        let mut m = BTreeMap::new();
        m.insert("b.example".to_string(), "u".to_string());
        m.insert("a.example".to_string(), "<token>".to_string());
        let mut out = Vec::new();
        write_list(&mut out, &m).unwrap();
        assert_eq!(
            out,
            b"{\"a.example\":\"\\u003ctoken\\u003e\",\"b.example\":\"u\"}\n"
        );
    }

    #[test]
    fn store_follows_go_decoding() {
        let c = parse_store(
            b"{\"serverurl\":\"h\",\"USERNAME\":\"u\",\"Secret\":\"s\",\"x\":1} trailing",
        )
        .unwrap();
        assert_eq!(
            (
                c.server_url.as_str(),
                c.username.as_str(),
                c.secret.expose().as_str()
            ),
            ("h", "u", "s")
        );
        let c = parse_store(
            b"{\"ServerURL\": \"h\", \"Username\": \"u\", \"Username\": null, \"Secret\": null}",
        )
        .unwrap();
        assert_eq!(c.username, "u", "null leaves a field as it was");
        assert!(c.secret.is_empty());
        assert!(matches!(
            parse_store(b"{\"Username\":\"u\"}"),
            Err(Error::MissingServerUrl)
        ));
        assert!(matches!(
            parse_store(b"{\"ServerURL\":\"h\",\"Secret\":\"s\"}"),
            Err(Error::MissingUsername)
        ));
        assert!(matches!(
            parse_store(b"{\"ServerURL\":"),
            Err(Error::Other(_))
        ));
        assert!(matches!(parse_store(b""), Err(Error::Other(_))));
        assert!(matches!(parse_store(b"[]"), Err(Error::Other(_))));
        let e = parse_store(b"{\"ServerURL\":\"h\",\"Username\":\"u\",\"Secret\":42424242}")
            .unwrap_err();
        assert!(!e.to_string().contains("4242"), "{e}");
    }

    #[test]
    fn input_lines_join_and_long_lines_fail() {
        let read = |b: &[u8]| read_input(&mut &b[..]);
        assert_eq!(read(b"us.icr.io\r\nfoo\n").unwrap(), b"us.icr.iofoo");
        assert_eq!(read(&vec![b'a'; MAX_LINE - 1]).unwrap().len(), MAX_LINE - 1);
        assert!(read(&vec![b'a'; MAX_LINE]).is_err());
        assert!(matches!(
            parse_server_url(b" \t "),
            Err(Error::MissingServerUrl)
        ));
        assert_eq!(parse_server_url(b" us.icr.io\n").unwrap(), "us.icr.io");
    }

    #[test]
    fn go_reads_broken_utf8_and_surrogates_as_u_fffd() {
        // issue 9: bytes captured from the Go helper showed both differences.
        assert_eq!(go_utf8(b"a\xe2\x82b\xffc"), "a\u{fffd}\u{fffd}b\u{fffd}c");
        assert_eq!(go_utf8("é€".as_bytes()), "é€");
        for (json, want) in [
            (r#""a\ud800b""#, r#""a\ufffdb""#),
            (r#""\udc00\ud83d\ude00""#, r#""\ufffd\ud83d\ude00""#),
            (r#""\ud83d\u0041""#, r#""\ufffd\u0041""#),
            (r#""\\ud800""#, r#""\\ud800""#),
            (r#"{"k\ud800":"é\"\ud800"}"#, r#"{"k\ufffd":"é\"\ufffd"}"#),
            (r#"\ud800 "x""#, r#"\ud800 "x""#),
        ] {
            assert_eq!(go_surrogates(json), want, "{json}");
        }
    }
}
