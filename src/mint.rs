//! The HTTP client: IAM access tokens from an API key, and registry tokens
//! from an access token (../shared/ibm-api.md §1, §2).
//!
//! This is the only module that imports reqwest. A [`Minter`] is built only
//! on a cache miss, and its clients are built on first use, so a cached `get`
//! never pays for a TLS stack.
//!
//! Every public call is bounded by [`MINT_BOUND`] in total (connects, retries,
//! waits and body reads together). Only the IAM token request is retried on
//! server trouble; the registry token calls are retried only when the
//! connection could not be made, because `POST /api/v1/tokens` is not
//! idempotent (../shared/decisions.md §5).
//!
//! Errors are one line: `<request> to <url> failed: <why>`, where `<why>` is
//! the HTTP status and IBM's code and message, or what went wrong on the
//! connection. Text taken from a server is stripped of control characters,
//! cleaned of the secrets sent with the request and capped at 200 characters.
//! No secret ever reaches an error, and reqwest's own errors (which carry
//! URLs and internals) are never shown as they are.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::jwt;
use crate::secret::Secret;

/// IBM Cloud IAM, public endpoint.
pub const DEFAULT_IAM: &str = "https://iam.cloud.ibm.com";
/// IBM Cloud IAM on the private network (implied by `private.*` registry hosts).
pub const PRIVATE_IAM: &str = "https://private.iam.cloud.ibm.com";

/// The most one public call of [`Minter`] may take, retries and waits included.
pub const MINT_BOUND: Duration = Duration::from_secs(15);
/// The largest bound [`Minter::with_bound`] accepts.
pub const MAX_BOUND: Duration = Duration::from_secs(3600);
/// How long a TCP + TLS connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Waits before the first and second retry; their count is the number of retries.
pub const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(600)];

/// The User-Agent of every request.
const USER_AGENT: &str = concat!("docker-credential-ibmcr/", env!("CARGO_PKG_VERSION"));
/// IAM's token path, below the IAM base URL.
const IAM_TOKEN_PATH: &str = "/identity/token";
/// The registry token collection, below the registry API base URL.
const TOKENS_PATH: &str = "/api/v1/tokens";
/// The API-key grant type (../shared/ibm-api.md §2.1).
pub(crate) const APIKEY_GRANT: &str = "urn:ibm:params:oauth:grant-type:apikey";
/// The largest response body read; a larger one is an error, not a memory hog.
const MAX_BODY: u64 = 1 << 20;
/// The most characters of server-supplied text that go into a message.
const MAX_SERVER_TEXT: usize = 200;

/// A base URL the helper may call: https, or http only on a loopback host
/// (127.0.0.0/8, localhost, [::1]).
///
/// Held normalised: scheme and host lower-case, no default port, no trailing
/// `/`, no user name or password, no query and no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base: String,
    loopback: bool,
}

impl Endpoint {
    /// Parses a base URL. Trims whitespace and trailing `/`; rejects a scheme
    /// other than https (http only for a loopback host), a user name or
    /// password, a query and a fragment.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let trimmed = url.trim().trim_end_matches('/');
        // Never echo a query or fragment: it is where a pasted secret would sit.
        let shown = clean(&crate::log::redact_userinfo(
            trimmed.split(['?', '#']).next().unwrap_or_default(),
        ));
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
        })
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
    /// and the only hosts allowed plain http.
    pub fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// The URL of `path` (which starts with `/`) below this base.
    fn join(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

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
    /// The time bound of one public call.
    bound: Duration,
    /// For remote endpoints: honours the proxy variables, https only.
    proxied: OnceLock<Client>,
    /// For loopback endpoints: never through a proxy.
    direct: OnceLock<Client>,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // reqwest's Client Debug can show proxy URLs, which may hold passwords.
        f.debug_struct("Minter")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// How a request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Safe to repeat: on connection trouble, timeouts, 5xx and 429.
    Transient,
    /// Not idempotent: only when the connection could not be made.
    ConnectOnly,
}

/// One request, for messages and for scrubbing what servers say.
struct Call<'a> {
    /// `IAM token request`.
    what: &'static str,
    /// The URL to name in messages (no query string).
    url: String,
    /// Secrets that were sent and must never be echoed back.
    secret: &'a str,
}

impl Call<'_> {
    /// The one-line error of this call.
    fn fail(&self, why: impl fmt::Display) -> anyhow::Error {
        anyhow!("{} to {} failed: {why}", self.what, self.url)
    }
}

/// A response, read.
struct Reply {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
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
            bound: bound.min(MAX_BOUND),
            proxied: OnceLock::new(),
            direct: OnceLock::new(),
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
        let body = format!(
            "grant_type={}&apikey={}",
            percent_encode(APIKEY_GRANT),
            percent_encode(api_key.expose())
        );
        let reply = self.send(iam, &call, Retry::Transient, |client| {
            client
                .post(&call.url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(body.clone())
        })?;
        crate::debug!("mint", "{} answered {}", call.url, reply.status);
        if !reply.status.is_success() {
            return Err(call.fail(status_error(&reply, &call)));
        }
        parse_iam_token(&reply.body).map_err(|why| call.fail(format!("malformed response: {why}")))
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
        let url = format!(
            "{}?description={}&permanent=false&write={write}",
            call.url,
            percent_encode(description)
        );
        let (authorization, account) = registry_headers(&call, access_token, account)?;
        let reply = self.send(api, &call, Retry::ConnectOnly, |client| {
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
            return parse_registry_token(&reply.body)
                .map(Created::Token)
                .map_err(|why| call.fail(format!("malformed response: {why}")));
        }
        let refused = (status.is_client_error()
            && status != StatusCode::UNAUTHORIZED
            && status != StatusCode::TOO_MANY_REQUESTS)
            || status == StatusCode::NOT_IMPLEMENTED;
        if refused {
            return Ok(Created::Refused {
                status: status.as_u16(),
                reason: status_error(&reply, &call),
            });
        }
        Err(call.fail(status_error(&reply, &call)))
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
            url: api.join(&format!("{TOKENS_PATH}/{}", percent_encode(id))),
            secret: access_token.expose(),
        };
        let (authorization, account) = registry_headers(&call, access_token, account)?;
        let reply = self.send(api, &call, Retry::ConnectOnly, |client| {
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
        Err(call.fail(status_error(&reply, &call)))
    }

    /// The client for `endpoint`, built on first use.
    fn client(&self, endpoint: &Endpoint) -> std::result::Result<&Client, String> {
        let cell = if endpoint.is_loopback() {
            &self.direct
        } else {
            &self.proxied
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.bound)
            .user_agent(USER_AGENT)
            // A redirect could carry the API key in a re-sent body elsewhere.
            .redirect(Policy::none());
        let builder = if endpoint.is_loopback() {
            builder.no_proxy()
        } else {
            builder.https_only(true)
        };
        let client = builder
            .build()
            .map_err(|e| format!("could not set up the HTTP client ({})", cause(&e)))?;
        Ok(cell.get_or_init(|| client))
    }

    /// Sends the request `build` makes, reads the answer, and retries as
    /// `retry` allows, all within the bound. A status is not an error here.
    fn send(
        &self,
        endpoint: &Endpoint,
        call: &Call,
        retry: Retry,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply> {
        let deadline = Instant::now() + self.bound;
        let client = self.client(endpoint).map_err(|why| call.fail(why))?;
        let timed_out = || call.fail(format!("timed out after {}", human(self.bound)));
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            let wait = match exchange(build(client).timeout(remaining)) {
                Ok(reply) => {
                    let again = retry == Retry::Transient
                        && attempt < RETRY_BACKOFF.len()
                        && (reply.status.is_server_error()
                            || reply.status == StatusCode::TOO_MANY_REQUESTS);
                    if !again {
                        return Ok(reply);
                    }
                    let wait = reply.retry_after.unwrap_or(RETRY_BACKOFF[attempt]);
                    if !fits(wait, deadline) {
                        crate::debug!(
                            "mint",
                            "not retrying {}: the wait would pass the bound",
                            call.url
                        );
                        return Ok(reply);
                    }
                    crate::debug!(
                        "mint",
                        "{} answered {}, retrying in {wait:?}",
                        call.url,
                        reply.status
                    );
                    wait
                }
                Err(failure) => {
                    let past = Instant::now() >= deadline;
                    let why = failure.describe(past, self.bound);
                    let again = attempt < RETRY_BACKOFF.len()
                        && !past
                        && match retry {
                            Retry::Transient => failure.transient,
                            Retry::ConnectOnly => failure.before_sending,
                        };
                    if !again {
                        return Err(call.fail(why));
                    }
                    let wait = RETRY_BACKOFF[attempt];
                    if !fits(wait, deadline) {
                        return Err(call.fail(why));
                    }
                    crate::debug!("mint", "{} failed ({why}), retrying in {wait:?}", call.url);
                    wait
                }
            };
            thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// What went wrong on the wire, described without reqwest's own text.
struct Failure {
    /// The connection could not be made: nothing was sent.
    before_sending: bool,
    /// Worth another try for an idempotent request.
    transient: bool,
    /// A timeout fired (connect or overall).
    timeout: bool,
    /// What happened, e.g. `connection refused`.
    cause: String,
    /// The response body could not be read.
    reading: bool,
}

impl Failure {
    fn from_reqwest(err: &reqwest::Error) -> Failure {
        let cause = cause(err);
        let tls = io_kind(err) == Some(io::ErrorKind::InvalidData);
        Failure {
            before_sending: err.is_connect() && !tls,
            transient: !err.is_builder() && !tls,
            timeout: err.is_timeout(),
            cause,
            reading: false,
        }
    }

    fn from_body(err: &io::Error) -> Failure {
        let inner = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<reqwest::Error>());
        let mut failure = match inner {
            Some(e) => Failure::from_reqwest(e),
            None => Failure {
                before_sending: false,
                transient: true,
                timeout: err.kind() == io::ErrorKind::TimedOut,
                cause: cause(err),
                reading: false,
            },
        };
        failure.before_sending = false;
        failure.reading = true;
        failure
    }

    /// The `<why>` of the error line.
    fn describe(&self, past_deadline: bool, bound: Duration) -> String {
        if past_deadline || (self.timeout && !self.before_sending) {
            format!("timed out after {}", human(bound))
        } else if self.before_sending && self.timeout {
            format!(
                "could not connect (timed out after {})",
                human(CONNECT_TIMEOUT)
            )
        } else if self.before_sending {
            format!("could not connect ({})", self.cause)
        } else if self.reading {
            format!("could not read the response ({})", self.cause)
        } else {
            format!("no response ({})", self.cause)
        }
    }
}

/// Sends one request and reads its answer (at most [`MAX_BODY`] bytes).
fn exchange(request: RequestBuilder) -> std::result::Result<Reply, Failure> {
    let mut response = request.send().map_err(|e| Failure::from_reqwest(&e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    (&mut response)
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| Failure::from_body(&e))?;
    if body.len() as u64 > MAX_BODY {
        return Err(Failure {
            before_sending: false,
            transient: false,
            timeout: false,
            cause: format!("larger than {MAX_BODY} bytes"),
            reading: true,
        });
    }
    Ok(Reply {
        status,
        retry_after,
        body,
    })
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

/// Parses IAM's success body by hand, so no parser error can echo it.
pub(crate) fn parse_iam_token(body: &[u8]) -> std::result::Result<IamToken, String> {
    let value = json_object(body)?;
    let access_token = match value.get("access_token") {
        None | Some(Value::Null) => return Err("missing access_token".into()),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("access_token is not a non-empty string".into()),
    };
    let expires_in = match value.get("expires_in") {
        None | Some(Value::Null) => return Err("missing expires_in".into()),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n,
            _ => return Err("expires_in is not a positive integer".into()),
        },
    };
    match value.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err("token_type is not Bearer".into()),
    }
    let account = jwt::claims(&access_token)
        .and_then(|claims| {
            claims
                .get("account")?
                .get("bss")?
                .as_str()
                .map(str::to_string)
        })
        .filter(|a| is_plain(a));
    Ok(IamToken {
        access_token: Secret::new(access_token),
        expires_in,
        account,
    })
}

/// Parses the registry's `{"token": "<JWT>"}`.
pub(crate) fn parse_registry_token(body: &[u8]) -> std::result::Result<RegistryToken, String> {
    let value = json_object(body)?;
    let token = match value.get("token") {
        None | Some(Value::Null) => return Err("missing token".into()),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("token is not a non-empty string".into()),
    };
    let claims = jwt::claims(&token).ok_or("token is not a JWT")?;
    let id = match claims.get("jti") {
        None | Some(Value::Null) => return Err("token has no jti claim".into()),
        Some(Value::String(id)) if is_plain(id) => id.clone(),
        Some(_) => return Err("token's jti claim is not a plain string".into()),
    };
    let expires_at = claims.get("exp").and_then(Value::as_u64);
    Ok(RegistryToken {
        token: Secret::new(token),
        id,
        expires_at,
    })
}

/// The body as a JSON object, or why not (never the parser's text).
fn json_object(body: &[u8]) -> std::result::Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".into()),
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => Err("empty body".into()),
        Err(_) => Err("not valid JSON".into()),
    }
}

/// `400 Bad Request: BXNIM0415E: Provided API key could not be found`: the
/// status and, when the body says, IBM's code and message.
fn status_error(reply: &Reply, call: &Call) -> String {
    let status = match reply.status.canonical_reason() {
        Some(reason) => format!("{} {reason}", reply.status.as_u16()),
        None => reply.status.as_u16().to_string(),
    };
    match ibm_error(&reply.body) {
        Some(detail) => format!("{status}: {}", server_text(&detail, call.secret)),
        None => status,
    }
}

/// IBM's code and message from an error body: IAM's
/// `{"errorCode","errorMessage","errorDetails"}` (details preferred), the
/// registry's `{"code","message"}`, or a registry v2 `{"errors":[…]}`.
pub(crate) fn ibm_error(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |v: &Value, keys: &[&str]| {
        keys.iter()
            .filter_map(|k| v.get(*k)?.as_str())
            .find(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let source = match value.get("errors").and_then(|e| e.get(0)) {
        Some(first) if value.get("code").is_none() && value.get("errorCode").is_none() => first,
        _ => &value,
    };
    let code = text(source, &["errorCode", "code"]);
    let message = text(source, &["errorDetails", "errorMessage", "message"]);
    match (code, message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(one), None) | (None, Some(one)) => Some(one),
        (None, None) => None,
    }
}

/// Server-supplied text made safe for one line: control characters become
/// spaces (runs collapsed), the secret sent with the request is masked, and
/// the result is at most [`MAX_SERVER_TEXT`] characters.
pub(crate) fn server_text(text: &str, secret: &str) -> String {
    let mut text = text.to_string();
    if secret.len() >= 4 {
        text = text.replace(secret, "****");
    }
    let mut one_line = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if !(c == ' ' && one_line.ends_with(' ')) {
            one_line.push(c);
        }
    }
    // Folding can rebuild a secret that holds a space ("a \r\nb" → "a b"): mask again.
    if secret.len() >= 4 {
        one_line = one_line.replace(secret, "****");
    }
    let one_line = one_line.trim();
    if one_line.chars().count() <= MAX_SERVER_TEXT {
        one_line.to_string()
    } else {
        let mut capped: String = one_line.chars().take(MAX_SERVER_TEXT - 1).collect();
        capped.push('…');
        capped
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters; good for
/// form values, query values and path segments alike.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

/// What an error is at its root, in a few words: io errors by kind, others
/// by their innermost message. Never the reqwest error's own text (it holds
/// the URL and internals).
fn cause(err: &(dyn StdError + 'static)) -> String {
    if let Some(kind) = io_kind(err) {
        let phrase = match kind {
            io::ErrorKind::ConnectionRefused => Some("connection refused"),
            io::ErrorKind::ConnectionReset => Some("connection reset"),
            io::ErrorKind::ConnectionAborted => Some("connection aborted"),
            io::ErrorKind::TimedOut => Some("timed out"),
            io::ErrorKind::AddrNotAvailable => Some("address not available"),
            io::ErrorKind::UnexpectedEof => Some("connection closed early"),
            _ => None,
        };
        if let Some(phrase) = phrase {
            return phrase.to_string();
        }
    }
    let mut innermost: &(dyn StdError + 'static) = err;
    while let Some(next) = innermost.source() {
        innermost = next;
    }
    if innermost.is::<reqwest::Error>() {
        return "request failed".to_string();
    }
    let text = server_text(&innermost.to_string(), "");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown error".to_string(),
    }
}

/// The kind of the first io error in `err`'s chain (itself included) that
/// has an OS code or a specific kind.
fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() != io::ErrorKind::Other {
                return Some(io.kind());
            }
        }
        next = e.source();
    }
    None
}

/// True when waiting `wait` from now still ends before `deadline`.
fn fits(wait: Duration, deadline: Instant) -> bool {
    Instant::now()
        .checked_add(wait)
        .is_some_and(|end| end < deadline)
}

/// `15s`, or `300ms` for a bound below whole seconds.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
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

/// Printable ASCII without spaces, 1 to 200 characters: safe as a header
/// value, a path segment and in a message.
fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SERVER_TEXT && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A user-supplied value made safe for a one-line message.
fn clean(value: &str) -> String {
    server_text(value, "")
}

#[cfg(test)]
#[path = "../tests/support/fake_ibm.rs"]
mod fake_ibm;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::TcpListener;

    use super::fake_ibm::{make_jwt, Config, FakeIbm, Fault, FaultKind};
    use super::*;

    const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
    /// A canary API key: it must appear in no error and no Debug output.
    const KEY: &str = "canary-key-7Qx/+= &z";
    const UNKNOWN_KEY: &str = "canary-unknown-key-3Vb";
    const UA: &str = concat!("docker-credential-ibmcr/", env!("CARGO_PKG_VERSION"));

    fn server() -> FakeIbm {
        FakeIbm::start(Config {
            api_keys: BTreeMap::from([(KEY.to_string(), ACCOUNT.to_string())]),
            iam_lifetime: 1200,
            ..Default::default()
        })
    }

    fn endpoint(fake: &FakeIbm) -> Endpoint {
        Endpoint::parse(&fake.url()).unwrap()
    }

    fn key(k: &str) -> Secret<String> {
        Secret::new(k.to_string())
    }

    fn fault(method: &str, path: &str, kind: FaultKind, times: u32) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path_prefix: path.to_string(),
            kind,
            times,
        }
    }

    /// One line, and none of `secrets` in it.
    fn assert_clean(text: &str, secrets: &[&str]) {
        assert!(!text.contains(['\n', '\r']), "not one line: {text:?}");
        for s in secrets {
            assert!(!text.contains(s), "secret in {text:?}");
        }
    }

    fn error_text(err: &anyhow::Error, secrets: &[&str]) -> String {
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

    // ---- Endpoint ----

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
        // Issue 10 item 9 (fuzz/corpus/endpoint/regress-host-named-identity).
        assert_eq!(
            Endpoint::parse_iam("https://identity/token")
                .unwrap()
                .as_str(),
            "https://identity/token"
        );
        assert_eq!(
            Endpoint::parse("https://x/identity/token")
                .unwrap()
                .as_str(),
            "https://x/identity/token"
        );
    }

    // ---- pure helpers ----

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode(APIKEY_GRANT),
            "urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey"
        );
        assert_eq!(percent_encode("a b+c/d=&é"), "a%20b%2Bc%2Fd%3D%26%C3%A9");
    }

    #[test]
    fn server_text_is_one_masked_capped_line() {
        assert_eq!(
            server_text("  key abcd-secret\r\nnot\tfound \u{7}", "abcd-secret"),
            "key **** not found"
        );
        // Issue 10 item 9 (fuzz/corpus/iam_reply/regress-key-rebuilt-by-folding):
        // a key with a space, echoed with the space folded from CR LF or a control.
        for echoed in ["key k3y/+=  &k", "key k3y/+= \r\n&k", "key k3y/+=\u{1e} &k"] {
            assert_eq!(server_text(echoed, "k3y/+= &k"), "key ****", "{echoed:?}");
        }
        let long = "x".repeat(1000);
        let capped = server_text(&long, "");
        assert_eq!(capped.chars().count(), MAX_SERVER_TEXT);
        assert!(capped.ends_with('…'));
    }

    #[test]
    fn ibm_error_shapes() {
        let e = |body: &str| ibm_error(body.as_bytes());
        assert_eq!(
            e(r#"{"errorCode":"BXNIM0415E","errorMessage":"Provided API key could not be found"}"#),
            Some("BXNIM0415E: Provided API key could not be found".into())
        );
        assert_eq!(
            e(r#"{"errorCode":"BXNIM0109E","errorMessage":"m","errorDetails":"d"}"#),
            Some("BXNIM0109E: d".into())
        );
        assert_eq!(
            e(r#"{"code":"CRG0009E","message":"No.","request-id":"1"}"#),
            Some("CRG0009E: No.".into())
        );
        assert_eq!(
            e(r#"{"errors":[{"code":"UNAUTHORIZED","message":"auth"}]}"#),
            Some("UNAUTHORIZED: auth".into())
        );
        assert_eq!(e(r#"{"message":"only"}"#), Some("only".into()));
        for body in ["", "<html>", "[]", "{}", r#"{"code":7}"#, r#"{"errors":7}"#] {
            assert_eq!(e(body), None, "{body}");
        }
    }

    #[test]
    fn iam_bodies_are_checked_field_by_field() {
        let jwt = make_jwt(&serde_json::json!({"account": {"bss": ACCOUNT}, "exp": 1}));
        let body = |v: serde_json::Value| v.to_string().into_bytes();
        let ok = parse_iam_token(&body(serde_json::json!({
            "access_token": jwt, "expires_in": 3600, "token_type": "Bearer"
        })))
        .unwrap();
        assert_eq!(
            (
                ok.access_token.expose(),
                ok.expires_in,
                ok.account.as_deref()
            ),
            (&jwt, 3600, Some(ACCOUNT))
        );
        let opaque = parse_iam_token(br#"{"access_token":"opaque","expires_in":5}"#).unwrap();
        assert_eq!(opaque.account, None);
        for (v, why) in [
            (serde_json::json!({"expires_in": 1}), "missing access_token"),
            (
                serde_json::json!({"access_token": "", "expires_in": 1}),
                "access_token is not a non-empty string",
            ),
            (
                serde_json::json!({"access_token": 5, "expires_in": 1}),
                "access_token is not a non-empty string",
            ),
            (
                serde_json::json!({"access_token": "t"}),
                "missing expires_in",
            ),
            (
                serde_json::json!({"access_token": "t", "expires_in": 0}),
                "expires_in is not a positive integer",
            ),
            (
                serde_json::json!({"access_token": "t", "expires_in": -5}),
                "expires_in is not a positive integer",
            ),
            (
                serde_json::json!({"access_token": "t", "expires_in": "3600"}),
                "expires_in is not a positive integer",
            ),
            (
                serde_json::json!({"access_token": "t", "expires_in": 1, "token_type": "mac"}),
                "token_type is not Bearer",
            ),
            (serde_json::json!([1]), "not a JSON object"),
        ] {
            assert_eq!(parse_iam_token(&body(v)).unwrap_err(), why);
        }
        assert_eq!(parse_iam_token(b"{\"a").unwrap_err(), "not valid JSON");
        assert_eq!(parse_iam_token(b" \n").unwrap_err(), "empty body");
    }

    #[test]
    fn registry_bodies_need_a_jwt_with_jti() {
        let body = |token: &str| serde_json::json!({ "token": token }).to_string();
        let with = make_jwt(&serde_json::json!({"jti": "id-1", "exp": 99}));
        let t = parse_registry_token(body(&with).as_bytes()).unwrap();
        assert_eq!((t.id.as_str(), t.expires_at), ("id-1", Some(99)));
        let permanent = make_jwt(&serde_json::json!({"jti": "id-2"}));
        let t = parse_registry_token(body(&permanent).as_bytes()).unwrap();
        assert_eq!(t.expires_at, None);
        let without = make_jwt(&serde_json::json!({"exp": 99}));
        assert_eq!(
            parse_registry_token(body(&without).as_bytes()).unwrap_err(),
            "token has no jti claim"
        );
        let odd = make_jwt(&serde_json::json!({"jti": "a\nb"}));
        assert!(parse_registry_token(body(&odd).as_bytes()).is_err());
        assert_eq!(
            parse_registry_token(body("opaque").as_bytes()).unwrap_err(),
            "token is not a JWT"
        );
        assert_eq!(parse_registry_token(b"{}").unwrap_err(), "missing token");
    }

    #[test]
    fn minter_debug_shows_no_client() {
        let m = Minter::with_bound(Duration::from_secs(3));
        assert_eq!(format!("{m:?}"), "Minter { bound: 3s, .. }");
        assert_eq!(human(Duration::from_secs(15)), "15s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
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

        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/identity/token")
        );
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

    #[test]
    fn iam_retries_a_500_once_then_succeeds() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::Status(500), 1));
        let token = Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap();
        assert_eq!(token.expires_in, 1200);
        assert_eq!(fake.count("POST", "/identity/token"), 2);
    }

    #[test]
    fn iam_gives_up_after_two_retries() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::Status(503), 0));
        let started = Instant::now();
        let err = Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to {}/identity/token failed: 503 Service Unavailable: \
                 BXNIM9999E: Injected fault: HTTP 503 Service Unavailable",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/identity/token"), 3);
        assert!(started.elapsed() >= Duration::from_millis(800), "backoff");
    }

    #[test]
    fn iam_honours_retry_after() {
        let fake = server();
        fake.inject(fault(
            "POST",
            "/identity",
            FaultKind::TooManyRequests {
                retry_after_secs: 1,
            },
            1,
        ));
        let started = Instant::now();
        Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(fake.count("POST", "/identity/token"), 2);
    }

    #[test]
    fn iam_gives_up_at_once_when_retry_after_passes_the_bound() {
        let fake = server();
        fake.inject(fault(
            "POST",
            "/identity",
            FaultKind::TooManyRequests {
                retry_after_secs: 60,
            },
            0,
        ));
        let started = Instant::now();
        let err = Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to {}/identity/token failed: 429 Too Many Requests: \
                 BXNIM9999E: Too many requests, retry later.",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/identity/token"), 1);
    }

    #[test]
    fn absurd_retry_after_does_not_overflow() {
        let fake = server();
        fake.inject(fault(
            "POST",
            "/identity",
            FaultKind::TooManyRequests {
                retry_after_secs: u64::MAX,
            },
            0,
        ));
        let err = Minter::with_bound(Duration::MAX)
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        assert!(error_text(&err, &[KEY]).contains("429 Too Many Requests"));
        assert_eq!(fake.count("POST", "/identity/token"), 1);
    }

    #[test]
    fn garbage_json_is_a_malformed_response() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::GarbageJson, 0));
        let err = Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to {}/identity/token failed: malformed response: not valid JSON",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/identity/token"), 1, "a 200 is final");
    }

    #[test]
    fn truncated_json_is_one_line() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::TruncatedJson, 0));
        let err = Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        let text = error_text(&err, &[KEY]);
        let prefix = format!(
            "IAM token request to {}/identity/token failed: ",
            fake.url()
        );
        assert!(
            text.starts_with(&format!("{prefix}could not read the response (")),
            "{text}"
        );
        // A cut-off body is transport trouble: the idempotent IAM request is retried.
        assert_eq!(fake.count("POST", "/identity/token"), 3);
    }

    #[test]
    fn closed_connection_is_retried_for_iam() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::Close, 1));
        Minter::new()
            .unwrap()
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap();
        assert_eq!(fake.count("POST", "/identity/token"), 2);
    }

    #[test]
    fn slow_server_is_cut_off_at_the_bound() {
        let fake = server();
        fake.inject(fault(
            "POST",
            "/identity",
            FaultKind::Delay(Duration::from_secs(4)),
            0,
        ));
        let started = Instant::now();
        let err = Minter::with_bound(Duration::from_millis(700))
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to {}/identity/token failed: timed out after 700ms",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/identity/token"), 1);
    }

    #[test]
    fn refused_connection_is_named() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let iam = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let minter = Minter::new().unwrap();
        let err = minter.iam_token(&iam, &key(KEY)).unwrap_err();
        assert_eq!(
            error_text(&err, &[KEY]),
            format!(
                "IAM token request to http://127.0.0.1:{port}/identity/token failed: \
                 could not connect (connection refused)"
            )
        );
        let access = key("canary-access-token");
        let err = minter
            .create_registry_token(&iam, &access, ACCOUNT, "d", true)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &["canary-access-token"]),
            format!(
                "registry token request to http://127.0.0.1:{port}/api/v1/tokens failed: \
                 could not connect (connection refused)"
            )
        );
    }

    /// An access token from the fake's IAM.
    fn access_token(fake: &FakeIbm, minter: &Minter) -> (Secret<String>, String) {
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

        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let r = &requests[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/api/v1/tokens")
        );
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
    fn create_is_not_retried_on_a_500() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        fake.inject(fault("POST", "/api/v1/tokens", FaultKind::Status(500), 1));
        let err = minter
            .create_registry_token(&endpoint(&fake), &access, &account, "d", true)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[access.expose()]),
            format!(
                "registry token request to {}/api/v1/tokens failed: 500 Internal Server \
                 Error: CRG9999E: Injected fault: HTTP 500 Internal Server Error",
                fake.url()
            )
        );
        assert_eq!(fake.count("POST", "/api/v1/tokens"), 1);
        assert_eq!(fake.stats().registry_token_creates, 0);
    }

    #[test]
    fn create_is_not_retried_on_a_closed_connection() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        for (kind, why) in [
            (
                FaultKind::Close,
                "no response (connection closed before message completed)",
            ),
            (
                FaultKind::TruncatedJson,
                "could not read the response (connection closed early)",
            ),
        ] {
            fake.clear_requests();
            fake.inject(fault("POST", "/api/v1/tokens", kind, 1));
            let err = minter
                .create_registry_token(&endpoint(&fake), &access, &account, "d", true)
                .unwrap_err();
            assert_eq!(
                error_text(&err, &[access.expose()]),
                format!(
                    "registry token request to {}/api/v1/tokens failed: {why}",
                    fake.url()
                )
            );
            assert_eq!(fake.count("POST", "/api/v1/tokens"), 1);
        }
        fake.inject(fault("POST", "/api/v1/tokens", FaultKind::GarbageJson, 1));
        let err = minter
            .create_registry_token(&endpoint(&fake), &access, &account, "d", true)
            .unwrap_err();
        assert_eq!(
            error_text(&err, &[access.expose()]),
            format!(
                "registry token request to {}/api/v1/tokens failed: malformed response: \
                 not valid JSON",
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
}
