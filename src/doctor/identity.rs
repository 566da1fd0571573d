//! The checks of what answers a host: `store`, `identity`, `cache`, `clock`
//! and `mint`. `ibm::explain` names the identity by the code a `get` runs;
//! a secret is used only to look up and mint its token, never shown.

use super::files::ENTITLED_REGISTRY;
use super::{human, Check};
use crate::cache::CLOCK_TOLERANCE;
use crate::ibm::{self, Cached, Explained, Origin};
use crate::protocol::NAME;
use crate::registry::IbmHost;
use crate::store::{self, SecretStore};
use crate::Env;

/// What the checks found, and what the `cp.icr.io` check needs to know.
pub struct Found {
    /// `store`, `identity`, `cache`, `clock`, `mint`, in that order.
    pub checks: Vec<Check>,
    /// Whether the store holds a credential for `cp.icr.io`; `None` when it
    /// could not be read.
    pub entitled_stored: Option<bool>,
}

/// The five checks, in order.
pub fn checks(env: &Env, host: IbmHost, now: u64) -> Found {
    let (store_check, store, entitled_stored) = store_check(env, host);
    let mut checks = vec![store_check];
    let explained = match store {
        Ok(store) => ibm::explain(env, host, store.as_deref(), now),
        Err(()) => Err(anyhow::anyhow!("the store does not answer (above)")),
    };
    let explained = match explained {
        Ok(explained) => explained,
        Err(e) => {
            checks.push(Check::problem("identity", format!("{e:#}"), None));
            checks.push(clock_check(env, host, now, true));
            return Found {
                checks,
                entitled_stored,
            };
        }
    };
    checks.push(identity_check(&explained, now));
    let cached = explained.cached(env, now);
    checks.push(cache_check(&cached));
    // A pull calls IAM only to mint: with nothing to mint, or a fresh token
    // cached, an IAM out of reach does not stop it.
    let needs_iam =
        matches!(explained.origin, Origin::Minted(_)) && !matches!(cached, Ok(Cached::Fresh(_)));
    checks.push(clock_check(env, host, now, needs_iam));
    checks.push(mint_check(env, &explained, &cached, now));
    Found {
        checks,
        entitled_stored,
    }
}

/// The store a `get` would read, opened and asked for `host` (so a keyring
/// that does not answer, or a file others can read, is found here); whether
/// it holds a credential for `cp.icr.io`.
#[allow(clippy::type_complexity)] // three results of one look at the store
fn store_check(
    env: &Env,
    host: IbmHost,
) -> (
    Check,
    Result<Option<Box<dyn SecretStore>>, ()>,
    Option<bool>,
) {
    let store = match store::open_for_read(env) {
        Ok(Some(store)) => store,
        Ok(None) => {
            let detail = "nothing stored yet (the first `login` or `store` picks the keyring, else a 0600 file)";
            return (
                Check::ok("store", detail.to_string()),
                Ok(None),
                Some(false),
            );
        }
        Err(e) => {
            return (
                Check::problem("store", format!("{e:#}"), None),
                Err(()),
                None,
            )
        }
    };
    let name = store.name();
    let asked = store
        .answers()
        .and_then(|()| store.get(host.name()))
        .and_then(|_| store.get(ENTITLED_REGISTRY));
    match asked {
        Ok(entitled) => {
            let detail = match (name, env.dirs()) {
                ("file", Ok(dirs)) => {
                    format!("the file store in {} answers", dirs.data.display())
                }
                _ => format!("the {name} store answers"),
            };
            (
                Check::ok("store", detail),
                Ok(Some(store)),
                Some(entitled.is_some()),
            )
        }
        Err(e) => {
            let fix = (name == "keyring").then(|| {
                "unlock the keyring or start the Secret Service; or set IBMCR_STORE=file and log in again".to_string()
            });
            let detail = format!("the {name} store does not answer: {e:#}");
            (Check::problem("store", detail, fix), Err(()), None)
        }
    }
}

/// The `identity` check: which source answers the host, and the chain.
fn identity_check(explained: &Explained, now: u64) -> Check {
    let host = explained.host;
    let chain = explained.chain.join("; ");
    let mode = explained.mode.as_str();
    match &explained.origin {
        Origin::Nothing => Check::problem(
            "identity",
            format!("nothing answers {host} ({chain})"),
            Some(format!(
                "give it an API key: `{NAME} login < api-key-file` (or set IBMCLOUD_API_KEY)"
            )),
        ),
        Origin::Minted(source) => Check::ok(
            "identity",
            format!(
                "{host} is answered with tokens minted from {source}, in {mode} mode ({chain})"
            ),
        ),
        Origin::ApiKey(source) => Check::ok(
            "identity",
            format!("{host} is answered with {source} itself, in apikey mode ({chain})"),
        ),
        Origin::Stored {
            username,
            expires_at,
        } => {
            let valid = match expires_at {
                Some(exp) => format!(", valid {} more", human(exp.saturating_sub(now))),
                None => String::new(),
            };
            Check::ok(
                "identity",
                format!(
                    "{host} is answered with its stored `{}` credential as it is{valid} ({chain})",
                    crate::log::quoted(username)
                ),
            )
        }
    }
}

/// The `cache` check: the token a `get` would answer from the cache.
fn cache_check(cached: &anyhow::Result<Cached>) -> Check {
    let detail = match cached {
        Err(e) => return Check::problem("cache", format!("{e:#}"), None),
        Ok(Cached::NotUsed) => "not used: nothing is minted for this host".to_string(),
        Ok(Cached::Fresh(left)) => format!(
            "a token valid {} more: a pull gets it without a call",
            human(*left)
        ),
        Ok(Cached::ExpiringSoon(left)) => format!(
            "the cached token expires in {}: the next pull mints a new one",
            human(*left)
        ),
        Ok(Cached::Missing(None)) => "no valid token cached: the next pull mints one".to_string(),
        Ok(Cached::Missing(Some(failure))) => {
            format!("no valid token cached; the last mint, seconds ago, failed: {failure}")
        }
    };
    Check::ok("cache", detail)
}

/// The `clock` check: this clock against the `Date` of IAM's reply; IAM
/// out of reach is a problem only when a pull `needs_iam` now.
fn clock_check(env: &Env, host: IbmHost, now: u64, needs_iam: bool) -> Check {
    match ibm::iam_clock(env, host) {
        Ok((iam, date)) => {
            let skew = now.abs_diff(date);
            if skew <= CLOCK_TOLERANCE {
                return Check::ok(
                    "clock",
                    format!(
                        "this clock agrees with IAM's ({iam}) within {}",
                        human(skew)
                    ),
                );
            }
            let side = if now > date { "ahead of" } else { "behind" };
            Check::problem(
                "clock",
                format!(
                    "this clock is {} {side} IAM's ({iam}): tokens look expired or not yet valid, and none is cached",
                    human(skew)
                ),
                Some("set the clock right (`timedatectl set-ntp true`)".to_string()),
            )
        }
        Err(e) if !needs_iam => Check::ok(
            "clock",
            format!("could not ask IAM for its time ({e:#}); a pull needs no IAM call now"),
        ),
        Err(e) => Check::problem(
            "clock",
            format!("could not ask IAM for its time: {e:#}"),
            Some(NETWORK_FIX.to_string()),
        ),
    }
}

const NETWORK_FIX: &str = "check the network, HTTPS_PROXY/NO_PROXY and IBMCLOUD_IAM_API_ENDPOINT";

/// The `mint` check: one real mint, as a pull's `get` makes it, when no
/// valid token is cached.
fn mint_check(
    env: &Env,
    explained: &Explained,
    cached: &anyhow::Result<Cached>,
    now: u64,
) -> Check {
    let host = explained.host;
    match (&explained.origin, cached) {
        (Origin::Nothing, _) => {
            return Check::problem(
                "mint",
                format!("nothing to mint from for {host}"),
                Some(format!("`{NAME} login < api-key-file`")),
            )
        }
        (Origin::Stored { .. } | Origin::ApiKey(_), _) => {
            return Check::ok(
                "mint",
                "not needed: a pull gets the credential as it is".to_string(),
            )
        }
        (_, Ok(Cached::Fresh(_))) => {
            return Check::ok(
                "mint",
                "not needed now: a valid token is cached, so a pull gets credentials".to_string(),
            )
        }
        _ => {}
    }
    match explained.mint(env, now) {
        Ok(Some(minted)) => {
            let account = match &minted.account {
                Some(account) => format!(" of account {account}"),
                None => String::new(),
            };
            Check::ok(
                "mint",
                format!(
                    "minted a `{}` token{account}, valid {}, now cached: a pull gets credentials",
                    minted.username,
                    human(minted.expires_in)
                ),
            )
        }
        Ok(None) => Check::ok("mint", "not needed".to_string()),
        Err(e) => {
            let detail = e.to_string();
            let refused =
                detail.contains("BXNIM") || detail.contains(" 400 ") || detail.contains(" 401 ");
            let fix = match refused {
                true => format!(
                    "IAM refused it: create an API key (IBM Cloud console: Manage, Access (IAM), API keys), then `{NAME} login < api-key-file`"
                ),
                false => NETWORK_FIX.to_string(),
            };
            Check::problem("mint", detail, Some(fix))
        }
    }
}
