//! Issue 2.8: a real client against the binary — Debian's Python
//! `dockerpycreds` 0.3.0 (store/get/erase; it has no `list`), and docker-py's
//! own `docker.credentials.Store` for `list` (it runs `list` with stdin
//! inherited, protocol.md §2.6).

use std::path::PathBuf;

use crate::util::{run_command, Output, Sandbox, BIN};

const PYTHON: &str = "/usr/bin/python3";

/// True when `module` imports in Debian's Python. When it does not: a
/// failure under CI, a note on stderr otherwise.
#[allow(clippy::print_stderr)] // the skip note is for the person running the tests
fn have(module: &str) -> bool {
    let ok = std::process::Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "`{PYTHON} -c 'import {module}'` failed under CI: run scripts/deps.sh"
        );
        eprintln!("note: skipping: `{PYTHON} -c 'import {module}'` failed (run scripts/deps.sh)");
    }
    ok
}

/// A sandbox whose PATH starts with a dir holding `docker-credential-ibmcr`
/// (a symlink to the binary under test), as clients look the helper up.
fn sandbox() -> Sandbox {
    let mut s = Sandbox::new();
    let bin: PathBuf = s.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("docker-credential-ibmcr")).unwrap();
    let path = format!("{}:{}", bin.display(), s.var("PATH").unwrap_or(""));
    s.set("PATH", &path);
    s.set("IBMCR_MODE", "apikey");
    s.set("IBMCLOUD_IAM_API_ENDPOINT", "http://127.0.0.1:1");
    s.set("IBMCLOUD_CR_API_ENDPOINT", "http://127.0.0.1:1");
    s
}

fn python(s: &Sandbox, script: &str) -> Output {
    run_command(s.program(PYTHON, &["-c", script]), b"")
}

#[test]
fn dockerpycreds_store_get_erase() {
    // issue 2.8: a round trip with a real client, Python's dockerpycreds
    if !have("dockerpycreds") {
        return;
    }
    let s = sandbox();
    let script = r#"
import json, dockerpycreds
store = dockerpycreds.Store('ibmcr')
def get(server):
    try:
        return json.dumps(store.get(server), sort_keys=True)
    except dockerpycreds.CredentialsNotFound as e:
        return 'CredentialsNotFound: %s' % e
for server, user, secret in [
    ('us.icr.io', 'iamapikey', 'api-key-<1>&"2"'),
    ('https://index.docker.io/v1/', 'hubuser', 'hub-pass'),
]:
    print('store', repr(store.store(server, user, secret)))
    print('get', get(server))
# The ServerURL forms docker-py passes verbatim (testbed.md §3) are the same IBM record.
print('get', get('https://us.icr.io/v1/'))
for server in ['us.icr.io', 'https://index.docker.io/v1/']:
    print('erase', repr(store.erase(server)))
    print('erase again', repr(store.erase(server)))
    print('get', get(server))
print('get', get('https://us.icr.io/v1/'))
try:
    store.store('', 'u', 'p')
except dockerpycreds.StoreError as e:
    print('%s: %s' % (type(e).__name__, e))
print('has list', hasattr(store, 'list'))
"#;
    python(&s, script)
        .ok()
        .stdout_is(
            "store b''\n\
             get {\"Secret\": \"api-key-<1>&\\\"2\\\"\", \"ServerURL\": \"us.icr.io\", \"Username\": \"iamapikey\"}\n\
             store b''\n\
             get {\"Secret\": \"hub-pass\", \"ServerURL\": \"https://index.docker.io/v1/\", \"Username\": \"hubuser\"}\n\
             get {\"Secret\": \"api-key-<1>&\\\"2\\\"\", \"ServerURL\": \"https://us.icr.io/v1/\", \"Username\": \"iamapikey\"}\n\
             erase None\n\
             erase again None\n\
             get CredentialsNotFound: No matching credentials in docker-credential-ibmcr\n\
             erase None\n\
             erase again None\n\
             get CredentialsNotFound: No matching credentials in docker-credential-ibmcr\n\
             get CredentialsNotFound: No matching credentials in docker-credential-ibmcr\n\
             StoreError: Credentials store docker-credential-ibmcr exited with \"no credentials server URL\".\n\
             has list False\n",
        )
        // The helper's error line reaches the terminal too (docker shows stderr).
        .stderr_is("no credentials server URL\n");
    // What Python stored, a Go client reads.
    run_command(
        s.program(
            PYTHON,
            &[
                "-c",
                "import dockerpycreds; dockerpycreds.Store('ibmcr').store('ghcr.io', '<token>', 'a&b')",
            ],
        ),
        b"",
    )
    .ok()
    .stdout_is("")
    .stderr_is("");
    s.get("ghcr.io")
        .ok()
        .stdout_is("{\"ServerURL\":\"ghcr.io\",\"Username\":\"\\u003ctoken\\u003e\",\"Secret\":\"a\\u0026b\"}\n");
}

#[test]
fn docker_py_lists_with_an_inherited_stdin() {
    // issue 2.8: `list` from a real client (docker-py runs it with stdin inherited)
    if !have("docker.credentials") {
        return;
    }
    let s = sandbox();
    let script = r#"
import json
from docker.credentials import Store, CredentialsNotFound
store = Store('ibmcr')
print('list', json.dumps(store.list(), sort_keys=True))
store.store('https://US.ICR.IO/v2/', 'iamapikey', 'k1')
store.store('localhost:5000', '<token>', 'k2')
print('list', json.dumps(store.list(), sort_keys=True))
print('get', json.dumps(store.get('us.icr.io'), sort_keys=True))
store.erase('localhost:5000')
print('list', json.dumps(store.list(), sort_keys=True))
"#;
    // Python's own stdin is a pipe the test keeps open until Python exits:
    // a `list` that read it would hang the client.
    let mut cmd = s.program(PYTHON, &["-c", script]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            drop(stdin);
            let out = rx.recv().unwrap().unwrap();
            panic!(
                "docker-py's `list` waited for stdin\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    drop(stdin);
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: format!("{PYTHON} -c <docker-py list script>"),
    }
    .ok()
    .stdout_is(
        "list {}\n\
         list {\"localhost:5000\": \"<token>\", \"us.icr.io\": \"iamapikey\"}\n\
         get {\"Secret\": \"k1\", \"ServerURL\": \"us.icr.io\", \"Username\": \"iamapikey\"}\n\
         list {\"us.icr.io\": \"iamapikey\"}\n",
    )
    .stderr_is("");
}
