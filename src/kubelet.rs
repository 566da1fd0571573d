//! The kubelet image credential provider (`credentialprovider.kubelet.k8s.io/v1`,
//! ../shared/fleet.md §6, ../shared/protocol.md §4): one
//! `CredentialProviderRequest` on stdin, one `CredentialProviderResponse` for
//! `protocol.rs` to write on stdout.
//!
//! - An IBM image gets `auth` keyed by the image's registry exactly as the
//!   kubelet sent it (`us.icr.io`, `private.us.icr.io`, `us.icr.io:443`): a
//!   pattern that matches that registry and no other, so `cp.icr.io` never
//!   sees an IAM token; `iambearer` and the token, `cacheKeyType: Registry`,
//!   and a `cacheDuration` of half the token's remaining life.
//! - Any other image (and `cp.icr.io`, the Entitled Registry), or an IBM
//!   image with nothing to answer: a valid response with no `auth`, not
//!   cached (`"0s"`), so the kubelet falls back to pull secrets.
//! - KEP-4412: a request with `serviceAccountToken` and the service
//!   account's annotation `ibmcr/trusted-profile` trades that token for the
//!   profile (cr-token grant); without the annotation, the node's chain
//!   answers, as for `get`.
//! - A request of another apiVersion or kind is an error: exit 1, one line
//!   on stderr, nothing on stdout. The kubelet logs stderr: never a secret there.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::anyhow;
use serde_json::Value;

use crate::cache::KeySource;
use crate::ibm::{self, Answer, CrToken, CrTokenFrom, Source};
use crate::mint::TrustedProfile;
use crate::protocol::Error;
use crate::registry::Registry;
use crate::secret::Secret;
use crate::{debug, log, store, Env};

/// The only API version answered (GA since Kubernetes 1.26).
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The request's kind.
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
/// The response's kind.
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";
/// The service account annotation naming the trusted profile its token is
/// traded for (id, CRN or name; fixed name, ../shared/fleet.md §6).
pub const PROFILE_ANNOTATION: &str = "ibmcr/trusted-profile";
/// The argument that runs the plugin: `docker-credential-ibmcr kubelet-plugin`.
pub const ARG: &str = "kubelet-plugin";
/// The name the same binary answers to as a plugin without arguments (the
/// kubelet's provider `name` must equal the file name in its bin dir).
pub const LINK_NAME: &str = "ibmcr-credential-provider";
/// The largest request read (a request with a service account token is a few KiB).
const MAX_REQUEST: u64 = 1 << 20;

/// A `CredentialProviderRequest`, as the kubelet sends it. Unknown fields
/// are ignored (a newer kubelet may add some); apiVersion and kind are checked.
#[derive(Debug)]
pub struct Request {
    /// `image`: registry host[:port] and path, usually without tag or digest.
    pub image: String,
    /// `serviceAccountToken` (KEP-4412), when the provider has `tokenAttributes`.
    pub service_account_token: Option<Secret<String>>,
    /// `serviceAccountAnnotations`: those the provider config asked for.
    pub service_account_annotations: BTreeMap<String, String>,
}

/// `auth` entries: `{"username", "password"}`.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuthConfig {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: Secret<String>,
}

/// A `CredentialProviderResponse` with exactly the fields of the v1 types
/// (the kubelet decodes strictly: an unknown field is an error).
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Response {
    /// `kind`.
    pub kind: &'static str,
    /// `apiVersion`: the one the kubelet is configured with.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// `cacheKeyType`: always `Registry` (a token serves a whole registry).
    #[serde(rename = "cacheKeyType")]
    pub cache_key_type: &'static str,
    /// `cacheDuration`, a Go duration (`"0s"`: do not cache).
    #[serde(rename = "cacheDuration")]
    pub cache_duration: String,
    /// `auth`: image pattern → credentials; absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub auth: BTreeMap<String, AuthConfig>,
}

impl Response {
    /// A response with no credentials, not to be cached.
    fn empty() -> Response {
        Response {
            kind: RESPONSE_KIND,
            api_version: API_VERSION,
            cache_key_type: "Registry",
            cache_duration: go_duration(0),
            auth: BTreeMap::new(),
        }
    }
}

/// Reads and checks the request on `input`.
pub fn read_request(input: &mut dyn Read) -> Result<Request, Error> {
    let mut bytes = Vec::new();
    input
        .take(MAX_REQUEST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("kubelet request: reading stdin: {e}"))?;
    if bytes.len() as u64 > MAX_REQUEST {
        return Err(anyhow!("kubelet request: larger than {MAX_REQUEST} bytes").into());
    }
    parse_request(&bytes).map_err(|why| anyhow!("kubelet request: {why}").into())
}

/// Parses a request; the error says why in a few words, never quoting a
/// token (the body holds the service account's).
fn parse_request(bytes: &[u8]) -> Result<Request, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("not valid JSON (line {}, column {})", e.line(), e.column()))?;
    let Value::Object(map) = value else {
        return Err("not a JSON object".into());
    };
    let text = |key: &str| -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    };
    let api_version = text("apiVersion")?.unwrap_or_default();
    if api_version != API_VERSION {
        return Err(format!(
            "apiVersion must be {API_VERSION}, not `{}`",
            log::quoted(&api_version)
        ));
    }
    let kind = text("kind")?.unwrap_or_default();
    if kind != REQUEST_KIND {
        return Err(format!(
            "kind must be {REQUEST_KIND}, not `{}`",
            log::quoted(&kind)
        ));
    }
    let image = text("image")?
        .filter(|i| !i.trim().is_empty())
        .ok_or("`image` is required")?;
    let service_account_token = text("serviceAccountToken")?
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let service_account_annotations = match map.get("serviceAccountAnnotations") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(a)) => a
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!(
                    "serviceAccountAnnotations[{}] must be a string",
                    log::quoted(k)
                )),
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("`serviceAccountAnnotations` must be an object".into()),
    };
    Ok(Request {
        image: image.trim().to_string(),
        service_account_token,
        service_account_annotations,
    })
}

/// The registry part of an image reference: everything before the first `/`.
pub fn registry_of(image: &str) -> &str {
    image.split('/').next().unwrap_or(image)
}

/// The answer to `request` at `now`: credentials for an IBM image from the
/// service account's trusted profile or the node's chain, else none.
pub fn answer(request: &Request, env: &Env, now: u64) -> Result<Response, Error> {
    let registry = registry_of(&request.image);
    let host = match Registry::parse(registry) {
        Registry::Ibm(host) => host,
        Registry::Other(_) => {
            debug!(
                "kubelet",
                "{}: not an IBM registry; no credentials",
                log::quoted(registry)
            );
            return Ok(Response::empty());
        }
    };
    let profile = request
        .service_account_annotations
        .get(PROFILE_ANNOTATION)
        .and_then(|v| TrustedProfile::parse(v));
    let answer = match (&request.service_account_token, profile) {
        (Some(token), Some(profile)) => {
            debug!(
                "kubelet",
                "{host}: the service account's trusted profile {}",
                profile.as_str()
            );
            let source = Source::CrToken(CrToken {
                token: CrTokenFrom::Value(token.clone()),
                profile,
                from: KeySource::ServiceAccount,
            });
            ibm::bearer(env, host, now, &source)
        }
        (token, _) => {
            if token.is_some() {
                debug!(
                    "kubelet",
                    "{host}: the service account has no {PROFILE_ANNOTATION}; the node's credentials answer"
                );
            }
            ibm::get(env, host, now, Box::new(|| store::open_for_read(env)))
        }
    };
    let answer: Answer = match answer {
        Ok(answer) => answer,
        Err(Error::NotFound) => {
            debug!("kubelet", "{host}: nothing to answer; no credentials");
            return Ok(Response::empty());
        }
        Err(e) => return Err(e),
    };
    // Half the remaining life, as the ECR provider does: the kubelet's copy
    // is dropped while ours still has half its life; unknown life: not cached.
    let left = answer.expires_at.map_or(0, |exp| exp.saturating_sub(now));
    let mut auth = BTreeMap::new();
    auth.insert(
        registry.to_string(),
        AuthConfig {
            username: answer.username,
            password: answer.secret,
        },
    );
    Ok(Response {
        cache_duration: go_duration(left / 2),
        auth,
        ..Response::empty()
    })
}

/// Seconds as Go's `time.Duration.String` writes them: `0s`, `45s`,
/// `29m30s`, `1h0m0s`.
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_spelled_as_go_spells_them() {
        for (secs, go) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m0s"),
            (1770, "29m30s"),
            (3600, "1h0m0s"),
            (90061, "25h1m1s"),
        ] {
            assert_eq!(go_duration(secs), go);
        }
    }

    #[test]
    fn requests_are_checked_and_never_echo_a_token() {
        let ok = parse_request(
            br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/ns/app","serviceAccountToken":"canary-sa","serviceAccountAnnotations":{"ibmcr/trusted-profile":"Profile-1"},"future":1}"#,
        )
        .unwrap();
        assert_eq!(ok.image, "us.icr.io/ns/app");
        assert_eq!(ok.service_account_token.unwrap().expose(), "canary-sa");
        assert_eq!(
            ok.service_account_annotations[PROFILE_ANNOTATION],
            "Profile-1"
        );
        for (body, why) in [
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderRequest","image":"x"}"#,
                "apiVersion must be credentialprovider.kubelet.k8s.io/v1, not `credentialprovider.kubelet.k8s.io/v1beta1`",
            ),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","image":"x"}"#,
                "kind must be CredentialProviderRequest, not `CredentialProviderResponse`",
            ),
            (
                r#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#,
                "`image` is required",
            ),
            (r#"{"serviceAccountToken":"canary-sa""#, "not valid JSON (line 1, column 34)"),
            ("[]", "not a JSON object"),
        ] {
            assert_eq!(parse_request(body.as_bytes()).unwrap_err(), why, "{body}");
        }
    }

    #[test]
    fn the_readme_s_match_images_are_exactly_ibm_s_hosts() {
        let readme = include_str!("../README.md");
        let block = readme
            .split_once("    matchImages:\n")
            .and_then(|(_, rest)| rest.split_once("    defaultCacheDuration:"))
            .map(|(block, _)| block)
            .expect("a matchImages list in README.md");
        let mut listed: Vec<&str> = block
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- "))
            .collect();
        let mut hosts: Vec<&str> = crate::registry::HOSTS.iter().map(|h| h.0).collect();
        listed.sort_unstable();
        hosts.sort_unstable();
        assert_eq!(
            listed, hosts,
            "every IBM host, and nothing else (no cp.icr.io, no glob)"
        );
    }

    #[test]
    fn the_registry_is_what_precedes_the_first_slash() {
        assert_eq!(registry_of("us.icr.io/ns/app"), "us.icr.io");
        assert_eq!(registry_of("us.icr.io:443/ns/app:1"), "us.icr.io:443");
        assert_eq!(registry_of("private.us.icr.io"), "private.us.icr.io");
    }
}
