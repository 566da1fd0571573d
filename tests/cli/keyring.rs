//! Issue 2.3/2.8: the keyring store against a real Secret Service, which
//! `scripts/with-secret-service.sh` starts (a headless gnome-keyring in a
//! private D-Bus session) and announces with `IBMCR_TEST_SECRET_SERVICE=1`.
//! Never skipped: without a Secret Service these tests fail, in any
//! environment.

use std::fs;

use crate::util::{go_case, mode, plain_answer, plain_list, run_command, Output, Sandbox};

/// The keyring service name every entry carries (src/store/keyring.rs).
const SERVICE: &str = "docker-credential-ibmcr";

/// A sandbox on the test's Secret Service. Without one the test fails,
/// in every environment: a keyring test that printed `ok` without a keyring
/// would prove nothing.
fn sandbox(store: &str) -> Sandbox {
    assert!(
        std::env::var_os("IBMCR_TEST_SECRET_SERVICE").is_some(),
        "no Secret Service for the keyring tests: run them inside one with \
         `scripts/with-secret-service.sh cargo test --locked --test cli keyring` \
         (./test.sh does; keyring tests never skip)"
    );
    let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").expect(
        "IBMCR_TEST_SECRET_SERVICE is set but DBUS_SESSION_BUS_ADDRESS is not: \
         run the tests through scripts/with-secret-service.sh",
    );
    let mut s = Sandbox::new();
    s.set("DBUS_SESSION_BUS_ADDRESS", &bus);
    s.set("IBMCR_STORE", store);
    s.set("IBMCR_MODE", "apikey");
    s.set("IBMCLOUD_IAM_API_ENDPOINT", "http://127.0.0.1:1");
    s.set("IBMCLOUD_CR_API_ENDPOINT", "http://127.0.0.1:1");
    s
}

/// `secret-tool lookup service docker-credential-ibmcr username <key>`.
fn lookup(s: &Sandbox, key: &str) -> Output {
    run_command(
        s.program(
            "secret-tool",
            &["lookup", "service", SERVICE, "username", key],
        ),
        b"",
    )
}

/// Asserts the keyring holds `key` with this username and secret, as one JSON record.
#[track_caller]
fn in_keyring(s: &Sandbox, key: &str, username: &str, secret: &str) {
    let out = lookup(s, key).ok();
    let record: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON record ({e})\n{out}"));
    assert_eq!(record["username"], username, "{out}");
    assert_eq!(record["secret"], secret, "{out}");
}

/// Asserts the keyring has no entry for `key`.
#[track_caller]
fn not_in_keyring(s: &Sandbox, key: &str) {
    let out = lookup(s, key);
    assert!(
        out.code != 0 && out.stdout.is_empty(),
        "no entry for {key}\n{out}"
    );
}

/// Asserts no file in the data dir holds `secret`.
#[track_caller]
fn not_on_disk(s: &Sandbox, secret: &str) {
    for entry in fs::read_dir(s.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            path.display()
        );
    }
}

#[test]
fn a_second_process_reads_what_the_first_stored() {
    // issue 2.3/2.8: keyring round trip against a real Secret Service, across processes
    // The steps and the Go helper's answers to them, captured against the
    // same kind of keyring (tests/fixtures/go/keyring-round-trip); each step
    // runs a new process. `keyring.example:5000` is used by no other keyring
    // test (they share one Secret Service).
    let s = sandbox("keyring");
    let steps = go_case("keyring-round-trip");
    let verbs: Vec<&str> = steps.iter().map(|s| s.verb.as_str()).collect();
    assert_eq!(
        verbs,
        ["store", "get", "list", "store", "get", "erase", "erase", "get", "list"]
    );
    let key = "keyring.example:5000";
    let secret = "kr-secret-<1>&2";
    // store, get (`<`, `>`, `&` escaped), list.
    for step in &steps[..3] {
        step.replay(&s);
    }
    in_keyring(&s, key, "kr-user", secret);
    // The secret lives in the keyring only: no store file, an index without secrets.
    assert!(!s.store_file().exists(), "no file store in keyring mode");
    let index = s.data_dir().join("keyring-index.json");
    assert_eq!(mode(&index), 0o600);
    assert_eq!(mode(&s.data_dir()), 0o700);
    not_on_disk(&s, secret);
    // A store over it replaces it.
    steps[3].replay(&s);
    in_keyring(&s, key, "kr-user", "kr-secret-2");
    steps[4].replay(&s);
    // Erase removes it from the keyring; a second erase is a no-op; then
    // not found, and an empty list.
    steps[5].replay(&s);
    not_in_keyring(&s, key);
    for step in &steps[6..] {
        step.replay(&s);
    }
}

#[test]
fn ibm_hosts_in_the_keyring_are_one_entry_per_host() {
    // issue 2.2/2.3: an IBM host is stored under its canonical name; erase of any form removes it
    let s = sandbox("keyring");
    // `ca2.icr.io` is used by no other keyring test (they share one Secret Service).
    s.store("https://CA2.icr.io:443/v2/", "iamapikey", "kr-api-key")
        .ok()
        .stdout_is("")
        .stderr_is("");
    in_keyring(&s, "ca2.icr.io", "iamapikey", "kr-api-key");
    for asked in ["ca2.icr.io", "ca2.icr.io:443", "https://ca2.icr.io/"] {
        s.get(asked)
            .ok()
            .stdout_is(&plain_answer(asked, "iamapikey", "kr-api-key"))
            .stderr_is("");
    }
    s.list()
        .ok()
        .stdout_is(&plain_list(&[("ca2.icr.io", "iamapikey")]));
    not_on_disk(&s, "kr-api-key");
    s.erase("http://ca2.icr.io")
        .ok()
        .stdout_is("")
        .stderr_is("");
    not_in_keyring(&s, "ca2.icr.io");
    s.get("ca2.icr.io").not_found();
}

#[test]
fn auto_records_the_keyring_when_one_is_usable() {
    // issue 2.3 / decisions §2: auto probes on the first `store` and records `keyring`
    let s = sandbox("auto");
    let backend = s.data_dir().join("backend");
    let key = format!("auto-{}.example", std::process::id());
    s.get(&key).not_found();
    s.list().ok().stdout_is("{}\n");
    assert!(!backend.exists(), "no probe before the first store");
    s.store(&key, "u", "auto-secret")
        .ok()
        .stdout_is("")
        .stderr_is("");
    assert_eq!(fs::read_to_string(&backend).unwrap().trim(), "keyring");
    assert_eq!(mode(&backend), 0o600);
    in_keyring(&s, &key, "u", "auto-secret");
    assert!(!s.store_file().exists());
    s.get(&key)
        .ok()
        .stdout_is(&plain_answer(&key, "u", "auto-secret"));
    // The probe left nothing behind in the keyring.
    let out = run_command(
        s.program("secret-tool", &["search", "--all", "service", SERVICE]),
        b"",
    );
    assert!(
        !out.stdout.contains("ibmcr-probe-"),
        "probe entry left\n{out}"
    );
    s.erase(&key).ok();
    not_in_keyring(&s, &key);
}

#[test]
fn keyring_without_a_session_bus_is_one_clear_line() {
    // issue 2.3: IBMCR_STORE=keyring with no D-Bus session → one line, exit 1, nothing written
    // (needs no Secret Service: runs everywhere)
    let mut s = Sandbox::new();
    s.set("IBMCR_STORE", "keyring");
    s.unset("DBUS_SESSION_BUS_ADDRESS");
    let out = s
        .store("localhost:5000", "u", "no-bus-secret")
        .error_line("keyring");
    assert!(
        !out.stdout.contains("internal error") && !out.stdout.contains("no-bus-secret"),
        "{out}"
    );
    assert!(
        !s.data_dir().join("keyring-index.json").exists(),
        "no index entry for what was not stored"
    );
    // Nothing stored: get and list answer without the keyring.
    s.get("localhost:5000").not_found();
    s.list().ok().stdout_is("{}\n");
}
