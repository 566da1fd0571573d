//! What `get`, `store` and `erase` do for an IBM host: read the settings,
//! the token cache and (only on a miss) the store and the credential chain,
//! let [`decide`] choose the answer, and mint under the cache lock
//! ([`minting`]) when it says so.
//!
//! ```text
//! get: settings ─▶ cache ─▶ fresh? answer            (no keyring, no network)
//!                    └▶ store (host, then icr.io)
//!                    └▶ chain: env key, CR token, projected token, [VPC], session
//!                         └▶ decide: as stored | api key | mint | not found
//!                              └▶ minting: lock, re-check, mint, remember
//! ```

mod chain;
mod decide;
mod explain;
mod minting;
mod source;
mod target;

use anyhow::Result;

use crate::cache::{self, Cache, Minted, RegistryKey};
use crate::mint::APIKEY_GRANT;
use crate::protocol::{Credentials, Error};
use crate::registry::{IbmHost, GLOBAL_HOST};
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::{self, Record, SecretStore};
use crate::{debug, jwt, log, Env};

pub use chain::PROJECTED_TOKEN_PATHS;
pub use decide::{Answer, APIKEY};
use decide::{Decision, Kind, BEARER};
pub use explain::{explain, iam_clock, verify_key, Cached, Explained, Origin};
use minting::Minting;
pub use source::{CrToken, CrTokenFrom, Source};
use target::{Endpoints, Target};

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
    let choice = settings.identity(env)?;
    // A bad endpoint matters only when a mint needs it.
    let endpoints = Endpoints::for_host(env, host);

    let cache = Cache::load(&dirs.cache)?;
    if let Ok(endpoints) = &endpoints {
        let current = || chain::first(env, choice).ok().flatten();
        let cached = decide::cached(&cache, host, mode, access, endpoints, choice, current, now);
        if let Some(answer) = cached {
            let left = answer.expires_at.unwrap_or(now).saturating_sub(now);
            debug!(
                "get",
                "{host}: answered from the token cache (valid {left}s more)"
            );
            return Ok(answer);
        }
    }
    let epoch = cache.epoch(host.name());

    let store = open_store()?;
    let stored = read(&store, host.name())?;
    let global = match decide::needs_global(host, choice, stored.as_ref(), now) {
        true => read(&store, GLOBAL_HOST)?,
        false => None,
    };
    let chain = match decide::needs_chain(host, choice, stored.as_ref(), global.as_ref(), now) {
        true => chain::first(env, choice)?,
        false => None,
    };
    match decide::decide(host, mode, choice, (stored, global), chain, now) {
        Decision::Answer(answer) => Ok(answer),
        Decision::NotFound => Err(Error::NotFound),
        Decision::Mint(source) => {
            let endpoints = source.endpoints(&endpoints?)?;
            let target = Target::new(&endpoints, source.identity(), access);
            let mut minting = Minting::new(dirs.cache.clone(), host, now, epoch);
            minting.answer(mode, &target, &source)
        }
    }
}

/// An IAM access token for `host` from `source` (a kubelet request's
/// service account token): from the token cache, else minted under its
/// lock, with the same margins and failure memory as `get`; nothing is
/// remembered for the host (the source is the pod's, not the host's).
pub fn bearer(env: &Env, host: IbmHost, now: u64, source: &Source) -> Result<Answer, Error> {
    let dirs = env.dirs()?;
    let settings = Settings::load(&dirs.config)?;
    let access = settings.token_access(env, host)?;
    let endpoints = source.endpoints(&Endpoints::for_host(env, host)?)?;
    let target = Target::new(&endpoints, source.identity(), access);
    let mut minting = Minting::new(dirs.cache.clone(), host, now, (0, 0));
    let minted = minting.bearer(&target, source)?;
    Ok(Answer::new(BEARER, minted.token, Some(minted.expires_at)))
}

fn read(store: &Option<Box<dyn SecretStore + '_>>, key: &str) -> Result<Option<Record>> {
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
    // A token minted from the previous credential must not keep answering:
    // forget it first, surely, or change nothing.
    let forget = |c: &mut Cache| c.invalidate(host.name(), host.is_global());
    cache::change_surely(&dirs.cache, now, forget)?;
    store.put(host.name(), &record)?;
    debug!("store", "{host}: stored a {} credential", record.username);
    // Again, for a `get` that read the old credential meanwhile.
    cache::with_locked(&dirs.cache, now, forget)?;
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
    // Forget its tokens first, surely, or erase nothing: a logout that leaves
    // a token answering would be a logout in name only.
    let minted = cache::change_surely(&dirs.cache, now, |c| {
        c.invalidate(host.name(), host.is_global());
        c.take_registry_tokens(host.name())
    })?;
    let removed = match &store {
        Some(store) => store.remove(host.name()),
        None => Ok(false),
    };
    if let Ok(true) = removed {
        debug!("erase", "{host}: removed the stored credential");
    }
    // Again, for a `get` that read the old credential meanwhile.
    cache::with_locked(&dirs.cache, now, |c| {
        c.invalidate(host.name(), host.is_global())
    })?;
    revoke(env, host, now, (&store, record), minted);
    removed?;
    Ok(())
}

/// Revokes the registry tokens minted for `host` at their registries, best
/// effort: a failure is one line on stderr (the local copies are gone).
/// `stored` is the store and the host's erased record: their keys may have
/// minted the tokens.
fn revoke(
    env: &Env,
    host: IbmHost,
    now: u64,
    (store, record): (&Option<Box<dyn SecretStore + '_>>, Option<Record>),
    minted: Vec<(RegistryKey, Minted)>,
) {
    if minted.is_empty() {
        return;
    }
    // Keys that may have minted them: the erased record's, the global one, the environment's.
    let mut keys: Vec<Secret<String>> = Vec::new();
    keys.extend(decide::api_key(record));
    keys.extend(decide::api_key(read(store, GLOBAL_HOST).ok().flatten()));
    keys.extend(env.api_key.as_ref().map(|k| k.key.clone()));
    let Ok(dirs) = env.dirs() else { return };
    let mut minting = Minting::new(dirs.cache.clone(), host, now, (0, 0));
    for (rkey, token) in minted {
        let (id, api) = (token.id.clone().unwrap_or_default(), rkey.api);
        match minting.revoke(&token, &api, &keys) {
            Ok(()) => debug!("erase", "{host}: revoked registry token {id} at {api}"),
            Err(e) => log::say(&format!(
                "docker-credential-ibmcr: could not revoke registry token {id} at {api}: {e:#}; removed the local copy"
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Values the IBM tests share.

    /// The tests' clock.
    pub const NOW: u64 = 1_800_000_000;

    /// An unsigned JWT with these claims (the helper never checks signatures).
    pub fn jwt_with(claims: serde_json::Value) -> String {
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

    /// An unsigned JWT that expires at `exp`.
    pub fn jwt(exp: u64) -> String {
        jwt_with(serde_json::json!({ "exp": exp }))
    }
}

#[cfg(test)]
mod tests {
    //! The decision table of ../shared/decisions.md §4 above an in-memory
    //! store, with a fixed clock; nothing here may touch the network (the
    //! endpoints point at a closed port, so a mint would fail the test).
    use super::testing::{jwt, jwt_with, NOW};
    use super::*;
    use crate::cache::{HostEntry, KeySource, Minted, TokenRef};
    use crate::settings::{Mode, TokenAccess};
    use crate::store::memory::MemoryStore;
    use std::cell::Cell;
    use std::ffi::OsString;

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
        // The extras come first: the first match wins, so they override the defaults.
        let mut extras: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        extras.append(&mut vars);
        let vars = extras;
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
        let host = IbmHost::lookup("us.icr.io").unwrap();
        let identity =
            crate::cache::Identity::ApiKey(crate::cache::Fingerprint::of(&Secret::new("k".into())));
        let endpoints = Endpoints::for_host(&env, host).unwrap();
        let target = Target::new(&endpoints, identity.clone(), TokenAccess::ReadWrite);
        let mut cache = Cache::default();
        cache.put_iam(
            target.iam.clone(),
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
            fingerprint: identity.fingerprint().clone(),
            mode: Mode::Bearer,
            token: TokenRef::Iam(target.iam),
        };
        assert!(cache.remember("us.icr.io", cache.epoch("us.icr.io"), entry));
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
        let cache = Cache::load(&env.dirs().unwrap().cache).unwrap();
        assert!(decide::cached(
            &cache,
            host,
            Mode::ApiKey,
            TokenAccess::ReadWrite,
            &Endpoints::for_host(&apikey, host).unwrap(),
            crate::settings::IdentityChoice::Auto,
            || None,
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

    #[test]
    #[allow(clippy::disallowed_methods)] // the fake stamps tokens with the real clock
    fn a_projected_token_at_the_sdk_paths_mints_once_when_a_profile_is_named() {
        // issue 11.1: the chain's third source, read at IBM's SDK paths (here, test paths)
        use fake_ibm::{FakeIbm, TrustedProfile};
        let fake = FakeIbm::start(fake_ibm::Config::default());
        let account = "0123456789abcdef0123456789abcdef";
        let sa = "system:serviceaccount:ci:builder";
        let profile = TrustedProfile::new("ci-pull", account, &[sa]);
        fake.add_profile(profile.clone());
        let dir = std::env::temp_dir().join(format!("ibmcr-projected-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("sa-token");
        std::fs::write(&token, fake.cr_token("https://k8s", sa, 3600)).unwrap();
        let url = fake.url();
        let vars = [
            ("IBMCLOUD_IAM_API_ENDPOINT", url.as_str()),
            ("IBMCLOUD_CR_PROFILE", profile.id.as_str()),
        ];
        let mut env = env("projected", &vars);
        env.projected_token_paths = vec![dir.join("vault-token"), token.clone()];
        let store = MemoryStore::default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let answer = |env: &Env, host: &str| {
            let store = &store;
            super::get(
                env,
                IbmHost::lookup(host).unwrap(),
                now,
                Box::new(move || Ok(Some(Box::new(store)))),
            )
        };
        let first = answer(&env, "us.icr.io").unwrap();
        assert_eq!(first.username, "iambearer");
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].form_param("grant_type").as_deref(),
            Some("urn:ibm:params:oauth:grant-type:cr-token")
        );
        assert_eq!(
            requests[0].form_param("profile_id").as_deref(),
            Some(profile.id.as_str())
        );
        // Rotated by the kubelet: the cache still answers, no second mint.
        std::fs::write(&token, fake.cr_token("https://k8s", sa, 3600)).unwrap();
        let again = answer(&env, "de.icr.io").unwrap();
        assert_eq!(again.secret, first.secret);
        assert_eq!(fake.requests().len(), 1);
        let cache = Cache::load(&env.dirs().unwrap().cache).unwrap();
        let entry = cache.host("us.icr.io").unwrap();
        assert_eq!(entry.source, crate::cache::KeySource::Projected);
        // No profile named: the projected token is not a source.
        let bare = self::env(
            "projected-2",
            &[("IBMCLOUD_IAM_API_ENDPOINT", url.as_str())],
        );
        let mut bare = bare;
        bare.projected_token_paths = vec![token];
        assert!(matches!(answer(&bare, "us.icr.io"), Err(Error::NotFound)));
        assert_eq!(fake.requests().len(), 1);
    }
}
