//! What `login` and `doctor` ask of the IBM path, by the code a `get` runs:
//! where a host's answer comes from ([`explain`], through `decide`, named
//! without the secret), the token cache's state for it, one mint as a `get`
//! makes it, an API key checked with one IAM mint, and IAM's clock.

use anyhow::Result;

use crate::cache::{Cache, Epoch, Freshness, KeySource};
use crate::mint::Minter;
use crate::protocol::Error;
use crate::registry::{IbmHost, GLOBAL_HOST};
use crate::secret::Secret;
use crate::settings::{IdentityChoice, Mode, Settings, TokenAccess};
use crate::store::{Record, SecretStore};
use crate::{log, Env};

use super::chain;
use super::decide::{self, Decision, Kind};
use super::minting::Minting;
use super::source::Source;
use super::target::{Endpoints, Target};

/// What answers a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Its stored credential, answered as it is (`token` until its `exp`).
    Stored {
        /// Its username.
        username: String,
        /// Its JWT `exp`, when it has one.
        expires_at: Option<u64>,
    },
    /// An API key answered as it is (`apikey` mode): the source's name.
    ApiKey(String),
    /// A token minted from this source (its name).
    Minted(String),
    /// Nothing: a `get` answers not found.
    Nothing,
}

/// Where a `get` for a host takes its answer from, without a secret.
pub struct Explained {
    /// The host.
    pub host: IbmHost,
    /// Its mode.
    pub mode: Mode,
    /// What answers it.
    pub origin: Origin,
    /// Every place a `get` looks, in order, with what it found there:
    /// `us.icr.io: nothing stored`, `icr.io: an API key`, ….
    pub chain: Vec<String>,
    access: TokenAccess,
    endpoints: Result<Endpoints>,
    epoch: Epoch,
    decision: Decision,
}

/// The token cache's state for what answers a host.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    /// Nothing is minted: the answer is stored, or there is none.
    NotUsed,
    /// A token a `get` answers without a call; it expires in this many seconds.
    Fresh(u64),
    /// A token inside its refresh margin: the next `get` mints (and answers
    /// it if that fails). It expires in this many seconds.
    ExpiringSoon(u64),
    /// No token a `get` could answer; the last mint failed this way within
    /// the last few seconds, if it did.
    Missing(Option<String>),
}

/// A token minted as a `get` mints it.
#[derive(Debug)]
pub struct Checked {
    /// `iambearer` or `token`.
    pub username: String,
    /// The account the token names (`account.bss`), if it names one.
    pub account: Option<String>,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Where `host`'s answer comes from: the settings, what `store` holds for
/// it and for `icr.io`, the chain's first source when a `get` would look
/// there, and `decide` over them, exactly as a `get` that finds nothing in
/// the token cache.
pub fn explain(
    env: &Env,
    host: IbmHost,
    store: Option<&dyn SecretStore>,
    now: u64,
) -> Result<Explained> {
    let dirs = env.dirs()?;
    let settings = Settings::load(&dirs.config)?;
    let mode = settings.mode(env, host)?;
    let access = settings.token_access(env, host)?;
    let choice = settings.identity(env)?;
    let epoch = Cache::load(&dirs.cache)?.epoch(host.name());
    let read = |key: &str| -> Result<Option<Record>> {
        match store {
            Some(store) => store.get(key),
            None => Ok(None),
        }
    };
    let stored = read(host.name())?;
    let mut chain = vec![format!("{host}: {}", holds(stored.as_ref(), now))];
    // Only where a `get` looks: icr.io's key when the host's own record
    // neither answers nor mints.
    let global = match decide::needs_global(host, choice, stored.as_ref(), now) {
        true => {
            let global = read(GLOBAL_HOST)?;
            chain.push(format!("{GLOBAL_HOST}: {}", holds(global.as_ref(), now)));
            global
        }
        false => None,
    };
    let first = match decide::needs_chain(host, choice, stored.as_ref(), global.as_ref(), now) {
        true => {
            let first = chain::first(env, choice)?;
            chain.push(match &first {
                Some(source) => format!("then: {}", source.name()),
                None => format!("then: nothing ({})", nothing_found(choice)),
            });
            first
        }
        false => None,
    };
    if choice != IdentityChoice::Auto {
        chain.push(format!("IBMCR_IDENTITY={}", choice.as_str()));
    }
    // The key `apikey` mode answers as it is, first wins (decide's order).
    let is_key = |r: &Option<Record>| {
        r.as_ref()
            .is_some_and(|r| Kind::of(&r.username) == Kind::ApiKey)
    };
    let key_from = match (is_key(&stored), is_key(&global), &first) {
        (true, _, _) => KeySource::Host,
        (false, true, _) => KeySource::Global,
        (false, false, Some(source)) => source.key_source(),
        (false, false, None) => KeySource::Host,
    };
    let decision = decide::decide(host, mode, choice, (stored, global), first, now);
    let origin = match &decision {
        Decision::Answer(a) if a.username == decide::APIKEY => {
            Origin::ApiKey(source_name(host, &key_from, None))
        }
        Decision::Answer(a) => Origin::Stored {
            username: a.username.clone(),
            expires_at: a.expires_at,
        },
        Decision::Mint(source) => {
            Origin::Minted(source_name(host, &source.key_source(), Some(source)))
        }
        Decision::NotFound => Origin::Nothing,
    };
    Ok(Explained {
        host,
        mode,
        origin,
        chain,
        access,
        endpoints: Endpoints::for_host(env, host),
        epoch,
        decision,
    })
}

/// The sources a `get` looks for after the stored keys, for "found none".
fn nothing_found(choice: IdentityChoice) -> &'static str {
    match choice {
        IdentityChoice::Auto => {
            "no IBMCLOUD_API_KEY or IC_API_KEY, no IBMCLOUD_CR_TOKEN, no projected token, no ibmcloud login session"
        }
        IdentityChoice::ApiKey => "no IBMCLOUD_API_KEY or IC_API_KEY",
        IdentityChoice::CrToken => "no IBMCLOUD_CR_TOKEN, no projected token",
        IdentityChoice::Vpc => "no VPC instance identity",
        IdentityChoice::Ibmcloud => "no ibmcloud login session",
    }
}

/// A source as `doctor` names it: the stored keys by their host.
fn source_name(host: IbmHost, from: &KeySource, source: Option<&Source>) -> String {
    match (from, source) {
        (KeySource::Host, _) => format!("the API key stored for {host}"),
        (KeySource::Global, _) => format!("the API key stored for {GLOBAL_HOST}"),
        (KeySource::Env(var), _) => format!("the API key in {var}"),
        (_, Some(source)) => source.name(),
        (_, None) => "nothing".to_string(),
    }
}

/// What a stored record is, in a few words, never its secret.
fn holds(record: Option<&Record>, now: u64) -> String {
    let Some(r) = record else {
        return "nothing stored".to_string();
    };
    let name = log::quoted(&r.username);
    match Kind::of(&r.username) {
        Kind::ApiKey => "an API key".to_string(),
        Kind::Expiring if decide::expired(r, now) => format!("a `{name}` credential, expired"),
        Kind::Expiring => format!("a `{name}` credential"),
        Kind::AsStored => format!("a `{name}` credential, answered as stored"),
    }
}

impl Explained {
    /// What a `get` mints from, with the cache key of its tokens; `None`
    /// when nothing is minted.
    fn target(&self) -> Option<Result<(Target, Mode, &Source)>> {
        let Decision::Mint(source) = &self.decision else {
            return None;
        };
        let endpoints = match &self.endpoints {
            Ok(e) => e,
            Err(e) => return Some(Err(anyhow::anyhow!("{e:#}"))),
        };
        // Only an API key mints registry tokens; every other source, bearer.
        let mode = match source.key_source().is_api_key() {
            true => self.mode,
            false => Mode::Bearer,
        };
        Some(source.endpoints(endpoints).map(|endpoints| {
            let target = Target::new(&endpoints, source.identity(), self.access);
            (target, mode, source)
        }))
    }

    /// The token cache's state for what answers the host at `now`.
    pub fn cached(&self, env: &Env, now: u64) -> Result<Cached> {
        let Some(target) = self.target() else {
            return Ok(Cached::NotUsed);
        };
        let (target, mode, _) = target?;
        let cache = Cache::load(&env.dirs()?.cache)?;
        let token = target.expected(mode, &cache, now);
        if let Some(m) = cache.token(&token) {
            match m.freshness(now) {
                Freshness::Fresh => return Ok(Cached::Fresh(m.expires_at - now)),
                Freshness::ExpiringSoon => return Ok(Cached::ExpiringSoon(m.expires_at - now)),
                Freshness::Expired => {}
            }
        }
        let failed = [target.iam_mint(), target.registry_mint()]
            .iter()
            .find_map(|key| cache.recent_failure(key, now));
        Ok(Cached::Missing(
            failed.map(|e| log::one_line(&format!("{e:#}"))),
        ))
    }

    /// The answer a `get` would give now, minted (or reused) as a `get`
    /// mints it, under the cache lock; `None` when nothing is minted.
    pub fn mint(&self, env: &Env, now: u64) -> Result<Option<Checked>, Error> {
        let Some(target) = self.target() else {
            return Ok(None);
        };
        let (target, _, source) = target?;
        let dir = env.dirs()?.cache.clone();
        let answer =
            Minting::new(dir, self.host, now, self.epoch).answer(self.mode, &target, source)?;
        Ok(Some(Checked {
            account: crate::mint::account_of(answer.secret.expose()),
            expires_in: answer.expires_at.unwrap_or(now).saturating_sub(now),
            username: answer.username,
        }))
    }
}

/// Mints an IAM access token from `key` at `host`'s IAM endpoint now,
/// whatever the cache holds, and caches it as a `get` would (`login`
/// checks a key this way). The key goes to IAM and nowhere else.
pub fn verify_key(env: &Env, host: IbmHost, key: &Secret<String>, now: u64) -> Result<Checked> {
    let dirs = env.dirs()?;
    let source = Source::ApiKey {
        key: key.clone(),
        from: KeySource::Host,
    };
    // The access matters only to registry tokens, which are not minted here.
    let target = Target::new(
        &Endpoints::for_host(env, host)?,
        source.identity(),
        TokenAccess::ReadWrite,
    );
    let minted = Minting::new(dirs.cache.clone(), host, now, (0, 0))
        .verify(&target, &source)
        .map_err(|e| {
            // Its errors start with the source's name, "the API key stored
            // for the host": this one is not stored (yet).
            let text = format!("{e:#}");
            let named = format!("{}: ", source.name());
            anyhow::anyhow!("{}", text.strip_prefix(&named).unwrap_or(&text))
        })?;
    Ok(Checked {
        username: decide::BEARER.to_string(),
        account: minted.account,
        expires_in: minted.expires_at.saturating_sub(now),
    })
}

/// IAM's clock, for `host`: its endpoint and the `Date` of its answer to a
/// request that carries no secret, in Unix seconds.
pub fn iam_clock(env: &Env, host: IbmHost) -> Result<(String, u64)> {
    let iam = Endpoints::for_host(env, host)?.iam;
    let date = Minter::new()?.server_date(&iam)?;
    Ok((iam.as_str().to_string(), date))
}
