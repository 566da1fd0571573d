//! The IBM Cloud client, [`Minter`]: IAM access tokens from an API key, a
//! compute-resource token, a refresh token or the VPC instance identity, and
//! registry tokens from an access token (../shared/ibm-api.md §1, §2;
//! ../shared/fleet.md §2, §3).
//!
//! This is the only module that imports reqwest. A [`Minter`] is built only
//! on a cache miss, and its clients are built on first use, so a cached `get`
//! never pays for a TLS stack. Its parts: `endpoint` (which base URLs may be
//! called), `http` (sending within the bound, retries, failures), `wire`
//! (IBM's request and reply formats) and `scrub` (whether server text could
//! echo a secret).
//!
//! Every public call is bounded by [`MINT_BOUND`] in total (connects, retries,
//! waits and body reads together). Only the IAM token request is retried on
//! server trouble; the registry token calls are retried only when the
//! connection could not be made, because `POST /api/v1/tokens` is not
//! idempotent (../shared/decisions.md §5).
//!
//! Errors are one line: `<request> to <url> failed: <why>`, where `<why>` is
//! the HTTP status and IBM's code and message, or what went wrong on the
//! connection. Text taken from a server that could carry the secret sent
//! with the request (any 8 characters of it, in any case or common encoding:
//! `scrub`) is withheld, all but IBM's error code; other server text is
//! stripped of control characters and capped at 200 characters. No secret
//! ever reaches an error, and reqwest's own errors (which carry URLs and
//! internals) are never shown as they are.

mod endpoint;
mod http;
mod scrub;
mod wire;

use std::fmt;
use std::time::Duration;

use anyhow::Result;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;

pub use endpoint::{Endpoint, DEFAULT_IAM, DEFAULT_METADATA, PRIVATE_IAM};
pub use wire::TrustedProfile;
pub(crate) use wire::{account_of, APIKEY_GRANT};
#[cfg(test)]
pub(crate) use wire::{parse_iam_token, parse_registry_token, server_text};

/// The error line's text for an error reply: what reaches the user from a
/// server (the fuzzer checks it as a whole).
#[cfg(test)]
pub(crate) fn status_error(status: u16, body: &[u8], secret: &str) -> String {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    wire::status_error(status, body, secret)
}

use crate::secret::Secret;
use http::{Call, Http, Retry};
use wire::{
    BX_CLIENT, IAM_TOKEN_PATH, INSTANCE_TOKEN_LIFETIME, METADATA_IAM_TOKEN_PATH,
    METADATA_TOKEN_PATH, METADATA_VERSION, SESSION_OVER, TOKENS_PATH,
};

/// The most one public call of [`Minter`] may take, retries and waits included.
pub const MINT_BOUND: Duration = Duration::from_secs(15);
/// The largest bound [`Minter::with_bound`] accepts.
pub const MAX_BOUND: Duration = Duration::from_secs(3600);
/// The most characters of server-supplied text that go into a message.
const MAX_SERVER_TEXT: usize = 200;

/// What IAM answered.
#[derive(Debug)]
pub struct IamToken {
    /// The access token (a JWT), without the `Bearer ` prefix.
    pub access_token: Secret<String>,
    /// Its lifetime in seconds, as IAM stated it (always positive).
    pub expires_in: u64,
    /// The account id: the access token's `account.bss` claim, if it has one.
    pub account: Option<String>,
}

/// A registry token the registry token API created.
#[derive(Debug)]
pub struct RegistryToken {
    /// The token (a JWT), used as the password of user `token`.
    pub token: Secret<String>,
    /// Its identifier: the JWT `jti` claim, for `DELETE /api/v1/tokens/{id}`.
    pub id: String,
    /// Its expiry (JWT `exp`, Unix seconds), if it has one.
    pub expires_at: Option<u64>,
}

/// The outcome of a registry token creation that got an answer.
#[derive(Debug)]
pub enum Created {
    /// A new token.
    Token(RegistryToken),
    /// The registry refused to create one: any 4xx other than 401 and 429, or
    /// 501. The live service discontinued creation in 2019.
    Refused {
        /// The HTTP status.
        status: u16,
        /// One line: the status and IBM's code and message, e.g.
        /// `403 Forbidden: CRG0140E: …`.
        reason: String,
    },
}

/// The HTTP client of the helper. One per process, built only on a cache miss.
pub struct Minter {
    /// The clients, and the time bound of one public call.
    http: Http,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // reqwest's Client Debug can show proxy URLs, which may hold passwords.
        f.debug_struct("Minter")
            .field("bound", &self.http.bound())
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter bounded by [`MINT_BOUND`]. Cheap: the HTTP clients are built
    /// on first use.
    pub fn new() -> Result<Minter> {
        Ok(Minter::with_bound(MINT_BOUND))
    }

    /// A minter whose public calls each take at most `bound` (tests use a
    /// short one), capped at [`MAX_BOUND`].
    pub fn with_bound(bound: Duration) -> Minter {
        Minter {
            http: Http::new(bound.min(MAX_BOUND)),
        }
    }

    /// Exchanges an API key for an IAM access token
    /// (`POST {iam}/identity/token`, API-key grant, no client credentials).
    /// Retried up to twice on connection trouble, timeouts, 5xx and 429.
    pub fn iam_token(&self, iam: &Endpoint, api_key: &Secret<String>) -> Result<IamToken> {
        let call = Call {
            what: "IAM token request",
            url: iam.join(IAM_TOKEN_PATH),
            secret: api_key.expose(),
        };
        let body = wire::apikey_form(api_key.expose());
        self.token_request(iam, &call, body, None)
    }

    /// Exchanges a compute-resource (CR) token for an IAM access token of the
    /// trusted profile (`POST {iam}/identity/token`, cr-token grant, no
    /// client credentials). Retried as [`Minter::iam_token`].
    pub fn cr_token(
        &self,
        iam: &Endpoint,
        cr_token: &Secret<String>,
        profile: &TrustedProfile,
    ) -> Result<IamToken> {
        let call = Call {
            what: "IAM cr-token request",
            url: iam.join(IAM_TOKEN_PATH),
            secret: cr_token.expose(),
        };
        let body = wire::cr_token_form(cr_token.expose(), profile);
        self.token_request(iam, &call, body, None)
    }

    /// Refreshes an `ibmcloud login` session (`POST {iam}/identity/token`,
    /// refresh grant, the CLI's `bx:bx` client). The new refresh token IAM
    /// returns is dropped: the session file is the CLI's, never written here.
    /// A session that is over (`BXNIM0408E`, `BXNIM0439E`) says to log in again.
    pub fn refresh(&self, iam: &Endpoint, refresh_token: &Secret<String>) -> Result<IamToken> {
        let call = Call {
            what: "IAM refresh request",
            url: iam.join(IAM_TOKEN_PATH),
            secret: refresh_token.expose(),
        };
        let body = wire::refresh_form(refresh_token.expose());
        self.token_request(iam, &call, body, Some(BX_CLIENT))
    }

    /// One IAM token request: the form `body`, `authorization` if any;
    /// retried on connection trouble, timeouts, 5xx and 429.
    fn token_request(
        &self,
        iam: &Endpoint,
        call: &Call,
        body: String,
        authorization: Option<&'static str>,
    ) -> Result<IamToken> {
        let reply = self.http.send(iam, call, Retry::Transient, |client| {
            let request = client
                .post(&call.url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json");
            match authorization {
                Some(value) => request.header(AUTHORIZATION, value),
                None => request,
            }
            .body(body.clone())
        })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        if !reply.status.is_success() {
            let why = wire::status_error(reply.status, &reply.body, call.secret);
            let over = wire::error_code(&reply.body)
                .is_some_and(|code| SESSION_OVER.contains(&code.as_str()));
            return Err(match authorization.is_some() && over {
                true => call.fail(format!("{why}: run `ibmcloud login` again")),
                false => call.fail(why),
            });
        }
        wire::parse_iam_token(&reply.body)
            .map_err(|why| call.fail(format!("malformed response: {why}")))
    }

    /// An IAM access token for this VPC virtual server from its instance
    /// metadata service (../shared/fleet.md §3): an instance identity token
    /// (`PUT {metadata}/instance_identity/v1/token`, `Metadata-Flavor: ibm`),
    /// then the IAM token (`POST …/iam_token`) for `profile`, or the
    /// instance's default trusted profile. No IAM call: the metadata service
    /// answers an IAM access token. Both requests share one bound.
    pub fn vpc_token(
        &self,
        metadata: &Endpoint,
        profile: Option<&TrustedProfile>,
    ) -> Result<IamToken> {
        let deadline = std::time::Instant::now() + self.http.bound();
        let query = format!("?version={METADATA_VERSION}");
        let identity_call = Call {
            what: "VPC instance identity token request",
            url: metadata.join(METADATA_TOKEN_PATH),
            secret: "",
        };
        let iam_call_url = metadata.join(METADATA_IAM_TOKEN_PATH);
        let iam_body = wire::metadata_iam_body(profile).map_err(|why| {
            let call = Call {
                what: "VPC IAM token request",
                url: iam_call_url.clone(),
                secret: "",
            };
            call.fail(why)
        })?;
        let lifetime = serde_json::json!({ "expires_in": INSTANCE_TOKEN_LIFETIME }).to_string();
        let url = format!("{}{query}", identity_call.url);
        let reply = self.http.send_until(
            deadline,
            metadata,
            &identity_call,
            Retry::Transient,
            |client| {
                client
                    .put(&url)
                    .header("Metadata-Flavor", "ibm")
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, "application/json")
                    .body(lifetime.clone())
            },
        )?;
        crate::debug!("mint", "{} answered {}", identity_call.url, reply.status);
        if !reply.status.is_success() {
            return Err(identity_call.fail(wire::status_error(reply.status, &reply.body, "")));
        }
        let (identity, _) = wire::parse_metadata_token(&reply.body)
            .map_err(|why| identity_call.fail(format!("malformed response: {why}")))?;
        let identity = Secret::new(identity);
        let call = Call {
            what: "VPC IAM token request",
            url: iam_call_url,
            secret: identity.expose(),
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", identity.expose()))
            .map_err(|_| {
                identity_call.fail("malformed response: the token is not a valid header value")
            })?;
        authorization.set_sensitive(true);
        let url = format!("{}{query}", call.url);
        let reply =
            self.http
                .send_until(deadline, metadata, &call, Retry::Transient, |client| {
                    let request = client
                        .post(&url)
                        .header(AUTHORIZATION, authorization.clone())
                        .header(ACCEPT, "application/json");
                    match iam_body.is_empty() {
                        true => request,
                        false => request
                            .header(CONTENT_TYPE, "application/json")
                            .body(iam_body.clone()),
                    }
                })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        if !reply.status.is_success() {
            return Err(call.fail(wire::status_error(reply.status, &reply.body, call.secret)));
        }
        let (access_token, expires_in) = wire::parse_metadata_token(&reply.body)
            .map_err(|why| call.fail(format!("malformed response: {why}")))?;
        let account = wire::account_of(&access_token);
        Ok(IamToken {
            access_token: Secret::new(access_token),
            expires_in,
            account,
        })
    }

    /// IAM's clock: the `Date` of its answer to a `GET` of the token URL,
    /// in Unix seconds. The request carries no secret, and any status will
    /// do (IAM takes only `POST` there); an answer without a `Date` is an
    /// error. Retried as the token request is.
    pub fn server_date(&self, iam: &Endpoint) -> Result<u64> {
        let call = Call {
            what: "IAM clock request",
            url: iam.join(IAM_TOKEN_PATH),
            secret: "",
        };
        let reply = self.http.send(iam, &call, Retry::Transient, |client| {
            client.get(&call.url).header(ACCEPT, "application/json")
        })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        reply
            .date
            .ok_or_else(|| call.fail(format!("{} without a Date header", reply.status)))
    }

    /// Creates a registry token (`POST {api}/api/v1/tokens?description=…&permanent=false&write=…`).
    ///
    /// A refusal (any 4xx but 401 and 429, or 501) is `Ok(Created::Refused)`;
    /// other failures are errors. Retried only when the connection could not
    /// be made: the request is not idempotent.
    pub fn create_registry_token(
        &self,
        api: &Endpoint,
        access_token: &Secret<String>,
        account: &str,
        description: &str,
        write: bool,
    ) -> Result<Created> {
        let call = Call {
            what: "registry token request",
            url: api.join(TOKENS_PATH),
            secret: access_token.expose(),
        };
        let url = format!("{}?{}", call.url, wire::create_query(description, write));
        let (authorization, account) = registry_headers(&call, access_token, account)?;
        let reply = self.http.send(api, &call, Retry::ConnectOnly, |client| {
            client
                .post(&url)
                .header(AUTHORIZATION, authorization.clone())
                .header("Account", account.clone())
                .header(ACCEPT, "application/json")
                .body(Vec::new())
        })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        let status = reply.status;
        if status == StatusCode::OK || status == StatusCode::CREATED {
            let token = wire::parse_registry_token(&reply.body)
                .map_err(|why| call.fail(format!("malformed response: {why}")))?;
            // The id is logged and kept for revocation: never one that could
            // carry the access token it was created with (issue 10.7).
            if scrub::could_carry(&token.id, call.secret) {
                return Err(call.fail("malformed response: the token id echoes the access token"));
            }
            return Ok(Created::Token(token));
        }
        let refused = (status.is_client_error()
            && status != StatusCode::UNAUTHORIZED
            && status != StatusCode::TOO_MANY_REQUESTS)
            || status == StatusCode::NOT_IMPLEMENTED;
        let why = wire::status_error(status, &reply.body, call.secret);
        if refused {
            return Ok(Created::Refused {
                status: status.as_u16(),
                reason: why,
            });
        }
        Err(call.fail(why))
    }

    /// Deletes a registry token (`DELETE {api}/api/v1/tokens/{id}`). A token
    /// that is already gone (404) counts as deleted. Retried only when the
    /// connection could not be made.
    pub fn delete_registry_token(
        &self,
        api: &Endpoint,
        access_token: &Secret<String>,
        account: &str,
        id: &str,
    ) -> Result<()> {
        let call = Call {
            what: "registry token delete request",
            url: api.join(&wire::token_path(id)),
            secret: access_token.expose(),
        };
        let (authorization, account) = registry_headers(&call, access_token, account)?;
        let reply = self.http.send(api, &call, Retry::ConnectOnly, |client| {
            client
                .delete(&call.url)
                .header(AUTHORIZATION, authorization.clone())
                .header("Account", account.clone())
                .header(ACCEPT, "application/json")
        })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(call.fail(wire::status_error(reply.status, &reply.body, call.secret)))
    }
}

/// The `Authorization` and `Account` headers of a registry call, checked
/// before anything is sent. The token's header is marked sensitive.
fn registry_headers(
    call: &Call,
    access_token: &Secret<String>,
    account: &str,
) -> Result<(HeaderValue, HeaderValue)> {
    let mut authorization = HeaderValue::from_str(&format!("Bearer {}", access_token.expose()))
        .map_err(|_| call.fail("the access token is not a valid header value"))?;
    authorization.set_sensitive(true);
    if account.is_empty() {
        return Err(call.fail("no account id"));
    }
    let account = HeaderValue::from_str(account)
        .map_err(|_| call.fail("the account id is not a valid header value"))?;
    Ok((authorization, account))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fake_ibm::{Config, FakeIbm, Fault, FaultKind, Request};

    use super::*;
    use crate::jwt;

    pub(super) const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
    /// A canary API key: it must appear in no error and no Debug output.
    pub(super) const KEY: &str = "canary-key-7Qx/+= &z";
    const UNKNOWN_KEY: &str = "canary-unknown-key-3Vb";
    const UA: &str = concat!("docker-credential-ibmcr/", env!("CARGO_PKG_VERSION"));

    pub(super) fn server() -> FakeIbm {
        FakeIbm::start(Config {
            api_keys: BTreeMap::from([(KEY.to_string(), ACCOUNT.to_string())]),
            iam_lifetime: 1200,
            ..Default::default()
        })
    }

    pub(super) fn endpoint(fake: &FakeIbm) -> Endpoint {
        Endpoint::parse(&fake.url()).unwrap()
    }

    pub(super) fn key(k: &str) -> Secret<String> {
        Secret::new(k.to_string())
    }

    pub(super) fn fault(method: &str, path: &str, kind: FaultKind, times: u32) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path_prefix: path.to_string(),
            kind,
            times,
        }
    }

    /// What a new minter gets from the fake's IAM for the canary key.
    pub(super) fn iam_with_key(fake: &FakeIbm) -> Result<IamToken> {
        Minter::new().unwrap().iam_token(&endpoint(fake), &key(KEY))
    }

    /// One line, and none of `secrets` in it.
    fn assert_clean(text: &str, secrets: &[&str]) {
        assert!(!text.contains(['\n', '\r']), "not one line: {text:?}");
        for s in secrets {
            assert!(!text.contains(s), "secret in {text:?}");
        }
    }

    pub(super) fn error_text(err: &anyhow::Error, secrets: &[&str]) -> String {
        let text = err.to_string();
        assert_eq!(text, format!("{err:#}"), "one message, no chain");
        assert_clean(&text, secrets);
        // Debug may add a backtrace (RUST_BACKTRACE), never a secret.
        let debug = format!("{err:?}");
        for s in secrets {
            assert!(!debug.contains(s), "secret in {debug:?}");
        }
        text
    }

    #[test]
    fn minter_debug_shows_no_client() {
        let m = Minter::with_bound(Duration::from_secs(3));
        assert_eq!(format!("{m:?}"), "Minter { bound: 3s, .. }");
    }

    // ---- against the fake IBM API ----

    #[test]
    fn iam_request_is_exactly_the_api_key_grant() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let token = minter.iam_token(&endpoint(&fake), &key(KEY)).unwrap();
        assert_eq!(token.expires_in, 1200);
        assert_eq!(token.account.as_deref(), Some(ACCOUNT));
        assert!(token.access_token.expose().starts_with("ey"));
        assert_clean(&format!("{token:?}"), &[KEY, token.access_token.expose()]);

        let r = &only_request(&fake, "POST", "/identity/token");
        assert_eq!(r.query, "");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("user-agent"), Some(UA));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(
            r.body_str(),
            "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey\
             &apikey=canary-key-7Qx%2F%2B%3D%20%26z"
        );
        assert_eq!(r.form_param("apikey").as_deref(), Some(KEY));
        assert_eq!(fake.stats().iam_mints, 1);
    }

    #[test]
    fn iam_s_clock_is_the_date_of_a_get_without_a_secret() {
        // issue 12.2: doctor compares this machine's clock with IAM's
        let fake = server();
        let secs =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        #[allow(clippy::disallowed_methods)] // the test compares with the real clock
        let before = secs(std::time::SystemTime::now());
        let date = Minter::new()
            .unwrap()
            .server_date(&endpoint(&fake))
            .unwrap();
        #[allow(clippy::disallowed_methods)]
        let after = secs(std::time::SystemTime::now());
        assert!((before..=after).contains(&date), "{before} {date} {after}");
        let r = only_request(&fake, "GET", "/identity/token");
        assert!(r.body.is_empty());
        assert_eq!(r.header("authorization"), None);
        assert_eq!(fake.stats().iam_mints, 0);
    }

    #[test]
    fn iam_accepts_the_token_url_form() {
        let fake = server();
        let iam = Endpoint::parse_iam(&format!("{}/identity/token", fake.url())).unwrap();
        Minter::new().unwrap().iam_token(&iam, &key(KEY)).unwrap();
        assert_eq!(fake.count("POST", "/identity/token"), 1);
    }

    #[test]
    fn unknown_key_is_one_line_without_the_key() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let err = minter
            .iam_token(&endpoint(&fake), &key(UNKNOWN_KEY))
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[UNKNOWN_KEY]),
            format!(
                "IAM token request to {}/identity/token failed: 400 Bad Request: \
                 BXNIM0415E: Provided API key could not be found",
                fake.url()
            )
        );
        assert_eq!(
            fake.count("POST", "/identity/token"),
            1,
            "4xx is not retried"
        );
    }

    /// The message of an error whose server text was withheld (issue 10.7).
    const WITHHELD: &str = "the server's message was withheld: it may echo the secret sent";

    /// An error answer with IBM's `code` and a `message` that echoes something.
    fn echo(method: &str, path: &str, status: u16, code: &str, message: String) -> Fault {
        let kind = FaultKind::Error {
            status,
            code: code.to_string(),
            message,
        };
        fault(method, path, kind, 1)
    }

    #[test]
    fn an_iam_error_that_echoes_the_key_keeps_only_ibms_code() {
        // issue 10.7: IAM answers 400 with the key echoed in its message:
        // upper-cased, base64 (std, padded and not), percent-encoded, cut to
        // 12 characters, or as it was (masked, so never shown, before)
        let fake = server();
        let upper = KEY.to_uppercase();
        for echoed in [
            upper.as_str(),
            "Y2FuYXJ5LWtleS03UXgvKz0gJno=",
            "Y2FuYXJ5LWtleS03UXgvKz0gJno",
            "canary-key-7Qx%2F%2B%3D%20%26z",
            &KEY[..12],
            KEY,
        ] {
            let message = format!("Provided API key {echoed} could not be found");
            fake.inject(echo("POST", "/identity", 400, "BXNIM0415E", message));
            let err = iam_with_key(&fake).unwrap_err();
            assert_eq!(
                error_text(&err, &[KEY, echoed]),
                format!(
                    "IAM token request to {}/identity/token failed: 400 Bad Request: \
                     BXNIM0415E: {WITHHELD}",
                    fake.url()
                )
            );
        }
        assert_eq!(fake.count("POST", "/identity/token"), 6);
    }

    #[test]
    fn a_token_id_that_echoes_the_access_token_is_refused() {
        // issue 10.7: the jti is logged and kept for revocation
        let fake = server();
        let minter = Minter::new().unwrap();
        let api = endpoint(&fake);
        let (access, account) = access_token(&fake, &minter);
        let token = access.expose();
        let jti = &token[token.len() - 20..];
        let body = serde_json::json!({ "token": fake_ibm::make_jwt(&serde_json::json!({ "jti": jti, "exp": 4_000_000_000u64 })) });
        fake.inject(Fault::new(
            "/api/v1/tokens",
            FaultKind::Reply { status: 200, body },
            1,
        ));
        let err = minter
            .create_registry_token(&api, &access, &account, "d", true)
            .unwrap_err();
        assert!(
            error_text(&err, &[token, jti]).ends_with("the token id echoes the access token"),
            "{err:#}"
        );
    }

    #[test]
    fn a_registry_error_that_echoes_the_access_token_keeps_only_ibms_code() {
        // issue 10.7: on registry calls the secret sent is the IAM access token
        let fake = server();
        let minter = Minter::new().unwrap();
        let api = endpoint(&fake);
        let (access, account) = access_token(&fake, &minter);
        let token = access.expose();
        let upper = token.to_uppercase();
        for echoed in [upper.as_str(), &token[token.len() - 12..], token] {
            let message = || format!("Token {echoed} is not valid here");
            fake.inject(echo("POST", "/api/v1/tokens", 403, "CRG0140E", message()));
            match minter.create_registry_token(&api, &access, &account, "d", true) {
                Ok(Created::Refused { reason, .. }) => {
                    assert_clean(&reason, &[token, echoed]);
                    assert_eq!(reason, format!("403 Forbidden: CRG0140E: {WITHHELD}"));
                }
                other => panic!("{other:?}"),
            }
            fake.inject(echo("POST", "/api/v1/tokens", 401, "CRG0009E", message()));
            let err = minter
                .create_registry_token(&api, &access, &account, "d", true)
                .unwrap_err();
            assert_eq!(
                error_text(&err, &[token, echoed]),
                format!(
                    "registry token request to {}/api/v1/tokens failed: 401 Unauthorized: \
                     CRG0009E: {WITHHELD}",
                    fake.url()
                )
            );
            fake.inject(echo("DELETE", "/api/v1/tokens", 500, "CRG9999E", message()));
            let err = minter
                .delete_registry_token(&api, &access, &account, "x")
                .unwrap_err();
            assert_eq!(
                error_text(&err, &[token, echoed]),
                format!(
                    "registry token delete request to {}/api/v1/tokens/x failed: \
                     500 Internal Server Error: CRG9999E: {WITHHELD}",
                    fake.url()
                )
            );
        }
    }

    #[test]
    fn garbage_json_is_a_malformed_response() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::GarbageJson, 0));
        let err = iam_with_key(&fake).unwrap_err();
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to {}/identity/token failed: malformed response: not valid JSON",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/identity/token"), 1, "a 200 is final");
    }

    /// The one request `fake` recorded, checked to be `method path`.
    fn only_request(fake: &FakeIbm, method: &str, path: &str) -> Request {
        let mut requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let r = requests.remove(0);
        assert_eq!((r.method.as_str(), r.path.as_str()), (method, path));
        r
    }

    /// An access token from the fake's IAM.
    pub(super) fn access_token(fake: &FakeIbm, minter: &Minter) -> (Secret<String>, String) {
        let iam = minter.iam_token(&endpoint(fake), &key(KEY)).unwrap();
        let account = iam.account.clone().unwrap();
        fake.clear_requests();
        (iam.access_token, account)
    }

    #[test]
    fn create_and_delete_a_registry_token() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let api = endpoint(&fake);
        let (access, account) = access_token(&fake, &minter);
        let created = minter
            .create_registry_token(&api, &access, &account, "ci host/7 ü", true)
            .unwrap();
        let Created::Token(token) = created else {
            panic!("refused: {created:?}");
        };
        let claims = jwt::claims(token.token.expose()).unwrap();
        assert_eq!(claims["jti"].as_str(), Some(token.id.as_str()));
        assert!(token.expires_at.is_some());
        assert_eq!(token.expires_at, jwt::expiry(token.token.expose()));
        assert_clean(
            &format!("{token:?}"),
            &[token.token.expose(), access.expose()],
        );

        let r = &only_request(&fake, "POST", "/api/v1/tokens");
        assert_eq!(
            r.query,
            "description=ci%20host%2F7%20%C3%BC&permanent=false&write=true"
        );
        assert_eq!(r.query_param("description").as_deref(), Some("ci host/7 ü"));
        let bearer = format!("Bearer {}", access.expose());
        assert_eq!(r.header("authorization"), Some(bearer.as_str()));
        assert_eq!(r.header("account"), Some(ACCOUNT));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(r.header("user-agent"), Some(UA));
        assert_eq!(r.header("content-length"), Some("0"));
        assert!(r.body.is_empty());
        assert_eq!(fake.stats().registry_token_creates, 1);

        minter
            .delete_registry_token(&api, &access, &account, &token.id)
            .unwrap();
        let requests = fake.requests();
        let r = requests.last().unwrap();
        assert_eq!(r.method, "DELETE");
        assert_eq!(r.path, format!("/api/v1/tokens/{}", token.id));
        assert_eq!(r.header("authorization"), Some(bearer.as_str()));
        assert_eq!(r.header("account"), Some(ACCOUNT));
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(fake.stats().registry_token_deletes, 1);

        // Already gone (404) counts as deleted.
        minter
            .delete_registry_token(&api, &access, &account, &token.id)
            .unwrap();
        assert_eq!(fake.stats().registry_token_deletes, 1);
    }

    #[test]
    fn read_only_tokens_say_write_false() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        let created = minter
            .create_registry_token(&endpoint(&fake), &access, &account, "d", false)
            .unwrap();
        assert!(matches!(created, Created::Token(_)));
        assert_eq!(
            fake.requests()[0].query,
            "description=d&permanent=false&write=false"
        );
    }

    #[test]
    fn refusal_is_an_answer_not_an_error() {
        let fake = server();
        fake.update(|c| c.refuse_token_creation = true);
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        let created = minter
            .create_registry_token(&endpoint(&fake), &access, &account, "d", true)
            .unwrap();
        match created {
            Created::Refused { status, reason } => {
                assert_eq!(status, 403);
                assert_eq!(
                    reason,
                    "403 Forbidden: CRG0140E: Registry tokens can no longer be created. \
                     Use IAM API keys instead."
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fake.count("POST", "/api/v1/tokens"), 1);
    }

    #[test]
    fn refusal_statuses() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        for (status, refused) in [
            (404, true),
            (410, true),
            (405, true),
            (501, true),
            (429, false),
            (500, false),
            (502, false),
        ] {
            fake.inject(fault(
                "POST",
                "/api/v1/tokens",
                FaultKind::Status(status),
                1,
            ));
            let got = minter.create_registry_token(&endpoint(&fake), &access, &account, "d", true);
            match got {
                Ok(Created::Refused { status: s, .. }) => assert!(refused && s == status),
                Err(e) => assert!(!refused && e.to_string().contains(&status.to_string())),
                Ok(Created::Token(_)) => panic!("{status} made a token"),
            }
        }
        assert_eq!(fake.count("POST", "/api/v1/tokens"), 7, "none retried");
    }

    #[test]
    fn create_with_a_bad_access_token_is_an_error() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let bogus = key("canary-bogus-access-token");
        let err = minter
            .create_registry_token(&endpoint(&fake), &bogus, ACCOUNT, "d", true)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &["canary-bogus-access-token"]),
            format!(
                "registry token request to {}/api/v1/tokens failed: 401 Unauthorized: \
                 CRG0009E: You are not authorized to access the specified account.",
                fake.url()
            )
        );
        let err = minter
            .delete_registry_token(&endpoint(&fake), &bogus, ACCOUNT, "some id")
            .unwrap_err();
        assert_eq!(
            error_text(&err, &["canary-bogus-access-token"]),
            format!(
                "registry token delete request to {}/api/v1/tokens/some%20id failed: \
                 401 Unauthorized: CRG0009E: You are not authorized to access the \
                 specified account.",
                fake.url()
            )
        );
    }

    #[test]
    fn delete_errors_other_than_404_are_errors() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        fake.inject(fault("DELETE", "/api/v1/tokens", FaultKind::Status(500), 0));
        let err = minter
            .delete_registry_token(&endpoint(&fake), &access, &account, "x")
            .unwrap_err();
        assert!(error_text(&err, &[access.expose()]).contains("500 Internal Server Error"));
        assert_eq!(fake.count("DELETE", "/api/v1/tokens/x"), 1);
    }

    #[test]
    fn header_values_are_checked_before_sending() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let access = key("canary-access");
        for account in ["", "a\nb"] {
            let err = minter
                .create_registry_token(&endpoint(&fake), &access, account, "d", true)
                .unwrap_err();
            error_text(&err, &["canary-access"]);
        }
        let bad = key("canary\r\nX-Injected: 1");
        let err = minter
            .create_registry_token(&endpoint(&fake), &bad, ACCOUNT, "d", true)
            .unwrap_err();
        error_text(&err, &["canary"]);
        assert!(fake.requests().is_empty());
    }

    // ---- issue 11: the cr-token and refresh grants, the VPC instance identity ----

    const K8S: &str = "https://kubernetes.default.svc";
    const SA: &str = "system:serviceaccount:ci:builder";

    fn with_profile() -> (FakeIbm, fake_ibm::TrustedProfile) {
        let fake = server();
        let profile =
            fake_ibm::TrustedProfile::new("ci-pull", ACCOUNT, &[SA, fake_ibm::VPC_INSTANCE_SUB]);
        fake.add_profile(profile.clone());
        (fake, profile)
    }

    #[test]
    fn cr_token_request_is_exactly_the_cr_token_grant() {
        let (fake, profile) = with_profile();
        let cr = key(&fake.cr_token(K8S, SA, 600));
        let minter = Minter::new().unwrap();
        for (given, field) in [
            (profile.id.as_str(), "profile_id"),
            (profile.crn.as_str(), "profile_crn"),
            ("ci-pull", "profile_name"),
        ] {
            fake.clear_requests();
            let named = TrustedProfile::parse(given).unwrap();
            let token = minter.cr_token(&endpoint(&fake), &cr, &named).unwrap();
            assert_eq!(token.account.as_deref(), Some(ACCOUNT));
            let claims = jwt::claims(token.access_token.expose()).unwrap();
            assert_eq!(claims["sub"].as_str(), Some(profile.id.as_str()));
            let r = &only_request(&fake, "POST", "/identity/token");
            assert_eq!(
                r.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
            assert_eq!(r.header("accept"), Some("application/json"));
            assert_eq!(r.header("authorization"), None, "no client credentials");
            assert_eq!(
                r.form_param("grant_type").as_deref(),
                Some("urn:ibm:params:oauth:grant-type:cr-token")
            );
            assert_eq!(
                r.form_param("cr_token").as_deref(),
                Some(cr.expose().as_str())
            );
            assert_eq!(r.form_param(field).as_deref(), Some(given));
            let fields = ["profile_id", "profile_crn", "profile_name"];
            let named = fields.iter().filter(|f| r.form_param(f).is_some()).count();
            assert_eq!(named, 1, "exactly one profile field");
        }
        assert_eq!(fake.stats().iam_mints_by_grant.get("cr-token"), Some(&3));
    }

    #[test]
    fn cr_token_failures_are_one_line_without_the_token() {
        let (fake, profile) = with_profile();
        let minter = Minter::new().unwrap();
        let id = TrustedProfile::Id(profile.id.clone());
        let expired = key(&fake.cr_token(K8S, SA, 0));
        let err = minter
            .cr_token(&endpoint(&fake), &expired, &id)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[expired.expose()]),
            format!(
                "IAM cr-token request to {}/identity/token failed: 400 Bad Request: \
                 BXNIM0407E: Provided CR token is expired",
                fake.url()
            )
        );
        let live = key(&fake.cr_token(K8S, SA, 600));
        let unknown = TrustedProfile::Id("Profile-unknown".into());
        let err = minter
            .cr_token(&endpoint(&fake), &live, &unknown)
            .unwrap_err();
        assert!(
            error_text(&err, &[live.expose()]).ends_with("BXNIM0399E: Trusted profile not found")
        );
        let stranger = key(&fake.cr_token(K8S, "system:serviceaccount:x:y", 600));
        let err = minter
            .cr_token(&endpoint(&fake), &stranger, &id)
            .unwrap_err();
        let text = error_text(&err, &[stranger.expose()]);
        assert!(text.contains("BXNIM0398E"), "{text}");
        assert_eq!(
            fake.count("POST", "/identity/token"),
            3,
            "4xx is not retried"
        );
    }

    #[test]
    fn refresh_is_the_cli_s_request_and_an_ended_session_says_log_in_again() {
        let fake = server();
        let (_, refresh_token) = fake.login(KEY).unwrap();
        let refresh_token = key(&refresh_token);
        let minter = Minter::new().unwrap();
        let token = minter.refresh(&endpoint(&fake), &refresh_token).unwrap();
        assert_eq!(token.account.as_deref(), Some(ACCOUNT));
        let r = &only_request(&fake, "POST", "/identity/token");
        assert_eq!(r.header("authorization"), Some("Basic Yng6Yng="));
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(
            r.body_str(),
            format!(
                "grant_type=refresh_token&refresh_token={}&response_type=cloud_iam",
                r.form_param("refresh_token").unwrap()
            )
        );
        assert_eq!(
            r.form_param("refresh_token").as_deref(),
            Some(refresh_token.expose().as_str())
        );
        fake.expire_sessions();
        let err = minter
            .refresh(&endpoint(&fake), &refresh_token)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[refresh_token.expose()]),
            format!(
                "IAM refresh request to {}/identity/token failed: 400 Bad Request: \
                 BXNIM0408E: Provided refresh token is expired: run `ibmcloud login` again",
                fake.url()
            )
        );
        let (_, other) = fake.login(KEY).unwrap();
        fake.invalidate_sessions();
        let err = minter.refresh(&endpoint(&fake), &key(&other)).unwrap_err();
        let text = error_text(&err, &[&other]);
        assert!(
            text.ends_with(
                "BXNIM0439E: Session invalidated due to inactivity: run `ibmcloud login` again"
            ),
            "{text}"
        );
        let err = minter
            .refresh(&endpoint(&fake), &key("unknown-refresh"))
            .unwrap_err();
        assert!(
            !error_text(&err, &["unknown-refresh"]).contains("ibmcloud login"),
            "another error"
        );
    }

    fn metadata(fake: &FakeIbm) -> Endpoint {
        Endpoint::parse_metadata(&fake.url()).unwrap()
    }

    #[test]
    fn vpc_token_is_two_metadata_calls_and_no_iam_call() {
        let (fake, profile) = with_profile();
        let minter = Minter::new().unwrap();
        let named = TrustedProfile::Id(profile.id.clone());
        let token = minter.vpc_token(&metadata(&fake), Some(&named)).unwrap();
        assert_eq!(token.expires_in, 1200);
        assert_eq!(token.account.as_deref(), Some(ACCOUNT));
        let requests = fake.requests();
        assert_eq!(requests.len(), 2, "{requests:#?}");
        let (put, post) = (&requests[0], &requests[1]);
        assert_eq!(
            (put.method.as_str(), put.path.as_str(), put.query.as_str()),
            ("PUT", "/instance_identity/v1/token", "version=2022-03-01")
        );
        assert_eq!(put.header("metadata-flavor"), Some("ibm"));
        assert_eq!(put.header("content-type"), Some("application/json"));
        assert_eq!(put.header("accept"), Some("application/json"));
        assert_eq!(put.header("authorization"), None);
        assert_eq!(put.body_str(), r#"{"expires_in":300}"#);
        assert_eq!(
            (
                post.method.as_str(),
                post.path.as_str(),
                post.query.as_str()
            ),
            (
                "POST",
                "/instance_identity/v1/iam_token",
                "version=2022-03-01"
            )
        );
        let bearer = post.header("authorization").unwrap();
        assert!(
            bearer.starts_with("Bearer ey"),
            "the instance identity token"
        );
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(
            post.body_str(),
            format!(r#"{{"trusted_profile":{{"id":"{}"}}}}"#, profile.id)
        );
        // By CRN, and with the instance's default profile (no body).
        let crn = TrustedProfile::Crn(profile.crn.clone());
        minter.vpc_token(&metadata(&fake), Some(&crn)).unwrap();
        fake.update(|c| c.vpc_default_profile = Some(profile.id.clone()));
        fake.clear_requests();
        minter.vpc_token(&metadata(&fake), None).unwrap();
        let post = &fake.requests()[1];
        assert!(post.body.is_empty());
        assert_eq!(post.header("content-type"), None);
        let stats = fake.stats();
        assert_eq!((stats.vpc_identity_tokens, stats.vpc_iam_tokens), (3, 3));
        assert_eq!(stats.iam_mints, 0);
        assert_eq!(fake.count("POST", "/identity/token"), 0);
    }

    #[test]
    fn vpc_token_failures_are_one_line_and_bounded() {
        let (fake, profile) = with_profile();
        let minter = Minter::new().unwrap();
        // A name cannot be sent: refused before any request.
        let err = minter
            .vpc_token(
                &metadata(&fake),
                Some(&TrustedProfile::Name("ci-pull".into())),
            )
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[]),
            format!(
                "VPC IAM token request to {}/instance_identity/v1/iam_token failed: the VPC \
                 instance identity takes a trusted profile id (Profile-…) or CRN (crn:…), not a name",
                fake.url()
            )
        );
        assert!(fake.requests().is_empty());
        // A profile that does not trust the instance.
        let other = fake_ibm::TrustedProfile::new("k8s-only", ACCOUNT, &[SA]);
        fake.add_profile(other.clone());
        let err = minter
            .vpc_token(&metadata(&fake), Some(&TrustedProfile::Id(other.id)))
            .unwrap_err();
        let text = error_text(&err, &[]);
        assert!(
            text.contains("VPC IAM token request")
                && text.contains("403 Forbidden: trusted_profile_not_linked"),
            "{text}"
        );
        assert!(!text.contains("Bearer"), "{text}");
        // Nothing listening: one line, quickly.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let closed = Endpoint::parse_metadata(&format!("http://127.0.0.1:{port}")).unwrap();
        let started = std::time::Instant::now();
        let err = minter
            .vpc_token(&closed, Some(&TrustedProfile::Id(profile.id.clone())))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            error_text(&err, &[]),
            format!(
                "VPC instance identity token request to http://127.0.0.1:{port}/instance_identity/v1/token \
                 failed: could not connect (connection refused)"
            )
        );
        // Both calls share one bound.
        fake.inject(fault(
            "POST",
            "/instance_identity",
            FaultKind::Delay(Duration::from_secs(3)),
            0,
        ));
        let started = std::time::Instant::now();
        let err = Minter::with_bound(Duration::from_millis(800))
            .vpc_token(
                &metadata(&fake),
                Some(&TrustedProfile::Id(profile.id.clone())),
            )
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(error_text(&err, &[]).ends_with("timed out after 800ms"));
    }
}
