//! Issue 2.1: the credential-helper protocol, byte for byte as
//! docker/docker-credential-helpers speaks it (../shared/protocol.md §1),
//! with the inputs real clients send (§2.1, §2.3, §2.7).

use std::io::Write;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{plain_answer, plain_list, replay_go_case, Output, Sandbox};

/// The first line of the help (issue 12.3 lists every verb after it).
const USAGE: &str = "Usage: docker-credential-ibmcr <command> [args]\n";

/// A sandbox whose IBM hosts answer what is stored (no minting, no network).
fn sandbox() -> Sandbox {
    let mut s = Sandbox::new();
    s.set("IBMCR_MODE", "apikey");
    s
}

/// The bytes of the store file, or `None` when there is none.
fn store_bytes(s: &Sandbox) -> Option<Vec<u8>> {
    std::fs::read(s.store_file()).ok()
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

#[test]
fn usage_on_a_wrong_argument_count() {
    // issue 2.1: usage first, exit 1; an error, so its line on stderr too
    // (decisions §1); issue 12.3: every verb after it (tests/cli/everyday.rs)
    let s = sandbox();
    for args in [&[][..], &["get", "extra"][..], &["store", "get"][..]] {
        let out = s.run(args, b"").fails().stderr_is(USAGE);
        assert!(out.stdout.starts_with(USAGE), "{out}");
    }
}

#[test]
fn help_and_version_exit_0_with_exact_text() {
    // issue 2.1: `--help`/`-h`, `version`/`--version`/`-v`
    let s = sandbox();
    for arg in ["--help", "-h"] {
        let out = s.run(&[arg], b"").ok().stderr_is("");
        assert!(out.stdout.starts_with(USAGE), "{out}");
    }
    let version = format!(
        "docker-credential-ibmcr (docker-credential-ibmcr) v{} (commit {})\n",
        env!("CARGO_PKG_VERSION"),
        env!("IBMCR_COMMIT")
    );
    for arg in ["version", "--version", "-v"] {
        s.run(&[arg], b"").ok().stdout_is(&version).stderr_is("");
    }
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    // issue 12.3: `version` also names the commit (build.rs), `-dirty` when
    // the sources differ from it
    let out = sandbox().run(&["version"], b"").ok();
    let commit = out
        .stdout
        .strip_suffix(")\n")
        .and_then(|s| s.rsplit_once(" (commit "))
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| panic!("no commit\n{out}"));
    let head = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    let head = head.trim();
    assert!(!head.is_empty(), "the tests run from a git checkout");
    assert!(
        commit == head || commit == format!("{head}-dirty"),
        "built from {commit}, HEAD is {head}\n{out}"
    );
}

#[test]
fn unknown_action_is_the_reference_s_line_first() {
    // issue 2.1: `docker-credential-ibmcr: unknown action: X`, the
    // reference's line, first on stdout (issue 12.3: the verbs follow)
    let s = sandbox();
    for (action, line) in [
        ("bogus", "docker-credential-ibmcr: unknown action: bogus\n"),
        // Actions are case-sensitive, as in the reference.
        ("GET", "docker-credential-ibmcr: unknown action: GET\n"),
    ] {
        let out = s.run(&[action], b"us.icr.io").fails().stderr_is(line);
        assert!(out.stdout.starts_with(&format!("{line}{USAGE}")), "{out}");
    }
}

#[test]
fn store_then_get_round_trips_with_go_escaping() {
    // issue 2.1: `get` answers `{"ServerURL":…,"Username":…,"Secret":…}\n` with Go's HTML escaping
    let s = sandbox();
    // protocol.md §1.2, observed from the reference exactly:
    s.store("us.icr.io", "<token>", "s3cr&t")
        .ok()
        .stdout_is("")
        .stderr_is("");
    s.get("us.icr.io")
        .ok()
        .stdout_is(
            "{\"ServerURL\":\"us.icr.io\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"s3cr\\u0026t\"}\n",
        )
        .stderr_is("");
    // The Go helper's own bytes (tests/fixtures/go): `<`, `>`, `&` and what
    // `docker login -u iamapikey --password-stdin localhost:5001` sends (§2.1);
    // quotes, backslashes, control characters, DEL, U+2028/U+2029 and
    // non-ASCII in values and keys; invalid UTF-8 replaced byte by byte.
    for case in ["html-escaping", "control-and-unicode", "invalid-utf8"] {
        replay_go_case(&sandbox(), case);
    }
}

#[test]
fn get_echoes_the_trimmed_request_not_the_stored_key() {
    // issue 2.1: "echoing the request"; get/erase input trimmed, lines joined
    let s = sandbox();
    s.store("us.icr.io", "iamapikey", "key-1").ok();
    s.run(&["get"], b"  https://US.ICR.IO/v2/ \n")
        .ok()
        .stdout_is(&plain_answer("https://US.ICR.IO/v2/", "iamapikey", "key-1"))
        .stderr_is("");
    // As the Go helper answers (tests/fixtures/go/trim-and-join): ASCII and
    // Unicode whitespace trimmed, CRLF, lines joined without a separator
    // (bufio.Scanner), a zero-width space kept.
    replay_go_case(&sandbox(), "trim-and-join");
}

#[test]
fn not_found_is_exact() {
    // issue 2.1: exactly the not-found text on stdout, nothing on stderr, exit 1
    let s = sandbox();
    s.get("ghcr.io").not_found();
    s.get("us.icr.io").not_found();
    s.store("localhost:5000", "u", "p").ok();
    s.get("ghcr.io").not_found();
    s.get("us.icr.io").not_found();
    s.get("localhost:5001").not_found();
}

#[test]
fn missing_server_url_and_username_are_the_exact_texts() {
    // issue 2.1: `no credentials server URL` / `no credentials username`, stdout and stderr (decisions §1)
    // The texts and the order of the checks as the Go helper has them
    // (tests/fixtures/go/missing-fields): empty or blank get/erase input;
    // store without, with an empty or a null ServerURL (checked first), then
    // Username; stderr the same line.
    let s = sandbox();
    replay_go_case(&s, "missing-fields");
    // The same for an IBM host (the Go cases use other registries only).
    let no_username = "no credentials username\n";
    s.run(
        &["store"],
        br#"{"ServerURL":"us.icr.io","Username":null,"Secret":"s"}"#,
    )
    .fails()
    .stdout_is(no_username)
    .stderr_is(no_username);
    assert_eq!(store_bytes(&s), None, "nothing was stored");
    s.list().ok().stdout_is("{}\n");
}

#[test]
fn store_follows_go_decoding_rules() {
    // issue 2.1: case-insensitive keys, unknown fields and trailing bytes ignored, lines joined, null
    // The Go helper's answers (tests/fixtures/go/store-decoding): lower-,
    // upper- and mixed-case keys, unknown fields, trailing garbage, a
    // pretty-printed CRLF body, `null`, docker-py's spaces (protocol.md §2.6),
    // a second JSON value ignored, no Secret at all.
    let s = sandbox();
    replay_go_case(&s, "store-decoding");
    // A null or missing Secret is an empty one; we answer it (secretservice
    // 0.6.4 says not found for an empty secret: fixtures README).
    for (url, username) in [("e.example", "u-e"), ("i.example", "u-i")] {
        s.get(url)
            .ok()
            .stdout_is(&plain_answer(url, username, ""))
            .stderr_is("");
    }
}

#[test]
fn line_length_limit_is_the_references() {
    // issue 2.1: a line of 64 KiB or more is one clear line, exit 1, nothing stored
    let s = sandbox();
    let ok_line = "a".repeat(65_535);
    s.get(&ok_line).not_found();
    s.run(&["get"], format!("{ok_line}\n").as_bytes())
        .not_found();
    let long = "a".repeat(65_536);
    no_panic(s.get(&long)).error_line("too long");
    no_panic(s.erase(&long)).error_line("too long");

    // A store line of 65,535 bytes is stored and answered as the Go helper
    // does (tests/fixtures/go/line-at-the-limit); 65,536 is refused and
    // changes nothing.
    replay_go_case(&s, "line-at-the-limit");
    let before = store_bytes(&s);
    let head = r#"{"ServerURL":"localhost:5001","Username":"u","Secret":""#;
    let long = format!("{head}{}\"}}", "s".repeat(65_536 - head.len() - 2));
    assert_eq!(long.len(), 65_536);
    no_panic(s.run(&["store"], format!("{long}\n").as_bytes())).error_line("too long");
    no_panic(s.run(&["store"], long.as_bytes())).error_line("too long");
    assert_eq!(store_bytes(&s), before, "store file unchanged");
    s.get("localhost:5001").not_found();
}
#[test]
fn malformed_json_is_one_line_and_changes_nothing() {
    // issue 2.1: malformed JSON → one clear line, exit 1, nothing stored (store file byte-identical)
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    let before = store_bytes(&s).expect("a store file");
    for input in [
        &br#"{"ServerURL":"#[..],
        br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"p""#,
        b"not json",
        b"",
        b"[]",
        b"\"ghcr.io\"",
        b"42",
        br#"{"ServerURL":"ghcr.io","Username":"u","Secret":42}"#,
        br#"{"ServerURL":"ghcr.io","Username":["u"],"Secret":"p"}"#,
        br#"{"ServerURL":{"h":"ghcr.io"},"Username":"u","Secret":"p"}"#,
        br#"{"ServerURL":"ghcr.io","Username":"u","Secret":"\q"}"#,
    ] {
        no_panic(s.run(&["store"], input)).error_line("JSON");
        assert_eq!(
            store_bytes(&s).as_deref(),
            Some(&before[..]),
            "store file unchanged after {:?}",
            String::from_utf8_lossy(input)
        );
    }
    s.get("ghcr.io").not_found();
    s.list()
        .ok()
        .stdout_is(&plain_list(&[("localhost:5000", "u")]));
}

#[test]
fn list_never_reads_stdin() {
    // issue 2.1: `list` never reads stdin (docker-py leaves it attached)
    let s = sandbox();
    s.store("localhost:5000", "u", "p").ok();
    let mut child = s
        .command(&["list"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap(); // held open: never EOF
    let _ = stdin.write_all(b"unu"); // and partial, without a newline
    let _ = stdin.flush();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            drop(stdin); // let it finish, then fail
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "`list` waited for stdin to close\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: "list with an open stdin".into(),
    };
    out.ok()
        .stdout_is("{\"localhost:5000\":\"u\"}\n")
        .stderr_is("");
    drop(stdin);
    // Docker's `unused`, and Python's empty stdin.
    s.run(&["list"], b"unused")
        .ok()
        .stdout_is("{\"localhost:5000\":\"u\"}\n");
    s.run(&["list"], b"")
        .ok()
        .stdout_is("{\"localhost:5000\":\"u\"}\n");
}

#[test]
fn list_is_sorted_and_empty_is_braces() {
    // issue 2.1: `list` is Go's sorted map encoding + `\n`; `{}\n` when empty
    replay_go_case(&sandbox(), "list-sorted");
    // And with an IBM host, stored under its canonical name.
    let s = sandbox();
    s.list().ok().stdout_is("{}\n").stderr_is("");
    s.store("https://index.docker.io/v1/", "hub", "p1").ok();
    s.store("b.example", "u", "p2").ok();
    s.store("a.example", "<token>", "p3").ok();
    s.store("Zeta.example:5000", "z", "p4").ok();
    s.store("https://US.ICR.IO/v2/", "iamapikey", "p5").ok();
    s.list()
        .ok()
        .stdout_is(
            "{\"Zeta.example:5000\":\"z\",\"a.example\":\"\\u003ctoken\\u003e\",\"b.example\":\"u\",\
             \"https://index.docker.io/v1/\":\"hub\",\"us.icr.io\":\"iamapikey\"}\n",
        )
        .stderr_is("");
    for url in [
        "https://index.docker.io/v1/",
        "b.example",
        "a.example",
        "Zeta.example:5000",
        "us.icr.io",
    ] {
        s.erase(url).ok().stdout_is("").stderr_is("");
    }
    s.list().ok().stdout_is("{}\n").stderr_is("");
}

#[test]
fn erase_is_idempotent_for_every_docker_logout_variant() {
    // issue 2.1: `erase` exits 0 when absent; docker logout sends four variants (protocol.md §2.1)
    replay_go_case(&sandbox(), "erase-idempotent");
    // And an IBM host, whose every form is one record.
    let s = sandbox();
    let quiet = |out: Output| out.ok().stdout_is("").stderr_is("");
    // Nothing ever stored: no store file yet.
    for url in [
        "us.icr.io",
        "us.icr.io",
        "http://us.icr.io",
        "https://us.icr.io",
    ] {
        quiet(s.erase(url));
    }
    quiet(s.erase("localhost:5000"));
    // Stored, then logged out.
    s.store("us.icr.io", "iamapikey", "key").ok();
    s.store("localhost:5000", "u", "p").ok();
    for url in [
        "us.icr.io",
        "us.icr.io",
        "http://us.icr.io",
        "https://us.icr.io",
    ] {
        quiet(s.erase(url));
        s.get("us.icr.io").not_found();
    }
    s.get("localhost:5000")
        .ok()
        .stdout_is(&plain_answer("localhost:5000", "u", "p"));
    for url in [
        "localhost:5000",
        "localhost:5000",
        "http://localhost:5000",
        "https://localhost:5000",
    ] {
        quiet(s.erase(url));
    }
    s.get("localhost:5000").not_found();
    s.list().ok().stdout_is("{}\n");
    // And once more, on an empty store.
    quiet(s.erase("localhost:5000"));
    quiet(s.erase("us.icr.io"));
}

#[test]
fn a_closed_stdout_is_exit_1_never_a_sigpipe_kill() {
    // The helper starts without Rust's runtime set-up (src/main.rs), which
    // would ignore SIGPIPE; main does it. A reader that went away must get
    // an ordinary failure, as before.
    use std::os::unix::process::ExitStatusExt;
    let s = Sandbox::new();
    for verb in ["version", "get"] {
        s.store("ghcr.io", "u", "p").ok();
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = s
            .command(&[verb])
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // `version` may be gone before its stdin is written.
        let _ = child.stdin.take().unwrap().write_all(b"ghcr.io");
        let status = child.wait().unwrap();
        assert_eq!(
            (status.code(), status.signal()),
            (Some(1), None),
            "{verb}: {status:?}"
        );
    }
}
