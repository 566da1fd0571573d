//! Issue 3: IBM hosts answered with credentials the helper mints, tested
//! against the fake IBM API with exact requests and exact request counts.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::fake_ibm::{self, Config, FakeIbm, Fault, FaultKind};
use crate::util::{Output, Sandbox};

const KEY: &str = "CANARY-apikey-0f9e8d7c";
const OTHER_KEY: &str = "CANARY-apikey-other-1a2b";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const IAM: &str = "/identity/token";
const TOKENS: &str = "/api/v1/tokens";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fake that knows KEY and OTHER_KEY, and a sandbox pointed at it.
fn setup(config: Config) -> (FakeIbm, Sandbox) {
    let mut config = config;
    config.api_keys.insert(KEY.into(), ACCOUNT.into());
    config
        .api_keys
        .insert(OTHER_KEY.into(), "fedcba9876543210fedcba9876543210".into());
    let fake = FakeIbm::start(config);
    let mut sandbox = Sandbox::new();
    sandbox.set("IBMCLOUD_IAM_API_ENDPOINT", &fake.url());
    sandbox.set("IBMCLOUD_CR_API_ENDPOINT", &fake.url());
    (fake, sandbox)
}

/// Asserts a bearer answer for `server_url` and returns the token.
#[track_caller]
fn bearer(out: &Output, server_url: &str) -> String {
    let (url, username, secret) = out.answer();
    assert_eq!(
        (url.as_str(), username.as_str()),
        (server_url, "iambearer"),
        "{out}"
    );
    assert!(
        fake_ibm::decode_jwt_payload(&secret).is_some(),
        "a JWT from the fake\n{out}"
    );
    secret
}

fn read_cache(s: &Sandbox) -> Value {
    serde_json::from_slice(&std::fs::read(s.cache_file()).unwrap()).unwrap()
}

fn write_cache(s: &Sandbox, cache: &Value) {
    let path = s.cache_file();
    let tmp = path.with_extension("edit");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    std::fs::write(&tmp, serde_json::to_vec(cache).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

/// Moves every cached token's life so that it ends `left` seconds from now
/// after a lifetime of `lifetime` seconds.
fn age_tokens(s: &Sandbox, lifetime: u64, left: i64) {
    let mut cache = read_cache(s);
    let expires_at = (now() as i64 + left) as u64;
    for map in ["iam", "registry"] {
        if let Some(tokens) = cache[map].as_object_mut() {
            for t in tokens.values_mut() {
                t["expires_at"] = json!(expires_at);
                t["minted_at"] = json!(expires_at - lifetime);
            }
        }
    }
    write_cache(s, &cache);
}

#[test]
fn bearer_mint_sends_exactly_the_documented_request() {
    // issue 3.1 bearer, 3.7 exact method, path, headers and body
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    assert_eq!(fake.requests().len(), 0, "store makes no request");
    let token = bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io");
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        ("POST", IAM, "")
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("authorization"), None, "no client credentials");
    assert_eq!(
        r.body_str(),
        format!("grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey={KEY}")
    );
    let claims = fake_ibm::decode_jwt_payload(&token).unwrap();
    assert_eq!(claims["account"]["bss"], ACCOUNT);
    // The cache is private and holds the token, never the key.
    let cache = std::fs::read_to_string(s.cache_file()).unwrap();
    assert!(cache.contains(&token) && !cache.contains(KEY));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(s.cache_file()).unwrap().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(s.cache_dir()).unwrap().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_cached_token_makes_zero_requests_and_serves_every_region() {
    // issue 3.1 "one cached token per API key serves every region", 3.7 cache hit
    let (fake, s) = setup(Config::default());
    s.store("icr.io", "iamapikey", KEY).ok();
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    for host in [
        "us.icr.io",
        "de.icr.io",
        "https://registry.ng.bluemix.net/",
        "icr.io",
        "jp2.icr.io:443",
    ] {
        assert_eq!(
            bearer(&s.get(host).ok().stderr_is(""), host),
            first,
            "{host}"
        );
    }
    assert_eq!(fake.count("POST", IAM), 1);
    assert_eq!(fake.requests().len(), 1);
}

#[test]
fn an_expired_token_makes_exactly_one_mint_and_the_margin_refreshes_early() {
    // issue 3.1 re-mint when < 10 % (max 5 min) remains; 3.7 expired → one request
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    age_tokens(&s, 3600, 400); // outside the 300 s margin: still fresh
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), first);
    assert_eq!(fake.count("POST", IAM), 1);
    age_tokens(&s, 3600, 200); // inside the margin: refreshed
    let second = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_ne!(second, first);
    assert_eq!(fake.count("POST", IAM), 2);
    age_tokens(&s, 3600, -1); // expired
    let third = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_ne!(third, second);
    assert_eq!(fake.count("POST", IAM), 3);
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), third);
    assert_eq!(fake.count("POST", IAM), 3);
}

#[test]
fn iam_down_inside_the_margin_answers_the_still_valid_token() {
    // decisions §3: IAM unreachable while the token is inside the margin but not expired
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    age_tokens(&s, 3600, 120);
    fake.inject(Fault::new(IAM, FaultKind::Status(500), 0));
    assert_eq!(
        bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io"),
        first
    );
    assert_eq!(
        fake.count("POST", IAM),
        1 + 3,
        "one attempt and two retries"
    );
}

#[test]
fn sixty_four_concurrent_gets_make_one_mint() {
    // issue 3.5
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    fake.inject(Fault::new(
        IAM,
        FaultKind::Delay(Duration::from_millis(300)),
        0,
    ));
    let children: Vec<_> = (0..64)
        .map(|_| {
            let mut cmd = s.command(&["get"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"us.icr.io").unwrap();
            child
        })
        .collect();
    let mut answers = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        *answers
            .entry(String::from_utf8(out.stdout).unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(fake.count("POST", IAM), 1, "exactly one mint");
    assert_eq!(answers.len(), 1, "all 64 got the same answer: {answers:?}");
}

#[test]
fn faults_give_one_line_exit_1_and_leave_the_store_alone() {
    // issue 3.4, 3.7: each fault yields exit 1, one line, the store unchanged
    let cases: Vec<(FaultKind, &str)> = vec![
        (FaultKind::Status(500), "500"),
        (FaultKind::Status(503), "503"),
        (FaultKind::GarbageJson, "malformed"),
        (FaultKind::TruncatedJson, "/identity/token"),
        (FaultKind::Close, "/identity/token"),
    ];
    for (kind, part) in cases {
        let (fake, s) = setup(Config::default());
        s.store("us.icr.io", "iamapikey", KEY).ok();
        let before = std::fs::read(s.store_file()).unwrap();
        fake.inject(Fault::new(IAM, kind.clone(), 0));
        let out = s.get("us.icr.io").error_line(part);
        assert!(
            out.stdout
                .contains(&format!("{}/identity/token", fake.url())),
            "names the endpoint\n{out}"
        );
        assert!(!out.stdout.contains(KEY), "{out}");
        assert_eq!(
            std::fs::read(s.store_file()).unwrap(),
            before,
            "store unchanged after {kind:?}"
        );
        // The failure is answered to waiters for 10 s without a new request…
        let n = fake.requests().len();
        s.get("us.icr.io").error_line(part);
        assert_eq!(fake.requests().len(), n, "{kind:?}: cached failure");
    }
}

#[test]
fn a_wrong_key_names_ibms_error_and_never_the_key() {
    // issue 3.4: `BXNIM0415E: Provided API key could not be found`
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_LOG", "debug");
    let wrong = "CANARY-wrong-key-9d8c";
    s.store("us.icr.io", "iamapikey", wrong).ok();
    let out = s.get("us.icr.io").fails();
    let line = out.stdout.clone();
    assert!(
        line.contains("400 Bad Request")
            && line.contains("BXNIM0415E: Provided API key could not be found"),
        "{out}"
    );
    assert!(
        out.stderr.ends_with(&line),
        "the same line closes stderr\n{out}"
    );
    assert!(
        !out.stdout.contains(wrong) && !out.stderr.contains(wrong),
        "{out}"
    );
    assert_eq!(fake.count("POST", IAM), 1, "a 400 is not retried");
    // The key is still stored: a failure never loses a credential.
    assert!(std::fs::read_to_string(s.store_file())
        .unwrap()
        .contains(wrong));
}

#[test]
fn retries_honour_retry_after_then_succeed() {
    // issue 3.4: up to 2 retries on 5xx and 429, Retry-After honoured
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    fake.inject(Fault::new(
        IAM,
        FaultKind::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
    ));
    fake.inject(Fault::new(IAM, FaultKind::Status(502), 1));
    let start = std::time::Instant::now();
    bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert_eq!(fake.count("POST", IAM), 3);
}

#[test]
fn apikey_mode_answers_the_key_with_no_network() {
    // issue 3.1 apikey
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "apikey");
    s.store("icr.io", "iamapikey", KEY).ok();
    let out = s.get("de.icr.io").ok();
    assert_eq!(
        out.answer(),
        ("de.icr.io".into(), "iamapikey".into(), KEY.into())
    );
    assert_eq!(fake.requests().len(), 0);
}

#[test]
fn nothing_known_is_not_found_with_no_request() {
    // issue 3.1: an IBM host with nothing known answers exactly the not-found text
    let (fake, s) = setup(Config::default());
    s.get("us.icr.io").not_found();
    s.store("localhost:5000", "u", "p").ok();
    s.get("us.icr.io").not_found();
    assert_eq!(fake.requests().len(), 0);
}

#[test]
fn key_sources_in_order_host_then_icr_io_then_env() {
    // issue 3.2
    let (fake, mut s) = setup(Config::default());
    s.set("IC_API_KEY", OTHER_KEY);
    let env_token = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(
        fake.requests()
            .last()
            .unwrap()
            .form_param("apikey")
            .as_deref(),
        Some(OTHER_KEY)
    );
    s.set("IBMCLOUD_API_KEY", KEY); // IBMCLOUD_API_KEY wins over IC_API_KEY: another key, another mint
    let ibmcloud_token = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_ne!(ibmcloud_token, env_token);
    assert_eq!(
        fake.requests()
            .last()
            .unwrap()
            .form_param("apikey")
            .as_deref(),
        Some(KEY)
    );
    // The global key beats the environment: OTHER_KEY's token is still cached, so no request.
    s.store("icr.io", "iamapikey", OTHER_KEY).ok();
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), env_token);
    // The host's own key beats both: KEY's token, also cached.
    s.store("us.icr.io", "iamapikey", KEY).ok();
    assert_eq!(
        bearer(&s.get("us.icr.io").ok(), "us.icr.io"),
        ibmcloud_token
    );
    assert_eq!(
        fake.count("POST", IAM),
        2,
        "one mint per key, whatever the source"
    );
}

#[test]
fn docker_login_without_flags_stores_back_what_it_got_and_nothing_changes() {
    // issue 3.1, protocol.md §2.1: get, then store of the same answer, is absorbed
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let token = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    let before = std::fs::read(s.store_file()).unwrap();
    s.store("us.icr.io", "iambearer", &token).ok().stderr_is("");
    assert_eq!(
        std::fs::read(s.store_file()).unwrap(),
        before,
        "the API key is kept"
    );
    age_tokens(&s, 3600, -1);
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(fake.count("POST", IAM), 2, "re-minted from the kept key");
}

#[test]
fn stored_tokens_are_answered_until_their_exp() {
    // issue 3.1: stored iambearer/token answered until they expire, then not found (or minted)
    let (fake, s) = setup(Config::default());
    let live = fake_ibm::make_jwt(&json!({"exp": now() + 600, "jti": "a"}));
    let dead = fake_ibm::make_jwt(&json!({"exp": now() - 5, "jti": "b"}));
    s.store("us.icr.io", "iambearer", &live).ok();
    assert_eq!(s.get("us.icr.io").ok().answer().2, live);
    s.store("us.icr.io", "iambearer", &dead).ok();
    s.get("us.icr.io").not_found();
    s.store("de.icr.io", "token", &dead).ok();
    s.get("de.icr.io").not_found();
    s.store("uk.icr.io", "iamrefresh", "opaque-refresh").ok();
    assert_eq!(s.get("uk.icr.io").ok().answer().1, "iamrefresh");
    s.store("au.icr.io", "iam-Profile-1234", "service-id-key")
        .ok();
    assert_eq!(s.get("au.icr.io").ok().answer().1, "iam-Profile-1234");
    assert_eq!(fake.requests().len(), 0);
    // With a key known, the expired stored token gives way to a minted one.
    s.store("icr.io", "iamapikey", KEY).ok();
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(fake.count("POST", IAM), 1);
}

#[test]
fn endpoints_must_be_https_except_loopback() {
    // issue 3.3
    let (fake, mut s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    s.set("IBMCLOUD_IAM_API_ENDPOINT", "http://iam.example.com");
    s.get("us.icr.io").error_line("https");
    s.set(
        "IBMCLOUD_IAM_API_ENDPOINT",
        &format!("{}/identity/token", fake.url()),
    );
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(
        fake.count("POST", IAM),
        1,
        "a trailing /identity/token is accepted"
    );
}

#[test]
fn registry_token_mode_mints_caches_and_revokes() {
    // issue 3.1 registry-token: exact requests, cache hit, erase revokes
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let out = s.get("us.icr.io").ok().stderr_is("");
    let (_, username, token) = out.answer();
    assert_eq!(username, "token");
    let claims = fake_ibm::decode_jwt_payload(&token).unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let iam_token = {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(s.cache_file()).unwrap()).unwrap();
        v["iam"].as_object().unwrap().values().next().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let create = &reqs[1];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", TOKENS)
    );
    assert_eq!(create.query_param("permanent").as_deref(), Some("false"));
    assert_eq!(create.query_param("write").as_deref(), Some("true"));
    assert!(create
        .query_param("description")
        .unwrap()
        .contains("us.icr.io"));
    assert_eq!(
        create.header("authorization"),
        Some(format!("Bearer {iam_token}").as_str())
    );
    assert_eq!(create.header("account"), Some(ACCOUNT));
    assert!(create.body.is_empty());
    // A cache hit: zero requests.
    assert_eq!(s.get("us.icr.io").ok().answer().2, token);
    assert_eq!(fake.requests().len(), 2);
    // Erase revokes it at the registry with the cached IAM token, then forgets it.
    s.erase("us.icr.io").ok().stdout_is("").stderr_is("");
    let delete = fake.requests().pop().unwrap();
    assert_eq!(delete.method, "DELETE");
    assert_eq!(
        delete.path,
        format!("{TOKENS}/{}", claims["jti"].as_str().unwrap())
    );
    assert_eq!(delete.header("account"), Some(ACCOUNT));
    assert_eq!(fake.stats().registry_token_deletes, 1);
    assert!(!std::fs::read_to_string(s.cache_file())
        .unwrap()
        .contains(&token));
    s.get("us.icr.io").not_found();
}

#[test]
fn readonly_tokens_ask_for_write_false() {
    // issue 3.1: IBMCR_TOKEN_ACCESS
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token")
        .set("IBMCR_TOKEN_ACCESS", "readonly");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    s.get("us.icr.io").ok();
    let create = fake
        .requests()
        .into_iter()
        .find(|r| r.path == TOKENS)
        .unwrap();
    assert_eq!(create.query_param("write").as_deref(), Some("false"));
}

#[test]
fn an_expired_stored_registry_token_is_replaced_by_a_minted_one() {
    // issue 3.1: the original design's flow
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token");
    let dead = fake_ibm::make_jwt(&json!({"exp": now() - 60, "jti": "old"}));
    s.store("us.icr.io", "token", &dead).ok();
    s.store("icr.io", "iamapikey", KEY).ok();
    let (_, username, token) = s.get("us.icr.io").ok().answer();
    assert_eq!(username, "token");
    assert_ne!(token, dead);
    assert_eq!(fake.stats().registry_token_creates, 1);
}

#[test]
fn refused_creation_falls_back_to_bearer_once_said() {
    // issue 3.1: refused → one stderr line, bearer; remembered (decisions §4)
    let (fake, mut s) = setup(Config {
        refuse_token_creation: true,
        ..Config::default()
    });
    s.set("IBMCR_MODE", "registry-token");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let out = s.get("us.icr.io").ok();
    bearer(&out, "us.icr.io");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("refused") && out.stderr.contains("CRG0140E"),
        "{out}"
    );
    assert_eq!(fake.count("POST", TOKENS), 1);
    // Cached: no request and no new line.
    bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io");
    // After the bearer token expires, still no new creation attempt within 24 h.
    age_tokens(&s, 3600, -1);
    bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io");
    assert_eq!(fake.count("POST", TOKENS), 1);
    assert_eq!(fake.count("POST", IAM), 2);
}

#[test]
fn a_failed_revocation_is_one_line_and_the_local_copy_goes() {
    // issue 3.1, decisions §1: erase exit 0, one stderr line
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let token = s.get("us.icr.io").ok().answer().2;
    fake.inject(Fault {
        method: Some("DELETE".into()),
        ..Fault::new(TOKENS, FaultKind::Status(500), 0)
    });
    let out = s.erase("us.icr.io").ok().stdout_is("");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        out.stderr.contains("could not revoke") && out.stderr.contains("500"),
        "{out}"
    );
    assert!(!out.stderr.contains(&token));
    assert!(!std::fs::read_to_string(s.cache_file())
        .unwrap()
        .contains(&token));
    assert_eq!(
        fake.count(
            "DELETE",
            &format!(
                "{TOKENS}/{}",
                fake_ibm::decode_jwt_payload(&token).unwrap()["jti"]
                    .as_str()
                    .unwrap()
            )
        ),
        1,
        "DELETE is not retried on a 500"
    );
}

#[test]
fn canaries_never_leak_on_minting_paths() {
    // issue 3.7: redaction covers every new path, with IBMCR_LOG=debug
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_LOG", "debug");
    let mut outputs = vec![s.store("us.icr.io", "iamapikey", KEY).ok()];
    let got = s.get("us.icr.io").ok();
    let token = got.answer().2;
    outputs.push(got.clone());
    s.set("IBMCR_MODE", "registry-token");
    let reg = s.get("us.icr.io").ok();
    let reg_token = reg.answer().2;
    outputs.push(reg.clone());
    outputs.push(s.store("us.icr.io", "iambearer", &token).ok()); // absorbed
    outputs.push(s.list().ok());
    fake.inject(Fault::new(IAM, FaultKind::Status(500), 0));
    age_tokens(&s, 3600, -1);
    outputs.push(s.get("us.icr.io").fails());
    outputs.push(s.erase("us.icr.io").ok());
    fake.update(|c| c.refuse_token_creation = true);
    fake.clear_faults();
    // A fresh key (the failure above is cached for KEY) through the refusal path.
    outputs.push(s.store("icr.io", "iamapikey", OTHER_KEY).ok());
    let refused = s.get("de.icr.io").ok();
    assert!(refused.stderr.contains("refused"), "{refused}");
    let other_token = refused.answer().2;
    outputs.push(refused);
    assert!(
        outputs.iter().any(|o| o.stderr.contains("debug|")),
        "debug log was on"
    );
    for out in &outputs {
        for canary in [KEY, OTHER_KEY, &token, &reg_token, &other_token] {
            assert!(!out.stderr.contains(canary), "stderr leaks a secret\n{out}");
            let in_answer =
                out.stdout.starts_with("{\"ServerURL\"") && !canary.starts_with("CANARY");
            assert!(
                in_answer || !out.stdout.contains(canary),
                "stdout leaks a secret\n{out}"
            );
        }
    }
}

#[test]
fn a_token_cache_others_can_read_is_refused_not_repaired() {
    // decisions §2: looser modes are refused with the chmod that fixes them
    use std::os::unix::fs::PermissionsExt;
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    std::fs::set_permissions(s.cache_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.get("us.icr.io").error_line("chmod 600");
    assert!(out.stdout.contains("tokens.json"), "{out}");
    assert_eq!(
        std::fs::metadata(s.cache_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    std::fs::set_permissions(s.cache_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(s.cache_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    s.get("us.icr.io").ok(); // a fresh cached answer: the dir is not written
    age_tokens(&s, 3600, -1);
    s.get("us.icr.io").error_line("chmod 700");
    assert_eq!(fake.count("POST", IAM), 1, "refused before minting");
}

#[test]
fn a_failed_refresh_inside_the_margin_is_remembered_and_the_valid_token_answered() {
    // decisions §3: waiters answer the remembered failure without their own IAM call;
    // with a still-valid token that means answering the token
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    age_tokens(&s, 3600, 120);
    fake.inject(Fault::new(IAM, FaultKind::Status(500), 0));
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), first);
    let n = fake.count("POST", IAM);
    assert_eq!(
        bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io"),
        first
    );
    assert_eq!(
        fake.count("POST", IAM),
        n,
        "no new IAM call within 10 s of a failure"
    );
}

#[test]
fn a_cache_that_cannot_be_locked_still_answers_and_keeps_the_key() {
    // decisions §3: a cache dir that cannot be written → answer without caching;
    // issue 3.1: a store of a minted token never replaces the API key
    let (fake, s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let lock = s.cache_dir().join("tokens.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir(&lock).unwrap(); // opening it for writing fails
    let token = bearer(&s.get("us.icr.io").ok().stderr_is(""), "us.icr.io");
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(
        fake.count("POST", IAM),
        2,
        "not cached, so minted each time"
    );
    let cache = std::fs::read_to_string(s.cache_file()).unwrap_or_default();
    assert!(!cache.contains(&token), "nothing minted was cached");
    s.store("us.icr.io", "iambearer", &token).ok();
    let store = std::fs::read_to_string(s.store_file()).unwrap();
    assert!(
        store.contains(KEY) && !store.contains(&token),
        "the key is kept"
    );
}

#[test]
fn changing_token_access_or_endpoint_is_not_answered_from_the_old_cache() {
    // decisions §3: cache keys include endpoint and read/write
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let rw = s.get("us.icr.io").ok().answer().2;
    s.set("IBMCR_TOKEN_ACCESS", "readonly");
    let ro = s.get("us.icr.io").ok().answer().2;
    assert_ne!(ro, rw);
    let creates: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == TOKENS)
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[1].query_param("write").as_deref(), Some("false"));
    let other = FakeIbm::start(Config {
        api_keys: [(KEY.to_string(), ACCOUNT.to_string())].into(),
        ..Config::default()
    });
    s.set("IBMCR_MODE", "bearer");
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    s.set("IBMCLOUD_IAM_API_ENDPOINT", &other.url());
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(
        other.count("POST", IAM),
        1,
        "a new IAM endpoint gets its own token"
    );
}

#[test]
fn a_bad_mode_breaks_only_ibm_hosts() {
    // docker v29 aborts a pull when the helper errors: Docker Hub must keep working
    let (_fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "fast").set("IBMCR_LOG", "1");
    s.store("https://index.docker.io/v1/", "u", "p").ok();
    assert_eq!(s.get("https://index.docker.io/v1/").ok().answer().2, "p");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    s.get("us.icr.io").error_line("IBMCR_MODE must be");
    s.run(&["version"], b"").ok();
}

#[test]
fn a_registry_token_inside_its_margin_is_answered_while_creation_fails() {
    // decisions §3: a token still valid is answered when re-minting fails
    let (fake, mut s) = setup(Config::default());
    s.set("IBMCR_MODE", "registry-token");
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let token = s.get("us.icr.io").ok().answer().2;
    age_tokens(&s, 86_400, 100); // inside the 300 s margin
    fake.inject(Fault {
        method: Some("POST".into()),
        ..Fault::new(TOKENS, FaultKind::Status(500), 0)
    });
    let out = s.get("us.icr.io").ok().stderr_is("");
    assert_eq!(out.answer(), ("us.icr.io".into(), "token".into(), token));
    assert_eq!(
        fake.count("POST", TOKENS),
        2,
        "one re-mint attempt, not retried"
    );
}

#[test]
fn https_endpoints_read_the_ca_roots_and_ssl_cert_file_still_rules() {
    // issue 13.3: the roots are read only for an https endpoint (from the
    // system's bundle file, or what SSL_CERT_FILE/SSL_CERT_DIR name).
    let (_fake, mut s) = setup(Config::default());
    s.store("us.icr.io", "iamapikey", KEY).ok();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    s.set(
        "IBMCLOUD_IAM_API_ENDPOINT",
        &format!("https://127.0.0.1:{closed}"),
    );
    // The system's roots load, so the client is built and the connect fails.
    s.get("us.icr.io")
        .error_line("could not connect (connection refused)");
    // SSL_CERT_FILE names a file without roots: said in one line, nothing sent.
    // (The failure above is cached for 10 s: start without it.)
    std::fs::remove_file(s.cache_file()).unwrap();
    let empty = s.root.join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    s.set("SSL_CERT_FILE", empty.to_str().unwrap());
    s.get("us.icr.io")
        .error_line("no usable CA certificates where SSL_CERT_FILE or SSL_CERT_DIR points");
}
