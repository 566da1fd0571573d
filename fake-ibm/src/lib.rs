//! A fake of the IBM Cloud APIs the helper talks to, on loopback, std only.
//!
//! It serves, over plain HTTP/1.1 on `127.0.0.1`:
//! - IAM `POST /identity/token` (API-key, refresh-token and cr-token grants), shaped after the
//!   project's research notes `ibm-api.md` §2 and `fleet.md` §2;
//! - the VPC instance metadata service's two identity calls (`fleet.md` §3, in `vpc.rs`);
//! - the legacy Container Registry token API `/api/v1/tokens` (`ibm-api.md` §1);
//! - `GET /registry-auth`, an nginx `auth_request` target that decides which Basic credentials
//!   IBM's registry would accept;
//! - `/_fake/*` control endpoints for shell scripts.
//!
//! The design follows cargo-test-support's `HttpServer`: a `TcpListener` on port 0, an accept
//! thread, one thread per connection, a recorded request log, and a stop on `Drop`.
//!
//! Whatever is not in the research notes is marked **INVENTED** where it is defined, so a test
//! never mistakes the fake's guess for the live service's behaviour.
//!
//! A dev-only crate of the workspace: the helper's unit tests (`src/mint/`), its integration
//! tests (`tests/support/`) and `examples/fake-ibm-api.rs` use it. It shares no code with the
//! helper, so it checks what the helper sends against its own reading of the API.

// A fake server stamps `iat`/`exp` and checks expiry against its own clock; the crate-wide ban
// on `SystemTime::now` (clippy.toml) is about the helper's code, not about this test double.
#![allow(clippy::disallowed_methods)]

mod vpc;

pub use vpc::{
    IDENTITY_IAM_TOKEN_PATH, IDENTITY_TOKEN_PATH, METADATA_VERSION, VPC_IAM_TOKEN_PATH,
    VPC_INSTANCE_SUB, VPC_TOKEN_PATH,
};

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Wire constants
// ---------------------------------------------------------------------------------------------

/// IAM token endpoint path (`ibm-api.md` §2.1).
pub const IAM_TOKEN_PATH: &str = "/identity/token";
/// Registry token API collection path (`ibm-api.md` §1.1).
pub const TOKENS_PATH: &str = "/api/v1/tokens";
/// The nginx `auth_request` target.
pub const REGISTRY_AUTH_PATH: &str = "/registry-auth";
/// Prefix of the control endpoints; never recorded, never faulted.
pub const CONTROL_PREFIX: &str = "/_fake/";

/// The API-key grant type (`ibm-api.md` §2.1).
pub const APIKEY_GRANT: &str = "urn:ibm:params:oauth:grant-type:apikey";
/// The refresh-token grant type (`ibm-api.md` §2.3).
pub const REFRESH_GRANT: &str = "refresh_token";
/// The compute-resource token grant type (`fleet.md` §2).
pub const CR_TOKEN_GRANT: &str = "urn:ibm:params:oauth:grant-type:cr-token";
/// `Authorization` value of the IBM Cloud CLI's public `bx:bx` client (`ibm-api.md` §2.2).
pub const BX_CLIENT_AUTHORIZATION: &str = "Basic Yng6Yng=";
/// `refresh_token` value when no client credentials were sent (`ibm-api.md` §2.1).
pub const REFRESH_NOT_SUPPORTED: &str = "not_supported";
/// `iss` of IAM access tokens (`ibm-api.md` §2.6).
pub const IAM_ISSUER: &str = "https://iam.cloud.ibm.com/identity";
/// `iss` of registry tokens when the request has no `Host` header (`ibm-api.md` §1.3).
pub const DEFAULT_REGISTRY_ISSUER: &str = "registry.ng.bluemix.net";
/// Realm of the registry's Basic challenge. INVENTED: the live registry speaks the docker
/// bearer-token protocol; a Basic realm is what nginx needs in front of `docker-registry`.
pub const IBM_REALM: &str = "IBM Cloud Container Registry";

/// IAM: API key not found (`ibm-api.md` §2.4, verified).
pub const IAM_KEY_NOT_FOUND: &str = "BXNIM0415E";
/// IAM: invalid token, used for an unknown refresh token (code verified in `ibm-api.md` §2.4;
/// the message text is INVENTED).
pub const IAM_INVALID_TOKEN: &str = "BXNIM0407E";
/// IAM: "Property missing or empty." (seen in third-party fixtures of the live service; used
/// here also for a wrong `Content-Type`, which is INVENTED).
pub const IAM_PROPERTY_MISSING: &str = "BXNIM0109E";
/// IAM: "No authorization header found" (a real IAM code, documented for other IAM endpoints
/// with status 401; answering it with 400 for a refresh grant without client credentials is
/// INVENTED).
pub const IAM_NO_CLIENT_AUTH: &str = "BXNIM0308E";
/// IAM: unsupported grant type. INVENTED code.
pub const IAM_UNSUPPORTED_GRANT: &str = "BXNIM0103E";
/// IAM: refresh token expired (`ibm-api.md` §2.4, verified code and message).
pub const IAM_REFRESH_EXPIRED: &str = "BXNIM0408E";
/// IAM: session invalidated due to inactivity (`ibm-api.md` §2.4, verified code; the message
/// text is INVENTED).
pub const IAM_SESSION_INACTIVE: &str = "BXNIM0439E";
/// IAM: "Selected trusted profile not eligible." (verified code and message, from a captured
/// 400 in confidential-containers/cloud-api-adaptor#991): the CR token's subject is not
/// allowed by the profile's trust rules.
pub const IAM_PROFILE_NOT_ELIGIBLE: &str = "BXNIM0398E";
/// IAM: no trusted profile of that id, name or CRN. INVENTED code.
pub const IAM_PROFILE_NOT_FOUND: &str = "BXNIM0399E";
/// IAM: a CR token that is expired, not a JWT or not signed by this fake: the verified
/// "invalid token" code; the messages are INVENTED.
pub const IAM_CR_TOKEN_INVALID: &str = "BXNIM0407E";
/// IAM: wrong HTTP method (seen in a third-party fixture, with the message below).
pub const IAM_METHOD_NOT_ALLOWED: &str = "BXNIM0060E";
/// IAM: error code of an injected `Status`/`TooManyRequests` fault. INVENTED, on purpose
/// recognisably fake.
pub const IAM_FAULT_CODE: &str = "BXNIM9999E";

/// Registry: not authorized for the account (`ibm-api.md` §1.4, verified fixture).
pub const CRG_NOT_AUTHORIZED: &str = "CRG0009E";
/// Registry: message of [`CRG_NOT_AUTHORIZED`] (verified fixture).
pub const CRG_NOT_AUTHORIZED_MESSAGE: &str =
    "You are not authorized to access the specified account.";
/// Registry: token not found. INVENTED code (404 status also INVENTED).
pub const CRG_TOKEN_NOT_FOUND: &str = "CRG0005E";
/// Registry: token creation refused. INVENTED: the live service's answer to
/// `POST /api/v1/tokens` since the 2019 discontinuation is unknown (`ibm-api.md` §1.4, §7).
pub const CRG_CREATION_REFUSED: &str = "CRG0140E";
/// HTTP status of a refused token creation. INVENTED (see [`CRG_CREATION_REFUSED`]).
pub const CREATION_REFUSED_STATUS: u16 = 403;
/// Message of a refused token creation. INVENTED.
pub const CRG_CREATION_REFUSED_MESSAGE: &str =
    "Registry tokens can no longer be created. Use IAM API keys instead.";
/// Registry: malformed request (missing `secondaryOwner`, bad path). INVENTED code.
pub const CRG_BAD_REQUEST: &str = "CRG0001E";
/// Registry: method not supported on that path. INVENTED code.
pub const CRG_METHOD_NOT_ALLOWED: &str = "CRG0002E";
/// Registry: error code of an injected `Status`/`TooManyRequests` fault. INVENTED.
pub const CRG_FAULT_CODE: &str = "CRG9999E";

/// HMAC key of every JWT this fake signs. A fixed, public, fake secret.
const JWT_SECRET: &[u8] = b"fake-ibm-api: not a secret, HS256 test key";
/// Largest request head (request line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest number of header lines accepted.
const MAX_HEADERS: usize = 200;
/// A keep-alive connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a rejected connection's remaining input is drained before closing.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// What the fake accepts and how long its tokens live. Change it live with [`FakeIbm::update`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Port to bind on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Known IAM API keys → the account id (32 hex, `account.bss`) they belong to.
    pub api_keys: BTreeMap<String, String>,
    /// Lifetime of IAM access tokens, seconds (`expires_in`).
    pub iam_lifetime: u64,
    /// Lifetime of non-permanent registry tokens, seconds (24 h on the live service).
    pub registry_token_lifetime: u64,
    /// Answer `POST /api/v1/tokens` with the refusal error, as the live service presumably does.
    pub refuse_token_creation: bool,
    /// Non-IBM registry hosts (no port) → the one `(user, password)` their own check accepts.
    pub plain_users: BTreeMap<String, (String, String)>,
    /// Trusted profiles a CR token or the VPC instance identity can be traded for.
    pub profiles: Vec<TrustedProfile>,
    /// Lifetime of refresh tokens (an `ibmcloud login` session), seconds. INVENTED default
    /// (30 days; IBM's session limits are account settings, `ibm-api.md` §2.2).
    pub refresh_lifetime: u64,
    /// The trusted profile the VPC instance identity gets when its request names none (the
    /// instance's default linked profile); `None`: such a request is refused.
    pub vpc_default_profile: Option<String>,
}

/// A trusted profile (`fleet.md` §1): who may become it is decided by its trust rules, modelled
/// here as the list of compute-resource token subjects (`sub` claims) it accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedProfile {
    /// `Profile-<uuid>`.
    pub id: String,
    /// Its name, unique in the account.
    pub name: String,
    /// `crn:v1:bluemix:public:iam-identity::a/<account>::profile:<id>`.
    pub crn: String,
    /// The account (32 hex) the access tokens are for.
    pub account: String,
    /// CR token subjects its trust rules accept, e.g.
    /// `system:serviceaccount:<namespace>:<name>` (cr_type `IKS_SA`) or [`VPC_INSTANCE_SUB`]
    /// (cr_type `VSI`). `*` accepts any.
    pub subjects: Vec<String>,
}

impl TrustedProfile {
    /// A profile named `name` in `account` whose rules accept `subjects`; its id is derived
    /// from the name, so tests can spell it.
    pub fn new(name: &str, account: &str, subjects: &[&str]) -> TrustedProfile {
        let id = format!(
            "Profile-{}",
            uuid_from(&Sha256::digest(format!("profile:{name}").as_bytes()))
        );
        TrustedProfile {
            crn: format!("crn:v1:bluemix:public:iam-identity::a/{account}::profile:{id}"),
            id,
            name: name.to_string(),
            account: account.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn accepts(&self, sub: &str) -> bool {
        self.subjects.iter().any(|s| s == "*" || s == sub)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            port: 0,
            api_keys: BTreeMap::new(),
            iam_lifetime: 3600,
            registry_token_lifetime: 86400,
            refuse_token_creation: false,
            plain_users: BTreeMap::new(),
            profiles: Vec::new(),
            refresh_lifetime: 30 * 24 * 3600,
            vpc_default_profile: None,
        }
    }
}

/// One recorded HTTP request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Method as sent, e.g. `POST`.
    pub method: String,
    /// Path without the query, as sent (not percent-decoded).
    pub path: String,
    /// Raw query string, without the `?`.
    pub query: String,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it was chunked).
    pub body: Vec<u8>,
}

impl Request {
    /// First header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8, lossily.
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// First query parameter of that name, percent-decoded (`+` is a space, as in Go's
    /// `url.ParseQuery` and reqwest's `.query()`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        find_pair(&self.query, name)
    }

    /// First field of that name in an `application/x-www-form-urlencoded` body, decoded.
    pub fn form_param(&self, name: &str) -> Option<String> {
        find_pair(&self.body_str(), name)
    }
}

/// A fault to inject into matching IAM / registry-API requests.
#[derive(Clone, Debug)]
pub struct Fault {
    /// Only this method (case-insensitive); `None` = any.
    pub method: Option<String>,
    /// Only paths starting with this; `""` = any.
    pub path_prefix: String,
    /// What happens.
    pub kind: FaultKind,
    /// Consumed after this many matches; 0 = every matching request until cleared.
    pub times: u32,
}

impl Fault {
    /// A fault on every method under `path_prefix`, `times` times (0 = until cleared).
    pub fn new(path_prefix: &str, kind: FaultKind, times: u32) -> Fault {
        Fault {
            method: None,
            path_prefix: path_prefix.to_string(),
            kind,
            times,
        }
    }
}

/// How a faulted request is answered.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Wait, then answer normally.
    Delay(Duration),
    /// This status with this JSON body, as given: a reply no honest server sends.
    Reply {
        /// The HTTP status.
        status: u16,
        /// The JSON body.
        body: Value,
    },
    /// This status with an error body of the right shape for the API (IAM or registry).
    Status(u16),
    /// This status with an error body of the right shape for the API, carrying this code and
    /// message: for instance a message that echoes what the request sent, as a careless or
    /// hostile endpoint might. INVENTED: IBM is not known to echo keys.
    Error {
        /// The HTTP status.
        status: u16,
        /// `errorCode` (IAM) or `code` (registry).
        code: String,
        /// `errorMessage` (IAM) or `message` (registry).
        message: String,
    },
    /// 429 with `Retry-After` and an error body of the right shape.
    TooManyRequests {
        /// Value of the `Retry-After` header, seconds.
        retry_after_secs: u64,
    },
    /// 200 whose `Content-Length` promises more than is sent, then the connection closes.
    TruncatedJson,
    /// 200, a complete HTTP message whose JSON body is cut off (`{"access_token": `).
    GarbageJson,
    /// Close the connection without answering.
    Close,
}

/// Counters, reset by `POST /_fake/reset`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Successful `/identity/token` answers.
    pub iam_mints: u64,
    /// Error answers (4xx/5xx) from `/identity/token`, injected `Status`/`TooManyRequests`
    /// faults included.
    pub iam_failures: u64,
    /// Registry tokens created.
    pub registry_token_creates: u64,
    /// Registry tokens deleted (one per token, also for delete-by-description).
    pub registry_token_deletes: u64,
    /// `/registry-auth` answers 200.
    pub registry_auth_ok: u64,
    /// `/registry-auth` answers 401.
    pub registry_auth_denied: u64,
    /// Accepted `/registry-auth` requests by username (`iambearer`, `token`, …); for plain
    /// hosts the key is `plain:<user>`.
    pub registry_auth_by_user: BTreeMap<String, u64>,
    /// Successful `/identity/token` answers by grant type (`apikey`, `refresh_token`,
    /// `cr-token`: the last word of the grant).
    pub iam_mints_by_grant: BTreeMap<String, u64>,
    /// Every request to a VPC instance metadata path, answered or not.
    pub metadata_requests: u64,
    /// Instance identity tokens issued (`PUT …/token`).
    pub vpc_identity_tokens: u64,
    /// IAM access tokens issued by the metadata service (`POST …/iam_token`).
    pub vpc_iam_tokens: u64,
}

impl Stats {
    /// The JSON form served by `GET /_fake/stats`.
    pub fn to_json(&self) -> Value {
        json!({
            "iam_mints": self.iam_mints,
            "iam_failures": self.iam_failures,
            "registry_token_creates": self.registry_token_creates,
            "registry_token_deletes": self.registry_token_deletes,
            "registry_auth_ok": self.registry_auth_ok,
            "registry_auth_denied": self.registry_auth_denied,
            "registry_auth_by_user": self.registry_auth_by_user,
            "iam_mints_by_grant": self.iam_mints_by_grant,
            "metadata_requests": self.metadata_requests,
            "vpc_identity_tokens": self.vpc_identity_tokens,
            "vpc_iam_tokens": self.vpc_iam_tokens,
        })
    }
}

/// The running server. Dropping it stops the accept loop, closes every open connection and
/// joins all threads.
pub struct FakeIbm {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeIbm {
    /// Starts the server; panics if 127.0.0.1:`config.port` cannot be bound (test support).
    pub fn start(config: Config) -> FakeIbm {
        let port = config.port;
        FakeIbm::try_start(config)
            .unwrap_or_else(|e| panic!("fake IBM API: cannot listen on 127.0.0.1:{port}: {e}"))
    }

    /// Starts the server, or says why it could not bind.
    pub fn try_start(config: Config) -> io::Result<FakeIbm> {
        let listener = TcpListener::bind(("127.0.0.1", config.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config)),
            stop: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let for_acceptor = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fake-ibm-accept".to_string())
            .spawn(move || accept_loop(listener, for_acceptor))?;
        Ok(FakeIbm {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request except `/_fake/*` and `/registry-auth`, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// How many recorded requests had this method and exactly this path (query ignored).
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// Changes the configuration live (the port is ignored).
    pub fn update(&self, f: impl FnOnce(&mut Config)) {
        f(&mut self.state().config);
    }

    /// Adds a fault; faults are tried in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(ActiveFault::from(fault));
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    /// Makes `key` a valid API key of `account`.
    pub fn add_api_key(&self, key: &str, account: &str) {
        self.state()
            .config
            .api_keys
            .insert(key.to_string(), account.to_string());
    }

    /// Adds a trusted profile (replacing one of the same id).
    pub fn add_profile(&self, profile: TrustedProfile) {
        let mut st = self.state();
        st.config.profiles.retain(|p| p.id != profile.id);
        st.config.profiles.push(profile);
    }

    /// A compute-resource token for `sub`, as a cluster or Code Engine would project it: a JWT
    /// signed with this fake's key, issued by `iss`, valid for `lifetime` seconds (0: already
    /// expired).
    pub fn cr_token(&self, iss: &str, sub: &str, lifetime: u64) -> String {
        let now = now_secs();
        let jti = self.state().uuid();
        let exp = match lifetime {
            0 => now.saturating_sub(1),
            _ => now.saturating_add(lifetime),
        };
        make_cr_token(iss, sub, now, exp, &jti)
    }

    /// An `ibmcloud login --apikey` session for `key`: (access token, refresh token), minted
    /// with the `bx` client as the CLI does. Test set-up: not recorded, not counted.
    pub fn login(&self, key: &str) -> Option<(String, String)> {
        login(&mut self.state(), key)
    }

    /// Makes every refresh token issued so far expired (`BXNIM0408E` from now on).
    pub fn expire_sessions(&self) {
        for grant in self.state().refresh_tokens.values_mut() {
            grant.expires_at = 0;
        }
    }

    /// Invalidates every session issued so far (`BXNIM0439E` from now on).
    pub fn invalidate_sessions(&self) {
        for grant in self.state().refresh_tokens.values_mut() {
            grant.invalidated = true;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }
}

/// A compute-resource token (`fleet.md` §3): a JWT signed with this fake's key.
fn make_cr_token(iss: &str, sub: &str, iat: u64, exp: u64, jti: &str) -> String {
    make_jwt(&json!({ "iss": iss, "sub": sub, "aud": ["iam"], "iat": iat, "exp": exp, "jti": jti }))
}

/// The claims of a JWT this fake signed, if `token` is one (signature checked).
pub fn verify_jwt(token: &str) -> Option<Value> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let expected = URL_SAFE_NO_PAD.encode(hmac_sha256(JWT_SECRET, signing_input.as_bytes()));
    if expected != signature {
        return None;
    }
    decode_jwt_payload(token)
}

impl Drop for FakeIbm {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the loop sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // No new connections from here on: unblock every reader, then join.
        for stream in lock(&self.shared.connections).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWT helpers
// ---------------------------------------------------------------------------------------------

/// An HS256 JWT over `payload`: base64url (no padding) of `{"alg":"HS256","typ":"JWT"}`, of the
/// payload, and of HMAC-SHA256 over `header.payload` with the fake's fixed secret.
pub fn make_jwt(payload: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    let signature = hmac_sha256(JWT_SECRET, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The payload of a three-part JWT, decoded (signature not checked), if it is a JSON object.
pub fn decode_jwt_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = JWT_PART.decode(payload).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// HMAC-SHA256 (RFC 2104) written on `sha2`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block_key = [0u8; BLOCK];
    if key.len() > BLOCK {
        block_key[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block_key.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block_key.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Decoding as a lenient server does it: padded or not, stray low bits ignored.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
/// Base64 of Basic credentials (RFC 7617), decoded leniently.
const BASIC: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
/// Base64url of JWT parts (RFC 7515), decoded leniently.
const JWT_PART: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Percent-decodes; `+` becomes a space when `plus_is_space`. Bad escapes stay as they are.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` (query or form) → decoded pairs.
fn parse_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

fn find_pair(s: &str, name: &str) -> Option<String> {
    parse_pairs(s)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Server state
// ---------------------------------------------------------------------------------------------

struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
    /// Clones of open connections, so `Drop` can shut them down.
    connections: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct ActiveFault {
    method: Option<String>,
    path_prefix: String,
    kind: FaultKind,
    /// `None` = until cleared.
    remaining: Option<u32>,
}

impl From<Fault> for ActiveFault {
    fn from(f: Fault) -> ActiveFault {
        ActiveFault {
            method: f.method,
            path_prefix: f.path_prefix,
            kind: f.kind,
            remaining: (f.times > 0).then_some(f.times),
        }
    }
}

/// Who an access token is for, as §2.6's claims describe: a service id behind an API key, or
/// a trusted profile.
#[derive(Clone)]
struct Identity {
    /// `ServiceId-<uuid>` or `Profile-<uuid>`.
    service_id: String,
    /// `ServiceId` or `Profile`.
    sub_type: &'static str,
    ims_user_id: u64,
}

impl Identity {
    fn of_key(key: &str) -> Identity {
        let d = Sha256::digest(format!("identity:{key}").as_bytes());
        Identity {
            service_id: format!("ServiceId-{}", uuid_from(&d)),
            sub_type: "ServiceId",
            ims_user_id: u64::from(u32::from_be_bytes([d[16], d[17], d[18], d[19]])) % 9_000_000
                + 1_000_000,
        }
    }

    fn of_profile(profile: &TrustedProfile) -> Identity {
        Identity {
            service_id: profile.id.clone(),
            sub_type: "Profile",
            ims_user_id: 0,
        }
    }
}

struct AccessToken {
    account: String,
    exp: u64,
}

struct RefreshGrant {
    account: String,
    identity: Identity,
    grant_type: String,
    /// Unix seconds; the grant answers `BXNIM0408E` from then on.
    expires_at: u64,
    /// The session was ended for inactivity: `BXNIM0439E`.
    invalidated: bool,
}

struct RegistryToken {
    id: String,
    account: String,
    token: String,
    description: String,
    readonly: bool,
    revoked: bool,
    /// `None` = permanent.
    expiry: Option<u64>,
}

struct State {
    config: Config,
    requests: Vec<Request>,
    faults: Vec<ActiveFault>,
    stats: Stats,
    access_tokens: HashMap<String, AccessToken>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    registry_tokens: Vec<RegistryToken>,
    /// VPC instance identity tokens issued → their expiry.
    instance_tokens: HashMap<String, u64>,
    seed: [u8; 32],
    serial: u64,
}

impl State {
    fn new(config: Config) -> State {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = Sha256::digest(format!("{nanos}:{}", std::process::id()).as_bytes()).into();
        State {
            config,
            requests: Vec::new(),
            faults: Vec::new(),
            stats: Stats::default(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            registry_tokens: Vec::new(),
            instance_tokens: HashMap::new(),
            seed,
            serial: 0,
        }
    }

    /// 32 fresh pseudo-random bytes, unique within this server.
    fn fresh(&mut self) -> [u8; 32] {
        self.serial += 1;
        let mut h = Sha256::new();
        h.update(self.seed);
        h.update(self.serial.to_be_bytes());
        h.finalize().into()
    }

    fn uuid(&mut self) -> String {
        uuid_from(&self.fresh())
    }

    /// IAM-style request id: 32 hex.
    fn iam_request_id(&mut self) -> String {
        hex(&self.fresh()[..16])
    }

    /// Registry-style request id, as in the fixture `72-1540337041.610-99712`.
    fn crg_request_id(&mut self) -> String {
        let d = self.fresh();
        let ms = now_millis();
        format!(
            "{}-{}.{:03}-{}",
            self.serial % 100,
            ms / 1000,
            ms % 1000,
            u32::from_be_bytes([0, d[0], d[1], d[2]]) % 100_000
        )
    }

    fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| {
            f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && path.starts_with(&f.path_prefix)
        })?;
        let kind = self.faults[i].kind.clone();
        if let Some(remaining) = &mut self.faults[i].remaining {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                self.faults.remove(i);
            }
        }
        Some(kind)
    }

    /// Forgets expired registry tokens ("removed automatically", `ibm-api.md` §1.1).
    fn purge_expired_registry_tokens(&mut self, now: u64) {
        self.registry_tokens
            .retain(|t| t.expiry.is_none_or(|exp| exp > now));
    }

    fn valid_access_token(&self, token: &str, now: u64) -> Option<&AccessToken> {
        self.access_tokens.get(token).filter(|t| t.exp > now)
    }
}

fn uuid_from(d: &[u8]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(&d[0..4]),
        hex(&d[4..6]),
        hex(&d[6..8]),
        hex(&d[8..10]),
        hex(&d[10..16])
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds as an HTTP `Date` (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, rest) = civil(secs);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `29.10.2019 12:31:00:300 GMT`, the format of IAM's error `context` times (`ibm-api.md` §2.4).
fn iam_time(millis: u64) -> String {
    let (year, month, day, rem) = civil(millis / 1000);
    format!(
        "{day:02}.{month:02}.{year} {:02}:{:02}:{:02}:{:03} GMT",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        millis % 1000
    )
}

/// `2019-10-29T12:31:00Z`: the VPC APIs' date-time format (whole seconds).
fn rfc3339(millis: u64) -> String {
    let (year, month, day, rem) = civil(millis / 1000);
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Unix seconds → (year, month, day, seconds into the day).
fn civil(secs: u64) -> (u64, u64, u64, u64) {
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (H. Hinnant), for days since 1970-01-01 >= 0.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day, rem)
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------------------------

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
        }
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

enum Outcome {
    Respond(Response),
    /// Send the head with `Content-Length` = the second field, then only the body, then close.
    Truncated(Response, usize),
    Close,
}

enum ReadError {
    /// Connection closed, timed out or broke: drop it silently.
    Io,
    /// Malformed request: answer 400 and close.
    Bad(&'static str),
}

struct Incoming {
    request: Request,
    keep_alive: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id: u64 = 0;
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(stream) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.connections).insert(id, clone);
        }
        let for_worker = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("fake-ibm-conn-{id}"))
            .spawn(move || {
                serve_connection(stream, &for_worker);
                lock(&for_worker.connections).remove(&id);
            });
        match spawned {
            Ok(handle) => {
                let mut workers = lock(&shared.workers);
                workers.retain(|w| !w.is_finished());
                workers.push(handle);
            }
            Err(_) => {
                if let Some(s) = lock(&shared.connections).remove(&id) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let incoming = match read_request(&mut reader, &mut writer) {
            Ok(Some(incoming)) => incoming,
            Ok(None) | Err(ReadError::Io) => return,
            Err(ReadError::Bad(why)) => {
                let resp = Response::json(400, &json!({ "error": why }));
                let _ = write_response(&mut writer, &resp, false, true, None);
                // Read what the client is still sending before closing, so that the close is
                // a FIN and not a reset that could destroy the 400 in the client's buffers.
                let _ = writer.shutdown(Shutdown::Write);
                let _ = writer.set_read_timeout(Some(DRAIN_TIMEOUT));
                let _ = io::copy(&mut reader.take(MAX_BODY as u64), &mut io::sink());
                return;
            }
        };
        let head_only = incoming.request.method.eq_ignore_ascii_case("HEAD");
        let keep_alive = incoming.keep_alive;
        match handle(shared, incoming.request) {
            Outcome::Respond(resp) => {
                let close = !keep_alive || shared.stop.load(Ordering::SeqCst);
                if write_response(&mut writer, &resp, head_only, close, None).is_err() || close {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
            }
            Outcome::Truncated(resp, declared) => {
                let _ = write_response(&mut writer, &resp, false, true, Some(declared));
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Outcome::Close => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

fn write_response(
    w: &mut impl Write,
    resp: &Response,
    head_only: bool,
    close: bool,
    declared_len: Option<usize>,
) -> io::Result<()> {
    // Header values may echo request data (a realm naming the host): never let CR/LF through.
    let clean = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = Vec::with_capacity(256 + resp.body.len());
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    // As every real server does: the helper's `doctor` compares its clock with it.
    write!(out, "Date: {}\r\n", http_date(now_secs()))?;
    for (name, value) in &resp.headers {
        write!(out, "{}: {}\r\n", clean(name), clean(value))?;
    }
    write!(
        out,
        "Content-Length: {}\r\n",
        declared_len.unwrap_or(resp.body.len())
    )?;
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// One line without its CR LF; `None` at a clean EOF. `budget` bounds the bytes read.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut buf = Vec::new();
    let limit = (*budget as u64).saturating_add(1);
    let n = reader
        .take(limit)
        .read_until(b'\n', &mut buf)
        .map_err(|_| ReadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 >= limit {
            ReadError::Bad("request head too large")
        } else {
            ReadError::Io
        });
    }
    *budget = budget.saturating_sub(n);
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Option<Incoming>, ReadError> {
    let mut budget = MAX_HEAD;
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let line = String::from_utf8(line).map_err(|_| ReadError::Bad("request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad("malformed request line"));
    };
    if method.is_empty()
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ReadError::Bad("malformed method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Bad("unsupported HTTP version")),
    };
    let (path, query) = split_target(target)?;

    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some(l) = read_line(reader, &mut budget)? else {
            return Err(ReadError::Io);
        };
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad("too many headers"));
        }
        let l = String::from_utf8_lossy(&l);
        let Some((name, value)) = l.split_once(':') else {
            return Err(ReadError::Bad("malformed header line"));
        };
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(ReadError::Bad("malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |n: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let connection_has = |token: &str| {
        header("connection").any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let keep_alive = if http10 {
        connection_has("keep-alive")
    } else {
        !connection_has("close")
    };
    let expects_continue = header("expect").any(|v| v.eq_ignore_ascii_case("100-continue"));
    let chunked = match header("transfer-encoding").next_back() {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(ReadError::Bad("unsupported transfer-encoding")),
    };
    let mut length: Option<usize> = None;
    for v in header("content-length") {
        let n: usize = v
            .parse()
            .map_err(|_| ReadError::Bad("malformed content-length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(ReadError::Bad("conflicting content-length"));
        }
        length = Some(n);
    }
    if length.is_some_and(|n| n > MAX_BODY) {
        return Err(ReadError::Bad("body too large"));
    }
    if expects_continue && (chunked || length.is_some_and(|n| n > 0)) {
        writer
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| ReadError::Io)?;
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        reader.read_exact(&mut body).map_err(|_| ReadError::Io)?;
        body
    } else {
        Vec::new()
    };
    Ok(Some(Incoming {
        request: Request {
            method: method.to_string(),
            path,
            query,
            headers,
            body,
        },
        keep_alive,
    }))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut budget = MAX_HEAD;
    let mut body = Vec::new();
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(ReadError::Io);
        };
        let line = String::from_utf8_lossy(&line);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad("malformed chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                match read_line(reader, &mut budget)? {
                    None => return Err(ReadError::Io),
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => {}
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(ReadError::Bad("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|_| ReadError::Io)?;
        match read_line(reader, &mut budget)? {
            Some(l) if l.is_empty() => {}
            Some(_) => return Err(ReadError::Bad("malformed chunk")),
            None => return Err(ReadError::Io),
        }
    }
}

/// Request target → (path, query). Accepts origin form and absolute form.
fn split_target(target: &str) -> Result<(String, String), ReadError> {
    let mut t = target;
    if let Some(rest) = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    {
        t = rest.find('/').map_or("/", |i| &rest[i..]);
    }
    let t = t.split('#').next().unwrap_or("");
    if !t.starts_with('/') {
        return Err(ReadError::Bad("malformed request target"));
    }
    let (path, query) = t.split_once('?').unwrap_or((t, ""));
    Ok((path.to_string(), query.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

fn handle(shared: &Shared, req: Request) -> Outcome {
    if req.path == "/_fake" || req.path.starts_with(CONTROL_PREFIX) {
        return Outcome::Respond(control(&mut lock(&shared.state), &req));
    }
    if req.path == REGISTRY_AUTH_PATH {
        return Outcome::Respond(registry_auth(&mut lock(&shared.state), &req));
    }
    let fault = {
        let mut st = lock(&shared.state);
        st.requests.push(req.clone());
        if vpc::is_metadata_path(&req.path) {
            st.stats.metadata_requests += 1;
        }
        st.take_fault(&req.method, &req.path)
    };
    if let Some(kind) = fault {
        if vpc::is_metadata_path(&req.path) {
            if let Some(outcome) = vpc::fault(shared, &req, &kind) {
                return outcome;
            }
        }
        let is_iam = req.path.starts_with("/identity");
        match kind {
            FaultKind::Delay(d) => {
                // Sleep in slices so that dropping the server is not held up by a long delay.
                let until = Instant::now() + d;
                while Instant::now() < until {
                    if shared.stop.load(Ordering::SeqCst) {
                        return Outcome::Close;
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    thread::sleep(left.min(Duration::from_millis(20)));
                }
            }
            FaultKind::Status(status) => {
                let message = format!("Injected fault: HTTP {status} {}", reason(status));
                let mut st = lock(&shared.state);
                return Outcome::Respond(if is_iam {
                    iam_error(&mut st, &req, status, IAM_FAULT_CODE, &message, None)
                } else {
                    crg_error(&mut st, status, CRG_FAULT_CODE, &message)
                });
            }
            FaultKind::Error {
                status,
                code,
                message,
            } => {
                let mut st = lock(&shared.state);
                return Outcome::Respond(if is_iam {
                    iam_error(&mut st, &req, status, &code, &message, None)
                } else {
                    crg_error(&mut st, status, &code, &message)
                });
            }
            FaultKind::TooManyRequests { retry_after_secs } => {
                let message = "Too many requests, retry later.";
                let mut st = lock(&shared.state);
                let resp = if is_iam {
                    iam_error(&mut st, &req, 429, IAM_FAULT_CODE, message, None)
                } else {
                    crg_error(&mut st, 429, CRG_FAULT_CODE, message)
                };
                return Outcome::Respond(
                    resp.with_header("Retry-After", &retry_after_secs.to_string()),
                );
            }
            FaultKind::TruncatedJson => {
                let partial: &[u8] = if is_iam {
                    br#"{"access_token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpYW1faWQiOi"#
                } else {
                    br#"{"token":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE1"#
                };
                let mut resp = Response::json(200, &Value::Null);
                resp.body = partial.to_vec();
                let declared = partial.len() * 4;
                return Outcome::Truncated(resp, declared);
            }
            FaultKind::GarbageJson => {
                let mut resp = Response::json(200, &Value::Null);
                resp.body = if is_iam {
                    br#"{"access_token": "#.to_vec()
                } else {
                    br#"{"token": "#.to_vec()
                };
                return Outcome::Respond(resp);
            }
            FaultKind::Close => return Outcome::Close,
            FaultKind::Reply { status, body } => {
                return Outcome::Respond(Response::json(status, &body))
            }
        }
    }
    let mut st = lock(&shared.state);
    Outcome::Respond(route(&mut st, &req))
}

fn route(st: &mut State, req: &Request) -> Response {
    if req.path == IAM_TOKEN_PATH {
        return iam_token(st, req);
    }
    if vpc::is_metadata_path(&req.path) {
        return vpc::route(st, req);
    }
    if req.path == TOKENS_PATH
        || req
            .path
            .strip_prefix(TOKENS_PATH)
            .is_some_and(|rest| rest.starts_with('/'))
    {
        return registry_tokens(st, req);
    }
    if req.path.starts_with("/identity") {
        let message =
            "Web application exception 'javax.ws.rs.NotFoundException' during request processing.";
        return iam_error(
            st,
            req,
            404,
            IAM_METHOD_NOT_ALLOWED,
            message,
            Some("HTTP 404 Not Found"),
        );
    }
    // INVENTED code for an unknown registry API path.
    crg_error(
        st,
        404,
        CRG_BAD_REQUEST,
        "The requested resource does not exist.",
    )
}

// ---------------------------------------------------------------------------------------------
// IAM (ibm-api.md §2)
// ---------------------------------------------------------------------------------------------

/// An IAM error body of the §2.4 shape, with a `Transaction-Id` header.
fn iam_error(
    st: &mut State,
    req: &Request,
    status: u16,
    code: &str,
    message: &str,
    details: Option<&str>,
) -> Response {
    if req.path == IAM_TOKEN_PATH {
        st.stats.iam_failures += 1;
    }
    let request_id = st.iam_request_id();
    let start = now_millis();
    let mut body = json!({
        "context": {
            "requestId": request_id,
            "requestType": "incoming.Identity_Token",
            "userAgent": req.header("user-agent").unwrap_or(""),
            "url": "https://iam.cloud.ibm.com",
            "instanceId": "iamid-fake-0-0000-0000000-fake-ibm-api",
            "threadId": format!("{:x}", st.serial),
            "host": "iamid-fake-0-0000-0000000-fake-ibm-api",
            "startTime": iam_time(start),
            "endTime": iam_time(start),
            "elapsedTime": "0",
            "locale": "en_US",
            "clusterName": "iam-id-fake"
        },
        "errorCode": code,
        "errorMessage": message,
    });
    if let Some(details) = details {
        body["errorDetails"] = json!(details);
    }
    Response::json(status, &body).with_header("Transaction-Id", &request_id)
}

fn has_bx_client(req: &Request) -> bool {
    req.header("authorization").is_some_and(|v| {
        let mut parts = v.split_whitespace();
        matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(scheme), Some(cred), None)
                if scheme.eq_ignore_ascii_case("basic")
                    && BASIC.decode(cred).ok().as_deref() == Some(b"bx:bx".as_slice())
        )
    })
}

fn iam_token(st: &mut State, req: &Request) -> Response {
    if req.method != "POST" {
        let message =
            "Web application exception 'javax.ws.rs.ClientErrorException' during request processing.";
        return iam_error(
            st,
            req,
            405,
            IAM_METHOD_NOT_ALLOWED,
            message,
            Some("HTTP 405 Method Not Allowed"),
        )
        .with_header("Allow", "POST");
    }
    let content_type = req
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if content_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return iam_error(
            st,
            req,
            400,
            IAM_PROPERTY_MISSING,
            "Property missing or empty.",
            Some("Content-Type must be application/x-www-form-urlencoded."),
        );
    }
    let missing = |st: &mut State, name: &str| {
        let details = format!("Property '{name}' either missing or empty.");
        iam_error(
            st,
            req,
            400,
            IAM_PROPERTY_MISSING,
            "Property missing or empty.",
            Some(&details),
        )
    };
    let field = |name: &str| req.form_param(name).filter(|v| !v.is_empty());
    let Some(grant_type) = field("grant_type") else {
        return missing(st, "grant_type");
    };
    let bx = has_bx_client(req);
    match grant_type.as_str() {
        APIKEY_GRANT => {
            let Some(key) = field("apikey") else {
                return missing(st, "apikey");
            };
            let Some(account) = st.config.api_keys.get(&key).cloned() else {
                return iam_error(
                    st,
                    req,
                    400,
                    IAM_KEY_NOT_FOUND,
                    "Provided API key could not be found",
                    None,
                );
            };
            mint_iam(
                st,
                &account,
                &Identity::of_key(&key),
                (APIKEY_GRANT, APIKEY_GRANT),
                bx,
            )
        }
        REFRESH_GRANT => {
            if !bx {
                let message = if req.header("authorization").is_some() {
                    "Client authentication failed"
                } else {
                    "No authorization header found"
                };
                return iam_error(st, req, 400, IAM_NO_CLIENT_AUTH, message, None);
            }
            let Some(refresh) = field("refresh_token") else {
                return missing(st, "refresh_token");
            };
            let Some(grant) = st.refresh_tokens.get(&refresh) else {
                return iam_error(
                    st,
                    req,
                    400,
                    IAM_INVALID_TOKEN,
                    "Provided refresh token is invalid",
                    None,
                );
            };
            if grant.invalidated {
                let message = "Session invalidated due to inactivity";
                return iam_error(st, req, 400, IAM_SESSION_INACTIVE, message, None);
            }
            if grant.expires_at <= now_secs() {
                let message = "Provided refresh token is expired";
                return iam_error(st, req, 400, IAM_REFRESH_EXPIRED, message, None);
            }
            let (account, identity, original) = (
                grant.account.clone(),
                grant.identity.clone(),
                grant.grant_type.clone(),
            );
            mint_iam(st, &account, &identity, (&original, REFRESH_GRANT), true)
        }
        CR_TOKEN_GRANT => cr_token_grant(st, req, bx),
        other => {
            let details = format!("Grant type '{other}' is not supported.");
            iam_error(
                st,
                req,
                400,
                IAM_UNSUPPORTED_GRANT,
                "Unsupported grant type.",
                Some(&details),
            )
        }
    }
}

/// The cr-token grant (`fleet.md` §2): a CR token this fake signed, unexpired, and exactly one
/// of `profile_id`, `profile_name`, `profile_crn` naming a profile whose rules accept the
/// token's `sub`.
fn cr_token_grant(st: &mut State, req: &Request, bx: bool) -> Response {
    let field = |name: &str| req.form_param(name).filter(|v| !v.is_empty());
    let Some(cr_token) = field("cr_token") else {
        let details = "Property 'cr_token' either missing or empty.";
        let message = "Property missing or empty.";
        return iam_error(st, req, 400, IAM_PROPERTY_MISSING, message, Some(details));
    };
    let named: Vec<(&str, String)> = ["profile_id", "profile_name", "profile_crn"]
        .into_iter()
        .filter_map(|k| field(k).map(|v| (k, v)))
        .collect();
    let (kind, value) = match named.as_slice() {
        [one] => one.clone(),
        [] => {
            let details = "Property 'profile_id', 'profile_name' or 'profile_crn' is required.";
            let message = "Property missing or empty.";
            return iam_error(st, req, 400, IAM_PROPERTY_MISSING, message, Some(details));
        }
        _ => {
            // INVENTED: the live service's answer to two profile fields is unknown.
            let details = "Only one of 'profile_id', 'profile_name', 'profile_crn' may be given.";
            let message = "Property missing or empty.";
            return iam_error(st, req, 400, IAM_PROPERTY_MISSING, message, Some(details));
        }
    };
    let Some(claims) = verify_jwt(&cr_token) else {
        let message = "Provided CR token is invalid";
        return iam_error(st, req, 400, IAM_CR_TOKEN_INVALID, message, None);
    };
    if claims.get("exp").and_then(Value::as_u64).unwrap_or(0) <= now_secs() {
        let message = "Provided CR token is expired";
        return iam_error(st, req, 400, IAM_CR_TOKEN_INVALID, message, None);
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let profile = st.config.profiles.iter().find(|p| match kind {
        "profile_id" => p.id == value,
        "profile_name" => p.name == value,
        _ => p.crn == value,
    });
    let Some(profile) = profile.cloned() else {
        let message = "Trusted profile not found";
        return iam_error(st, req, 400, IAM_PROFILE_NOT_FOUND, message, None);
    };
    if !profile.accepts(&sub) {
        let details = format!(
            "The given token with identifier '{sub}' is not permitted to assume the indicated \
             trusted profile; profile ID '{}'",
            profile.id
        );
        let message = "Selected trusted profile not eligible.";
        return iam_error(
            st,
            req,
            400,
            IAM_PROFILE_NOT_ELIGIBLE,
            message,
            Some(&details),
        );
    }
    let identity = Identity::of_profile(&profile);
    mint_iam(
        st,
        &profile.account,
        &identity,
        (CR_TOKEN_GRANT, CR_TOKEN_GRANT),
        bx,
    )
}

/// `ibmcloud login --apikey`: an API-key grant with the `bx` client, outside the request log
/// and the counters (it is a test's set-up, not the helper's doing).
fn login(st: &mut State, key: &str) -> Option<(String, String)> {
    let account = st.config.api_keys.get(key).cloned()?;
    let stats = st.stats.clone();
    let grant = (APIKEY_GRANT, APIKEY_GRANT);
    let resp = mint_iam(st, &account, &Identity::of_key(key), grant, true);
    st.stats = stats;
    let body: Value = serde_json::from_slice(&resp.body).ok()?;
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    Some((text("access_token")?, text("refresh_token")?))
}

/// A §2.1-shaped success; a real refresh token only for the `bx` client (§2.2).
/// `grant_type` goes into the token's claims; `requested` is the grant of the request, for
/// [`Stats::iam_mints_by_grant`] (a refresh keeps the claims of the grant it refreshes).
fn mint_iam(
    st: &mut State,
    account: &str,
    identity: &Identity,
    (grant_type, requested): (&str, &str),
    bx: bool,
) -> Response {
    let lifetime = st.config.iam_lifetime;
    let (access_token, exp) = new_access_token(st, account, identity, grant_type, bx);
    let now = now_secs();
    let refresh_token = if bx {
        let a = st.fresh();
        let b = st.fresh();
        let token = URL_SAFE_NO_PAD.encode([a, b].concat());
        st.refresh_tokens.insert(
            token.clone(),
            RefreshGrant {
                account: account.to_string(),
                identity: identity.clone(),
                grant_type: grant_type.to_string(),
                expires_at: now.saturating_add(st.config.refresh_lifetime),
                invalidated: false,
            },
        );
        token
    } else {
        REFRESH_NOT_SUPPORTED.to_string()
    };
    st.stats.iam_mints += 1;
    let short = requested
        .rsplit(':')
        .next()
        .unwrap_or(requested)
        .to_string();
    *st.stats.iam_mints_by_grant.entry(short).or_insert(0) += 1;
    let transaction_id = st.iam_request_id();
    Response::json(
        200,
        &json!({
            "access_token": access_token,
            "refresh_token": refresh_token,
            "ims_user_id": identity.ims_user_id,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "expiration": exp,
            "scope": "ibm openid",
        }),
    )
    .with_header("Transaction-Id", &transaction_id)
}

/// A new IAM access token (§2.6's claims) for `identity` in `account`, valid for the
/// configured IAM lifetime and accepted by the registry and the token API until then:
/// (token, `exp`).
fn new_access_token(
    st: &mut State,
    account: &str,
    identity: &Identity,
    grant_type: &str,
    bx: bool,
) -> (String, u64) {
    let now = now_secs();
    let lifetime = st.config.iam_lifetime;
    let exp = now.saturating_add(lifetime);
    let jti = st.uuid();
    let sid = &identity.service_id;
    let claims = json!({
        "iam_id": format!("iam-{sid}"),
        "id": format!("iam-{sid}"),
        "realmid": "iam",
        "jti": jti,
        "identifier": sid,
        "sub": sid,
        "sub_type": identity.sub_type,
        "account": { "boundary": "global", "valid": true, "bss": account },
        "iat": now,
        "exp": exp,
        "iss": IAM_ISSUER,
        "grant_type": grant_type,
        "scope": "ibm openid",
        "client_id": if bx { "bx" } else { "default" },
    });
    let access_token = make_jwt(&claims);
    st.access_tokens.insert(
        access_token.clone(),
        AccessToken {
            account: account.to_string(),
            exp,
        },
    );
    (access_token, exp)
}

// ---------------------------------------------------------------------------------------------
// Registry token API (ibm-api.md §1)
// ---------------------------------------------------------------------------------------------

/// A registry error body of the §1.4 shape.
fn crg_error(st: &mut State, status: u16, code: &str, message: &str) -> Response {
    let request_id = st.crg_request_id();
    Response::json(
        status,
        &json!({ "code": code, "message": message, "request-id": request_id }),
    )
}

/// The account of a valid `Authorization: Bearer` + matching `Account` pair.
fn authorized_account(st: &State, req: &Request, now: u64) -> Option<String> {
    let authorization = req.header("authorization")?;
    let (scheme, token) = authorization.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let info = st.valid_access_token(token.trim(), now)?;
    let account = req.header("account")?;
    (account == info.account).then(|| info.account.clone())
}

fn registry_tokens(st: &mut State, req: &Request) -> Response {
    let now = now_secs();
    let Some(account) = authorized_account(st, req, now) else {
        return crg_error(st, 401, CRG_NOT_AUTHORIZED, CRG_NOT_AUTHORIZED_MESSAGE);
    };
    st.purge_expired_registry_tokens(now);
    let not_allowed = |st: &mut State| {
        crg_error(
            st,
            405,
            CRG_METHOD_NOT_ALLOWED,
            "The requested method is not supported.",
        )
    };
    if req.path == TOKENS_PATH {
        return match req.method.as_str() {
            "POST" => create_registry_token(st, req, &account, now),
            "GET" => list_registry_tokens(st, &account),
            "DELETE" => {
                let Some(description) = req.query_param("secondaryOwner") else {
                    return crg_error(
                        st,
                        400,
                        CRG_BAD_REQUEST,
                        "The secondaryOwner parameter is required.",
                    );
                };
                let before = st.registry_tokens.len();
                st.registry_tokens
                    .retain(|t| !(t.account == account && t.description == description));
                st.stats.registry_token_deletes += (before - st.registry_tokens.len()) as u64;
                Response::json(200, &json!({}))
            }
            _ => not_allowed(st),
        };
    }
    let id = req.path[TOKENS_PATH.len() + 1..].to_string();
    if id.is_empty() || id.contains('/') {
        return crg_error(
            st,
            404,
            CRG_BAD_REQUEST,
            "The requested resource does not exist.",
        );
    }
    // `token-rm` accepted the token's id or its value (ibm-api.md §1.1).
    let found = st
        .registry_tokens
        .iter()
        .position(|t| t.account == account && (t.id == id || t.token == id));
    let not_found = |st: &mut State| {
        crg_error(
            st,
            404,
            CRG_TOKEN_NOT_FOUND,
            "The specified token could not be found.",
        )
    };
    match (req.method.as_str(), found) {
        ("GET", Some(i)) => Response::json(200, &json!({ "token": st.registry_tokens[i].token })),
        ("DELETE", Some(i)) => {
            st.registry_tokens.remove(i);
            st.stats.registry_token_deletes += 1;
            Response::json(200, &json!({}))
        }
        ("GET" | "DELETE", None) => not_found(st),
        _ => not_allowed(st),
    }
}

fn create_registry_token(st: &mut State, req: &Request, account: &str, now: u64) -> Response {
    if st.config.refuse_token_creation {
        return crg_error(
            st,
            CREATION_REFUSED_STATUS,
            CRG_CREATION_REFUSED,
            CRG_CREATION_REFUSED_MESSAGE,
        );
    }
    let flag = |name: &str| {
        req.query_param(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    };
    let description = req.query_param("description").unwrap_or_default();
    let (permanent, write) = (flag("permanent"), flag("write"));
    let id = st.uuid();
    let expiry = (!permanent).then(|| now.saturating_add(st.config.registry_token_lifetime));
    let issuer = req
        .header("host")
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_REGISTRY_ISSUER);
    let mut claims = Map::new();
    if let Some(exp) = expiry {
        claims.insert("exp".to_string(), json!(exp));
    }
    claims.insert("jti".to_string(), json!(id));
    claims.insert("iss".to_string(), json!(issuer));
    let token = make_jwt(&Value::Object(claims));
    st.registry_tokens.push(RegistryToken {
        id,
        account: account.to_string(),
        token: token.clone(),
        description,
        readonly: !write,
        revoked: false,
        expiry,
    });
    st.stats.registry_token_creates += 1;
    Response::json(200, &json!({ "token": token }))
}

fn list_registry_tokens(st: &State, account: &str) -> Response {
    let tokens: Vec<Value> = st
        .registry_tokens
        .iter()
        .filter(|t| t.account == account)
        .map(|t| {
            json!({
                "_id": t.id,
                "owner": t.account,
                "token": t.token,
                "secondary_owner": t.description,
                "readonly": t.readonly,
                "revoked": t.revoked,
                // INVENTED: 0 for a permanent token.
                "expiry": t.expiry.unwrap_or(0),
                // INVENTED: an opaque digest stands in for the real encrypted form.
                "encrypted_token": hex(&Sha256::digest(t.token.as_bytes())),
            })
        })
        .collect();
    Response::json(200, &json!({ "tokens": tokens }))
}

// ---------------------------------------------------------------------------------------------
// /registry-auth: what IBM's registry would accept (ibm-api.md §4, §1.6)
// ---------------------------------------------------------------------------------------------

/// `host[:port]` / `[v6]:port` → lower-cased host.
fn strip_port(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or("")
    } else {
        host
    };
    bare.to_ascii_lowercase()
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let (scheme, encoded) = req.header("authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(BASIC.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

fn registry_auth(st: &mut State, req: &Request) -> Response {
    let now = now_secs();
    let host = strip_port(req.header("x-original-host").unwrap_or(""));
    let method = req
        .header("x-original-method")
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let credentials = basic_credentials(req);
    let plain = st
        .config
        .plain_users
        .iter()
        .find(|(h, _)| strip_port(h) == host)
        .map(|(_, up)| up.clone());
    let (accepted_as, realm) = if let Some((user, pass)) = plain {
        let ok = credentials.as_ref() == Some(&(user.clone(), pass));
        (ok.then(|| format!("plain:{user}")), host.clone())
    } else {
        let accepted = credentials
            .as_ref()
            .is_some_and(|(user, pass)| match user.as_str() {
                "iamapikey" => st.config.api_keys.contains_key(pass),
                "iambearer" => st.valid_access_token(pass, now).is_some(),
                // The registry exchanges a refresh token itself (ibm-api.md §4).
                "iamrefresh" => st.refresh_tokens.contains_key(pass),
                // Legacy registry tokens (rejected by the live service since 2021, ibm-api.md §0);
                // read-only ones only for pulls.
                "token" => st.registry_tokens.iter().any(|t| {
                    t.token == *pass
                        && !t.revoked
                        && t.expiry.is_none_or(|exp| exp > now)
                        && (!t.readonly || method == "GET" || method == "HEAD")
                }),
                _ => false,
            });
        let user = credentials.map(|(user, _)| user);
        (user.filter(|_| accepted), IBM_REALM.to_string())
    };
    match accepted_as {
        Some(user) => {
            st.stats.registry_auth_ok += 1;
            *st.stats.registry_auth_by_user.entry(user).or_insert(0) += 1;
            Response::empty(200)
        }
        None => {
            st.stats.registry_auth_denied += 1;
            Response::empty(401)
                .with_header("WWW-Authenticate", &format!("Basic realm=\"{realm}\""))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /_fake/* control endpoints
// ---------------------------------------------------------------------------------------------

fn control_error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "error": message }))
}

fn control(st: &mut State, req: &Request) -> Response {
    let ok = || Response::json(200, &json!({}));
    let method = req.method.as_str();
    match (method, req.path.as_str()) {
        ("GET", "/_fake/requests") => {
            let list: Vec<Value> = st
                .requests
                .iter()
                .map(|r| {
                    let mut headers = Map::new();
                    for (name, value) in &r.headers {
                        let joined = match headers.get(name).and_then(Value::as_str) {
                            Some(prev) => format!("{prev}, {value}"),
                            None => value.clone(),
                        };
                        headers.insert(name.clone(), Value::String(joined));
                    }
                    json!({
                        "method": r.method,
                        "path": r.path,
                        "query": r.query,
                        "headers": headers,
                        "body": r.body_str(),
                    })
                })
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("POST", "/_fake/reset") => {
            st.requests.clear();
            st.stats = Stats::default();
            ok()
        }
        ("GET", "/_fake/stats") => Response::json(200, &st.stats.to_json()),
        ("POST", "/_fake/config") => {
            match parse_json_object(req).and_then(|o| apply_config(st, &o)) {
                Ok(()) => ok(),
                Err(e) => control_error(400, &e),
            }
        }
        ("POST", "/_fake/fault") => match parse_json_object(req).and_then(|o| parse_fault(&o)) {
            Ok(fault) => {
                st.faults.push(ActiveFault::from(fault));
                ok()
            }
            Err(e) => control_error(400, &e),
        },
        ("POST", "/_fake/faults/clear") => {
            st.faults.clear();
            ok()
        }
        ("POST", "/_fake/cr-token") => match parse_json_object(req).and_then(|o| {
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
            let sub = text("sub").ok_or("`sub` must be a string")?;
            let iss = text("iss").unwrap_or_else(|| "https://kubernetes.default.svc".to_string());
            Ok((iss, sub, get_u64(&o, "lifetime")?.unwrap_or(3600)))
        }) {
            Ok((iss, sub, lifetime)) => {
                let now = now_secs();
                let jti = st.uuid();
                let exp = match lifetime {
                    0 => now.saturating_sub(1),
                    _ => now.saturating_add(lifetime),
                };
                Response::json(
                    200,
                    &json!({ "token": make_cr_token(&iss, &sub, now, exp, &jti) }),
                )
            }
            Err(e) => control_error(400, &e),
        },
        ("POST", "/_fake/login") => {
            let key = parse_json_object(req)
                .ok()
                .and_then(|o| o.get("api_key").and_then(Value::as_str).map(str::to_string));
            match key.and_then(|k| login(st, &k)) {
                Some((access, refresh)) => Response::json(
                    200,
                    &json!({ "access_token": access, "refresh_token": refresh }),
                ),
                None => control_error(400, "`api_key` must be a known API key"),
            }
        }
        ("POST", "/_fake/sessions/expire") => {
            st.refresh_tokens
                .values_mut()
                .for_each(|g| g.expires_at = 0);
            ok()
        }
        ("POST", "/_fake/sessions/invalidate") => {
            st.refresh_tokens
                .values_mut()
                .for_each(|g| g.invalidated = true);
            ok()
        }
        (
            _,
            "/_fake/requests"
            | "/_fake/reset"
            | "/_fake/stats"
            | "/_fake/config"
            | "/_fake/fault"
            | "/_fake/faults/clear"
            | "/_fake/cr-token"
            | "/_fake/login"
            | "/_fake/sessions/expire"
            | "/_fake/sessions/invalidate",
        ) => control_error(405, "method not allowed"),
        _ => control_error(404, "no such control endpoint"),
    }
}

fn parse_json_object(req: &Request) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err("body must be a JSON object".to_string()),
        Err(e) => Err(format!("body is not JSON: {e}")),
    }
}

fn get_u64(o: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a non-negative integer")),
    }
}

fn get_str_map(o: &Map<String, Value>, key: &str) -> Result<Vec<(String, String)>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| format!("`{key}.{k}` must be a string"))
            })
            .collect(),
        Some(_) => Err(format!("`{key}` must be an object of strings")),
    }
}

/// Merges a partial config: `iam_lifetime`, `registry_token_lifetime`,
/// `refuse_token_creation`, `api_keys` (added), `plain_users` (`{"host": "user:pass"}`, added),
/// `refresh_lifetime`, `vpc_default_profile` (a profile id, or `null` for none) and `profiles`
/// (`{"<name>": {"account": "<32 hex>", "subjects": ["system:serviceaccount:ns:sa", …]}}`,
/// added; ids and CRNs as [`TrustedProfile::new`] derives them).
fn apply_config(st: &mut State, o: &Map<String, Value>) -> Result<(), String> {
    const KNOWN: [&str; 8] = [
        "iam_lifetime",
        "registry_token_lifetime",
        "refuse_token_creation",
        "api_keys",
        "plain_users",
        "refresh_lifetime",
        "vpc_default_profile",
        "profiles",
    ];
    if let Some(unknown) = o.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("unknown config field `{unknown}`"));
    }
    // Validate everything before changing anything.
    let iam_lifetime = get_u64(o, "iam_lifetime")?;
    let registry_token_lifetime = get_u64(o, "registry_token_lifetime")?;
    let refuse = match o.get("refuse_token_creation") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err("`refuse_token_creation` must be a boolean".to_string()),
    };
    let api_keys = get_str_map(o, "api_keys")?;
    let refresh_lifetime = get_u64(o, "refresh_lifetime")?;
    let vpc_default_profile = match o.get("vpc_default_profile") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(id)) => Some(Some(id.clone())),
        Some(_) => return Err("`vpc_default_profile` must be a string or null".to_string()),
    };
    let mut profiles = Vec::new();
    match o.get("profiles") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (name, p) in m {
                let account = p
                    .get("account")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("`profiles.{name}.account` must be a string"))?;
                let subjects: Vec<&str> = match p.get("subjects") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|s| s.as_str().ok_or(()))
                        .collect::<Result<_, ()>>()
                        .map_err(|()| format!("`profiles.{name}.subjects` must be strings"))?,
                    _ => return Err(format!("`profiles.{name}.subjects` must be an array")),
                };
                profiles.push(TrustedProfile::new(name, account, &subjects));
            }
        }
        Some(_) => return Err("`profiles` must be an object".to_string()),
    }
    let mut plain_users = Vec::new();
    for (host, user_pass) in get_str_map(o, "plain_users")? {
        let (user, pass) = user_pass
            .split_once(':')
            .ok_or_else(|| format!("`plain_users.{host}` must be \"user:password\""))?;
        plain_users.push((host, (user.to_string(), pass.to_string())));
    }
    let config = &mut st.config;
    if let Some(v) = iam_lifetime {
        config.iam_lifetime = v;
    }
    if let Some(v) = registry_token_lifetime {
        config.registry_token_lifetime = v;
    }
    if let Some(v) = refuse {
        config.refuse_token_creation = v;
    }
    config.api_keys.extend(api_keys);
    config.plain_users.extend(plain_users);
    if let Some(v) = refresh_lifetime {
        config.refresh_lifetime = v;
    }
    if let Some(v) = vpc_default_profile {
        config.vpc_default_profile = v;
    }
    for profile in profiles {
        config.profiles.retain(|p| p.id != profile.id);
        config.profiles.push(profile);
    }
    Ok(())
}

/// `{"method":"POST"|null,"path_prefix":"/identity/token","kind":"status"|"error"|"delay"|
/// "too_many"|"truncated"|"garbage"|"close","status":500,"code":"BXNIM0415E","message":"…",
/// "delay_ms":100,"retry_after":1,"times":0}`.
fn parse_fault(o: &Map<String, Value>) -> Result<Fault, String> {
    let method = match o.get("method") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.to_ascii_uppercase()),
        Some(_) => return Err("`method` must be a string or null".to_string()),
    };
    let path_prefix = match o.get("path_prefix") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err("`path_prefix` must be a string".to_string()),
    };
    let times = match get_u64(o, "times")? {
        None => 0,
        Some(t) => u32::try_from(t).map_err(|_| "`times` is too large".to_string())?,
    };
    let kind = match o.get("kind").and_then(Value::as_str) {
        Some("status") => {
            let status = get_u64(o, "status")?.unwrap_or(500);
            if !(100..=999).contains(&status) {
                return Err("`status` must be a 3-digit HTTP status".to_string());
            }
            FaultKind::Status(status as u16)
        }
        Some("error") => {
            let status = get_u64(o, "status")?.unwrap_or(400);
            if !(100..=999).contains(&status) {
                return Err("`status` must be a 3-digit HTTP status".to_string());
            }
            let text = |key: &str| match o.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(format!("`error` needs `{key}`, a string")),
            };
            FaultKind::Error {
                status: status as u16,
                code: text("code")?,
                message: text("message")?,
            }
        }
        Some("delay") => FaultKind::Delay(Duration::from_millis(
            get_u64(o, "delay_ms")?.ok_or("`delay` needs `delay_ms`")?,
        )),
        Some("too_many") => FaultKind::TooManyRequests {
            retry_after_secs: get_u64(o, "retry_after")?.unwrap_or(1),
        },
        Some("truncated") => FaultKind::TruncatedJson,
        Some("garbage") => FaultKind::GarbageJson,
        Some("close") => FaultKind::Close,
        _ => {
            let kinds = "status, error, delay, too_many, truncated, garbage, close";
            return Err(format!("`kind` must be one of {kinds}"));
        }
    };
    Ok(Fault {
        method,
        path_prefix,
        kind,
        times,
    })
}
