//! Names in the cache: typed keys for minted tokens, failures and
//! refusals, spelled on disk as the strings of format v1; the identity
//! that minted a token, by a fingerprint, never the secret.

use super::*;

/// Names a secret without revealing it: the first 16 hex digits of its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of `secret`.
    pub fn of(secret: &Secret<String>) -> Fingerprint {
        let digest = Sha256::digest(secret.expose().as_bytes());
        Fingerprint(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// The fingerprint of several values together: each is length-prefixed,
    /// so no two different lists share one.
    pub fn of_parts(parts: &[&str]) -> Fingerprint {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        Fingerprint(
            hasher
                .finalize()
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn parse(hex: &str) -> Option<Fingerprint> {
        let ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Fingerprint(hex.to_string()))
    }
}

/// What minted a token (../shared/fleet.md §5). Each source of an IAM token
/// is a variant of its own, spelled `<kind>:<fingerprint>` in a key (the API
/// key keeps the bare fingerprint of v1), so no two kinds can share a token.
/// A fingerprint names what stays the same while the secret rotates, never
/// the secret alone (see `ibm/source.rs`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    /// An IAM API key: its fingerprint, spelled bare (the format of v1).
    ApiKey(Fingerprint),
    /// A compute-resource token traded for a trusted profile: `cr:<fp>` of
    /// the profile and the token's stable subject (its file, or its issuer
    /// and `sub`), so a rotated token hits the same entry.
    CrToken(Fingerprint),
    /// The VPC instance identity: `vpc:<fp>` of the metadata service and the
    /// trusted profile.
    Vpc(Fingerprint),
    /// An `ibmcloud login` session: `ibmcloud:<fp>` of its refresh token.
    Session(Fingerprint),
}

/// Makes an identity of one kind from its fingerprint.
pub(super) type MakeIdentity = fn(Fingerprint) -> Identity;

/// The spelling of each kind but the API key's.
pub(super) const KINDS: [(&str, MakeIdentity); 3] = [
    ("cr", Identity::CrToken),
    ("vpc", Identity::Vpc),
    ("ibmcloud", Identity::Session),
];

impl Identity {
    /// The fingerprint that names the identity.
    pub fn fingerprint(&self) -> &Fingerprint {
        match self {
            Identity::ApiKey(f)
            | Identity::CrToken(f)
            | Identity::Vpc(f)
            | Identity::Session(f) => f,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Identity::ApiKey(fingerprint) => return f.write_str(fingerprint.as_str()),
            Identity::CrToken(_) => "cr",
            Identity::Vpc(_) => "vpc",
            Identity::Session(_) => "ibmcloud",
        };
        write!(f, "{kind}:{}", self.fingerprint().as_str())
    }
}

impl FromStr for Identity {
    type Err = ();
    fn from_str(s: &str) -> Result<Identity, ()> {
        match s.split_once(':') {
            None => Fingerprint::parse(s).map(Identity::ApiKey).ok_or(()),
            Some((kind, hex)) => {
                let (_, make) = KINDS.iter().find(|(k, _)| *k == kind).ok_or(())?;
                Fingerprint::parse(hex).map(make).ok_or(())
            }
        }
    }
}

/// Where an IAM access token lives: one per (IAM endpoint, identity), and it
/// serves every region. On disk `<endpoint>|<identity>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IamKey {
    /// The IAM base URL.
    pub endpoint: String,
    /// What minted it.
    pub identity: Identity,
}

/// Where a registry token lives: (registry API base, identity, access). On
/// disk `<api>|<identity>|<access>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RegistryKey {
    /// The registry API base URL.
    pub api: String,
    /// What minted the IAM token it was created with.
    pub identity: Identity,
    /// Read-write or read-only.
    pub access: TokenAccess,
}

/// Where a refusal of registry-token creation is remembered: (registry API
/// base, identity), whatever the access. On disk `<api>|<identity>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefusalKey {
    /// The registry API base URL.
    pub api: String,
    /// Whose creation was refused.
    pub identity: Identity,
}

/// A mint that can fail, for [`Cache::recent_failure`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MintKey {
    /// An IAM access token.
    Iam(IamKey),
    /// A registry token.
    Registry(RegistryKey),
}

impl fmt::Display for IamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.endpoint, self.identity)
    }
}

impl FromStr for IamKey {
    type Err = ();
    fn from_str(s: &str) -> Result<IamKey, ()> {
        let (endpoint, identity) = s.rsplit_once('|').ok_or(())?;
        Ok(IamKey {
            endpoint: endpoint.to_string(),
            identity: identity.parse()?,
        })
    }
}

impl fmt::Display for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (api, identity, access) = (&self.api, &self.identity, self.access.as_str());
        write!(f, "{api}|{identity}|{access}")
    }
}

impl FromStr for RegistryKey {
    type Err = ();
    fn from_str(s: &str) -> Result<RegistryKey, ()> {
        let (rest, access) = s.rsplit_once('|').ok_or(())?;
        let RefusalKey { api, identity } = rest.parse()?;
        let access = TokenAccess::parse(access).ok_or(())?;
        Ok(RegistryKey {
            api,
            identity,
            access,
        })
    }
}

impl RegistryKey {
    /// The key under which a refusal for this token is remembered.
    pub fn refusal(&self) -> RefusalKey {
        RefusalKey {
            api: self.api.clone(),
            identity: self.identity.clone(),
        }
    }
}

impl fmt::Display for RefusalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.api, self.identity)
    }
}

impl FromStr for RefusalKey {
    type Err = ();
    fn from_str(s: &str) -> Result<RefusalKey, ()> {
        let IamKey { endpoint, identity } = s.parse()?;
        Ok(RefusalKey {
            api: endpoint,
            identity,
        })
    }
}

impl fmt::Display for MintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintKey::Iam(k) => k.fmt(f),
            MintKey::Registry(k) => k.fmt(f),
        }
    }
}

impl FromStr for MintKey {
    type Err = ();
    /// A registry key ends in an access word, which no identity spells.
    fn from_str(s: &str) -> Result<MintKey, ()> {
        match s.parse() {
            Ok(registry) => Ok(MintKey::Registry(registry)),
            Err(()) => s.parse().map(MintKey::Iam),
        }
    }
}

/// Keys are JSON strings in their on-disk spelling; one that does not parse
/// makes the file corrupt (and so ignored, as any corrupt cache is).
macro_rules! serde_as_string {
    ($($key:ty),*) => {$(
        impl serde::Serialize for $key {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $key {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse()
                    .map_err(|()| serde::de::Error::custom("malformed cache key"))
            }
        }
    )*};
}
serde_as_string!(IamKey, RegistryKey, RefusalKey, MintKey);

/// Where a host's token came from: a stored or environment API key, or one
/// of the sources of the credential chain (../shared/fleet.md §5).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// An API key stored for that exact host.
    Host,
    /// An API key stored for `icr.io`.
    Global,
    /// From `IBMCLOUD_API_KEY` or `IC_API_KEY` (the variable's name).
    Env(String),
    /// `IBMCLOUD_CR_TOKEN` with `IBMCLOUD_CR_PROFILE`.
    #[serde(rename = "cr-token")]
    CrToken,
    /// A projected token at one of IBM's SDK default paths.
    Projected,
    /// The service account token of a kubelet request (never remembered for a host).
    #[serde(rename = "service-account")]
    ServiceAccount,
    /// The VPC instance identity.
    Vpc,
    /// The `ibmcloud login` session.
    Ibmcloud,
}

impl KeySource {
    /// True for a stored API key: the only sources `store` and `erase` change.
    pub fn is_stored(&self) -> bool {
        matches!(self, KeySource::Host | KeySource::Global)
    }

    /// True for an API key, stored or from the environment.
    pub fn is_api_key(&self) -> bool {
        matches!(
            self,
            KeySource::Host | KeySource::Global | KeySource::Env(_)
        )
    }
}

/// Which minted token a host is answered with.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRef {
    /// An IAM access token.
    Iam(IamKey),
    /// A registry token.
    Registry(RegistryKey),
}
