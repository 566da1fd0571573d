//! The change to one file, computed before anything is written: its JSON read and
//! checked, then `credsStore`/`credHelpers` set (configure) or taken out (undo).

use std::fs;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use super::options::Options;
use super::targets::{resolve_links, Kind, Target};
use super::{CREDS_STORE, CRED_HELPERS, HELPER_NAME, MAX_CONFIG_BYTES};
use crate::fsutil::{self, Checks};
use crate::registry::HOSTS;

/// What a run changes in one file's `credsStore`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StoreChange {
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
pub(super) struct Plan {
    pub(super) target: Target,
    /// Where the bytes go: `target.path` with symlinks followed.
    pub(super) write_path: PathBuf,
    /// The file's bytes and metadata, `None` when it does not exist.
    pub(super) before: Option<(Vec<u8>, fs::Metadata)>,
    pub(super) before_doc: Value,
    pub(super) after_doc: Value,
    pub(super) store: StoreChange,
    /// `credHelpers` entries added (configure) or removed (undo).
    hosts: usize,
    /// IBM hosts whose `credHelpers` entry names another helper: `host=helper`.
    pub(super) foreign: Vec<String>,
}

impl Plan {
    pub(super) fn new(target: Target, options: &Options) -> Result<Plan> {
        let shown = target.path.display().to_string();
        let write_path = resolve_links(&target.path)?;
        // Symlinks are followed (resolved above), but only a regular file of a
        // bounded size is read: a link to /dev/zero must not eat the memory.
        let before = fsutil::read_file(&write_path, Checks::Foreign, MAX_CONFIG_BYTES)
            .with_context(|| format!("{shown}: cannot read it"))?;
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
    pub(super) fn summary(&self) -> String {
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
}

/// Parses a config file: one JSON object; an empty file counts as `{}` (docker's rule).
pub(super) fn parse_document(bytes: &[u8]) -> Result<Value> {
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
pub(super) fn render(doc: &Value) -> Result<String> {
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    serde::Serialize::serialize(doc, &mut ser).context("serializing JSON")?;
    bytes.push(b'\n');
    String::from_utf8(bytes).context("serializing JSON")
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::Value;

    use super::super::testing::*;

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
        assert_contains(
            &out,
            &format!(
                "kept credsStore=desktop in {}: docker asks it for every other registry; \
             `configure --creds-store` replaces it\n",
                s.docker().display()
            ),
        );
        assert_contains(
            &out,
            &format!(
                "configured {}: credHelpers for {} IBM hosts (backup: {})\n",
                s.docker().display(),
                HOSTS.len(),
                backup(&s.docker()).display()
            ),
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
        assert_contains(&out, "credsStore=ibmcr (was desktop)");
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
        assert_contains(
            &out,
            &format!(
                "kept credHelpers in {} that name another helper, so ibmcr does not serve those \
             hosts: us.icr.io=secretservice\n",
                s.docker().display()
            ),
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
            assert_contains(&out, &format!("{} already configured\n", p.display()));
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
        assert_contains(
            &out,
            &format!(
                "undid {}: removed credsStore=ibmcr, credHelpers for {} IBM hosts (backup: ",
                s.docker().display(),
                HOSTS.len()
            ),
        );
        assert!(!out.contains("note:"), "{out}");
        // Undo again: nothing to do, nothing touched.
        let before = snapshot(&s.0);
        let out = configure(&s.env(&[]), &["--undo"]).unwrap();
        assert_eq!(snapshot(&s.0), before);
        assert_contains(
            &out,
            &format!("{}: nothing to undo\n", s.docker().display()),
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
    fn an_empty_file_counts_as_an_empty_object() {
        let s = Scratch::new("empty");
        write(&s.docker(), "\n");
        configure(&s.env(&[]), &[]).unwrap();
        assert!(all_hosts_ibmcr(&read_json(&s.docker())));
        assert_eq!(fs::read(backup(&s.docker())).unwrap(), b"\n");
    }
}
