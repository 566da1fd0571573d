//! Where a host's tokens are minted (the IAM and registry API endpoints) and
//! where they live in the token cache, for one identity and token access.

use anyhow::{anyhow, Result};

use crate::cache::{Cache, IamKey, Identity, MintKey, RegistryKey, TokenRef};
use crate::env::{self, Env};
use crate::mint::{Endpoint, DEFAULT_IAM, PRIVATE_IAM};
use crate::registry::{IbmHost, Network};
use crate::settings::{Mode, TokenAccess};

/// The endpoints a host's tokens come from.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// IAM: `IBMCLOUD_IAM_API_ENDPOINT`, else private IAM for a `private.`
    /// host, else public.
    pub iam: Endpoint,
    /// Registry API: `IBMCLOUD_CR_API_ENDPOINT`, else `https://<host>`.
    pub api: Endpoint,
    /// True when `iam` came from `IBMCLOUD_IAM_API_ENDPOINT`: it then wins
    /// over the IAM an `ibmcloud login` session names.
    pub iam_from_env: bool,
}

impl Endpoints {
    /// The endpoints for `host`; an error names the variable that is wrong.
    pub fn for_host(env: &Env, host: IbmHost) -> Result<Endpoints> {
        let iam = match (&env.iam_endpoint, host.network()) {
            (Some(url), _) => url.as_str(),
            (None, Network::Private) => PRIVATE_IAM,
            (None, _) => DEFAULT_IAM,
        };
        let iam = Endpoint::parse_iam(iam)
            .map_err(|e| anyhow!("{}: {e:#}", env::IBMCLOUD_IAM_API_ENDPOINT))?;
        let api = match &env.cr_endpoint {
            // `ibmcloud cr api` prints the base with `/api`; the paths add it again.
            Some(url) => url
                .trim_end_matches('/')
                .trim_end_matches("/api")
                .to_string(),
            None => format!("https://{}", host.name()),
        };
        let api = Endpoint::parse(&api)
            .map_err(|e| anyhow!("{}: {e:#}", env::IBMCLOUD_CR_API_ENDPOINT))?;
        Ok(Endpoints {
            iam,
            api,
            iam_from_env: env.iam_endpoint.is_some(),
        })
    }
}

/// A host's tokens for one identity: where they are minted and cached.
#[derive(Clone, Debug)]
pub struct Target {
    /// The endpoints.
    pub endpoints: Endpoints,
    /// The IAM access token.
    pub iam: IamKey,
    /// The registry token.
    pub registry: RegistryKey,
}

impl Target {
    /// The keys of `identity`'s tokens at `endpoints`.
    pub fn new(endpoints: &Endpoints, identity: Identity, access: TokenAccess) -> Target {
        Target {
            iam: IamKey {
                endpoint: endpoints.iam.as_str().to_string(),
                identity: identity.clone(),
            },
            registry: RegistryKey {
                api: endpoints.api.as_str().to_string(),
                identity,
                access,
            },
            endpoints: endpoints.clone(),
        }
    }

    /// The token a host is answered with in `mode` (registry-token mode
    /// answers bearer while a refusal is remembered).
    pub fn expected(&self, mode: Mode, cache: &Cache, now: u64) -> TokenRef {
        if mode == Mode::RegistryToken && !cache.refused(&self.registry.refusal(), now) {
            TokenRef::Registry(self.registry.clone())
        } else {
            TokenRef::Iam(self.iam.clone())
        }
    }

    /// The IAM token's failure key.
    pub fn iam_mint(&self) -> MintKey {
        MintKey::Iam(self.iam.clone())
    }

    /// The registry token's failure key.
    pub fn registry_mint(&self) -> MintKey {
        MintKey::Registry(self.registry.clone())
    }
}
