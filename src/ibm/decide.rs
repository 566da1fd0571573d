//! What a `get` for an IBM host answers (../shared/decisions.md §4), as pure
//! functions of what was read: the token cache, the stored records, the
//! environment's key, the mode and the clock. No file, keyring or network.

use crate::cache::{Cache, Fingerprint, Freshness, KeySource, TokenRef};
use crate::debug;
use crate::env::EnvApiKey;
use crate::jwt;
use crate::registry::{IbmHost, GLOBAL_HOST};
use crate::secret::Secret;
use crate::settings::{Mode, TokenAccess};
use crate::store::Record;

use super::target::{Endpoints, Target};

/// Username of an IAM API key.
pub const APIKEY: &str = "iamapikey";
/// Username of an IAM access token.
pub const BEARER: &str = "iambearer";
/// Username of a registry token.
pub const TOKEN: &str = "token";

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

impl Answer {
    fn new(username: &str, secret: Secret<String>) -> Answer {
        Answer {
            username: username.to_string(),
            secret,
        }
    }

    fn of(record: Record) -> Answer {
        Answer {
            username: record.username,
            secret: record.secret,
        }
    }
}

/// What to do after the store was read.
#[derive(Debug)]
pub enum Decision {
    /// Answer this; no network.
    Answer(Answer),
    /// Answer a token minted (or reused) from this API key, in the mode.
    Mint {
        /// The key.
        key: Secret<String>,
        /// Where it came from.
        source: KeySource,
    },
    /// Nothing stored for the host, for `icr.io` or in the environment.
    NotFound,
}

/// The cached answer for `host`, if the cache has a fresh one made for the
/// same mode, endpoints and token access and (for an environment key) the
/// same key.
pub fn cached(
    cache: &Cache,
    host: IbmHost,
    mode: Mode,
    access: TokenAccess,
    endpoints: &Endpoints,
    env_key: Option<&EnvApiKey>,
    now: u64,
) -> Option<Answer> {
    let entry = cache.host(host.name())?;
    if entry.mode != mode {
        return None;
    }
    if let KeySource::Env(var) = &entry.source {
        let key = env_key?;
        if key.var != var || Fingerprint::of(&key.key) != entry.fingerprint {
            return None;
        }
    }
    let identity = match &entry.token {
        TokenRef::Iam(k) => k.identity.clone(),
        TokenRef::Registry(k) => k.identity.clone(),
    };
    let target = Target::new(endpoints, identity, access);
    if target.expected(mode, cache, now) != entry.token {
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
    Some(Answer::new(username, minted.token.clone()))
}

/// True when the answer may need the key stored for `icr.io`: the host's own
/// record neither answers nor holds a key.
pub fn needs_global(host: IbmHost, stored: Option<&Record>, now: u64) -> bool {
    !host.is_global()
        && match stored {
            None => true,
            Some(r) => Kind::of(&r.username) == Kind::Expiring && expired(r, now),
        }
}

/// The answer from what is stored for the host and for `icr.io`, and the
/// environment's key: the table of decisions §4.
pub fn decide(
    host: IbmHost,
    mode: Mode,
    stored: Option<Record>,
    global: Option<Record>,
    env_key: Option<&EnvApiKey>,
    now: u64,
) -> Decision {
    let mut key = None;
    if let Some(record) = stored {
        match Kind::of(&record.username) {
            Kind::ApiKey => key = Some((record.secret, KeySource::Host)),
            Kind::AsStored => return Decision::Answer(Answer::of(record)),
            Kind::Expiring if expired(&record, now) => debug!(
                "get",
                "{host}: the stored {} credential has expired", record.username
            ),
            Kind::Expiring => return Decision::Answer(Answer::of(record)),
        }
    }
    if key.is_none() && !host.is_global() {
        key = api_key(global).map(|k| (k, KeySource::Global));
    }
    if key.is_none() {
        key = env_key.map(|k| (k.key.clone(), KeySource::Env(k.var.to_string())));
    }
    let Some((key, source)) = key else {
        debug!(
            "get",
            "{host}: nothing stored for it or for {GLOBAL_HOST}, and no API key in the environment"
        );
        return Decision::NotFound;
    };
    debug!(
        "get",
        "{host}: region {}, mode {}, key from {source:?}",
        host.region(),
        mode.as_str()
    );
    match mode {
        Mode::ApiKey => Decision::Answer(Answer::new(APIKEY, key)),
        Mode::Bearer | Mode::RegistryToken => Decision::Mint { key, source },
    }
}

/// The API key a record holds, if it holds one.
pub fn api_key(record: Option<Record>) -> Option<Secret<String>> {
    record
        .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
        .map(|r| r.secret)
}

/// True for a JWT whose `exp` has passed (an opaque token never expires here).
fn expired(record: &Record, now: u64) -> bool {
    jwt::expiry(record.secret.expose()).is_some_and(|exp| exp <= now)
}

#[cfg(test)]
mod tests {
    //! The decision table of ../shared/decisions.md §4, with no filesystem,
    //! keyring or network: every input is a value.
    use super::*;
    use crate::cache::{HostEntry, Identity, Minted};
    use crate::ibm::testing::{jwt, NOW};

    fn record(username: &str, secret: &str) -> Record {
        Record {
            username: username.into(),
            secret: Secret::new(secret.into()),
            stored_at: 0,
        }
    }

    fn host(name: &str) -> IbmHost {
        IbmHost::lookup(name).unwrap()
    }

    fn env_key(key: &str) -> EnvApiKey {
        EnvApiKey {
            var: "IC_API_KEY",
            key: Secret::new(key.into()),
        }
    }

    /// (username, secret) of an answer; `mint:<key>` for a mint; `not found`.
    fn outcome(d: Decision) -> (String, String) {
        match d {
            Decision::Answer(a) => (a.username, a.secret.expose().clone()),
            Decision::Mint { key, .. } => ("mint".into(), key.expose().clone()),
            Decision::NotFound => ("not found".into(), String::new()),
        }
    }

    /// Host, its record, icr.io's record, the environment's key, the mode → the outcome.
    type Row<'a> = (
        &'a str,
        Option<Record>,
        Option<Record>,
        Option<&'a EnvApiKey>,
        Mode,
        (&'a str, &'a str),
    );

    #[test]
    fn the_decision_table() {
        let (live, dead) = (jwt(NOW + 10), jwt(NOW - 10));
        let env = env_key("from-env");
        #[rustfmt::skip]
        let table: &[Row] = &[
            // a key for the host: mint in bearer and registry-token, the key itself in apikey
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::Bearer, ("mint", "own")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::RegistryToken, ("mint", "own")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::ApiKey, ("iamapikey", "own")),
            // a live token or bearer: answered in every mode
            ("us.icr.io", Some(record("token", &live)), None, Some(&env), Mode::Bearer, ("token", &live)),
            ("us.icr.io", Some(record("iambearer", &live)), None, Some(&env), Mode::ApiKey, ("iambearer", &live)),
            // expired: a key takes over, else not found
            ("us.icr.io", Some(record("token", &dead)), None, Some(&env), Mode::Bearer, ("mint", "from-env")),
            ("us.icr.io", Some(record("token", &dead)), Some(record("iamapikey", "global")), None, Mode::ApiKey, ("iamapikey", "global")),
            ("us.icr.io", Some(record("iambearer", &dead)), None, None, Mode::Bearer, ("not found", "")),
            // anything else: as stored
            ("us.icr.io", Some(record("iamrefresh", "r")), None, Some(&env), Mode::Bearer, ("iamrefresh", "r")),
            ("us.icr.io", Some(record("iam-Profile-1", "k")), None, None, Mode::RegistryToken, ("iam-Profile-1", "k")),
            ("us.icr.io", Some(record("someone", "s")), None, None, Mode::Bearer, ("someone", "s")),
            // key sources: host, then icr.io's key, then the environment
            ("us.icr.io", None, Some(record("iamapikey", "global")), Some(&env), Mode::ApiKey, ("iamapikey", "global")),
            ("us.icr.io", None, Some(record("token", &live)), Some(&env), Mode::ApiKey, ("iamapikey", "from-env")),
            ("us.icr.io", None, None, Some(&env), Mode::Bearer, ("mint", "from-env")),
            ("us.icr.io", None, None, None, Mode::Bearer, ("not found", "")),
            // icr.io itself never borrows icr.io's key twice
            ("icr.io", None, Some(record("iamapikey", "global")), None, Mode::ApiKey, ("not found", "")),
        ];
        for (name, stored, global, env_key, mode, want) in table.iter().cloned() {
            let got = outcome(decide(
                host(name),
                mode,
                stored.clone(),
                global,
                env_key,
                NOW,
            ));
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                want,
                "{name} stored {:?} in {mode:?}",
                stored.map(|r| r.username)
            );
        }
    }

    #[test]
    fn the_global_record_is_read_only_when_it_can_matter() {
        let us = host("us.icr.io");
        assert!(needs_global(us, None, NOW));
        assert!(needs_global(us, Some(&record("token", &jwt(NOW - 1))), NOW));
        assert!(!needs_global(
            us,
            Some(&record("token", &jwt(NOW + 1))),
            NOW
        ));
        assert!(!needs_global(us, Some(&record("iamapikey", "k")), NOW));
        assert!(!needs_global(us, Some(&record("someone", "s")), NOW));
        assert!(!needs_global(host("icr.io"), None, NOW));
    }

    #[test]
    fn a_cached_token_answers_only_for_the_same_mode_endpoints_and_key() {
        let us = host("us.icr.io");
        let endpoints = |iam: &str| Endpoints {
            iam: crate::mint::Endpoint::parse_iam(iam).unwrap(),
            api: crate::mint::Endpoint::parse("https://us.icr.io").unwrap(),
        };
        let here = endpoints("https://iam.cloud.ibm.com");
        let env = env_key("from-env");
        let identity = Identity::ApiKey(Fingerprint::of(&env.key));
        let target = Target::new(&here, identity.clone(), TokenAccess::ReadWrite);
        let mut cache = Cache::default();
        let minted = |expires_at| Minted {
            token: Secret::new("cached-token".into()),
            minted_at: NOW - 60,
            expires_at,
            account: None,
            id: None,
            host: None,
            iam: None,
        };
        cache.put_iam(target.iam.clone(), minted(NOW + 3540));
        let entry = HostEntry {
            source: KeySource::Env("IC_API_KEY".into()),
            fingerprint: identity.fingerprint().clone(),
            mode: Mode::Bearer,
            token: TokenRef::Iam(target.iam.clone()),
        };
        assert!(cache.remember("us.icr.io", cache.epoch("us.icr.io"), entry));
        let rw = TokenAccess::ReadWrite;
        let answer = |cache: &Cache, mode, endpoints: &Endpoints, key: Option<&EnvApiKey>| {
            cached(cache, us, mode, rw, endpoints, key, NOW).map(|a| outcome(Decision::Answer(a)))
        };
        let hit = Some(("iambearer".to_string(), "cached-token".to_string()));
        assert_eq!(answer(&cache, Mode::Bearer, &here, Some(&env)), hit);
        assert_eq!(
            answer(&cache, Mode::ApiKey, &here, Some(&env)),
            None,
            "another mode"
        );
        assert_eq!(answer(&cache, Mode::RegistryToken, &here, Some(&env)), None);
        let elsewhere = endpoints("https://private.iam.cloud.ibm.com");
        assert_eq!(
            answer(&cache, Mode::Bearer, &elsewhere, Some(&env)),
            None,
            "another IAM"
        );
        assert_eq!(
            answer(&cache, Mode::Bearer, &here, None),
            None,
            "the variable is gone"
        );
        let other = env_key("another");
        assert_eq!(
            answer(&cache, Mode::Bearer, &here, Some(&other)),
            None,
            "another key"
        );
        assert_eq!(
            cached(
                &cache,
                host("de.icr.io"),
                Mode::Bearer,
                rw,
                &here,
                Some(&env),
                NOW
            )
            .map(|_| ()),
            None
        );
        // Inside the refresh margin: not answered from the cache (a mint refreshes it).
        cache.put_iam(target.iam.clone(), minted(NOW + 5));
        assert_eq!(answer(&cache, Mode::Bearer, &here, Some(&env)), None);
    }
}
