//! The credential chain after the stored keys (../shared/fleet.md §5), found
//! at the edges: the environment's API key, `IBMCLOUD_CR_TOKEN`, a projected
//! token at IBM's SDK default paths, the VPC instance identity, and the
//! `ibmcloud login` session file. First found wins; `IBMCR_IDENTITY` (or the
//! settings file's `"identity"`) restricts the chain to one source.
//!
//! Files read here are not the helper's: a CR token file, a projected token
//! (a symlink the kubelet swaps), the IBM Cloud CLI's `config.json`. They are
//! read without a mode check, but bounded, and only if they are regular
//! files (opened non-blocking, so a FIFO cannot hang a `get`). Nothing here
//! touches the network: the VPC source is only named, never probed.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::cache::KeySource;
use crate::debug;
use crate::env::{self, CrTokenVar, Env};
use crate::fsutil::{self, Checks};
use crate::mint::{Endpoint, TrustedProfile, DEFAULT_METADATA};
use crate::secret::Secret;
use crate::settings::IdentityChoice;

use super::source::{CrToken, CrTokenFrom, Session, Source, Vpc};

/// Where IBM's SDKs look for a projected CR token, in order (go-sdk-core
/// `container_authenticator.go`): IKS/ROKS, then Code Engine.
pub const PROJECTED_TOKEN_PATHS: [&str; 3] = [
    "/var/run/secrets/tokens/vault-token",
    "/var/run/secrets/tokens/sa-token",
    "/var/run/secrets/codeengine.cloud.ibm.com/compute-resource-token/token",
];
/// The largest CR token file read (a service account token is about 1 KiB).
const MAX_TOKEN_FILE: u64 = 64 * 1024;
/// The largest `ibmcloud` config file read.
const MAX_SESSION_FILE: u64 = 1 << 20;
/// The session file's name in the CLI's config directory.
const SESSION_FILE: &str = "config.json";

/// The first source after the stored keys that `choice` allows, as found
/// now; `None` when there is none. Reads the session file only when every
/// earlier source is absent.
pub fn first(env: &Env, choice: IdentityChoice) -> Result<Option<Source>> {
    use IdentityChoice as Only;
    if choice.allows_api_keys() {
        if let Some(k) = &env.api_key {
            return Ok(Some(Source::ApiKey {
                key: k.key.clone(),
                from: KeySource::Env(k.var.to_string()),
            }));
        }
    }
    let profile = env.cr_profile.as_deref().and_then(TrustedProfile::parse);
    if matches!(choice, Only::Auto | Only::CrToken) {
        if let Some(var) = env.cr_token()? {
            let profile = profile.clone().ok_or_else(|| {
                anyhow!(
                    "{} is set but {} names no trusted profile (Profile-…, crn:… or a name)",
                    env::IBMCLOUD_CR_TOKEN,
                    env::IBMCLOUD_CR_PROFILE
                )
            })?;
            let token = match var {
                CrTokenVar::Value(token) => CrTokenFrom::Value(token.clone()),
                CrTokenVar::File(path) => CrTokenFrom::File(path.clone()),
            };
            return Ok(Some(cr_token(token, profile, KeySource::CrToken)));
        }
        if let Some(profile) = &profile {
            if let Some(path) = env.projected_token_paths.iter().find(|p| p.is_file()) {
                debug!("get", "found a projected token at `{}`", path.display());
                let token = CrTokenFrom::File(path.clone());
                return Ok(Some(cr_token(token, profile.clone(), KeySource::Projected)));
            }
        }
    }
    if choice == Only::Vpc {
        let url = env.vpc_metadata_url.as_deref().unwrap_or(DEFAULT_METADATA);
        let metadata = Endpoint::parse_metadata(url)
            .map_err(|e| anyhow!("{}: {e:#}", env::IBMCR_VPC_METADATA_URL))?;
        return Ok(Some(Source::Vpc(Vpc { metadata, profile })));
    }
    if matches!(choice, Only::Auto | Only::Ibmcloud) {
        if let Some(file) = session_file(env) {
            if let Some(session) = read_session(&file)? {
                return Ok(Some(Source::Session(session)));
            }
        }
    }
    Ok(None)
}

fn cr_token(token: CrTokenFrom, profile: TrustedProfile, from: KeySource) -> Source {
    Source::CrToken(CrToken {
        token,
        profile,
        from,
    })
}

/// The `ibmcloud` CLI's config file (../shared/fleet.md §4):
/// `$IBMCLOUD_CONFIG_HOME/config.json`; else `<h>/.ibmcloud/config.json` if
/// that folder exists; else `<h>/.bluemix/config.json`, where `<h>` is
/// `$IBMCLOUD_HOME` or the home directory.
pub fn session_file(env: &Env) -> Option<PathBuf> {
    if let Some(dir) = &env.ibmcloud_config_home {
        return Some(dir.join(SESSION_FILE));
    }
    let home = env.ibmcloud_home.as_ref().or(env.home.as_ref())?;
    let ibmcloud = home.join(".ibmcloud");
    Some(match ibmcloud.is_dir() {
        true => ibmcloud.join(SESSION_FILE),
        false => home.join(".bluemix").join(SESSION_FILE),
    })
}

/// The session in the CLI's config file; `None` when the file does not
/// exist or holds no token (not logged in). Only read, never written.
pub fn read_session(file: &Path) -> Result<Option<Session>> {
    let what = || format!("the ibmcloud config `{}`", file.display());
    let Some(bytes) = read_foreign(file, MAX_SESSION_FILE).with_context(what)? else {
        return Ok(None);
    };
    // The file holds tokens: never let a parser quote it.
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| anyhow!("{} is not valid JSON", what()))?;
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    // Stored with its scheme: `Bearer eyJ…` (a logged-out CLI may leave the scheme alone).
    let access = text("IAMToken")
        .map(|t| match t.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                token.trim().to_string()
            }
            _ if t.eq_ignore_ascii_case("bearer") => String::new(),
            _ => t,
        })
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let refresh = text("IAMRefreshToken").map(Secret::new);
    if access.is_none() && refresh.is_none() {
        debug!("get", "{} holds no session (not logged in)", what());
        return Ok(None);
    }
    debug!(
        "get",
        "found an ibmcloud login session in `{}`",
        file.display()
    );
    Ok(Some(Session {
        file: file.to_path_buf(),
        access,
        refresh,
        iam: text("IAMEndpoint"),
    }))
}

/// Reads a CR token file at mint time: the token, trimmed.
pub fn read_cr_token(path: &Path) -> Result<Secret<String>> {
    let what = || format!("reading `{}`", path.display());
    let bytes = read_foreign(path, MAX_TOKEN_FILE)
        .with_context(what)?
        .ok_or_else(|| anyhow!("{}: no such file", what()))?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow!("{}: not UTF-8 text", what()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{}: the file is empty", what());
    }
    Ok(Secret::new(token.to_string()))
}

/// A file that is not the helper's: `None` when it does not exist; an error
/// when it is not a regular file or larger than `max` bytes. Symlinks are
/// followed (a projected token is one).
fn read_foreign(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    Ok(fsutil::read_file(path, Checks::Foreign, max)?.map(|(bytes, _)| bytes))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn dir(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "ibmcr-chain-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn env(vars: &[(&str, &str)], projected: &[PathBuf]) -> Env {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut e = Env::from_lookup(
            |n| {
                vars.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| OsString::from(v))
            },
            false,
        )
        .unwrap();
        e.projected_token_paths = projected.to_vec();
        e
    }

    /// The kind of the first source, or `none`.
    fn kind(e: &Env, choice: IdentityChoice) -> String {
        match first(e, choice).unwrap() {
            None => "none".into(),
            Some(s) => serde_json::to_value(s.key_source())
                .unwrap()
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "env".into()),
        }
    }

    #[test]
    fn the_chain_in_order_and_restricted() {
        let d = dir("order");
        let projected = d.join("sa-token");
        std::fs::write(&projected, "token").unwrap();
        let home = d.join("home");
        std::fs::create_dir_all(home.join(".bluemix")).unwrap();
        std::fs::write(
            home.join(".bluemix/config.json"),
            r#"{"IAMToken":"Bearer a","IAMRefreshToken":"r"}"#,
        )
        .unwrap();
        let home = home.to_str().unwrap();
        let all = [
            ("HOME", home),
            ("IC_API_KEY", "k"),
            ("IBMCLOUD_CR_TOKEN", "t"),
            ("IBMCLOUD_CR_PROFILE", "Profile-1"),
        ];
        let p = [projected.clone()];
        use IdentityChoice::{ApiKey, Auto, CrToken, Ibmcloud, Vpc};
        // Each source steps aside for the one before it.
        assert_eq!(kind(&env(&all, &p), Auto), "env");
        assert_eq!(kind(&env(&all[..1], &p), Auto), "ibmcloud");
        assert_eq!(kind(&env(&[all[0], all[2], all[3]], &p), Auto), "cr-token");
        assert_eq!(kind(&env(&[all[0], all[3]], &p), Auto), "projected");
        assert_eq!(kind(&env(&[all[0], all[3]], &[]), Auto), "ibmcloud");
        // A projected token needs a named profile.
        assert_eq!(kind(&env(&[all[0]], &p), Auto), "ibmcloud");
        // Restricted to one source.
        assert_eq!(kind(&env(&all, &p), ApiKey), "env");
        assert_eq!(kind(&env(&all, &p), CrToken), "cr-token");
        assert_eq!(kind(&env(&all, &p), Ibmcloud), "ibmcloud");
        assert_eq!(kind(&env(&all, &p), Vpc), "vpc");
        assert_eq!(kind(&env(&all[..1], &[]), CrToken), "none");
        assert_eq!(kind(&env(&[], &[]), ApiKey), "none");
    }

    #[test]
    fn the_metadata_service_is_a_source_only_when_asked_for() {
        let e = env(&[("IBMCLOUD_CR_PROFILE", "Profile-1")], &[]);
        for choice in [
            IdentityChoice::Auto,
            IdentityChoice::ApiKey,
            IdentityChoice::CrToken,
            IdentityChoice::Ibmcloud,
        ] {
            assert!(
                !matches!(first(&e, choice).unwrap(), Some(Source::Vpc(_))),
                "{choice:?}"
            );
        }
        let Some(Source::Vpc(vpc)) = first(&e, IdentityChoice::Vpc).unwrap() else {
            panic!("vpc");
        };
        assert_eq!(vpc.metadata.as_str(), DEFAULT_METADATA);
        assert_eq!(vpc.profile, TrustedProfile::parse("Profile-1"));
        let bad = env(&[("IBMCR_VPC_METADATA_URL", "http://example.com")], &[]);
        let err = first(&bad, IdentityChoice::Vpc).unwrap_err().to_string();
        assert!(err.starts_with("IBMCR_VPC_METADATA_URL: "), "{err}");
    }

    #[test]
    fn a_cr_token_without_a_profile_is_one_clear_line() {
        let e = env(&[("IBMCLOUD_CR_TOKEN", "canary-cr-token")], &[]);
        let err = first(&e, IdentityChoice::Auto).unwrap_err().to_string();
        assert_eq!(
            err,
            "IBMCLOUD_CR_TOKEN is set but IBMCLOUD_CR_PROFILE names no trusted profile (Profile-…, crn:… or a name)"
        );
    }

    #[test]
    fn the_session_file_is_found_where_the_cli_puts_it() {
        let d = dir("where");
        let h = d.to_str().unwrap();
        let e = |vars: &[(&str, &str)]| session_file(&env(vars, &[])).unwrap();
        assert_eq!(e(&[("HOME", h)]), d.join(".bluemix/config.json"));
        std::fs::create_dir_all(d.join(".ibmcloud")).unwrap();
        assert_eq!(e(&[("HOME", h)]), d.join(".ibmcloud/config.json"));
        assert_eq!(
            e(&[("HOME", "/nowhere"), ("IBMCLOUD_HOME", h)]),
            d.join(".ibmcloud/config.json")
        );
        assert_eq!(
            e(&[("HOME", h), ("IBMCLOUD_CONFIG_HOME", "/c")]),
            PathBuf::from("/c/config.json")
        );
        assert!(session_file(&env(&[], &[])).is_none());
    }

    #[test]
    fn session_files_are_read_not_trusted() {
        let d = dir("session");
        let f = d.join("config.json");
        assert!(read_session(&f).unwrap().is_none(), "no file");
        for logged_out in [
            r#"{"IAMToken":"","IAMRefreshToken":""}"#,
            r#"{"IAMToken":"Bearer ","IAMRefreshToken":" "}"#,
            r#"{"Region":"us-south"}"#,
        ] {
            std::fs::write(&f, logged_out).unwrap();
            assert!(
                read_session(&f).unwrap().is_none(),
                "logged out: {logged_out}"
            );
        }
        std::fs::write(
            &f,
            r#"{"IAMToken":"bearer  canary-access ","IAMRefreshToken":"canary-refresh","IAMEndpoint":"https://iam.cloud.ibm.com","Region":"us-south"}"#,
        )
        .unwrap();
        let s = read_session(&f).unwrap().unwrap();
        assert_eq!(s.access.unwrap().expose(), "canary-access");
        assert_eq!(s.refresh.unwrap().expose(), "canary-refresh");
        assert_eq!(s.iam.as_deref(), Some("https://iam.cloud.ibm.com"));
        // Garbage, a directory, a FIFO, a huge file: one line each, no hang, no echo.
        std::fs::write(&f, r#"{"IAMToken":"canary-x"#).unwrap();
        let err = format!("{:#}", read_session(&f).unwrap_err());
        assert!(
            err.ends_with("is not valid JSON") && !err.contains("canary"),
            "{err}"
        );
        let sub = d.join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(format!("{:#}", read_session(&sub).unwrap_err()).ends_with("not a regular file"));
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(format!("{:#}", read_session(&fifo).unwrap_err()).ends_with("not a regular file"));
        std::fs::write(&f, vec![b' '; (MAX_SESSION_FILE + 1) as usize]).unwrap();
        assert!(format!("{:#}", read_session(&f).unwrap_err()).contains("larger than"));
    }

    #[test]
    fn cr_token_files_are_read_at_each_mint() {
        let d = dir("token");
        let f = d.join("token");
        std::fs::write(&f, "  first\n").unwrap();
        assert_eq!(read_cr_token(&f).unwrap().expose(), "first");
        std::fs::write(&f, "second").unwrap();
        assert_eq!(read_cr_token(&f).unwrap().expose(), "second", "rotated");
        // A symlink, as the kubelet projects it.
        let link = d.join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(read_cr_token(&link).unwrap().expose(), "second");
        std::fs::write(&f, " \n").unwrap();
        assert!(read_cr_token(&f)
            .unwrap_err()
            .to_string()
            .ends_with("the file is empty"));
        let gone = d.join("gone");
        assert_eq!(
            read_cr_token(&gone).unwrap_err().to_string(),
            format!("reading `{}`: no such file", gone.display())
        );
    }
}
