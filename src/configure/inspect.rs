//! A read-only look at the files `configure` writes, for `doctor`: which
//! helper each file sends a host to, and whether an `auths` entry holds
//! credentials for it. Nothing here writes; nothing here quotes a secret (a
//! malformed file is named by line and column only).

use std::io;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::{Map, Value};

use super::plan::parse_document;
use super::redact::AUTH_SECRET_FIELDS;
use super::targets::{containers_files, docker_file};
use super::{CREDS_STORE, CRED_HELPERS, MAX_CONFIG_BYTES};
use crate::env::Env;
use crate::fsutil::{self, Checks};
use crate::log;
use crate::registry::IbmHost;

/// One config file as docker or the containers tools read it.
#[derive(Debug)]
pub struct ConfigFile {
    /// The path as the tools name it.
    pub path: PathBuf,
    /// Its JSON object; `Ok(None)` when it does not exist; else why it cannot
    /// be used, in a few words.
    doc: std::result::Result<Option<Map<String, Value>>, String>,
}

/// What one file says about one host, as docker and c/image read it:
/// `credHelpers` first, then `auths`.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `credHelpers` names this helper for it.
    Helper(String),
    /// No `credHelpers` entry, but the `auths` entry under this key holds credentials.
    Auths(String),
    /// Neither.
    Nothing,
}

impl ConfigFile {
    /// Reads `path` (through symlinks, bounded, never blocking on a FIFO);
    /// never fails: a file that cannot be read or parsed says so in
    /// [`ConfigFile::error`], naming no content.
    pub fn read(path: PathBuf) -> ConfigFile {
        let doc = match fsutil::read_file(&path, Checks::Foreign, MAX_CONFIG_BYTES) {
            Ok(None) => Ok(None),
            Err(e) => Err(read_error(&e)),
            Ok(Some((bytes, _))) => match parse_document(&bytes) {
                Ok(Value::Object(map)) => typed(&map).map(|()| Some(map)),
                Ok(_) => Err("not a JSON object".to_string()),
                Err(e) => Err(format!("{e:#}")),
            },
        };
        ConfigFile { path, doc }
    }

    /// True when the file exists and is a JSON object.
    pub fn exists(&self) -> bool {
        matches!(self.doc, Ok(Some(_)))
    }

    /// Why the file cannot be used, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.doc.as_ref().err().map(String::as_str)
    }

    fn map(&self) -> Option<&Map<String, Value>> {
        self.doc.as_ref().ok().and_then(Option::as_ref)
    }

    /// Where the file sends `host`.
    pub fn route(&self, host: &str) -> Route {
        if let Some(helper) = self.cred_helper(host) {
            return Route::Helper(helper);
        }
        match self.auths_credentials(host) {
            Some(key) => Route::Auths(key),
            None => Route::Nothing,
        }
    }

    /// The `credHelpers` entry for exactly `host` (docker matches exactly).
    pub fn cred_helper(&self, host: &str) -> Option<String> {
        let helpers = self.map()?.get(CRED_HELPERS)?.as_object()?;
        helpers.get(host).map(value_text)
    }

    /// `credsStore`, when set.
    pub fn creds_store(&self) -> Option<String> {
        match self.map()?.get(CREDS_STORE)? {
            Value::String(s) if s.is_empty() => None,
            Value::Null => None,
            other => Some(value_text(other)),
        }
    }

    /// The key of an `auths` entry for `host` that holds credentials (an
    /// `auth`, a password or a token; docker leaves `{}` behind for a
    /// helper's host, which holds none). `host` is an IBM host's name; keys
    /// match with any case, scheme, path and `:443`, as docker and c/image
    /// normalise them.
    pub fn auths_credentials(&self, host: &str) -> Option<String> {
        let auths = self.map()?.get("auths")?.as_object()?;
        auths.iter().find_map(|(key, entry)| {
            let holds = match entry {
                Value::Object(fields) => fields.iter().any(|(name, value)| {
                    AUTH_SECRET_FIELDS
                        .iter()
                        .any(|f| name.eq_ignore_ascii_case(f))
                        && value.as_str().is_some_and(|s| !s.is_empty())
                }),
                _ => false,
            };
            // A key names the host as ServerURLs do: any case, scheme, path, `:443`.
            let names = IbmHost::parse(key).is_some_and(|h| h.name() == host);
            (holds && names).then(|| log::quoted(key))
        })
    }
}

/// Checks the fields the tools route by have the types they read (docker
/// and c/image refuse the whole file otherwise). Names no value: a value of
/// the wrong type may be a secret pasted in the wrong place.
fn typed(map: &Map<String, Value>) -> std::result::Result<(), String> {
    let cannot = |what: &str| Err(format!("{what}: docker cannot read this file"));
    match map.get(CREDS_STORE) {
        None | Some(Value::String(_) | Value::Null) => {}
        Some(_) => return cannot("credsStore is not a string"),
    }
    match map.get(CRED_HELPERS) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(helpers)) if helpers.values().all(Value::is_string) => Ok(()),
        Some(Value::Object(_)) => cannot("a credHelpers entry is not a string"),
        Some(_) => cannot("credHelpers is not a JSON object"),
    }
}

/// A string of the file made fit to quote (after [`typed`], the values
/// routed by are strings).
fn value_text(value: &Value) -> String {
    log::quoted(value.as_str().unwrap_or_default())
}

/// A read error in a few words: the path is shown beside it already.
fn read_error(e: &anyhow::Error) -> String {
    match e
        .root_cause()
        .downcast_ref::<io::Error>()
        .map(io::Error::kind)
    {
        Some(io::ErrorKind::PermissionDenied) => "cannot be read (permission denied)".into(),
        Some(io::ErrorKind::IsADirectory) => "cannot be read (it is a directory)".into(),
        Some(kind) => format!("cannot be read ({})", log::one_line(&kind.to_string())),
        None => log::one_line(&e.root_cause().to_string()),
    }
}

/// docker's `config.json` (`$DOCKER_CONFIG`, else `~/.docker`).
pub fn docker_config(env: &Env) -> Result<ConfigFile> {
    Ok(ConfigFile::read(docker_file(env)?))
}

/// The files podman, skopeo and buildah take credentials from, in the order
/// they read them: `$REGISTRY_AUTH_FILE` alone; else the file `podman login`
/// writes, the persistent one, then docker's `config.json`.
/// (`/run/containers/<uid>/auth.json` stands for the first when
/// `XDG_RUNTIME_DIR` is unset; `uid` names it.)
pub fn containers_configs(env: &Env, uid: u32) -> Result<Vec<ConfigFile>> {
    let mut files: Vec<PathBuf> = containers_files(env, uid)?
        .into_iter()
        .rev()
        .map(|(path, _)| path)
        .collect();
    if env.registry_auth_file.is_none() {
        files.push(docker_file(env)?);
    }
    Ok(files.into_iter().map(ConfigFile::read).collect())
}

#[cfg(all(test, unix))]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn routes_as_docker_and_c_image_read_them() {
        let s = Scratch::new("inspect");
        let docker = s.docker();
        write(
            &docker,
            &format!(
                r#"{{"credsStore": "ibmcr", "credHelpers": {{"de.icr.io": "pass"}},
                   "auths": {{"https://US.icr.io/v1/": {{"auth": "{CANARY}"}}, "uk.icr.io": {{}},
                              "quay.io": {{"auth": "{CANARY}"}}}}}}"#
            ),
        );
        let file = ConfigFile::read(docker.clone());
        assert!(file.exists() && file.error().is_none());
        assert_eq!(file.creds_store().as_deref(), Some("ibmcr"));
        assert_eq!(file.route("de.icr.io"), Route::Helper("pass".into()));
        assert_eq!(
            file.route("us.icr.io"),
            Route::Auths("https://US.icr.io/v1/".into())
        );
        assert_eq!(
            file.route("uk.icr.io"),
            Route::Nothing,
            "{{}} holds nothing"
        );
        assert_eq!(file.route("icr.io"), Route::Nothing);

        write(
            &docker,
            &format!(r#"{{"auths": {{"us.icr.io": {{"auth": "{CANARY}""#),
        );
        let broken = ConfigFile::read(docker);
        assert!(!broken.exists());
        let why = broken.error().unwrap();
        assert!(why.starts_with("malformed JSON at line 1 column "), "{why}");
        assert!(!why.contains(CANARY));
        assert!(!ConfigFile::read(s.path("none.json")).exists());
        assert_eq!(ConfigFile::read(s.path("none.json")).error(), None);
    }

    #[test]
    fn containers_files_in_c_image_order() {
        let s = Scratch::new("inspect-order");
        let paths = |env: &Env| -> Vec<PathBuf> {
            containers_configs(env, 7)
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        assert_eq!(
            paths(&s.env(&[])),
            [s.runtime(), s.persistent(), s.docker()]
        );
        let file = s.path("auth/podman.json");
        assert_eq!(
            paths(&s.env(&[("REGISTRY_AUTH_FILE", file.clone())])),
            [file]
        );
    }
}
