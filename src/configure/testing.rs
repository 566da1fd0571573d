//! What `configure`'s tests share: a scratch HOME, a run as it reaches stdout, and a
//! look at the files it left.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{run, Report, BACKUP_SUFFIX};
use crate::Env;

// The names every test of the module speaks in.
pub(super) use super::{CREDS_STORE, CRED_HELPERS, HELPER_NAME, USAGE};
pub(super) use crate::registry::HOSTS;
pub(super) use std::fs;
pub(super) use std::path::PathBuf;

pub(super) const CANARY: &str = "Q0FOQVJZLXNlY3JldC12YWx1ZQ==";

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(tag: &str) -> Scratch {
        let dir = crate::fsutil::tests::temp_dir(&format!("configure-{tag}"));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// HOME and XDG_RUNTIME_DIR inside the scratch dir, plus `extra`.
    pub(super) fn env(&self, extra: &[(&str, PathBuf)]) -> Env {
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

    pub(super) fn docker(&self) -> PathBuf {
        self.path("home/.docker/config.json")
    }

    pub(super) fn persistent(&self) -> PathBuf {
        self.path("home/.config/containers/auth.json")
    }

    pub(super) fn runtime(&self) -> PathBuf {
        self.path("run/containers/auth.json")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fails, showing `out`, unless `out` holds `part`.
#[track_caller]
pub(super) fn assert_contains(out: &str, part: &str) {
    assert!(out.contains(part), "{out}");
}

/// A run as uid 1000: what it writes to stdout, or its error.
pub(super) fn configure(env: &Env, args: &[&str]) -> Result<String> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    stdout(run(&args, env, 1000))
}

/// The bytes the binary writes for `report`, as `helper::run` writes them.
pub(super) fn stdout(report: Report) -> Result<String> {
    let mut out = Vec::new();
    crate::protocol::write_report(&mut out, &report.lines).unwrap();
    report.result?;
    Ok(String::from_utf8(out).unwrap())
}

pub(super) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

pub(super) fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o777
}

pub(super) fn backup(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

pub(super) fn all_hosts_ibmcr(doc: &Value) -> bool {
    let helpers = doc[CRED_HELPERS].as_object().unwrap();
    HOSTS.iter().all(|(h, _, _)| helpers[*h] == HELPER_NAME)
}

/// Every file in the tree with its bytes.
pub(super) fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
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

pub(super) const EXISTING: &str = r#"{
    "auths": {"x.example": {"auth": "Q0FOQVJZLXNlY3JldC12YWx1ZQ=="}, "us.icr.io": {}},
    "psFormat": "table {{.ID}}",
    "credsStore": "desktop",
    "proxies": {"default": {"httpProxy": "http://user:pw@proxy:3128"}},
    "credHelpers": {"gcr.io": "gcloud"}
}"#;
