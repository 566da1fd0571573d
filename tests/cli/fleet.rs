//! Issue 11: the credential chain without a stored key — a CR token (value or
//! `@file`) with a trusted profile, the VPC instance identity, an `ibmcloud
//! login` session — each against the fake IBM API, with exact requests,
//! exactly one mint and then the cache, failures as one line, and never a
//! metadata request unless `IBMCR_IDENTITY=vpc`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::fake_ibm::{self, Config, FakeIbm, Fault, FaultKind, TrustedProfile};
use crate::util::{Output, Sandbox};

const KEY: &str = "CANARY-apikey-fleet-3c1d";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const IAM: &str = "/identity/token";
const K8S: &str = "https://kubernetes.default.svc";
const SA: &str = "system:serviceaccount:ci:builder";
const PROFILE: &str = "ci-pull";
const METADATA_TOKEN: &str = "/instance_identity/v1/token";
const METADATA_IAM: &str = "/instance_identity/v1/iam_token";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fake that knows KEY and the trusted profile `ci-pull` (trusting the
/// service account SA and the fake VPC instance), and a sandbox pointed at
/// it, the metadata service included: any metadata request is recorded.
fn setup() -> (FakeIbm, Sandbox, TrustedProfile) {
    let fake = FakeIbm::start(Config::default());
    fake.add_api_key(KEY, ACCOUNT);
    let profile = TrustedProfile::new(PROFILE, ACCOUNT, &[SA, fake_ibm::VPC_INSTANCE_SUB]);
    fake.add_profile(profile.clone());
    let mut s = Sandbox::new();
    s.set("IBMCLOUD_IAM_API_ENDPOINT", &fake.url());
    s.set("IBMCLOUD_CR_API_ENDPOINT", &fake.url());
    s.set("IBMCR_VPC_METADATA_URL", &fake.url());
    (fake, s, profile)
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
    assert_eq!(out.stderr, "", "nothing on stderr\n{out}");
    secret
}

fn claims(token: &str) -> Value {
    fake_ibm::decode_jwt_payload(token).unwrap()
}

fn read_cache(s: &Sandbox) -> Value {
    serde_json::from_slice(&std::fs::read(s.cache_file()).unwrap()).unwrap()
}

/// Makes every cached token expired, as time would.
fn expire_cache(s: &Sandbox) {
    let mut cache = read_cache(s);
    if let Some(tokens) = cache["iam"].as_object_mut() {
        for t in tokens.values_mut() {
            t["expires_at"] = json!(now() - 1);
            t["minted_at"] = json!(now() - 3601);
        }
    }
    let tmp = s.cache_file().with_extension("edit");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .unwrap();
        f.write_all(&serde_json::to_vec(&cache).unwrap()).unwrap();
    }
    std::fs::rename(tmp, s.cache_file()).unwrap();
}

/// The one cache key of the cached IAM token.
fn iam_key(s: &Sandbox) -> String {
    let cache = read_cache(s);
    let keys: Vec<&String> = cache["iam"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 1, "{cache}");
    keys[0].clone()
}

/// The grant of the IAM requests the fake recorded.
fn grants(fake: &FakeIbm) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| r.path == IAM)
        .map(|r| r.form_param("grant_type").unwrap_or_default())
        .collect()
}

#[test]
fn a_cr_token_in_the_environment_mints_once_then_the_cache_answers_every_host() {
    // issue 11.1: IBMCLOUD_CR_TOKEN (value) + IBMCLOUD_CR_PROFILE, no API key anywhere
    let (fake, mut s, profile) = setup();
    let token = fake.cr_token(K8S, SA, 3600);
    s.set("IBMCLOUD_CR_TOKEN", &token);
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(claims(&first)["sub"], profile.id.as_str());
    assert_eq!(grants(&fake), ["urn:ibm:params:oauth:grant-type:cr-token"]);
    let r = &fake.requests()[0];
    assert_eq!(r.form_param("cr_token").as_deref(), Some(token.as_str()));
    assert_eq!(r.form_param("profile_name").as_deref(), Some(PROFILE));
    assert_eq!(r.header("authorization"), None);
    // One token serves every host, from the cache.
    for host in ["us.icr.io", "de.icr.io", "icr.io", "private.us.icr.io"] {
        assert_eq!(bearer(&s.get(host).ok(), host), first, "{host}");
    }
    // The token rotates (the kubelet re-projects it): same subject, same cache entry.
    s.set("IBMCLOUD_CR_TOKEN", &fake.cr_token(K8S, SA, 3600));
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), first);
    assert_eq!(fake.count("POST", IAM), 1, "exactly one mint");
    // The cache key names the kind and a fingerprint, never the token.
    let key = iam_key(&s);
    assert!(key.starts_with(&format!("{}|cr:", fake.url())), "{key}");
    let cache = std::fs::read_to_string(s.cache_file()).unwrap();
    assert!(!cache.contains(&token), "the CR token is never cached");
    assert_eq!(read_cache(&s)["hosts"]["us.icr.io"]["source"], "cr-token");
    // Another profile is another identity: one more mint.
    s.set("IBMCLOUD_CR_PROFILE", &profile.id);
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(fake.count("POST", IAM), 2);
    assert_eq!(fake.stats().metadata_requests, 0);
}

#[test]
fn a_cr_token_file_is_read_at_each_mint() {
    // issue 11.1: `IBMCLOUD_CR_TOKEN=@file`, rotated between mints
    let (fake, mut s, profile) = setup();
    let file = s.root.join("cr-token");
    std::fs::write(&file, format!("{}\n", fake.cr_token(K8S, SA, 3600))).unwrap();
    s.set("IBMCLOUD_CR_TOKEN", &format!("@{}", file.display()));
    s.set("IBMCLOUD_CR_PROFILE", &profile.crn);
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    let r = &fake.requests()[0];
    assert_eq!(
        r.form_param("profile_crn").as_deref(),
        Some(profile.crn.as_str())
    );
    let rotated = fake.cr_token(K8S, SA, 3600);
    std::fs::write(&file, &rotated).unwrap();
    assert_eq!(
        bearer(&s.get("de.icr.io").ok(), "de.icr.io"),
        first,
        "cached"
    );
    assert_eq!(fake.count("POST", IAM), 1);
    expire_cache(&s);
    let second = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_ne!(second, first);
    let r = fake.requests().pop().unwrap();
    assert_eq!(
        r.form_param("cr_token").as_deref(),
        Some(rotated.as_str()),
        "the file as it is now"
    );
    assert_eq!(fake.count("POST", IAM), 2);
}

#[test]
fn cr_token_failures_are_one_line_naming_the_source_and_ibms_code() {
    // issue 11.1, 11.3: a bad or expired CR token, an unknown profile, no profile, no file
    let (fake, mut s, _) = setup();
    s.set("IBMCR_LOG", "debug");
    let expired = fake.cr_token(K8S, SA, 0);
    s.set("IBMCLOUD_CR_TOKEN", &expired);
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    let out = s.get("us.icr.io").fails();
    let line = format!(
        "IBMCLOUD_CR_TOKEN for trusted profile {PROFILE}: IAM cr-token request to {}/identity/token \
         failed: 400 Bad Request: BXNIM0407E: Provided CR token is expired\n",
        fake.url()
    );
    assert_eq!(out.stdout, line, "{out}");
    assert!(
        out.stderr.ends_with(&line),
        "the same line closes stderr\n{out}"
    );
    assert!(
        !out.stdout.contains(&expired) && !out.stderr.contains(&expired),
        "{out}"
    );
    s.unset("IBMCR_LOG");
    // A forged token, an unknown profile, a profile that does not trust this subject (each
    // another identity: a failure is remembered for 10 s per identity, as for API keys).
    let other = fake.cr_token(K8S, "system:serviceaccount:ci:other", 600);
    let forged = format!("{}.forged", other.rsplit_once('.').unwrap().0);
    s.set("IBMCLOUD_CR_TOKEN", &forged);
    s.get("us.icr.io")
        .error_line("BXNIM0407E: Provided CR token is invalid");
    s.set("IBMCLOUD_CR_TOKEN", &fake.cr_token(K8S, SA, 600));
    s.set("IBMCLOUD_CR_PROFILE", "no-such-profile");
    s.get("us.icr.io")
        .error_line("IBMCLOUD_CR_TOKEN for trusted profile no-such-profile: ")
        .error_line("BXNIM0399E");
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    s.set(
        "IBMCLOUD_CR_TOKEN",
        &fake.cr_token(K8S, "system:serviceaccount:x:y", 600),
    );
    s.get("us.icr.io").error_line(
        "BXNIM0398E: The given token with identifier 'system:serviceaccount:x:y' is not permitted",
    );
    let requests = fake.count("POST", IAM);
    // No profile, no file: one line, no request.
    s.unset("IBMCLOUD_CR_PROFILE");
    s.get("us.icr.io")
        .error_line("IBMCLOUD_CR_TOKEN is set but IBMCLOUD_CR_PROFILE names no trusted profile");
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    let gone = s.root.join("gone");
    s.set("IBMCLOUD_CR_TOKEN", &format!("@{}", gone.display()));
    s.get("us.icr.io").error_line(&format!(
        "IBMCLOUD_CR_TOKEN=@{} for trusted profile {PROFILE}: reading `{}`: no such file",
        gone.display(),
        gone.display()
    ));
    assert_eq!(fake.count("POST", IAM), requests);
    // Docker Hub is not bothered by any of it.
    s.get("https://index.docker.io/v1/").not_found();
}

#[test]
fn many_gets_at_once_make_one_cr_token_mint() {
    // issue 11.1: the same lock and one-mint-for-many as API keys
    let (fake, mut s, _) = setup();
    s.set("IBMCLOUD_CR_TOKEN", &fake.cr_token(K8S, SA, 3600));
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    fake.inject(Fault::new(
        IAM,
        FaultKind::Delay(Duration::from_millis(300)),
        0,
    ));
    let children: Vec<_> = (0..16)
        .map(|_| {
            let mut cmd = s.command(&["get"]);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            child.stdin.take().unwrap().write_all(b"us.icr.io").unwrap();
            child
        })
        .collect();
    let answers: std::collections::BTreeSet<Vec<u8>> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            out.stdout
        })
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(fake.count("POST", IAM), 1);
}

/// Writes an `ibmcloud` config file as the CLI keeps it.
fn write_session(path: &PathBuf, access: &str, refresh: &str, iam: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let config = json!({
        "APIEndpoint": "https://cloud.ibm.com",
        "IAMEndpoint": iam,
        "IAMToken": format!("Bearer {access}"),
        "IAMRefreshToken": refresh,
        "Region": "us-south",
        "Account": {"GUID": ACCOUNT, "Name": "fake", "Owner": ""},
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

#[test]
fn an_ibmcloud_session_s_valid_token_is_answered_with_no_request() {
    // issue 11.1: a valid IAMToken is answered with no network call
    let (fake, s, _) = setup();
    let (access, refresh) = fake.login(KEY).unwrap();
    let file = s.home().join(".bluemix/config.json");
    write_session(&file, &access, &refresh, "https://iam.cloud.ibm.com");
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), access);
    assert_eq!(bearer(&s.get("de.icr.io").ok(), "de.icr.io"), access);
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
    assert!(iam_key(&s).contains("|ibmcloud:"));
    // `.ibmcloud` wins over `.bluemix` once it exists; IBMCLOUD_CONFIG_HOME over both.
    let other = s.home().join(".ibmcloud/config.json");
    let (access2, refresh2) = fake.login(KEY).unwrap();
    write_session(&other, &access2, &refresh2, "https://iam.cloud.ibm.com");
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), access2);
    let mut s = s;
    let elsewhere = s.root.join("cli-config");
    let (access3, refresh3) = fake.login(KEY).unwrap();
    write_session(&elsewhere.join("config.json"), &access3, &refresh3, "");
    s.set("IBMCLOUD_CONFIG_HOME", elsewhere.to_str().unwrap());
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), access3);
    assert!(fake.requests().is_empty());
}

#[test]
fn an_expired_session_token_is_refreshed_once_and_the_cli_s_file_is_never_written() {
    // issue 11.1: refresh grant with bx:bx; the result goes to the helper's cache only
    let (fake, s, _) = setup();
    let (_, refresh) = fake.login(KEY).unwrap();
    let expired = fake_ibm::make_jwt(&json!({"exp": now() - 60, "iat": now() - 3660}));
    let file = s.home().join(".bluemix/config.json");
    write_session(&file, &expired, &refresh, &fake.url());
    let before = (
        std::fs::read(&file).unwrap(),
        std::fs::metadata(&file).unwrap(),
    );
    let minted = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_ne!(minted, expired);
    assert_eq!(grants(&fake), ["refresh_token"]);
    let r = &fake.requests()[0];
    assert_eq!(r.header("authorization"), Some("Basic Yng6Yng="));
    assert_eq!(
        r.form_param("refresh_token").as_deref(),
        Some(refresh.as_str())
    );
    // Then the cache answers.
    assert_eq!(bearer(&s.get("jp.icr.io").ok(), "jp.icr.io"), minted);
    assert_eq!(fake.count("POST", IAM), 1, "exactly one mint");
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before.0,
        "the CLI's file is untouched"
    );
    assert_eq!(
        (after.mode(), after.mtime(), after.uid()),
        (before.1.mode(), before.1.mtime(), before.1.uid())
    );
    let cache = std::fs::read_to_string(s.cache_file()).unwrap();
    assert!(
        !cache.contains(&refresh),
        "the refresh token is never cached"
    );
}

#[test]
fn a_session_that_is_over_says_run_ibmcloud_login_again() {
    // issue 11.1, 11.3: BXNIM0408E / BXNIM0439E → "run ibmcloud login again"
    let (fake, mut s, _) = setup();
    s.set("IBMCR_LOG", "debug");
    let (_, refresh) = fake.login(KEY).unwrap();
    let expired = fake_ibm::make_jwt(&json!({"exp": now() - 60}));
    let file = s.home().join(".bluemix/config.json");
    write_session(&file, &expired, &refresh, "");
    fake.expire_sessions();
    let out = s.get("us.icr.io").fails();
    let line = format!(
        "the ibmcloud login session `{}`: IAM refresh request to {}/identity/token failed: \
         400 Bad Request: BXNIM0408E: Provided refresh token is expired: run `ibmcloud login` again\n",
        file.display(),
        fake.url()
    );
    assert_eq!(out.stdout, line, "{out}");
    assert!(out.stderr.ends_with(&line), "{out}");
    assert!(!out.stderr.contains(&refresh) && !out.stdout.contains(&refresh));
    s.unset("IBMCR_LOG");
    let (_, second) = fake.login(KEY).unwrap();
    write_session(&file, &expired, &second, "");
    fake.invalidate_sessions();
    s.get("us.icr.io").error_line(
        "BXNIM0439E: Session invalidated due to inactivity: run `ibmcloud login` again",
    );
    // Logged out: nothing to answer, no request.
    let n = fake.requests().len();
    write_session(&file, "", "", "");
    s.get("us.icr.io").not_found();
    assert_eq!(fake.requests().len(), n);
}

#[test]
fn the_vpc_instance_identity_makes_two_metadata_calls_and_no_iam_call() {
    // issue 11.1: IBMCR_IDENTITY=vpc, IBMCR_VPC_METADATA_URL, fleet.md §3
    let (fake, mut s, profile) = setup();
    s.set("IBMCR_IDENTITY", "vpc");
    s.set("IBMCLOUD_CR_PROFILE", &profile.id);
    let first = bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(claims(&first)["sub"], profile.id.as_str());
    let requests = fake.requests();
    let seen: Vec<(&str, &str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.query.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", METADATA_TOKEN, "version=2022-03-01"),
            ("POST", METADATA_IAM, "version=2022-03-01")
        ]
    );
    assert_eq!(requests[0].header("metadata-flavor"), Some("ibm"));
    assert_eq!(requests[0].body_str(), r#"{"expires_in":300}"#);
    assert_eq!(
        requests[1].body_str(),
        format!(r#"{{"trusted_profile":{{"id":"{}"}}}}"#, profile.id)
    );
    assert_eq!(bearer(&s.get("de.icr.io").ok(), "de.icr.io"), first);
    assert_eq!(fake.requests().len(), 2, "then the cache answers");
    assert!(iam_key(&s).starts_with(&format!("{}|vpc:", fake.url())));
    // The instance's default profile, from the settings file instead of the variable.
    s.unset("IBMCR_IDENTITY");
    s.unset("IBMCLOUD_CR_PROFILE");
    let config = s.home().join(".config/ibmcr/config.json");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, r#"{"identity": "vpc"}"#).unwrap();
    fake.update(|c| c.vpc_default_profile = Some(profile.id.clone()));
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert!(fake.requests()[3].body.is_empty(), "no profile named");
    assert_eq!(fake.count("POST", IAM), 0);
}

#[test]
fn an_unreachable_metadata_service_is_one_bounded_line() {
    // issue 11.3: metadata unreachable (bounded, one line)
    let (fake, mut s, _) = setup();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    s.set("IBMCR_IDENTITY", "vpc");
    s.set(
        "IBMCR_VPC_METADATA_URL",
        &format!("http://127.0.0.1:{port}"),
    );
    let started = Instant::now();
    s.get("us.icr.io").error_line(&format!(
        "the VPC instance identity (default trusted profile): VPC instance identity token request \
         to http://127.0.0.1:{port}/instance_identity/v1/token failed: could not connect \
         (connection refused)"
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A name cannot be used with the metadata service; a plain-http URL elsewhere is refused.
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    s.get("us.icr.io")
        .error_line("takes a trusted profile id (Profile-…) or CRN (crn:…), not a name");
    s.set("IBMCR_VPC_METADATA_URL", "http://metadata.example.com");
    s.get("us.icr.io")
        .error_line("IBMCR_VPC_METADATA_URL: `http://metadata.example.com` must use https");
    assert!(fake.requests().is_empty());
}

#[test]
fn nothing_contacts_the_metadata_service_unless_identity_is_vpc() {
    // issue 11.3: no metadata request off-cloud, whatever else is configured
    let (fake, mut s, profile) = setup();
    let projected = s.root.join("sa-token");
    std::fs::write(&projected, fake.cr_token(K8S, SA, 3600)).unwrap();
    let (access, refresh) = fake.login(KEY).unwrap();
    write_session(
        &s.home().join(".bluemix/config.json"),
        &access,
        &refresh,
        "",
    );
    let cases: &[&[(&str, &str)]] = &[
        &[],
        &[("IBMCLOUD_CR_PROFILE", PROFILE)],
        &[
            ("IBMCLOUD_CR_PROFILE", &profile.id),
            ("IBMCR_IDENTITY", "cr-token"),
        ],
        &[("IBMCR_IDENTITY", "auto")],
        &[("IBMCR_IDENTITY", "ibmcloud")],
        &[("IBMCR_IDENTITY", "apikey")],
        &[("IBMCLOUD_API_KEY", KEY)],
        &[
            ("IBMCLOUD_CR_TOKEN", &format!("@{}", projected.display())),
            ("IBMCLOUD_CR_PROFILE", PROFILE),
        ],
        &[("IBMCR_MODE", "registry-token")],
    ];
    for vars in cases {
        let mut s = Sandbox::new();
        s.set("IBMCLOUD_IAM_API_ENDPOINT", &fake.url());
        s.set("IBMCLOUD_CR_API_ENDPOINT", &fake.url());
        s.set("IBMCR_VPC_METADATA_URL", &fake.url());
        write_session(
            &s.home().join(".bluemix/config.json"),
            &access,
            &refresh,
            "",
        );
        for (k, v) in vars.iter() {
            s.set(k, v);
        }
        let out = s.get("us.icr.io");
        assert!(out.code == 0 || out.code == 1, "{out}");
        s.get("de.icr.io");
        s.run(&["list"], b"");
        assert_eq!(fake.stats().metadata_requests, 0, "{vars:?}\n{out}");
    }
    s.set("IBMCR_IDENTITY", "vpc");
    s.set("IBMCLOUD_CR_PROFILE", &profile.id);
    bearer(&s.get("us.icr.io").ok(), "us.icr.io");
    assert_eq!(fake.stats().metadata_requests, 2, "only when asked for");
}

#[test]
fn the_chain_in_order_and_ibmcr_identity_restricts_it() {
    // issue 11.1: stored keys, env key, CR token, session; IBMCR_IDENTITY one source alone
    let (fake, mut s, profile) = setup();
    let (access, refresh) = fake.login(KEY).unwrap();
    write_session(
        &s.home().join(".bluemix/config.json"),
        &access,
        &refresh,
        "",
    );
    s.set("IBMCLOUD_CR_TOKEN", &fake.cr_token(K8S, SA, 3600));
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    s.set("IC_API_KEY", KEY);
    let sub = |s: &Sandbox| claims(&bearer(&s.get("us.icr.io").ok(), "us.icr.io"))["sub"].clone();
    let service_id = sub(&s);
    assert!(
        service_id.as_str().unwrap().starts_with("ServiceId-"),
        "the env key first"
    );
    s.unset("IC_API_KEY");
    assert_eq!(sub(&s), profile.id.as_str(), "then the CR token");
    s.unset("IBMCLOUD_CR_TOKEN");
    assert_eq!(
        bearer(&s.get("us.icr.io").ok(), "us.icr.io"),
        access,
        "then the session"
    );
    // A stored key comes before all of them, unless IBMCR_IDENTITY names another source.
    s.store("us.icr.io", "iamapikey", KEY).ok();
    s.set("IBMCLOUD_CR_TOKEN", &fake.cr_token(K8S, SA, 3600));
    assert!(sub(&s).as_str().unwrap().starts_with("ServiceId-"));
    s.set("IBMCR_IDENTITY", "cr-token");
    assert_eq!(sub(&s), profile.id.as_str());
    s.set("IBMCR_IDENTITY", "ibmcloud");
    assert_eq!(bearer(&s.get("us.icr.io").ok(), "us.icr.io"), access);
    s.set("IBMCR_IDENTITY", "apikey");
    assert!(sub(&s).as_str().unwrap().starts_with("ServiceId-"));
    s.set("IBMCR_IDENTITY", "metadata");
    s.get("us.icr.io").error_line(
        "IBMCR_IDENTITY must be auto, apikey, cr-token, vpc or ibmcloud, not `metadata`",
    );
    s.get("ghcr.io").not_found();
    assert_eq!(fake.stats().metadata_requests, 0);
}

#[test]
fn chain_secrets_never_reach_stderr_or_the_cache() {
    // issue 11.1: stderr never holds a secret, with the debug log on
    let (fake, mut s, _) = setup();
    s.set("IBMCR_LOG", "debug");
    let cr = fake.cr_token(K8S, SA, 3600);
    s.set("IBMCLOUD_CR_TOKEN", &cr);
    s.set("IBMCLOUD_CR_PROFILE", PROFILE);
    let out = s.get("us.icr.io").ok();
    let minted = out.answer().2;
    assert!(out.stderr.contains("debug|ibmcr::"), "{out}");
    for secret in [&cr, &minted] {
        assert!(!out.stderr.contains(secret.as_str()), "{out}");
    }
    let (access, refresh) = fake.login(KEY).unwrap();
    s.unset("IBMCLOUD_CR_TOKEN");
    let expired = fake_ibm::make_jwt(&json!({"exp": now() - 60}));
    write_session(
        &s.home().join(".bluemix/config.json"),
        &expired,
        &refresh,
        "",
    );
    let out = s.get("us.icr.io").ok();
    for secret in [&refresh, &expired, &access, &out.answer().2] {
        assert!(!out.stderr.contains(secret.as_str()), "{out}");
    }
    let cache = std::fs::read_to_string(s.cache_file()).unwrap();
    assert!(!cache.contains(&cr) && !cache.contains(&refresh) && !cache.contains(&expired));
}
