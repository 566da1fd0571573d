//! Sending one request within the time bound: the clients, retries and
//! Retry-After, and failures described without reqwest's own text.

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Read};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{DATE, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use super::{scrub, Endpoint, MAX_SERVER_TEXT};
use crate::log;

/// How long a TCP + TLS connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The same for the VPC metadata service: a link-local address on the same
/// host answers at once, and off-cloud nothing answers at all.
pub const METADATA_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits before the first and second retry; their count is the number of retries.
pub const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(600)];

/// The User-Agent of every request.
const USER_AGENT: &str = concat!("docker-credential-ibmcr/", env!("CARGO_PKG_VERSION"));
/// The largest response body read; a larger one is an error, not a memory hog.
const MAX_BODY: u64 = 1 << 20;

/// How a request may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Safe to repeat: on connection trouble, timeouts, 5xx and 429.
    Transient,
    /// Not idempotent: only when the connection could not be made.
    ConnectOnly,
}

/// One request, for messages and for scrubbing what servers say.
pub(super) struct Call<'a> {
    /// `IAM token request`.
    pub(super) what: &'static str,
    /// The URL to name in messages (no query string).
    pub(super) url: String,
    /// Secrets that were sent and must never be echoed back.
    pub(super) secret: &'a str,
}

impl Call<'_> {
    /// The one-line error of this call.
    pub(super) fn fail(&self, why: impl fmt::Display) -> anyhow::Error {
        anyhow!("{} to {} failed: {why}", self.what, self.url)
    }
}

/// A response, read.
pub(super) struct Reply {
    /// The HTTP status.
    pub(super) status: StatusCode,
    /// The wait `Retry-After` asked for, if it gave whole seconds.
    retry_after: Option<Duration>,
    /// The server's clock: its `Date`, in Unix seconds.
    pub(super) date: Option<u64>,
    /// The body, at most [`MAX_BODY`] bytes.
    pub(super) body: Vec<u8>,
}

/// The HTTP clients of a [`Minter`](super::Minter), each built on first use,
/// and the time bound of one of its public calls.
pub(super) struct Http {
    /// The time bound of one public call.
    bound: Duration,
    /// For remote endpoints: honours the proxy variables, https only.
    proxied: OnceLock<Client>,
    /// For https on a loopback host: never through a proxy.
    direct_tls: OnceLock<Client>,
    /// For plain http on a loopback host: no proxy, and no CA roots read.
    direct_plain: OnceLock<Client>,
    /// For the VPC metadata service: never through a proxy, plain http.
    metadata: OnceLock<Client>,
}

impl Http {
    /// Clients for calls bounded by `bound`; none is built yet.
    pub(super) fn new(bound: Duration) -> Http {
        Http {
            bound,
            proxied: OnceLock::new(),
            direct_tls: OnceLock::new(),
            direct_plain: OnceLock::new(),
            metadata: OnceLock::new(),
        }
    }

    /// The time bound of one public call.
    pub(super) fn bound(&self) -> Duration {
        self.bound
    }

    /// The client for `endpoint`, built on first use.
    fn client(&self, endpoint: &Endpoint) -> std::result::Result<&Client, String> {
        // Endpoint::parse allows plain http on a loopback host, and on the
        // metadata service only.
        let tls = endpoint.as_str().starts_with("https://");
        let (cell, connect_timeout) = match (endpoint.is_metadata(), endpoint.is_loopback(), tls) {
            (true, _, _) => (&self.metadata, METADATA_CONNECT_TIMEOUT),
            (false, false, _) => (&self.proxied, CONNECT_TIMEOUT),
            (false, true, true) => (&self.direct_tls, CONNECT_TIMEOUT),
            (false, true, false) => (&self.direct_plain, CONNECT_TIMEOUT),
        };
        if let Some(client) = cell.get() {
            return Ok(client);
        }
        let mut builder = Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(self.bound)
            .user_agent(USER_AGENT)
            // A redirect could carry the API key in a re-sent body elsewhere.
            .redirect(Policy::none());
        builder = if endpoint.is_loopback() || endpoint.is_metadata() {
            builder.no_proxy()
        } else {
            builder.https_only(true)
        };
        // Only a TLS client needs CA roots: a plain http loopback call reads none.
        if tls {
            for root in ca_roots()? {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("could not set up the HTTP client ({})", cause(&e)))?;
        Ok(cell.get_or_init(|| client))
    }

    /// Sends the request `build` makes, reads the answer, and retries as
    /// `retry` allows, all within the bound. A status is not an error here.
    pub(super) fn send(
        &self,
        endpoint: &Endpoint,
        call: &Call,
        retry: Retry,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply> {
        self.send_until(Instant::now() + self.bound, endpoint, call, retry, build)
    }

    /// As [`Http::send`], within a `deadline` shared with other requests of
    /// the same public call (the two metadata calls of one VPC mint).
    pub(super) fn send_until(
        &self,
        deadline: Instant,
        endpoint: &Endpoint,
        call: &Call,
        retry: Retry,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Reply> {
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
                    let connect = match endpoint.is_metadata() {
                        true => METADATA_CONNECT_TIMEOUT,
                        false => CONNECT_TIMEOUT,
                    };
                    let why = failure.describe(past, self.bound, connect, call.secret);
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

/// The CA roots a TLS client trusts, read from the platform once per client.
///
/// When `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, exactly what they name
/// (rustls-native-certs reads them). Otherwise, on Linux, the system's one
/// bundle file (Debian: `/etc/ssl/certs/ca-certificates.crt`, which
/// `update-ca-certificates` fills with corporate CAs too) rather than every
/// file in `/etc/ssl/certs` (147 opens on Debian 12); the directory only
/// where no bundle file exists. Elsewhere, the platform's store.
fn ca_roots() -> std::result::Result<Vec<reqwest::Certificate>, String> {
    // Only whether they are set: rustls-native-certs reads them.
    #[allow(clippy::disallowed_methods)]
    let from_env = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    #[cfg(target_os = "linux")]
    let bundle = (!from_env)
        .then(|| openssl_probe::probe().cert_file)
        .flatten();
    #[cfg(not(target_os = "linux"))]
    let bundle: Option<std::path::PathBuf> = None;
    roots_from(bundle.as_deref(), from_env)
}

/// The roots in `bundle`, else from rustls-native-certs (the variables, or
/// the platform). Roots that do not parse are skipped, as reqwest's own
/// loader skips them; none at all is an error saying where it looked.
fn roots_from(
    bundle: Option<&std::path::Path>,
    from_env: bool,
) -> std::result::Result<Vec<reqwest::Certificate>, String> {
    let loaded = match bundle {
        Some(file) => rustls_native_certs::load_certs_from_paths(Some(file), None),
        None => rustls_native_certs::load_native_certs(),
    };
    let roots: Vec<_> = loaded
        .certs
        .into_iter()
        .filter(|der| rustls::RootCertStore::empty().add(der.clone()).is_ok())
        .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok())
        .collect();
    if roots.is_empty() {
        let from = match (bundle, from_env) {
            (Some(file), _) => format!("in {}", file.display()),
            (None, true) => "where SSL_CERT_FILE or SSL_CERT_DIR points".to_string(),
            (None, false) => "in the system's certificate store".to_string(),
        };
        let why = loaded
            .errors
            .first()
            .map(|e| format!(" ({})", log::excerpt(&e.to_string(), MAX_SERVER_TEXT)))
            .unwrap_or_default();
        return Err(format!(
            "no usable CA certificates {from}{why}: set SSL_CERT_FILE to a PEM bundle"
        ));
    }
    Ok(roots)
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

    /// The `<why>` of the error line; `connect` is the endpoint's connect
    /// timeout. A cause that could carry `secret`, the secret the request
    /// sent, is withheld (issue 10.7): the text of an error below reqwest may
    /// quote what a server sent (a TLS error names the certificate's names,
    /// for one).
    fn describe(
        &self,
        past_deadline: bool,
        bound: Duration,
        connect: Duration,
        secret: &str,
    ) -> String {
        let cause = if scrub::could_carry(&self.cause, secret) {
            scrub::CAUSE_WITHHELD
        } else {
            &self.cause
        };
        if past_deadline || (self.timeout && !self.before_sending) {
            format!("timed out after {}", human(bound))
        } else if self.before_sending && self.timeout {
            format!("could not connect (timed out after {})", human(connect))
        } else if self.before_sending {
            format!("could not connect ({cause})")
        } else if self.reading {
            format!("could not read the response ({cause})")
        } else {
            format!("no response ({cause})")
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
    let date = response
        .headers()
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(super::wire::parse_http_date);
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
        date,
        body,
    })
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
    let text = log::excerpt(&innermost.to_string(), MAX_SERVER_TEXT);
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

/// The transport, through the [`Minter`](super::Minter)'s calls against the
/// fake IBM API: retries, Retry-After, the bound, and connection failures.
#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use fake_ibm::{FakeIbm, Fault, FaultKind};

    use super::*;
    use crate::mint::tests::{
        access_token, endpoint, error_text, fault, iam_with_key, key, server, ACCOUNT, KEY,
    };
    use crate::mint::Minter;
    use crate::secret::Secret;

    /// IAM answers 429 with `Retry-After: <retry_after_secs>`, `times` times
    /// (0: always).
    fn iam_429(retry_after_secs: u64, times: u32) -> Fault {
        let kind = FaultKind::TooManyRequests { retry_after_secs };
        fault("POST", "/identity", kind, times)
    }

    /// A self-signed P-256 root, valid until 2126: a fixture, never trusted by anything.
    const TEST_ROOT: &str = "-----BEGIN CERTIFICATE-----
MIIBizCCATGgAwIBAgIUaL3hZvF5XqGbUgJL4FPtXBTamwIwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPaWJtY3IgdGVzdCByb290MCAXDTI2MTEyODA1NDQzNloYDzIx
MjYxMTA0MDU0NDM2WjAaMRgwFgYDVQQDDA9pYm1jciB0ZXN0IHJvb3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAQ12ympqjlKeO14OeMQ6pi+wkAsUEozcVbqJneO
VvJeZUYU+wh8DC5Q5phP6K4f7w+F1w9J4itth7w4JgRTXjKNo1MwUTAdBgNVHQ4E
FgQUmpBOfc5fQu0Bukme+7xHw8Uml9EwHwYDVR0jBBgwFoAUmpBOfc5fQu0Bukme
+7xHw8Uml9EwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiBxzCn4
ar9trJcln3j+f5bCMG7ZI8NLI6Ig1Ot4OcSU8AIhAOQgX0oFtVKH3hz2VtffD8MB
SlYiNraswX+fJUR9GZdG
-----END CERTIFICATE-----
";

    fn bundle_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ibmcr-ca-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn roots_come_from_the_one_bundle_file_and_bad_ones_are_skipped() {
        // A root whose DER does not parse sits between two good ones.
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let path = bundle_file("bundle.pem", &format!("{TEST_ROOT}{broken}{TEST_ROOT}"));
        // Two copies of one root: rustls-native-certs keeps one.
        assert_eq!(roots_from(Some(&path), false).unwrap().len(), 1);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_bundle_without_roots_is_one_clear_error() {
        let path = bundle_file("empty.pem", "no certificates here\n");
        let err = roots_from(Some(&path), false).err().unwrap();
        assert_eq!(
            err,
            format!(
                "no usable CA certificates in {}: set SSL_CERT_FILE to a PEM bundle",
                path.display()
            )
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_cause_that_echoes_the_secret_is_withheld() {
        // issue 10.7: the text of an error below reqwest is server text too
        let failure = |cause: String, reading: bool| Failure {
            before_sending: !reading,
            transient: true,
            timeout: false,
            cause,
            reading,
        };
        let bound = Duration::from_secs(15);
        let withheld = "the error's text was withheld: it may echo the secret sent";
        let upper = KEY.to_uppercase();
        for echoed in [
            KEY,
            upper.as_str(),
            &KEY[..12],
            "canary-key-7Qx%2F%2B%3D%20%26z",
        ] {
            let cause = format!("invalid header {echoed}");
            assert_eq!(
                failure(cause.clone(), true).describe(false, bound, CONNECT_TIMEOUT, KEY),
                format!("could not read the response ({withheld})")
            );
            assert_eq!(
                failure(cause, false).describe(false, bound, CONNECT_TIMEOUT, KEY),
                format!("could not connect ({withheld})")
            );
        }
        assert_eq!(
            failure("connection refused".into(), false).describe(
                false,
                bound,
                CONNECT_TIMEOUT,
                KEY
            ),
            "could not connect (connection refused)"
        );
    }

    #[test]
    fn bounds_read_in_seconds_or_milliseconds() {
        assert_eq!(human(Duration::from_secs(15)), "15s");
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn iam_retries_a_500_once_then_succeeds() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::Status(500), 1));
        let token = iam_with_key(&fake).unwrap();
        assert_eq!(token.expires_in, 1200);
        assert_eq!(fake.count("POST", "/identity/token"), 2);
    }

    #[test]
    fn iam_gives_up_after_two_retries() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::Status(503), 0));
        let started = Instant::now();
        let err = iam_with_key(&fake).unwrap_err();
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
        fake.inject(iam_429(1, 1));
        let started = Instant::now();
        iam_with_key(&fake).unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(fake.count("POST", "/identity/token"), 2);
    }

    #[test]
    fn iam_gives_up_at_once_when_retry_after_passes_the_bound() {
        let fake = server();
        fake.inject(iam_429(60, 0));
        let started = Instant::now();
        let err = iam_with_key(&fake).unwrap_err();
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
        fake.inject(iam_429(u64::MAX, 0));
        let err = Minter::with_bound(Duration::MAX)
            .iam_token(&endpoint(&fake), &key(KEY))
            .unwrap_err();
        assert!(error_text(&err, &[KEY]).contains("429 Too Many Requests"));
        assert_eq!(fake.count("POST", "/identity/token"), 1);
    }

    #[test]
    fn truncated_json_is_one_line() {
        let fake = server();
        fake.inject(fault("POST", "/identity", FaultKind::TruncatedJson, 0));
        let err = iam_with_key(&fake).unwrap_err();
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
        iam_with_key(&fake).unwrap();
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

    /// The error of a registry token creation that must fail: one line,
    /// without the access token.
    fn create_error(
        minter: &Minter,
        fake: &FakeIbm,
        access: &Secret<String>,
        account: &str,
    ) -> String {
        let err = minter
            .create_registry_token(&endpoint(fake), access, account, "d", true)
            .unwrap_err();
        error_text(&err, &[access.expose()])
    }

    #[test]
    fn create_is_not_retried_on_a_500() {
        let fake = server();
        let minter = Minter::new().unwrap();
        let (access, account) = access_token(&fake, &minter);
        fake.inject(fault("POST", "/api/v1/tokens", FaultKind::Status(500), 1));
        assert_eq!(
            create_error(&minter, &fake, &access, &account),
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
            assert_eq!(
                create_error(&minter, &fake, &access, &account),
                format!(
                    "registry token request to {}/api/v1/tokens failed: {why}",
                    fake.url()
                )
            );
            assert_eq!(fake.count("POST", "/api/v1/tokens"), 1);
        }
        fake.inject(fault("POST", "/api/v1/tokens", FaultKind::GarbageJson, 1));
        assert_eq!(
            create_error(&minter, &fake, &access, &account),
            format!(
                "registry token request to {}/api/v1/tokens failed: malformed response: \
                 not valid JSON",
                fake.url()
            )
        );
    }
}
