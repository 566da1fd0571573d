//! The OS keyring (Secret Service, macOS Keychain, Windows Credential
//! Manager) through the `keyring` crate: one entry per credential holding
//! one JSON record, and a non-secret index (key → username) for `list`, so
//! `list` never enumerates the keyring.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use super::{Record, SecretStore, MAX_STORE_BYTES};
use crate::fsutil;
use crate::secret::Secret;

/// The keyring service name of every entry.
pub const KEYRING_SERVICE: &str = "docker-credential-ibmcr";
const VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    v: u32,
    #[serde(flatten)]
    record: Record,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Index {
    v: u32,
    entries: BTreeMap<String, String>,
}

/// Credentials in the OS keyring; the index lives in the data dir.
#[derive(Debug)]
pub struct KeyringStore {
    dir: PathBuf,
}

/// One line describing a keyring error, never quoting secret bytes.
fn describe(e: &keyring::Error) -> String {
    match e {
        keyring::Error::NoEntry => "no such entry".into(),
        keyring::Error::PlatformFailure(inner) => format!(
            "keyring unavailable: {}",
            crate::log::one_line(&inner.to_string())
        ),
        keyring::Error::NoStorageAccess(inner) => {
            format!(
                "keyring locked or access refused: {}",
                crate::log::one_line(&inner.to_string())
            )
        }
        // Carries the secret's bytes: never format it.
        keyring::Error::BadEncoding(_) => "keyring entry is not valid UTF-8".into(),
        keyring::Error::TooLong(attr, max) => {
            format!("keyring refused a value: {attr} is longer than {max}")
        }
        keyring::Error::Invalid(attr, why) => format!("keyring refused a value: {attr} {why}"),
        keyring::Error::Ambiguous(_) => "several keyring entries match".into(),
        _ => "keyring error".into(),
    }
}

fn entry(key: &str) -> Result<keyring::Entry> {
    keyring::Entry::new(KEYRING_SERVICE, key).map_err(|e| anyhow!("{}", describe(&e)))
}

/// Checks that a keyring is usable by a set and a delete (a get cannot
/// tell a locked keyring from an empty one).
pub fn probe() -> Result<()> {
    let e = entry(&format!("ibmcr-probe-{}", std::process::id()))?;
    e.set_password("probe")
        .map_err(|e| anyhow!("{}", describe(&e)))?;
    e.delete_credential()
        .map_err(|e| anyhow!("{}", describe(&e)))?;
    Ok(())
}

impl KeyringStore {
    /// A keyring store whose index lives in `dir`.
    pub fn new(dir: PathBuf) -> KeyringStore {
        KeyringStore { dir }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("keyring-index.json")
    }

    /// The index; `None` when it does not exist (lost, or never written):
    /// then only the keyring itself can say what is stored.
    fn load_index(&self) -> Result<Option<Index>> {
        let path = self.index_path();
        let Some(bytes) = fsutil::read_private(&path, MAX_STORE_BYTES)? else {
            return Ok(None);
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "keyring index `{}` is corrupt (line {}): remove it; the keyring entries stay and are still found",
                path.display(),
                e.line()
            )
        })?;
        Ok(Some(index))
    }

    /// False only when an index exists and lacks `key`.
    fn may_hold(&self, key: &str) -> Result<bool> {
        Ok(self
            .load_index()?
            .is_none_or(|index| index.entries.contains_key(key)))
    }

    fn modify_index(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    ) -> Result<()> {
        fsutil::ensure_private_dir(&self.dir)?;
        let lock = super::lock(&self.dir)?;
        fsutil::remove_stale_temps(&self.index_path(), &lock);
        let mut index = self.load_index()?.unwrap_or_default();
        change(&mut index.entries)?;
        index.v = VERSION;
        let bytes = serde_json::to_vec_pretty(&index)?;
        if bytes.len() as u64 > MAX_STORE_BYTES {
            bail!(
                "keyring index `{}` would grow past {}, the most this helper reads: erase credentials you no longer use",
                self.index_path().display(),
                fsutil::format_size(MAX_STORE_BYTES)
            );
        }
        fsutil::write_atomic(&self.index_path(), &bytes)
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, key: &str) -> Result<Option<Record>> {
        // The index is updated with every put and remove: a key it lacks was
        // never stored, and answering so costs no D-Bus round trip (~15 ms),
        // which matters for docker pulls from every registry we do not serve.
        let index = self.load_index()?;
        if index.as_ref().is_some_and(|i| !i.entries.contains_key(key)) {
            return Ok(None);
        }
        let password = match entry(key)?.get_password() {
            Ok(p) => p,
            Err(keyring::Error::NoEntry) => return Ok(None),
            // No index and no keyring: nothing was ever stored here that we could find.
            Err(e) if index.is_none() => {
                crate::debug!(
                    "store",
                    "no keyring index, and the keyring: {}",
                    describe(&e)
                );
                return Ok(None);
            }
            Err(e) => bail!("reading `{key}` from the keyring: {}", describe(&e)),
        };
        let entry: Entry = serde_json::from_str(&password).map_err(|_| {
            anyhow!("keyring entry for `{key}` is not a docker-credential-ibmcr record")
        })?;
        Ok(Some(entry.record))
    }

    fn put(&self, key: &str, record: &Record) -> Result<()> {
        let json = serde_json::to_string(&Entry {
            v: VERSION,
            record: record.clone(),
        })?;
        let secret = Secret::new(json);
        self.modify_index(|entries| {
            entry(key)?
                .set_password(secret.expose())
                .map_err(|e| anyhow!("storing `{key}` in the keyring: {}", describe(&e)))?;
            entries.insert(key.to_string(), record.username.clone());
            Ok(())
        })
    }

    fn remove(&self, key: &str) -> Result<bool> {
        if !self.may_hold(key)? {
            return Ok(false); // never stored: no keyring call, no write (docker logout erases four forms)
        }
        self.modify_index(|entries| {
            match entry(key)?.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => {}
                Err(e) => bail!("removing `{key}` from the keyring: {}", describe(&e)),
            }
            entries.remove(key);
            Ok(())
        })?;
        Ok(true)
    }

    fn list(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .load_index()?
            .map(|index| index.entries)
            .unwrap_or_default())
    }

    fn name(&self) -> &'static str {
        "keyring"
    }

    fn answers(&self) -> Result<()> {
        // A lookup of a name nobody stores: NoEntry means the keyring answered.
        match entry("ibmcr-doctor-lookup")?.get_password() {
            Ok(_) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(anyhow!("{}", describe(&e))),
        }
    }
}
