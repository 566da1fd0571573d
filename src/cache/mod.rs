//! The token cache: minted credentials (IAM access tokens, registry tokens)
//! in one 0600 file in the cache dir, so a cached `get` reads one small file
//! and never touches the keyring or the network.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::settings::{Mode, TokenAccess};
use crate::{debug, fsutil};

mod keys;

pub use keys::*;

/// Version of the cache file format.
const VERSION: u32 = 1;
/// Longest refresh margin: BuildKit caches an answer for 4 min 50 s.
pub const MAX_MARGIN: u64 = 5 * 60;
/// How long a failed mint is answered from the cache to waiting processes.
pub const FAILURE_TTL: u64 = 10;
/// How long a refused registry-token creation is remembered.
pub const REFUSAL_TTL: u64 = 24 * 60 * 60;
/// How far in the future an entry may be stamped before it is taken for the
/// mark of a clock that was fast when it was written, and ignored: processes
/// waiting on one mint read the clock at different whole seconds.
pub const CLOCK_TOLERANCE: u64 = 60;
/// The most the cache file may hold: hundreds of tokens. A larger one is
/// ignored, as a corrupt one is; a save that would pass it is not made.
pub const MAX_CACHE_BYTES: u64 = 1 << 20;

/// Host → how its answer was found, so a `get` needs no store read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostEntry {
    /// The key's source.
    pub source: KeySource,
    /// [`Fingerprint`] of the key.
    pub fingerprint: Fingerprint,
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
    /// Registry tokens: the IAM token that can revoke it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam: Option<IamKey>,
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
    /// A token minted in the future (by a clock that was fast then) counts as
    /// expired: its expiry came from that clock too.
    pub fn freshness(&self, now: u64) -> Freshness {
        let lifetime = self.expires_at.saturating_sub(self.minted_at);
        let margin = (lifetime / 10).min(MAX_MARGIN);
        if now >= self.expires_at || self.minted_at > now.saturating_add(CLOCK_TOLERANCE) {
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
struct Failure {
    /// The error's one line (never holds a secret).
    message: String,
    /// Unix seconds.
    until: u64,
}

/// The cache file's contents. Every change goes through a method, so the
/// invariants (a host points at a token that exists, a new token clears its
/// failure, a changed credential bumps its epoch) hold in one place.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cache {
    /// Format version.
    v: u32,
    /// Host → answer.
    #[serde(default)]
    hosts: BTreeMap<String, HostEntry>,
    #[serde(default)]
    iam: BTreeMap<IamKey, Minted>,
    #[serde(default)]
    registry: BTreeMap<RegistryKey, Minted>,
    #[serde(default)]
    failures: BTreeMap<MintKey, Failure>,
    /// Unix seconds until which creation counts as refused.
    #[serde(default)]
    refused: BTreeMap<RefusalKey, u64>,
    /// Host (or `*` for every host) → how often its stored credential changed.
    /// A `get` remembers a host only if no `store` or `erase` ran since it
    /// read the store.
    #[serde(default)]
    epochs: BTreeMap<String, u64>,
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
    /// Reads the cache. A missing, corrupt or oversized cache (or a FIFO,
    /// a symlink, …) is an empty one (it holds nothing that cannot be minted
    /// again), with a debug line; it is replaced on the next write. A cache
    /// others can read or write, or that someone else owns, is refused.
    pub fn load(dir: &Path) -> Result<Cache> {
        let file = path(dir);
        let bytes = match fsutil::read_private(&file, MAX_CACHE_BYTES) {
            Ok(None) => return Ok(Cache::default()),
            Ok(Some(bytes)) => bytes,
            Err(e) if refused(&e) => return Err(e),
            Err(e) => {
                debug!("cache", "ignoring `{}`: {e:#}", file.display());
                return Ok(Cache::default());
            }
        };
        Ok(Cache::parse(&bytes, &file))
    }

    /// Parses a cache file's bytes; `file` only names it in debug lines. A
    /// corrupt cache, or one of another version, is an empty one.
    pub fn parse(bytes: &[u8], file: &Path) -> Cache {
        match serde_json::from_slice::<Cache>(bytes) {
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
        }
    }

    /// Writes the cache atomically (dropping what expired).
    pub fn save(&mut self, dir: &Path, now: u64) -> Result<()> {
        self.v = VERSION;
        self.prune(now);
        fsutil::ensure_private_dir(dir)?;
        let bytes = serde_json::to_vec_pretty(self)?;
        if bytes.len() as u64 > MAX_CACHE_BYTES {
            bail!(
                "the token cache would grow past {}",
                fsutil::format_size(MAX_CACHE_BYTES)
            );
        }
        fsutil::write_atomic(&path(dir), &bytes)
    }

    fn prune(&mut self, now: u64) {
        self.iam.retain(|_, m| m.expires_at > now);
        // An expired registry token is removed by the registry itself: nothing left to revoke.
        self.registry.retain(|_, m| m.expires_at > now);
        self.failures.retain(|_, f| live(f.until, now, FAILURE_TTL));
        self.refused
            .retain(|_, until| live(*until, now, REFUSAL_TTL));
        let (iam, registry) = (&self.iam, &self.registry);
        self.hosts.retain(|_, h| match &h.token {
            TokenRef::Iam(k) => iam.contains_key(k),
            TokenRef::Registry(k) => registry.contains_key(k),
        });
    }

    /// How `host` was last answered.
    pub fn host(&self, host: &str) -> Option<&HostEntry> {
        self.hosts.get(host)
    }

    /// Remembers how `host` is answered, unless its stored credentials
    /// changed since `epoch` was read (its key may be gone): then false.
    pub fn remember(&mut self, host: &str, epoch: Epoch, entry: HostEntry) -> bool {
        let current = self.epoch(host) == epoch;
        if current {
            self.hosts.insert(host.to_string(), entry);
        }
        current
    }

    /// The minted token a host entry points at.
    pub fn token(&self, r: &TokenRef) -> Option<&Minted> {
        match r {
            TokenRef::Iam(k) => self.iam.get(k),
            TokenRef::Registry(k) => self.registry.get(k),
        }
    }

    /// The IAM access token under `key`.
    pub fn iam(&self, key: &IamKey) -> Option<&Minted> {
        self.iam.get(key)
    }

    /// The registry token under `key`.
    pub fn registry(&self, key: &RegistryKey) -> Option<&Minted> {
        self.registry.get(key)
    }

    /// Keeps a freshly minted IAM access token; its failures are forgotten.
    pub fn put_iam(&mut self, key: IamKey, minted: Minted) {
        self.failures.remove(&MintKey::Iam(key.clone()));
        self.iam.insert(key, minted);
    }

    /// Keeps a freshly created registry token; its failures are forgotten.
    pub fn put_registry(&mut self, key: RegistryKey, minted: Minted) {
        self.failures.remove(&MintKey::Registry(key.clone()));
        self.registry.insert(key, minted);
    }

    /// Takes out the IAM access token under `key` and forgets its last
    /// failure, so the next mint for it asks IAM whatever was cached.
    pub fn take_iam(&mut self, key: &IamKey) -> Option<Minted> {
        self.failures.remove(&MintKey::Iam(key.clone()));
        self.iam.remove(key)
    }

    /// Takes out every registry token minted for `host` (to revoke them).
    pub fn take_registry_tokens(&mut self, host: &str) -> Vec<(RegistryKey, Minted)> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.registry)
            .into_iter()
            .partition(|(_, m)| m.host.as_deref() == Some(host));
        self.registry = others.into_iter().collect();
        mine
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
    pub fn recent_failure(&self, key: &MintKey, now: u64) -> Option<anyhow::Error> {
        let failure = self
            .failures
            .get(key)
            .filter(|f| live(f.until, now, FAILURE_TTL))?;
        // Written as one line, but read from a file that may have been edited.
        let message = crate::log::one_line(&failure.message);
        Some(anyhow::anyhow!("{message}"))
    }

    /// Remembers that a mint for `key` failed with `error`.
    pub fn record_failure(&mut self, key: MintKey, error: &anyhow::Error, now: u64) {
        let message = crate::log::one_line(&format!("{error:#}"));
        let failure = Failure {
            message,
            until: now + FAILURE_TTL,
        };
        self.failures.insert(key, failure);
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
    pub fn refused(&self, key: &RefusalKey, now: u64) -> bool {
        self.refused
            .get(key)
            .is_some_and(|until| live(*until, now, REFUSAL_TTL))
    }

    /// Remembers a refusal of registry-token creation until `until`.
    pub fn refuse(&mut self, key: RefusalKey, until: u64) {
        self.refused.insert(key, until);
    }
}

/// True while a memory of `ttl` seconds that ends at `until` still counts
/// at `now`; one that ends further away than `ttl` was stamped by a fast
/// clock and does not count.
fn live(until: u64, now: u64, ttl: u64) -> bool {
    until > now && until <= now.saturating_add(ttl + CLOCK_TOLERANCE)
}

/// True for what makes the cache untrustworthy rather than unusable: a mode
/// that lets others at it, or an owner who is someone else. Refused, never
/// ignored and replaced.
fn refused(e: &anyhow::Error) -> bool {
    e.is::<fsutil::LooseMode>() || e.is::<fsutil::ForeignOwner>()
}

/// Runs `change` on the cache under its lock and saves it, and makes sure it
/// took effect: for a `store` or `erase`, after which the old credential's
/// tokens must never be answered again. When the cache cannot be rewritten
/// (a read-only or full disk), it is removed whole: every token in it can be
/// minted again. When it can be neither, this fails, naming the file.
pub fn change_surely<T>(dir: &Path, now: u64, change: impl FnOnce(&mut Cache) -> T) -> Result<T> {
    let locked = fsutil::ensure_private_dir(dir)
        .and_then(|()| fsutil::lock(&lock_path(dir), fsutil::LOCK_WAIT));
    let guard = match locked {
        Err(e) if refused(&e) || e.is::<fsutil::LockTimeout>() => return Err(e),
        other => other,
    };
    let mut cache = Cache::load(dir)?;
    let out = change(&mut cache);
    let saved = match &guard {
        Ok(lock) => {
            // Copies of the cache that killed writers left: they may hold
            // tokens this change forgets.
            fsutil::remove_stale_temps(&path(dir), lock);
            cache.save(dir, now)
        }
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    if let Err(e) = saved {
        let file = path(dir);
        match std::fs::remove_file(&file) {
            Ok(()) => debug!("cache", "removed `{}`: {e:#}", file.display()),
            Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => {
                debug!("cache", "nothing cached to change ({e:#})")
            }
            Err(_) => {
                return Err(e.context(format!(
                    "the token cache `{}` can be neither changed nor removed",
                    file.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Runs `change` on the cache under its lock, then saves it. When the cache
/// dir cannot be written, runs `change` on an unsaved copy: the answer is
/// still given, just not cached.
pub fn with_locked<T>(dir: &Path, now: u64, change: impl FnOnce(&mut Cache) -> T) -> Result<T> {
    let locked = fsutil::ensure_private_dir(dir)
        .and_then(|()| fsutil::lock(&lock_path(dir), fsutil::LOCK_WAIT));
    let guard = match locked {
        Ok(guard) => guard,
        Err(e) if refused(&e) || e.is::<fsutil::LockTimeout>() => return Err(e),
        Err(e) => {
            debug!("cache", "not caching: {e:#}");
            return Ok(change(&mut Cache::load(dir)?));
        }
    };
    let mut cache = Cache::load(dir)?;
    let before = cache.clone();
    let out = change(&mut cache);
    if cache != before {
        fsutil::remove_stale_temps(&path(dir), &guard);
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

    fn identity(key: &str) -> Identity {
        Identity::ApiKey(Fingerprint::of(&Secret::new(key.into())))
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
        let fp = Fingerprint::of(&Secret::new("canary-api-key".into()));
        assert_eq!(fp.as_str().len(), 16);
        assert_eq!(fp, Fingerprint::of(&Secret::new("canary-api-key".into())));
        assert_ne!(fp, Fingerprint::of(&Secret::new("other".into())));
        // sha256("abc") starts ba7816bf8f01cfea
        assert_eq!(
            Fingerprint::of(&Secret::new("abc".into())).as_str(),
            "ba7816bf8f01cfea"
        );
    }

    #[test]
    fn keys_keep_the_v1_spelling_and_parse_back() {
        let identity = identity("abc");
        let iam = IamKey {
            endpoint: "https://iam.cloud.ibm.com".into(),
            identity: identity.clone(),
        };
        let registry = RegistryKey {
            api: "https://us.icr.io".into(),
            identity,
            access: TokenAccess::ReadOnly,
        };
        let spelled = [
            (
                MintKey::Iam(iam.clone()),
                "https://iam.cloud.ibm.com|ba7816bf8f01cfea",
            ),
            (
                MintKey::Registry(registry.clone()),
                "https://us.icr.io|ba7816bf8f01cfea|readonly",
            ),
        ];
        for (key, text) in spelled {
            assert_eq!(key.to_string(), text);
            assert_eq!(text.parse::<MintKey>(), Ok(key));
        }
        assert_eq!(
            registry.refusal().to_string(),
            "https://us.icr.io|ba7816bf8f01cfea"
        );
        for bad in [
            "",
            "no-bar",
            "https://x|",
            "https://x|not hex",
            "https://x|ab|rw",
        ] {
            assert!(bad.parse::<MintKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_identity_kind_has_its_own_spelling() {
        let fp = Fingerprint::of_parts(&["x"]);
        let hex = fp.as_str().to_string();
        for (identity, text) in [
            (Identity::ApiKey(fp.clone()), hex.clone()),
            (Identity::CrToken(fp.clone()), format!("cr:{hex}")),
            (Identity::Vpc(fp.clone()), format!("vpc:{hex}")),
            (Identity::Session(fp.clone()), format!("ibmcloud:{hex}")),
        ] {
            assert_eq!(identity.to_string(), text);
            assert_eq!(text.parse::<Identity>(), Ok(identity.clone()));
            let key = IamKey {
                endpoint: "http://api.metadata.cloud.ibm.com".into(),
                identity,
            };
            let spelled = key.to_string();
            assert_eq!(
                spelled.parse::<MintKey>(),
                Ok(MintKey::Iam(key)),
                "{spelled}"
            );
        }
        for bad in ["cr:", "cr:xyz", "vpc", "other:ab", ":ab", "ibmcloud:ab:cd"] {
            assert!(bad.parse::<Identity>().is_err(), "{bad}");
        }
        // Parts are length-prefixed: a different split is a different fingerprint.
        assert_ne!(
            Fingerprint::of_parts(&["ab", "c"]),
            Fingerprint::of_parts(&["a", "bc"])
        );
        assert_eq!(
            Fingerprint::of_parts(&["ab", "c"]),
            Fingerprint::of_parts(&["ab", "c"])
        );
        // Sources serialize with fixed names.
        let json = serde_json::to_string(&[
            KeySource::CrToken,
            KeySource::Projected,
            KeySource::ServiceAccount,
            KeySource::Vpc,
            KeySource::Ibmcloud,
        ])
        .unwrap();
        assert_eq!(
            json,
            r#"["cr-token","projected","service-account","vpc","ibmcloud"]"#
        );
    }

    #[test]
    fn a_cache_written_before_typed_keys_still_loads() {
        let v1 = r#"{"v":1,
            "hosts":{"us.icr.io":{"source":{"env":"IC_API_KEY"},"fingerprint":"ba7816bf8f01cfea",
                "mode":"registry-token","token":{"registry":"https://us.icr.io|ba7816bf8f01cfea|readwrite"}}},
            "iam":{"https://iam.cloud.ibm.com|ba7816bf8f01cfea":{"token":"t","minted_at":1,"expires_at":9,"account":"a"}},
            "registry":{"https://us.icr.io|ba7816bf8f01cfea|readwrite":{"token":"r","minted_at":1,"expires_at":9,
                "id":"j","host":"us.icr.io","iam":"https://iam.cloud.ibm.com|ba7816bf8f01cfea"}},
            "failures":{"https://iam.cloud.ibm.com|ba7816bf8f01cfea":{"message":"m","until":5}},
            "refused":{"https://de.icr.io|ba7816bf8f01cfea":7},
            "epochs":{"us.icr.io":2}}"#;
        let cache: Cache = serde_json::from_str(v1).unwrap();
        let entry = cache.host("us.icr.io").unwrap();
        let minted = cache.token(&entry.token).unwrap();
        assert_eq!(minted.token.expose(), "r");
        assert_eq!(
            cache
                .iam(minted.iam.as_ref().unwrap())
                .unwrap()
                .token
                .expose(),
            "t"
        );
        let refusal = RefusalKey {
            api: "https://de.icr.io".into(),
            identity: identity("abc"),
        };
        assert!(cache.refused(&refusal, 6) && !cache.refused(&refusal, 7));
        let failed = MintKey::Iam(minted.iam.clone().unwrap());
        assert!(cache.recent_failure(&failed, 4).is_some());
        let back: Cache = serde_json::from_slice(&serde_json::to_vec(&cache).unwrap()).unwrap();
        assert_eq!(back, cache, "what it writes, it reads");
    }

    /// Issue 10 item 9 (fuzz/corpus/cache_file/regress-control-in-failure-*).
    #[test]
    fn a_cached_failure_is_answered_on_one_line() {
        let cache = Cache::parse(
            br#"{"v":1,"failures":{"https://iam|ab":{"message":"IAM\r\nfailed\u007f","until":9}}}"#,
            Path::new("tokens.json"),
        );
        let key = MintKey::Iam("https://iam|ab".parse().unwrap());
        let e = cache.recent_failure(&key, 1).unwrap();
        assert_eq!(format!("{e:#}"), "IAM  failed ");
    }

    #[test]
    fn invalidating_the_global_host_drops_borrowed_keys() {
        let mut c = Cache::default();
        let entry = |source| HostEntry {
            source,
            fingerprint: identity("k").fingerprint().clone(),
            mode: Mode::Bearer,
            token: TokenRef::Iam(IamKey {
                endpoint: "https://iam".into(),
                identity: identity("k"),
            }),
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
        assert!(!c.remember("us.icr.io", before, entry(KeySource::Global)));
        let de = c.epoch("de.icr.io");
        c.invalidate("us.icr.io", false);
        assert_eq!(c.epoch("de.icr.io"), de);
    }
}
