//! What a `get` for an IBM host answers ([`Mode`], [`TokenAccess`]) and the
//! optional settings file `<config dir>/config.json` that sets them,
//! globally or per IBM host. The environment variables win.
//!
//! ```json
//! {"mode": "bearer", "token_access": "readwrite", "identity": "auto",
//!  "hosts": {"us.icr.io": {"mode": "registry-token"}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::env::Env;
use crate::fsutil::{self, Checks};
use crate::registry::IbmHost;

/// What a `get` for an IBM host answers when an API key is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A fresh IAM access token, as `iambearer` (the default).
    Bearer,
    /// The API key itself, as `iamapikey`; no network.
    #[serde(rename = "apikey")]
    ApiKey,
    /// A registry token minted through the registry token API, as `token`.
    RegistryToken,
}

impl Mode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bearer => "bearer",
            Mode::ApiKey => "apikey",
            Mode::RegistryToken => "registry-token",
        }
    }

    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "bearer" => Some(Mode::Bearer),
            "apikey" => Some(Mode::ApiKey),
            "registry-token" => Some(Mode::RegistryToken),
            _ => None,
        }
    }
}

/// Access of minted registry tokens.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TokenAccess {
    /// Push and pull (`write=true`).
    ReadWrite,
    /// Pull only (`write=false`).
    ReadOnly,
}

impl TokenAccess {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAccess::ReadWrite => "readwrite",
            TokenAccess::ReadOnly => "readonly",
        }
    }

    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Option<TokenAccess> {
        match s {
            "readwrite" => Some(TokenAccess::ReadWrite),
            "readonly" => Some(TokenAccess::ReadOnly),
            _ => None,
        }
    }
}

/// Which identity sources may mint a token for an IBM host
/// (../shared/fleet.md §5): all but the VPC instance identity, in the
/// chain's order, or exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityChoice {
    /// API keys, a CR token, a projected token, an `ibmcloud login` session.
    Auto,
    /// Stored API keys, `IBMCLOUD_API_KEY`, `IC_API_KEY` only.
    #[serde(rename = "apikey")]
    ApiKey,
    /// `IBMCLOUD_CR_TOKEN`, else a projected token, with a trusted profile.
    CrToken,
    /// The VPC instance identity (the only way to reach the metadata service).
    Vpc,
    /// The `ibmcloud login` session only.
    Ibmcloud,
}

impl IdentityChoice {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityChoice::Auto => "auto",
            IdentityChoice::ApiKey => "apikey",
            IdentityChoice::CrToken => "cr-token",
            IdentityChoice::Vpc => "vpc",
            IdentityChoice::Ibmcloud => "ibmcloud",
        }
    }

    /// Parses the setting's spelling.
    pub fn parse(s: &str) -> Option<IdentityChoice> {
        match s {
            "auto" => Some(IdentityChoice::Auto),
            "apikey" => Some(IdentityChoice::ApiKey),
            "cr-token" => Some(IdentityChoice::CrToken),
            "vpc" => Some(IdentityChoice::Vpc),
            "ibmcloud" => Some(IdentityChoice::Ibmcloud),
            _ => None,
        }
    }

    /// True when API keys (stored or from the environment) may mint.
    pub fn allows_api_keys(self) -> bool {
        matches!(self, IdentityChoice::Auto | IdentityChoice::ApiKey)
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSettings {
    mode: Option<Mode>,
    token_access: Option<TokenAccess>,
}

/// The settings file, parsed.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    v: Option<u32>,
    mode: Option<Mode>,
    token_access: Option<TokenAccess>,
    identity: Option<IdentityChoice>,
    #[serde(default)]
    hosts: BTreeMap<String, HostSettings>,
}

/// The settings file's name in the config dir.
pub const FILE_NAME: &str = "config.json";
/// The most the settings file may hold; a larger one is refused, never read.
pub const MAX_SETTINGS_BYTES: u64 = 1 << 20;

impl Settings {
    /// Reads `<dir>/config.json`; a missing file is all defaults. Like the
    /// helper's other files, it is read only as a regular file of at most
    /// [`MAX_SETTINGS_BYTES`], never through a symlink, owned by the caller
    /// or root, and neither it nor its directory writable by others
    /// ([`Checks::Settings`]).
    pub fn load(dir: &Path) -> Result<Settings> {
        let path = dir.join(FILE_NAME);
        let Some((bytes, _)) = fsutil::read_file(&path, Checks::Settings, MAX_SETTINGS_BYTES)?
        else {
            return Ok(Settings::default());
        };
        Settings::parse(&bytes, &path)
    }

    /// Parses a settings file's bytes; `path` only names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Settings> {
        // Holds no secrets, so serde's message (which may quote a value) is
        // fine, folded to one line: the value may hold a line break.
        let settings: Settings = serde_json::from_slice(bytes).map_err(|e| {
            let why = crate::log::one_line(&e.to_string());
            anyhow!("settings file `{}` is invalid: {why}", path.display())
        })?;
        if settings.v.is_some_and(|v| v != 1) {
            return Err(anyhow!(
                "settings file `{}` has an unknown version",
                path.display()
            ));
        }
        Ok(settings)
    }

    /// The mode for `host`: `IBMCR_MODE`, else the host's, else the file's, else bearer.
    pub fn mode(&self, env: &Env, host: IbmHost) -> Result<Mode> {
        Ok(env
            .mode()?
            .or_else(|| self.hosts.get(host.name()).and_then(|h| h.mode))
            .or(self.mode)
            .unwrap_or(Mode::Bearer))
    }

    /// Access of registry tokens for `host`: `IBMCR_TOKEN_ACCESS`, else the host's, else the file's, else read-write.
    pub fn token_access(&self, env: &Env, host: IbmHost) -> Result<TokenAccess> {
        Ok(env
            .token_access()?
            .or_else(|| self.hosts.get(host.name()).and_then(|h| h.token_access))
            .or(self.token_access)
            .unwrap_or(TokenAccess::ReadWrite))
    }
}

impl Settings {
    /// The identity sources that may mint: `IBMCR_IDENTITY`, else the
    /// file's `"identity"`, else auto.
    pub fn identity(&self, env: &Env) -> Result<IdentityChoice> {
        Ok(env
            .identity()?
            .or(self.identity)
            .unwrap_or(IdentityChoice::Auto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_beats_host_beats_file() {
        let s: Settings = serde_json::from_str(
            r#"{"mode":"apikey","hosts":{"us.icr.io":{"mode":"registry-token","token_access":"readonly"}}}"#,
        )
        .unwrap();
        let us = IbmHost::lookup("us.icr.io").unwrap();
        let de = IbmHost::lookup("de.icr.io").unwrap();
        let none = Env::from_lookup(|_| None, false).unwrap();
        assert_eq!(s.mode(&none, us).unwrap(), Mode::RegistryToken);
        assert_eq!(s.mode(&none, de).unwrap(), Mode::ApiKey);
        assert_eq!(s.token_access(&none, us).unwrap(), TokenAccess::ReadOnly);
        assert_eq!(s.token_access(&none, de).unwrap(), TokenAccess::ReadWrite);
        let forced =
            Env::from_lookup(|n| (n == "IBMCR_MODE").then(|| "bearer".into()), false).unwrap();
        assert_eq!(s.mode(&forced, us).unwrap(), Mode::Bearer);
        assert_eq!(Settings::default().mode(&none, us).unwrap(), Mode::Bearer);
        assert!(serde_json::from_str::<Settings>(r#"{"mode":"fast"}"#).is_err());
    }

    #[test]
    fn identity_env_beats_file_beats_auto() {
        let none = Env::from_lookup(|_| None, false).unwrap();
        assert_eq!(
            Settings::default().identity(&none).unwrap(),
            IdentityChoice::Auto
        );
        let s: Settings = serde_json::from_str(r#"{"identity":"vpc"}"#).unwrap();
        assert_eq!(s.identity(&none).unwrap(), IdentityChoice::Vpc);
        let forced = Env::from_lookup(
            |n| (n == "IBMCR_IDENTITY").then(|| "ibmcloud".into()),
            false,
        )
        .unwrap();
        assert_eq!(s.identity(&forced).unwrap(), IdentityChoice::Ibmcloud);
        for choice in ["auto", "apikey", "cr-token", "vpc", "ibmcloud"] {
            let parsed = IdentityChoice::parse(choice).unwrap();
            assert_eq!(parsed.as_str(), choice);
            let json: IdentityChoice = serde_json::from_str(&format!("\"{choice}\"")).unwrap();
            assert_eq!(json, parsed);
        }
        assert!(serde_json::from_str::<Settings>(r#"{"identity":"metadata"}"#).is_err());
        assert!(IdentityChoice::Auto.allows_api_keys() && !IdentityChoice::Vpc.allows_api_keys());
    }

    /// Issue 10 item 9 (fuzz/corpus/settings_file/regress-control-in-*):
    /// serde quotes an unknown value or field name as it is.
    #[test]
    fn an_invalid_value_is_quoted_on_one_line() {
        let path = Path::new("config.json");
        for bad in [r#"{"mode":"fa\nst"}"#, r#"{"ho\r\nsts":{}}"#] {
            let e = Settings::parse(bad.as_bytes(), path).unwrap_err();
            let text = format!("{e:#}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(text.starts_with("settings file `config.json` is invalid: unknown"));
        }
    }
}
