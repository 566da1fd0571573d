//! Issue 2.1: the credential-helper protocol, byte for byte as
//! docker/docker-credential-helpers speaks it (../shared/protocol.md §1),
//! with the inputs real clients send (§2.1, §2.3, §2.7).

use std::io::Write;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{go_answer, go_list, Output, Sandbox};

const USAGE: &str = "Usage: docker-credential-ibmcr <store|get|erase|list|version>\n";
const NO_URL: &str = "no credentials server URL\n";
const NO_USERNAME: &str = "no credentials username\n";

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
    // issue 2.1: usage as the reference prints it, exit 1; an error, so stderr too (decisions §1)
    let s = sandbox();
    for args in [&[][..], &["get", "extra"][..], &["store", "get"][..]] {
        s.run(args, b"").fails().stdout_is(USAGE).stderr_is(USAGE);
    }
}

#[test]
fn help_and_version_exit_0_with_exact_text() {
    // issue 2.1: `--help`/`-h`, `version`/`--version`/`-v`
    let s = sandbox();
    for arg in ["--help", "-h"] {
        s.run(&[arg], b"").ok().stdout_is(USAGE).stderr_is("");
    }
    let version = format!(
        "docker-credential-ibmcr (docker-credential-ibmcr) v{}\n",
        env!("CARGO_PKG_VERSION")
    );
    for arg in ["version", "--version", "-v"] {
        s.run(&[arg], b"").ok().stdout_is(&version).stderr_is("");
    }
}

#[test]
fn unknown_action_is_one_line() {
    // issue 2.1: `docker-credential-ibmcr: unknown action: X`
    let s = sandbox();
    let line = "docker-credential-ibmcr: unknown action: bogus\n";
    s.run(&["bogus"], b"")
        .fails()
        .stdout_is(line)
        .stderr_is(line);
    // Actions are case-sensitive, as in the reference.
    s.run(&["GET"], b"us.icr.io")
        .error_line("docker-credential-ibmcr: unknown action: GET");
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
    // What `docker login -u iamapikey --password-stdin localhost:5001` sends (§2.1)
    // comes back byte for byte.
    let sent = "{\"ServerURL\":\"localhost:5001\",\"Username\":\"iamapikey\",\"Secret\":\"pa\\\"ss\\u003c\\u0026\\u003e\"}\n";
    s.run(&["store"], sent.as_bytes())
        .ok()
        .stdout_is("")
        .stderr_is("");
    s.get("localhost:5001").ok().stdout_is(sent).stderr_is("");
    // Backslashes, control characters, U+2028 and non-ASCII.
    let secret = "a\\b\tc\u{1}d\u{2028}é>";
    s.store("ghcr.io", "user", secret).ok();
    s.get("ghcr.io")
        .ok()
        .stdout_is(
            "{\"ServerURL\":\"ghcr.io\",\"Username\":\"user\",\"Secret\":\"a\\\\b\\tc\\u0001d\\u2028é\\u003e\"}\n",
        )
        .stderr_is("");
}

#[test]
fn get_echoes_the_trimmed_request_not_the_stored_key() {
    // issue 2.1: "echoing the request"; get/erase input trimmed, lines joined
    let s = sandbox();
    s.store("us.icr.io", "iamapikey", "key-1").ok();
    s.run(&["get"], b"  https://US.ICR.IO/v2/ \n")
        .ok()
        .stdout_is(&go_answer("https://US.ICR.IO/v2/", "iamapikey", "key-1"))
        .stderr_is("");
    s.store("localhost:5000", "u", "p").ok();
    s.run(&["get"], b"\t localhost:5000\r\n")
        .ok()
        .stdout_is(&go_answer("localhost:5000", "u", "p"))
        .stderr_is("");
    // bufio.Scanner joins lines without a separator.
    s.run(&["get"], b"local\nhost:5000")
        .ok()
        .stdout_is(&go_answer("localhost:5000", "u", "p"));
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
    let s = sandbox();
    for input in [&b""[..], b" \t\r\n ", b"\n\n"] {
        for verb in ["get", "erase"] {
            s.run(&[verb], input)
                .fails()
                .stdout_is(NO_URL)
                .stderr_is(NO_URL);
        }
    }
    for json in [
        r#"{"Username":"u","Secret":"s"}"#,
        r#"{"ServerURL":"","Username":"u","Secret":"s"}"#,
        r#"{"ServerURL":null,"Username":"u","Secret":"s"}"#,
        r#"{}"#,
        // ServerURL is checked before Username.
        r#"{"ServerURL":"","Username":""}"#,
    ] {
        s.run(&["store"], json.as_bytes())
            .fails()
            .stdout_is(NO_URL)
            .stderr_is(NO_URL);
    }
    for json in [
        r#"{"ServerURL":"localhost:5000","Secret":"s"}"#,
        r#"{"ServerURL":"localhost:5000","Username":"","Secret":"s"}"#,
        r#"{"ServerURL":"us.icr.io","Username":null,"Secret":"s"}"#,
    ] {
        s.run(&["store"], json.as_bytes())
            .fails()
            .stdout_is(NO_USERNAME)
            .stderr_is(NO_USERNAME);
    }
    assert_eq!(store_bytes(&s), None, "nothing was stored");
    s.list().ok().stdout_is("{}\n");
}

#[test]
fn store_follows_go_decoding_rules() {
    // issue 2.1: case-insensitive keys, unknown fields and trailing bytes ignored, lines joined, null
    let s = sandbox();
    let cases: &[(&str, &[u8], &str, &str)] = &[
        (
            "a.example",
            br#"{"serverurl":"a.example","USERNAME":"u-a","sEcReT":"s-a"}"#,
            "u-a",
            "s-a",
        ),
        (
            "b.example",
            br#"{"Email":"x@example.com","ServerURL":"b.example","Username":"u-b","Secret":"s-b","Extra":{"n":[1,2,{"k":null}]}}"#,
            "u-b",
            "s-b",
        ),
        (
            "c.example",
            b"{\"ServerURL\":\"c.example\",\"Username\":\"u-c\",\"Secret\":\"s-c\"} trailing-garbage {[",
            "u-c",
            "s-c",
        ),
        (
            "d.example",
            b"{\n  \"ServerURL\": \"d.example\",\r\n  \"Username\": \"u-d\",\n  \"Secret\": \"s-d\"\n}\n",
            "u-d",
            "s-d",
        ),
        (
            "e.example",
            br#"{"ServerURL":"e.example","Username":"u-e","Secret":null}"#,
            "u-e",
            "",
        ),
        // docker-py: spaces after `:` and `,`, no trailing newline (protocol.md §2.6).
        (
            "f.example",
            br#"{"ServerURL": "f.example", "Username": "u-f", "Secret": "s-f"}"#,
            "u-f",
            "s-f",
        ),
        // A second JSON value is ignored.
        (
            "g.example",
            br#"{"ServerURL":"g.example","Username":"u-g","Secret":"s-g"}{"ServerURL":"h.example","Username":"x","Secret":"y"}"#,
            "u-g",
            "s-g",
        ),
        // No Secret at all: an empty one (Secret may be empty).
        ("i.example", br#"{"ServerURL":"i.example","Username":"u-i"}"#, "u-i", ""),
    ];
    for (url, input, username, secret) in cases {
        s.run(&["store"], input).ok().stdout_is("").stderr_is("");
        s.get(url)
            .ok()
            .stdout_is(&go_answer(url, username, secret))
            .stderr_is("");
    }
    s.get("h.example").not_found();
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

    // A store line of 65,535 bytes is stored; 65,536 is refused and changes nothing.
    let line = |url: &str, len: usize| {
        let head = format!(r#"{{"ServerURL":"{url}","Username":"u","Secret":""#);
        let pad = "s".repeat(len - head.len() - 2);
        let line = format!("{head}{pad}\"}}");
        assert_eq!(line.len(), len);
        (line, pad)
    };
    let (ok, pad) = line("localhost:5000", 65_535);
    s.run(&["store"], format!("{ok}\n").as_bytes())
        .ok()
        .stderr_is("");
    s.get("localhost:5000")
        .ok()
        .stdout_is(&go_answer("localhost:5000", "u", &pad));
    let before = store_bytes(&s);
    let (long, _) = line("localhost:5001", 65_536);
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
        .stdout_is(&go_list(&[("localhost:5000", "u")]));
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
        .stdout_is(&go_answer("localhost:5000", "u", "p"));
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
