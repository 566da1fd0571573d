//! `configure`: docker and the containers tools (podman, skopeo, buildah) set up to use
//! this helper for every IBM registry host (../shared/decisions.md §6).
//!
//! Files, in order:
//! 1. docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`): `credHelpers` for every
//!    host of [`HOSTS`] (they survive a podman login's rewrite of that file), and
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

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use crate::env::{Env, DOCKER_CONFIG, REGISTRY_AUTH_FILE};
use crate::fsutil::{self, WriteOptions};
use crate::registry::HOSTS;

/// The helper's name in `credsStore`/`credHelpers`: docker runs `docker-credential-ibmcr`.
pub const HELPER_NAME: &str = "ibmcr";

/// Suffix of the backup written beside each file before it changes.
pub const BACKUP_SUFFIX: &str = ".ibmcr-backup";

/// The usage line of the verb.
pub const USAGE: &str =
    "usage: docker-credential-ibmcr configure [--dry-run] [--undo] [--creds-store]";

const CREDS_STORE: &str = "credsStore";
const CRED_HELPERS: &str = "credHelpers";
/// What `--dry-run` shows as the value of a redacted secret.
const REDACTED: &str = "****";
/// Fields of an `auths` entry that hold a secret (matched case-insensitively, as Go does).
const AUTH_SECRET_FIELDS: &[&str] = &["auth", "password", "identitytoken", "registrytoken"];
/// Lines of unchanged context around each change in `--dry-run`.
const DIFF_CONTEXT: usize = 3;

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
    /// Whether every file was set up.
    pub result: Result<()>,
}

/// [`run`], saying what it does in `lines`.
fn configure_files(args: &[String], env: &Env, uid: u32, lines: &mut Vec<String>) -> Result<()> {
    let Some(options) = Options::parse(args)? else {
        lines.push(USAGE.to_string());
        lines.push(
            "sets credHelpers (and credsStore) to ibmcr for every IBM registry host in docker's \
             config.json and the containers tools' auth.json"
                .to_string(),
        );
        return Ok(());
    };
    let targets = targets(env, uid)?;
    let mut plans = Vec::with_capacity(targets.len());
    for target in targets {
        plans.push(Plan::new(target, &options)?);
    }
    for plan in &plans {
        plan.apply(&options, lines)?;
    }
    if !options.undo {
        if uid == 0 {
            lines.push(
                "note: as root this set up root's own files (`sudo docker`, root podman); root \
                 usually has no keyring, so `store` falls back to the file store"
                    .to_string(),
            );
        } else {
            lines.push(
                "note: `sudo docker` and root podman read root's files, not these: run \
                 `sudo docker-credential-ibmcr configure` for them"
                    .to_string(),
            );
        }
    }
    Ok(())
}

/// The flags of the verb.
#[derive(Debug, Default)]
struct Options {
    dry_run: bool,
    undo: bool,
    creds_store: bool,
}

impl Options {
    /// `None` for `--help`.
    fn parse(args: &[String]) -> Result<Option<Options>> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--dry-run" | "-n" => options.dry_run = true,
                "--undo" => options.undo = true,
                "--creds-store" => options.creds_store = true,
                "--help" | "-h" => return Ok(None),
                other if other.starts_with('-') => {
                    bail!(
                        "unknown option for configure: {} ({USAGE})",
                        crate::log::quoted(other)
                    )
                }
                // Not echoed: a stray argument may be a pasted secret.
                _ => bail!("configure takes no arguments ({USAGE})"),
            }
        }
        if options.undo && options.creds_store {
            bail!("--creds-store has no meaning with --undo ({USAGE})");
        }
        Ok(Some(options))
    }
}

/// What a file is for: docker's config also gets `credsStore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Containers,
    Docker,
}

/// One file to set up.
#[derive(Debug)]
struct Target {
    /// The path as the tools name it (shown to the user).
    path: PathBuf,
    kind: Kind,
    /// `/run/containers/<uid>/auth.json`, chosen only because `XDG_RUNTIME_DIR` is unset:
    /// a user who may not create it is told so and the run goes on.
    runtime_fallback: bool,
}

/// The files to set up, in order, each once (two names of one file are merged).
fn targets(env: &Env, uid: u32) -> Result<Vec<Target>> {
    let no_home = |or: &str| anyhow!("no home directory: set HOME or {or}");
    let docker = match (&env.docker_config, &env.home) {
        (Some(dir), _) => dir.join("config.json"),
        (None, Some(home)) => home.join(".docker").join("config.json"),
        (None, None) => return Err(no_home(DOCKER_CONFIG)),
    };
    let mut list = vec![Target {
        path: docker,
        kind: Kind::Docker,
        runtime_fallback: false,
    }];
    if let Some(file) = &env.registry_auth_file {
        list.push(Target {
            path: file.clone(),
            kind: Kind::Containers,
            runtime_fallback: false,
        });
    } else {
        let config_home = match (&env.xdg_config_home, &env.home) {
            (Some(dir), _) => dir.clone(),
            (None, Some(home)) => home.join(".config"),
            (None, None) => return Err(no_home(REGISTRY_AUTH_FILE)),
        };
        list.push(Target {
            path: config_home.join("containers").join("auth.json"),
            kind: Kind::Containers,
            runtime_fallback: false,
        });
        let (login, runtime_fallback) = match &env.xdg_runtime_dir {
            Some(dir) => (dir.join("containers").join("auth.json"), false),
            None => (
                PathBuf::from(format!("/run/containers/{uid}/auth.json")),
                true,
            ),
        };
        list.push(Target {
            path: login,
            kind: Kind::Containers,
            runtime_fallback,
        });
    }
    let mut unique: Vec<(PathBuf, Target)> = Vec::with_capacity(list.len());
    for target in list {
        let id = identity(&target.path);
        match unique.iter_mut().find(|(other, _)| *other == id) {
            Some((_, kept)) => {
                kept.kind = kept.kind.max(target.kind);
                kept.runtime_fallback &= target.runtime_fallback;
            }
            None => unique.push((id, target)),
        }
    }
    Ok(unique.into_iter().map(|(_, t)| t).collect())
}

/// A name that is the same for two paths of one file (as far as the file system can tell).
fn identity(path: &Path) -> PathBuf {
    let resolved = resolve_links(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(p) = fs::canonicalize(&resolved) {
        return p;
    }
    match (resolved.parent(), resolved.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(resolved),
        _ => resolved,
    }
}

/// The file a path ends at, following symlinks, including a dangling last one (so a
/// write creates the file the link points to, as docker does).
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)
                    .with_context(|| format!("reading the symlink {}", current.display()))?;
                current = match current.parent() {
                    Some(parent) if target.is_relative() => parent.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e).with_context(|| format!("{}", current.display())),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// What a run changes in one file's `credsStore`.
#[derive(Debug, PartialEq, Eq)]
enum StoreChange {
    /// Not ours to touch (a containers file), or nothing to do.
    None,
    /// Already `ibmcr`.
    Already,
    /// Set where none was.
    Set,
    /// Another helper replaced (`--creds-store`).
    Replaced(String),
    /// Another helper kept.
    Kept(String),
    /// `ibmcr` removed (`--undo`).
    Removed,
}

/// One file: read, checked, and its new content computed; nothing written yet.
#[derive(Debug)]
struct Plan {
    target: Target,
    /// Where the bytes go: `target.path` with symlinks followed.
    write_path: PathBuf,
    /// The file's bytes and metadata, `None` when it does not exist.
    before: Option<(Vec<u8>, fs::Metadata)>,
    before_doc: Value,
    after_doc: Value,
    store: StoreChange,
    /// `credHelpers` entries added (configure) or removed (undo).
    hosts: usize,
    /// IBM hosts whose `credHelpers` entry names another helper: `host=helper`.
    foreign: Vec<String>,
}

impl Plan {
    fn new(target: Target, options: &Options) -> Result<Plan> {
        let shown = target.path.display().to_string();
        let write_path = resolve_links(&target.path)?;
        let before = match fs::read(&write_path) {
            Ok(bytes) => {
                let meta = fs::metadata(&write_path)
                    .with_context(|| format!("{shown}: reading its metadata"))?;
                Some((bytes, meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("{shown}: cannot read it")),
        };
        let before_doc = match &before {
            None => Value::Object(Map::new()),
            Some((bytes, _)) => {
                parse_document(bytes).map_err(|e| anyhow!("{shown}: {e}; no file was changed"))?
            }
        };
        let mut after_doc = before_doc.clone();
        let Value::Object(map) = &mut after_doc else {
            bail!("{shown}: not a JSON object; no file was changed");
        };
        let mut plan = Plan {
            target,
            write_path,
            before,
            before_doc,
            after_doc: Value::Null,
            store: StoreChange::None,
            hosts: 0,
            foreign: Vec::new(),
        };
        let edit = if options.undo {
            plan.undo(map)
        } else {
            plan.configure(map, options.creds_store)
        };
        edit.map_err(|e| anyhow!("{shown}: {e}; no file was changed"))?;
        plan.after_doc = after_doc;
        Ok(plan)
    }

    /// Adds `credHelpers` (and `credsStore` for docker) to `map`.
    fn configure(&mut self, map: &mut Map<String, Value>, replace_store: bool) -> Result<()> {
        if self.target.kind == Kind::Docker {
            self.store = match map.get(CREDS_STORE) {
                None | Some(Value::Null) => StoreChange::Set,
                Some(Value::String(s)) if s.is_empty() => StoreChange::Set,
                Some(Value::String(s)) if s == HELPER_NAME => StoreChange::Already,
                Some(Value::String(s)) if replace_store => StoreChange::Replaced(s.clone()),
                Some(Value::String(s)) => StoreChange::Kept(s.clone()),
                Some(_) => bail!("{CREDS_STORE} is not a string"),
            };
            if matches!(self.store, StoreChange::Set | StoreChange::Replaced(_)) {
                map.insert(CREDS_STORE.into(), Value::String(HELPER_NAME.into()));
            }
        }
        let helpers = match map.get_mut(CRED_HELPERS) {
            Some(Value::Object(helpers)) => helpers,
            Some(Value::Null) | None => {
                map.insert(CRED_HELPERS.into(), Value::Object(Map::new()));
                match map.get_mut(CRED_HELPERS) {
                    Some(Value::Object(helpers)) => helpers,
                    _ => bail!("{CRED_HELPERS} could not be added"),
                }
            }
            Some(_) => bail!("{CRED_HELPERS} is not a JSON object"),
        };
        for &(host, _, _) in HOSTS {
            match helpers.get(host) {
                None => {
                    helpers.insert(host.into(), Value::String(HELPER_NAME.into()));
                    self.hosts += 1;
                }
                Some(Value::String(s)) if s == HELPER_NAME => {}
                Some(Value::String(s)) => self
                    .foreign
                    .push(format!("{host}={}", crate::log::quoted(s))),
                Some(other) => self
                    .foreign
                    .push(format!("{host}={}", crate::log::quoted(&other.to_string()))),
            }
        }
        Ok(())
    }

    /// Removes from `map` exactly what `configure` adds.
    fn undo(&mut self, map: &mut Map<String, Value>) -> Result<()> {
        if self.target.kind == Kind::Docker {
            if let Some(Value::String(s)) = map.get(CREDS_STORE) {
                if s == HELPER_NAME {
                    map.remove(CREDS_STORE);
                    self.store = StoreChange::Removed;
                }
            }
        }
        let emptied = match map.get_mut(CRED_HELPERS) {
            Some(Value::Object(helpers)) => {
                for &(host, _, _) in HOSTS {
                    if helpers.get(host).and_then(Value::as_str) == Some(HELPER_NAME) {
                        helpers.remove(host);
                        self.hosts += 1;
                    }
                }
                self.hosts > 0 && helpers.is_empty()
            }
            Some(Value::Null) | None => false,
            Some(_) => bail!("{CRED_HELPERS} is not a JSON object"),
        };
        if emptied {
            map.remove(CRED_HELPERS);
        }
        Ok(())
    }

    /// The summary of the change: `credsStore=ibmcr, credHelpers for 33 IBM hosts`.
    fn summary(&self) -> String {
        let mut parts = Vec::new();
        match &self.store {
            StoreChange::Set | StoreChange::Removed => {
                parts.push(format!("{CREDS_STORE}={HELPER_NAME}"))
            }
            StoreChange::Replaced(old) => parts.push(format!(
                "{CREDS_STORE}={HELPER_NAME} (was {})",
                crate::log::quoted(old)
            )),
            _ => {}
        }
        if self.hosts > 0 {
            parts.push(format!("{CRED_HELPERS} for {} IBM hosts", self.hosts));
        }
        parts.join(", ")
    }

    fn apply(&self, options: &Options, lines: &mut Vec<String>) -> Result<()> {
        let shown = self.target.path.display().to_string();
        let undo = options.undo;
        if let StoreChange::Kept(old) = &self.store {
            lines.push(format!(
                "kept {CREDS_STORE}={} in {shown}: docker asks it for every other registry; \
                 `configure --creds-store` replaces it",
                crate::log::quoted(old)
            ));
        }
        if !self.foreign.is_empty() {
            lines.push(format!(
                "kept {CRED_HELPERS} in {shown} that name another helper, so ibmcr does not \
                 serve those hosts: {}",
                self.foreign.join(", ")
            ));
        }
        let exists = self.before.is_some();
        let changed = if undo {
            exists && self.before_doc != self.after_doc
        } else {
            !exists || self.before_doc != self.after_doc
        };
        if !changed {
            if undo {
                lines.push(format!("{shown}: nothing to undo"));
            } else {
                lines.push(format!("{shown} already configured"));
            }
            return Ok(());
        }
        let summary = self.summary();
        if options.dry_run {
            let new = if exists { "" } else { " (new file)" };
            if undo {
                lines.push(format!("would undo {shown}: remove {summary}"));
            } else {
                lines.push(format!("would configure {shown}{new}: {summary}"));
            }
            let before = if exists {
                render(&redacted(&self.before_doc))?
            } else {
                String::new()
            };
            let after = render(&redacted(&self.after_doc))?;
            let before_name = if exists { shown.as_str() } else { "/dev/null" };
            let diff = unified_diff(&before, &after, before_name, &shown);
            // Every line of the diff ends in `\n`: split so, the lines join back to it.
            lines.extend(diff.split_terminator('\n').map(str::to_owned));
            return Ok(());
        }
        let bytes = render(&self.after_doc)?;
        let written = self.write(bytes.as_bytes());
        match written {
            Ok(backup) => {
                let note = match backup {
                    Some(b) => format!(" (backup: {})", b.display()),
                    None => " (new file)".to_string(),
                };
                if undo {
                    lines.push(format!("undid {shown}: removed {summary}{note}"));
                } else {
                    lines.push(format!("configured {shown}: {summary}{note}"));
                }
                Ok(())
            }
            Err(e) if self.target.runtime_fallback && is_permission_denied(&e) => {
                lines.push(format!(
                    "skipped {shown}: permission denied (XDG_RUNTIME_DIR is unset; podman sets \
                     it itself, skopeo needs it or {REGISTRY_AUTH_FILE})"
                ));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Backs up the old bytes (if any) and replaces the file; returns the backup's path.
    fn write(&self, bytes: &[u8]) -> Result<Option<PathBuf>> {
        let shown = self.target.path.display();
        let parent = match self.write_path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fsutil::create_private_dirs(&parent)
            .with_context(|| format!("{shown}: creating {}", parent.display()))?;
        let backup = match &self.before {
            Some((old, meta)) => {
                let mut name = self.target.path.clone().into_os_string();
                name.push(BACKUP_SUFFIX);
                let backup = PathBuf::from(name);
                let backup_target = resolve_links(&backup)?;
                let options = WriteOptions {
                    mode: Some(0o600),
                    owner_of: Some(meta),
                };
                fsutil::write_atomic_with(&backup_target, old, options)
                    .with_context(|| format!("{shown}: writing the backup {}", backup.display()))?;
                Some(backup)
            }
            None => None,
        };
        // An existing file keeps its mode and owner: a user's `config.json` rewritten by
        // `sudo … configure` stays theirs and readable to them.
        let options = match &self.before {
            Some((_, meta)) => WriteOptions {
                mode: Some(file_mode(meta)),
                owner_of: Some(meta),
            },
            None => WriteOptions {
                mode: Some(0o600),
                owner_of: None,
            },
        };
        fsutil::write_atomic_with(&self.write_path, bytes, options)
            .with_context(|| format!("{shown}: writing it"))?;
        Ok(backup)
    }
}

/// Parses a config file: one JSON object; an empty file counts as `{}` (docker's rule).
fn parse_document(bytes: &[u8]) -> Result<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    // The message names the place only: the file may hold secrets.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| anyhow!("malformed JSON at line {} column {}", e.line(), e.column()))?;
    if !value.is_object() {
        bail!("not a JSON object");
    }
    Ok(value)
}

/// The file's bytes: tab-indented as docker and c/image write them, with a final newline.
fn render(doc: &Value) -> Result<String> {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    serde::Serialize::serialize(doc, &mut ser).context("serializing JSON")?;
    bytes.push(b'\n');
    String::from_utf8(bytes).context("serializing JSON")
}

/// A copy of `doc` fit to print: the secrets of `auths` entries, every `HttpHeaders` value
/// and the user:password part of any URL become `"****"`.
fn redacted(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Value::Object(map) = &mut doc {
        for (key, value) in map.iter_mut() {
            if key.eq_ignore_ascii_case("auths") {
                if let Value::Object(auths) = value {
                    for entry in auths.values_mut() {
                        match entry {
                            Value::Object(fields) => {
                                for (name, field) in fields.iter_mut() {
                                    let secret = AUTH_SECRET_FIELDS
                                        .iter()
                                        .any(|f| name.eq_ignore_ascii_case(f));
                                    if secret {
                                        *field = Value::String(REDACTED.into());
                                    }
                                }
                            }
                            other => *other = Value::String(REDACTED.into()),
                        }
                    }
                }
            } else if key.eq_ignore_ascii_case("HttpHeaders") {
                if let Value::Object(headers) = value {
                    for header in headers.values_mut() {
                        *header = Value::String(REDACTED.into());
                    }
                }
            }
        }
    }
    redact_url_userinfo(&mut doc);
    doc
}

/// `http://user:pass@proxy:3128` → `http://****@proxy:3128`, in every string of `value`.
fn redact_url_userinfo(value: &mut Value) {
    match value {
        Value::String(s) => *s = crate::log::redact_userinfo(s),
        Value::Array(items) => items.iter_mut().for_each(redact_url_userinfo),
        Value::Object(map) => map.values_mut().for_each(redact_url_userinfo),
        _ => {}
    }
}

/// A unified diff of two texts with [`DIFF_CONTEXT`] lines of context.
fn unified_diff(before: &str, after: &str, before_name: &str, after_name: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = diff_lines(&a, &b);
    let mut text = format!("--- {before_name}\n+++ {after_name}\n");
    // Indices into `ops` of the changes, grouped into hunks.
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changes.len() {
        let first = changes[i];
        let mut last = first;
        while i + 1 < changes.len() && changes[i + 1] - last <= 2 * DIFF_CONTEXT + 1 {
            i += 1;
            last = changes[i];
        }
        i += 1;
        let start = first.saturating_sub(DIFF_CONTEXT);
        let end = (last + DIFF_CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let (old_start, new_start) = ops[..start].iter().fold((0, 0), |(o, n), op| match op {
            Op::Same(..) => (o + 1, n + 1),
            Op::Removed(_) => (o + 1, n),
            Op::Added(_) => (o, n + 1),
        });
        let old_len = hunk.iter().filter(|op| !matches!(op, Op::Added(_))).count();
        let new_len = hunk
            .iter()
            .filter(|op| !matches!(op, Op::Removed(_)))
            .count();
        let range = |start: usize, len: usize| {
            if len == 0 {
                format!("{start},0")
            } else {
                format!("{},{len}", start + 1)
            }
        };
        text.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(old_start, old_len),
            range(new_start, new_len)
        ));
        for op in hunk {
            let (sign, line) = match op {
                Op::Same(line) => (' ', line),
                Op::Removed(line) => ('-', line),
                Op::Added(line) => ('+', line),
            };
            text.push(sign);
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// One line of a diff.
#[derive(Debug, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// A line diff: common prefix and suffix, then a longest common subsequence of the rest
/// (small here: configure changes two neighbouring keys of a sorted document).
fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op<'a>> = a[..prefix].iter().map(|l| Op::Same(l)).collect();
    if ma.len().saturating_mul(mb.len()) > 4_000_000 {
        // Too big to align: show it all removed, then all added.
        ops.extend(ma.iter().map(|l| Op::Removed(l)));
        ops.extend(mb.iter().map(|l| Op::Added(l)));
    } else {
        // lcs[i][j]: length of the LCS of ma[i..] and mb[j..].
        let width = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * width];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * width + j] = if ma[i] == mb[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                ops.push(Op::Same(ma[i]));
                i += 1;
                j += 1;
            } else if i < ma.len()
                && (j == mb.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1])
            {
                ops.push(Op::Removed(ma[i]));
                i += 1;
            } else {
                ops.push(Op::Added(mb[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

fn is_permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
    })
}

#[cfg(unix)]
fn file_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn file_mode(_meta: &fs::Metadata) -> u32 {
    0o600
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicU32, Ordering};

    const CANARY: &str = "Q0FOQVJZLXNlY3JldC12YWx1ZQ==";

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ibmcr-configure-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }

        /// HOME and XDG_RUNTIME_DIR inside the scratch dir, plus `extra`.
        fn env(&self, extra: &[(&str, PathBuf)]) -> Env {
            let mut vars: Vec<(String, OsString)> = vec![
                ("HOME".into(), self.path("home").into()),
                ("XDG_RUNTIME_DIR".into(), self.path("run").into()),
            ];
            for (k, v) in extra {
                vars.retain(|(name, _)| name != k);
                vars.push((k.to_string(), v.into()));
            }
            Env::from_lookup(
                |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
                false,
            )
            .unwrap()
        }

        fn docker(&self) -> PathBuf {
            self.path("home/.docker/config.json")
        }

        fn persistent(&self) -> PathBuf {
            self.path("home/.config/containers/auth.json")
        }

        fn runtime(&self) -> PathBuf {
            self.path("run/containers/auth.json")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A run as uid 1000: what it writes to stdout, or its error.
    fn configure(env: &Env, args: &[&str]) -> Result<String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        stdout(run(&args, env, 1000))
    }

    /// The bytes the binary writes for `report`, as `helper::run` writes them.
    fn stdout(report: Report) -> Result<String> {
        let mut out = Vec::new();
        crate::protocol::write_report(&mut out, &report.lines).unwrap();
        report.result?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    fn backup(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(BACKUP_SUFFIX);
        PathBuf::from(name)
    }

    fn all_hosts_ibmcr(doc: &Value) -> bool {
        let helpers = doc[CRED_HELPERS].as_object().unwrap();
        HOSTS.iter().all(|(h, _, _)| helpers[*h] == HELPER_NAME)
    }

    /// Every file in the tree with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    stack.push(p);
                } else if meta.file_type().is_symlink() {
                    files.push((
                        p.clone(),
                        fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ));
                } else {
                    files.push((p.clone(), fs::read(&p).unwrap()));
                }
            }
        }
        files.sort();
        files
    }

    const EXISTING: &str = r#"{
        "auths": {"x.example": {"auth": "Q0FOQVJZLXNlY3JldC12YWx1ZQ=="}, "us.icr.io": {}},
        "psFormat": "table {{.ID}}",
        "credsStore": "desktop",
        "proxies": {"default": {"httpProxy": "http://user:pw@proxy:3128"}},
        "credHelpers": {"gcr.io": "gcloud"}
    }"#;

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
        assert!(
            out.contains(&format!(
                "configured {}: credsStore=ibmcr, credHelpers for {n} IBM hosts (new file)\n",
                s.docker().display()
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "configured {}: credHelpers for {n} IBM hosts (new file)\n",
                s.persistent().display()
            )),
            "{out}"
        );
        assert!(out.contains("sudo docker"), "root hint: {out}");
        // No temp files left behind.
        let names: Vec<_> = snapshot(&s.0).into_iter().map(|(p, _)| p).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn existing_config_keeps_every_key_and_a_foreign_creds_store() {
        let s = Scratch::new("existing");
        write(&s.docker(), EXISTING);
        fs::set_permissions(s.docker(), fs::Permissions::from_mode(0o644)).unwrap();
        let out = configure(&s.env(&[]), &[]).unwrap();
        let before: Value = serde_json::from_str(EXISTING).unwrap();
        let after = read_json(&s.docker());
        for key in ["auths", "psFormat", "proxies"] {
            assert_eq!(after[key], before[key], "{key}");
        }
        assert_eq!(after[CREDS_STORE], "desktop", "kept");
        assert_eq!(after[CRED_HELPERS]["gcr.io"], "gcloud");
        assert!(all_hosts_ibmcr(&after));
        assert!(
            out.contains(&format!(
                "kept credsStore=desktop in {}: docker asks it for every other registry; \
             `configure --creds-store` replaces it\n",
                s.docker().display()
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "configured {}: credHelpers for {} IBM hosts (backup: {})\n",
                s.docker().display(),
                HOSTS.len(),
                backup(&s.docker()).display()
            )),
            "{out}"
        );
        assert_eq!(fs::read_to_string(backup(&s.docker())).unwrap(), EXISTING);
        assert_eq!(mode(&backup(&s.docker())), 0o600);
        assert_eq!(mode(&s.docker()), 0o644, "an existing file keeps its mode");
        assert!(!out.contains(CANARY));
    }

    #[test]
    fn creds_store_flag_replaces_a_foreign_one() {
        let s = Scratch::new("replace");
        write(&s.docker(), EXISTING);
        let out = configure(&s.env(&[]), &["--creds-store"]).unwrap();
        let after = read_json(&s.docker());
        assert_eq!(after[CREDS_STORE], HELPER_NAME);
        assert_eq!(after["psFormat"], "table {{.ID}}");
        assert!(out.contains("credsStore=ibmcr (was desktop)"), "{out}");
        assert!(!out.contains("kept credsStore"), "{out}");
    }

    #[test]
    fn a_foreign_helper_for_an_ibm_host_is_kept_and_named() {
        let s = Scratch::new("foreign");
        write(
            &s.docker(),
            r#"{"credHelpers": {"us.icr.io": "secretservice"}}"#,
        );
        let out = configure(&s.env(&[]), &[]).unwrap();
        let after = read_json(&s.docker());
        assert_eq!(after[CRED_HELPERS]["us.icr.io"], "secretservice");
        assert_eq!(after[CRED_HELPERS]["de.icr.io"], HELPER_NAME);
        assert!(
            out.contains(&format!(
                "kept credHelpers in {} that name another helper, so ibmcr does not serve those \
             hosts: us.icr.io=secretservice\n",
                s.docker().display()
            )),
            "{out}"
        );
        assert!(out.contains(&format!("credHelpers for {} IBM hosts", HOSTS.len() - 1)));
        // Undo leaves it too.
        configure(&s.env(&[]), &["--undo"]).unwrap();
        assert_eq!(
            read_json(&s.docker()),
            serde_json::json!({"credHelpers": {"us.icr.io": "secretservice"}})
        );
    }

    #[test]
    fn a_second_run_changes_nothing() {
        let s = Scratch::new("idem");
        write(&s.docker(), EXISTING);
        configure(&s.env(&[]), &[]).unwrap();
        let first = snapshot(&s.0);
        let out = configure(&s.env(&[]), &[]).unwrap();
        assert_eq!(snapshot(&s.0), first, "byte-identical, no new backup");
        for p in [s.docker(), s.persistent(), s.runtime()] {
            assert!(
                out.contains(&format!("{} already configured\n", p.display())),
                "{out}"
            );
        }
        assert!(!out.contains("configured /"), "{out}");
        // The backup still holds the original, not the configured file.
        assert_eq!(fs::read_to_string(backup(&s.docker())).unwrap(), EXISTING);
    }

    #[test]
    fn undo_restores_the_original_keys() {
        let s = Scratch::new("undo");
        write(&s.docker(), EXISTING);
        write(&s.persistent(), r#"{"auths": {}}"#);
        configure(&s.env(&[]), &["--creds-store"]).unwrap();
        let out = configure(&s.env(&[]), &["--undo"]).unwrap();
        let mut original: Value = serde_json::from_str(EXISTING).unwrap();
        // --creds-store replaced `desktop`; undo removes ibmcr and cannot know the old one.
        original.as_object_mut().unwrap().remove(CREDS_STORE);
        assert_eq!(read_json(&s.docker()), original);
        assert_eq!(read_json(&s.persistent()), serde_json::json!({"auths": {}}));
        assert_eq!(read_json(&s.runtime()), serde_json::json!({}));
        assert!(
            out.contains(&format!(
                "undid {}: removed credsStore=ibmcr, credHelpers for {} IBM hosts (backup: ",
                s.docker().display(),
                HOSTS.len()
            )),
            "{out}"
        );
        assert!(!out.contains("note:"), "{out}");
        // Undo again: nothing to do, nothing touched.
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--undo"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert!(
            out.contains(&format!("{}: nothing to undo\n", s.docker().display())),
            "{out}"
        );
    }

    #[test]
    fn configure_then_undo_round_trips_a_kept_creds_store() {
        let s = Scratch::new("roundtrip");
        write(&s.docker(), EXISTING);
        configure(&s.env(&[]), &[]).unwrap();
        configure(&s.env(&[]), &["--undo"]).unwrap();
        let original: Value = serde_json::from_str(EXISTING).unwrap();
        assert_eq!(read_json(&s.docker()), original);
    }

    #[test]
    fn undo_never_creates_files() {
        let s = Scratch::new("undo-none");
        let out = configure(&s.env(&[]), &["--undo"]).unwrap();
        assert!(snapshot(&s.0).is_empty());
        assert_eq!(out.matches(": nothing to undo\n").count(), 3, "{out}");
    }

    #[test]
    fn dry_run_writes_nothing_and_shows_no_secret() {
        let s = Scratch::new("dry");
        write(&s.docker(), EXISTING);
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--dry-run", "--creds-store"]).unwrap();
        assert_eq!(snapshot(&s.0), before, "nothing written");
        assert!(!out.contains(CANARY), "{out}");
        assert!(!out.contains("user:pw"), "{out}");
        assert!(
            out.contains(&format!(
            "would configure {}: credsStore=ibmcr (was desktop), credHelpers for {} IBM hosts\n",
            s.docker().display(),
            HOSTS.len()
        )),
            "{out}"
        );
        assert!(out.contains("-\t\"credsStore\": \"desktop\",\n"), "{out}");
        assert!(out.contains("+\t\"credsStore\": \"ibmcr\",\n"), "{out}");
        assert!(out.contains("+\t\t\"de.icr.io\": \"ibmcr\",\n"), "{out}");
        assert!(
            out.contains(&format!(
                "would configure {} (new file): credHelpers for {} IBM hosts\n--- /dev/null\n",
                s.persistent().display(),
                HOSTS.len()
            )),
            "{out}"
        );
        // The whole document, as a diff with full context, shows the redacted values.
        let shown = unified_diff(
            "",
            &render(&redacted(&read_json(&s.docker()))).unwrap(),
            "a",
            "b",
        );
        assert!(shown.contains("\"auth\": \"****\""), "{shown}");
        assert!(shown.contains("http://****@proxy:3128"), "{shown}");
        assert!(!shown.contains(CANARY));
        // A dry run of undo also writes nothing.
        let out = configure(&s.env(&[]), &["--undo", "-n"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert!(out.contains("nothing to undo"), "{out}");
    }

    #[test]
    fn dry_run_of_a_configured_file_says_so() {
        let s = Scratch::new("dry-done");
        configure(&s.env(&[]), &[]).unwrap();
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--dry-run"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert_eq!(out.matches(" already configured\n").count(), 3, "{out}");
        let out = configure(&s.env(&[]), &["--dry-run", "--undo"]).unwrap();
        assert!(
            out.contains(&format!(
                "would undo {}: remove credsStore=ibmcr",
                s.docker().display()
            )),
            "{out}"
        );
        assert!(out.contains("-\t\"credsStore\": \"ibmcr\""), "{out}");
        assert_eq!(snapshot(&s.0), before);
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
    fn an_empty_file_counts_as_an_empty_object() {
        let s = Scratch::new("empty");
        write(&s.docker(), "\n");
        configure(&s.env(&[]), &[]).unwrap();
        assert!(all_hosts_ibmcr(&read_json(&s.docker())));
        assert_eq!(fs::read(backup(&s.docker())).unwrap(), b"\n");
    }

    #[test]
    fn a_replaced_file_keeps_its_owner_when_root_writes_it() {
        // Only root may give a file away; elsewhere the owner is the caller anyway.
        if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
            return;
        }
        let s = Scratch::new("owner");
        write(&s.docker(), "{}");
        std::os::unix::fs::chown(s.docker(), Some(4321), Some(4321)).unwrap();
        configure(&s.env(&[]), &[]).unwrap();
        for p in [s.docker(), backup(&s.docker())] {
            let meta = fs::metadata(&p).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4321, 4321), "{}", p.display());
        }
        assert!(all_hosts_ibmcr(&read_json(&s.docker())));
    }

    #[test]
    fn a_symlinked_file_is_written_through() {
        let s = Scratch::new("symlink");
        write(&s.path("dotfiles/docker.json"), EXISTING);
        fs::create_dir_all(s.path("home/.docker")).unwrap();
        std::os::unix::fs::symlink("../../dotfiles/docker.json", s.docker()).unwrap();
        // A dangling link: its target is created.
        fs::create_dir_all(s.path("home/.config/containers")).unwrap();
        std::os::unix::fs::symlink(s.path("dotfiles/auth.json"), s.persistent()).unwrap();
        configure(&s.env(&[]), &[]).unwrap();
        for (link, target) in [
            (s.docker(), s.path("dotfiles/docker.json")),
            (s.persistent(), s.path("dotfiles/auth.json")),
        ] {
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert!(all_hosts_ibmcr(&read_json(&target)), "{}", target.display());
        }
        assert_eq!(read_json(&s.docker())["psFormat"], "table {{.ID}}");
        assert_eq!(fs::read_to_string(backup(&s.docker())).unwrap(), EXISTING);
    }

    #[test]
    fn registry_auth_file_replaces_both_containers_files() {
        let s = Scratch::new("authfile");
        let file = s.path("auth/podman.json");
        let env = s.env(&[("REGISTRY_AUTH_FILE", file.clone())]);
        let out = configure(&env, &[]).unwrap();
        assert!(all_hosts_ibmcr(&read_json(&file)));
        assert!(s.docker().exists());
        assert!(!s.persistent().exists() && !s.runtime().exists());
        assert_eq!(out.matches("configured ").count(), 2, "{out}");
    }

    #[test]
    fn one_file_named_twice_is_configured_once_as_docker_s() {
        let s = Scratch::new("same");
        let env = s.env(&[
            ("DOCKER_CONFIG", s.path("conf")),
            ("REGISTRY_AUTH_FILE", s.path("conf/config.json")),
        ]);
        let out = configure(&env, &[]).unwrap();
        assert_eq!(out.matches("configured ").count(), 1, "{out}");
        assert_eq!(
            read_json(&s.path("conf/config.json"))[CREDS_STORE],
            HELPER_NAME
        );
    }

    #[test]
    fn the_files_follow_the_environment() {
        let s = Scratch::new("paths");
        let env = |vars: &[(&str, &str)]| {
            Env::from_lookup(
                |name| {
                    vars.iter()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| OsString::from(s.path(v)))
                },
                false,
            )
            .unwrap()
        };
        let paths = |env: &Env, uid| -> Vec<(PathBuf, Kind, bool)> {
            targets(env, uid)
                .unwrap()
                .into_iter()
                .map(|t| (t.path, t.kind, t.runtime_fallback))
                .collect()
        };
        assert_eq!(
            paths(&env(&[("HOME", "h")]), 1000),
            vec![
                (s.path("h/.docker/config.json"), Kind::Docker, false),
                (
                    s.path("h/.config/containers/auth.json"),
                    Kind::Containers,
                    false
                ),
                (
                    PathBuf::from("/run/containers/1000/auth.json"),
                    Kind::Containers,
                    true
                ),
            ]
        );
        assert_eq!(
            paths(
                &env(&[
                    ("HOME", "h"),
                    ("DOCKER_CONFIG", "d"),
                    ("XDG_CONFIG_HOME", "x"),
                    ("XDG_RUNTIME_DIR", "r")
                ]),
                0
            ),
            vec![
                (s.path("d/config.json"), Kind::Docker, false),
                (s.path("x/containers/auth.json"), Kind::Containers, false),
                (s.path("r/containers/auth.json"), Kind::Containers, false),
            ]
        );
        let err = targets(&env(&[]), 0).unwrap_err().to_string();
        assert_eq!(err, "no home directory: set HOME or DOCKER_CONFIG");
    }

    #[test]
    fn options_are_checked() {
        let s = Scratch::new("options");
        let env = s.env(&[]);
        let err = configure(&env, &["--x"]).unwrap_err().to_string();
        assert_eq!(err, format!("unknown option for configure: --x ({USAGE})"));
        let err = configure(&env, &["sekrit"]).unwrap_err().to_string();
        assert!(!err.contains("sekrit") && err.contains(USAGE), "{err}");
        assert!(configure(&env, &["--undo", "--creds-store"]).is_err());
        assert!(configure(&env, &["--help"]).unwrap().starts_with(USAGE));
        assert!(snapshot(&s.0).is_empty(), "nothing written");
    }

    #[test]
    fn as_root_the_hint_says_so() {
        let s = Scratch::new("root");
        let out = stdout(run(&[], &s.env(&[]), 0)).unwrap();
        assert!(out.contains("note: as root"), "{out}");
    }

    #[test]
    fn diff_shows_changes_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let b = "1\n2\n3\n4\nX\n6\n7\n8\n9\n10\nY\n";
        assert_eq!(
            unified_diff(a, b, "a", "b"),
            "--- a\n+++ b\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+X\n 6\n 7\n 8\n 9\n 10\n+Y\n"
        );
        assert_eq!(unified_diff(a, a, "a", "b"), "--- a\n+++ b\n");
        assert_eq!(
            unified_diff("", "x\n", "/dev/null", "b"),
            "--- /dev/null\n+++ b\n@@ -0,0 +1,1 @@\n+x\n"
        );
    }
}
