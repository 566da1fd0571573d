//! What a `get` for an IBM host answers ([`Mode`], [`TokenAccess`]) and the
//! optional settings file `<config dir>/config.json` that sets them,
//! globally or per IBM host. The environment variables win.
//!
//! ```json
//! {"mode": "bearer", "token_access": "readwrite",
//!  "hosts": {"us.icr.io": {"mode": "registry-token"}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::env::Env;
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
    #[serde(default)]
    hosts: BTreeMap<String, HostSettings>,
}

/// The settings file's name in the config dir.
pub const FILE_NAME: &str = "config.json";

impl Settings {
    /// Reads `<dir>/config.json`; a missing file is all defaults.
    pub fn load(dir: &Path) -> Result<Settings> {
        let path = dir.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => return Err(anyhow!("reading `{}`: {e}", path.display())),
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
