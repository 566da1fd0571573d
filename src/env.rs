//! Every environment variable the helper reads, read once, in one place.
//!
//! `main` builds an [`Env`] from the process environment; everything below
//! takes it as an argument, so tests build their own.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::secret::Secret;
use crate::settings::{Mode, TokenAccess};

/// Backend for stored credentials: `auto`, `keyring` or `file`.
pub const IBMCR_STORE: &str = "IBMCR_STORE";
/// Default answer kind for IBM hosts: `bearer`, `apikey` or `registry-token`.
pub const IBMCR_MODE: &str = "IBMCR_MODE";
/// `debug` turns on one-line diagnostics on stderr.
pub const IBMCR_LOG: &str = "IBMCR_LOG";
/// Registry tokens minted as `readwrite` (default, push works) or `readonly`.
pub const IBMCR_TOKEN_ACCESS: &str = "IBMCR_TOKEN_ACCESS";
/// One directory for data, cache and config (services and CI without a usable HOME).
pub const IBMCR_HOME: &str = "IBMCR_HOME";
/// IBM Cloud CLI's API key variable; a fallback key source.
pub const IBMCLOUD_API_KEY: &str = "IBMCLOUD_API_KEY";
/// Terraform's API key variable; the last key source.
pub const IC_API_KEY: &str = "IC_API_KEY";
/// IAM base URL override (default `https://iam.cloud.ibm.com`).
pub const IBMCLOUD_IAM_API_ENDPOINT: &str = "IBMCLOUD_IAM_API_ENDPOINT";
/// Container Registry API base override (default `https://<registry host>`).
pub const IBMCLOUD_CR_API_ENDPOINT: &str = "IBMCLOUD_CR_API_ENDPOINT";
/// docker's config directory (default `~/.docker`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// containers tools' auth file override.
pub const REGISTRY_AUTH_FILE: &str = "REGISTRY_AUTH_FILE";

/// Where stored credentials live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// Keyring if the first `store` finds one usable, else file; the choice is recorded.
    Auto,
    /// The OS keyring, always.
    Keyring,
    /// The 0600 file store, always.
    File,
}

/// An API key taken from the environment, with the variable it came from.
#[derive(Clone, Debug)]
pub struct EnvApiKey {
    /// `IBMCLOUD_API_KEY` or `IC_API_KEY`.
    pub var: &'static str,
    /// The key.
    pub key: Secret<String>,
}

/// The helper's own directories.
#[derive(Clone, Debug)]
pub struct Dirs {
    /// Stored credentials (file store, keyring index, backend choice).
    pub data: PathBuf,
    /// Minted tokens.
    pub cache: PathBuf,
    /// Optional settings file.
    pub config: PathBuf,
}

/// A setting that only matters for IBM hosts: a bad value must not break
/// `get` for Docker Hub (docker v29 aborts a pull when the helper errors),
/// so it is kept as its error line until someone asks for it.
type Setting<T> = std::result::Result<Option<T>, String>;

/// The environment as the helper sees it.
#[derive(Clone, Debug)]
pub struct Env {
    /// `IBMCR_STORE`.
    pub store: StoreChoice,
    /// `IBMCR_MODE`, when set; an invalid value is an error only where a mode is needed.
    mode: Setting<Mode>,
    /// `IBMCR_TOKEN_ACCESS`, likewise.
    token_access: Setting<TokenAccess>,
    /// `IBMCR_LOG=debug`.
    pub debug: bool,
    /// `IBMCLOUD_API_KEY`, else `IC_API_KEY`.
    pub api_key: Option<EnvApiKey>,
    /// `IBMCLOUD_IAM_API_ENDPOINT`.
    pub iam_endpoint: Option<String>,
    /// `IBMCLOUD_CR_API_ENDPOINT`.
    pub cr_endpoint: Option<String>,
    /// The helper's directories; `None` when there is no home directory.
    pub dirs: Option<Dirs>,
    /// `HOME` (for `configure`).
    pub home: Option<PathBuf>,
    /// `DOCKER_CONFIG`.
    pub docker_config: Option<PathBuf>,
    /// `REGISTRY_AUTH_FILE`.
    pub registry_auth_file: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    #[allow(clippy::disallowed_methods)] // the one place that may
    pub fn from_process() -> Result<Env> {
        Env::from_lookup(|name| std::env::var_os(name), true)
    }

    /// Builds an `Env` from `lookup`. With `project_dirs`, the directories
    /// come from `directories` (which reads `HOME`/`XDG_*` itself) unless
    /// `IBMCR_HOME` is set, and only when `HOME` is set and not empty;
    /// without, only `IBMCR_HOME` gives directories.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<OsString>,
        project_dirs: bool,
    ) -> Result<Env> {
        let text = |name: &str| -> Result<Option<String>> {
            match lookup(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => v
                    .into_string()
                    .map(Some)
                    .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8")),
            }
        };
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);

        let store = match text(IBMCR_STORE)?.as_deref() {
            None | Some("auto") => StoreChoice::Auto,
            Some("keyring") => StoreChoice::Keyring,
            Some("file") => StoreChoice::File,
            Some(other) => bail!(
                "{IBMCR_STORE} must be auto, keyring or file, not `{}`",
                crate::log::quoted(other)
            ),
        };
        let mode = text(IBMCR_MODE)?.map_or(Ok(None), |v| {
            Mode::parse(&v).map(Some).ok_or_else(|| {
                format!(
                    "{IBMCR_MODE} must be bearer, apikey or registry-token, not `{}`",
                    crate::log::quoted(&v)
                )
            })
        });
        let token_access = text(IBMCR_TOKEN_ACCESS)?.map_or(Ok(None), |v| {
            TokenAccess::parse(&v).map(Some).ok_or_else(|| {
                format!(
                    "{IBMCR_TOKEN_ACCESS} must be readwrite or readonly, not `{}`",
                    crate::log::quoted(&v)
                )
            })
        });
        // Diagnostics never fail a request: anything but a clear "on" is off.
        let debug = matches!(
            text(IBMCR_LOG).ok().flatten().as_deref(),
            Some("debug" | "trace" | "1" | "true" | "yes")
        );
        let mut api_key = None;
        for var in [IBMCLOUD_API_KEY, IC_API_KEY] {
            // The value is a secret: never echo it, not even when it is not UTF-8.
            match lookup(var).filter(|v| !v.is_empty()) {
                None => continue,
                Some(v) => {
                    let key = v
                        .into_string()
                        .map_err(|_| anyhow::anyhow!("{var} is not valid UTF-8"))?;
                    let key = key.trim().to_string();
                    if !key.is_empty() {
                        api_key = Some(EnvApiKey {
                            var,
                            key: Secret::new(key),
                        });
                        break;
                    }
                }
            }
        }
        let dirs = match path(IBMCR_HOME) {
            Some(home) => Some(Dirs {
                data: home.clone(),
                cache: home.clone(),
                config: home,
            }),
            // Without HOME, `directories` would ask the user database
            // (getpwuid_r): glibc's NSS, which a static binary can only reach
            // by loading shared modules at run time. The helper never does:
            // no HOME and no IBMCR_HOME is the one-line error of `dirs()`.
            None if project_dirs && path("HOME").is_some() => {
                directories::ProjectDirs::from("", "", "ibmcr").map(|p| Dirs {
                    data: p.data_dir().to_path_buf(),
                    cache: p.cache_dir().to_path_buf(),
                    config: p.config_dir().to_path_buf(),
                })
            }
            None => None,
        };
        Ok(Env {
            store,
            mode,
            token_access,
            debug,
            api_key,
            iam_endpoint: text(IBMCLOUD_IAM_API_ENDPOINT)?,
            cr_endpoint: text(IBMCLOUD_CR_API_ENDPOINT)?,
            dirs,
            home: path("HOME"),
            docker_config: path(DOCKER_CONFIG),
            registry_auth_file: path(REGISTRY_AUTH_FILE),
            xdg_runtime_dir: path("XDG_RUNTIME_DIR"),
            xdg_config_home: path("XDG_CONFIG_HOME"),
        })
    }

    /// `IBMCR_MODE`: `None` when unset, an error when invalid.
    pub fn mode(&self) -> Result<Option<Mode>> {
        self.mode.clone().map_err(|e| anyhow::anyhow!(e))
    }

    /// `IBMCR_TOKEN_ACCESS`: `None` when unset, an error when invalid.
    pub fn token_access(&self) -> Result<Option<TokenAccess>> {
        self.token_access.clone().map_err(|e| anyhow::anyhow!(e))
    }

    /// The helper's directories, or an error saying why there are none.
    pub fn dirs(&self) -> Result<&Dirs> {
        self.dirs
            .as_ref()
            .with_context(|| format!("no home directory: set HOME or {IBMCR_HOME}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(
            |name| {
                vars.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| OsString::from(v))
            },
            false,
        )
    }

    #[test]
    fn defaults() {
        let e = env(&[]).unwrap();
        assert_eq!(e.store, StoreChoice::Auto);
        assert_eq!(e.mode().unwrap(), None);
        assert!(!e.debug);
        assert!(e.api_key.is_none());
        assert!(e.dirs.is_none());
    }

    #[test]
    fn ibmcloud_api_key_wins_over_ic_api_key() {
        let e = env(&[(IC_API_KEY, "b"), (IBMCLOUD_API_KEY, "a")]).unwrap();
        let k = e.api_key.unwrap();
        assert_eq!((k.var, k.key.expose().as_str()), (IBMCLOUD_API_KEY, "a"));
        let k = env(&[(IC_API_KEY, "b")]).unwrap().api_key.unwrap();
        assert_eq!((k.var, k.key.expose().as_str()), (IC_API_KEY, "b"));
    }

    #[test]
    fn bad_values_are_named_in_one_line() {
        let e = env(&[
            (IBMCR_MODE, "fast\nx"),
            (IBMCR_TOKEN_ACCESS, "rw"),
            (IBMCR_LOG, "loud"),
        ])
        .unwrap();
        let err = e.mode().unwrap_err().to_string();
        assert_eq!(
            err,
            "IBMCR_MODE must be bearer, apikey or registry-token, not `fastx`"
        );
        assert!(e.token_access().is_err());
        assert!(!e.debug, "an unknown IBMCR_LOG is off, never an error");
        assert!(env(&[(IBMCR_STORE, "cloud")]).is_err());
        assert!(env(&[(IBMCR_LOG, "1")]).unwrap().debug);
    }

    #[test]
    fn no_home_is_one_error_and_never_a_user_database_lookup() {
        // With project_dirs on, a missing or empty HOME must not reach
        // `directories` (whose fallback is getpwuid_r, glibc's NSS).
        for vars in [&[][..], &[("HOME", "")][..]] {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let e = Env::from_lookup(
                |name| {
                    vars.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| OsString::from(v))
                },
                true,
            )
            .unwrap();
            assert!(e.dirs.is_none());
            assert_eq!(
                e.dirs().unwrap_err().to_string(),
                "no home directory: set HOME or IBMCR_HOME"
            );
        }
    }

    #[test]
    fn ibmcr_home_holds_all_three() {
        let d = env(&[(IBMCR_HOME, "/x")]).unwrap().dirs.unwrap();
        assert_eq!(
            (d.data, d.cache, d.config),
            ("/x".into(), "/x".into(), "/x".into())
        );
    }
}
