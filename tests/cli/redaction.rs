//! Issue 2.5: no secret ever appears in stderr (debug log included), nor in
//! stdout except `get`'s answer — proved with canary secrets through every
//! verb and every error path of the protocol and the store. Minting paths
//! are in mint.rs.

use std::fs;

use serde_json::json;

use crate::util::{plain_answer, Output, Sandbox};

const APIKEY: &str = "CANARY-apikey-7f3a";
const TOKEN: &str = "CANARY-token-2c9e";
const BEARER: &str = "CANARY-bearer-5d1b";
const REFRESH: &str = "CANARY-refresh-8e4f";
const PROFILE: &str = "CANARY-profile-3a6c";
const HUB: &str = "CANARY-hub-9b0d";
const GHCR: &str = "CANARY-ghcr-1e7a";
const ENV_KEY: &str = "CANARY-envkey-4f2d";
/// Every canary; the common prefix catches a truncated one.
const CANARIES: &[&str] = &[
    APIKEY, TOKEN, BEARER, REFRESH, PROFILE, HUB, GHCR, ENV_KEY, "CANARY",
];

/// A sandbox with debug logging on, IBM hosts answered as stored, and
/// closed IBM endpoints (nothing here may mint).
fn sandbox() -> Sandbox {
    let mut s = Sandbox::new();
    s.set("IBMCR_LOG", "debug");
    s.set("IBMCR_MODE", "apikey");
    s.set("IBMCLOUD_IAM_API_ENDPOINT", "http://127.0.0.1:1");
    s.set("IBMCLOUD_CR_API_ENDPOINT", "http://127.0.0.1:1");
    s
}

/// Asserts that no canary is on stderr, and none on stdout except in
/// `allowed` (a `get` answer's exact bytes). Returns the output.
#[track_caller]
fn clean(out: Output, allowed: Option<&str>) -> Output {
    for canary in CANARIES {
        assert!(!out.stderr.contains(canary), "{canary} on stderr\n{out}");
        match allowed {
            Some(answer) => assert_eq!(out.stdout, answer, "stdout is the answer only\n{out}"),
            None => assert!(!out.stdout.contains(canary), "{canary} on stdout\n{out}"),
        }
    }
    out
}

/// Asserts the debug log is on (a `store` always writes a record), so a
/// clean stderr means something.
#[track_caller]
fn logged(out: Output) -> Output {
    assert!(out.stderr.contains("debug|ibmcr::"), "debug log on\n{out}");
    out
}

#[test]
fn canaries_through_every_verb() {
    // issue 2.5: canary secrets through store/get/erase/list/version, IBM and non-IBM hosts
    let s = sandbox();
    let stored: &[(&str, &str, &str)] = &[
        ("us.icr.io", "iamapikey", APIKEY),
        ("icr.io", "iamapikey", APIKEY),
        ("de.icr.io", "token", TOKEN),
        ("jp.icr.io", "iambearer", BEARER),
        ("uk.icr.io", "iamrefresh", REFRESH),
        (
            "au.icr.io",
            "Profile-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            PROFILE,
        ),
        ("https://index.docker.io/v1/", "hubuser", HUB),
        ("ghcr.io", "<token>", GHCR),
    ];
    for (url, user, secret) in stored {
        logged(clean(s.store(url, user, secret).ok(), None));
    }
    for (url, user, secret) in stored {
        let answer = if *user == "<token>" {
            // Go escapes `<` and `>` (tests/fixtures/go/html-escaping).
            format!(
                "{{\"ServerURL\":\"{url}\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"{secret}\"}}\n"
            )
        } else {
            plain_answer(url, user, secret)
        };
        clean(s.get(url).ok(), Some(&answer));
    }
    // The global key serving a host with nothing of its own.
    let answer = plain_answer("ca.icr.io", "iamapikey", APIKEY);
    clean(s.get("ca.icr.io").ok(), Some(&answer));
    // Storing again over an existing record, and the docker-py form.
    let docker_py = format!(
        "{{\"ServerURL\": \"ghcr.io\", \"Username\": \"<token>\", \"Secret\": \"{GHCR}\"}}"
    );
    clean(s.run(&["store"], docker_py.as_bytes()).ok(), None);
    clean(s.store("us.icr.io", "iamapikey", APIKEY).ok(), None);
    clean(s.list().ok(), None);
    for arg in ["version", "--version", "-v", "--help", "-h"] {
        clean(s.run(&[arg], b"").ok(), None);
    }
    clean(s.run(&["bogus"], APIKEY.as_bytes()).fails(), None);
    clean(s.get("quay.io").not_found(), None);
    for (url, _, _) in stored {
        clean(s.erase(url).ok(), None);
        clean(s.erase(url).ok(), None);
    }
    clean(s.list().ok(), None);
    // What is left on disk is a store with no secret in it.
    let file = fs::read_to_string(s.store_file()).unwrap();
    assert!(!file.contains("CANARY"), "{file}");
}

#[test]
fn canaries_in_the_environment_key() {
    // issue 2.5: an API key from IBMCLOUD_API_KEY never shows, except as `get`'s answer in apikey mode
    let mut s = sandbox();
    s.set("IBMCLOUD_API_KEY", ENV_KEY);
    let answer = plain_answer("us.icr.io", "iamapikey", ENV_KEY);
    logged(clean(s.get("us.icr.io").ok(), Some(&answer)));
    logged(clean(s.store("ghcr.io", "u", GHCR).ok(), None));
    clean(s.list().ok(), None);
    clean(s.erase("us.icr.io").ok(), None);
    clean(s.run(&["version"], b"").ok(), None);
    clean(s.get("quay.io").not_found(), None);
}

#[test]
fn canaries_in_malformed_input() {
    // issue 2.5: errors never quote the request (malformed JSON, wrong types, long lines)
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    let before = fs::read(s.store_file()).unwrap();
    let inputs: Vec<Vec<u8>> = vec![
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":"{GHCR}"#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":"{GHCR}\q"}}"#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":["{GHCR}"]}}"#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":{{"v":"{GHCR}"}}}}"#)
            .into_bytes(),
        format!(r#"{{"ServerURL":"us.icr.io","Username":"iamapikey","Secret":{{"{APIKEY}":1}}}}"#)
            .into_bytes(),
        format!(r#"{{"{GHCR}" "#).into_bytes(),
        format!(r#"["{GHCR}"]"#).into_bytes(),
        format!(r#""{GHCR}""#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":"{GHCR}","#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":"{GHCR}"{GHCR}}}"#).into_bytes(),
        format!(r#"{{"ServerURL":"","Username":"u","Secret":"{GHCR}"}}"#).into_bytes(),
        format!(r#"{{"ServerURL":"ghcr.io","Username":"","Secret":"{GHCR}"}}"#).into_bytes(),
        format!(
            r#"{{"ServerURL":"ghcr.io","Username":"u","Secret":"{GHCR}{}"}}"#,
            "x".repeat(70_000)
        )
        .into_bytes(),
    ];
    for input in &inputs {
        let out = clean(s.run(&["store"], input).fails(), None);
        assert!(!out.stdout.contains("internal error"), "{out}");
    }
    // Whatever text it was, it was written nowhere.
    assert_eq!(fs::read(s.store_file()).unwrap(), before);
    // A `get` whose ServerURL is too long.
    let long = format!("{GHCR}{}", "x".repeat(70_000));
    clean(s.get(&long).fails(), None);
    clean(s.erase(&long).fails(), None);
}

#[test]
fn canaries_in_a_corrupt_store_file() {
    // issue 2.5: a corrupt or open store file is named, never quoted
    let record = |secret: &str| json!({"username": "u", "secret": secret, "stored_at": 1});
    let full = json!({"v": 1, "credentials": {
        "localhost:5000": record(HUB),
        "us.icr.io": {"username": "iamapikey", "secret": APIKEY, "stored_at": 1},
    }})
    .to_string();
    let damaged: Vec<Vec<u8>> = vec![
        // truncated inside a secret
        full.as_bytes()[..full.find(APIKEY).unwrap() + 10].to_vec(),
        // a secret where a number belongs
        json!({"v": 1, "credentials": {"localhost:5000": {"username": "u", "secret": "x", "stored_at": HUB}}})
            .to_string()
            .into_bytes(),
        // a secret where an object belongs
        json!({"v": 1, "credentials": {"localhost:5000": HUB}})
            .to_string()
            .into_bytes(),
        // a secret of the wrong type
        json!({"v": 1, "credentials": {"localhost:5000": {"username": "u", "secret": [HUB], "stored_at": 1}}})
            .to_string()
            .into_bytes(),
        // an unknown variant-ish version with secrets in it
        json!({"v": HUB, "credentials": {}}).to_string().into_bytes(),
        // trailing garbage after a valid document
        format!("{full} {HUB}").into_bytes(),
        // garbage
        format!("\u{0}{HUB}\u{7f}{APIKEY}").into_bytes(),
    ];
    for bytes in damaged {
        let s = sandbox();
        s.store("ghcr.io", "u", "p").ok();
        fs::write(s.store_file(), &bytes).unwrap();
        for out in [
            s.get("localhost:5000"),
            s.get("us.icr.io"),
            s.get("de.icr.io"),
            s.store("localhost:5000", "u", GHCR),
            s.store("us.icr.io", "iamapikey", GHCR),
            s.erase("localhost:5000"),
            s.erase("us.icr.io"),
            s.list(),
        ] {
            let out = clean(out.fails(), None);
            assert!(!out.stdout.contains("internal error"), "{out}");
        }
        assert_eq!(fs::read(s.store_file()).unwrap(), bytes);
    }

    // Readable by others: refused, and still never quoted.
    let s = sandbox();
    s.store("localhost:5000", "u", HUB).ok();
    s.store("us.icr.io", "iamapikey", APIKEY).ok();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(s.store_file(), fs::Permissions::from_mode(0o640)).unwrap();
    for out in [
        s.get("localhost:5000"),
        s.get("us.icr.io"),
        s.store("ghcr.io", "u", GHCR),
        s.erase("localhost:5000"),
        s.list(),
    ] {
        clean(out.fails(), None);
    }
}
