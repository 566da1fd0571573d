//! What a `get` for an IBM host answers (../shared/decisions.md §4,
//! ../shared/fleet.md §5), as pure functions of what was read: the token
//! cache, the stored records, the first source of the credential chain, the
//! mode, the identity restriction and the clock. No file, keyring or network.

use crate::cache::{Cache, Freshness, KeySource, TokenRef};
use crate::debug;
use crate::jwt;
use crate::registry::{IbmHost, GLOBAL_HOST};
use crate::secret::Secret;
use crate::settings::{IdentityChoice, Mode, TokenAccess};
use crate::store::Record;

use super::source::Source;
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
    /// When the secret expires (Unix seconds), when that is known: a minted
    /// token's expiry, a stored JWT's `exp`. The kubelet plugin caches
    /// within it.
    pub expires_at: Option<u64>,
}

impl Answer {
    pub(super) fn new(username: &str, secret: Secret<String>, expires_at: Option<u64>) -> Answer {
        Answer {
            username: username.to_string(),
            secret,
            expires_at,
        }
    }

    fn of(record: Record) -> Answer {
        Answer {
            expires_at: jwt::expiry(record.secret.expose()),
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
    /// Answer a token minted (or reused) from this source: in the mode for
    /// an API key, `iambearer` for every other source.
    Mint(Source),
    /// Nothing stored for the host or for `icr.io`, and no source in the chain.
    NotFound,
}

/// The cached answer for `host`, if the cache has a fresh one made for the
/// same mode, endpoints and token access, from a source that would still be
/// chosen: a stored key the identity restriction allows, or the chain's
/// first source now (`current`, asked only for an entry that came from the
/// chain: it may read the `ibmcloud` session file).
#[allow(clippy::too_many_arguments)] // one pure decision over everything that was read
pub fn cached(
    cache: &Cache,
    host: IbmHost,
    mode: Mode,
    access: TokenAccess,
    endpoints: &Endpoints,
    choice: IdentityChoice,
    current: impl FnOnce() -> Option<Source>,
    now: u64,
) -> Option<Answer> {
    let entry = cache.host(host.name())?;
    if entry.mode != mode {
        return None;
    }
    let identity = match &entry.token {
        TokenRef::Iam(k) => k.identity.clone(),
        TokenRef::Registry(k) => k.identity.clone(),
    };
    let endpoints = if entry.source.is_stored() {
        if !choice.allows_api_keys() {
            return None;
        }
        endpoints.clone()
    } else {
        let source = current()?;
        if source.key_source() != entry.source || source.identity() != identity {
            return None;
        }
        source.endpoints(endpoints).ok()?
    };
    let target = Target::new(&endpoints, identity, access);
    let token_mode = match entry.source.is_api_key() {
        true => mode,
        false => Mode::Bearer,
    };
    if target.expected(token_mode, cache, now) != entry.token {
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
    Some(Answer::new(
        username,
        minted.token.clone(),
        Some(minted.expires_at),
    ))
}

/// True when the answer may need the key stored for `icr.io`: API keys may
/// mint, and the host's own record neither answers nor holds a key.
pub fn needs_global(
    host: IbmHost,
    choice: IdentityChoice,
    stored: Option<&Record>,
    now: u64,
) -> bool {
    !host.is_global()
        && choice.allows_api_keys()
        && match stored {
            None => true,
            Some(r) => Kind::of(&r.username) == Kind::Expiring && expired(r, now),
        }
}

/// True when the answer needs the credential chain: nothing stored answers
/// by itself, and no stored API key may mint.
pub fn needs_chain(
    host: IbmHost,
    choice: IdentityChoice,
    stored: Option<&Record>,
    global: Option<&Record>,
    now: u64,
) -> bool {
    let keys = choice.allows_api_keys();
    let answers = stored.is_some_and(|r| match Kind::of(&r.username) {
        Kind::ApiKey => keys,
        Kind::AsStored => true,
        Kind::Expiring => !expired(r, now),
    });
    let global_key =
        keys && !host.is_global() && global.is_some_and(|g| Kind::of(&g.username) == Kind::ApiKey);
    !answers && !global_key
}

/// The answer from what is stored for the host and for `icr.io`, and the
/// chain's first source (`chain`): the table of decisions §4, followed by
/// fleet.md §5. `choice` says which sources may mint; a stored credential
/// that answers by itself answers whatever it is.
pub fn decide(
    host: IbmHost,
    mode: Mode,
    choice: IdentityChoice,
    (stored, global): (Option<Record>, Option<Record>),
    chain: Option<Source>,
    now: u64,
) -> Decision {
    let keys = choice.allows_api_keys();
    let mut source = None;
    if let Some(record) = stored {
        match Kind::of(&record.username) {
            Kind::ApiKey if keys => {
                source = Some(Source::ApiKey {
                    key: record.secret,
                    from: KeySource::Host,
                })
            }
            Kind::ApiKey => debug!(
                "get",
                "{host}: IBMCR_IDENTITY={} leaves the stored API key unused",
                choice.as_str()
            ),
            Kind::AsStored => return Decision::Answer(Answer::of(record)),
            Kind::Expiring if expired(&record, now) => debug!(
                "get",
                "{host}: the stored {} credential has expired", record.username
            ),
            Kind::Expiring => return Decision::Answer(Answer::of(record)),
        }
    }
    if source.is_none() && keys && !host.is_global() {
        source = api_key(global).map(|key| Source::ApiKey {
            key,
            from: KeySource::Global,
        });
    }
    let Some(source) = source.or(chain) else {
        debug!(
            "get",
            "{host}: nothing stored for it or for {GLOBAL_HOST}, and no identity source found (identity {})",
            choice.as_str()
        );
        return Decision::NotFound;
    };
    debug!(
        "get",
        "{host}: region {}, mode {}, source {}",
        host.region(),
        mode.as_str(),
        source.name()
    );
    match (mode, source) {
        (Mode::ApiKey, Source::ApiKey { key, .. }) => {
            Decision::Answer(Answer::new(APIKEY, key, None))
        }
        (_, source) => Decision::Mint(source),
    }
}

/// The API key a record holds, if it holds one.
pub fn api_key(record: Option<Record>) -> Option<Secret<String>> {
    record
        .filter(|r| Kind::of(&r.username) == Kind::ApiKey)
        .map(|r| r.secret)
}

/// True for a JWT whose `exp` has passed (an opaque token never expires here).
pub fn expired(record: &Record, now: u64) -> bool {
    jwt::expiry(record.secret.expose()).is_some_and(|exp| exp <= now)
}

#[cfg(test)]
mod tests {
    //! The decision table of ../shared/decisions.md §4 and the chain of
    //! ../shared/fleet.md §5, with no filesystem, keyring or network: every
    //! input is a value.
    use super::*;
    use crate::cache::{Fingerprint, HostEntry, Minted};
    use crate::ibm::source::{CrToken, CrTokenFrom, Session, Vpc};
    use crate::ibm::testing::{jwt, NOW};
    use crate::mint::{Endpoint, TrustedProfile};

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

    fn env_key(key: &str) -> Source {
        Source::ApiKey {
            key: Secret::new(key.into()),
            from: KeySource::Env("IC_API_KEY".into()),
        }
    }

    fn cr_token(profile: &str) -> Source {
        Source::CrToken(CrToken {
            token: CrTokenFrom::File("/run/t".into()),
            profile: TrustedProfile::parse(profile).unwrap(),
            from: KeySource::CrToken,
        })
    }

    fn vpc() -> Source {
        Source::Vpc(Vpc {
            metadata: Endpoint::parse_metadata("http://169.254.169.254").unwrap(),
            profile: None,
        })
    }

    fn session() -> Source {
        Source::Session(Session {
            file: "/h/.bluemix/config.json".into(),
            access: None,
            refresh: Some(Secret::new("r".into())),
            iam: None,
        })
    }

    /// (username, secret) of an answer; `mint` and the key or the source's
    /// kind for a mint; `not found`.
    fn outcome(d: Decision) -> (String, String) {
        match d {
            Decision::Answer(a) => (a.username, a.secret.expose().clone()),
            Decision::Mint(Source::ApiKey { key, .. }) => ("mint".into(), key.expose().clone()),
            Decision::Mint(source) => {
                let kind = serde_json::to_value(source.key_source()).unwrap();
                ("mint".into(), kind.as_str().unwrap().to_string())
            }
            Decision::NotFound => ("not found".into(), String::new()),
        }
    }

    /// Host, its record, icr.io's record, the chain's first source, the
    /// mode, the identity restriction → the outcome.
    type Row<'a> = (
        &'a str,
        Option<Record>,
        Option<Record>,
        Option<Source>,
        Mode,
        IdentityChoice,
        (&'a str, &'a str),
    );

    #[test]
    fn the_decision_table() {
        use IdentityChoice::{ApiKey as Keys, Auto, CrToken as Cr, Ibmcloud, Vpc as OnlyVpc};
        let (live, dead) = (jwt(NOW + 10), jwt(NOW - 10));
        let env = || Some(env_key("from-env"));
        #[rustfmt::skip]
        let table: &[Row] = &[
            // a key for the host: mint in bearer and registry-token, the key itself in apikey
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::Bearer, Auto, ("mint", "own")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::RegistryToken, Auto, ("mint", "own")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::ApiKey, Auto, ("iamapikey", "own")),
            // a live token or bearer: answered in every mode
            ("us.icr.io", Some(record("token", &live)), None, env(), Mode::Bearer, Auto, ("token", &live)),
            ("us.icr.io", Some(record("iambearer", &live)), None, env(), Mode::ApiKey, Auto, ("iambearer", &live)),
            // expired: a key takes over, else not found
            ("us.icr.io", Some(record("token", &dead)), None, env(), Mode::Bearer, Auto, ("mint", "from-env")),
            ("us.icr.io", Some(record("token", &dead)), Some(record("iamapikey", "global")), None, Mode::ApiKey, Auto, ("iamapikey", "global")),
            ("us.icr.io", Some(record("iambearer", &dead)), None, None, Mode::Bearer, Auto, ("not found", "")),
            // anything else: as stored
            ("us.icr.io", Some(record("iamrefresh", "r")), None, env(), Mode::Bearer, Auto, ("iamrefresh", "r")),
            ("us.icr.io", Some(record("iam-Profile-1", "k")), None, None, Mode::RegistryToken, Auto, ("iam-Profile-1", "k")),
            ("us.icr.io", Some(record("someone", "s")), None, None, Mode::Bearer, Auto, ("someone", "s")),
            // key sources: host, then icr.io's key, then the chain (the environment's key first)
            ("us.icr.io", None, Some(record("iamapikey", "global")), env(), Mode::ApiKey, Auto, ("iamapikey", "global")),
            ("us.icr.io", None, Some(record("token", &live)), env(), Mode::ApiKey, Auto, ("iamapikey", "from-env")),
            ("us.icr.io", None, None, env(), Mode::Bearer, Auto, ("mint", "from-env")),
            ("us.icr.io", None, None, None, Mode::Bearer, Auto, ("not found", "")),
            // icr.io itself never borrows icr.io's key twice
            ("icr.io", None, Some(record("iamapikey", "global")), None, Mode::ApiKey, Auto, ("not found", "")),
            // issue 11: the chain's other sources mint iambearer in every mode
            ("us.icr.io", None, None, Some(cr_token("Profile-1")), Mode::Bearer, Auto, ("mint", "cr-token")),
            ("us.icr.io", None, None, Some(cr_token("ci-pull")), Mode::ApiKey, Auto, ("mint", "cr-token")),
            ("us.icr.io", None, None, Some(session()), Mode::RegistryToken, Auto, ("mint", "ibmcloud")),
            ("de.icr.io", Some(record("token", &dead)), None, Some(vpc()), Mode::Bearer, OnlyVpc, ("mint", "vpc")),
            // a stored key still comes first in auto…
            ("us.icr.io", Some(record("iamapikey", "own")), None, Some(cr_token("Profile-1")), Mode::Bearer, Auto, ("mint", "own")),
            ("us.icr.io", None, Some(record("iamapikey", "global")), Some(session()), Mode::Bearer, Auto, ("mint", "global")),
            // …and is left unused when IBMCR_IDENTITY names another source
            ("us.icr.io", Some(record("iamapikey", "own")), None, Some(cr_token("Profile-1")), Mode::Bearer, Cr, ("mint", "cr-token")),
            ("us.icr.io", None, Some(record("iamapikey", "global")), Some(session()), Mode::ApiKey, Ibmcloud, ("mint", "ibmcloud")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::ApiKey, OnlyVpc, ("not found", "")),
            ("us.icr.io", Some(record("iamapikey", "own")), None, None, Mode::ApiKey, Keys, ("iamapikey", "own")),
            // what answers by itself answers under any restriction
            ("us.icr.io", Some(record("token", &live)), None, Some(vpc()), Mode::Bearer, OnlyVpc, ("token", &live)),
            ("us.icr.io", Some(record("iamrefresh", "r")), None, None, Mode::Bearer, Cr, ("iamrefresh", "r")),
        ];
        for (name, stored, global, chain, mode, choice, want) in table.iter().cloned() {
            let got = outcome(decide(
                host(name),
                mode,
                choice,
                (stored.clone(), global),
                chain,
                NOW,
            ));
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                want,
                "{name} stored {:?} in {mode:?}, {choice:?}",
                stored.map(|r| r.username)
            );
        }
    }

    #[test]
    fn the_global_record_and_the_chain_are_read_only_when_they_can_matter() {
        let (us, auto) = (host("us.icr.io"), IdentityChoice::Auto);
        assert!(needs_global(us, auto, None, NOW));
        assert!(needs_global(
            us,
            auto,
            Some(&record("token", &jwt(NOW - 1))),
            NOW
        ));
        assert!(!needs_global(
            us,
            auto,
            Some(&record("token", &jwt(NOW + 1))),
            NOW
        ));
        assert!(!needs_global(
            us,
            auto,
            Some(&record("iamapikey", "k")),
            NOW
        ));
        assert!(!needs_global(us, auto, Some(&record("someone", "s")), NOW));
        assert!(!needs_global(host("icr.io"), auto, None, NOW));
        assert!(!needs_global(us, IdentityChoice::CrToken, None, NOW));
        let key = record("iamapikey", "k");
        assert!(needs_chain(us, auto, None, None, NOW));
        assert!(!needs_chain(us, auto, Some(&key), None, NOW));
        assert!(!needs_chain(us, auto, None, Some(&key), NOW));
        assert!(needs_chain(host("icr.io"), auto, None, Some(&key), NOW));
        assert!(!needs_chain(
            us,
            auto,
            Some(&record("token", &jwt(NOW + 1))),
            None,
            NOW
        ));
        assert!(needs_chain(
            us,
            auto,
            Some(&record("token", &jwt(NOW - 1))),
            None,
            NOW
        ));
        assert!(needs_chain(
            us,
            IdentityChoice::Vpc,
            Some(&key),
            Some(&key),
            NOW
        ));
    }

    fn minted(expires_at: u64) -> Minted {
        Minted {
            token: Secret::new("cached-token".into()),
            minted_at: NOW - 60,
            expires_at,
            account: None,
            id: None,
            host: None,
            iam: None,
        }
    }

    #[test]
    fn a_cached_token_answers_only_for_the_same_mode_endpoints_and_key() {
        let us = host("us.icr.io");
        let endpoints = |iam: &str| Endpoints {
            iam: crate::mint::Endpoint::parse_iam(iam).unwrap(),
            api: crate::mint::Endpoint::parse("https://us.icr.io").unwrap(),
            iam_from_env: false,
        };
        let here = endpoints("https://iam.cloud.ibm.com");
        let env = env_key("from-env");
        let identity = env.identity();
        let target = Target::new(&here, identity.clone(), TokenAccess::ReadWrite);
        let mut cache = Cache::default();
        cache.put_iam(target.iam.clone(), minted(NOW + 3540));
        let entry = HostEntry {
            source: KeySource::Env("IC_API_KEY".into()),
            fingerprint: identity.fingerprint().clone(),
            mode: Mode::Bearer,
            token: TokenRef::Iam(target.iam.clone()),
        };
        assert!(cache.remember("us.icr.io", cache.epoch("us.icr.io"), entry));
        let rw = TokenAccess::ReadWrite;
        let auto = IdentityChoice::Auto;
        let answer = |cache: &Cache, mode, endpoints: &Endpoints, key: Option<Source>| {
            cached(cache, us, mode, rw, endpoints, auto, || key, NOW)
                .map(|a| outcome(Decision::Answer(a)))
        };
        let hit = Some(("iambearer".to_string(), "cached-token".to_string()));
        assert_eq!(answer(&cache, Mode::Bearer, &here, Some(env.clone())), hit);
        assert_eq!(
            answer(&cache, Mode::ApiKey, &here, Some(env.clone())),
            None,
            "another mode"
        );
        assert_eq!(
            answer(&cache, Mode::RegistryToken, &here, Some(env.clone())),
            None
        );
        let elsewhere = endpoints("https://private.iam.cloud.ibm.com");
        assert_eq!(
            answer(&cache, Mode::Bearer, &elsewhere, Some(env.clone())),
            None,
            "another IAM"
        );
        assert_eq!(
            answer(&cache, Mode::Bearer, &here, None),
            None,
            "the variable is gone"
        );
        assert_eq!(
            answer(&cache, Mode::Bearer, &here, Some(env_key("another"))),
            None,
            "another key"
        );
        assert_eq!(
            answer(&cache, Mode::Bearer, &here, Some(cr_token("Profile-1"))),
            None,
            "another source came first"
        );
        assert_eq!(
            cached(
                &cache,
                host("de.icr.io"),
                Mode::Bearer,
                rw,
                &here,
                auto,
                || Some(env.clone()),
                NOW
            )
            .map(|_| ()),
            None
        );
        // Inside the refresh margin: not answered from the cache (a mint refreshes it).
        cache.put_iam(target.iam.clone(), minted(NOW + 5));
        assert_eq!(answer(&cache, Mode::Bearer, &here, Some(env.clone())), None);
    }

    #[test]
    fn a_token_from_the_chain_answers_while_the_chain_still_starts_there() {
        let us = host("us.icr.io");
        let here = Endpoints {
            iam: Endpoint::parse_iam("https://iam.cloud.ibm.com").unwrap(),
            api: Endpoint::parse("https://us.icr.io").unwrap(),
            iam_from_env: false,
        };
        let rw = TokenAccess::ReadWrite;
        for (source, mode) in [
            (cr_token("Profile-1"), Mode::Bearer),
            (cr_token("Profile-1"), Mode::RegistryToken),
            (vpc(), Mode::ApiKey),
            (session(), Mode::Bearer),
        ] {
            let endpoints = source.endpoints(&here).unwrap();
            let target = Target::new(&endpoints, source.identity(), rw);
            let mut cache = Cache::default();
            cache.put_iam(target.iam.clone(), minted(NOW + 3540));
            let entry = HostEntry {
                source: source.key_source(),
                fingerprint: source.identity().fingerprint().clone(),
                mode,
                token: TokenRef::Iam(target.iam.clone()),
            };
            assert!(cache.remember("us.icr.io", (0, 0), entry));
            let kind = format!("{:?}", source.key_source());
            let same = source.clone();
            let lookup = |current: Option<Source>| {
                cached(
                    &cache,
                    us,
                    mode,
                    rw,
                    &here,
                    IdentityChoice::Auto,
                    || current,
                    NOW,
                )
            };
            let hit = lookup(Some(same));
            assert_eq!(hit.map(|a| a.username), Some("iambearer".into()), "{kind}");
            let gone = lookup(None);
            assert!(gone.is_none(), "{kind}: the source is gone");
            let other = lookup(Some(cr_token("Profile-2")));
            assert!(other.is_none(), "{kind}: another source is first now");
        }
        // A stored key's entry does not answer once IBMCR_IDENTITY excludes keys.
        let key = Source::ApiKey {
            key: Secret::new("k".into()),
            from: KeySource::Host,
        };
        let target = Target::new(&here, key.identity(), rw);
        let mut cache = Cache::default();
        cache.put_iam(target.iam.clone(), minted(NOW + 3540));
        let entry = HostEntry {
            source: KeySource::Host,
            fingerprint: Fingerprint::of(&Secret::new("k".into())),
            mode: Mode::Bearer,
            token: TokenRef::Iam(target.iam),
        };
        assert!(cache.remember("us.icr.io", (0, 0), entry));
        let never = || -> Option<Source> { panic!("a stored key's entry never asks the chain") };
        let lookup = |choice| cached(&cache, us, Mode::Bearer, rw, &here, choice, never, NOW);
        assert!(lookup(IdentityChoice::Auto).is_some());
        assert!(lookup(IdentityChoice::CrToken).is_none());
    }
}
