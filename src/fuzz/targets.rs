//! The fuzz targets: one per parser of untrusted input, each a check of
//! the README's promises plus the properties its parser states (what it
//! writes it reads, a host is IBM's only when a URL parser agrees, …).
//! Each `#[test]` is one target; its corpus is `fuzz/corpus/<name>/`.

use std::path::Path;

use serde_json::Value;

use super::{clean_error, fuzz, hides_secret, Checked, Ctx, Outcome, CANARY};
use crate::cache::{Cache, IamKey, MintKey, RefusalKey, RegistryKey};
use crate::env::Env;
use crate::protocol::{self, Error};
use crate::registry::{IbmHost, Registry, HOSTS};
use crate::secret::Secret;
use crate::settings::Settings;
use crate::store::file::{Document, FileStore};
use crate::store::keyring::KeyringStore;
use crate::store::SecretStore;
use crate::{jwt, mint};

/// The API key the IAM and registry targets say they sent: server text
/// must never show it. It has a space, as a pasted key may.
const API_KEY: &str = "CANARY-7f3a9c/+= &k";
/// "Now" for the cache's expiry logic.
const NOW: u64 = 1_700_000_000;

/// A check's failure when `ok` is false.
fn require(ok: bool, what: &str, detail: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what} | {}", detail()))
    }
}

/// A protocol error: one clean line as shown, and as anyhow renders it
/// before `Error`'s Display folds it; never the secret, not even in Debug.
fn protocol_error(what: &str, e: &Error) -> Result<(), String> {
    clean_error(what, &e.to_string())?;
    if let Error::Other(inner) = e {
        clean_error(what, &format!("{inner:#}"))?;
    }
    hides_secret(what, &format!("{e:?}"), "")
}

/// Text that holds no secret by design (settings, a cached failure): one
/// line is all it must be.
fn one_line(what: &str, text: &str) -> Result<(), String> {
    require(!text.chars().any(char::is_control), what, || {
        format!("not one clean line: {text:?}")
    })
}

// ---------------------------------------------------------------- stdin

/// `store`'s stdin, read as the reference reads it (lines joined), and
/// also as raw bytes, decoded with Go's rules.
fn store_stdin(input: &[u8], _: &Ctx) -> Checked {
    let joined = match protocol::read_input(&mut &input[..]) {
        Ok(joined) => joined,
        Err(e) => {
            protocol_error("store stdin: read", &e)?;
            return Ok(Outcome::Refused);
        }
    };
    let mut outcome = Outcome::Refused;
    for bytes in [&joined[..], input] {
        match protocol::parse_store(bytes) {
            Ok(creds) => {
                require(
                    !creds.server_url.is_empty() && !creds.username.is_empty(),
                    "store stdin: accepted without ServerURL or Username",
                    || format!("{creds:?}"),
                )?;
                let shown = format!("{} {}", creds.server_url, creds.username);
                hides_secret("store stdin", &format!("{creds:?}"), &shown)?;
                outcome = Outcome::Parsed;
            }
            Err(e) => protocol_error("store stdin", &e)?,
        }
    }
    Ok(outcome)
}

/// `get`/`erase` stdin, then the ServerURL as a registry; also the raw
/// bytes as a ServerURL (a config key, a `list` entry).
fn server_url(input: &[u8], _: &Ctx) -> Checked {
    let read = protocol::read_input(&mut &input[..]).and_then(|b| protocol::parse_server_url(&b));
    let outcome = match read {
        Ok(url) => {
            check_registry(&url)?;
            Outcome::Parsed
        }
        Err(e) => {
            protocol_error("server url", &e)?;
            Outcome::Refused
        }
    };
    check_registry(&String::from_utf8_lossy(input))?;
    Ok(outcome)
}

/// A ServerURL is IBM's only as a table entry, consistently, and only when
/// a URL parser would connect to that same host: no look-alike gets a key.
fn check_registry(url: &str) -> Result<(), String> {
    let host = match Registry::parse(url) {
        Registry::Other(other) => {
            return require(
                other == url && IbmHost::parse(url).is_none(),
                "server url: Other is not the input",
                || format!("{url:?}"),
            );
        }
        Registry::Ibm(host) => host,
    };
    require(
        IbmHost::parse(url) == Some(host)
            && HOSTS.iter().any(|h| h.0 == host.name())
            && IbmHost::parse(host.name()) == Some(host),
        "server url: IBM host is not a stable table entry",
        || format!("{url:?} → {host}"),
    )?;
    let trimmed = url.trim();
    let lower = trimmed.to_ascii_lowercase();
    let absolute = if lower.starts_with("https://") || lower.starts_with("http://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    };
    // A URL the parser refuses reaches no host at all: only a different host is a leak.
    if let Ok(parsed) = reqwest::Url::parse(&absolute) {
        require(
            parsed.host_str() == Some(host.name()),
            "server url: taken for an IBM host that a URL parser reads differently",
            || format!("{url:?} → {host}, URL parser: {:?}", parsed.host_str()),
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------- files

/// The file store's `store.json`: parsed, written back, parsed again; and,
/// now and then, through `FileStore` itself.
fn store_file(input: &[u8], ctx: &Ctx) -> Checked {
    let path = Path::new("/fuzz/store.json");
    let outcome = match Document::parse(input, path) {
        Ok(doc) => {
            let shown: Vec<String> = doc
                .credentials
                .iter()
                .map(|(key, record)| format!("{key} {}", record.username))
                .collect();
            hides_secret(
                "store file",
                &format!("{:?}", doc.credentials),
                &shown.join(" "),
            )?;
            let written = serde_json::to_vec_pretty(&doc).expect("encoding a store");
            let again = Document::parse(&written, path);
            require(
                again
                    .as_ref()
                    .is_ok_and(|a| a.credentials == doc.credentials),
                "store file: what it writes, it does not read back",
                || String::from_utf8_lossy(&written).into_owned(),
            )?;
            Outcome::Parsed
        }
        Err(e) => {
            clean_error("store file", &format!("{e:#}"))?;
            Outcome::Refused
        }
    };
    if ctx.slow {
        ctx.file("store.json", input);
        let store = FileStore::new(ctx.dir.clone());
        match store.list() {
            Ok(list) => {
                require(
                    outcome == Outcome::Parsed,
                    "store file: loader and parser disagree",
                    || "the loader accepted it".into(),
                )?;
                for key in list.keys() {
                    let got = store
                        .get(key)
                        .map_err(|e| format!("store file: get failed | {e:#}"))?;
                    require(
                        got.is_some(),
                        "store file: a listed key is not found",
                        || key.clone(),
                    )?;
                }
            }
            Err(e) => {
                require(
                    outcome == Outcome::Refused,
                    "store file: loader and parser disagree",
                    || format!("{e:#}"),
                )?;
                clean_error("store file: load", &format!("{e:#}"))?;
            }
        }
    }
    Ok(outcome)
}

/// The keyring index (`keyring-index.json`, key → username), through
/// `KeyringStore` on a scratch dir: `list`, and a `get` of a key the index
/// lacks, which must answer from the index without a keyring call.
fn keyring_index(input: &[u8], ctx: &Ctx) -> Checked {
    ctx.file("keyring-index.json", input);
    let store = KeyringStore::new(ctx.dir.clone());
    match store.list() {
        Ok(list) => {
            let absent = "absent.fuzz.invalid";
            if !list.contains_key(absent) {
                let got = store.get(absent);
                require(
                    matches!(got, Ok(None)),
                    "keyring index: absent key not answered",
                    || format!("{got:?}"),
                )?;
            }
            Ok(Outcome::Parsed)
        }
        Err(e) => {
            clean_error("keyring index", &format!("{e:#}"))?;
            Ok(Outcome::Refused)
        }
    }
}

/// The token cache `tokens.json`. It never fails (corrupt is empty); what
/// it reads it writes back identically; its accessors work on what it read.
fn cache_file(input: &[u8], ctx: &Ctx) -> Checked {
    let cache = Cache::parse(input, Path::new("/fuzz/tokens.json"));
    let value = serde_json::to_value(&cache).expect("encoding a cache");
    hides_secret(
        "cache file",
        &format!("{cache:?}"),
        &without_tokens(value.clone()).to_string(),
    )?;
    let written = serde_json::to_vec(&cache).expect("encoding a cache");
    let again = Cache::parse(&written, Path::new("/fuzz/again.json"));
    require(
        again == cache,
        "cache file: what it writes, it does not read back",
        || String::from_utf8_lossy(&written).into_owned(),
    )?;
    use_cache(&cache, &value)?;
    if ctx.slow {
        ctx.file("tokens.json", input);
        let mut loaded = Cache::load(&ctx.dir).map_err(|e| format!("cache file: load | {e:#}"))?;
        require(
            loaded == cache,
            "cache file: loader and parser disagree",
            String::new,
        )?;
        loaded
            .save(&ctx.dir, NOW)
            .map_err(|e| format!("cache file: save | {e:#}"))?;
        let reloaded = Cache::load(&ctx.dir).map_err(|e| format!("cache file: reload | {e:#}"))?;
        require(
            reloaded == loaded,
            "cache file: saved cache reads back differently",
            String::new,
        )?;
    }
    Ok(if cache == Cache::default() {
        Outcome::Refused
    } else {
        Outcome::Parsed
    })
}

/// The cache as JSON without its secrets: what `Debug` may show.
fn without_tokens(mut value: Value) -> Value {
    for table in ["iam", "registry"] {
        if let Some(Value::Object(tokens)) = value.get_mut(table) {
            for minted in tokens.values_mut() {
                if let Some(m) = minted.as_object_mut() {
                    m.remove("token");
                }
            }
        }
    }
    value
}

/// Calls the cache's accessors with the keys it holds.
fn use_cache(cache: &Cache, value: &Value) -> Result<(), String> {
    let keys = |table: &str| -> Vec<String> {
        value
            .get(table)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    for host in keys("hosts") {
        let entry = cache.host(&host);
        require(
            entry.is_some(),
            "cache file: a host it holds is not found",
            || host.clone(),
        )?;
        if let Some(minted) = entry.and_then(|e| cache.token(&e.token)) {
            let _ = minted.freshness(NOW);
        }
        let _ = cache.epoch(&host);
    }
    for key in keys("iam") {
        let key: IamKey = key
            .parse()
            .map_err(|()| format!("cache file: iam key | {key}"))?;
        require(
            cache.iam(&key).is_some(),
            "cache file: iam key not found",
            || key.to_string(),
        )?;
    }
    for key in keys("registry") {
        let key: RegistryKey = key
            .parse()
            .map_err(|()| format!("cache file: registry key | {key}"))?;
        require(
            cache.registry(&key).is_some(),
            "cache file: registry key not found",
            || key.to_string(),
        )?;
        let _ = cache.refused(&key.refusal(), NOW);
    }
    for key in keys("failures") {
        let key: MintKey = key
            .parse()
            .map_err(|()| format!("cache file: failure key | {key}"))?;
        for now in [0, NOW] {
            if let Some(e) = cache.recent_failure(&key, now) {
                one_line("cache file: recent failure", &format!("{e:#}"))?;
            }
        }
    }
    for key in keys("refused") {
        let key: RefusalKey = key
            .parse()
            .map_err(|()| format!("cache file: refusal key | {key}"))?;
        let _ = cache.refused(&key, NOW);
    }
    let _ = cache.holds(&Secret::new(CANARY.to_string()));
    Ok(())
}

/// The optional settings file. It holds no secret, so serde's messages
/// may quote it; they must still be one line.
fn settings_file(input: &[u8], ctx: &Ctx) -> Checked {
    let parsed = Settings::parse(input, Path::new("/fuzz/config.json"));
    let outcome = match &parsed {
        Ok(settings) => {
            let env = Env::from_lookup(|_| None, false).expect("an empty environment");
            for &(name, _, _) in HOSTS {
                let host = IbmHost::lookup(name).expect("a table host");
                settings
                    .mode(&env, host)
                    .and_then(|_| settings.token_access(&env, host))
                    .map_err(|e| format!("settings file: no mode for {name} | {e:#}"))?;
            }
            Outcome::Parsed
        }
        Err(e) => {
            one_line("settings file", &format!("{e:#}"))?;
            Outcome::Refused
        }
    };
    if ctx.slow {
        ctx.file(crate::settings::FILE_NAME, input);
        let loaded = Settings::load(&ctx.dir);
        require(
            loaded.is_ok() == parsed.is_ok(),
            "settings file: loader and parser disagree",
            || format!("{loaded:?}"),
        )?;
    }
    Ok(outcome)
}

// ---------------------------------------------------------------- kubelet

/// A kubelet's `CredentialProviderRequest` on stdin: accepted with an image,
/// or refused on one clean line that never quotes the service account's token.
fn kubelet_request(input: &[u8], _: &Ctx) -> Checked {
    match crate::kubelet::read_request(&mut &input[..]) {
        Ok(request) => {
            require(
                !request.image.is_empty() && request.image == request.image.trim(),
                "kubelet request: accepted without a trimmed image",
                || format!("{:?}", request.image),
            )?;
            let shown = format!(
                "{:?} {:?}",
                request.image, request.service_account_annotations
            );
            hides_secret("kubelet request", &format!("{request:?}"), &shown)?;
            Ok(Outcome::Parsed)
        }
        Err(e) => {
            // The request's other fields are quoted on purpose (a wrong
            // kind, say): the one secret is the service account's token.
            let text = format!("{e} {e:?}");
            one_line("kubelet request", &e.to_string())?;
            let value = serde_json::from_slice::<Value>(input).unwrap_or_default();
            let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default();
            // Unless the same text is also a field the error may quote, or its own words.
            let quotable = [
                field("apiVersion"),
                field("kind"),
                field("image"),
                "credentialprovider.kubelet.k8s.io/v1 CredentialProviderRequest",
            ];
            let token = Some(field("serviceAccountToken"))
                .filter(|t| t.len() >= 8 && !quotable.iter().any(|q| q.contains(t)));
            require(
                token.is_none_or(|t| !text.contains(t)),
                "kubelet request: an error shows the service account token",
                || text.clone(),
            )?;
            Ok(Outcome::Refused)
        }
    }
}

// ---------------------------------------------------------------- tokens

/// JWT claims: the input as a token, and as a payload inside one (whose
/// claims must be exactly that JSON object, through either padding).
fn jwt_claims(input: &[u8], _: &Ctx) -> Checked {
    let token = String::from_utf8_lossy(input);
    let claims = jwt::claims(&token);
    require(
        claims.as_ref().is_none_or(Value::is_object),
        "jwt: claims are not an object",
        || format!("{claims:?}"),
    )?;
    let exp = claims.as_ref().and_then(|c| c.get("exp")?.as_u64());
    require(
        jwt::expiry(&token) == exp,
        "jwt: expiry disagrees with claims",
        || format!("{exp:?}"),
    )?;
    if let Some(c) = &claims {
        let payload = token
            .split('.')
            .nth(1)
            .map(base64url_decode)
            .unwrap_or_default();
        hides_secret("jwt", &c.to_string(), &String::from_utf8_lossy(&payload))?;
    }

    let want = serde_json::from_slice::<Value>(input)
        .ok()
        .filter(Value::is_object);
    let header = base64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#, false);
    for padded in [false, true] {
        let token = format!("{header}.{}.{CANARY}-sig", base64url_encode(input, padded));
        let got = jwt::claims(&token);
        require(got == want, "jwt: claims are not the payload", || {
            format!("{token:.200} → {got:?}")
        })?;
        let want_exp = want.as_ref().and_then(|c| c.get("exp")?.as_u64());
        require(
            jwt::expiry(&token) == want_exp,
            "jwt: expiry is not the payload's",
            || format!("{want_exp:?}"),
        )?;
    }
    Ok(if claims.is_some() || want.is_some() {
        Outcome::Parsed
    } else {
        Outcome::Refused
    })
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Reference base64url encoder (written apart from `jwt`'s decoder).
fn base64url_encode(bytes: &[u8], padded: bool) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(B64URL[(n >> (18 - 6 * i)) as usize & 63]));
            } else if padded {
                out.push('=');
            }
        }
    }
    out
}

/// A lenient reference decoder: only to tell whether a payload holds the canary.
fn base64url_decode(text: &str) -> Vec<u8> {
    let sextets: Vec<u32> = text
        .bytes()
        .filter_map(|c| match c {
            b'+' => Some(62),
            b'/' => Some(63),
            _ => B64URL.iter().position(|&b| b == c).map(|p| p as u32),
        })
        .collect();
    let mut out = Vec::new();
    for group in sextets.chunks(4) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &s)| n | s << (18 - 6 * i));
        for i in 0..group.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------- replies

/// IAM's reply to the API-key grant, and its error bodies.
fn iam_reply(input: &[u8], _: &Ctx) -> Checked {
    let outcome = match mint::parse_iam_token(input) {
        Ok(token) => {
            require(
                token.expires_in > 0,
                "iam reply: expires_in is 0",
                String::new,
            )?;
            let account = token.account.clone().unwrap_or_default();
            require(
                token.account.is_none() || is_plain(&account),
                "iam reply: account is not plain",
                || format!("{account:?}"),
            )?;
            hides_secret("iam reply", &format!("{token:?}"), &account)?;
            Outcome::Parsed
        }
        Err(why) => {
            clean_error("iam reply", &why)?;
            Outcome::Refused
        }
    };
    server_text("iam reply", input)?;
    Ok(outcome)
}

/// The registry token API's reply to a creation, and its error bodies.
fn registry_reply(input: &[u8], _: &Ctx) -> Checked {
    let outcome = match mint::parse_registry_token(input) {
        Ok(token) => {
            require(
                is_plain(&token.id),
                "registry reply: jti is not plain",
                || format!("{:?}", token.id),
            )?;
            let exp = jwt::expiry(token.token.expose());
            require(
                token.expires_at == exp,
                "registry reply: expiry is not exp",
                || format!("{:?} vs {exp:?}", token.expires_at),
            )?;
            hides_secret("registry reply", &format!("{token:?}"), &token.id)?;
            Outcome::Parsed
        }
        Err(why) => {
            clean_error("registry reply", &why)?;
            Outcome::Refused
        }
    };
    server_text("registry reply", input)?;
    Ok(outcome)
}

/// What an error message quotes from a reply: the whole error line (IBM's
/// code and message, withheld when they could echo the key) and any server
/// text, each one line, never the API key; server text at most 200 characters.
fn server_text(what: &str, body: &[u8]) -> Result<(), String> {
    let raw = String::from_utf8_lossy(body);
    let line = mint::status_error(400, body, API_KEY);
    one_line(what, &line)?;
    require(
        !line.contains(API_KEY),
        &format!("{what}: the error line shows the API key"),
        || format!("{line:?}"),
    )?;
    let shown = mint::server_text(&raw, API_KEY);
    one_line(what, &shown)?;
    require(
        !shown.contains(API_KEY),
        &format!("{what}: server text shows the API key"),
        || format!("{shown:?}"),
    )?;
    require(
        shown.chars().count() <= 200,
        &format!("{what}: server text too long"),
        || format!("{} chars", shown.chars().count()),
    )?;
    Ok(())
}

/// Printable ASCII, 1 to 200 characters: safe in a header, a path, a message.
fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic())
}

// ---------------------------------------------------------------- endpoints

/// An endpoint override (`IBMCLOUD_IAM_API_ENDPOINT`, `IBMCLOUD_CR_API_ENDPOINT`):
/// kept only as https, or http on loopback, without user info, query or
/// fragment; its errors never quote those parts, where a pasted secret sits.
fn endpoint(input: &[u8], _: &Ctx) -> Checked {
    let text = String::from_utf8_lossy(input);
    let mut outcome = Outcome::Refused;
    for (what, parse) in [
        (
            "endpoint",
            mint::Endpoint::parse as fn(&str) -> anyhow::Result<mint::Endpoint>,
        ),
        ("iam endpoint", mint::Endpoint::parse_iam),
    ] {
        match parse(&text) {
            Ok(endpoint) => {
                check_endpoint(what, &endpoint)?;
                outcome = Outcome::Parsed;
            }
            Err(e) => {
                let shown = format!("{e:#}");
                one_line(what, &shown)?;
                let hidden = secret_spans(&text);
                let visible = text
                    .match_indices(CANARY)
                    .any(|(at, _)| !hidden.iter().any(|span| span.contains(&at)));
                require(
                    !shown.contains(CANARY) || visible,
                    &format!("{what}: error quotes user info, a query or a fragment"),
                    || shown.clone(),
                )?;
            }
        }
    }
    Ok(outcome)
}

/// Where in `url` a pasted secret would sit: the user info of every
/// authority (after `://`, or after `http:`/`https:` and any slashes, as URL
/// parsers read it), and everything from the first `?` or `#`.
fn secret_spans(url: &str) -> Vec<std::ops::Range<usize>> {
    let query = url.find(['?', '#']).unwrap_or(url.len());
    let mut spans = Vec::new();
    spans.push(query..url.len());
    let mut starts: Vec<usize> = url.match_indices("://").map(|(i, _)| i + 3).collect();
    if let Some((scheme, rest)) = url.split_once(':') {
        let scheme = scheme.trim_start().replace(['\t', '\n', '\r'], "");
        if ["http", "https"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
        {
            starts.push(url.len() - rest.trim_start_matches(['/', '\\', '\t', '\n', '\r']).len());
        }
    }
    for start in starts {
        let authority = &url[start..];
        let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
        if let Some(at) = authority[..end].rfind('@') {
            spans.push(start..start + at);
        }
    }
    spans
}

fn check_endpoint(what: &str, endpoint: &mint::Endpoint) -> Result<(), String> {
    let base = endpoint.as_str();
    let url =
        reqwest::Url::parse(base).map_err(|e| format!("{what}: kept a non-URL | {base:?}: {e}"))?;
    // As the URL parser normalised the host: `0x7f.1` is 127.0.0.1, IPv6 in brackets.
    let host = url.host_str().unwrap_or_default();
    let loopback = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() && host.starts_with('['),
        Err(_) => host == "localhost",
    };
    require(
        url.username().is_empty()
            && url.password().is_none()
            && url.query().is_none()
            && url.fragment().is_none()
            && !base.ends_with('/')
            && !base.chars().any(char::is_control),
        &format!("{what}: kept user info, a query, a fragment or a trailing /"),
        || base.to_string(),
    )?;
    require(
        (url.scheme() == "https" || url.scheme() == "http" && loopback)
            && endpoint.is_loopback() == loopback,
        &format!("{what}: plain http to a remote host, or loopback misjudged"),
        || format!("{base} (loopback: {})", endpoint.is_loopback()),
    )?;
    let again =
        mint::Endpoint::parse(base).map_err(|e| format!("{what}: not stable | {base}: {e:#}"))?;
    require(
        again.as_str() == base,
        &format!("{what}: not stable"),
        || format!("{base} → {}", again.as_str()),
    )
}

// ---------------------------------------------------------------- tests

#[test]
fn store_stdin_never_panics_nor_leaks() {
    fuzz("store_stdin", store_stdin);
}

#[test]
fn server_url_never_panics_nor_mistakes_a_host() {
    fuzz("server_url", server_url);
}

#[test]
fn store_file_never_panics_nor_leaks() {
    fuzz("store_file", store_file);
}

#[test]
fn keyring_index_never_panics() {
    fuzz("keyring_index", keyring_index);
}

#[test]
fn cache_file_never_panics_nor_leaks() {
    fuzz("cache_file", cache_file);
}

#[test]
fn settings_file_never_panics() {
    fuzz("settings_file", settings_file);
}

#[test]
fn kubelet_request_never_panics_nor_leaks() {
    fuzz("kubelet_request", kubelet_request);
}

#[test]
fn jwt_claims_never_panic_nor_show_the_signature() {
    fuzz("jwt", jwt_claims);
}

#[test]
fn iam_reply_never_panics_nor_leaks() {
    fuzz("iam_reply", iam_reply);
}

#[test]
fn registry_reply_never_panics_nor_leaks() {
    fuzz("registry_reply", registry_reply);
}

#[test]
fn endpoint_never_panics_nor_keeps_a_secret() {
    fuzz("endpoint", endpoint);
}

#[test]
fn reference_base64url_round_trips() {
    for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", b"\xff\xfe\xfd\x00"] {
        for padded in [false, true] {
            assert_eq!(base64url_decode(&base64url_encode(data, padded)), data);
        }
    }
    assert_eq!(base64url_encode(b"ab", true), "YWI=");
    assert_eq!(base64url_encode(b"\xfb\xff", false), "-_8");
}
