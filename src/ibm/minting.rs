//! Minting for one host in one process: under the cache lock, re-check the
//! cache, mint from the identity source, remember the token (and a failure,
//! for 10 s, so waiters ask IAM once between them), and revoke registry
//! tokens on `erase`. Every source's tokens go through the same lock, cache,
//! margins and failure memory; only the request differs (`Minting::mint`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};

use crate::cache::{
    self, Cache, Epoch, Fingerprint, Freshness, HostEntry, IamKey, KeySource, Minted, TokenRef,
};
use crate::mint::{Created, Endpoint, IamToken, Minter};
use crate::protocol::Error;
use crate::registry::IbmHost;
use crate::secret::Secret;
use crate::settings::{Mode, TokenAccess};
use crate::{debug, jwt, log};

use super::chain;
use super::decide::{Answer, BEARER, TOKEN};
use super::source::{CrTokenFrom, Source};
use super::target::Target;

/// Longest IAM token lifetime believed (IBM's is at most 60 minutes): a
/// server's `expires_in` beyond it is capped, never overflowed.
const MAX_IAM_LIFETIME: u64 = 24 * 60 * 60;

/// The HTTP client built only when a request is actually made, and the
/// clock as it moves on while we wait.
pub struct Minting {
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
    /// Minting for `host` into the cache in `dir`; `epoch` is the host's
    /// cache epoch when its store was read.
    pub fn new(dir: PathBuf, host: IbmHost, now: u64, epoch: Epoch) -> Minting {
        Minting {
            host,
            start: now,
            started: Instant::now(),
            epoch,
            dir,
            minter: None,
        }
    }

    /// Unix seconds now: a mint or a lock wait can take many seconds.
    fn now(&self) -> u64 {
        self.start + self.started.elapsed().as_secs()
    }

    fn minter(&mut self) -> Result<&Minter> {
        match &mut self.minter {
            Some(minter) => Ok(minter),
            empty => Ok(empty.insert(Minter::new()?)),
        }
    }

    /// Remembers how the host is answered, unless a `store` or `erase` of it
    /// ran since this `get` read the store (its key may be gone).
    fn remember(&self, cache: &mut Cache, entry: HostEntry) {
        if !cache.remember(self.host.name(), self.epoch, entry) {
            debug!(
                "cache",
                "{}: its credentials changed meanwhile; not caching this answer for it", self.host
            );
        }
    }

    /// The answer in `mode` from `source`: a registry token in
    /// registry-token mode from an API key, else an IAM access token
    /// (`iambearer`). Remembered as the host's answer in `mode`, except for a
    /// kubelet request's service account token (it is the pod's, not the host's).
    pub fn answer(
        &mut self,
        mode: Mode,
        target: &Target,
        source: &Source,
    ) -> Result<Answer, Error> {
        let dir = self.dir.clone();
        let from = source.key_source();
        let entry = |token| HostEntry {
            source: from.clone(),
            fingerprint: target.iam.identity.fingerprint().clone(),
            mode,
            token,
        };
        let registry = mode == Mode::RegistryToken && from.is_api_key();
        let answer = cache::with_locked(&dir, self.now(), |cache| -> Result<Answer> {
            let registry_token = match registry {
                true => self.registry_token(cache, target, source)?,
                false => None,
            };
            let (username, token, expires_at, token_ref) = match registry_token {
                Some(m) => (
                    TOKEN,
                    m.token,
                    m.expires_at,
                    TokenRef::Registry(target.registry.clone()),
                ),
                None => {
                    let m = self.iam_token(cache, target, source)?;
                    (
                        BEARER,
                        m.token,
                        m.expires_at,
                        TokenRef::Iam(target.iam.clone()),
                    )
                }
            };
            if from != KeySource::ServiceAccount {
                self.remember(cache, entry(token_ref));
            }
            Ok(Answer::new(username, token, Some(expires_at)))
        })??;
        Ok(answer)
    }

    /// Mints an IAM access token from `source` now, whatever the cache
    /// holds, and caches it as [`Minting::answer`] would (`login` checks a
    /// key this way). A cached token it would replace is kept when the mint
    /// fails.
    pub fn verify(&mut self, target: &Target, source: &Source) -> Result<Minted> {
        let dir = self.dir.clone();
        cache::with_locked(&dir, self.now(), |cache| {
            let held = cache.take_iam(&target.iam);
            let minted = self.iam_token(cache, target, source);
            if let (Err(_), Some(held)) = (&minted, held) {
                cache.put_iam(target.iam.clone(), held);
            }
            minted
        })?
    }

    /// A fresh IAM access token from `source`, from the cache (locked by
    /// the caller), else minted. A failure of the last [`cache::FAILURE_TTL`]
    /// seconds is answered without a request; a token inside its refresh
    /// margin is answered while minting fails.
    fn iam_token(&mut self, cache: &mut Cache, target: &Target, source: &Source) -> Result<Minted> {
        let (now, host) = (self.now(), self.host);
        let held = cache.iam(&target.iam).cloned();
        let freshness = held.as_ref().map(|m| m.freshness(now));
        if let (Some(m), Some(Freshness::Fresh)) = (&held, freshness) {
            debug!(
                "mint",
                "{host}: reusing the cached IAM access token of {}",
                source.name()
            );
            return Ok(m.clone());
        }
        let still_valid = held.filter(|_| freshness == Some(Freshness::ExpiringSoon));
        if let Some(failure) = cache.recent_failure(&target.iam_mint(), now) {
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
        let iam = &target.endpoints.iam;
        debug!(
            "mint",
            "{host}: minting an IAM access token from {} at {} ({reason})",
            source.name(),
            iam.as_str()
        );
        match self.mint(target, source) {
            Ok((t, issued_at)) => {
                let now = self.now();
                // A session's own token counts its margin from when it was issued.
                let minted_at = issued_at.unwrap_or(now).min(now);
                // Local clock + expires_in, never past the token's own `exp`:
                // a clock that runs fast must not keep a dead token.
                let expires_at = (now + t.expires_in.min(MAX_IAM_LIFETIME))
                    .min(jwt::expiry(t.access_token.expose()).unwrap_or(u64::MAX));
                let minted = Minted {
                    token: t.access_token,
                    minted_at,
                    expires_at,
                    account: t.account,
                    id: None,
                    host: None,
                    iam: None,
                };
                if keep(host, "an IAM access token", minted_at, expires_at) {
                    cache.put_iam(target.iam.clone(), minted.clone());
                }
                Ok(minted)
            }
            Err(e) => {
                cache.record_failure(target.iam_mint(), &e, self.now());
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

    /// One request for an IAM access token from `source`, its errors one
    /// line that starts with the source's name. An `ibmcloud login` session
    /// whose own token is fresh needs no request: that token is the answer
    /// (and, inside its margin, the answer while the refresh fails).
    /// With the token, the time it was issued when it was not minted now
    /// (a session's own token: its margin counts from its `iat`).
    fn mint(&mut self, target: &Target, source: &Source) -> Result<(IamToken, Option<u64>)> {
        let iam = &target.endpoints.iam;
        let now = self.now();
        let minted = match source {
            Source::ApiKey { key, .. } => self.minter()?.iam_token(iam, key),
            Source::CrToken(c) => {
                let token = match &c.token {
                    CrTokenFrom::Value(token) => Ok(token.clone()),
                    CrTokenFrom::File(path) => chain::read_cr_token(path),
                };
                match token {
                    Ok(token) => self.minter()?.cr_token(iam, &token, &c.profile),
                    Err(e) => Err(e),
                }
            }
            Source::Vpc(v) => self.minter()?.vpc_token(&v.metadata, v.profile.as_ref()),
            Source::Session(s) => {
                let current = s.current(now);
                let adopt = |m: Minted| {
                    let token = IamToken {
                        expires_in: m.expires_at.saturating_sub(now),
                        access_token: m.token,
                        account: m.account,
                    };
                    Ok((token, Some(m.minted_at)))
                };
                if let Some(m) = current
                    .clone()
                    .filter(|m| m.freshness(now) == Freshness::Fresh)
                {
                    debug!(
                        "mint",
                        "{}: the session's own token is fresh; no request", self.host
                    );
                    return adopt(m);
                }
                match &s.refresh {
                    None => Err(anyhow!(
                        "its access token has expired and it holds no refresh token: run `ibmcloud login` again"
                    )),
                    Some(refresh) => match (self.minter()?.refresh(iam, refresh), current) {
                        (Err(e), Some(m)) => {
                            debug!(
                                "mint",
                                "{}: refreshing failed ({e:#}); the session's own token is valid for {}s more",
                                self.host,
                                m.expires_at.saturating_sub(now)
                            );
                            return adopt(m);
                        }
                        (refreshed, _) => refreshed,
                    },
                }
            }
        };
        minted
            .map(|t| (t, None))
            .map_err(|e| anyhow!("{}: {e:#}", source.name()))
    }

    /// An IAM access token from `source` for a kubelet request: from the
    /// cache, else minted, under the lock; nothing is remembered for a host.
    pub fn bearer(&mut self, target: &Target, source: &Source) -> Result<Minted, Error> {
        let dir = self.dir.clone();
        let minted = cache::with_locked(&dir, self.now(), |cache| {
            self.iam_token(cache, target, source)
        })??;
        Ok(minted)
    }

    /// A registry token from the cache, else created through the registry
    /// token API; `None` when creation is refused (now or within the last
    /// [`cache::REFUSAL_TTL`] seconds): bearer answers then.
    fn registry_token(
        &mut self,
        cache: &mut Cache,
        target: &Target,
        source: &Source,
    ) -> Result<Option<Minted>> {
        let (now, host) = (self.now(), self.host);
        if cache.refused(&target.registry.refusal(), now) {
            let api = target.endpoints.api.as_str();
            debug!(
                "mint",
                "{host}: {api} refused registry tokens recently; answering bearer"
            );
            return Ok(None);
        }
        let held = cache.registry(&target.registry).cloned();
        let freshness = held.as_ref().map(|m| m.freshness(now));
        if let (Some(m), Some(Freshness::Fresh)) = (&held, freshness) {
            return Ok(Some(m.clone()));
        }
        let still_valid = held.filter(|_| freshness == Some(Freshness::ExpiringSoon));
        match self.create_registry_token(cache, target, source, now) {
            Err(e) => match still_valid {
                Some(m) => {
                    debug!("mint", "{host}: re-minting failed ({e:#}); the cached registry token is valid for {}s more", m.expires_at.saturating_sub(now));
                    Ok(Some(m))
                }
                None => Err(e),
            },
            created => created,
        }
    }

    /// Creates a registry token and caches it (`Some`), or records a refusal
    /// and says so once on stderr (`None`).
    fn create_registry_token(
        &mut self,
        cache: &mut Cache,
        target: &Target,
        source: &Source,
        now: u64,
    ) -> Result<Option<Minted>> {
        let host = self.host;
        if let Some(failure) = cache.recent_failure(&target.registry_mint(), now) {
            return Err(failure);
        }
        let iam_token = self.iam_token(cache, target, source)?;
        let account = iam_token.account.clone().ok_or_else(|| {
            anyhow!("the IAM access token from {} names no account (account.bss), which the registry token API needs", target.endpoints.iam.as_str())
        })?;
        let description = format!("docker-credential-ibmcr {host}");
        let write = target.registry.access == TokenAccess::ReadWrite;
        let api = &target.endpoints.api;
        debug!(
            "mint",
            "{host}: creating a registry token at {} (write={write})",
            api.as_str()
        );
        let created = self.minter()?.create_registry_token(
            api,
            &iam_token.token,
            &account,
            &description,
            write,
        );
        match created {
            Ok(Created::Token(t)) => {
                let minted_at = self.now();
                let expires_at = t.expires_at.unwrap_or(minted_at + cache::REFUSAL_TTL);
                debug!("mint", "{host}: created registry token {}", t.id);
                let minted = Minted {
                    token: t.token,
                    minted_at,
                    expires_at,
                    account: Some(account),
                    id: Some(t.id),
                    host: Some(host.name().to_string()),
                    iam: Some(target.iam.clone()),
                };
                if keep(host, "a registry token", minted_at, expires_at) {
                    cache.put_registry(target.registry.clone(), minted.clone());
                }
                Ok(Some(minted))
            }
            Ok(Created::Refused { status, reason }) => {
                debug!("mint", "{host}: registry token creation answered {status}");
                cache.refuse(target.registry.refusal(), self.now() + cache::REFUSAL_TTL);
                log::say(&format!(
                    "docker-credential-ibmcr: registry token creation refused by {} ({reason}); answering an IAM access token (iambearer) instead",
                    api.as_str()
                ));
                Ok(None)
            }
            Err(e) => {
                cache.record_failure(target.registry_mint(), &e, self.now());
                Err(e)
            }
        }
    }

    /// Deletes a minted registry token at its registry (`api`), with an
    /// access token from the cache or minted from whichever of `keys`
    /// minted it.
    pub fn revoke(&mut self, token: &Minted, api: &str, keys: &[Secret<String>]) -> Result<()> {
        let id = token
            .id
            .as_deref()
            .ok_or_else(|| anyhow!("no token id recorded"))?;
        let iam_key: &IamKey = token
            .iam
            .as_ref()
            .ok_or_else(|| anyhow!("no IAM endpoint recorded"))?;
        let api = Endpoint::parse(api)?;
        let cache = Cache::load(&self.dir)?;
        let held = cache
            .iam(iam_key)
            .filter(|m| m.freshness(self.now()) != Freshness::Expired);
        let (access, account) = match held {
            Some(m) => (m.token.clone(), m.account.clone()),
            None => {
                let key = keys
                    .iter()
                    .find(|k| &Fingerprint::of(k) == iam_key.identity.fingerprint())
                    .ok_or_else(|| anyhow!("the API key that minted it is no longer known"))?;
                let iam = Endpoint::parse_iam(&iam_key.endpoint)?;
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

/// True when a token just minted is worth caching: it expires after it was
/// minted by this clock. One that does not (the clock runs fast, or the
/// server's reply is stale) is answered once and never cached.
fn keep(host: IbmHost, what: &str, minted_at: u64, expires_at: u64) -> bool {
    match expires_at.checked_sub(minted_at).filter(|&left| left > 0) {
        Some(left) => {
            debug!("mint", "{host}: minted {what}, expires in {left}s");
            true
        }
        None => {
            debug!(
                "mint",
                "{host}: minted {what} that has already expired by this clock; not caching it"
            );
            false
        }
    }
}
