//! The token cache: minted credentials (IAM access tokens, registry tokens)
//! in one 0600 file in the cache dir, so a cached `get` reads one small file
//! and never touches the keyring or the network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::env::Mode;
use crate::secret::Secret;
use crate::{debug, fsutil};

/// Version of the cache file format.
const VERSION: u32 = 1;
/// Longest refresh margin: BuildKit caches an answer for 4 min 50 s.
pub const MAX_MARGIN: u64 = 5 * 60;
/// How long a failed mint is answered from the cache to waiting processes.
pub const FAILURE_TTL: u64 = 10;
/// How long a refused registry-token creation is remembered.
pub const REFUSAL_TTL: u64 = 24 * 60 * 60;
/// How long a process waits for another one's mint.
pub const LOCK_WAIT: Duration = Duration::from_secs(20);

/// The first 16 hex digits of the SHA-256 of an API key: names the key in
/// cache keys without revealing it.
pub fn fingerprint(key: &Secret<String>) -> String {
    let digest = Sha256::digest(key.expose().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where a host's API key came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Stored for that exact host.
    Host,
    /// Stored for `icr.io`.
    Global,
    /// From `IBMCLOUD_API_KEY` or `IC_API_KEY` (the variable's name).
    Env(String),
}

/// Which minted token a host is answered with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRef {
    /// A key of [`Cache::iam`].
    Iam(String),
    /// A key of [`Cache::registry`].
    Registry(String),
}

/// Host → how its answer was found, so a `get` needs no store read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostEntry {
    /// The key's source.
    pub source: KeySource,
    /// [`fingerprint`] of the key.
    pub fingerprint: String,
    /// The mode the answer was minted for.
    pub mode: Mode,
    /// The token.
    pub token: TokenRef,
}

/// A minted token with its lifetime.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Minted {
    /// The token.
    pub token: Secret<String>,
    /// Unix seconds when it was minted (local clock).
    pub minted_at: u64,
    /// Unix seconds when it expires.
    pub expires_at: u64,
    /// IAM tokens: the account id (`account.bss`), needed for the registry token API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Registry tokens: the token id (`jti`), for revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Registry tokens: the host it was minted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Registry tokens: the IAM token key that can revoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<String>,
}

/// How usable a minted token is at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Answer it.
    Fresh,
    /// Still valid, but inside the refresh margin: re-mint, answer it if that fails.
    ExpiringSoon,
    /// Past its expiry.
    Expired,
}

impl Minted {
    /// Fresh until less than min(10 % of its lifetime, [`MAX_MARGIN`]) remains.
    pub fn freshness(&self, now: u64) -> Freshness {
        let lifetime = self.expires_at.saturating_sub(self.minted_at);
        let margin = (lifetime / 10).min(MAX_MARGIN);
        if now >= self.expires_at {
            Freshness::Expired
        } else if now + margin >= self.expires_at {
            Freshness::ExpiringSoon
        } else {
            Freshness::Fresh
        }
    }
}

/// A failed mint, answered to waiters until `until`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// The error's one line (never holds a secret).
    pub message: String,
    /// Unix seconds.
    pub until: u64,
}

/// The cache file's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    /// Format version.
    pub v: u32,
    /// Host → answer.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostEntry>,
    /// `<iam endpoint>|<fingerprint>` → access token.
    #[serde(default)]
    pub iam: BTreeMap<String, Minted>,
    /// `<api base>|<fingerprint>|<access>` → registry token.
    #[serde(default)]
    pub registry: BTreeMap<String, Minted>,
    /// Token key → recent failure.
    #[serde(default)]
    pub failures: BTreeMap<String, Failure>,
    /// `<api base>|<fingerprint>` → Unix seconds until which creation counts as refused.
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
    /// Host (or `*` for every host) → how often its stored credential changed.
    /// A `get` remembers a host only if no `store` or `erase` ran since it
    /// read the store.
    #[serde(default)]
    pub epochs: BTreeMap<String, u64>,
}

/// A host's [`Cache::epoch`].
pub type Epoch = (u64, u64);

/// The cache file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("tokens.json")
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("tokens.lock")
}

impl Cache {
    /// Reads the cache. A missing or corrupt cache is an empty one (it holds
    /// nothing that cannot be minted again), with a debug line; it is
    /// replaced on the next write. A cache others can read is refused.
    pub fn load(dir: &Path) -> Result<Cache> {
        let file = path(dir);
        let bytes = match fsutil::read_private(&file) {
            Ok(None) => return Ok(Cache::default()),
            Ok(Some(bytes)) => bytes,
            Err(e) if e.is::<fsutil::LooseMode>() => return Err(e),
            Err(e) => {
                debug!("cache", "ignoring `{}`: {e:#}", file.display());
                return Ok(Cache::default());
            }
        };
        Ok(match serde_json::from_slice::<Cache>(&bytes) {
            Ok(cache) if cache.v == VERSION => cache,
            Ok(cache) => {
                debug!(
                    "cache",
                    "ignoring `{}`: version {}",
                    file.display(),
                    cache.v
                );
                Cache::default()
            }
            Err(e) => {
                debug!(
                    "cache",
                    "ignoring corrupt `{}` (line {}, column {})",
                    file.display(),
                    e.line(),
                    e.column()
                );
                Cache::default()
            }
        })
    }

    /// Writes the cache atomically (dropping what expired).
    pub fn save(&mut self, dir: &Path, now: u64) -> Result<()> {
        self.v = VERSION;
        self.prune(now);
        fsutil::ensure_private_dir(dir)?;
        fsutil::write_atomic(&path(dir), &serde_json::to_vec_pretty(self)?)
    }

    fn prune(&mut self, now: u64) {
        self.iam.retain(|_, m| m.expires_at > now);
        // An expired registry token is removed by the registry itself: nothing left to revoke.
        self.registry.retain(|_, m| m.expires_at > now);
        self.failures.retain(|_, f| f.until > now);
        self.refused.retain(|_, until| *until > now);
        let (iam, registry) = (&self.iam, &self.registry);
        self.hosts.retain(|_, h| match &h.token {
            TokenRef::Iam(k) => iam.contains_key(k),
            TokenRef::Registry(k) => registry.contains_key(k),
        });
    }

    /// The minted token a host entry points at.
    pub fn token(&self, r: &TokenRef) -> Option<&Minted> {
        match r {
            TokenRef::Iam(k) => self.iam.get(k),
            TokenRef::Registry(k) => self.registry.get(k),
        }
    }

    /// True when `secret` is a token this helper minted and still holds.
    pub fn holds(&self, secret: &Secret<String>) -> bool {
        self.iam
            .values()
            .chain(self.registry.values())
            .any(|m| &m.token == secret)
    }

    /// The failure of a mint for `key` within the last [`FAILURE_TTL`] seconds,
    /// answered to waiters instead of asking again.
    pub fn recent_failure(&self, key: &str, now: u64) -> Option<anyhow::Error> {
        let failure = self.failures.get(key).filter(|f| f.until > now)?;
        Some(anyhow::anyhow!("{}", failure.message))
    }

    /// Remembers that a mint for `key` failed with `error`.
    pub fn record_failure(&mut self, key: &str, error: &anyhow::Error, now: u64) {
        let message = crate::log::one_line(&format!("{error:#}"));
        let failure = Failure {
            message,
            until: now + FAILURE_TTL,
        };
        self.failures.insert(key.to_string(), failure);
    }

    /// Forgets how `host` is answered; for `icr.io`, also every host answered
    /// with a key that was not its own (the global key may now differ).
    pub fn invalidate(&mut self, host: &str, global: bool) {
        self.hosts.remove(host);
        *self.epochs.entry(host.to_string()).or_default() += 1;
        if global {
            self.hosts.retain(|_, h| h.source == KeySource::Host);
            *self.epochs.entry("*".to_string()).or_default() += 1;
        }
    }

    /// How often `host`'s credentials (or the global ones) changed.
    pub fn epoch(&self, host: &str) -> Epoch {
        let count = |k: &str| self.epochs.get(k).copied().unwrap_or(0);
        (count(host), count("*"))
    }

    /// True while a refusal of registry-token creation is remembered.
    pub fn refused(&self, key: &str, now: u64) -> bool {
        self.refused.get(key).is_some_and(|until| *until > now)
    }
}

/// Runs `change` on the cache under its lock, then saves it. When the cache
/// dir cannot be written, runs `change` on an unsaved copy: the answer is
/// still given, just not cached.
pub fn with_locked<T>(dir: &Path, now: u64, change: impl FnOnce(&mut Cache) -> T) -> Result<T> {
    let locked =
        fsutil::ensure_private_dir(dir).and_then(|()| fsutil::lock(&lock_path(dir), LOCK_WAIT));
    let _guard = match locked {
        Ok(guard) => guard,
        Err(e) if e.is::<fsutil::LooseMode>() || e.is::<fsutil::LockTimeout>() => return Err(e),
        Err(e) => {
            debug!("cache", "not caching: {e:#}");
            return Ok(change(&mut Cache::load(dir)?));
        }
    };
    let mut cache = Cache::load(dir)?;
    let before = cache.clone();
    let out = change(&mut cache);
    if cache != before {
        if let Err(e) = cache.save(dir, now) {
            debug!("cache", "not caching: {e:#}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(minted_at: u64, expires_at: u64) -> Minted {
        Minted {
            token: Secret::new("t".into()),
            minted_at,
            expires_at,
            account: None,
            id: None,
            host: None,
            iam: None,
        }
    }

    #[test]
    fn freshness_margin_is_a_tenth_capped_at_five_minutes() {
        let hour = minted(0, 3600); // margin 300 s (10 % = 360, capped)
        assert_eq!(hour.freshness(3299), Freshness::Fresh);
        assert_eq!(hour.freshness(3300), Freshness::ExpiringSoon);
        assert_eq!(hour.freshness(3600), Freshness::Expired);
        let short = minted(100, 130); // margin 3 s
        assert_eq!(short.freshness(126), Freshness::Fresh);
        assert_eq!(short.freshness(127), Freshness::ExpiringSoon);
        assert_eq!(short.freshness(131), Freshness::Expired);
    }

    #[test]
    fn fingerprint_is_stable_and_hides_the_key() {
        let fp = fingerprint(&Secret::new("canary-api-key".into()));
        assert_eq!(fp.len(), 16);
        assert_eq!(fp, fingerprint(&Secret::new("canary-api-key".into())));
        assert_ne!(fp, fingerprint(&Secret::new("other".into())));
        // sha256("abc") starts ba7816bf8f01cfea
        assert_eq!(fingerprint(&Secret::new("abc".into())), "ba7816bf8f01cfea");
    }

    #[test]
    fn invalidating_the_global_host_drops_borrowed_keys() {
        let mut c = Cache::default();
        let entry = |source| HostEntry {
            source,
            fingerprint: "f".into(),
            mode: Mode::Bearer,
            token: TokenRef::Iam("k".into()),
        };
        c.hosts.insert("us.icr.io".into(), entry(KeySource::Global));
        c.hosts.insert("de.icr.io".into(), entry(KeySource::Host));
        c.hosts.insert(
            "uk.icr.io".into(),
            entry(KeySource::Env("IC_API_KEY".into())),
        );
        let before = c.epoch("us.icr.io");
        c.invalidate("icr.io", true);
        assert_eq!(c.hosts.keys().collect::<Vec<_>>(), ["de.icr.io"]);
        assert_ne!(
            c.epoch("us.icr.io"),
            before,
            "a get that read the old key must not cache"
        );
        let de = c.epoch("de.icr.io");
        c.invalidate("us.icr.io", false);
        assert_eq!(c.epoch("de.icr.io"), de);
    }
}
