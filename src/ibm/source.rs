//! What can mint an IAM access token for an IBM host (../shared/fleet.md §5):
//! an API key, a compute-resource (CR) token with a trusted profile, the VPC
//! instance identity, an `ibmcloud login` session. Values only: the edges
//! that find them are in `chain.rs`, the calls that mint in `minting.rs`.
//!
//! Each source names itself in errors and in the token cache. The cache key
//! is a fingerprint of what stays the same while the secret rotates:
//!
//! | source | identity in cache keys | fingerprint of |
//! |---|---|---|
//! | API key | `<fp>` | the key |
//! | CR token (value, service account token) | `cr:<fp>` | profile + the token's `iss` and `sub` |
//! | CR token (file, projected path) | `cr:<fp>` | profile + the file's path |
//! | VPC instance identity | `vpc:<fp>` | metadata URL + profile |
//! | `ibmcloud login` session | `ibmcloud:<fp>` | the session's refresh token |
//!
//! A CR token rotates (the kubelet re-projects it at 80 % of its life): a
//! fingerprint of the whole token would miss the cache at every rotation.
//! The file it is read from, or the subject it names, does not change.

use std::path::PathBuf;

use anyhow::Result;

use crate::cache::{Fingerprint, Identity, KeySource, Minted};
use crate::env;
use crate::jwt;
use crate::mint::{Endpoint, TrustedProfile};
use crate::secret::Secret;

use super::target::Endpoints;

/// What mints a host's token.
#[derive(Clone, Debug)]
pub enum Source {
    /// An IAM API key, and where it came from (stored, or a variable).
    ApiKey {
        /// The key.
        key: Secret<String>,
        /// `Host`, `Global` or `Env(var)`.
        from: KeySource,
    },
    /// A CR token traded for a trusted profile (cr-token grant).
    CrToken(CrToken),
    /// The VPC instance identity (two metadata calls, no IAM call).
    Vpc(Vpc),
    /// An `ibmcloud login` session (its token, else the refresh grant).
    Session(Session),
}

/// A compute-resource token and the trusted profile it becomes.
#[derive(Clone, Debug)]
pub struct CrToken {
    /// The token, or where to read it at each mint.
    pub token: CrTokenFrom,
    /// The trusted profile.
    pub profile: TrustedProfile,
    /// `CrToken` (the variable), `Projected` or `ServiceAccount`.
    pub from: KeySource,
}

/// Where a CR token is.
#[derive(Clone, Debug)]
pub enum CrTokenFrom {
    /// The token itself.
    Value(Secret<String>),
    /// A file, read at each mint: its content rotates.
    File(PathBuf),
}

/// The VPC instance identity.
#[derive(Clone, Debug)]
pub struct Vpc {
    /// The metadata service.
    pub metadata: Endpoint,
    /// The trusted profile (id or CRN); `None`: the instance's default.
    pub profile: Option<TrustedProfile>,
}

/// An `ibmcloud login` session, as read from the CLI's `config.json`.
#[derive(Clone, Debug)]
pub struct Session {
    /// The file (for messages).
    pub file: PathBuf,
    /// `IAMToken` without its `Bearer ` prefix.
    pub access: Option<Secret<String>>,
    /// `IAMRefreshToken`.
    pub refresh: Option<Secret<String>>,
    /// `IAMEndpoint`.
    pub iam: Option<String>,
}

impl Session {
    /// The session's own access token as a minted token (its `iat`/`exp`
    /// claims), if it has one that has not expired at `now`. Its freshness
    /// decides whether it is answered as it is (no network) or refreshed.
    pub fn current(&self, now: u64) -> Option<Minted> {
        let token = self.access.as_ref()?;
        let claims = jwt::claims(token.expose())?;
        let expires_at = claims.get("exp")?.as_u64()?;
        let minted_at = claims
            .get("iat")
            .and_then(|v| v.as_u64())
            .unwrap_or(now)
            .min(now);
        (expires_at > now).then(|| Minted {
            token: token.clone(),
            minted_at,
            expires_at,
            account: crate::mint::account_of(token.expose()),
            id: None,
            host: None,
            iam: None,
        })
    }
}

impl Source {
    /// Where the token comes from, for the host's cache entry.
    pub fn key_source(&self) -> KeySource {
        match self {
            Source::ApiKey { from, .. } => from.clone(),
            Source::CrToken(c) => c.from.clone(),
            Source::Vpc(_) => KeySource::Vpc,
            Source::Session(_) => KeySource::Ibmcloud,
        }
    }

    /// The identity its tokens are cached under (see the module's table).
    pub fn identity(&self) -> Identity {
        match self {
            Source::ApiKey { key, .. } => Identity::ApiKey(Fingerprint::of(key)),
            Source::CrToken(c) => {
                let subject = match &c.token {
                    CrTokenFrom::File(path) => format!("file:{}", path.display()),
                    CrTokenFrom::Value(token) => subject_of(token),
                };
                let profile = profile_parts(Some(&c.profile));
                Identity::CrToken(Fingerprint::of_parts(&[
                    "cr-token", profile.0, profile.1, &subject,
                ]))
            }
            Source::Vpc(v) => {
                let profile = profile_parts(v.profile.as_ref());
                Identity::Vpc(Fingerprint::of_parts(&[
                    "vpc",
                    v.metadata.as_str(),
                    profile.0,
                    profile.1,
                ]))
            }
            Source::Session(s) => {
                // A session without a refresh token is named by its access token.
                let secret = s.refresh.as_ref().or(s.access.as_ref());
                let secret = secret.map(|s| s.expose().as_str()).unwrap_or_default();
                Identity::Session(Fingerprint::of_parts(&["ibmcloud", secret]))
            }
        }
    }

    /// The endpoints its tokens come from: the host's, except that the VPC
    /// identity asks the metadata service instead of IAM, and a session asks
    /// the IAM it was opened at (unless `IBMCLOUD_IAM_API_ENDPOINT` says
    /// otherwise).
    pub fn endpoints(&self, host: &Endpoints) -> Result<Endpoints> {
        let mut endpoints = host.clone();
        match self {
            Source::Vpc(v) => endpoints.iam = v.metadata.clone(),
            Source::Session(Session {
                iam: Some(iam),
                file,
                ..
            }) if !host.iam_from_env => {
                endpoints.iam = Endpoint::parse_iam(iam)
                    .map_err(|e| anyhow::anyhow!("IAMEndpoint in `{}`: {e:#}", file.display()))?;
            }
            _ => {}
        }
        Ok(endpoints)
    }

    /// The source as a user would name it, for the start of its error lines.
    pub fn name(&self) -> String {
        let profile = |p: &TrustedProfile| format!("trusted profile {}", p.as_str());
        match self {
            Source::ApiKey { from, .. } => match from {
                KeySource::Env(var) => var.clone(),
                KeySource::Global => "the API key stored for icr.io".into(),
                _ => "the API key stored for the host".into(),
            },
            Source::CrToken(c) => match (&c.from, &c.token) {
                (KeySource::ServiceAccount, _) => {
                    format!("the service account token for {}", profile(&c.profile))
                }
                (KeySource::Projected, CrTokenFrom::File(path)) => format!(
                    "the projected token `{}` for {}",
                    path.display(),
                    profile(&c.profile)
                ),
                (_, CrTokenFrom::File(path)) => format!(
                    "{}=@{} for {}",
                    env::IBMCLOUD_CR_TOKEN,
                    path.display(),
                    profile(&c.profile)
                ),
                (_, CrTokenFrom::Value(_)) => {
                    format!("{} for {}", env::IBMCLOUD_CR_TOKEN, profile(&c.profile))
                }
            },
            Source::Vpc(v) => match &v.profile {
                Some(p) => format!("the VPC instance identity for {}", profile(p)),
                None => "the VPC instance identity (default trusted profile)".into(),
            },
            Source::Session(s) => format!("the ibmcloud login session `{}`", s.file.display()),
        }
    }
}

/// A stable name for the subject of a CR token given by value: its issuer
/// and `sub` when it is a JWT that has them, else the token itself (a token
/// that names no subject is its own identity).
fn subject_of(token: &Secret<String>) -> String {
    let claims = jwt::claims(token.expose());
    let text = |k: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(k)?.as_str().map(str::to_string))
    };
    match (text("iss"), text("sub")) {
        (iss, Some(sub)) => format!("sub:{}|{sub}", iss.unwrap_or_default()),
        _ => format!("token:{}", Fingerprint::of(token).as_str()),
    }
}

/// A profile as two fingerprint parts: its kind and its value.
fn profile_parts(profile: Option<&TrustedProfile>) -> (&'static str, &str) {
    match profile {
        None => ("default", ""),
        Some(p @ TrustedProfile::Id(_)) => ("id", p.as_str()),
        Some(p @ TrustedProfile::Crn(_)) => ("crn", p.as_str()),
        Some(p @ TrustedProfile::Name(_)) => ("name", p.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ibm::testing::{jwt_with, NOW};

    fn cr(token: CrTokenFrom, profile: &str) -> Source {
        Source::CrToken(CrToken {
            token,
            profile: TrustedProfile::parse(profile).unwrap(),
            from: KeySource::CrToken,
        })
    }

    fn value(iss: &str, sub: &str, exp: u64) -> CrTokenFrom {
        let token = jwt_with(serde_json::json!({"iss": iss, "sub": sub, "exp": exp}));
        CrTokenFrom::Value(Secret::new(token))
    }

    #[test]
    fn a_rotated_cr_token_keeps_its_identity_and_nothing_else_does() {
        let sa = "system:serviceaccount:ci:builder";
        let k8s = "https://kubernetes.default.svc";
        let first = cr(value(k8s, sa, NOW + 600), "Profile-1").identity();
        let rotated = cr(value(k8s, sa, NOW + 1200), "Profile-1").identity();
        assert_eq!(first, rotated, "a new token for the same subject");
        assert!(first.to_string().starts_with("cr:"));
        for other in [
            cr(
                value(k8s, "system:serviceaccount:ci:other", NOW + 600),
                "Profile-1",
            ),
            cr(value("https://other-cluster", sa, NOW + 600), "Profile-1"),
            cr(value(k8s, sa, NOW + 600), "Profile-2"),
            cr(value(k8s, sa, NOW + 600), "ci-pull"),
            cr(CrTokenFrom::File("/run/t".into()), "Profile-1"),
        ] {
            assert_ne!(other.identity(), first);
        }
        let file = |p: &str| cr(CrTokenFrom::File(p.into()), "Profile-1").identity();
        assert_eq!(file("/run/t"), file("/run/t"), "a file is its own subject");
        assert_ne!(file("/run/t"), file("/run/u"));
        // An opaque token is its own identity, and the cache key never holds it.
        let opaque = |t: &str| cr(CrTokenFrom::Value(Secret::new(t.into())), "Profile-1");
        assert_ne!(opaque("a").identity(), opaque("b").identity());
        assert!(!opaque("canary-opaque")
            .identity()
            .to_string()
            .contains("canary"));
    }

    #[test]
    fn each_kind_is_spelled_apart() {
        let key = Source::ApiKey {
            key: Secret::new("k".into()),
            from: KeySource::Env("IC_API_KEY".into()),
        };
        let vpc = |profile: Option<&str>| {
            Source::Vpc(Vpc {
                metadata: Endpoint::parse_metadata(crate::mint::DEFAULT_METADATA).unwrap(),
                profile: profile.and_then(TrustedProfile::parse),
            })
        };
        let session = |refresh: &str| {
            Source::Session(Session {
                file: "/h/.bluemix/config.json".into(),
                access: None,
                refresh: Some(Secret::new(refresh.into())),
                iam: None,
            })
        };
        let spelled: Vec<String> = [
            key,
            vpc(None),
            vpc(Some("Profile-1")),
            session("r1"),
            session("r2"),
        ]
        .iter()
        .map(|s| s.identity().to_string())
        .collect();
        assert!(!spelled[0].contains(':'));
        assert!(spelled[1].starts_with("vpc:") && spelled[1] != spelled[2]);
        assert!(spelled[3].starts_with("ibmcloud:") && spelled[3] != spelled[4]);
        assert!(!spelled
            .iter()
            .any(|s| s.contains("r1") || s.contains("Profile")));
    }

    #[test]
    fn a_session_token_is_current_until_its_exp() {
        let session = |exp: u64| Session {
            file: "/c.json".into(),
            access: Some(Secret::new(jwt_with(
                serde_json::json!({"iat": NOW - 600, "exp": exp, "account": {"bss": "0123456789abcdef0123456789abcdef"}}),
            ))),
            refresh: None,
            iam: None,
        };
        let current = session(NOW + 3000).current(NOW).unwrap();
        assert_eq!(
            (current.minted_at, current.expires_at),
            (NOW - 600, NOW + 3000)
        );
        assert_eq!(
            current.account.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert!(session(NOW).current(NOW).is_none(), "expired");
        let opaque = Session {
            access: Some(Secret::new("opaque".into())),
            ..session(0)
        };
        assert!(
            opaque.current(NOW).is_none(),
            "no exp: refreshed, never trusted"
        );
    }
}
