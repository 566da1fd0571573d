//! What `get`, `store` and `erase` do for an IBM host
//! (../shared/decisions.md §4): answer from the token cache, else from the
//! store, else mint from an API key, under one lock so that many parallel
//! `get`s make one mint.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

use crate::cache::{self, Cache, Freshness, HostEntry, KeySource, Minted, TokenRef};
use crate::config::Settings;
use crate::env::{Env, Mode, TokenAccess};
use crate::mint::{Created, Endpoint, Minter};
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

/// The answer for `host`. `Error::NotFound` when nothing is stored or
/// mintable for it (the debug log says why); never a network call then.
pub fn get(env: &Env, host: IbmHost, now: u64) -> Result<Answer, Error> {
    let dirs = env.dirs()?;
    let settings = Settings::load(&dirs.config)?;
    let mode = settings.mode(env, host);

    if let Some(answer) = cached(&Cache::load(&dirs.cache)?, env, host, mode, now) {
        debug!("get", "{host}: answered from the token cache");
        return Ok(answer);
    }

    let store = store::open_for_read(env)?;
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
        key = read(&store, GLOBAL_HOST)?
            .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
            .map(|r| (r.secret, KeySource::Global));
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
    let mut minting = Minting::new(env, host, now)?;
    match mode {
        Mode::ApiKey => Ok(Answer {
            username: APIKEY.into(),
            secret: key,
        }),
        Mode::Bearer => minting.bearer(&key, source, mode),
        Mode::RegistryToken => {
            minting.registry_token(&key, source, settings.token_access(env, host))
        }
    }
}

/// The cached answer for `host`, if the cache has a fresh one that was made
/// for the same mode and (for an environment key) the same key.
fn cached(cache: &Cache, env: &Env, host: IbmHost, mode: Mode, now: u64) -> Option<Answer> {
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

fn read(store: &Option<Box<dyn SecretStore>>, key: &str) -> Result<Option<Record>> {
    match store {
        Some(store) => store.get(key),
        None => Ok(None),
    }
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
    let record = Record {
        username: creds.username,
        secret: creds.secret,
        stored_at: now,
    };
    store::open_for_write(env)?.put(host.name(), &record)?;
    debug!("store", "{host}: stored a {} credential", record.username);
    if let Err(e) = cache::with_locked(&dirs.cache, now, |c| {
        c.invalidate(host.name(), host.is_global())
    }) {
        debug!("store", "{host}: could not update the token cache: {e:#}");
    }
    Ok(())
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
        let mine: Vec<String> = c
            .registry
            .iter()
            .filter(|(_, m)| m.host.as_deref() == Some(host.name()))
            .map(|(k, _)| k.clone())
            .collect();
        mine.into_iter()
            .filter_map(|k| c.registry.remove(&k).map(|m| (k, m)))
            .collect()
    })?;
    if minted.is_empty() {
        return Ok(());
    }
    // Keys that may have minted them: the erased record's, the global one, the environment's.
    let mut keys: Vec<Secret<String>> = Vec::new();
    keys.extend(
        record
            .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
            .map(|r| r.secret),
    );
    keys.extend(
        read(&store, GLOBAL_HOST)
            .ok()
            .flatten()
            .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
            .map(|r| r.secret),
    );
    keys.extend(env.api_key.as_ref().map(|k| k.key.clone()));
    let mut minting = Minting::new(env, host, now)?;
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

/// Minting for one host in one process: endpoints, and the HTTP client
/// built only when a request is actually made.
struct Minting<'a> {
    env: &'a Env,
    host: IbmHost,
    now: u64,
    dir: PathBuf,
    minter: Option<Minter>,
}

impl<'a> Minting<'a> {
    fn new(env: &'a Env, host: IbmHost, now: u64) -> Result<Minting<'a>> {
        Ok(Minting {
            env,
            host,
            now,
            dir: env.dirs()?.cache.clone(),
            minter: None,
        })
    }

    fn minter(&mut self) -> Result<&Minter> {
        if self.minter.is_none() {
            self.minter = Some(Minter::new()?);
        }
        Ok(self.minter.as_ref().expect("set above"))
    }

    /// IAM base: `IBMCLOUD_IAM_API_ENDPOINT`, else private IAM for a `private.` host, else public.
    fn iam_endpoint(&self) -> Result<Endpoint> {
        let url = match (&self.env.iam_endpoint, self.host.network()) {
            (Some(url), _) => url.as_str(),
            (None, Network::Private) => crate::mint::PRIVATE_IAM,
            (None, _) => crate::mint::DEFAULT_IAM,
        };
        Endpoint::parse_iam(url)
            .map_err(|e| anyhow!("{}: {e:#}", crate::env::IBMCLOUD_IAM_API_ENDPOINT))
    }

    /// Registry API base: `IBMCLOUD_CR_API_ENDPOINT`, else `https://<host>`.
    fn api_endpoint(&self) -> Result<Endpoint> {
        let url = match &self.env.cr_endpoint {
            // `ibmcloud cr api` prints the base with `/api`; the paths add it again.
            Some(url) => url
                .trim_end_matches('/')
                .trim_end_matches("/api")
                .to_string(),
            None => format!("https://{}", self.host.name()),
        };
        Endpoint::parse(&url)
            .map_err(|e| anyhow!("{}: {e:#}", crate::env::IBMCLOUD_CR_API_ENDPOINT))
    }

    /// `bearer` mode: one IAM access token per (IAM endpoint, key) serves every region.
    fn bearer(
        &mut self,
        key: &Secret<String>,
        source: KeySource,
        mode: Mode,
    ) -> Result<Answer, Error> {
        let iam = self.iam_endpoint()?;
        let fingerprint = cache::fingerprint(key);
        let tkey = format!("{}|{fingerprint}", iam.as_str());
        let (dir, now, host) = (self.dir.clone(), self.now, self.host);
        let token = cache::with_locked(&dir, now, |cache| -> Result<Secret<String>> {
            let minted = self.iam_token(cache, &iam, &tkey, key)?;
            let entry = HostEntry {
                source,
                fingerprint,
                mode,
                token: TokenRef::Iam(tkey.clone()),
            };
            cache.hosts.insert(host.name().to_string(), entry);
            Ok(minted.token)
        })??;
        Ok(Answer {
            username: BEARER.into(),
            secret: token,
        })
    }

    /// A fresh IAM access token for `key` from the cache (locked by the
    /// caller), else minted; a recent failure is answered without a request.
    fn iam_token(
        &mut self,
        cache: &mut Cache,
        iam: &Endpoint,
        tkey: &str,
        key: &Secret<String>,
    ) -> Result<Minted> {
        let (now, host) = (self.now, self.host);
        let held = cache.iam.get(tkey).cloned();
        let freshness = held.as_ref().map(|m| m.freshness(now));
        if freshness == Some(Freshness::Fresh) {
            debug!(
                "mint",
                "{host}: reusing the cached IAM access token for this key"
            );
            return Ok(held.expect("checked above"));
        }
        if let Some(failure) = cache.recent_failure(tkey, now) {
            debug!(
                "mint",
                "{host}: a mint failed within {}s; answering that failure",
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
            iam.as_str()
        );
        match self.minter()?.iam_token(iam, key) {
            Ok(t) => {
                let minted = Minted {
                    token: t.access_token,
                    minted_at: now,
                    expires_at: now + t.expires_in,
                    account: t.account,
                    id: None,
                    host: None,
                    iam: None,
                };
                debug!(
                    "mint",
                    "{host}: minted an IAM access token, expires in {}s", t.expires_in
                );
                cache.iam.insert(tkey.to_string(), minted.clone());
                cache.failures.remove(tkey);
                Ok(minted)
            }
            Err(e) => match held.filter(|m| m.freshness(now) == Freshness::ExpiringSoon) {
                Some(m) => {
                    debug!(
                        "mint",
                        "{host}: mint failed ({e:#}); the cached token is still valid for {}s",
                        m.expires_at - now
                    );
                    Ok(m)
                }
                None => {
                    cache.record_failure(tkey, &e, now);
                    Err(e)
                }
            },
        }
    }

    /// `registry-token` mode: a cached registry token, else one minted
    /// through the registry token API; a refused creation falls back to bearer.
    fn registry_token(
        &mut self,
        key: &Secret<String>,
        source: KeySource,
        access: TokenAccess,
    ) -> Result<Answer, Error> {
        let (iam, api) = (self.iam_endpoint()?, self.api_endpoint()?);
        let fingerprint = cache::fingerprint(key);
        let tkey = format!("{}|{fingerprint}", iam.as_str());
        let refusal_key = format!("{}|{fingerprint}", api.as_str());
        let rkey = format!("{refusal_key}|{}", access.as_str());
        let (dir, now, host) = (self.dir.clone(), self.now, self.host);
        let answer = cache::with_locked(&dir, now, |cache| -> Result<Answer> {
            let entry = |token| HostEntry {
                source: source.clone(),
                fingerprint: fingerprint.clone(),
                mode: Mode::RegistryToken,
                token,
            };
            let bearer = |cache: &mut Cache, token: Secret<String>| {
                cache
                    .hosts
                    .insert(host.name().to_string(), entry(TokenRef::Iam(tkey.clone())));
                Answer {
                    username: BEARER.into(),
                    secret: token,
                }
            };
            if cache
                .refused
                .get(&refusal_key)
                .is_some_and(|until| *until > now)
            {
                debug!(
                    "mint",
                    "{host}: {} refused registry tokens recently; answering bearer",
                    api.as_str()
                );
                let minted = self.iam_token(cache, &iam, &tkey, key)?;
                return Ok(bearer(cache, minted.token));
            }
            if let Some(m) = cache
                .registry
                .get(&rkey)
                .filter(|m| m.freshness(now) == Freshness::Fresh)
            {
                let token = m.token.clone();
                cache.hosts.insert(
                    host.name().to_string(),
                    entry(TokenRef::Registry(rkey.clone())),
                );
                return Ok(Answer {
                    username: TOKEN.into(),
                    secret: token,
                });
            }
            if let Some(failure) = cache.recent_failure(&rkey, now) {
                return Err(failure);
            }
            let iam_token = self.iam_token(cache, &iam, &tkey, key)?;
            let account = iam_token.account.clone().ok_or_else(|| {
                anyhow!("the IAM access token from {} names no account (account.bss), which the registry token API needs", iam.as_str())
            })?;
            let description = format!("docker-credential-ibmcr {host}");
            let write = access == TokenAccess::ReadWrite;
            debug!(
                "mint",
                "{host}: creating a {} registry token at {}",
                access.as_str(),
                api.as_str()
            );
            match self.minter()?.create_registry_token(
                &api,
                &iam_token.token,
                &account,
                &description,
                write,
            ) {
                Ok(Created::Token(t)) => {
                    let expires_at = t.expires_at.unwrap_or(now + cache::REFUSAL_TTL);
                    debug!(
                        "mint",
                        "{host}: created registry token {}, expires in {}s",
                        t.id,
                        expires_at.saturating_sub(now)
                    );
                    let minted = Minted {
                        token: t.token,
                        minted_at: now,
                        expires_at,
                        account: Some(account),
                        id: Some(t.id),
                        host: Some(host.name().to_string()),
                        iam: Some(tkey.clone()),
                    };
                    let token = minted.token.clone();
                    cache.registry.insert(rkey.clone(), minted);
                    cache.failures.remove(&rkey);
                    cache.hosts.insert(
                        host.name().to_string(),
                        entry(TokenRef::Registry(rkey.clone())),
                    );
                    Ok(Answer {
                        username: TOKEN.into(),
                        secret: token,
                    })
                }
                Ok(Created::Refused { reason, .. }) => {
                    cache
                        .refused
                        .insert(refusal_key.clone(), now + cache::REFUSAL_TTL);
                    log::say(&format!(
                        "docker-credential-ibmcr: registry token creation refused by {} ({reason}); answering an IAM access token (iambearer) instead",
                        api.as_str()
                    ));
                    Ok(bearer(cache, iam_token.token))
                }
                Err(e) => {
                    cache.record_failure(&rkey, &e, now);
                    Err(e)
                }
            }
        })??;
        Ok(answer)
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
            .filter(|m| m.freshness(self.now) != Freshness::Expired)
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
