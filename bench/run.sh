#!/usr/bin/env bash
# Benchmark of docker-credential-ibmcr as users run it, in ONE run, written
# into BENCHMARKS.md at the repository root (bench/report.py).
#
#   bench/run.sh            # installs what it needs, builds, measures, writes BENCHMARKS.md
#
# What is measured is the binary users get: this script runs ./install.sh
# into a prefix of its own (target/bench/install) and times that file. Every
# command starts the way docker and podman start a credential helper: a
# direct fork + exec, no shell, stdin from a file (bench/driver.c, compiled
# here with gcc). The driver interleaves all commands round-robin, many
# rounds, and takes each child's peak RSS from wait4. The floors are
# /bin/true and a minimal static Rust program (bench/floor.rs, built with
# the same flags install.sh uses) that reads stdin and a JSON file and
# prints the file: the least any Rust helper can cost.
#
# Knobs (environment): BENCH_WARMUP (10), BENCH_ROUNDS (300),
# BENCH_CONC_ROUNDS (5), BENCH_PARALLEL (64), BENCH_OUT (BENCHMARKS.md path),
# BENCH_KEEP=1 (keep the temp dir with the raw samples, for debugging).
#
# Everything runs on loopback, in one temp dir, inside a private D-Bus session
# with an unlocked throwaway gnome-keyring (scripts/with-secret-service.sh);
# every process this script starts is stopped on exit.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'info: %s\n' "$*" >&2; }
err() { printf 'error: %s\n' "$*" >&2; exit 1; }

# command → Debian package, for the ones this benchmark needs.
deps=(
  gcc:gcc
  strace:strace
  docker-credential-ecr-login:amazon-ecr-credential-helper
  docker-credential-secretservice:golang-docker-credential-helpers
  gnome-keyring-daemon:gnome-keyring
  dbus-run-session:dbus
  secret-tool:libsecret-tools
  curl:curl
  python3:python3
)

ensure_deps() {
  local missing=() d
  for d in "${deps[@]}"; do
    command -v "${d%%:*}" >/dev/null 2>&1 || missing+=("${d#*:}")
  done
  # gcc -static needs glibc's libc.a (libc6-dev).
  [ -f "$(gcc -print-file-name=libc.a 2>/dev/null)" ] || missing+=(libc6-dev)
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

target_dir() { printf '%s\n' "${CARGO_TARGET_DIR:-$repo/target}"; }
BENCH_BUILD=$(target_dir)/bench


build() {
  mkdir -p "$BENCH_BUILD"
  say "building and installing the helper with install.sh (into $BENCH_BUILD/install)"
  "$repo/install.sh" --prefix "$BENCH_BUILD/install" 2>&1 | tee "$BENCH_BUILD/install.log" >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || err "install.sh failed"
  say "building the fake IBM API, the driver and the floor program"
  (cd "$repo" && cargo build --release --locked --quiet --example fake-ibm-api)
  gcc -O2 -static -Wall -Wextra -o "$BENCH_BUILD/driver" "$repo/bench/driver.c"
  # The floor gets the RUSTFLAGS install.sh built the helper with (its info line).
  sed -n "s/^info: building .* RUSTFLAGS='\([^']*\)'.*/\1/p" "$BENCH_BUILD/install.log" >"$BENCH_BUILD/rustflags"
  # shellcheck disable=SC2046 # the flags are words
  rustc --edition 2021 -C opt-level=3 -C panic=abort -C strip=symbols $(cat "$BENCH_BUILD/rustflags") \
    -o "$BENCH_BUILD/floor" "$repo/bench/floor.rs"
}

if [ "${1:-}" != "--inside" ]; then
  ensure_deps
  build
  # The rest runs inside a private D-Bus session with an unlocked keyring.
  exec "$repo/scripts/with-secret-service.sh" "$repo/bench/run.sh" --inside "$@"
fi
shift

# ---------------------------------------------------------------------------
# Inside the private Secret Service session.
# ---------------------------------------------------------------------------
WARMUP=${BENCH_WARMUP:-10}
ROUNDS=${BENCH_ROUNDS:-300}
CONC_ROUNDS=${BENCH_CONC_ROUNDS:-5}
PARALLEL=${BENCH_PARALLEL:-64}
OUT=${BENCH_OUT:-$repo/BENCHMARKS.md}
PY=$(command -v /usr/bin/python3 || command -v python3)

# The commit the binary was just built from, and whether the tree differed.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock install.sh 2>/dev/null)" ] ||
  commit="$commit (plus uncommitted changes)"

HELPER=$BENCH_BUILD/install/bin/docker-credential-ibmcr
FAKE=$(target_dir)/release/examples/fake-ibm-api
DRIVER=$BENCH_BUILD/driver
FLOOR=$BENCH_BUILD/floor
for f in "$HELPER" "$FAKE" "$DRIVER" "$FLOOR"; do
  [ -x "$f" ] || err "no $f: the build did not produce it"
done

T=$(mktemp -d "${TMPDIR:-/tmp}/ibmcr-bench.XXXXXX")
case "$T$HELPER" in
  *[[:space:]\'\"\\]*) err "paths with spaces or quotes are not supported: $T, $HELPER" ;;
esac
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ -n "${BENCH_KEEP:-}" ]; then say "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Loopback only, and nothing from the caller's environment steers the helper
# (SSL_CERT_*: a user's default is the system bundle).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY SSL_CERT_FILE SSL_CERT_DIR
unset IBMCLOUD_API_KEY IC_API_KEY IBMCR_LOG IBMCR_MODE IBMCR_STORE IBMCR_HOME \
  IBMCR_TOKEN_ACCESS IBMCLOUD_IAM_API_ENDPOINT IBMCLOUD_CR_API_ENDPOINT
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

API_KEY=bench-api-key-not-a-secret
ACCOUNT=0123456789abcdef0123456789abcdef

# --- the fake IBM API --------------------------------------------------------
"$FAKE" --port 0 --api-key "$API_KEY=$ACCOUNT" --port-file "$T/fake.port" >"$T/fake.log" 2>&1 &
pids+=("$!")
for _ in $(seq 100); do [ -s "$T/fake.port" ] && break; sleep 0.05; done
[ -s "$T/fake.port" ] || err "the fake IBM API did not start: $(cat "$T/fake.log")"
FAKE_URL=http://127.0.0.1:$(cat "$T/fake.port")
fake() { # fake METHOD PATH [JSON]
  curl -sSf -X "$1" ${3:+-H Content-Type:application/json --data-binary "$3"} "$FAKE_URL$2"
}
fake_stat() { fake GET /_fake/stats | "$PY" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
fake_requests() { fake GET /_fake/requests | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# A loopback port nothing listens on, for ecr-login's proxies and the https probe.
CLOSED_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# --- inputs -----------------------------------------------------------------
mkdir -p "$T/in"
ECR_ACCOUNT=123456789012
ECR_HOST=$ECR_ACCOUNT.dkr.ecr.us-east-1.amazonaws.com
printf 'ghcr.io' >"$T/in/plain"
printf 'us.icr.io' >"$T/in/ibm"
printf 'quay.io' >"$T/in/none"
printf '%s' "$ECR_HOST" >"$T/in/ecr"
printf 'grant_type=urn%%3Aibm%%3Aparams%%3Aoauth%%3Agrant-type%%3Aapikey&apikey=%s' "$API_KEY" >"$T/in/iam-body"
printf '%s' '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/bench/app:1"}' >"$T/in/kubelet"

# --- the commands ---------------------------------------------------------------
# A case is ID|LABEL|ENV|ARGV|STDIN|EXIT: ENV is space-separated NAME=VALUE
# pairs laid over this environment, ARGV starts with an absolute path.
ibmcr_env() { # ibmcr_env STORE HOME
  printf 'IBMCR_STORE=%s IBMCR_HOME=%s IBMCR_MODE=bearer IBMCLOUD_IAM_API_ENDPOINT=%s IBMCLOUD_CR_API_ENDPOINT=%s' \
    "$1" "$2" "$FAKE_URL" "$FAKE_URL"
}
ECR_ENV="HOME=$T/ecr AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=AKIABENCHMARKEXAMPLE AWS_SECRET_ACCESS_KEY=bench-dummy-secret AWS_CONFIG_FILE=$T/ecr/no-config AWS_SHARED_CREDENTIALS_FILE=$T/ecr/no-credentials HTTPS_PROXY=http://127.0.0.1:$CLOSED_PORT HTTP_PROXY=http://127.0.0.1:$CLOSED_PORT https_proxy=http://127.0.0.1:$CLOSED_PORT http_proxy=http://127.0.0.1:$CLOSED_PORT NO_PROXY= no_proxy="
cases=(
  "true|\`/bin/true\` (floor)||/bin/true|$T/in/plain|0"
  "floor|minimal static Rust program: reads stdin and a JSON file, prints the file||$FLOOR $T/file/tokens.json|$T/in/ibm|0"
  "file_ibm|ibmcr get, cached IBM bearer token, file store|$(ibmcr_env file "$T/file")|$HELPER get|$T/in/ibm|0"
  "file_plain|ibmcr get, stored non-IBM credential, file store|$(ibmcr_env file "$T/file")|$HELPER get|$T/in/plain|0"
  "file_none|ibmcr get, nothing stored for the host (not found), file store|$(ibmcr_env file "$T/file")|$HELPER get|$T/in/none|1"
  "version|ibmcr version||$HELPER version|$T/in/plain|0"
  "keyring_plain|ibmcr get, stored non-IBM credential, keyring store|$(ibmcr_env keyring "$T/keyring")|$HELPER get|$T/in/plain|0"
  "keyring_ibm|ibmcr get, cached IBM bearer token, keyring store|$(ibmcr_env keyring "$T/keyring")|$HELPER get|$T/in/ibm|0"
  "ecr|docker-credential-ecr-login get, from its cache|$ECR_ENV|$(command -v docker-credential-ecr-login) get|$T/in/ecr|0"
  "secretservice|docker-credential-secretservice get, keyring|HOME=$T/ss|$(command -v docker-credential-secretservice) get|$T/in/plain|0"
)
cold_case="cold|ibmcr get, cold mint (no token cache) against the fake|$(ibmcr_env file "$T/cold")|$HELPER get|$T/in/ibm|0"
# A cold mint from a trusted profile with a CR token (../shared/fleet.md §2,
# §5): no API key anywhere, the token file read at each mint.
fake POST /_fake/config '{"profiles":{"bench-pull":{"account":"'"$ACCOUNT"'","subjects":["system:serviceaccount:bench:puller"]}}}' >/dev/null
fake POST /_fake/cr-token '{"sub":"system:serviceaccount:bench:puller","lifetime":3600}' |
  "$PY" -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["token"])' >"$T/in/cr-token"
cold_cr_case="cold_cr|ibmcr get, cold cr-token mint (trusted profile, no API key)|IBMCR_STORE=file IBMCR_HOME=$T/crtoken IBMCR_MODE=bearer IBMCLOUD_IAM_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_TOKEN=@$T/in/cr-token IBMCLOUD_CR_PROFILE=bench-pull|$HELPER get|$T/in/ibm|0"
curl_case="curl|curl POST /identity/token to the fake (its own round trip)||$(command -v curl) -sf -o /dev/null -H Accept:application/json -H Content-Type:application/x-www-form-urlencoded --data-binary @$T/in/iam-body $FAKE_URL/identity/token|/dev/null|0"

field() { local IFS='|' f; read -r -a f <<<"$1"; printf '%s\n' "${f[$2]:-}"; }
# run_case CASE [WRAPPER…]: runs a case once, as the driver would, output on stdout.
run_case() {
  local c=$1 env argv input
  shift
  env=$(field "$c" 2) argv=$(field "$c" 3) input=$(field "$c" 4)
  # shellcheck disable=SC2086 # ENV and ARGV are space-separated words by design
  env $env "$@" $argv <"$input"
}
# spec_line CASE [UNLINK]: the driver's line for a case.
spec_line() {
  local env
  env=$(field "$1" 2)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(field "$1" 0)" "$(field "$1" 4)" "$(field "$1" 5)" \
    "${2:--}" "${env:--}" "$(field "$1" 3)"
}
manifest=$T/manifest.tsv
: >"$manifest"
add_manifest() { # add_manifest CASE GROUP
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(field "$1" 0)" "$2" "$(field "$1" 1)" "$(field "$1" 2)" \
    "$(field "$1" 3)" "$(field "$1" 4)" >>"$manifest"
}

# --- set-up: stored credentials and warm caches -------------------------------
ibmcr() { # ibmcr STORE HOME VERB [STDIN]
  local store=$1 home=$2 verb=$3
  IBMCR_STORE=$store IBMCR_HOME=$home IBMCR_MODE=bearer \
    IBMCLOUD_IAM_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_API_ENDPOINT=$FAKE_URL \
    "$HELPER" "$verb" <<<"${4:-}"
}
for store in file keyring; do
  home=$T/$store
  ibmcr "$store" "$home" store '{"ServerURL":"ghcr.io","Username":"bench-user","Secret":"bench-plain-secret"}' >/dev/null
  ibmcr "$store" "$home" store "{\"ServerURL\":\"us.icr.io\",\"Username\":\"iamapikey\",\"Secret\":\"$API_KEY\"}" >/dev/null
  ibmcr "$store" "$home" get us.icr.io >/dev/null # mints once; later gets answer from tokens.json
done
ibmcr file "$T/cold" store "{\"ServerURL\":\"us.icr.io\",\"Username\":\"iamapikey\",\"Secret\":\"$API_KEY\"}" >/dev/null
ibmcr file "$T/conc" store "{\"ServerURL\":\"us.icr.io\",\"Username\":\"iamapikey\",\"Secret\":\"$API_KEY\"}" >/dev/null
ibmcr file "$T/https" store "{\"ServerURL\":\"us.icr.io\",\"Username\":\"iamapikey\",\"Secret\":\"$API_KEY\"}" >/dev/null

# ecr-login's file cache (amazon-ecr-credential-helper 0.6.0, ecr-login/cache):
# ~/.ecr/cache.json, {"Registries": {KEY: AuthEntry}, "Version": "1.0"}, where
# KEY = REGION "-" base64(ACCESS_KEY_ID bytes + md5("")) "-" REGISTRY_ID (its
# checksum() appends the digest of nothing to the text), and an entry is valid
# until half of its RequestedAt..ExpiresAt window has passed.
mkdir -p "$T/ecr/.ecr" && chmod 700 "$T/ecr" "$T/ecr/.ecr"
"$PY" - "$T/ecr/.ecr/cache.json" "$ECR_ACCOUNT" <<'PYEOF'
import base64, datetime, hashlib, json, sys
path, registry = sys.argv[1], sys.argv[2]
key_id, region = "AKIABENCHMARKEXAMPLE", "us-east-1"
checksum = base64.b64encode(key_id.encode() + hashlib.md5(b"").digest()).decode()
now = datetime.datetime.now(datetime.timezone.utc)
stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
entry = {
    "AuthorizationToken": base64.b64encode(b"AWS:bench-ecr-password").decode(),
    "RequestedAt": stamp(now),
    "ExpiresAt": stamp(now + datetime.timedelta(hours=12)),
    "ProxyEndpoint": f"https://{registry}.dkr.ecr.{region}.amazonaws.com",
    "Service": "ecr",
}
with open(path, "w") as f:
    json.dump({"Registries": {f"{region}-{checksum}-{registry}": entry}, "Version": "1.0"}, f)
PYEOF

mkdir -p "$T/ss"
HOME=$T/ss docker-credential-secretservice store <<<'{"ServerURL":"ghcr.io","Username":"bench-user","Secret":"bench-plain-secret"}' >/dev/null

# --- 5: the kubelet plugin's cached answer (a slot) ---------------------------
# `docker-credential-ibmcr kubelet-plugin` (../shared/fleet.md §6) reads a
# CredentialProviderRequest on stdin. When the installed binary answers one
# (the first call may mint, the second must come from its cache), its cached
# answer joins the timed commands as `kubelet`; until then the report says
# it was not measured.
kubelet_case="kubelet|ibmcr kubelet-plugin, cached answer, file store|$(ibmcr_env file "$T/file")|$HELPER kubelet-plugin|$T/in/kubelet|0"
kubelet=absent
if run_case "$kubelet_case" >/dev/null 2>&1 &&
  out=$(run_case "$kubelet_case" 2>/dev/null) &&
  "$PY" -c 'import json,sys; assert json.loads(sys.argv[1])["kind"]=="CredentialProviderResponse"' "$out" 2>/dev/null; then
  kubelet=present
  cases+=("$kubelet_case")
fi

# --- verify every command answers what it should before timing it -------------
expect() { # expect CASE USERNAME SECRET(or "jwt")
  local out
  out=$(run_case "$1") || err "$(field "$1" 1): exit $? before timing: $out"
  "$PY" - "$out" "$2" "$3" <<'PYEOF' || err "$(field "$1" 1): did not answer a credential: $out"
import json, sys
got, user, secret = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert got["Username"] == user, got
assert (got["Secret"].count(".") == 2) if secret == "jwt" else (got["Secret"] == secret), got
PYEOF
}
by_id() { local c; for c in "${cases[@]}"; do [ "$(field "$c" 0)" = "$1" ] && printf '%s\n' "$c"; done; }
[ "$(run_case "$(by_id true)"; echo $?)" = 0 ] || err "/bin/true failed"
[ "$(run_case "$(by_id floor)")" = "$(cat "$T/file/tokens.json")" ] || err "the floor program did not print the file"
expect "$(by_id file_ibm)" iambearer jwt
expect "$(by_id file_plain)" bench-user bench-plain-secret
out=$(run_case "$(by_id file_none)" 2>&1) && err "not found exited 0: $out"
[ "$out" = "credentials not found in native keychain" ] || err "not found answered: $out"
run_case "$(by_id version)" | grep -q '^docker-credential-ibmcr' || err "version did not answer"
expect "$(by_id keyring_plain)" bench-user bench-plain-secret
expect "$(by_id keyring_ibm)" iambearer jwt
expect "$(by_id ecr)" AWS bench-ecr-password
expect "$(by_id secretservice)" bench-user bench-plain-secret
grep -q 'Using cached token' "$T"/ecr/.ecr/log/* 2>/dev/null ||
  err "ecr-login did not say it answered from its cache (see its log under ~/.ecr/log)"

# Does the keyring-store IBM get touch the keyring? Ask it with the bus gone.
if out=$(run_case "$(by_id keyring_ibm)" "DBUS_SESSION_BUS_ADDRESS=unix:path=$T/no-such-bus" 2>&1) &&
  "$PY" -c 'import json,sys; assert json.loads(sys.argv[1])["Username"]=="iambearer"' "$out" 2>/dev/null; then
  keyring_free=yes
else
  keyring_free=no
fi

# --- 1: warm commands, one interleaved driver run --------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$T/warm.spec"
for c in "${cases[@]}"; do
  add_manifest "$c" warm
  spec_line "$c" >>"$T/warm.spec"
done
fake POST /_fake/reset >/dev/null
say "timing ${#cases[@]} commands, interleaved: $WARMUP warm-up + $ROUNDS rounds"
"$DRIVER" "$T/warm.spec" "$WARMUP" "$ROUNDS" "$T/warm.tsv"
warm_requests=$(fake_requests)

# --- 3: cold mint vs curl's round trip to the fake, interleaved ------------------
# One probe first: exactly which requests does one cold get make?
rm -f "$T/cold/tokens.json"
fake POST /_fake/reset >/dev/null
expect "$cold_case" iambearer jwt
fake GET /_fake/requests >"$T/cold-probe.json"
rm -f "$T/crtoken/tokens.json"
fake POST /_fake/reset >/dev/null
expect "$cold_cr_case" iambearer jwt
fake GET /_fake/requests >"$T/cold-cr-probe.json"

for c in "$(by_id true)" "$cold_case" "$cold_cr_case" "$curl_case"; do
  add_manifest "$c" cold
done
{
  spec_line "$(by_id true)"
  spec_line "$cold_case" "$T/cold/tokens.json"
  spec_line "$cold_cr_case" "$T/crtoken/tokens.json"
  spec_line "$curl_case"
} >"$T/cold.spec"
fake POST /_fake/reset >/dev/null
say "timing the cold mints (API key, CR token) against curl, interleaved: $WARMUP warm-up + $ROUNDS rounds"
"$DRIVER" "$T/cold.spec" "$WARMUP" "$ROUNDS" "$T/cold.tsv"
cold_mints=$(fake_stat iam_mints) cold_requests=$(fake_requests)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- where the time goes: system calls, files opened, D-Bus calls (strace) -------
say "counting system calls, opens and D-Bus calls (strace, untimed)"
trace() { # trace NAME CASE [strace options…]: one untimed run under strace
  local name=$1 c=$2
  shift 2
  run_case "$c" strace -f -qq -o "$T/strace.$name" "$@" >/dev/null 2>&1 || true
}
trace file_ibm "$(by_id file_ibm)"
trace file_plain "$(by_id file_plain)"
trace true "$(by_id true)"
trace floor "$(by_id floor)"
rm -f "$T/cold/tokens.json"
trace cold "$cold_case" -e trace=openat,open
# An https IAM endpoint on a closed port: the client is built (CA roots
# read) and the connect is refused. The retries reuse the client.
https_case="https|ibmcr get, cold, https endpoint on a closed port|IBMCR_STORE=file IBMCR_HOME=$T/https IBMCR_MODE=bearer IBMCLOUD_IAM_API_ENDPOINT=https://127.0.0.1:$CLOSED_PORT|$HELPER get|$T/in/ibm|1"
trace https "$https_case" -e trace=openat,open
trace dbus_ibmcr "$(by_id keyring_plain)" -xx -s 65536 -e trace=sendmsg,sendto,write,writev
trace dbus_ss "$(by_id secretservice)" -xx -s 65536 -e trace=sendmsg,sendto,write,writev
"$PY" "$repo/bench/strace_facts.py" --dir "$T" >"$T/strace.tsv"

# --- 4b: PARALLEL concurrent gets on an expired token --------------------------
say "running $CONC_ROUNDS rounds of $PARALLEL concurrent gets on an expired token"
IBMCR_STORE=file IBMCR_HOME=$T/conc IBMCR_MODE=bearer \
  IBMCLOUD_IAM_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_API_ENDPOINT=$FAKE_URL \
  "$PY" "$repo/bench/concurrent.py" --helper "$HELPER" --input "$T/in/ibm" --fake "$FAKE_URL" \
  --parallel "$PARALLEL" --rounds "$CONC_ROUNDS" --lifetime 4 --work "$T/conc-work" --out "$T/concurrent.json"

# --- facts and the report ------------------------------------------------------
dpkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not from a Debian package"; }
{
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
  printf 'kernel\t%s\n' "$(uname -sr)"
  # shellcheck disable=SC1091
  printf 'os\t%s\n' "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || echo unknown)"
  printf 'glibc\t%s\n' "$(dpkg_version libc6)"
  printf 'gcc\t%s\n' "$(gcc -dumpfullversion 2>/dev/null || echo unknown)"
  printf 'ibmcr\t%s\n' "$("$HELPER" version | head -n 1)"
  printf 'commit\t%s\n' "$commit"
  printf 'rustc\t%s\n' "$(rustc -V 2>/dev/null || echo unknown)"
  printf 'build\t%s\n' "$(sed -n 's/^info: building docker-credential-ibmcr with \(.*\) (rustc.*/\1/p' "$BENCH_BUILD/install.log" | head -n 1)"
  printf 'binary\t%s\n' "$(file -b "$HELPER" 2>/dev/null | cut -d, -f1-4 || echo unknown)"
  printf 'binary_bytes\t%s\n' "$(stat -c %s "$HELPER")"
  printf 'floor_flags\t%s\n' "rustc -C opt-level=3 -C panic=abort -C strip=symbols $(cat "$BENCH_BUILD/rustflags")"
  printf 'ecr\t%s (Debian amazon-ecr-credential-helper %s)\n' \
    "$(docker-credential-ecr-login -v 2>/dev/null | sed -n 's/^Version: *//p')" "$(dpkg_version amazon-ecr-credential-helper)"
  printf 'secretservice\t%s (Debian golang-docker-credential-helpers %s)\n' \
    "$(docker-credential-secretservice version 2>/dev/null)" "$(dpkg_version golang-docker-credential-helpers)"
  printf 'gnome_keyring\t%s\n' "$(dpkg_version gnome-keyring)"
  printf 'curl\t%s\n' "$(curl --version | head -n 1 | cut -d' ' -f1-2)"
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'warmup\t%s\nrounds\t%s\n' "$WARMUP" "$ROUNDS"
  printf 'warm_requests\t%s\n' "$warm_requests"
  printf 'cold_mints\t%s\ncold_requests\t%s\n' "$cold_mints" "$cold_requests"
  printf 'keyring_free\t%s\n' "$keyring_free"
  printf 'kubelet\t%s\n' "$kubelet"
  printf 'tmp\t%s\nfake_url\t%s\nhelper\t%s\nbench_build\t%s\nrepo\t%s\n' "$T" "$FAKE_URL" "$HELPER" "$BENCH_BUILD" "$repo"
  printf 'load\t%s → %s\n' "$load_before" "$load_after"
} >"$T/facts.tsv"

"$PY" "$repo/bench/report.py" --dir "$T" --out "$OUT"
say "wrote $OUT"
