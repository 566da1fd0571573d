//! Every environment variable the helper reads, read once, in one place.
//!
//! `main` builds an [`Env`] from the process environment; everything below
//! takes it as an argument, so tests build their own.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::secret::Secret;
use crate::settings::{IdentityChoice, Mode, TokenAccess};

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
/// Which identity sources may mint for IBM hosts: `auto` (default: API
/// keys, CR token, projected token, `ibmcloud login` session) or one alone:
/// `apikey`, `cr-token`, `vpc`, `ibmcloud`. `vpc` is the only way to use the
/// VPC instance identity.
pub const IBMCR_IDENTITY: &str = "IBMCR_IDENTITY";
/// Base URL of the VPC instance metadata service (default
/// `http://api.metadata.cloud.ibm.com`).
pub const IBMCR_VPC_METADATA_URL: &str = "IBMCR_VPC_METADATA_URL";
/// A compute-resource (CR) token, or `@/path/to/file` holding one (the IBM
/// Cloud CLI's variable and convention).
pub const IBMCLOUD_CR_TOKEN: &str = "IBMCLOUD_CR_TOKEN";
/// The trusted profile a CR token or the VPC instance identity is traded
/// for: `Profile-…` (an id), `crn:…` (a CRN) or a name.
pub const IBMCLOUD_CR_PROFILE: &str = "IBMCLOUD_CR_PROFILE";
/// The IBM Cloud CLI's config directory (holds `config.json`).
pub const IBMCLOUD_CONFIG_HOME: &str = "IBMCLOUD_CONFIG_HOME";
/// The home the IBM Cloud CLI puts `.ibmcloud` or `.bluemix` in (default: HOME).
pub const IBMCLOUD_HOME: &str = "IBMCLOUD_HOME";

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

/// `IBMCLOUD_CR_TOKEN`: the token itself, or the file that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrTokenVar {
    /// The token itself.
    Value(Secret<String>),
    /// `@<path>`: the file to read at each mint (the token rotates).
    File(PathBuf),
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
    /// `IBMCR_IDENTITY`, likewise.
    identity: Setting<IdentityChoice>,
    /// `IBMCR_LOG=debug`.
    pub debug: bool,
    /// `IBMCLOUD_API_KEY`, else `IC_API_KEY`.
    pub api_key: Option<EnvApiKey>,
    /// `IBMCLOUD_IAM_API_ENDPOINT`.
    pub iam_endpoint: Option<String>,
    /// `IBMCLOUD_CR_API_ENDPOINT`.
    pub cr_endpoint: Option<String>,
    /// `IBMCR_VPC_METADATA_URL`.
    pub vpc_metadata_url: Option<String>,
    /// `IBMCLOUD_CR_TOKEN`; an unusable value is an error only where it is needed.
    cr_token: Setting<CrTokenVar>,
    /// `IBMCLOUD_CR_PROFILE`, trimmed.
    pub cr_profile: Option<String>,
    /// `IBMCLOUD_CONFIG_HOME`.
    pub ibmcloud_config_home: Option<PathBuf>,
    /// `IBMCLOUD_HOME`.
    pub ibmcloud_home: Option<PathBuf>,
    /// Where a projected CR token may be, in order: IBM's SDK default paths
    /// (no variable moves them; tests set their own).
    pub projected_token_paths: Vec<PathBuf>,
    /// The helper's directories; `None` when there is no home directory.
    pub dirs: Option<Dirs>,
    /// `HOME` (for `configure`).
    pub home: Option<PathBuf>,
    /// `PATH`: where docker looks for `docker-credential-ibmcr` (for `doctor`).
    pub path_var: Option<OsString>,
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
        let identity = text(IBMCR_IDENTITY)?.map_or(Ok(None), |v| {
            IdentityChoice::parse(&v).map(Some).ok_or_else(|| {
                format!(
                    "{IBMCR_IDENTITY} must be auto, apikey, cr-token, vpc or ibmcloud, not `{}`",
                    crate::log::quoted(&v)
                )
            })
        });
        let cr_token = cr_token_var(lookup(IBMCLOUD_CR_TOKEN));
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
            identity,
            debug,
            api_key,
            iam_endpoint: text(IBMCLOUD_IAM_API_ENDPOINT)?,
            cr_endpoint: text(IBMCLOUD_CR_API_ENDPOINT)?,
            vpc_metadata_url: text(IBMCR_VPC_METADATA_URL)?,
            cr_token,
            cr_profile: text(IBMCLOUD_CR_PROFILE)?
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
            ibmcloud_config_home: path(IBMCLOUD_CONFIG_HOME),
            ibmcloud_home: path(IBMCLOUD_HOME),
            projected_token_paths: crate::ibm::PROJECTED_TOKEN_PATHS
                .iter()
                .map(PathBuf::from)
                .collect(),
            dirs,
            home: path("HOME"),
            path_var: lookup("PATH").filter(|v| !v.is_empty()),
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

    /// `IBMCR_IDENTITY`: `None` when unset, an error when invalid.
    pub fn identity(&self) -> Result<Option<IdentityChoice>> {
        self.identity.clone().map_err(|e| anyhow::anyhow!(e))
    }

    /// `IBMCLOUD_CR_TOKEN`: `None` when unset, an error when unusable.
    pub fn cr_token(&self) -> Result<Option<&CrTokenVar>> {
        match &self.cr_token {
            Ok(token) => Ok(token.as_ref()),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        }
    }

    /// The helper's directories, or an error saying why there are none.
    pub fn dirs(&self) -> Result<&Dirs> {
        self.dirs
            .as_ref()
            .with_context(|| format!("no home directory: set HOME or {IBMCR_HOME}"))
    }
}

/// `IBMCLOUD_CR_TOKEN` read: a token (a secret: never echoed, not even
/// when it is not UTF-8), or `@<path>`.
fn cr_token_var(value: Option<OsString>) -> Setting<CrTokenVar> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let value = value
        .into_string()
        .map_err(|_| format!("{IBMCLOUD_CR_TOKEN} is not valid UTF-8"))?;
    let value = value.trim();
    match value.strip_prefix('@') {
        Some(path) if path.trim().is_empty() => {
            Err(format!("{IBMCLOUD_CR_TOKEN} is `@` without a file name"))
        }
        Some(path) => Ok(Some(CrTokenVar::File(PathBuf::from(path.trim())))),
        None if value.is_empty() => Ok(None),
        None => Ok(Some(CrTokenVar::Value(Secret::new(value.to_string())))),
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
    fn fleet_variables() {
        let e = env(&[]).unwrap();
        assert_eq!(e.identity().unwrap(), None);
        assert_eq!(e.cr_token().unwrap(), None);
        assert_eq!(e.cr_profile, None);
        let e = env(&[
            (IBMCR_IDENTITY, "cr-token"),
            (IBMCLOUD_CR_TOKEN, " @/var/run/x \n"),
            (IBMCLOUD_CR_PROFILE, " Profile-1 "),
            (IBMCR_VPC_METADATA_URL, "http://169.254.169.254"),
            (IBMCLOUD_CONFIG_HOME, "/c"),
            (IBMCLOUD_HOME, "/h"),
        ])
        .unwrap();
        assert_eq!(e.identity().unwrap(), Some(IdentityChoice::CrToken));
        assert_eq!(
            e.cr_token().unwrap(),
            Some(&CrTokenVar::File("/var/run/x".into()))
        );
        assert_eq!(e.cr_profile.as_deref(), Some("Profile-1"));
        assert_eq!(
            e.vpc_metadata_url.as_deref(),
            Some("http://169.254.169.254")
        );
        assert_eq!(e.ibmcloud_config_home, Some("/c".into()));
        assert_eq!(e.ibmcloud_home, Some("/h".into()));
        let value = env(&[(IBMCLOUD_CR_TOKEN, "eyJ.canary.x")]).unwrap();
        assert_eq!(
            value.cr_token().unwrap(),
            Some(&CrTokenVar::Value(Secret::new("eyJ.canary.x".into())))
        );
        // Bad values break only what needs them, and never echo a token.
        let bad = env(&[(IBMCR_IDENTITY, "metadata"), (IBMCLOUD_CR_TOKEN, "@ ")]).unwrap();
        assert_eq!(
            bad.identity().unwrap_err().to_string(),
            "IBMCR_IDENTITY must be auto, apikey, cr-token, vpc or ibmcloud, not `metadata`"
        );
        assert_eq!(
            bad.cr_token().unwrap_err().to_string(),
            "IBMCLOUD_CR_TOKEN is `@` without a file name"
        );
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
