//! Issue 2.2–2.4: hosts (every client's ServerURL form of an IBM host is one
//! record; hostile and foreign names are plain keys), IBM credentials
//! answered as stored, and the file store (modes, locking, refusals,
//! directories, backend choice).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::support::fake_ibm::make_jwt;
use crate::util::{
    mode, plain_answer, plain_list, replay_go_case, run_command, Output, Sandbox, BIN,
};

/// A sandbox whose IBM hosts answer what is stored, and whose IBM endpoints
/// are a closed loopback port: any attempt to mint fails loudly.
fn sandbox() -> Sandbox {
    let mut s = Sandbox::new();
    s.set("IBMCR_MODE", "apikey");
    s.set("IBMCLOUD_IAM_API_ENDPOINT", "http://127.0.0.1:1");
    s.set("IBMCLOUD_CR_API_ENDPOINT", "http://127.0.0.1:1");
    s
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn chmod(path: &std::path::Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Asserts a failure that is not a panic.
#[track_caller]
fn no_panic(out: Output) -> Output {
    assert!(
        !out.stdout.contains("internal error") && !out.stderr.contains("panicked"),
        "no panic\n{out}"
    );
    out
}

/// Every form protocol.md §2.7 lists for `us.icr.io`.
const US_FORMS: &[&str] = &[
    "us.icr.io",
    "US.ICR.IO",
    "https://us.icr.io/",
    "https://us.icr.io/v2/",
    "us.icr.io:443",
    "https://us.icr.io:443",
    "http://us.icr.io",
    "https://us.icr.io",
    "us.icr.io/ns/repo",
    "https://us.icr.io/v1/",
];

#[test]
fn every_client_form_of_an_ibm_host_is_one_record() {
    // issue 2.2: lower-case, scheme, path, trailing `/`, `:443` stripped for IBM hosts (protocol.md §2.7)
    let s = sandbox();
    for (i, stored) in US_FORMS.iter().enumerate() {
        let key = format!("key-{i}");
        s.store(stored, "iamapikey", &key)
            .ok()
            .stdout_is("")
            .stderr_is("");
        s.list()
            .ok()
            .stdout_is(&plain_list(&[("us.icr.io", "iamapikey")]));
        for asked in US_FORMS {
            s.get(asked)
                .ok()
                .stdout_is(&plain_answer(asked, "iamapikey", &key))
                .stderr_is("");
        }
    }
}

#[test]
fn erase_of_one_form_removes_it_for_all() {
    // issue 2.1/2.2: erase of an IBM host removes every stored form of it
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    for erased in US_FORMS {
        s.store("https://US.icr.io:443/v2/", "iamapikey", "key")
            .ok();
        s.erase(erased).ok().stdout_is("").stderr_is("");
        for asked in US_FORMS {
            s.get(asked).not_found();
        }
        s.list()
            .ok()
            .stdout_is(&plain_list(&[("localhost:5000", "u")]));
    }
}

#[test]
fn hostile_names_are_plain_keys() {
    // issue 2.2: exact match only; look-alikes are never IBM hosts
    const HOSTILE: &[&str] = &[
        "cp.icr.io",
        "us.icr.io.evil.example",
        "evil.example/us.icr.io",
        "us.icr.io@evil.example",
        "xus.icr.io",
        "us.icr.io:5443",
    ];
    // Stored, listed, answered, other spellings not found, one erased: as
    // the Go helper does with exact keys (tests/fixtures/go/hostile-names).
    let s = sandbox();
    replay_go_case(&s, "hostile-names");
    // The case erased one; with all six stored, none of them is `us.icr.io`,
    // nor feeds the global key.
    s.store("us.icr.io@evil.example", "iamapikey", "hostile-3")
        .ok();
    let mut listed: Vec<(&str, &str)> = HOSTILE.iter().map(|n| (*n, "iamapikey")).collect();
    s.list().ok().stdout_is(&plain_list(&listed));
    for asked in US_FORMS {
        s.get(asked).not_found();
    }
    // With `us.icr.io` stored too, each answers its own.
    s.store("us.icr.io", "iamapikey", "the-real-one").ok();
    s.get("us.icr.io")
        .ok()
        .stdout_is(&plain_answer("us.icr.io", "iamapikey", "the-real-one"));
    s.get("cp.icr.io")
        .ok()
        .stdout_is(&plain_answer("cp.icr.io", "iamapikey", "hostile-0"));
    // Erasing `us.icr.io` leaves them all.
    s.erase("us.icr.io").ok();
    s.list().ok().stdout_is(&plain_list(&listed));
    // Erasing one leaves the others.
    s.erase("us.icr.io@evil.example").ok().stdout_is("");
    listed.retain(|(k, _)| *k != "us.icr.io@evil.example");
    s.list().ok().stdout_is(&plain_list(&listed));
}

#[test]
fn non_ibm_keys_are_exact_strings() {
    // issue 2.2/2.4: any other registry is a plain store keyed by the exact ServerURL
    // Stored, answered (`<token>` and `&` escaped), other spellings not found,
    // listed, an erase of another spelling removing nothing: the Go helper's
    // bytes (tests/fixtures/go/exact-keys).
    replay_go_case(&sandbox(), "exact-keys");
}

#[test]
fn ibm_credentials_are_answered_as_stored_by_kind() {
    // issue 2.4: the kind comes from the username (ibm-api.md §6); decisions §4's table, no minting
    let future = make_jwt(&json!({"exp": now() + 3600, "iat": now()}));
    let past = make_jwt(&json!({"exp": now() - 60, "iat": now() - 3660}));
    let as_stored: &[(&str, &str)] = &[
        ("token", &future),
        ("iambearer", &future),
        ("iamrefresh", "refresh-token-value"),
        ("Profile-0a1b2c3d-4e5f-6789-abcd-ef0123456789", "cr-token"),
        ("someone@example.com", "password"),
    ];
    for mode in ["apikey", "bearer", "registry-token"] {
        let mut s = sandbox();
        s.set("IBMCR_MODE", mode);
        for (username, secret) in as_stored {
            s.store("de.icr.io", username, secret).ok();
            s.get("de.icr.io")
                .ok()
                .stdout_is(&plain_answer("de.icr.io", username, secret))
                .stderr_is("");
        }
    }

    let s = sandbox();
    // `iamapikey` in apikey mode: the key itself, no network (the endpoints are closed).
    s.store("us.icr.io", "iamapikey", "my-api-key").ok();
    s.get("us.icr.io")
        .ok()
        .stdout_is(&plain_answer("us.icr.io", "iamapikey", "my-api-key"))
        .stderr_is("");
    // An expired registry token with no key anywhere: not found.
    s.store("de.icr.io", "token", &past).ok();
    s.get("de.icr.io").not_found();
    // The global key serves a host whose own token expired, and hosts with nothing stored.
    s.store("icr.io", "iamapikey", "global-key").ok();
    for host in [
        "de.icr.io",
        "jp.icr.io",
        "private.us.icr.io",
        "registry.ng.bluemix.net",
        "https://icr.io/",
    ] {
        s.get(host)
            .ok()
            .stdout_is(&plain_answer(host, "iamapikey", "global-key"))
            .stderr_is("");
    }
    // The host's own key wins over the global one.
    s.get("us.icr.io")
        .ok()
        .stdout_is(&plain_answer("us.icr.io", "iamapikey", "my-api-key"));
    // A non-IBM registry is a plain store: an expired `token` is answered as stored.
    s.store("localhost:5000", "token", &past).ok();
    s.get("localhost:5000")
        .ok()
        .stdout_is(&plain_answer("localhost:5000", "token", &past));
}

#[test]
fn store_files_are_private_from_creation() {
    // issue 2.3: 0600 inside a 0700 dir, the cache dir too (style.md §10)
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    s.store("us.icr.io", "iamapikey", "key").ok();
    s.get("us.icr.io").ok();
    assert_eq!(mode(&s.data_dir()), 0o700);
    assert_eq!(mode(&s.store_file()), 0o600);
    assert_eq!(mode(&s.cache_dir()), 0o700);
    for dir in [s.data_dir(), s.cache_dir()] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    // The same with a umask that would leave everything open.
    let s = sandbox();
    for json in [
        r#"{"ServerURL":"localhost:5000","Username":"u","Secret":"p"}"#,
        r#"{"ServerURL":"us.icr.io","Username":"iamapikey","Secret":"k"}"#,
    ] {
        run_command(
            s.program("sh", &["-c", "umask 000 && exec \"$0\" store", BIN]),
            json.as_bytes(),
        )
        .ok()
        .stdout_is("")
        .stderr_is("");
    }
    assert_eq!(mode(&s.data_dir()), 0o700);
    assert_eq!(mode(&s.cache_dir()), 0o700);
    for dir in [s.data_dir(), s.cache_dir()] {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    s.get("localhost:5000")
        .ok()
        .stdout_is(&plain_answer("localhost:5000", "u", "p"));
}

#[test]
fn thirty_two_concurrent_stores_leave_all_thirty_two() {
    // issue 2.3: 32 concurrent stores for 32 hosts
    const IBM: &[&str] = &[
        "icr.io",
        "us.icr.io",
        "uk.icr.io",
        "de.icr.io",
        "au.icr.io",
        "jp.icr.io",
        "jp2.icr.io",
        "ca.icr.io",
        "br.icr.io",
        "es.icr.io",
        "ca2.icr.io",
        "in.icr.io",
        "in2.icr.io",
        "fr2.icr.io",
        "private.us.icr.io",
        "registry.ng.bluemix.net",
    ];
    let s = sandbox();
    let hosts: Vec<(String, String)> = IBM
        .iter()
        .map(|h| (h.to_string(), "iamapikey".to_string()))
        .chain((0..16).map(|i| {
            (
                format!("registry-{i:02}.example:5000"),
                format!("user-{i:02}"),
            )
        }))
        .collect();
    assert_eq!(hosts.len(), 32);
    // Spawn all 32 first, then feed them, then wait: they all race for the store.
    let mut children: Vec<_> = hosts
        .iter()
        .map(|_| {
            s.command(&["store"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, (host, user)) in children.iter_mut().zip(&hosts) {
        use std::io::Write;
        let json = json!({"ServerURL": host, "Username": user, "Secret": format!("secret-{host}")});
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{json}\n").as_bytes()).unwrap();
    }
    for (child, (host, _)) in children.into_iter().zip(&hosts) {
        let out = child.wait_with_output().unwrap();
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what: format!("store {host}"),
        };
        out.ok().stdout_is("").stderr_is("");
    }
    let want: Vec<(&str, &str)> = hosts
        .iter()
        .map(|(h, u)| (h.as_str(), u.as_str()))
        .collect();
    s.list().ok().stdout_is(&plain_list(&want)).stderr_is("");
    for (host, user) in &hosts {
        s.get(host)
            .ok()
            .stdout_is(&plain_answer(host, user, &format!("secret-{host}")));
    }
    let leftovers: Vec<_> = fs::read_dir(s.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// Runs every verb against the sandbox's (broken) store and checks that each
/// fails with one line containing `part`, never panics, and leaves `file`
/// byte-identical with the same mode.
#[track_caller]
fn every_verb_refuses(s: &Sandbox, file: &std::path::Path, part: &str) {
    let before = fs::read(file).unwrap();
    let before_mode = mode(file);
    let runs = [
        s.get("localhost:5000"),
        s.get("ghcr.io"),
        s.get("us.icr.io"),
        s.store("localhost:5000", "u", "new"),
        s.store("ghcr.io", "u", "new"),
        s.store("us.icr.io", "iamapikey", "new"),
        s.erase("localhost:5000"),
        s.erase("ghcr.io"),
        s.erase("us.icr.io"),
        s.list(),
    ];
    for out in runs {
        no_panic(out).error_line(part);
        assert_eq!(
            fs::read(file).unwrap(),
            before,
            "{} unchanged",
            file.display()
        );
        assert_eq!(mode(file), before_mode, "{} mode unchanged", file.display());
    }
}

#[test]
fn a_store_file_others_can_read_is_refused_not_repaired() {
    // issue 2.3: looser modes → one line naming the file and the chmod (decisions §2)
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    s.store("us.icr.io", "iamapikey", "k").ok();
    let file = s.store_file();
    chmod(&file, 0o644);
    let fix = format!("chmod 600 {}", file.display());
    every_verb_refuses(&s, &file, &fix);
    assert_eq!(mode(&file), 0o644, "not repaired");
}

#[test]
fn a_truncated_or_garbage_store_file_is_one_line_never_a_panic() {
    // issue 2.3: truncated or garbage → one clear line, never a panic, never silently emptied
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    s.store("us.icr.io", "iamapikey", "k").ok();
    let file = s.store_file();
    let good = fs::read(&file).unwrap();
    let name = file.display().to_string();
    let damaged: [&[u8]; 5] = [
        &good[..good.len() / 2],
        b"",
        b"\x00\xff garbage \x7f",
        b"[1,2,3]",
        br#"{"v":1,"credentials":{"localhost:5000":{"username":"u"}}}"#,
    ];
    for bytes in damaged {
        // Rewritten in place: the mode stays 0600.
        fs::write(&file, bytes).unwrap();
        assert_eq!(mode(&file), 0o600);
        every_verb_refuses(&s, &file, &name);
    }
}

#[test]
fn a_data_dir_others_can_read_is_refused() {
    // issue 2.3: a 0755 data dir → one line naming it and `chmod 700`, not repaired
    let s = sandbox();
    fs::create_dir_all(s.data_dir()).unwrap();
    chmod(&s.data_dir(), 0o755);
    let fix = format!("chmod 700 {}", s.data_dir().display());
    no_panic(s.store("localhost:5000", "u", "p")).error_line(&fix);
    no_panic(s.store("us.icr.io", "iamapikey", "k")).error_line(&fix);
    assert!(!s.store_file().exists(), "nothing written");
    assert_eq!(mode(&s.data_dir()), 0o755, "not repaired");

    // With a store already in it.
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    s.store("us.icr.io", "iamapikey", "k").ok();
    let before = fs::read(s.store_file()).unwrap();
    chmod(&s.data_dir(), 0o755);
    let fix = format!("chmod 700 {}", s.data_dir().display());
    no_panic(s.store("ghcr.io", "u", "p")).error_line(&fix);
    no_panic(s.store("us.icr.io", "iamapikey", "other")).error_line(&fix);
    no_panic(s.erase("localhost:5000")).error_line(&fix);
    no_panic(s.erase("us.icr.io")).error_line(&fix);
    assert_eq!(fs::read(s.store_file()).unwrap(), before);
    assert_eq!(mode(&s.data_dir()), 0o755, "not repaired");
}

#[test]
fn ibmcr_home_holds_everything() {
    // issue 2.3 / decisions §2: IBMCR_HOME holds data, cache and config
    let mut s = sandbox();
    let home = s.root.join("ibmcr-home");
    s.set("IBMCR_HOME", home.to_str().unwrap());
    s.store("localhost:5000", "u", "p").ok();
    s.store("us.icr.io", "iamapikey", "k").ok();
    s.get("us.icr.io")
        .ok()
        .stdout_is(&plain_answer("us.icr.io", "iamapikey", "k"));
    s.list().ok().stdout_is(&plain_list(&[
        ("localhost:5000", "u"),
        ("us.icr.io", "iamapikey"),
    ]));
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("store.json")), 0o600);
    for dir in [".local", ".cache", ".config"] {
        assert!(!s.home().join(dir).exists(), "nothing under ~/{dir}");
    }
    // Without it, the default dirs hold nothing.
    s.unset("IBMCR_HOME");
    s.get("localhost:5000").not_found();
    s.get("us.icr.io").not_found();
}

#[test]
fn no_home_and_no_ibmcr_home_is_one_line() {
    // decisions §2: without HOME the helper never asks the user database
    // (getpwuid_r: glibc's NSS, which a static binary cannot use without
    // loading shared modules); it says what to set.
    for home in [None, Some("")] {
        let mut s = sandbox();
        match home {
            None => s.unset("HOME"),
            Some(v) => s.set("HOME", v),
        };
        let want = "no home directory: set HOME or IBMCR_HOME";
        no_panic(s.get("ghcr.io")).error_line(want);
        no_panic(s.get("us.icr.io")).error_line(want);
        no_panic(s.store("ghcr.io", "u", "p")).error_line(want);
        no_panic(s.list()).error_line(want);
        // IBMCR_HOME alone is enough.
        s.set("IBMCR_HOME", s.root.join("ibmcr-home").to_str().unwrap());
        s.store("ghcr.io", "u", "p").ok();
        s.get("ghcr.io")
            .ok()
            .stdout_is(&plain_answer("ghcr.io", "u", "p"));
    }
}

#[test]
fn xdg_data_home_moves_the_store() {
    // issue 2.3: the file store lives under the `directories` data dir
    let mut s = sandbox();
    let xdg = s.root.join("xdg-data");
    s.set("XDG_DATA_HOME", xdg.to_str().unwrap());
    s.store("localhost:5000", "u", "p").ok();
    s.get("localhost:5000")
        .ok()
        .stdout_is(&plain_answer("localhost:5000", "u", "p"));
    assert_eq!(mode(&xdg.join("ibmcr")), 0o700);
    assert_eq!(mode(&xdg.join("ibmcr/store.json")), 0o600);
    assert!(!s.data_dir().exists(), "nothing in ~/.local/share/ibmcr");
    s.unset("XDG_DATA_HOME");
    s.get("localhost:5000").not_found();
}

#[test]
fn auto_without_a_session_bus_records_the_file_store_on_the_first_store() {
    // issue 2.3 / decisions §2: auto chooses on the first `store`, records it; no probe on `get`
    let mut s = sandbox();
    s.set("IBMCR_STORE", "auto");
    s.unset("DBUS_SESSION_BUS_ADDRESS");
    let backend = s.data_dir().join("backend");
    s.get("localhost:5000").not_found();
    s.get("us.icr.io").not_found();
    s.list().ok().stdout_is("{}\n").stderr_is("");
    s.erase("localhost:5000").ok().stdout_is("").stderr_is("");
    assert!(!backend.exists(), "get, list and erase choose nothing");
    s.store("localhost:5000", "u", "p")
        .ok()
        .stdout_is("")
        .stderr_is("");
    assert_eq!(fs::read_to_string(&backend).unwrap().trim(), "file");
    assert_eq!(mode(&backend), 0o600);
    assert!(s.store_file().exists());
    s.get("localhost:5000")
        .ok()
        .stdout_is(&plain_answer("localhost:5000", "u", "p"));
    // The recorded choice stands for later calls.
    s.store("us.icr.io", "iamapikey", "k").ok();
    assert_eq!(fs::read_to_string(&backend).unwrap().trim(), "file");
    s.list().ok().stdout_is(&plain_list(&[
        ("localhost:5000", "u"),
        ("us.icr.io", "iamapikey"),
    ]));
}

#[test]
fn an_unknown_store_choice_is_one_line() {
    // issue 2.3: IBMCR_STORE=auto|keyring|file
    let mut s = sandbox();
    s.set("IBMCR_STORE", "bogus");
    for out in [
        s.get("localhost:5000"),
        s.store("localhost:5000", "u", "p"),
        s.erase("localhost:5000"),
        s.list(),
    ] {
        no_panic(out).error_line("IBMCR_STORE").error_line("bogus");
    }
    assert!(!s.data_dir().exists());
}
