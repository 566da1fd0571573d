//! What `get`, `store` and `erase` do for an IBM host
//! (../shared/decisions.md §4): answer from the token cache, else from the
//! store, else mint from an API key, under one lock so that many parallel
//! `get`s make one mint.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};

use crate::cache::{self, Cache, Epoch, Freshness, HostEntry, KeySource, Minted, TokenRef};
use crate::config::Settings;
use crate::env::{Env, Mode, TokenAccess};
use crate::mint::{Created, Endpoint, Minter, APIKEY_GRANT};
use crate::protocol::{Credentials, Error};
use crate::registry::{IbmHost, Network, GLOBAL_HOST};
use crate::secret::Secret;
use crate::store::{self, Record, SecretStore};
use crate::{debug, jwt, log};

/// Username of an IAM API key.
pub const APIKEY: &str = "iamapikey";
/// Username of an IAM access token.
pub const BEARER: &str = "iambearer";
/// Username of a registry token.
pub const TOKEN: &str = "token";
/// Username of an IAM refresh token.
pub const REFRESH: &str = "iamrefresh";
/// Longest IAM token lifetime believed (IBM's is at most 60 minutes): a
/// server's `expires_in` beyond it is capped, never overflowed.
const MAX_IAM_LIFETIME: u64 = 24 * 60 * 60;

/// What a credential is, judged by its username (../shared/ibm-api.md §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `iamapikey`: an API key to mint from.
    ApiKey,
    /// `token` or `iambearer`: answered while its JWT `exp` is in the future.
    Expiring,
    /// `iamrefresh`, a trusted-profile id, anything else: answered as stored.
    AsStored,
}

impl Kind {
    /// The kind of a stored username.
    pub fn of(username: &str) -> Kind {
        match username {
            APIKEY => Kind::ApiKey,
            TOKEN | BEARER => Kind::Expiring,
            _ => Kind::AsStored,
        }
    }
}

/// A `get` answer.
#[derive(Debug)]
pub struct Answer {
    /// `Username`.
    pub username: String,
    /// `Secret`.
    pub secret: Secret<String>,
}

/// The store a `get` reads, opened only when the token cache cannot answer.
pub type OpenStore<'a> = Box<dyn FnOnce() -> Result<Option<Box<dyn SecretStore + 'a>>> + 'a>;

/// The answer for `host`. `Error::NotFound` when nothing is stored or
/// mintable for it (the debug log says why); never a network call then.
/// `open_store` is called only when the token cache cannot answer.
pub fn get(env: &Env, host: IbmHost, now: u64, open_store: OpenStore<'_>) -> Result<Answer, Error> {
    let dirs = env.dirs()?;
    let settings = Settings::load(&dirs.config)?;
    let mode = settings.mode(env, host)?;
    let access = settings.token_access(env, host)?;

    let cache = Cache::load(&dirs.cache)?;
    if let Some(answer) = cached(&cache, env, host, mode, access, now) {
        debug!("get", "{host}: answered from the token cache");
        return Ok(answer);
    }
    let epoch = cache.epoch(host.name());

    let store = open_store()?;
    let mut key = None;
    if let Some(record) = read(&store, host.name())? {
        match Kind::of(&record.username) {
            Kind::ApiKey => key = Some((record.secret, KeySource::Host)),
            Kind::AsStored => {
                return Ok(Answer {
                    username: record.username,
                    secret: record.secret,
                })
            }
            Kind::Expiring => match jwt::expiry(record.secret.expose()) {
                Some(exp) if exp <= now => {
                    debug!(
                        "get",
                        "{host}: the stored {} credential expired {}s ago",
                        record.username,
                        now - exp
                    )
                }
                _ => {
                    return Ok(Answer {
                        username: record.username,
                        secret: record.secret,
                    })
                }
            },
        }
    }
    if key.is_none() && !host.is_global() {
        key = api_key(read(&store, GLOBAL_HOST)?).map(|k| (k, KeySource::Global));
    }
    if key.is_none() {
        key = env
            .api_key
            .as_ref()
            .map(|k| (k.key.clone(), KeySource::Env(k.var.to_string())));
    }
    let Some((key, source)) = key else {
        debug!(
            "get",
            "{host}: nothing stored for it or for {GLOBAL_HOST}, and no API key in the environment"
        );
        return Err(Error::NotFound);
    };
    debug!(
        "get",
        "{host}: region {}, mode {}, key from {source:?}",
        host.region(),
        mode.as_str()
    );
    if mode == Mode::ApiKey {
        return Ok(Answer {
            username: APIKEY.into(),
            secret: key,
        });
    }
    let keys = TokenKeys::new(env, host, &cache::fingerprint(&key), access)?;
    let mut minting = Minting::new(env, host, now, epoch)?;
    match mode {
        Mode::RegistryToken => minting.registry_token(&keys, &key, source),
        _ => minting.bearer(&keys, &key, source, mode),
    }
}

/// IAM base: `IBMCLOUD_IAM_API_ENDPOINT`, else private IAM for a `private.` host, else public.
fn iam_endpoint(env: &Env, host: IbmHost) -> Result<Endpoint> {
    let url = match (&env.iam_endpoint, host.network()) {
        (Some(url), _) => url.as_str(),
        (None, Network::Private) => crate::mint::PRIVATE_IAM,
        (None, _) => crate::mint::DEFAULT_IAM,
    };
    Endpoint::parse_iam(url)
        .map_err(|e| anyhow!("{}: {e:#}", crate::env::IBMCLOUD_IAM_API_ENDPOINT))
}

/// Registry API base: `IBMCLOUD_CR_API_ENDPOINT`, else `https://<host>`.
fn api_endpoint(env: &Env, host: IbmHost) -> Result<Endpoint> {
    let url = match &env.cr_endpoint {
        // `ibmcloud cr api` prints the base with `/api`; the paths add it again.
        Some(url) => url
            .trim_end_matches('/')
            .trim_end_matches("/api")
            .to_string(),
        None => format!("https://{}", host.name()),
    };
    Endpoint::parse(&url).map_err(|e| anyhow!("{}: {e:#}", crate::env::IBMCLOUD_CR_API_ENDPOINT))
}

/// Where a host's minted tokens live in the cache, for one key and the
/// current endpoints and token access.
struct TokenKeys {
    iam: Endpoint,
    api: Endpoint,
    fingerprint: String,
    /// `<iam>|<fingerprint>`: the IAM access token.
    iam_key: String,
    /// `<api>|<fingerprint>`: a remembered refusal of registry tokens.
    refusal_key: String,
    /// `<api>|<fingerprint>|<access>`: the registry token.
    registry_key: String,
}

impl TokenKeys {
    fn new(env: &Env, host: IbmHost, fingerprint: &str, access: TokenAccess) -> Result<TokenKeys> {
        let (iam, api) = (iam_endpoint(env, host)?, api_endpoint(env, host)?);
        let refusal_key = format!("{}|{fingerprint}", api.as_str());
        Ok(TokenKeys {
            iam_key: format!("{}|{fingerprint}", iam.as_str()),
            registry_key: format!("{refusal_key}|{}", access.as_str()),
            refusal_key,
            fingerprint: fingerprint.to_string(),
            iam,
            api,
        })
    }

    /// The token a host is answered with in `mode` (registry-token mode
    /// answers bearer while a refusal is remembered).
    fn expected(&self, mode: Mode, cache: &Cache, now: u64) -> TokenRef {
        if mode == Mode::RegistryToken && !cache.refused(&self.refusal_key, now) {
            TokenRef::Registry(self.registry_key.clone())
        } else {
            TokenRef::Iam(self.iam_key.clone())
        }
    }
}

/// The cached answer for `host`, if the cache has a fresh one made for the
/// same mode, endpoints and token access and (for an environment key) the
/// same key.
fn cached(
    cache: &Cache,
    env: &Env,
    host: IbmHost,
    mode: Mode,
    access: TokenAccess,
    now: u64,
) -> Option<Answer> {
    let entry = cache.hosts.get(host.name())?;
    if entry.mode != mode {
        return None;
    }
    if let KeySource::Env(var) = &entry.source {
        let key = env.api_key.as_ref()?;
        if key.var != var || cache::fingerprint(&key.key) != entry.fingerprint {
            return None;
        }
    }
    let keys = TokenKeys::new(env, host, &entry.fingerprint, access).ok()?;
    if keys.expected(mode, cache, now) != entry.token {
        return None;
    }
    let minted = cache.token(&entry.token)?;
    if minted.freshness(now) != Freshness::Fresh {
        return None;
    }
    let username = match entry.token {
        TokenRef::Iam(_) => BEARER,
        TokenRef::Registry(_) => TOKEN,
    };
    Some(Answer {
        username: username.into(),
        secret: minted.token.clone(),
    })
}

fn read(store: &Option<Box<dyn SecretStore + '_>>, key: &str) -> Result<Option<Record>> {
    match store {
        Some(store) => store.get(key),
        None => Ok(None),
    }
}

/// The API key a record holds, if it holds one.
fn api_key(record: Option<Record>) -> Option<Secret<String>> {
    record
        .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
        .map(|r| r.secret)
}

/// `store` for an IBM host: keeps what the user gave, except a token this
/// helper minted (`docker login` with no flags does `get`, then `store`s the
/// answer back: it must not replace the API key it was minted from).
pub fn store(env: &Env, host: IbmHost, creds: Credentials, now: u64) -> Result<(), Error> {
    let dirs = env.dirs()?;
    if Cache::load(&dirs.cache)?.holds(&creds.secret) {
        debug!(
            "store",
            "{host}: absorbed a credential this helper minted; nothing changes"
        );
        return Ok(());
    }
    let store = store::open_for_write(env)?;
    if creds.username == BEARER && minted_from_api_key(&creds.secret) {
        // Without a writable cache the check above cannot know our own tokens:
        // an access token minted from an API key never replaces the stored key.
        if store
            .get(host.name())?
            .is_some_and(|r| Kind::of(&r.username) == Kind::ApiKey)
        {
            debug!("store", "{host}: kept the stored API key; an access token minted from a key is not stored over it");
            return Ok(());
        }
    }
    let record = Record {
        username: creds.username,
        secret: creds.secret,
        stored_at: now,
    };
    store.put(host.name(), &record)?;
    debug!("store", "{host}: stored a {} credential", record.username);
    // A token minted from the previous credential must not keep answering.
    cache::with_locked(&dirs.cache, now, |c| {
        c.invalidate(host.name(), host.is_global())
    })?;
    Ok(())
}

/// True for an IAM access token whose claims say it was minted from an API key.
fn minted_from_api_key(token: &Secret<String>) -> bool {
    jwt::claims(token.expose())
        .is_some_and(|c| c.get("grant_type").and_then(|g| g.as_str()) == Some(APIKEY_GRANT))
}

/// `erase` for an IBM host: removes the stored credential and everything
/// minted for the host; revokes minted registry tokens at the registry, best
/// effort (a failure is one line on stderr, and the local copy goes anyway).
pub fn erase(env: &Env, host: IbmHost, now: u64) -> Result<(), Error> {
    let dirs = env.dirs()?;
    let store = store::open_for_read(env)?;
    let record = read(&store, host.name())?;
    if let Some(store) = &store {
        if store.remove(host.name())? {
            debug!("erase", "{host}: removed the stored credential");
        }
    }
    let minted: Vec<(String, Minted)> = cache::with_locked(&dirs.cache, now, |c| {
        c.invalidate(host.name(), host.is_global());
        let (mine, others): (BTreeMap<_, _>, _) = std::mem::take(&mut c.registry)
            .into_iter()
            .partition(|(_, m)| m.host.as_deref() == Some(host.name()));
        c.registry = others;
        mine.into_iter().collect()
    })?;
    if minted.is_empty() {
        return Ok(());
    }
    // Keys that may have minted them: the erased record's, the global one, the environment's.
    let mut keys: Vec<Secret<String>> = Vec::new();
    keys.extend(api_key(record));
    keys.extend(api_key(read(&store, GLOBAL_HOST).ok().flatten()));
    keys.extend(env.api_key.as_ref().map(|k| k.key.clone()));
    let mut minting = Minting::new(env, host, now, (0, 0))?;
    for (rkey, token) in minted {
        let id = token.id.clone().unwrap_or_default();
        let api = rkey.split('|').next().unwrap_or_default().to_string();
        match minting.revoke(&token, &api, &keys) {
            Ok(()) => debug!("erase", "{host}: revoked registry token {id} at {api}"),
            Err(e) => log::say(&format!(
                "docker-credential-ibmcr: could not revoke registry token {id} at {api}: {e:#}; removed the local copy"
            )),
        }
    }
    Ok(())
}

/// Minting for one host in one process: the HTTP client built only when a
/// request is actually made, and the clock as it moves on while we wait.
struct Minting {
    host: IbmHost,
    /// Unix seconds at the start of the process.
    start: u64,
    started: Instant,
    /// The host's cache epoch when this `get` read the store.
    epoch: Epoch,
    dir: PathBuf,
    minter: Option<Minter>,
}

impl Minting {
    fn new(env: &Env, host: IbmHost, now: u64, epoch: Epoch) -> Result<Minting> {
        let dir = env.dirs()?.cache.clone();
        Ok(Minting {
            host,
            start: now,
            started: Instant::now(),
            epoch,
            dir,
            minter: None,
        })
    }

    /// Unix seconds now: a mint or a lock wait can take many seconds.
    fn now(&self) -> u64 {
        self.start + self.started.elapsed().as_secs()
    }

    fn minter(&mut self) -> Result<&Minter> {
        if self.minter.is_none() {
            self.minter = Some(Minter::new()?);
        }
        Ok(self.minter.as_ref().expect("set above"))
    }

    /// Remembers how the host is answered, unless a `store` or `erase` of it
    /// ran since this `get` read the store (its key may be gone).
    fn remember(&self, cache: &mut Cache, entry: HostEntry) {
        if cache.epoch(self.host.name()) == self.epoch {
            cache.hosts.insert(self.host.name().to_string(), entry);
        } else {
            debug!(
                "cache",
                "{}: its credentials changed meanwhile; not caching this answer for it", self.host
            );
        }
    }

    /// `bearer` mode: one IAM access token per (IAM endpoint, key) serves every region.
    fn bearer(
        &mut self,
        keys: &TokenKeys,
        key: &Secret<String>,
        source: KeySource,
        mode: Mode,
    ) -> Result<Answer, Error> {
        let dir = self.dir.clone();
        let token = cache::with_locked(&dir, self.now(), |cache| -> Result<Secret<String>> {
            let minted = self.iam_token(cache, keys, key)?;
            let token = TokenRef::Iam(keys.iam_key.clone());
            self.remember(
                cache,
                HostEntry {
                    source,
                    fingerprint: keys.fingerprint.clone(),
                    mode,
                    token,
                },
            );
            Ok(minted.token)
        })??;
        Ok(Answer {
            username: BEARER.into(),
            secret: token,
        })
    }

    /// A fresh IAM access token for `key` from the cache (locked by the
    /// caller), else minted. A failure of the last [`cache::FAILURE_TTL`]
    /// seconds is answered without a request; a token inside its refresh
    /// margin is answered while minting fails.
    fn iam_token(
        &mut self,
        cache: &mut Cache,
        keys: &TokenKeys,
        key: &Secret<String>,
    ) -> Result<Minted> {
        let (now, host, tkey) = (self.now(), self.host, keys.iam_key.as_str());
        let held = cache.iam.get(tkey).cloned();
        let freshness = held.as_ref().map(|m| m.freshness(now));
        if let (Some(m), Some(Freshness::Fresh)) = (&held, freshness) {
            debug!(
                "mint",
                "{host}: reusing the cached IAM access token for this key"
            );
            return Ok(m.clone());
        }
        let still_valid = held.filter(|_| freshness == Some(Freshness::ExpiringSoon));
        if let Some(failure) = cache.recent_failure(tkey, now) {
            if let Some(m) = still_valid {
                debug!(
                    "mint",
                    "{host}: minting failed recently; the cached token is valid for {}s more",
                    m.expires_at - now
                );
                return Ok(m);
            }
            debug!(
                "mint",
                "{host}: minting failed within the last {}s; answering that failure",
                cache::FAILURE_TTL
            );
            return Err(failure);
        }
        let reason = match freshness {
            None => "none cached",
            Some(Freshness::ExpiringSoon) => "cached one expires soon",
            _ => "cached one expired",
        };
        debug!(
            "mint",
            "{host}: minting an IAM access token at {} ({reason})",
            keys.iam.as_str()
        );
        match self.minter()?.iam_token(&keys.iam, key) {
            Ok(t) => {
                let minted_at = self.now();
                let lifetime = t.expires_in.min(MAX_IAM_LIFETIME);
                debug!(
                    "mint",
                    "{host}: minted an IAM access token, expires in {lifetime}s"
                );
                let minted = Minted {
                    token: t.access_token,
                    minted_at,
                    expires_at: minted_at + lifetime,
                    account: t.account,
                    id: None,
                    host: None,
                    iam: None,
                };
                cache.iam.insert(tkey.to_string(), minted.clone());
                cache.failures.remove(tkey);
                Ok(minted)
            }
            Err(e) => {
                cache.record_failure(tkey, &e, self.now());
                match still_valid {
                    Some(m) => {
                        debug!("mint", "{host}: minting failed ({e:#}); the cached token is valid for {}s more", m.expires_at.saturating_sub(self.now()));
                        Ok(m)
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// `registry-token` mode: a cached registry token, else one minted
    /// through the registry token API; a refused creation falls back to bearer.
    fn registry_token(
        &mut self,
        keys: &TokenKeys,
        key: &Secret<String>,
        source: KeySource,
    ) -> Result<Answer, Error> {
        let dir = self.dir.clone();
        let host = self.host;
        let answer = cache::with_locked(&dir, self.now(), |cache| -> Result<Answer> {
            let now = self.now();
            let entry = |token| HostEntry {
                source: source.clone(),
                fingerprint: keys.fingerprint.clone(),
                mode: Mode::RegistryToken,
                token,
            };
            let bearer_entry = entry(TokenRef::Iam(keys.iam_key.clone()));
            let registry_entry = entry(TokenRef::Registry(keys.registry_key.clone()));
            if cache.refused(&keys.refusal_key, now) {
                debug!(
                    "mint",
                    "{host}: {} refused registry tokens recently; answering bearer",
                    keys.api.as_str()
                );
                let minted = self.iam_token(cache, keys, key)?;
                self.remember(cache, bearer_entry);
                return Ok(Answer {
                    username: BEARER.into(),
                    secret: minted.token,
                });
            }
            let held = cache.registry.get(&keys.registry_key).cloned();
            let freshness = held.as_ref().map(|m| m.freshness(now));
            if let (Some(m), Some(Freshness::Fresh)) = (&held, freshness) {
                let token = m.token.clone();
                self.remember(cache, registry_entry);
                return Ok(Answer {
                    username: TOKEN.into(),
                    secret: token,
                });
            }
            let still_valid = held.filter(|_| freshness == Some(Freshness::ExpiringSoon));
            let created = self.create_registry_token(cache, keys, key, now);
            match created {
                Ok(Some(token)) => {
                    self.remember(cache, registry_entry);
                    Ok(Answer {
                        username: TOKEN.into(),
                        secret: token,
                    })
                }
                Ok(None) => {
                    let minted = self.iam_token(cache, keys, key)?;
                    self.remember(cache, bearer_entry);
                    Ok(Answer {
                        username: BEARER.into(),
                        secret: minted.token,
                    })
                }
                Err(e) => match still_valid {
                    Some(m) => {
                        debug!("mint", "{host}: re-minting failed ({e:#}); the cached registry token is valid for {}s more", m.expires_at.saturating_sub(now));
                        Ok(Answer {
                            username: TOKEN.into(),
                            secret: m.token,
                        })
                    }
                    None => Err(e),
                },
            }
        })??;
        Ok(answer)
    }

    /// Creates a registry token and caches it (`Some`), or records a refusal
    /// and says so once on stderr (`None`).
    fn create_registry_token(
        &mut self,
        cache: &mut Cache,
        keys: &TokenKeys,
        key: &Secret<String>,
        now: u64,
    ) -> Result<Option<Secret<String>>> {
        let (host, rkey) = (self.host, keys.registry_key.as_str());
        if let Some(failure) = cache.recent_failure(rkey, now) {
            return Err(failure);
        }
        let iam_token = self.iam_token(cache, keys, key)?;
        let account = iam_token.account.clone().ok_or_else(|| {
            anyhow!("the IAM access token from {} names no account (account.bss), which the registry token API needs", keys.iam.as_str())
        })?;
        let description = format!("docker-credential-ibmcr {host}");
        let write = rkey.ends_with(TokenAccess::ReadWrite.as_str());
        debug!(
            "mint",
            "{host}: creating a registry token at {} (write={write})",
            keys.api.as_str()
        );
        match self.minter()?.create_registry_token(
            &keys.api,
            &iam_token.token,
            &account,
            &description,
            write,
        ) {
            Ok(Created::Token(t)) => {
                let minted_at = self.now();
                let expires_at = t.expires_at.unwrap_or(minted_at + cache::REFUSAL_TTL);
                debug!(
                    "mint",
                    "{host}: created registry token {}, expires in {}s",
                    t.id,
                    expires_at.saturating_sub(minted_at)
                );
                let token = t.token.clone();
                cache.registry.insert(
                    rkey.to_string(),
                    Minted {
                        token: t.token,
                        minted_at,
                        expires_at,
                        account: Some(account),
                        id: Some(t.id),
                        host: Some(host.name().to_string()),
                        iam: Some(keys.iam_key.clone()),
                    },
                );
                cache.failures.remove(rkey);
                Ok(Some(token))
            }
            Ok(Created::Refused { reason, .. }) => {
                cache
                    .refused
                    .insert(keys.refusal_key.clone(), self.now() + cache::REFUSAL_TTL);
                log::say(&format!(
                    "docker-credential-ibmcr: registry token creation refused by {} ({reason}); answering an IAM access token (iambearer) instead",
                    keys.api.as_str()
                ));
                Ok(None)
            }
            Err(e) => {
                cache.record_failure(rkey, &e, self.now());
                Err(e)
            }
        }
    }

    /// Deletes a minted registry token at its registry, with an access token
    /// from the cache or minted from whichever of `keys` minted it.
    fn revoke(&mut self, token: &Minted, api: &str, keys: &[Secret<String>]) -> Result<()> {
        let id = token
            .id
            .as_deref()
            .ok_or_else(|| anyhow!("no token id recorded"))?;
        let tkey = token
            .iam
            .as_deref()
            .ok_or_else(|| anyhow!("no IAM endpoint recorded"))?;
        let (iam_url, fingerprint) = tkey
            .rsplit_once('|')
            .ok_or_else(|| anyhow!("malformed cache key"))?;
        let api = Endpoint::parse(api)?;
        let cache = Cache::load(&self.dir)?;
        let (access, account) = match cache
            .iam
            .get(tkey)
            .filter(|m| m.freshness(self.now()) != Freshness::Expired)
        {
            Some(m) => (m.token.clone(), m.account.clone()),
            None => {
                let key = keys
                    .iter()
                    .find(|k| cache::fingerprint(k) == fingerprint)
                    .ok_or_else(|| anyhow!("the API key that minted it is no longer known"))?;
                let iam = Endpoint::parse_iam(iam_url)?;
                let t = self.minter()?.iam_token(&iam, key)?;
                (t.access_token, t.account)
            }
        };
        let account = account
            .or(token.account.clone())
            .ok_or_else(|| anyhow!("no account id"))?;
        self.minter()?
            .delete_registry_token(&api, &access, &account, id)
    }
}

#[cfg(test)]
mod tests {
    //! The decision table of ../shared/decisions.md §4 above an in-memory
    //! store, with a fixed clock; nothing here may touch the network (the
    //! endpoints point at a closed port, so a mint would fail the test).
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::cell::Cell;
    use std::ffi::OsString;

    const NOW: u64 = 1_800_000_000;

    fn env(tag: &str, extra: &[(&str, &str)]) -> Env {
        let home = std::env::temp_dir().join(format!("ibmcr-ibm-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        let mut vars: Vec<(String, String)> = vec![
            ("IBMCR_HOME".into(), home.to_string_lossy().into_owned()),
            (
                "IBMCLOUD_IAM_API_ENDPOINT".into(),
                "http://127.0.0.1:9".into(),
            ),
            (
                "IBMCLOUD_CR_API_ENDPOINT".into(),
                "http://127.0.0.1:9".into(),
            ),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Env::from_lookup(
            |n| {
                vars.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| OsString::from(v))
            },
            false,
        )
        .unwrap()
    }

    fn put(store: &MemoryStore, key: &str, username: &str, secret: &str) {
        let record = Record {
            username: username.into(),
            secret: Secret::new(secret.into()),
            stored_at: 0,
        };
        store.put(key, &record).unwrap();
    }

    /// An unsigned JWT with these claims (the helper never checks signatures).
    fn jwt_with(claims: serde_json::Value) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b64 = |b: &[u8]| -> String {
            b.chunks(3)
                .flat_map(|c| {
                    let n =
                        c.iter().fold(0u32, |n, &x| n << 8 | u32::from(x)) << (8 * (3 - c.len()));
                    (0..=c.len()).map(move |i| A[(n >> (18 - 6 * i) & 63) as usize] as char)
                })
                .collect()
        };
        format!(
            "{}.{}.sig",
            b64(b"{\"alg\":\"none\"}"),
            b64(claims.to_string().as_bytes())
        )
    }

    fn jwt(exp: u64) -> String {
        jwt_with(serde_json::json!({ "exp": exp }))
    }

    fn answer(env: &Env, host: &str, store: &MemoryStore) -> Result<Answer, Error> {
        super::get(
            env,
            IbmHost::lookup(host).unwrap(),
            NOW,
            Box::new(move || Ok(Some(Box::new(store)))),
        )
    }

    #[test]
    fn a_fresh_cached_token_answers_without_opening_the_store() {
        let env = env("cached", &[]);
        let mut cache = Cache::default();
        let keys = TokenKeys::new(
            &env,
            IbmHost::lookup("us.icr.io").unwrap(),
            "fp",
            TokenAccess::ReadWrite,
        )
        .unwrap();
        cache.iam.insert(
            keys.iam_key.clone(),
            Minted {
                token: Secret::new("cached-token".into()),
                minted_at: NOW - 60,
                expires_at: NOW + 3540,
                account: None,
                id: None,
                host: None,
                iam: None,
            },
        );
        let entry = HostEntry {
            source: KeySource::Host,
            fingerprint: "fp".into(),
            mode: Mode::Bearer,
            token: TokenRef::Iam(keys.iam_key),
        };
        cache.hosts.insert("us.icr.io".into(), entry);
        cache.save(&env.dirs().unwrap().cache, NOW).unwrap();
        let opened = Cell::new(false);
        let answer = super::get(
            &env,
            IbmHost::lookup("us.icr.io").unwrap(),
            NOW,
            Box::new(|| {
                opened.set(true);
                Ok(None)
            }),
        )
        .unwrap();
        assert_eq!(
            (answer.username.as_str(), answer.secret.expose().as_str()),
            ("iambearer", "cached-token")
        );
        assert!(!opened.get(), "the store (keyring) was not opened");
        // Another mode is not answered from that entry.
        let apikey = self::env("cached-2", &[("IBMCR_MODE", "apikey")]);
        assert!(cached(
            &cache,
            &apikey,
            IbmHost::lookup("us.icr.io").unwrap(),
            Mode::ApiKey,
            TokenAccess::ReadWrite,
            NOW
        )
        .is_none());
    }

    #[test]
    fn stored_credentials_follow_the_table() {
        let env = env("table", &[]);
        let store = MemoryStore::default();
        put(&store, "us.icr.io", "token", &jwt(NOW + 10));
        put(&store, "de.icr.io", "token", &jwt(NOW - 10));
        put(&store, "uk.icr.io", "iambearer", &jwt(NOW + 10));
        put(&store, "au.icr.io", "iamrefresh", "r");
        put(&store, "jp.icr.io", "iam-Profile-1", "k");
        put(&store, "ca.icr.io", "someone", "s");
        for (host, username) in [
            ("us.icr.io", "token"),
            ("uk.icr.io", "iambearer"),
            ("au.icr.io", "iamrefresh"),
            ("jp.icr.io", "iam-Profile-1"),
            ("ca.icr.io", "someone"),
        ] {
            assert_eq!(
                answer(&env, host, &store).unwrap().username,
                username,
                "{host}"
            );
        }
        // Expired, and no key anywhere: not found, no network.
        assert!(matches!(
            answer(&env, "de.icr.io", &store),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            answer(&env, "es.icr.io", &store),
            Err(Error::NotFound)
        ));
    }

    #[test]
    fn key_sources_host_then_global_then_environment() {
        let env = env(
            "keys",
            &[("IBMCR_MODE", "apikey"), ("IC_API_KEY", "from-env")],
        );
        let store = MemoryStore::default();
        let key = |host| answer(&env, host, &store).unwrap().secret.expose().clone();
        assert_eq!(key("us.icr.io"), "from-env");
        put(&store, "icr.io", "iamapikey", "global");
        assert_eq!(key("us.icr.io"), "global");
        put(&store, "icr.io", "token", &jwt(NOW + 10)); // only an API key at icr.io serves others
        assert_eq!(key("us.icr.io"), "from-env");
        put(&store, "us.icr.io", "iamapikey", "own");
        assert_eq!(key("us.icr.io"), "own");
        put(&store, "de.icr.io", "token", &jwt(NOW - 1)); // expired: a key takes over
        let answer = answer(&env, "de.icr.io", &store).unwrap();
        assert_eq!(
            (answer.username.as_str(), answer.secret.expose().as_str()),
            ("iamapikey", "from-env")
        );
    }

    #[test]
    fn minted_from_api_key_reads_the_grant() {
        let token = |grant: &str| Secret::new(jwt_with(serde_json::json!({ "grant_type": grant })));
        assert!(minted_from_api_key(&token(APIKEY_GRANT)));
        assert!(!minted_from_api_key(&token("password")));
        assert!(!minted_from_api_key(&Secret::new("opaque".into())));
        assert_eq!(jwt::expiry(&jwt(NOW)), Some(NOW), "the test tokens decode");
    }
}
