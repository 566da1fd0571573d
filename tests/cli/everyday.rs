//! Issue 12: `login` that shows the key to IAM only, `doctor` whose problem
//! lines each come from a real broken set-up, and a help that lists every
//! verb. Against the fake IBM API, with canary secrets.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::support::fake_ibm::{Config, FakeIbm, Fault, FaultKind};
use crate::util::{Output, Sandbox, BIN};

const KEY: &str = "CANARY-login-key-5e6f7a8b";
const BAD_KEY: &str = "CANARY-unknown-key-9c0d1e2f";
const AUTH_CANARY: &str = "Q0FOQVJZLWF1dGhzLWVudHJ5";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const IAM: &str = "/identity/token";
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

const HELP: &str = "\
Usage: docker-credential-ibmcr <command> [args]

Commands:
  store           store the credential on stdin (JSON, as docker login sends it)
  get             print the credential for the server URL on stdin
  erase           erase the credential for the server URL on stdin
  list            list the stored server URLs and their usernames
  version         print the version and the commit it was built from
  configure       set up docker, podman, skopeo and buildah to use this helper
  login [HOST]    check an API key from stdin with IAM, then store it (HOST: icr.io)
  doctor [HOST]   say why a pull from HOST would fail (HOST: us.icr.io; --json)
  kubelet-plugin  answer the kubelet as an image credential provider
  help            print this list

configure, login and doctor take --help. The manual: man docker-credential-ibmcr
";

/// The checks `doctor` runs, in order.
const CHECKS: [&str; 9] = [
    "binary",
    "docker",
    "containers",
    "store",
    "identity",
    "cache",
    "clock",
    "mint",
    "cp.icr.io",
];

/// A fake IAM that knows KEY, and a sandbox pointed at it whose PATH holds
/// only the helper and whose runtime dir is its own.
fn setup() -> (FakeIbm, Sandbox) {
    let mut config = Config::default();
    config.api_keys.insert(KEY.into(), ACCOUNT.into());
    let fake = FakeIbm::start(config);
    let mut s = Sandbox::new();
    s.set("IBMCLOUD_IAM_API_ENDPOINT", &fake.url());
    s.set("IBMCLOUD_CR_API_ENDPOINT", &fake.url());
    let run = s.root.join("run");
    fs::create_dir_all(&run).unwrap();
    s.set("XDG_RUNTIME_DIR", run.to_str().unwrap());
    let bin = s.root.join("bin");
    fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("docker-credential-ibmcr")).unwrap();
    s.set("PATH", bin.to_str().unwrap());
    (fake, s)
}

/// Asserts no canary secret anywhere in what a run printed.
#[track_caller]
fn no_secret(out: &Output, secrets: &[&str]) {
    for secret in [KEY, BAD_KEY, AUTH_CANARY].iter().chain(secrets) {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked\n{out}"
        );
    }
}

/// Everything under `dir` but the token cache, path → bytes.
fn snapshot(s: &Sandbox) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.starts_with(skip) {
                continue;
            }
            match entry.file_type().unwrap().is_dir() {
                true => walk(&path, skip, out),
                false => out.push((path.clone(), fs::read(&path).unwrap_or_default())),
            }
        }
    }
    let mut out = Vec::new();
    walk(&s.root, &s.cache_dir(), &mut out);
    out.sort();
    out
}

// -- help --------------------------------------------------------------------

#[test]
fn help_lists_every_verb() {
    // issue 12.3: --help, -h and help list every verb, one line each, exit 0
    let s = Sandbox::new();
    for arg in ["--help", "-h", "help"] {
        s.run(&[arg], b"").ok().stdout_is(HELP).stderr_is("");
    }
    // Every verb it lists answers as a verb, not as an unknown action.
    for line in HELP.lines().filter(|l| l.starts_with("  ")) {
        let verb = line.split_whitespace().next().unwrap();
        let out = s.run(&[verb], b"");
        assert!(!out.stdout.contains("unknown action"), "{verb}\n{out}");
    }
}

#[test]
fn an_unknown_verb_prints_the_list_and_exits_1() {
    // issue 12.3: the reference's line first (clients read it), then the list
    let s = Sandbox::new();
    let line = "docker-credential-ibmcr: unknown action: bogus\n";
    s.run(&["bogus"], b"")
        .fails()
        .stdout_is(&format!("{line}{HELP}"))
        .stderr_is(line);
    let usage = "Usage: docker-credential-ibmcr <command> [args]\n";
    for args in [&[][..], &["get", "extra"][..]] {
        s.run(args, b"").fails().stdout_is(HELP).stderr_is(usage);
    }
}

// -- login -------------------------------------------------------------------

#[test]
fn login_checks_the_key_with_one_iam_request_and_stores_it() {
    // issue 12.1: one IAM request and no other; the token is cached, so the
    // next pull makes no call; the output names host and account, not the key
    let (fake, s) = setup();
    let out = s.run(&["login"], format!("  {KEY}  \nnot read\n").as_bytes());
    out.clone().ok().stderr_is("").stdout_is(&format!(
        "logged in to icr.io with an API key of account {ACCOUNT}; it serves every IBM registry host without a key of its own\n"
    ));
    no_secret(&out, &[]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", IAM)
    );
    assert_eq!(
        requests[0].form_param("apikey").as_deref(),
        Some(KEY),
        "trimmed, first line only"
    );
    s.list().ok().stdout_is("{\"icr.io\":\"iamapikey\"}\n");
    // The key serves a regional host; its token comes from the cache.
    let (_, username, _) = s.get("us.icr.io").ok().answer();
    assert_eq!(username, "iambearer");
    assert_eq!(fake.requests().len(), 1, "no second request");
    assert!(!fs::read_to_string(s.cache_file()).unwrap().contains(KEY));
}

#[test]
fn an_iam_that_puts_the_key_in_the_account_never_gets_it_printed() {
    // review: the account id printed is the token's `account.bss`, which a
    // hostile IAM could set to the key it was sent
    let (fake, s) = setup();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = crate::support::fake_ibm::make_jwt(&json!({
        "account": {"bss": KEY}, "iat": now, "exp": now + 3600, "grant_type": "urn:ibm:params:oauth:grant-type:apikey"
    }));
    let body = json!({"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
        "expires_in": 3600, "expiration": now + 3600});
    fake.inject(Fault::new(IAM, FaultKind::Reply { status: 200, body }, 0));
    let out = s
        .run(&["login"], KEY.as_bytes())
        .ok()
        .stdout_is("logged in to icr.io with an API key of an account IAM did not name; it serves every IBM registry host without a key of its own\n");
    no_secret(&out, &[]);
    s.run(&["configure"], b"").ok();
    fs::remove_file(s.cache_file()).unwrap();
    let out = s.run(&["doctor", "--json"], b"").ok();
    no_secret(&out, &[]);
}

#[test]
fn login_to_a_regional_host_stores_the_key_for_that_host() {
    let (fake, s) = setup();
    s.run(&["login", "https://us.icr.io/v2/"], KEY.as_bytes())
        .ok()
        .stdout_is(&format!(
            "logged in to us.icr.io with an API key of account {ACCOUNT}\n"
        ));
    s.list().ok().stdout_is("{\"us.icr.io\":\"iamapikey\"}\n");
    assert_eq!(fake.count("POST", IAM), 1);
}

#[test]
fn a_refused_key_is_one_line_with_ibm_s_code_and_nothing_stored() {
    // issue 12.1: IAM refusal → IBM's code, nothing stored, exit 1
    let (fake, s) = setup();
    let out = s
        .run(&["login"], BAD_KEY.as_bytes())
        .error_line("BXNIM0415E");
    assert!(
        out.stdout.starts_with("login: IAM token request to "),
        "{out}"
    );
    assert!(out.stdout.ends_with("; nothing stored\n"), "{out}");
    no_secret(&out, &[]);
    assert_eq!(fake.requests().len(), 1);
    assert!(!s.store_file().exists(), "nothing stored");
    // A key stored before stays when a new one is refused.
    s.run(&["login"], KEY.as_bytes()).ok();
    let before = fs::read(s.store_file()).unwrap();
    s.run(&["login"], BAD_KEY.as_bytes()).fails();
    assert_eq!(fs::read(s.store_file()).unwrap(), before);
}

#[test]
fn login_refuses_what_it_cannot_use_before_any_request() {
    let (fake, s) = setup();
    s.run(&["login", "quay.io"], KEY.as_bytes()).error_line(
        "login: `quay.io` is not an IBM Cloud Container Registry host (the README lists them); nothing stored",
    );
    s.run(&["login"], b"")
        .error_line("login: no API key on stdin");
    s.run(&["login"], b"  \n")
        .error_line("login: no API key on stdin");
    s.run(&["login", "us.icr.io", "de.icr.io"], KEY.as_bytes())
        .error_line("login: one HOST at most");
    s.run(&["login", "--bogus"], KEY.as_bytes())
        .error_line("login: unknown option `--bogus`");
    s.run(&["login", "--help"], b"")
        .ok()
        .stdout_is("usage: docker-credential-ibmcr login [HOST] < api-key-file\n");
    assert!(fake.requests().is_empty());
    assert!(!s.store_file().exists());
}

#[test]
fn login_on_a_terminal_prompts_without_echo() {
    // issue 12.1: on a terminal, a prompt, and the key typed never shows
    let (fake, s) = setup();
    let script = r#"
import os, pty, sys, json, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "login"])
seen = b""
def read_until(want, limit=10.0):
    global seen
    end = time.time() + limit
    while want not in seen and time.time() < end:
        try:
            seen += os.read(fd, 4096)
        except OSError:
            break
read_until(b"API key for icr.io: ")
time.sleep(0.2)
os.write(fd, sys.argv[2].encode() + b"\n")
read_until(b"logged in")
try:
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        seen += chunk
except OSError:
    pass
_, status = os.waitpid(pid, 0)
print(json.dumps({"out": seen.decode("utf-8", "replace"), "code": os.waitstatus_to_exitcode(status)}))
"#;
    let mut cmd = s.program("python3", &["-c", script, BIN, KEY]);
    let out = crate::util::run_command(
        {
            cmd.env("PATH", "/usr/bin:/bin");
            cmd
        },
        b"",
    )
    .ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let seen = v["out"].as_str().unwrap();
    assert_eq!(v["code"], 0, "{seen}");
    assert!(seen.starts_with("IBM Cloud API key for icr.io: "), "{seen}");
    assert!(
        seen.contains(&format!(
            "logged in to icr.io with an API key of account {ACCOUNT}"
        )),
        "{seen}"
    );
    assert!(!seen.contains(KEY), "the key was echoed: {seen}");
    assert_eq!(fake.count("POST", IAM), 1);
}

#[test]
fn ctrl_c_at_the_prompt_gives_the_terminal_its_echo_back() {
    // issue 12.1: the echo is off while the key is typed; a Ctrl-C there
    // ends login (by SIGINT, as a shell expects) with the echo back on
    let (fake, s) = setup();
    let script = r#"
import os, pty, sys, json, time, termios
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], "login"])
seen = b""
end = time.time() + 10
while b"API key for icr.io: " not in seen and time.time() < end:
    seen += os.read(fd, 4096)
time.sleep(0.2)
during = termios.tcgetattr(fd)[3] & termios.ECHO
os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
after = termios.tcgetattr(fd)[3] & termios.ECHO
signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
print(json.dumps({"during": bool(during), "after": bool(after), "signal": signal}))
"#;
    let mut cmd = s.program("python3", &["-c", script, BIN]);
    cmd.env("PATH", "/usr/bin:/bin");
    let out = crate::util::run_command(cmd, b"").ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(
        v,
        json!({"during": false, "after": true, "signal": 2}),
        "{out}"
    );
    assert!(fake.requests().is_empty());
    assert!(!s.store_file().exists());
}

// -- doctor ------------------------------------------------------------------

/// Logs in and configures docker and the containers tools: the healthy set-up.
fn healthy() -> (FakeIbm, Sandbox) {
    let (fake, s) = setup();
    s.run(&["login"], KEY.as_bytes()).ok();
    s.run(&["configure"], b"").ok();
    (fake, s)
}

/// The `(verdict, check)` of each line but the last, and the last line.
fn verdicts(out: &Output) -> (Vec<(String, String)>, String) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let (last, checks) = lines.split_last().unwrap();
    let pairs = checks
        .iter()
        .map(|l| {
            let (verdict, rest) = l.split_once(' ').unwrap();
            let name = rest.split_once(": ").unwrap().0;
            (verdict.to_string(), name.to_string())
        })
        .collect();
    (pairs, last.to_string())
}

/// The problem lines of a doctor run that found exactly the problems
/// `names`, checked in order with every other check `ok`.
#[track_caller]
fn problems(out: &Output, names: &[&str]) -> Vec<String> {
    problems_without(out, names, &[])
}

/// As [`problems`], where the checks `absent` could not run (they need
/// what an earlier problem stopped).
#[track_caller]
fn problems_without(out: &Output, names: &[&str], absent: &[&str]) -> Vec<String> {
    let out = out.clone().fails();
    no_secret(&out, &[]);
    assert_eq!(out.stderr, "", "{out}");
    let (pairs, last) = verdicts(&out);
    let want: Vec<(String, String)> = CHECKS
        .iter()
        .filter(|c| !absent.contains(c))
        .map(|c| {
            let verdict = if names.contains(c) { "problem" } else { "ok" };
            (verdict.to_string(), c.to_string())
        })
        .collect();
    assert_eq!(pairs, want, "{out}");
    let n = names.len();
    let count = if n == 1 {
        "1 problem".to_string()
    } else {
        format!("{n} problems")
    };
    assert!(last.ends_with(&format!(": {count}")), "{out}");
    out.stdout
        .lines()
        .filter(|l| l.starts_with("problem "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_healthy_set_up_passes_every_check() {
    // issue 12.2: exit 0, one `ok` line per check, in order; a cached token
    // means no mint, and doctor writes nothing but the token cache
    let (fake, s) = healthy();
    let before = snapshot(&s);
    fake.clear_requests();
    let out = s.run(&["doctor"], b"").ok().stderr_is("");
    no_secret(&out, &[]);
    let (pairs, last) = verdicts(&out);
    let want: Vec<(String, String)> = CHECKS
        .iter()
        .map(|c| ("ok".to_string(), c.to_string()))
        .collect();
    assert_eq!(pairs, want, "{out}");
    assert_eq!(last, "us.icr.io: every check passed");
    let bin = s.root.join("bin/docker-credential-ibmcr");
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("ok {name}: ")))
            .unwrap()
            .to_string()
    };
    assert!(line("binary").starts_with(&format!("ok binary: docker runs {} (v", bin.display())));
    assert!(
        line("identity").contains("the API key stored for icr.io, in bearer mode"),
        "{out}"
    );
    assert!(
        line("cache").contains("a pull gets it without a call"),
        "{out}"
    );
    assert_eq!(fake.count("POST", IAM), 0, "a cached token: no mint");
    assert_eq!(fake.count("GET", IAM), 1, "one request for IAM's clock");
    assert_eq!(
        snapshot(&s),
        before,
        "doctor wrote nothing but the token cache"
    );

    // --json: the same, as one document.
    let json = s.run(&["doctor", "--json"], b"").ok();
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["host"], "us.icr.io");
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, CHECKS);
    assert!(v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true && c["fix"].is_null()));
}

#[test]
fn doctor_mints_once_when_no_valid_token_is_cached() {
    // issue 12.2: one real mint, so "ok" means a pull would get credentials
    let (fake, s) = healthy();
    fs::remove_file(s.cache_file()).unwrap();
    fake.clear_requests();
    let out = s.run(&["doctor", "de.icr.io"], b"").ok();
    let mint = out
        .stdout
        .lines()
        .find(|l| l.starts_with("ok mint: "))
        .unwrap();
    assert!(
        mint.starts_with(&format!(
            "ok mint: minted a `iambearer` token of account {ACCOUNT}, valid "
        )),
        "{out}"
    );
    assert_eq!(fake.count("POST", IAM), 1);
    // The token it minted answers the pull.
    fake.clear_requests();
    s.get("de.icr.io").ok();
    assert_eq!(fake.count("POST", IAM), 0);
}

#[test]
fn no_helper_in_docker_s_config_is_a_problem() {
    let (_fake, s) = healthy();
    let docker = s.home().join(".docker/config.json");
    fs::write(&docker, "{}").unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["docker"]);
    assert_eq!(
        lines[0],
        format!(
            "problem docker: {} does not send us.icr.io to ibmcr (no credsStore, no credHelpers entry): docker never calls it; fix: run `docker-credential-ibmcr configure`",
            docker.display()
        )
    );
    fs::remove_file(&docker).unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["docker"]);
    assert!(
        lines[0].contains("does not exist: docker calls no helper for us.icr.io"),
        "{lines:?}"
    );
}

#[test]
fn an_auths_entry_that_overrides_the_helper_is_a_problem() {
    let (_fake, s) = healthy();
    let docker = s.home().join(".docker/config.json");
    // With credsStore, docker asks the helper first (auths keeps the email only).
    let config = json!({"credsStore": "ibmcr", "auths": {"us.icr.io": {"auth": AUTH_CANARY}}});
    fs::write(&docker, config.to_string()).unwrap();
    let out = s.run(&["doctor"], b"").ok();
    no_secret(&out, &[]);
    assert!(out.stdout.contains(&format!(
        "ok docker: {} sends us.icr.io to ibmcr (credsStore, which docker asks before its auths entry `us.icr.io`)\n",
        docker.display()
    )), "{out}");
    // Without a helper, the auths entry answers.
    let config = json!({"auths": {"https://us.icr.io/v1/": {"auth": AUTH_CANARY}}});
    fs::write(&docker, config.to_string()).unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["docker"]);
    assert_eq!(
        lines[0],
        format!(
            "problem docker: {} names no helper for us.icr.io: docker answers it from the auths entry `https://us.icr.io/v1/`, not from ibmcr; fix: run `docker-credential-ibmcr configure`",
            docker.display()
        )
    );
    // podman's own file: an auths entry there wins before any helper.
    let persistent = s.home().join(".config/containers/auth.json");
    let runtime = s.root.join("run/containers/auth.json");
    fs::remove_file(&runtime).unwrap();
    let config = json!({"auths": {"https://us.icr.io": {"auth": AUTH_CANARY}}});
    fs::write(&persistent, config.to_string()).unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["docker", "containers"]);
    assert_eq!(
        lines[1],
        format!(
            "problem containers: podman, skopeo and buildah answer us.icr.io from the auths entry `https://us.icr.io` in {0}, before any helper; fix: `podman logout --authfile {0} us.icr.io` removes it; then run `docker-credential-ibmcr configure`",
            persistent.display()
        )
    );
}

#[test]
fn a_value_of_the_wrong_type_is_named_not_quoted() {
    // review: a secret pasted where docker wants a helper's name was quoted
    let (_fake, s) = healthy();
    let docker = s.home().join(".docker/config.json");
    for config in [
        json!({"credHelpers": {"us.icr.io": {"password": AUTH_CANARY}}}),
        json!({"credsStore": [AUTH_CANARY]}),
        json!({"credHelpers": [AUTH_CANARY]}),
    ] {
        fs::write(&docker, config.to_string()).unwrap();
        let lines = problems(&s.run(&["doctor"], b""), &["docker"]);
        assert!(lines[0].contains(": docker cannot read this file; fix: repair it, then run `docker-credential-ibmcr configure`"), "{lines:?}");
    }
}

#[test]
fn arguments_that_may_be_secrets_are_not_echoed() {
    // review: `login $IBMCLOUD_API_KEY`, a URL with a password, a key that
    // starts with a dash: one line each, without the secret
    let (fake, s) = setup();
    let key_like = "CANARYkey0123456789abcdefABCDEF_xyz";
    for verb in ["login", "doctor"] {
        let out = s.run(&[verb, key_like], b"").error_line(&format!(
            "{verb}: HOST is not an IBM Cloud Container Registry host such as us.icr.io"
        ));
        no_secret(&out, &[key_like]);
        let out = s
            .run(&[verb, "https://user:CANARYpw@quay.io/v2/"], b"")
            .error_line(&format!(
                "{verb}: `https://****@quay.io/v2/` is not an IBM Cloud Container Registry host"
            ));
        no_secret(&out, &["CANARYpw"]);
        let out = s
            .run(&[verb, "-CANARYkey0123456789abcdef"], b"")
            .error_line(&format!(
                "{verb}: an unknown option; usage: docker-credential-ibmcr {verb}"
            ));
        no_secret(&out, &["CANARYkey0123456789abcdef"]);
        s.run(&[verb, "--bogus"], b"")
            .error_line(&format!("{verb}: unknown option `--bogus`"));
    }
    assert!(fake.requests().is_empty());
}

/// An older copy of the helper first on PATH, before the sandbox's own: a
/// script that runs `first`, then prints v0.0.1's version line.
fn shadowing_copy(s: &mut Sandbox, first: &str) -> PathBuf {
    let other = s.root.join("other");
    fs::create_dir_all(&other).unwrap();
    let copy = other.join("docker-credential-ibmcr");
    let version = "docker-credential-ibmcr (docker-credential-ibmcr) v0.0.1 (commit 0000000)";
    fs::write(&copy, format!("#!/bin/sh\n{first}\necho '{version}'\n")).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    s.set(
        "PATH",
        &format!("{}:{}", other.display(), s.root.join("bin").display()),
    );
    copy
}

#[test]
fn a_shadowing_copy_that_never_lets_go_of_its_output_does_not_hang_doctor() {
    // review: a copy first on PATH that leaves a child holding stdout
    let (_fake, mut s) = healthy();
    shadowing_copy(&mut s, "sleep 30 &");
    let started = std::time::Instant::now();
    let lines = problems(&s.run(&["doctor"], b""), &["binary"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "doctor waited for the shim's child"
    );
    assert!(
        lines[0].contains("(v0.0.1, commit 0000000), which shadows this one"),
        "{lines:?}"
    );
}

#[test]
fn an_unreachable_iam_matters_only_when_a_pull_needs_it() {
    // review: with a fresh token cached, or the key answered as it is, a
    // pull makes no IAM call, so IAM out of reach is not a problem
    let (fake, mut s) = healthy();
    drop(fake);
    let out = s.run(&["doctor"], b"").ok();
    assert!(
        out.stdout
            .contains("ok clock: could not ask IAM for its time ("),
        "{out}"
    );
    assert!(
        out.stdout.contains("); a pull needs no IAM call now\n"),
        "{out}"
    );
    s.set("IBMCR_MODE", "apikey");
    s.run(&["doctor"], b"").ok();
    s.unset("IBMCR_MODE");
    // With nothing valid cached, it is: the clock and the mint say so.
    fs::remove_file(s.cache_file()).unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["clock", "mint"]);
    assert!(
        lines[0].starts_with("problem clock: could not ask IAM for its time: "),
        "{lines:?}"
    );
}

#[test]
fn a_keyring_that_does_not_answer_is_a_problem() {
    // review: with no keyring index, a get finds nothing rather than failing
    let (_fake, mut s) = setup();
    s.set("IBMCR_STORE", "keyring");
    s.set("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let out = s.run(&["doctor"], b"").fails();
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("problem store: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.starts_with("problem store: the keyring store does not answer: "),
        "{out}"
    );
    assert!(line.ends_with("; fix: unlock the keyring or start the Secret Service; or set IBMCR_STORE=file and log in again"), "{out}");
}

#[test]
fn a_path_without_the_binary_is_a_problem() {
    let (_fake, mut s) = healthy();
    let empty = s.root.join("empty");
    fs::create_dir_all(&empty).unwrap();
    s.set("PATH", empty.to_str().unwrap());
    let lines = problems(&s.run(&["doctor"], b""), &["binary"]);
    assert_eq!(
        lines[0],
        "problem binary: no docker-credential-ibmcr on PATH: docker, podman and skopeo cannot run it; fix: install it (./install.sh or the .deb) or add the directory that holds it to PATH"
    );
    // Another copy first on PATH shadows this one.
    let fake_bin = shadowing_copy(&mut s, "");
    let lines = problems(&s.run(&["doctor"], b""), &["binary"]);
    assert!(
        lines[0].starts_with(&format!(
            "problem binary: docker runs {} (v0.0.1, commit 0000000), which shadows this one (v",
            fake_bin.display()
        )),
        "{lines:?}"
    );
}

#[test]
fn a_loose_store_mode_is_a_problem() {
    let (_fake, s) = healthy();
    fs::set_permissions(s.store_file(), fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["doctor"], b"");
    let lines = problems_without(&out, &["store", "identity"], &["cache", "mint"]);
    assert!(
        lines[0].starts_with("problem store: the file store does not answer: "),
        "{lines:?}"
    );
    assert!(
        lines[0].contains(&format!("chmod 600 {}", s.store_file().display())),
        "names the fix: {lines:?}"
    );
}

#[test]
fn a_key_iam_refuses_is_a_problem_with_ibm_s_code() {
    let (fake, s) = healthy();
    // The key is fed through `store`, as docker login would; nothing cached.
    s.store("icr.io", "iamapikey", BAD_KEY).ok();
    fake.clear_requests();
    let lines = problems(&s.run(&["doctor"], b""), &["mint"]);
    assert!(
        lines[0].starts_with("problem mint: the API key stored for icr.io"),
        "{lines:?}"
    );
    assert!(lines[0].contains("BXNIM0415E"), "{lines:?}");
    assert!(lines[0].ends_with("; fix: IAM refused it: create an API key (IBM Cloud console: Manage, Access (IAM), API keys), then `docker-credential-ibmcr login < api-key-file`"), "{lines:?}");
    assert_eq!(fake.count("POST", IAM), 1);
}

#[test]
fn a_skewed_clock_is_a_problem() {
    let (_fake, mut s) = healthy();
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "libfaketime is needed: run scripts/deps.sh"
    );
    s.set("LD_PRELOAD", LIBFAKETIME);
    s.set("FAKETIME", "+1d");
    let out = s.run(&["doctor"], b"");
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("problem "))
        .collect();
    let clock = lines
        .iter()
        .find(|l| l.starts_with("problem clock: "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        clock.starts_with("problem clock: this clock is 24 h ahead of IAM's (http://127.0.0.1:"),
        "{out}"
    );
    assert!(
        clock.ends_with("; fix: set the clock right (`timedatectl set-ntp true`)"),
        "{out}"
    );
    out.fails();
}

#[test]
fn the_entitled_registry_sent_to_ibmcr_is_a_problem() {
    let (_fake, s) = healthy();
    let docker = s.home().join(".docker/config.json");
    let mut config: Value = serde_json::from_slice(&fs::read(&docker).unwrap()).unwrap();
    config["credHelpers"]["cp.icr.io"] = json!("ibmcr");
    fs::write(&docker, config.to_string()).unwrap();
    let lines = problems(&s.run(&["doctor"], b""), &["cp.icr.io"]);
    assert!(lines[0].starts_with(&format!("problem cp.icr.io: credHelpers in {} sends cp.icr.io, IBM's Entitled Registry, to ibmcr", docker.display())), "{lines:?}");
    // With the entitlement key stored for it, that is what it answers: ok.
    s.store("cp.icr.io", "cp", "CANARY-entitlement").ok();
    let out = s.run(&["doctor"], b"").ok();
    no_secret(&out, &["CANARY-entitlement"]);
}

#[test]
fn doctor_refuses_a_host_that_is_not_ibm_s() {
    let (fake, s) = setup();
    s.run(&["doctor", "quay.io"], b"").error_line(
        "doctor: `quay.io` is not an IBM Cloud Container Registry host (the README lists them)",
    );
    s.run(&["doctor", "--help"], b"")
        .ok()
        .stdout_is("usage: docker-credential-ibmcr doctor [HOST] [--json]\n");
    assert!(fake.requests().is_empty());
}

#[test]
fn identity_names_where_the_answer_comes_from_and_never_the_secret() {
    // issue 12.2: the chain as a get walks it, and which source wins
    let (_fake, mut s) = setup();
    let identity = |s: &Sandbox, host: &str| -> String {
        let out = s.run(&["doctor", host], b"");
        no_secret(&out, &["CANARY-stored-token"]);
        let line = out.stdout.lines().find(|l| l.contains(" identity: "));
        line.unwrap_or_else(|| panic!("{out}")).to_string()
    };
    assert_eq!(
        identity(&s, "us.icr.io"),
        "problem identity: nothing answers us.icr.io (us.icr.io: nothing stored; icr.io: nothing stored; \
         then: nothing (no IBMCLOUD_API_KEY or IC_API_KEY, no IBMCLOUD_CR_TOKEN, no projected token, \
         no ibmcloud login session)); fix: give it an API key: \
         `docker-credential-ibmcr login < api-key-file` (or set IBMCLOUD_API_KEY)"
    );
    s.set("IBMCLOUD_API_KEY", KEY);
    assert_eq!(
        identity(&s, "us.icr.io"),
        "ok identity: us.icr.io is answered with tokens minted from the API key in IBMCLOUD_API_KEY, \
         in bearer mode (us.icr.io: nothing stored; icr.io: nothing stored; then: IBMCLOUD_API_KEY)"
    );
    // A key of the host's own wins, and icr.io is not even looked at.
    s.run(&["login", "us.icr.io"], KEY.as_bytes()).ok();
    assert_eq!(
        identity(&s, "us.icr.io"),
        "ok identity: us.icr.io is answered with tokens minted from the API key stored for us.icr.io, \
         in bearer mode (us.icr.io: an API key)"
    );
    s.set("IBMCR_MODE", "apikey");
    assert_eq!(
        identity(&s, "us.icr.io"),
        "ok identity: us.icr.io is answered with the API key stored for us.icr.io itself, \
         in apikey mode (us.icr.io: an API key)"
    );
    // A stored credential that answers as it is.
    s.store("de.icr.io", "iamrefresh", "CANARY-stored-token")
        .ok();
    assert_eq!(
        identity(&s, "de.icr.io"),
        "ok identity: de.icr.io is answered with its stored `iamrefresh` credential as it is \
         (de.icr.io: a `iamrefresh` credential, answered as stored)"
    );
}
