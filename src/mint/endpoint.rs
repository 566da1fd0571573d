//! Which base URLs the helper may call, held normalised: https, or plain http
//! on a loopback host only; and the VPC instance metadata service, the one
//! non-loopback plain-http endpoint, called only for its two identity paths.

use std::fmt;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use reqwest::Url;

use super::wire::IAM_TOKEN_PATH;
use super::MAX_SERVER_TEXT;
use crate::log;

/// IBM Cloud IAM, public endpoint.
pub const DEFAULT_IAM: &str = "https://iam.cloud.ibm.com";
/// IBM Cloud IAM on the private network (implied by `private.*` registry hosts).
pub const PRIVATE_IAM: &str = "https://private.iam.cloud.ibm.com";
/// The VPC instance metadata service (../shared/fleet.md §3): plain http on a
/// link-local address, reachable only from inside a VPC virtual server.
pub const DEFAULT_METADATA: &str = "http://api.metadata.cloud.ibm.com";
/// The metadata service's host name.
const METADATA_HOST: &str = "api.metadata.cloud.ibm.com";

/// A base URL the helper may call: https, or http only on a loopback host
/// (127.0.0.0/8, `localhost`, `[::1]`).
///
/// Held normalised: scheme and host lower-case, no default port, no trailing
/// `/`, no user name or password, no query and no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    loopback: bool,
    /// The VPC instance metadata service ([`Endpoint::parse_metadata`]).
    metadata: bool,
}

impl Endpoint {
    /// Parses a base URL. Trims whitespace and trailing `/`; rejects a scheme
    /// other than https (http only for a loopback host), a user name or
    /// password, a query and a fragment.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let trimmed = url.trim().trim_end_matches('/');
        // Never echo a query or fragment: it is where a pasted secret would sit.
        let shown = log::excerpt(
            &log::redact_userinfo(trimmed.split(['?', '#']).next().unwrap_or_default()),
            MAX_SERVER_TEXT,
        );
        if trimmed.is_empty() {
            bail!("an endpoint URL must not be empty");
        }
        if trimmed.chars().any(char::is_control) {
            // The URL standard would silently drop tabs and newlines.
            bail!("`{shown}` must not contain control characters");
        }
        let parsed = Url::parse(trimmed).map_err(|e| anyhow!("`{shown}` is not a URL: {e}"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            bail!("`{shown}` must not contain a user name or password");
        }
        if parsed.query().is_some() {
            bail!("`{shown}` must not contain a query string");
        }
        if parsed.fragment().is_some() {
            bail!("`{shown}` must not contain a fragment");
        }
        let host = match parsed.host_str() {
            Some(host) if !host.is_empty() => host,
            _ => bail!("`{shown}` has no host"),
        };
        let loopback = is_loopback_host(host);
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => bail!("`{shown}` must use https (http only for a loopback host)"),
        }
        let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = parsed.path().trim_end_matches('/');
        Ok(Endpoint {
            base: format!("{}://{host}{port}{path}", parsed.scheme()),
            loopback,
            metadata: false,
        })
    }

    /// The VPC instance metadata service's base URL: as [`Endpoint::parse`],
    /// and plain http is also allowed for `api.metadata.cloud.ibm.com` and
    /// link-local addresses (169.254.0.0/16, where the service lives). Such an
    /// endpoint is never reached through a proxy, and the minter calls only
    /// the two identity paths below it.
    pub fn parse_metadata(url: &str) -> Result<Endpoint> {
        let trimmed = url.trim().trim_end_matches('/');
        let as_https = match trimmed.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => {
                let host = Url::parse(trimmed)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
                host.filter(|h| is_metadata_host(h))
                    .map(|_| format!("https://{}", &trimmed[7..]))
            }
            _ => None,
        };
        let mut endpoint = match &as_https {
            // Checked as https (userinfo, query, fragment…), kept as http.
            Some(https) => {
                let mut e = Endpoint::parse(https).map_err(|e| {
                    anyhow!("{}", e.to_string().replacen("`https://", "`http://", 1))
                })?;
                e.base = format!("http://{}", &e.base["https://".len()..]);
                e
            }
            None => Endpoint::parse(trimmed)?,
        };
        endpoint.metadata = true;
        Ok(endpoint)
    }

    /// As [`Endpoint::parse`], and strips a trailing `/identity/token`: IBM's
    /// SDKs accept the IAM URL with and without the token path.
    pub fn parse_iam(url: &str) -> Result<Endpoint> {
        let mut endpoint = Endpoint::parse(url)?;
        if let Some(base) = endpoint.base.strip_suffix(IAM_TOKEN_PATH) {
            // From the path only: `https://identity/token` is the host `identity`.
            if base
                .split_once("://")
                .is_some_and(|(_, host)| !host.is_empty())
            {
                endpoint.base = base.trim_end_matches('/').to_string();
            }
        }
        Ok(endpoint)
    }

    /// The base URL, e.g. `https://iam.cloud.ibm.com`.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// True for 127.0.0.0/8, `localhost` and `[::1]`: reached without a proxy,
    /// and the only hosts allowed plain http (the metadata service aside).
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// True for the VPC instance metadata service: reached without a proxy.
    pub fn is_metadata(&self) -> bool {
        self.metadata
    }

    /// The URL of `path` (which starts with `/`) below this base.
    pub(super) fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// True for the metadata service's name and link-local IPv4 addresses.
fn is_metadata_host(host: &str) -> bool {
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => ip.is_link_local(),
        Err(_) => host == METADATA_HOST,
    }
}

/// True for 127.0.0.0/8, `::1` (as `[::1]`) and `localhost`.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_https_and_loopback_http() {
        for (input, base, loopback) in [
            ("http://127.0.0.1:1", "http://127.0.0.1:1", true),
            ("http://127.9.8.7:80/", "http://127.9.8.7", true),
            ("http://localhost", "http://localhost", true),
            ("HTTP://LocalHost:8080/", "http://localhost:8080", true),
            ("http://[::1]:8", "http://[::1]:8", true),
            (
                "  https://IAM.cloud.ibm.com///  ",
                "https://iam.cloud.ibm.com",
                false,
            ),
            ("https://us.icr.io:443", "https://us.icr.io", false),
            ("https://us.icr.io/api/", "https://us.icr.io/api", false),
            ("https://127.0.0.1:9443", "https://127.0.0.1:9443", true),
        ] {
            let e = Endpoint::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((e.as_str(), e.is_loopback()), (base, loopback), "{input}");
            assert_eq!(e.to_string(), base);
        }
        assert_eq!(DEFAULT_IAM, Endpoint::parse(DEFAULT_IAM).unwrap().as_str());
        assert_eq!(PRIVATE_IAM, Endpoint::parse(PRIVATE_IAM).unwrap().as_str());
    }

    #[test]
    fn endpoints_reject_plain_http_userinfo_query_fragment() {
        let err = |input: &str| Endpoint::parse(input).unwrap_err().to_string();
        assert_eq!(
            err("http://example.com"),
            "`http://example.com` must use https (http only for a loopback host)"
        );
        assert_eq!(
            err("http://127.0.0.1.example.com/"),
            "`http://127.0.0.1.example.com` must use https (http only for a loopback host)"
        );
        assert!(err("http://10.0.0.1").contains("must use https"));
        assert!(err("ftp://localhost").contains("must use https"));
        let userinfo = err("https://user:hunter2-canary@iam.cloud.ibm.com");
        assert_eq!(
            userinfo,
            "`https://****@iam.cloud.ibm.com` must not contain a user name or password"
        );
        assert!(err("http://user@127.0.0.1").contains("user name or password"));
        assert!(err("https://x.io/?a=b").contains("query string"));
        assert!(err("https://x.io?").contains("query string"));
        assert!(err("https://x.io/#top").contains("fragment"));
        assert!(err("").contains("empty"));
        assert!(err("iam.cloud.ibm.com").contains("is not a URL"));
        let control = err("https://bad\nhost");
        assert_eq!(
            control,
            "`https://bad host` must not contain control characters"
        );
    }

    #[test]
    fn the_metadata_service_is_the_one_plain_http_endpoint_elsewhere() {
        for (input, base, loopback) in [
            (DEFAULT_METADATA, DEFAULT_METADATA, false),
            (
                "HTTP://API.metadata.cloud.ibm.com/",
                "http://api.metadata.cloud.ibm.com",
                false,
            ),
            ("http://169.254.169.254", "http://169.254.169.254", false),
            (
                "https://api.metadata.cloud.ibm.com",
                "https://api.metadata.cloud.ibm.com",
                false,
            ),
            ("http://127.0.0.1:9", "http://127.0.0.1:9", true),
        ] {
            let e = Endpoint::parse_metadata(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((e.as_str(), e.is_loopback()), (base, loopback), "{input}");
            assert!(e.is_metadata());
        }
        for bad in [
            "http://example.com",
            "http://api.metadata.cloud.ibm.com.evil.example",
            "http://10.0.0.1",
            "http://user:pw@169.254.169.254",
            "http://169.254.169.254/?x=1",
        ] {
            assert!(Endpoint::parse_metadata(bad).is_err(), "{bad}");
        }
        // Only through parse_metadata: an IAM or registry endpoint stays https.
        assert!(Endpoint::parse(DEFAULT_METADATA).is_err());
        assert!(!Endpoint::parse("https://x").unwrap().is_metadata());
    }

    #[test]
    fn parse_iam_strips_the_token_path() {
        for input in [
            "https://x/identity/token",
            "https://x/identity/token/",
            "https://x/",
        ] {
            assert_eq!(Endpoint::parse_iam(input).unwrap().as_str(), "https://x");
        }
        assert_eq!(
            Endpoint::parse_iam("http://127.0.0.1:9/iam/identity/token")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/iam"
        );
        assert_eq!(
            Endpoint::parse("https://x/identity/token")
                .unwrap()
                .as_str(),
            "https://x/identity/token"
        );
    }

    #[test]
    fn a_host_named_identity_is_not_a_token_path() {
        // Issue 10 item 9 (fuzz/corpus/endpoint/regress-host-named-identity).
        assert_eq!(
            Endpoint::parse_iam("https://identity/token")
                .unwrap()
                .as_str(),
            "https://identity/token"
        );
    }
}
