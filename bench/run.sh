#!/usr/bin/env bash
# Benchmark of docker-credential-ibmcr against /bin/true and the Go helpers
# Debian ships, in ONE run, then writes BENCHMARKS.md at the repository root
# from what it measured (hyperfine --export-json + GNU time, parsed by
# bench/report.py). Not part of the test command: it takes a few minutes.
#
#   bench/run.sh            # builds, measures, writes BENCHMARKS.md
#
# Knobs (environment): BENCH_WARMUP (5), BENCH_RUNS (100), BENCH_RSS_RUNS (5),
# BENCH_ROUNDS (5), BENCH_PARALLEL (64), BENCH_OUT (BENCHMARKS.md path),
# BENCH_KEEP=1 (keep the temp dir with the raw exports, for debugging).
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
  hyperfine:hyperfine
  /usr/bin/time:time
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
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

target_dir() { printf '%s\n' "${CARGO_TARGET_DIR:-$repo/target}"; }

build() {
  say "building the release binary and the fake IBM API"
  (cd "$repo" && cargo build --release --locked --quiet &&
    cargo build --release --locked --quiet --example fake-ibm-api)
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
WARMUP=${BENCH_WARMUP:-5}
RUNS=${BENCH_RUNS:-100}
RSS_RUNS=${BENCH_RSS_RUNS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
PARALLEL=${BENCH_PARALLEL:-64}
OUT=${BENCH_OUT:-$repo/BENCHMARKS.md}
PY=$(command -v /usr/bin/python3 || command -v python3)

# The commit the binary was just built from, and whether the tree differed.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] ||
  commit="$commit (plus uncommitted changes under src/)"

HELPER=$(target_dir)/release/docker-credential-ibmcr
FAKE=$(target_dir)/release/examples/fake-ibm-api
[ -x "$HELPER" ] || err "no $HELPER: the build did not produce it"
[ -x "$FAKE" ] || err "no $FAKE: the build did not produce it"

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

# Loopback only, and nothing from the caller's environment steers the helper.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
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

# A loopback port nothing listens on, for ecr-login's proxies.
CLOSED_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# --- inputs -----------------------------------------------------------------
mkdir -p "$T/in"
ECR_ACCOUNT=123456789012
ECR_HOST=$ECR_ACCOUNT.dkr.ecr.us-east-1.amazonaws.com
printf 'ghcr.io' >"$T/in/plain"
printf 'us.icr.io' >"$T/in/ibm"
printf '%s' "$ECR_HOST" >"$T/in/ecr"
printf 'grant_type=urn%%3Aibm%%3Aparams%%3Aoauth%%3Agrant-type%%3Aapikey&apikey=%s' "$API_KEY" >"$T/in/iam-body"

# --- commands -----------------------------------------------------------------
# Every timed command is `sh -c 'export …; exec CMD < FILE'`, so each pays the
# same sh start as the floor `sh -c 'exec /bin/true < FILE'`.
ibmcr_env() { # ibmcr_env STORE HOME
  printf 'export IBMCR_STORE=%s IBMCR_HOME=%s IBMCR_MODE=bearer IBMCLOUD_IAM_API_ENDPOINT=%s IBMCLOUD_CR_API_ENDPOINT=%s' \
    "$1" "$2" "$FAKE_URL" "$FAKE_URL"
}
ECR_ENV="export HOME=$T/ecr AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=AKIABENCHMARKEXAMPLE AWS_SECRET_ACCESS_KEY=bench-dummy-secret AWS_CONFIG_FILE=$T/ecr/no-config AWS_SHARED_CREDENTIALS_FILE=$T/ecr/no-credentials HTTPS_PROXY=http://127.0.0.1:$CLOSED_PORT HTTP_PROXY=http://127.0.0.1:$CLOSED_PORT https_proxy=http://127.0.0.1:$CLOSED_PORT http_proxy=http://127.0.0.1:$CLOSED_PORT NO_PROXY= no_proxy="

# id | label | env prefix ("" for none) | program and args | stdin file
cases=(
  "true|/bin/true (floor)||/bin/true|$T/in/plain"
  "file_plain|ibmcr get, stored non-IBM credential, file store|$(ibmcr_env file "$T/file")|$HELPER get|$T/in/plain"
  "file_ibm|ibmcr get, cached IBM bearer token, file store|$(ibmcr_env file "$T/file")|$HELPER get|$T/in/ibm"
  "keyring_plain|ibmcr get, stored non-IBM credential, keyring store|$(ibmcr_env keyring "$T/keyring")|$HELPER get|$T/in/plain"
  "keyring_ibm|ibmcr get, cached IBM bearer token, keyring store|$(ibmcr_env keyring "$T/keyring")|$HELPER get|$T/in/ibm"
  "ecr|docker-credential-ecr-login get, from its cache|$ECR_ENV|$(command -v docker-credential-ecr-login) get|$T/in/ecr"
  "secretservice|docker-credential-secretservice get, keyring|export HOME=$T/ss|$(command -v docker-credential-secretservice) get|$T/in/plain"
)
cold_case="cold|ibmcr get, cold mint (no token cache) against the fake|$(ibmcr_env file "$T/cold")|$HELPER get|$T/in/ibm"
curl_case="curl|curl POST /identity/token to the fake (its own round trip)||$(command -v curl) -sf -o /dev/null -H Accept:application/json -H Content-Type:application/x-www-form-urlencoded --data-binary @$T/in/iam-body $FAKE_URL/identity/token|/dev/null"

field() { local IFS='|' f; read -r -a f <<<"$1"; printf '%s\n' "${f[$2]}"; }
# inner CASE [WRAP]: the sh -c script of a case, optionally with WRAP before the program.
inner() {
  local env prog input
  env=$(field "$1" 2) prog=$(field "$1" 3) input=$(field "$1" 4)
  printf '%sexec %s%s < %s' "${env:+$env; }" "${2:+$2 }" "$prog" "$input"
}
command_of() { printf "sh -c '%s'" "$(inner "$1")"; }

manifest=$T/manifest.tsv
: >"$manifest"
add_manifest() { # add_manifest CASE GROUP
  printf '%s\t%s\t%s\t%s\n' "$(field "$1" 0)" "$2" "$(field "$1" 1)" "$(command_of "$1")" >>"$manifest"
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

# --- verify every command answers what it should before timing it -------------
expect() { # expect CASE USERNAME SECRET(or "jwt")
  local out
  out=$(sh -c "$(inner "$1")") || err "$(field "$1" 1): exit $? before timing: $out"
  "$PY" - "$out" "$2" "$3" <<'PYEOF' || err "$(field "$1" 1): did not answer a credential: $out"
import json, sys
got, user, secret = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
assert got["Username"] == user, got
assert (got["Secret"].count(".") == 2) if secret == "jwt" else (got["Secret"] == secret), got
PYEOF
}
expect "${cases[1]}" bench-user bench-plain-secret
expect "${cases[2]}" iambearer jwt
expect "${cases[3]}" bench-user bench-plain-secret
expect "${cases[4]}" iambearer jwt
expect "${cases[5]}" AWS bench-ecr-password
expect "${cases[6]}" bench-user bench-plain-secret
grep -q 'Using cached token' "$T"/ecr/.ecr/log/* 2>/dev/null ||
  err "ecr-login did not say it answered from its cache (see its log under ~/.ecr/log)"

# Does the keyring-store IBM get touch the keyring? Ask it with the bus gone.
if out=$(DBUS_SESSION_BUS_ADDRESS=unix:path=$T/no-such-bus sh -c "$(inner "${cases[4]}")" 2>&1) &&
  "$PY" -c 'import json,sys; assert json.loads(sys.argv[1])["Username"]=="iambearer"' "$out" 2>/dev/null; then
  keyring_free=yes
else
  keyring_free=no
fi

# --- 1–3: warm gets, one hyperfine run for all ---------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
hf=(hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS")
warm_cmds=()
for c in "${cases[@]}"; do
  add_manifest "$c" warm
  warm_cmds+=("$(command_of "$c")")
done
fake POST /_fake/reset >/dev/null
say "timing ${#cases[@]} warm gets ($WARMUP warm-up + $RUNS runs each)"
"${hf[@]}" --export-json "$T/warm.json" "${warm_cmds[@]}" >&2
warm_requests=$(fake_requests)

# --- 4a: cold mint vs curl's round trip to the fake ----------------------------
# One probe first: exactly which requests does one cold get make?
rm -f "$T/cold/tokens.json"
fake POST /_fake/reset >/dev/null
expect "$cold_case" iambearer jwt
fake GET /_fake/requests >"$T/cold-probe.json"

add_manifest "$cold_case" cold
fake POST /_fake/reset >/dev/null
say "timing the cold mint"
"${hf[@]}" --prepare "rm -f $T/cold/tokens.json" --export-json "$T/cold.json" "$(command_of "$cold_case")" >&2
cold_mints=$(fake_stat iam_mints) cold_requests=$(fake_requests)

add_manifest "$curl_case" curl
fake POST /_fake/reset >/dev/null
say "timing curl's round trip to the fake"
"${hf[@]}" --export-json "$T/curl.json" "$(command_of "$curl_case")" >&2
curl_mints=$(fake_stat iam_mints)

# --- 5: peak RSS (GNU time %M, KiB), max over a few runs -----------------------
say "measuring peak RSS ($RSS_RUNS runs each)"
: >"$T/rss.tsv"
for c in "${cases[@]}" "$cold_case" "$curl_case"; do
  id=$(field "$c" 0)
  for _ in $(seq "$RSS_RUNS"); do
    [ "$id" = cold ] && rm -f "$T/cold/tokens.json"
    sh -c "$(inner "$c" "/usr/bin/time -f %M -o $T/rss.one")" >/dev/null 2>&1 ||
      err "$(field "$c" 1) failed under /usr/bin/time"
    printf '%s\t%s\n' "$id" "$(tail -n 1 "$T/rss.one")" >>"$T/rss.tsv"
  done
done

# --- 4b: PARALLEL concurrent gets on an expired token --------------------------
say "running $ROUNDS rounds of $PARALLEL concurrent gets on an expired token"
IBMCR_STORE=file IBMCR_HOME=$T/conc IBMCR_MODE=bearer \
  IBMCLOUD_IAM_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_API_ENDPOINT=$FAKE_URL \
  "$PY" "$repo/bench/concurrent.py" --helper "$HELPER" --input "$T/in/ibm" --fake "$FAKE_URL" \
  --parallel "$PARALLEL" --rounds "$ROUNDS" --lifetime 4 --work "$T/conc-work" --out "$T/concurrent.json"

# --- facts and the report ------------------------------------------------------
dpkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not from a Debian package"; }
{
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
  printf 'kernel\t%s\n' "$(uname -sr)"
  # shellcheck disable=SC1091
  printf 'os\t%s\n' "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || echo unknown)"
  printf 'hyperfine\t%s\n' "$(hyperfine --version)"
  printf 'gnu_time\t%s\n' "$(dpkg_version time)"
  printf 'ibmcr\t%s\n' "$("$HELPER" version | head -n 1)"
  printf 'commit\t%s\n' "$commit"
  printf 'rustc\t%s\n' "$(rustc -V 2>/dev/null || echo unknown)"
  printf 'ecr\t%s (Debian amazon-ecr-credential-helper %s)\n' \
    "$(docker-credential-ecr-login -v 2>/dev/null | sed -n 's/^Version: *//p')" "$(dpkg_version amazon-ecr-credential-helper)"
  printf 'secretservice\t%s (Debian golang-docker-credential-helpers %s)\n' \
    "$(docker-credential-secretservice version 2>/dev/null)" "$(dpkg_version golang-docker-credential-helpers)"
  printf 'gnome_keyring\t%s\n' "$(dpkg_version gnome-keyring)"
  printf 'curl\t%s\n' "$(curl --version | head -n 1 | cut -d' ' -f1-2)"
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'warmup\t%s\nruns\t%s\nrss_runs\t%s\n' "$WARMUP" "$RUNS" "$RSS_RUNS"
  printf 'warm_requests\t%s\n' "$warm_requests"
  printf 'cold_mints\t%s\ncold_requests\t%s\ncurl_mints\t%s\n' "$cold_mints" "$cold_requests" "$curl_mints"
  printf 'keyring_free\t%s\n' "$keyring_free"
  printf 'tmp\t%s\nfake_url\t%s\n' "$T" "$FAKE_URL"
  printf 'load\t%s → %s\n' "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$T/facts.tsv"

"$PY" "$repo/bench/report.py" --dir "$T" --out "$OUT"
say "wrote $OUT"
