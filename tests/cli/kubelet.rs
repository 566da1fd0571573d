//! Issue 11.2: `docker-credential-ibmcr kubelet-plugin` (and the binary as
//! `ibmcr-credential-provider`) run as the kubelet runs it — the exact JSON
//! its encoder writes on stdin, its environment, its 1-minute kill — and the
//! reply decoded as the kubelet decodes it: strictly against the v1 types of
//! `k8s.io/kubelet/pkg/apis/credentialprovider/v1/types.go` (unknown and
//! duplicate fields rejected), apiVersion and kind checked, `auth` keys
//! matched against images with the kubelet's own glob rules.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::fake_ibm::{self, Config, FakeIbm, Fault, FaultKind, TrustedProfile};
use crate::util::{Output, Sandbox, BIN};

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const K8S: &str = "https://kubernetes.default.svc";
const NODE_SA: &str = "system:serviceaccount:kube-system:node-puller";
const APP_SA: &str = "system:serviceaccount:shop:checkout";
const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
const IAM: &str = "/identity/token";
/// The kubelet kills a plugin after this long (`plugin.go`).
const KUBELET_LIMIT: Duration = Duration::from_secs(60);

// ---- the v1 types, as the kubelet's strict decoder sees them ----

/// `CredentialProviderResponse` (metav1.TypeMeta inline + the v1 fields).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialProviderResponse {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    #[serde(rename = "cacheKeyType")]
    cache_key_type: String,
    #[serde(rename = "cacheDuration", default)]
    cache_duration: Option<String>,
    #[serde(default)]
    auth: Option<BTreeMap<String, AuthConfig>>,
}

/// `AuthConfig`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    username: String,
    password: String,
}

/// Decodes stdout as `plugin.go` does: the apiVersion must be the configured
/// one, the kind and group the response's, the fields exactly the v1
/// types', and `cacheKeyType` one the kubelet keeps.
#[track_caller]
fn decode(out: &Output) -> CredentialProviderResponse {
    let r: CredentialProviderResponse = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("the kubelet would reject this reply ({e})\n{out}"));
    assert_eq!(r.api_version, API_VERSION, "{out}");
    assert_eq!(r.kind, "CredentialProviderResponse", "{out}");
    assert!(
        ["Image", "Registry", "Global"].contains(&r.cache_key_type.as_str()),
        "{out}"
    );
    if let Some(d) = &r.cache_duration {
        go_duration(d).unwrap_or_else(|| panic!("not a Go duration: {d}\n{out}"));
    }
    r
}

/// A Go duration string (`1h2m3s`, `45s`, `0s`) in seconds, as
/// `time.ParseDuration` reads the forms the plugin may write.
fn go_duration(s: &str) -> Option<u64> {
    if s == "0" || s == "0s" {
        return Some(0);
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in s.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' => {
                let n: u64 = number.parse().ok()?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return None,
        }
    }
    number.is_empty().then_some(total)
}

/// `credentialprovider.URLsMatchStr`: the same number of host labels, each
/// matching (`*` is one label), the same port, the glob's path a prefix.
fn urls_match(glob: &str, target: &str) -> bool {
    let split = |u: &str| -> (Vec<String>, String, String) {
        let (hostport, path) = match u.find('/') {
            Some(i) => (&u[..i], u[i..].to_string()),
            None => (u, String::new()),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.to_string()),
            None => (hostport, String::new()),
        };
        (host.split('.').map(str::to_string).collect(), port, path)
    };
    let (g_labels, g_port, g_path) = split(glob);
    let (t_labels, t_port, t_path) = split(target);
    g_port == t_port
        && g_labels.len() == t_labels.len()
        && t_path.starts_with(&g_path)
        && g_labels
            .iter()
            .zip(&t_labels)
            .all(|(g, t)| label_match(g, t))
}

/// `filepath.Match` on one label, with `*` the only metacharacter used.
fn label_match(glob: &str, label: &str) -> bool {
    match glob.split_once('*') {
        None => glob == label,
        Some((pre, rest)) => {
            label.starts_with(pre)
                && (pre.len()..=label.len()).any(|i| label_match(rest, &label[i..]))
        }
    }
}

// ---- running the plugin as the kubelet does ----

/// The request the kubelet's encoder writes (`runtime.Encode` of the v1 type:
/// TypeMeta first, then the fields, omitempty honoured, a trailing newline).
fn request(image: &str) -> String {
    format!("{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"{API_VERSION}\",\"image\":\"{image}\"}}\n")
}

/// The same with a service account token and annotations (KEP-4412).
fn sa_request(image: &str, token: &str, annotations: &[(&str, &str)]) -> String {
    let annotations: BTreeMap<&str, &str> = annotations.iter().copied().collect();
    let mut v = json!({
        "kind": "CredentialProviderRequest",
        "apiVersion": API_VERSION,
        "image": image,
        "serviceAccountToken": token,
    });
    if !annotations.is_empty() {
        v["serviceAccountAnnotations"] = json!(annotations);
    }
    format!("{v}\n")
}

/// Runs `program args` with `stdin`, killed at the kubelet's limit.
fn run_as_kubelet(
    s: &Sandbox,
    program: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = s
        .program(program.to_str().unwrap(), args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > KUBELET_LIMIT {
            let _ = child.kill();
            panic!("the kubelet would have killed the plugin after {KUBELET_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("{} {}", program.display(), args.join(" ")),
    };
    (output, started.elapsed())
}

fn plugin(s: &Sandbox, stdin: &str) -> Output {
    run_as_kubelet(s, std::path::Path::new(BIN), &["kubelet-plugin"], stdin).0
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fake with a node profile (trusting NODE_SA) and an app profile
/// (trusting APP_SA), and a node whose identity is a projected-style CR
/// token file for NODE_SA.
fn setup() -> (FakeIbm, Sandbox, TrustedProfile, TrustedProfile) {
    let fake = FakeIbm::start(Config::default());
    let node = TrustedProfile::new("node-pull", ACCOUNT, &[NODE_SA]);
    let app = TrustedProfile::new("shop-pull", ACCOUNT, &[APP_SA]);
    fake.add_profile(node.clone());
    fake.add_profile(app.clone());
    let mut s = Sandbox::new();
    s.set("IBMCLOUD_IAM_API_ENDPOINT", &fake.url());
    s.set("IBMCLOUD_CR_API_ENDPOINT", &fake.url());
    s.set("IBMCR_VPC_METADATA_URL", &fake.url());
    let file = s.root.join("node-token");
    std::fs::write(&file, fake.cr_token(K8S, NODE_SA, 3600)).unwrap();
    s.set("IBMCLOUD_CR_TOKEN", &format!("@{}", file.display()));
    s.set("IBMCLOUD_CR_PROFILE", &node.id);
    (fake, s, node, app)
}

/// The one `auth` entry of a reply: (pattern, username, password).
#[track_caller]
fn only_auth(r: &CredentialProviderResponse) -> (String, String, String) {
    let auth = r.auth.as_ref().expect("auth");
    assert_eq!(auth.len(), 1, "{auth:?}");
    let (k, v) = auth.iter().next().unwrap();
    (k.clone(), v.username.clone(), v.password.clone())
}

#[test]
fn the_glob_rules_are_the_kubelet_s() {
    assert!(urls_match("*.icr.io", "us.icr.io/ns/app"));
    assert!(
        !urls_match("*.icr.io", "private.us.icr.io/ns/app"),
        "one label per *"
    );
    assert!(urls_match("private.*.icr.io", "private.us.icr.io/ns/app"));
    assert!(
        urls_match("*.icr.io", "cp.icr.io/cp/x"),
        "why the plugin never answers a glob"
    );
    assert!(
        !urls_match("us.icr.io", "us.icr.io:443/ns/app"),
        "ports must match"
    );
    assert!(urls_match("us.icr.io:443", "us.icr.io:443/ns/app"));
    assert!(urls_match("us.icr.io/ns", "us.icr.io/ns/app"));
    assert!(!urls_match("us.icr.io/other", "us.icr.io/ns/app"));
    assert_eq!(go_duration("29m30s"), Some(1770));
    assert_eq!(go_duration("1h0m0s"), Some(3600));
    assert_eq!(go_duration("5x"), None);
}

#[test]
fn the_strict_decoder_rejects_what_the_kubelet_rejects() {
    let ok = r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry"}"#;
    assert!(serde_json::from_str::<CredentialProviderResponse>(ok).is_ok());
    for bad in [
        // a field of the 1.33 alpha types, unknown to v1 since 1.34
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","serviceAccountTokenCacheType":"ServiceAccount"}"#,
        r#"{"kind":"CredentialProviderResponse","kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry"}"#,
        r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","auth":{"x":{"username":"u","password":"p","identitytoken":"t"}}}"#,
        r#"{"Kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry"}"#,
    ] {
        assert!(
            serde_json::from_str::<CredentialProviderResponse>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn an_ibm_image_gets_iambearer_for_its_registry_and_a_cache_duration_inside_the_token() {
    // issue 11.2: auth keyed by a pattern matching the image, iambearer, Registry, cacheDuration
    let (fake, s, node, _) = setup();
    let out = plugin(&s, &request("us.icr.io/shop/checkout")).ok();
    let r = decode(&out);
    assert_eq!(out.stderr, "", "nothing on stderr\n{out}");
    assert_eq!(r.cache_key_type, "Registry");
    let (pattern, username, password) = only_auth(&r);
    assert_eq!(pattern, "us.icr.io");
    assert!(urls_match(&pattern, "us.icr.io/shop/checkout"));
    assert!(!urls_match(&pattern, "cp.icr.io/cp/db2"));
    assert!(!urls_match(&pattern, "de.icr.io/shop/checkout"));
    assert_eq!(username, "iambearer");
    let claims = fake_ibm::decode_jwt_payload(&password).unwrap();
    assert_eq!(claims["sub"], node.id.as_str());
    // The kubelet keeps it for half the token's remaining life: safely inside it.
    let duration = go_duration(r.cache_duration.as_deref().unwrap()).unwrap();
    let left = claims["exp"].as_u64().unwrap() - now();
    assert!(
        duration > 0 && duration <= left / 2 + 1,
        "{duration} of {left}"
    );
    // One mint, then the node's token cache answers every registry.
    assert_eq!(fake.count("POST", IAM), 1);
    for (image, key) in [
        ("de.icr.io/shop/cart", "de.icr.io"),
        ("private.us.icr.io/shop/cart", "private.us.icr.io"),
        ("us.icr.io:443/shop/cart", "us.icr.io:443"),
        ("icr.io/shop/cart", "icr.io"),
        (
            "registry.ng.bluemix.net/shop/cart",
            "registry.ng.bluemix.net",
        ),
    ] {
        let r = decode(&plugin(&s, &request(image)).ok());
        let (pattern, _, token) = only_auth(&r);
        assert_eq!(pattern, key);
        assert!(urls_match(&pattern, image), "{pattern} {image}");
        assert_eq!(token, password, "{image}");
    }
    assert_eq!(fake.count("POST", IAM), 1, "exactly one mint");
    assert_eq!(fake.stats().metadata_requests, 0);
}

#[test]
fn other_images_and_the_entitled_registry_get_a_valid_reply_with_no_credentials() {
    // issue 11.2: non-IBM images and cp.icr.io → no credentials, no request
    let (fake, s, _, _) = setup();
    for image in [
        "docker.io/library/nginx",
        "cp.icr.io/cp/db2",
        "us.icr.io:5000/ns/app",
        "quay.io/prometheus/node-exporter",
        "us.icr.io.evil.example/ns/app",
    ] {
        let out = plugin(&s, &request(image)).ok();
        let r = decode(&out);
        assert!(r.auth.is_none(), "{image}\n{out}");
        assert_eq!(r.cache_duration.as_deref(), Some("0s"));
        assert_eq!(
            out.stdout,
            "{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Registry\",\"cacheDuration\":\"0s\"}\n"
        );
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn a_node_with_no_identity_answers_no_credentials_and_pull_secrets_still_work() {
    // issue 11.2: nothing to answer is not an error (the kubelet falls back to pull secrets)
    let (fake, mut s, _, _) = setup();
    s.unset("IBMCLOUD_CR_TOKEN");
    s.unset("IBMCLOUD_CR_PROFILE");
    let out = plugin(&s, &request("us.icr.io/shop/checkout")).ok();
    assert!(decode(&out).auth.is_none());
    assert_eq!(out.stderr, "");
    assert!(fake.requests().is_empty());
}

#[test]
fn a_wrong_request_is_exit_1_one_line_on_stderr_nothing_on_stdout() {
    // issue 11.2: a wrong apiVersion or kind → exit 1, one line on stderr, nothing on stdout
    let (fake, s, _, _) = setup();
    for (stdin, line) in [
        (
            request("us.icr.io/a").replace(API_VERSION, "credentialprovider.kubelet.k8s.io/v1beta1"),
            "kubelet request: apiVersion must be credentialprovider.kubelet.k8s.io/v1, not `credentialprovider.kubelet.k8s.io/v1beta1`\n",
        ),
        (
            request("us.icr.io/a").replace("CredentialProviderRequest", "Pod"),
            "kubelet request: kind must be CredentialProviderRequest, not `Pod`\n",
        ),
        ("".to_string(), "kubelet request: not valid JSON (line 1, column 0)\n"),
        (
            "{\"serviceAccountToken\":\"CANARY-sa-token".to_string(),
            "kubelet request: not valid JSON (line 1, column 39)\n",
        ),
    ] {
        let out = plugin(&s, &stdin).fails();
        assert_eq!(out.stdout, "", "nothing on stdout\n{out}");
        assert_eq!(out.stderr, line, "{out}");
    }
    assert!(fake.requests().is_empty());
}

#[test]
fn the_binary_answers_as_ibmcr_credential_provider_with_no_arguments() {
    // issue 11.2: the same binary linked as `ibmcr-credential-provider` (the kubelet's `name`)
    let (_fake, s, _, _) = setup();
    let bin_dir = s.root.join("kubelet-plugins");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let link = bin_dir.join("ibmcr-credential-provider");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let (out, _) = run_as_kubelet(&s, &link, &[], &request("us.icr.io/shop/checkout"));
    let r = decode(&out.ok());
    assert_eq!(only_auth(&r).1, "iambearer");
    let (out, _) = run_as_kubelet(&s, &link, &["kubelet-plugin"], &request("cp.icr.io/cp/x"));
    assert!(decode(&out.ok()).auth.is_none());
}

#[test]
fn a_service_account_token_is_traded_for_its_annotated_trusted_profile() {
    // issue 11.2: KEP-4412 — serviceAccountToken + `ibmcr/trusted-profile`
    let (fake, s, node, app) = setup();
    let token = fake.cr_token(K8S, APP_SA, 3600);
    let stdin = sa_request(
        "us.icr.io/shop/checkout",
        &token,
        &[("ibmcr/trusted-profile", &app.name)],
    );
    let out = plugin(&s, &stdin).ok();
    assert_eq!(out.stderr, "");
    let r = decode(&out);
    let (pattern, username, password) = only_auth(&r);
    assert_eq!(
        (pattern.as_str(), username.as_str()),
        ("us.icr.io", "iambearer")
    );
    assert_eq!(
        fake_ibm::decode_jwt_payload(&password).unwrap()["sub"],
        app.id.as_str(),
        "the pod's profile, not the node's"
    );
    let grant = &fake.requests()[0];
    assert_eq!(
        grant.form_param("cr_token").as_deref(),
        Some(token.as_str())
    );
    assert_eq!(
        grant.form_param("profile_name").as_deref(),
        Some(app.name.as_str())
    );
    // The kubelet asks with a fresh token for the next pull: same account, the cache answers.
    let next = sa_request(
        "de.icr.io/shop/checkout",
        &fake.cr_token(K8S, APP_SA, 3600),
        &[("ibmcr/trusted-profile", &app.name)],
    );
    assert_eq!(only_auth(&decode(&plugin(&s, &next).ok())).2, password);
    assert_eq!(fake.count("POST", IAM), 1);
    // Without the annotation: the node's identity answers.
    let plain = sa_request("us.icr.io/shop/checkout", &token, &[]);
    let r = decode(&plugin(&s, &plain).ok());
    let node_token = only_auth(&r).2;
    assert_eq!(
        fake_ibm::decode_jwt_payload(&node_token).unwrap()["sub"],
        node.id.as_str()
    );
    // A profile that does not trust this service account: one line, no token anywhere.
    let wrong = sa_request(
        "us.icr.io/shop/checkout",
        &token,
        &[("ibmcr/trusted-profile", &node.id)],
    );
    let out = plugin(&s, &wrong).fails();
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.starts_with(&format!(
            "the service account token for trusted profile {}: IAM cr-token request to {}/identity/token failed: 400 Bad Request: BXNIM0398E:",
            node.id,
            fake.url()
        )) && out.stderr.matches('\n').count() == 1,
        "{out}"
    );
    assert!(!out.stderr.contains(&token));
    // The pod's token never lands in the host's answer for `get`.
    let cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.cache_file()).unwrap()).unwrap();
    assert!(!cache.to_string().contains(&token));
    assert_ne!(cache["hosts"]["us.icr.io"]["source"], "service-account");
}

#[test]
fn every_failure_ends_well_inside_the_kubelet_s_minute_and_says_no_secret() {
    // issue 11.2: bounded in every failure; stderr never holds a secret
    let (fake, mut s, _, app) = setup();
    s.set("IBMCR_LOG", "debug");
    fake.inject(Fault::new(
        IAM,
        FaultKind::Delay(Duration::from_secs(40)),
        0,
    ));
    let token = fake.cr_token(K8S, APP_SA, 3600);
    let stdin = sa_request(
        "us.icr.io/shop/checkout",
        &token,
        &[("ibmcr/trusted-profile", &app.id)],
    );
    let (out, took) = run_as_kubelet(&s, std::path::Path::new(BIN), &["kubelet-plugin"], &stdin);
    let out = out.fails();
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(out.stdout, "");
    assert!(out.stderr.ends_with("timed out after 15s\n"), "{out}");
    assert!(!out.stderr.contains(&token), "{out}");
    fake.clear_faults();
    // Metadata unreachable, with the node on the VPC identity.
    s.set("IBMCR_IDENTITY", "vpc");
    s.set("IBMCR_VPC_METADATA_URL", "http://127.0.0.1:9");
    let (out, took) = run_as_kubelet(
        &s,
        std::path::Path::new(BIN),
        &["kubelet-plugin"],
        &request("us.icr.io/shop/checkout"),
    );
    let out = out.fails();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        out.stderr
            .ends_with("could not connect (connection refused)\n"),
        "{out}"
    );
    assert_eq!(out.stdout, "");
}
