#!/usr/bin/env bash
# End-to-end suite for docker-credential-ibmcr (issue 6): the docker CLI with a real engine,
# podman, buildah, skopeo and Python's docker/dockerpycreds push and pull through a registry that
# accepts exactly what IBM's registry accepts, with credentials coming only from the helper.
# What it sets up and why: e2e/README.md.
#
# Usage (as root, from anywhere):  e2e/run.sh [SCENARIO…]     e.g. e2e/run.sh a c
#   IBMCR_E2E_NO_BUILD=1     use the binaries already built (install.sh's in
#                            $CARGO_TARGET_DIR/e2e-install/bin, the fake in release/examples)
#   IBMCR_E2E_KEEP_LOGS=DIR  copy every log of the run into DIR before cleaning up
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$E2E_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

# Production names the suite serves on 127.0.0.1:443, so clients hand the helper the exact
# strings they send in production, and one non-IBM name with its own credential check.
IBM_HOSTS=(us.icr.io de.icr.io icr.io private.us.icr.io registry.ng.bluemix.net)
OTHER_HOST=registry.example.test
ALL_HOSTS=("${IBM_HOSTS[@]}" "$OTHER_HOST")
MARK_BEGIN="# BEGIN docker-credential-ibmcr e2e (removed by e2e/run.sh when it ends)"
MARK_END="# END docker-credential-ibmcr e2e"
CA_CN="docker-credential-ibmcr e2e CA"
PACKAGES=(docker.io docker-registry nginx podman buildah skopeo python3-docker python3-dockerpycreds
  openssl curl jq)
TMO=${IBMCR_E2E_CLIENT_TIMEOUT:-120} # seconds: the bound on every client call
PY=/usr/bin/python3                  # Debian's python, which has the docker modules

say() { printf '# %s\n' "$*" >&2; }
# bounded SECONDS CMD…: every client call has a bound. --foreground keeps CMD in the caller's
# process group, so an interrupt reaches it and stopping a scenario's group stops it too.
bounded() { timeout --foreground -k 5 "$@"; }
die() {
  say "setup failed: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Cleanup: everything started or created is recorded here and undone on EXIT/INT/TERM.
T=""
PIDS=()    # background processes, in start order
CREATED=() # paths outside $T that this run created, in creation order
NEW_BY_TOOLS=() # paths outside $T absent at the start that the engine or c/image tools create
HOSTS_ADDED=0
SCEN_PID="" # the running scenario (its own process group)

stop_pid() { # PID [SECONDS]: TERM, wait up to SECONDS, then KILL
  local pid=$1 secs=${2:-15} i
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" 2>/dev/null
    return 0
  }
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

stop_group() { # PGID: TERM the whole process group, wait, then KILL it
  local pg=$1 i
  kill -TERM -- "-$pg" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    kill -0 -- "-$pg" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pg" 2>/dev/null
  wait "$pg" 2>/dev/null
  return 0
}

remove_hosts_block() {
  grep -qxF "$MARK_BEGIN" /etc/hosts || return 0
  local kept
  kept=$(mktemp)
  awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0==b{skip=1;next} skip&&$0==e{skip=0;next} !skip' \
    /etc/hosts >"$kept"
  cat "$kept" >/etc/hosts # in place: /etc/hosts may be a bind mount that cannot be renamed over
  rm -f "$kept"
}

cleanup() {
  local rc=$? i p
  trap - EXIT INT TERM
  set +e
  [ -n "$SCEN_PID" ] && stop_group "$SCEN_PID"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 30; done
  # dockerd starts its own containerd; if dockerd had to be killed, containerd may outlive it.
  if [ -n "$T" ] && [ -f "$T/docker/exec/containerd/containerd.pid" ]; then
    p=$(cat "$T/docker/exec/containerd/containerd.pid")
    if [ -n "$p" ] && grep -q containerd "/proc/$p/cmdline" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null
      sleep 1
      kill -KILL "$p" 2>/dev/null
    fi
  fi
  ((HOSTS_ADDED)) && remove_hosts_block
  for p in "${NEW_BY_TOOLS[@]}"; do rm -rf "$p"; done
  for ((i = ${#CREATED[@]} - 1; i >= 0; i--)); do
    p=${CREATED[i]}
    if [ -d "$p" ] && [ ! -L "$p" ]; then rmdir "$p" 2>/dev/null || say "left non-empty $p"; else rm -f "$p"; fi
  done
  if [ -n "$T" ] && [ -d "$T" ]; then
    [ -n "${IBMCR_E2E_KEEP_LOGS:-}" ] && mkdir -p "$IBMCR_E2E_KEEP_LOGS" &&
      cp -r "$T/logs/." "$IBMCR_E2E_KEEP_LOGS/" 2>/dev/null
    # Never rm -rf across a mount left by the engine: unmount anything under $T first.
    awk -v t="$T/" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r |
      while read -r m; do umount -l "$m"; done
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

created_by_tools_later() { # PATH…: if absent now, remove at the end what the tools create there
  local p
  for p in "$@"; do
    while [ ! -e "$(dirname "$p")" ]; do p=$(dirname "$p"); done
    [ -e "$p" ] || NEW_BY_TOOLS+=("$p")
  done
}

mkdir_tracked() { # DIR: mkdir -p, recording each directory it creates
  local d=$1 missing=()
  while [ ! -e "$d" ]; do
    missing=("$d" "${missing[@]}")
    d=$(dirname "$d")
  done
  for d in "${missing[@]}"; do
    mkdir "$d"
    CREATED+=("$d")
  done
}

# ---------------------------------------------------------------------------------------------
# Setup
[ "$(id -u)" = 0 ] || die "run as root (dockerd, /etc/hosts, certs.d, port 443)"
for v in http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY; do
  unset "$v"
done

install_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' ||
      missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing ${missing[*]}"
  # Keep the packages' own services (dockerd, nginx on :80) from being started by the install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    CREATED+=(/usr/sbin/policy-rc.d)
  fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

build_binaries() {
  # The helper users get: built and installed by install.sh (on glibc Linux a
  # static binary, which a plain cargo build is not), into a prefix of our own.
  local prefix=$CARGO_TARGET_DIR/e2e-install
  if [ -z "${IBMCR_E2E_NO_BUILD:-}" ]; then
    say "building the helper with install.sh (into $prefix) and the fake IBM API (release)"
    "$REPO/install.sh" --prefix "$prefix" || die "install.sh failed"
    (cd "$REPO" && cargo build --release --example fake-ibm-api)
  fi
  HELPER_BIN=$prefix/bin/docker-credential-ibmcr
  FAKE_BIN=$CARGO_TARGET_DIR/release/examples/fake-ibm-api
  [ -x "$HELPER_BIN" ] || die "no $HELPER_BIN"
  [ -x "$FAKE_BIN" ] || die "no $FAKE_BIN"
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_for() { # SECONDS DESCRIPTION LOG CMD…: poll CMD every 0.2 s while the last process started lives
  local secs=$1 what=$2 logf=$3 i
  shift 3
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "${PIDS[-1]}" 2>/dev/null || die "$what exited: $(tail -n 5 "$logf")"
    sleep 0.2
  done
  die "$what did not come up within ${secs}s: $(tail -n 5 "$logf")"
}

make_certs() {
  local d=$T/tls san="" h
  mkdir -p "$d"
  for h in "${ALL_HOSTS[@]}" localhost; do san+="DNS:$h,"; done
  san+="IP:127.0.0.1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$CA_CN" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=us.icr.io" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" >"$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 2 -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
}

install_trust() { # certs.d/<host>/ca.crt for the engine and for containers tools
  local base h dir f
  for base in /etc/docker/certs.d /etc/containers/certs.d; do
    for h in "${ALL_HOSTS[@]}"; do
      dir=$base/$h
      f=$dir/ca.crt
      if [ -e "$f" ]; then
        # A CA of ours left by a run that was killed with SIGKILL may be replaced; anything else is
        # someone's real configuration for a production name: do not touch it.
        openssl x509 -in "$f" -noout -subject 2>/dev/null | grep -qF "$CA_CN" ||
          die "$f exists and is not this suite's CA; not touching it"
        say "replacing a stale $f"
        CREATED+=("$dir")
      fi
      mkdir_tracked "$dir"
      cp "$T/tls/ca.crt" "$f"
      CREATED+=("$f")
    done
  done
}

add_hosts_block() {
  if grep -qxF "$MARK_BEGIN" /etc/hosts; then
    say "removing a stale e2e block from /etc/hosts"
    remove_hosts_block
  fi
  HOSTS_ADDED=1
  {
    printf '%s\n' "$MARK_BEGIN"
    printf '127.0.0.1 %s\n' "${ALL_HOSTS[@]}"
    printf '%s\n' "$MARK_END"
  } >>/etc/hosts
}

start_fake() {
  FAKE_KEY="e2e-$(openssl rand -hex 20)"
  FAKE_ACCOUNT=$(openssl rand -hex 16)
  PLAIN_USER=alice
  PLAIN_PW="plain-$(openssl rand -hex 12)"
  "$FAKE_BIN" --port 0 --port-file "$T/fake.port" --api-key "$FAKE_KEY=$FAKE_ACCOUNT" \
    --plain-user "$OTHER_HOST=$PLAIN_USER:$PLAIN_PW" >"$T/logs/fake.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_for 20 "the fake IBM API" "$T/logs/fake.log" test -s "$T/fake.port"
  FAKE_URL="http://127.0.0.1:$(tr -dc 0-9 <"$T/fake.port")"
  wait_for 20 "the fake IBM API" "$T/logs/fake.log" curl -fsS --max-time 2 "$FAKE_URL/_fake/stats"
}

start_registry() {
  REG_PORT=$(free_port)
  mkdir -p "$T/registry/data"
  cat >"$T/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $T/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
  secret: $(openssl rand -hex 16)
EOF
  docker-registry serve "$T/registry/config.yml" >"$T/logs/registry.log" 2>&1 </dev/null &
  PIDS+=($!)
  wait_for 20 "docker-registry" "$T/logs/registry.log" curl -fsS --max-time 2 "http://127.0.0.1:$REG_PORT/v2/"
}

start_nginx() {
  local n=$T/nginx
  mkdir -p "$n/tmp"
  cat >"$n/nginx.conf" <<EOF
daemon off;
user root;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 512; }
http {
  # One line per request with the Basic username offered: which credentials clients present.
  log_format offered '\$remote_user \$status \$request_method \$host \$request_uri';
  access_log $n/access.log offered;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  # The 401s nginx itself answers (auth_request) carry the registry's API version header too.
  map \$upstream_http_docker_distribution_api_version \$api_version { '' 'registry/2.0'; }
  server {
    listen 127.0.0.1:443 ssl;
    server_name ${ALL_HOSTS[*]} localhost;
    ssl_certificate $T/tls/server.crt;
    ssl_certificate_key $T/tls/server.key;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location /v2/ {
      # Every request is judged by the fake IBM API, as IBM's registry judges every request.
      auth_request /_registry_auth;
      add_header Docker-Distribution-Api-Version \$api_version always;
      proxy_pass http://127.0.0.1:$REG_PORT;
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_read_timeout 300;
      proxy_request_buffering off;
      proxy_buffering off;
    }
    location = /_registry_auth {
      internal;
      # nginx copies a 401's WWW-Authenticate from this subrequest into its own answer.
      proxy_pass $FAKE_URL/registry-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Authorization \$http_authorization;
      proxy_set_header X-Original-Method \$request_method;
      proxy_set_header X-Original-Host \$host;
      proxy_set_header X-Original-URI \$request_uri;
    }
  }
}
EOF
  nginx -t -q -c "$n/nginx.conf" -p "$n/" -e "$n/error.log" 2>"$T/logs/nginx-t.log" ||
    die "nginx config: $(cat "$T/logs/nginx-t.log")"
  nginx -c "$n/nginx.conf" -p "$n/" -e "$n/error.log" >"$T/logs/nginx.log" 2>&1 </dev/null &
  PIDS+=($!)
  nginx_401() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$T/tls/ca.crt" https://us.icr.io/v2/)" = 401 ]; }
  wait_for 20 "nginx" "$n/error.log" nginx_401
}

start_dockerd() {
  local d=$T/docker
  mkdir -p "$d/data" "$d/exec"
  printf '{}\n' >"$d/daemon.json"
  # Bridge and iptables off: the engine only pushes and pulls, and must change nothing on the host.
  HOME=$d dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
    --host "unix://$d/docker.sock" --pidfile "$d/dockerd.pid" \
    --bridge none --iptables=false --ip-masq=false >"$T/logs/dockerd.log" 2>&1 </dev/null &
  PIDS+=($!)
  export DOCKER_HOST=unix://$d/docker.sock
  wait_for 60 "dockerd" "$T/logs/dockerd.log" bounded 10 docker version
}

containers_conf() { # root podman/buildah/skopeo, vfs storage, all state in $T
  local c=$T/containers
  mkdir -p "$c/storage" "$c/run" "$c/tmp" "$c/networks"
  cat >"$c/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$c/storage"
runroot = "$c/run"
EOF
  cat >"$c/containers.conf" <<EOF
[network]
network_config_dir = "$c/networks"
[engine]
tmp_dir = "$c/tmp"
events_logger = "file"
cgroup_manager = "cgroupfs"
image_copy_tmp_dir = "$T/tmp"
EOF
  export CONTAINERS_STORAGE_CONF=$c/storage.conf CONTAINERS_CONF=$c/containers.conf
}

make_image() { # a one-layer OCI layout, written here; nothing is pulled from outside
  local d=$T/img arch dg sz ldg lsz cdg csz mdg msz
  arch=$(dpkg --print-architecture)
  mkdir -p "$d/rootfs" "$d/oci/blobs/sha256"
  printf 'hello from the docker-credential-ibmcr e2e suite\n' >"$d/rootfs/hello.txt"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d/rootfs" -cf "$d/layer.tar" .
  blob() {
    dg=$(sha256sum "$1" | cut -d' ' -f1)
    sz=$(stat -c %s "$1")
    cp "$1" "$d/oci/blobs/sha256/$dg"
  }
  blob "$d/layer.tar"
  ldg=$dg lsz=$sz
  printf '{"created":"1970-01-01T00:00:00Z","architecture":"%s","os":"linux","config":{"Cmd":["/hello.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$ldg" >"$d/config.json"
  blob "$d/config.json"
  cdg=$dg csz=$sz
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cdg" "$csz" "$ldg" "$lsz" >"$d/manifest.json"
  blob "$d/manifest.json"
  mdg=$dg msz=$sz
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' \
    "$mdg" "$msz" >"$d/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$d/oci/oci-layout"
  IMG_TAR=$d/hello.tar
  IMG=e2e/hello:1
  bounded 120 skopeo copy -q "oci:$d/oci:1" "docker-archive:$IMG_TAR:$IMG" >"$T/logs/image.log" 2>&1 ||
    die "skopeo copy: $(cat "$T/logs/image.log")"
  bounded 120 docker load -q -i "$IMG_TAR" >>"$T/logs/image.log" 2>&1 || die "docker load: $(cat "$T/logs/image.log")"
  bounded 120 podman load -q -i "$IMG_TAR" >>"$T/logs/image.log" 2>&1 || die "podman load: $(cat "$T/logs/image.log")"
}

as_a_user() { # the environment every scenario runs in: a user's HOME, the helper on PATH
  mkdir -p "$T/home" "$T/run" "$T/bin" "$T/tmp"
  chmod 700 "$T/run"
  install -m 755 "$HELPER_BIN" "$T/bin/docker-credential-ibmcr"
  export HOME=$T/home XDG_RUNTIME_DIR=$T/run TMPDIR=$T/tmp PATH=$T/bin:$PATH
  export IBMCR_STORE=file IBMCLOUD_IAM_API_ENDPOINT=$FAKE_URL IBMCLOUD_CR_API_ENDPOINT=$FAKE_URL
  # Any request to a metadata service would reach the fake and be counted (issue 11: none off-cloud).
  export IBMCR_VPC_METADATA_URL=$FAKE_URL
  unset DOCKER_CONFIG DOCKER_AUTH_CONFIG DOCKER_CONTEXT REGISTRY_AUTH_FILE IBMCLOUD_API_KEY \
    IC_API_KEY IBMCR_MODE IBMCR_LOG IBMCR_HOME XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME \
    IBMCR_IDENTITY IBMCLOUD_CR_TOKEN IBMCLOUD_CR_PROFILE IBMCLOUD_CONFIG_HOME IBMCLOUD_HOME
  STORE_FILE=$HOME/.local/share/ibmcr/store.json
  CACHE_FILE=$HOME/.cache/ibmcr/tokens.json
  DOCKER_CFG=$HOME/.docker/config.json
}

# ---------------------------------------------------------------------------------------------
# Scenario framework. Each scenario runs in a subshell (its own process group, so an interrupt
# can stop all of it), logs to $T/logs/<id>.log, and records failed checks in $REASONS; it never
# stops the suite.
PASSED=0
FAILED=0
declare -A CLIENT_PASSED=() # client -> scenario ids it ran in, for those that passed
declare -a RAN=()

log() { printf '%s\n' "$*" >&3; }
fail() {
  printf '%s\n' "$*" >>"$REASONS"
  log "!! FAIL: $*"
  return 1
}
# capture CMD…: run it; OUT = its stdout+stderr, RC = its exit status; both go to the log
capture() {
  OUT=$("$@" 2>&1)
  RC=$?
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/    /' >&3
  log "    => exit $RC"
  return 0
}
short() { printf '%s' "$1" | tail -n 3 | tr '\n' ' ' | cut -c1-300; }
expect_ok() { # LABEL CMD…
  local label=$1
  shift
  capture "$@"
  [ "$RC" = 0 ] || fail "$label exited $RC: $(short "$OUT")"
}
expect_fail() { # LABEL CMD…
  local label=$1
  shift
  capture "$@"
  [ "$RC" != 0 ] || fail "$label succeeded but should have failed"
}
expect_eq() { [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"; }     # LABEL ACTUAL EXPECTED
expect_ge() { [ "$2" -ge "$3" ] 2>/dev/null || fail "$1: got '$2', expected >= $3"; }
expect_in() { [[ "$2" == *"$3"* ]] || fail "$1: '$3' not in: $(short "$2")"; } # LABEL HAYSTACK NEEDLE
expect_not_in() { [[ "$2" != *"$3"* ]] || fail "$1: must not contain '${4:-$3}'"; }

# Clients, each bounded by $TMO; --foreground keeps them in the scenario's process group.
client() {
  local name=$1
  shift
  printf '%s\n' "$name" >>"$CLIENTS"
  log "\$ ${*}"
  bounded "$TMO" "$@"
}
dk() {
  printf 'docker engine\n' >>"$CLIENTS"
  client "docker CLI" docker "$@"
}
pm() { client podman podman "$@"; }
bh() { client buildah buildah "$@"; }
sk() { client skopeo skopeo "$@"; }
py_client() { # NAME SCRIPT ARGS…: Debian's python running SCRIPT; the log shows NAME and ARGS
  printf '%s\n' "$1" >>"$CLIENTS"
  log "\$ python3 ($1: ${2%%$'\n'*} …) ${*:3}"
  bounded "$TMO" "$PY" -c "$2" "${@:3}"
}
pydocker() { py_client docker-py "$@"; }
pycreds() { py_client dockerpycreds "$@"; }
helper() { bounded 30 docker-credential-ibmcr "$@"; }
# helper_get HOST: RC, HOUT (stdout), HERR (stderr) of `docker-credential-ibmcr get`
helper_get() {
  local e=$T/tmp/helper.err
  HOUT=$(printf '%s' "$1" | helper get 2>"$e")
  RC=$?
  HERR=$(cat "$e")
  log "\$ printf $1 | docker-credential-ibmcr get  => exit $RC"
  log "    stdout: $(printf '%s' "$HOUT" | sed 's/"Secret":"[^"]*"/"Secret":"…"/')"
  log "    stderr: $HERR"
}
helper_store() { # HOST USER SECRET
  jq -cn --arg h "$1" --arg u "$2" --arg s "$3" '{ServerURL:$h,Username:$u,Secret:$s}' |
    helper store
}
listed() { helper list | jq -r --arg h "$1" '.[$h] // empty'; } # HOST -> username or empty

# The fake IBM API's control endpoints.
fake_get() { curl -fsS --max-time 10 "$FAKE_URL$1"; }
fake_post() { curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' -d "${2:-{\}}" "$FAKE_URL$1" >/dev/null; }
fstat() { fake_get /_fake/stats | jq -r "($1) // 0"; } # e.g. fstat .iam_mints
user_count() { fstat ".registry_auth_by_user[\"$1\"]"; }
fake_reset() { fake_post /_fake/reset; }
fake_config() { fake_post /_fake/config "$1"; }
fake_fault() { fake_post /_fake/fault "$1"; }
stats_line() { log "fake stats: $(fake_get /_fake/stats | jq -c .)"; log "offered (user status count): $(offered_summary)"; }
# What clients offered the registry, from nginx's log: denied requests included, which the fake's
# stats do not attribute to a user. Counted from the last fresh_counts.
offered() { tail -n +"${OFFERED_FROM:-1}" "$T/nginx/access.log"; }
offered_count() { # USER [STATUS]   (USER "-" = no credentials)
  offered | awk -v u="$1" -v s="${2:-}" '$1 == u && (s == "" || $2 == s) {n++} END {print n+0}'
}
offered_summary() { offered | awk '{n[$1 " " $2]++} END {for (k in n) print k, n[k]}' | sort | tr '\n' ';'; }
fresh_counts() { # zero the fake's stats and the offered log
  fake_reset
  OFFERED_FROM=$(($(wc -l <"$T/nginx/access.log") + 1))
}

# Images: a fresh local tag per scenario, nothing cached locally before a pull.
dk_tag() { bounded 60 docker tag "$IMG" "$1"; }
pm_tag() { bounded 60 podman tag "$IMG" "$1"; }
dk_rmi() { bounded 60 docker rmi -f "$@" >/dev/null 2>&1 || true; }
pm_rmi() { bounded 60 podman rmi -f "$@" >/dev/null 2>&1 || true; }
cold_cache() { rm -f "$CACHE_FILE"; }
sleep_until() { # EPOCH: sleep until that second has passed
  local now
  now=$(date +%s)
  ((now >= $1)) || sleep $(($1 - now))
}
no_secret_in() { # LABEL FILE: neither the API key nor any base64 auth nor a JWT in FILE
  local label=$1 f=$2 c
  [ -e "$f" ] || return 0
  c=$(cat "$f")
  expect_not_in "$label" "$c" "$FAKE_KEY" "the API key"
  [ "$(jq '[.. | objects | .auth? // empty | select(. != "")] | length' "$f")" = 0 ] ||
    fail "$label: has an \"auth\" secret: $(jq -c .auths "$f")"
  expect_not_in "$label" "$c" "eyJ" "a token"
  expect_not_in "$label" "$c" "$PLAIN_PW" "the plain password"
}

reset_world() { # between scenarios: fake back to defaults, nothing stored, cold cache
  local h
  fake_post /_fake/faults/clear
  fake_config '{"iam_lifetime":3600,"registry_token_lifetime":3600,"refuse_token_creation":false}'
  for h in $(helper list 2>/dev/null | jq -r 'keys[]' 2>/dev/null); do
    printf '%s' "$h" | helper erase >/dev/null 2>&1
  done
  rm -rf "$HOME/.bluemix" "$HOME/.ibmcloud" # an ibmcloud login session (scenario k)
  cold_cache
  fresh_counts
}

run_scenario() { # ID NAME FUNCTION
  local id=$1 name=$2 fn=$3 rc=0 c
  selected "$id" || return 0
  RAN+=("$id")
  REASONS=$T/logs/$id.reasons CLIENTS=$T/logs/$id.clients
  : >"$REASONS"
  : >"$CLIENTS"
  reset_world >"$T/logs/$id.reset.log" 2>&1 || fail "reset before the scenario failed" 3>/dev/null
  set -m
  (
    exec 3>>"$T/logs/$id.log"
    set +e
    "$fn"
  ) >>"$T/logs/$id.log" 2>&1 </dev/null &
  SCEN_PID=$!
  set +m
  wait "$SCEN_PID" || rc=$?
  SCEN_PID=""
  [ "$rc" = 0 ] || printf 'scenario stopped with exit %s\n' "$rc" >>"$REASONS"
  if [ -s "$REASONS" ]; then
    FAILED=$((FAILED + 1))
    local n
    n=$(wc -l <"$REASONS")
    printf 'not ok - %s: %s%s\n' "$name" "$(head -n 1 "$REASONS")" \
      "$( ((n > 1)) && printf ' (and %d more)' $((n - 1)))"
    sed 's/^/#   /' "$REASONS" >&2
    say "  last lines of its log:"
    tail -n 25 "$T/logs/$id.log" | sed 's/^/#   | /' >&2
  else
    PASSED=$((PASSED + 1))
    printf 'ok - %s\n' "$name"
    while read -r c; do
      [[ " ${CLIENT_PASSED[$c]:-} " == *" $id "* ]] || CLIENT_PASSED[$c]="${CLIENT_PASSED[$c]:-}${CLIENT_PASSED[$c]:+ }$id"
    done < <(sort -u "$CLIENTS")
  fi
}

SELECTED=("$@")
selected() { # ID: was it asked for? (configure always runs: the others build on it)
  ((${#SELECTED[@]} == 0)) || [ "$1" = configure ] && return 0
  local s
  for s in "${SELECTED[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# shellcheck source=e2e/scenarios.sh
. "$E2E_DIR/scenarios.sh"

# ---------------------------------------------------------------------------------------------
main() {
  local start
  start=$(date +%s)
  install_packages
  build_binaries
  # Checked before anything is touched: while another run (or the nginx of a run killed with
  # SIGKILL) holds the port, its hosts block and certs.d entries are not stale.
  if (exec 3<>/dev/tcp/127.0.0.1/443) 2>/dev/null; then
    die "127.0.0.1:443 is in use (another e2e run? leftovers name /tmp/ibmcr-e2e.* in their command line)"
  fi
  T=$(mktemp -d /tmp/ibmcr-e2e.XXXXXX)
  chmod 755 "$T"
  mkdir -p "$T/logs"
  say "working in $T"
  # Written outside any configurable root: dockerd 20.10's identity key and plugin dir, and the
  # blob-info cache and short-name lock of root c/image tools (podman, buildah, skopeo).
  created_by_tools_later /etc/docker/key.json /run/docker/plugins \
    /var/lib/containers/cache/blob-info-cache-v1.boltdb /var/cache/containers/short-name-aliases.conf.lock
  make_certs
  add_hosts_block
  install_trust
  start_fake
  start_registry
  start_nginx
  start_dockerd
  containers_conf
  as_a_user
  make_image
  say "set-up done in $(($(date +%s) - start))s: fake $FAKE_URL, registry 127.0.0.1:$REG_PORT, nginx 127.0.0.1:443"

  run_scenario configure "configure writes credHelpers and credsStore, keeps secrets out" scenario_configure
  run_scenario a "a: docker login -u iamapikey, then push/pull with minted iambearer only" scenario_a
  run_scenario b "b: podman, buildah, skopeo push/pull; podman login keeps docker working" scenario_b
  run_scenario b2 "b2: podman login with DOCKER_CONFIG set rewrites it, docker keeps working" scenario_b2
  run_scenario c "c: a pull after token expiry succeeds with exactly one new mint" scenario_c
  run_scenario d "d: registry-token mode: replaces an expired token, falls back to bearer, revokes" scenario_d
  run_scenario e "e: a wrong API key fails with BXNIM0415E, stores nothing, never printed" scenario_e
  run_scenario f "f: a non-IBM registry works through the same configuration" scenario_f
  run_scenario g "g: logout: the client is refused, list forgets the host, podman logout is clean" scenario_g
  run_scenario h "h: ten parallel pulls, docker and podman, cold cache: one mint" scenario_h
  run_scenario i "i: IAM down: cached token keeps working; expired: one clear line, then recovery" scenario_i
  run_scenario j "j: no API key: a CR token file + trusted profile, docker credsStore only: one mint" scenario_j
  run_scenario k "k: no API key: an ibmcloud login session, refreshed once, its file never written" scenario_k
  run_scenario l "l: kubelet plugin: strict v1 reply, skopeo pushes and pulls with it; SA-token path" scenario_l
  run_scenario m "m: the README's set-up: login (1 IAM request), push and pull, doctor all ok" scenario_m

  if ((${#SELECTED[@]} == 0)); then write_tested_with; fi
  say "suite ran in $(($(date +%s) - start))s"
  printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
  ((FAILED == 0))
}

write_tested_with() {
  local f=$E2E_DIR/TESTED-WITH.md new=$T/TESTED-WITH.md c v
  declare -A ver=()
  ver["docker CLI"]=$(bounded 20 docker version --format '{{.Client.Version}}' 2>/dev/null)
  ver["docker engine"]=$(bounded 20 docker version --format '{{.Server.Version}}' 2>/dev/null)
  ver[podman]=$(bounded 20 podman version --format '{{.Client.Version}}' 2>/dev/null)
  ver[buildah]=$(bounded 20 buildah version --json 2>/dev/null | jq -r .version)
  ver[skopeo]=$(bounded 20 skopeo --version 2>/dev/null | awk '{print $NF}')
  ver[docker-py]=$(bounded 20 $PY -c 'import docker; print(docker.__version__)' 2>/dev/null)
  ver[dockerpycreds]=$(bounded 20 $PY -c 'import importlib.metadata as m; print(m.version("docker-pycreds"))' 2>/dev/null)
  {
    printf '# Tested with\n\n'
    # shellcheck disable=SC2016 # backquotes are Markdown
    printf 'Written by `e2e/run.sh` from the clients that ran in its last full run (do not edit by\n'
    printf 'hand): each version as the tool reports it, and the scenarios of e2e/README.md in which\n'
    printf 'the client ran and which passed.\n\n'
    printf '| client | version | scenarios passed |\n|---|---|---|\n'
    for c in "docker CLI" "docker engine" podman buildah skopeo docker-py dockerpycreds; do
      v=${CLIENT_PASSED[$c]:-}
      printf '| %s | %s | %s |\n' "$c" "${ver[$c]:-?}" "${v:-none}"
    done
    printf '\nRegistry side: %s behind nginx %s, on %s.\n' \
      "$(docker-registry --version | awk '{print "docker-registry (distribution) " $NF}')" \
      "$(nginx -v 2>&1 | sed 's|.*nginx/||')" \
      "$(. /etc/os-release && printf '%s' "$PRETTY_NAME")"
  } >"$new"
  cp "$new" "$f"
  [ "$(git -C "$REPO" show HEAD:e2e/TESTED-WITH.md 2>/dev/null)" = "$(cat "$new")" ] ||
    say "e2e/TESTED-WITH.md differs from the committed one: commit it with the change that caused it"
}

main
