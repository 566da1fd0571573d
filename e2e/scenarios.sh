# Scenarios of the end-to-end suite (issue 6), sourced by e2e/run.sh, which provides the set-up,
# the client wrappers (dk, pm, bh, sk, pydocker, pycreds: each bounded by a timeout) and the
# checks (expect_*, fail). Each scenario starts from reset_world: fake at its defaults, nothing
# stored, cold token cache. It logs out of what it logged into, so the next one starts clean.
# shellcheck shell=bash disable=SC2154

# --- Python snippets: docker-py and dockerpycreds as a program would use them -----------------
PY_PULL='import sys, docker
c = docker.from_env(timeout=100)
print(c.images.pull(sys.argv[1], tag=sys.argv[2]).id)'
PY_PUSH='import sys, docker
c = docker.from_env(timeout=100)
out = c.images.push(sys.argv[1], tag=sys.argv[2])
print(out)
sys.exit(1 if "errorDetail" in out else 0)'
# Never prints a secret: its SHA-256 instead.
PY_CREDS_GET='import sys, json, hashlib, dockerpycreds
r = dockerpycreds.Store("ibmcr").get(sys.argv[1])
print(json.dumps({"ServerURL": r.get("ServerURL"), "Username": r["Username"],
                  "SecretSha256": hashlib.sha256(r["Secret"].encode()).hexdigest()}))'
PY_CREDS_STORE='import sys, dockerpycreds
dockerpycreds.Store("ibmcr").store(server=sys.argv[1], username=sys.argv[2], secret=sys.stdin.read().strip())'
PY_CREDS_ERASE='import sys, dockerpycreds
dockerpycreds.Store("ibmcr").erase(sys.argv[1])'

sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
make_jwt() { # EXP: an unsigned-looking registry token whose exp is EXP
  printf '%s.%s.%s' "$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)" \
    "$(printf '{"jti":"e2e-%s","exp":%d,"iat":%d}' "$(openssl rand -hex 8)" "$1" $(($1 - 86400)) | b64url)" \
    "$(printf 'not-a-signature' | b64url)"
}
credhelper_of() { jq -r --arg h "$2" '.credHelpers[$h] // empty' "$1" 2>/dev/null; } # FILE HOST
expect_credhelpers() { # LABEL FILE: every IBM host served here routed to ibmcr
  local h
  for h in "${IBM_HOSTS[@]}"; do
    expect_eq "$1: credHelpers[$h]" "$(credhelper_of "$2" "$h")" ibmcr
  done
}
expect_only_bearer() { # LABEL: since fresh_counts the registry was offered minted iambearer only
  stats_line
  expect_eq "$1: requests offering the API key (iamapikey)" "$(offered_count iamapikey)" 0
  expect_eq "$1: requests offering a registry token" "$(offered_count token)" 0
  expect_ge "$1: requests accepted as iambearer" "$(user_count iambearer)" 1
  expect_eq "$1: iambearer requests refused" "$(offered_count iambearer 401)" 0
}
iam_requests() { fake_get /_fake/requests | jq '[.[] | select(.path | startswith("/identity/"))] | length'; }
login_key() { # CLIENT-WRAPPER HOST: log in with the known API key, as a user would
  expect_ok "$1 login -u iamapikey $2" "$1" login -u iamapikey --password-stdin "$2" <<<"$FAKE_KEY"
  expect_eq "list after $1 login $2" "$(listed "$2")" iamapikey
}
one_line() { # LABEL TEXT
  if [ -z "$2" ] || [ "$(printf '%s\n' "$2" | wc -l)" != 1 ]; then fail "$1: not exactly one line: $(short "$2")"; fi
}

# --- configure ---------------------------------------------------------------------------------
scenario_configure() {
  local f sums
  expect_ok "docker-credential-ibmcr configure" helper configure
  expect_credhelpers "config.json" "$DOCKER_CFG"
  expect_eq "config.json credsStore" "$(jq -r '.credsStore // empty' "$DOCKER_CFG")" ibmcr
  expect_eq "config.json credHelpers[$OTHER_HOST] (not an IBM host)" "$(credhelper_of "$DOCKER_CFG" "$OTHER_HOST")" ""
  for f in "$HOME/.config/containers/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json"; do
    expect_credhelpers "$f" "$f"
  done
  sums=$(sha256sum "$DOCKER_CFG" "$HOME/.config/containers/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json")
  expect_ok "configure again" helper configure
  expect_eq "a second configure changes nothing" \
    "$(sha256sum "$DOCKER_CFG" "$HOME/.config/containers/auth.json" "$XDG_RUNTIME_DIR/containers/auth.json")" "$sums"
}

# --- a: docker login once, then push/pull with minted bearer tokens only -----------------------
scenario_a() {
  local r=us.icr.io/e2e/a-docker:1 sum
  login_key dk us.icr.io
  no_secret_in "config.json after docker login" "$DOCKER_CFG"
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull" dk pull "$r"
  # docker-py reads the same config.json (credHelpers) and asks the helper.
  dk_rmi "$r"
  expect_ok "docker-py pull" pydocker "$PY_PULL" us.icr.io/e2e/a-docker 1
  dk_tag us.icr.io/e2e/a-docker:py
  expect_ok "docker-py push" pydocker "$PY_PUSH" us.icr.io/e2e/a-docker py
  # dockerpycreds calls the helper directly, with docker-py's URL form of the host.
  expect_ok "dockerpycreds get" pycreds "$PY_CREDS_GET" https://us.icr.io/v1/
  expect_eq "dockerpycreds get: Username" "$(jq -r .Username <<<"$OUT" 2>/dev/null)" iambearer
  [ "$(jq -r .SecretSha256 <<<"$OUT" 2>/dev/null)" != "$(sha "$FAKE_KEY")" ] ||
    fail "dockerpycreds get answered the API key itself"
  # `docker login` with no flags gets the minted token and stores it back: the helper must absorb
  # that store and keep the API key (decisions §4).
  sum=$(sha256sum "$STORE_FILE")
  expect_ok "docker login us.icr.io (no flags)" dk login us.icr.io
  expect_eq "list after docker login with no flags" "$(listed us.icr.io)" iamapikey
  expect_eq "store file after docker login with no flags (unchanged)" "$(sha256sum "$STORE_FILE")" "$sum"
  expect_eq "IAM mints for docker push/pull, docker-py pull/push, docker login" "$(fstat .iam_mints)" 1
  expect_only_bearer "after the login"
  no_secret_in "config.json after push/pull" "$DOCKER_CFG"
  expect_ok "docker logout" dk logout us.icr.io
  expect_eq "list after logout" "$(listed us.icr.io)" ""
}

# --- b: podman, buildah, skopeo; docker and podman side by side --------------------------------
scenario_b() {
  local rp=de.icr.io/e2e/b-podman:1 rb=private.us.icr.io/e2e/b-buildah:1 rs=de.icr.io/e2e/b-skopeo:1
  local rd=de.icr.io/e2e/b-docker:1 before f
  before=$(jq -S . "$DOCKER_CFG")
  login_key pm de.icr.io
  expect_eq "docker's config.json after podman login (unchanged)" "$(jq -S . "$DOCKER_CFG")" "$before"
  for f in "$XDG_RUNTIME_DIR/containers/auth.json" "$HOME/.config/containers/auth.json"; do
    expect_credhelpers "$f after podman login" "$f"
    no_secret_in "$f after podman login" "$f"
  done
  login_key bh private.us.icr.io
  fresh_counts
  pm_tag "$rp"
  expect_ok "podman push" pm push "$rp"
  pm_rmi "$rp"
  expect_ok "podman pull" pm pull "$rp"
  pm_tag "$rb"
  expect_ok "buildah push" bh push "$rb"
  pm_rmi "$rb"
  expect_ok "buildah pull" bh pull "$rb"
  expect_ok "skopeo copy" sk copy "docker-archive:$IMG_TAR" "docker://$rs"
  expect_ok "skopeo inspect" sk inspect "docker://$rs"
  expect_in "skopeo inspect" "$OUT" '"Digest"'
  # Side by side: docker pushes to the host podman logged into (docker's credHelpers route it to
  # the same helper), podman pulls what docker pushed and docker what podman pushed.
  dk_tag "$rd"
  expect_ok "docker push beside podman" dk push "$rd"
  pm_rmi "$rd"
  expect_ok "podman pull of docker's push" pm pull "$rd"
  dk_rmi "$rp"
  expect_ok "docker pull of podman's push" dk pull "$rp"
  expect_eq "IAM mints for all of it (one key, every host)" "$(fstat .iam_mints)" 1
  expect_only_bearer "podman/buildah/skopeo/docker"
  expect_ok "podman logout" pm logout de.icr.io
  expect_eq "list after podman logout" "$(listed de.icr.io)" ""
  expect_ok "buildah logout" bh logout private.us.icr.io
  expect_eq "list after buildah logout" "$(listed private.us.icr.io)" ""
  expect_eq "docker's config.json after podman/buildah logout (unchanged)" "$(jq -S . "$DOCKER_CFG")" "$before"
}

# --- b2: DOCKER_CONFIG set: podman login rewrites docker's config.json itself -------------------
scenario_b2() {
  local r=de.icr.io/e2e/b2-docker-config:1 cfg
  export DOCKER_CONFIG=$HOME/.docker-config-env
  cfg=$DOCKER_CONFIG/config.json
  expect_ok "configure with DOCKER_CONFIG set" helper configure
  expect_credhelpers "\$DOCKER_CONFIG/config.json" "$cfg"
  login_key pm de.icr.io
  # containers/image rewrites this file on login (testbed §4): credHelpers must survive it.
  expect_credhelpers "\$DOCKER_CONFIG/config.json after podman login" "$cfg"
  no_secret_in "\$DOCKER_CONFIG/config.json after podman login" "$cfg"
  # A podman login to a host without a credHelpers entry stores into this very file, and
  # containers/image rewrites it (drops credsStore, writes base64 auths): the IBM hosts must
  # still go through the helper afterwards.
  expect_ok "podman login $OTHER_HOST (DOCKER_CONFIG)" pm login -u "$PLAIN_USER" --password-stdin "$OTHER_HOST" <<<"$PLAIN_PW"
  log "after podman login $OTHER_HOST: $(jq -c '{credsStore, auths: (.auths // {} | keys)}' "$cfg")"
  expect_credhelpers "\$DOCKER_CONFIG/config.json after podman login $OTHER_HOST" "$cfg"
  expect_not_in "\$DOCKER_CONFIG/config.json" "$(cat "$cfg")" "$FAKE_KEY" "the API key"
  expect_eq "auths for IBM hosts in \$DOCKER_CONFIG/config.json" \
    "$(jq -c '[.auths // {} | to_entries[] | select(.key != "'"$OTHER_HOST"'") | select(.value.auth // "" != "")] | length' "$cfg")" 0
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push (DOCKER_CONFIG, after podman login)" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull (DOCKER_CONFIG, after podman login)" dk pull "$r"
  pm_rmi "$r"
  expect_ok "podman pull (DOCKER_CONFIG)" pm pull "$r"
  expect_eq "IAM mints" "$(fstat .iam_mints)" 1
  expect_only_bearer "with DOCKER_CONFIG"
  expect_ok "podman logout" pm logout de.icr.io
  expect_eq "list after podman logout" "$(listed de.icr.io)" ""
  expect_ok "podman logout $OTHER_HOST" pm logout "$OTHER_HOST"
  expect_credhelpers "\$DOCKER_CONFIG/config.json after podman logout" "$cfg"
  # configure puts back what the rewrite dropped.
  expect_ok "configure again" helper configure
  expect_eq "credsStore after configure again" "$(jq -r '.credsStore // empty' "$cfg")" ibmcr
}

# --- c: expiry -----------------------------------------------------------------------------------
scenario_c() {
  local r=us.icr.io/e2e/c-expiry:1 t
  login_key dk us.icr.io
  # decisions §7: at least 20 s of life, the registry re-checks the token on every request.
  fake_config '{"iam_lifetime":25}'
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push (25 s token)" dk push "$r"
  t=$(date +%s)
  expect_eq "IAM mints for the push" "$(fstat .iam_mints)" 1
  log "waiting for the token to expire"
  sleep_until $((t + 26))
  fresh_counts
  dk_rmi "$r"
  expect_ok "docker pull after expiry" dk pull "$r"
  pm_rmi "$r"
  expect_ok "podman pull after expiry" pm pull "$r"
  expect_eq "new IAM mints after expiry" "$(fstat .iam_mints)" 1
  expect_only_bearer "after expiry"
  expect_ok "docker logout" dk logout us.icr.io
}

# --- d: registry-token mode ---------------------------------------------------------------------
scenario_d() {
  local h=registry.ng.bluemix.net r=registry.ng.bluemix.net/e2e/d-token:1 rf=us.icr.io/e2e/d-fallback:1
  local expired minted code
  export IBMCR_MODE=registry-token
  # One key for the global registry serves every region (decisions §4).
  login_key dk icr.io
  expired=$(make_jwt $(($(date +%s) - 3600)))
  helper_store "$h" token "$expired" || fail "store of an expired registry token"
  expect_eq "list: the stored token" "$(listed "$h")" token
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push with an expired stored token" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull" dk pull "$r"
  stats_line
  expect_eq "registry tokens created" "$(fstat .registry_token_creates)" 1
  expect_ge "requests accepted as token" "$(user_count token)" 1
  expect_eq "token requests refused (the expired one offered?)" "$(offered_count token 401)" 0
  expect_eq "requests offering the API key" "$(offered_count iamapikey)" 0
  expect_eq "requests offering iambearer" "$(offered_count iambearer)" 0
  helper_get "$h"
  expect_eq "helper get $h: exit" "$RC" 0
  expect_eq "helper get $h: Username" "$(jq -r .Username <<<"$HOUT" 2>/dev/null)" token
  minted=$(jq -r .Secret <<<"$HOUT" 2>/dev/null)
  if [ -z "$minted" ] || [ "$minted" = "$expired" ]; then fail "helper get $h does not answer a new token"; fi
  expect_ok "docker logout $h" dk logout "$h"
  expect_eq "registry tokens revoked by the logout" "$(fstat .registry_token_deletes)" 1
  expect_eq "list after logout" "$(listed "$h")" ""
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$T/tls/ca.crt" \
    -u "token:$minted" "https://$h/v2/")
  expect_eq "the revoked token at the registry" "$code" 401
  # Creation refused, as on today's service: one line, then bearer.
  fake_config '{"refuse_token_creation":true}'
  cold_cache
  fresh_counts
  dk_tag "$rf"
  expect_ok "docker push with token creation refused" dk push "$rf"
  expect_eq "lines naming the refusal (CRG0140E) in docker push's output" "$(grep -c CRG0140E <<<"$OUT")" 1
  pm_rmi "$rf"
  expect_ok "podman pull with token creation refused" pm pull "$rf"
  expect_eq "lines naming the refusal once it is remembered" "$(grep -c CRG0140E <<<"$OUT")" 0
  expect_eq "registry tokens created while refused" "$(fstat .registry_token_creates)" 0
  expect_only_bearer "token creation refused"
  expect_ok "docker logout icr.io" dk logout icr.io
}

# --- e: a wrong API key ---------------------------------------------------------------------------
scenario_e() {
  local bad bad2 r=de.icr.io/e2e/e-wrong:1 hits
  bad="e2e-wrong-$(openssl rand -hex 16)"
  bad2="e2e-wrong-$(openssl rand -hex 16)"
  # 1. From the environment.
  export IBMCLOUD_API_KEY=$bad
  helper_get de.icr.io
  expect_eq "helper get with a wrong key: exit" "$RC" 1
  one_line "helper get stdout" "$HOUT"
  expect_in "helper get stdout" "$HOUT" BXNIM0415E
  expect_eq "helper get stderr = stdout" "$HERR" "$HOUT"
  expect_not_in "helper get output" "$HOUT$HERR" "$bad" "the key"
  dk_rmi "$r"
  expect_fail "docker pull (wrong key in env)" dk pull "$r"
  expect_in "docker pull output" "$OUT" BXNIM0415E
  expect_not_in "docker pull output" "$OUT" "$bad" "the key"
  expect_fail "podman pull (wrong key in env)" pm pull "$r"
  expect_in "podman pull output" "$OUT" BXNIM0415E
  expect_not_in "podman pull output" "$OUT" "$bad" "the key"
  expect_fail "skopeo inspect (wrong key in env)" sk inspect "docker://$r"
  expect_in "skopeo inspect output" "$OUT" BXNIM0415E
  expect_not_in "skopeo inspect output" "$OUT" "$bad" "the key"
  expect_fail "docker-py pull (wrong key in env)" pydocker "$PY_PULL" de.icr.io/e2e/e-wrong 1
  expect_in "docker-py pull output" "$OUT" BXNIM0415E
  expect_not_in "docker-py pull output" "$OUT" "$bad" "the key"
  stats_line
  expect_eq "IAM mints" "$(fstat .iam_mints)" 0
  expect_ge "IAM failures" "$(fstat .iam_failures)" 1
  expect_eq "list (nothing stored)" "$(helper list | jq -c .)" "{}"
  hits=$(grep -rlF -- "$bad" "$HOME" 2>/dev/null)
  expect_eq "files under HOME holding the wrong key" "$hits" ""
  unset IBMCLOUD_API_KEY
  # 2. Stored by hand through the protocol, as `docker login` without an engine check would.
  helper_store de.icr.io iamapikey "$bad2" || fail "store of a wrong key"
  pm_tag "$r"
  expect_fail "podman push (wrong key stored)" pm push "$r"
  expect_in "podman push output" "$OUT" BXNIM0415E
  expect_not_in "podman push output" "$OUT" "$bad2" "the key"
  dk_tag "$r"
  expect_fail "docker push (wrong key stored)" dk push "$r"
  expect_in "docker push output" "$OUT" BXNIM0415E
  expect_not_in "docker push output" "$OUT" "$bad2" "the key"
  expect_eq "IAM mints" "$(fstat .iam_mints)" 0
  hits=$(grep -rlF -- "$bad2" "$HOME" 2>/dev/null)
  expect_eq "files under HOME holding the stored wrong key" "$hits" "$STORE_FILE"
  expect_eq "list: the stored key is kept as the user stored it" "$(listed de.icr.io)" iamapikey
  printf 'de.icr.io' | helper erase || fail "erase"
}

# --- f: a non-IBM registry through the same configuration ----------------------------------------
scenario_f() {
  local h=$OTHER_HOST r=$OTHER_HOST/e2e/f-plain:1 rp=$OTHER_HOST/e2e/f-podman:1
  expect_ok "docker login $h" dk login -u "$PLAIN_USER" --password-stdin "$h" <<<"$PLAIN_PW"
  expect_eq "list after docker login" "$(listed "$h")" "$PLAIN_USER"
  no_secret_in "config.json after docker login $h" "$DOCKER_CFG"
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull" dk pull "$r"
  dk_rmi "$r"
  expect_ok "docker-py pull (credsStore)" pydocker "$PY_PULL" "$OTHER_HOST/e2e/f-plain" 1
  expect_ok "dockerpycreds get" pycreds "$PY_CREDS_GET" "$h"
  expect_eq "dockerpycreds get: Username" "$(jq -r .Username <<<"$OUT" 2>/dev/null)" "$PLAIN_USER"
  expect_eq "dockerpycreds get: Secret" "$(jq -r .SecretSha256 <<<"$OUT" 2>/dev/null)" "$(sha "$PLAIN_PW")"
  stats_line
  expect_ge "requests accepted as $PLAIN_USER" "$(user_count "plain:$PLAIN_USER")" 1
  expect_eq "requests with credentials refused" "$(($(offered | awk '$1 != "-" && $2 == 401' | wc -l)))" 0
  expect_eq "IAM calls for a non-IBM host" "$(iam_requests)" 0
  no_secret_in "config.json after push/pull" "$DOCKER_CFG"
  expect_ok "docker logout $h" dk logout "$h"
  expect_eq "list after docker logout" "$(listed "$h")" ""
  dk_rmi "$r"
  expect_fail "docker pull after logout" dk pull "$r"
  # dockerpycreds store/erase: the helper keeps what any client stores.
  expect_ok "dockerpycreds store" pycreds "$PY_CREDS_STORE" "$h" "$PLAIN_USER" <<<"$PLAIN_PW"
  expect_eq "list after dockerpycreds store" "$(listed "$h")" "$PLAIN_USER"
  dk_rmi "$r"
  expect_ok "docker pull with what dockerpycreds stored" dk pull "$r"
  expect_ok "dockerpycreds erase" pycreds "$PY_CREDS_ERASE" "$h"
  expect_eq "list after dockerpycreds erase" "$(listed "$h")" ""
  # podman ignores credsStore (testbed §4): it keeps its own login for this host, beside docker's.
  expect_ok "podman login $h" pm login -u "$PLAIN_USER" --password-stdin "$h" <<<"$PLAIN_PW"
  pm_tag "$rp"
  expect_ok "podman push" pm push "$rp"
  pm_rmi "$rp"
  expect_ok "podman pull" pm pull "$rp"
  expect_ok "podman logout $h" pm logout "$h"
  pm_rmi "$rp"
  expect_fail "podman pull after logout" pm pull "$rp"
}

# --- g: logout --------------------------------------------------------------------------------------
scenario_g() {
  local r=us.icr.io/e2e/g-logout:1 rp=de.icr.io/e2e/g-podman:1
  login_key dk us.icr.io
  dk_tag "$r"
  expect_ok "docker push" dk push "$r"
  expect_ok "docker logout" dk logout us.icr.io
  expect_eq "list after docker logout" "$(listed us.icr.io)" ""
  helper_get us.icr.io
  expect_eq "helper get after logout: exit" "$RC" 1
  expect_eq "helper get after logout: stdout" "$HOUT" "credentials not found in native keychain"
  fresh_counts
  dk_rmi "$r"
  expect_fail "docker pull after logout" dk pull "$r"
  expect_fail "skopeo inspect after logout" sk inspect "docker://$r"
  [[ "$OUT" == *401* || "$OUT" == *nauthorized* ]] || fail "skopeo inspect after logout: no 401 in: $(short "$OUT")"
  stats_line
  expect_eq "registry requests accepted after logout" "$(fstat .registry_auth_ok)" 0
  expect_ge "registry requests refused after logout" "$(fstat .registry_auth_denied)" 1
  # podman: login, logout, refused, and logout when not logged in exits cleanly (testbed §4: 4.3.1
  # crashes with a stack overflow if erase answers not-found).
  login_key pm de.icr.io
  pm_tag "$rp"
  expect_ok "podman push" pm push "$rp"
  expect_ok "podman logout" pm logout de.icr.io
  expect_eq "list after podman logout" "$(listed de.icr.io)" ""
  pm_rmi "$rp"
  expect_fail "podman pull after logout" pm pull "$rp"
  [[ "$OUT" == *401* || "$OUT" == *nauthorized* ]] || fail "podman pull after logout: no 401 in: $(short "$OUT")"
  expect_ok "podman logout de.icr.io again (not logged in)" pm logout de.icr.io
  expect_not_in "podman logout again" "$OUT" "fatal error"
  expect_ok "podman logout us.icr.io (logged out by docker)" pm logout us.icr.io
  expect_not_in "podman logout us.icr.io" "$OUT" "fatal error"
}

# --- h: ten parallel pulls from a cold cache ------------------------------------------------------
scenario_h() {
  local r=us.icr.io/e2e/h-parallel:1 i ok=0 rc
  login_key dk us.icr.io
  dk_tag "$r"
  expect_ok "docker push" dk push "$r"
  dk_rmi "$r"
  pm_rmi "$r"
  cold_cache
  fresh_counts
  for i in 1 2 3 4 5; do
    (
      dk pull "$r" >"$T/logs/h.docker.$i.log" 2>&1
      echo $? >"$T/logs/h.docker.$i.rc"
    ) &
    (
      pm pull "$r" >"$T/logs/h.podman.$i.log" 2>&1
      echo $? >"$T/logs/h.podman.$i.rc"
    ) &
  done
  wait
  for i in 1 2 3 4 5; do
    for c in docker podman; do
      rc=$(cat "$T/logs/h.$c.$i.rc" 2>/dev/null || echo none)
      if [ "$rc" = 0 ]; then ok=$((ok + 1)); else
        fail "parallel $c pull $i exited $rc: $(short "$(cat "$T/logs/h.$c.$i.log")")"
      fi
    done
  done
  expect_eq "parallel pulls that succeeded" "$ok" 10
  expect_eq "IAM mints for ten parallel pulls from a cold cache" "$(fstat .iam_mints)" 1
  expect_only_bearer "parallel pulls"
  expect_ok "docker logout" dk logout us.icr.io
}

# --- i: IAM unreachable or answering 500 -------------------------------------------------------------
scenario_i() {
  local r=us.icr.io/e2e/i-iam-down:1 sum t line
  login_key dk us.icr.io
  dk_tag "$r"
  expect_ok "docker push" dk push "$r"
  sum=$(sha256sum "$STORE_FILE")
  # 1. A still-valid cached token: pulls keep working and IAM is not called.
  fresh_counts
  fake_fault '{"method":"POST","path_prefix":"/identity/token","kind":"close","times":0}'
  dk_rmi "$r"
  expect_ok "docker pull with IAM unreachable, valid cached token" dk pull "$r"
  pm_rmi "$r"
  expect_ok "podman pull with IAM unreachable, valid cached token" pm pull "$r"
  expect_eq "IAM requests while the cached token is valid" "$(iam_requests)" 0
  fake_post /_fake/faults/clear
  # 2. The cached token expired while IAM answers 500: one clear line, the key untouched.
  fake_config '{"iam_lifetime":20}'
  cold_cache
  dk_rmi "$r"
  expect_ok "docker pull (20 s token)" dk pull "$r"
  t=$(date +%s)
  fake_fault '{"method":"POST","path_prefix":"/identity/token","kind":"status","status":500,"times":0}'
  log "waiting for the token to expire"
  sleep_until $((t + 21))
  fresh_counts
  helper_get us.icr.io
  expect_eq "helper get with IAM at 500: exit" "$RC" 1
  one_line "helper get with IAM at 500: stdout" "$HOUT"
  expect_eq "helper get with IAM at 500: stderr = stdout" "$HERR" "$HOUT"
  expect_in "helper get with IAM at 500" "$HOUT" 500
  expect_not_in "helper get with IAM at 500" "$HOUT" "$FAKE_KEY" "the key"
  line=$HOUT
  dk_rmi "$r"
  expect_fail "docker pull with IAM at 500" dk pull "$r"
  expect_in "docker pull output" "$OUT" "$line"
  pm_rmi "$r"
  expect_fail "podman pull with IAM at 500" pm pull "$r"
  expect_in "podman pull output" "$OUT" "$line"
  stats_line
  expect_eq "IAM mints while IAM answers 500" "$(fstat .iam_mints)" 0
  expect_eq "the stored API key (store file unchanged)" "$(sha256sum "$STORE_FILE")" "$sum"
  expect_eq "list while IAM is down" "$(listed us.icr.io)" iamapikey
  # 3. IAM is back: the next pull succeeds (after the 10 s a failed mint is remembered).
  fake_post /_fake/faults/clear
  sleep 11
  fresh_counts
  dk_rmi "$r"
  expect_ok "docker pull after IAM is back" dk pull "$r"
  expect_eq "IAM mints after IAM is back" "$(fstat .iam_mints)" 1
  expect_only_bearer "after IAM is back"
  expect_ok "docker logout" dk logout us.icr.io
}

# --- issue 11: no API key anywhere -------------------------------------------------------------------
# The fake's trusted profiles: ci-pull trusts the CI runner's service account, shop-pull the shop's.
CI_SA=system:serviceaccount:ci:runner
SHOP_SA=system:serviceaccount:shop:checkout
fleet_profiles() {
  fake_config "$(jq -cn --arg a "$FAKE_ACCOUNT" --arg ci "$CI_SA" --arg shop "$SHOP_SA" \
    '{profiles: {"ci-pull": {account: $a, subjects: [$ci]}, "shop-pull": {account: $a, subjects: [$shop]}}}')"
}
cr_token_for() { # SUB: a compute-resource token the fake signed, as a cluster projects one
  curl -fsS --max-time 10 -X POST -H 'Content-Type: application/json' \
    -d "$(jq -cn --arg s "$1" '{sub: $s, lifetime: 3600}')" "$FAKE_URL/_fake/cr-token" | jq -r .token
}
no_key_anywhere() { # LABEL: the helper holds no API key, and none is in its environment
  expect_eq "$1: IBMCLOUD_API_KEY/IC_API_KEY set" "${IBMCLOUD_API_KEY:-}${IC_API_KEY:-}" ""
  expect_eq "$1: helper list" "$(helper list | jq -c .)" "{}"
  if [ -e "$STORE_FILE" ]; then expect_not_in "$1: store file" "$(cat "$STORE_FILE")" "$FAKE_KEY" "the API key"; fi
}
grant_mints() { fstat ".iam_mints_by_grant[\"$1\"]"; } # GRANT (apikey, cr-token, refresh_token)

# --- j: a CR token file and a trusted profile, through docker's credsStore -------------------------------
scenario_j() {
  local r=us.icr.io/e2e/j-cr-token:1 cfg token
  fleet_profiles
  token=$T/run/cr-token
  cr_token_for "$CI_SA" >"$token"
  chmod 600 "$token"
  export IBMCLOUD_CR_TOKEN=@$token IBMCLOUD_CR_PROFILE=ci-pull
  # docker's config names the helper only as its credsStore: no credHelpers, no login.
  export DOCKER_CONFIG=$HOME/.docker-creds-store-only
  mkdir -p "$DOCKER_CONFIG"
  printf '{"credsStore":"ibmcr"}\n' >"$DOCKER_CONFIG/config.json"
  cfg=$DOCKER_CONFIG/config.json
  no_key_anywhere "before"
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push (CR token)" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull (CR token)" dk pull "$r"
  # The token rotates, as the kubelet re-projects it: the cache keeps answering.
  cr_token_for "$CI_SA" >"$token"
  dk_rmi "$r"
  expect_ok "docker pull after the token file rotated" dk pull "$r"
  pm_rmi "$r"
  expect_ok "podman pull (CR token, credHelpers)" pm pull "$r"
  stats_line
  expect_eq "cr-token mints for push, pulls and a rotation" "$(grant_mints cr-token)" 1
  expect_eq "IAM mints of any kind" "$(fstat .iam_mints)" 1
  expect_eq "metadata requests (not on VPC)" "$(fstat .metadata_requests)" 0
  expect_only_bearer "CR token"
  no_key_anywhere "after"
  no_secret_in "config.json (credsStore only)" "$cfg"
  expect_not_in "token cache" "$(cat "$CACHE_FILE")" "$(cat "$token")" "the CR token"
}

# --- k: an ibmcloud login session, read and never written -----------------------------------------
scenario_k() {
  local r=de.icr.io/e2e/k-session:1 login file sum expired
  # What `ibmcloud login --apikey` leaves behind, with an IAMToken that has since expired.
  login=$(curl -fsS --max-time 10 -X POST -d "$(jq -cn --arg k "$FAKE_KEY" '{api_key: $k}')" "$FAKE_URL/_fake/login")
  expired=$(make_jwt $(($(date +%s) - 60)))
  file=$HOME/.bluemix/config.json
  mkdir -p "$(dirname "$file")"
  jq -n --arg t "Bearer $expired" --arg r "$(jq -r .refresh_token <<<"$login")" --arg e "$FAKE_URL" \
    '{IAMEndpoint: $e, IAMToken: $t, IAMRefreshToken: $r, Region: "eu-de"}' >"$file"
  chmod 644 "$file" # the CLI's file, with the CLI's mode: read as it is
  sum=$(sha256sum "$file")
  no_key_anywhere "before"
  fresh_counts
  dk_tag "$r"
  expect_ok "docker push (ibmcloud session)" dk push "$r"
  dk_rmi "$r"
  expect_ok "docker pull (ibmcloud session)" dk pull "$r"
  pm_rmi "$r"
  expect_ok "podman pull (ibmcloud session)" pm pull "$r"
  stats_line
  expect_eq "refresh mints for push and pulls" "$(grant_mints refresh_token)" 1
  expect_eq "IAM mints of any kind" "$(fstat .iam_mints)" 1
  expect_eq "metadata requests (not on VPC)" "$(fstat .metadata_requests)" 0
  expect_only_bearer "ibmcloud session"
  expect_eq "the CLI's config.json (never written)" "$(sha256sum "$file")" "$sum"
  expect_eq "the CLI's config.json mode" "$(stat -c %a "$file")" 644
  no_key_anywhere "after"
  # The session is over: one line saying what to do.
  fake_post /_fake/sessions/expire
  cold_cache
  helper_get de.icr.io
  expect_eq "helper get with the session over: exit" "$RC" 1
  one_line "helper get with the session over" "$HOUT"
  expect_in "helper get with the session over" "$HOUT" "BXNIM0408E"
  expect_in "helper get with the session over" "$HOUT" "run \`ibmcloud login\` again"
  rm -rf "$HOME/.bluemix"
}

# --- l: the kubelet plugin's answer, used by a real client ------------------------------------------
# A strict decode of a CredentialProviderResponse v1, as the kubelet's decoder does it: no unknown or
# duplicate field, the configured apiVersion, the kind, a kept cacheKeyType. Prints the auth patterns
# and usernames; writes the password of PATTERN to FILE (never to the log).
PY_STRICT_REPLY='import sys, json
def pairs(kv):
    keys = [k for k, _ in kv]
    if len(keys) != len(set(keys)):
        sys.exit("duplicate field")
    return dict(kv)
r = json.loads(sys.stdin.read(), object_pairs_hook=pairs)
if not set(r) <= {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}:
    sys.exit("unknown field: %s" % sorted(set(r) - {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}))
if r.get("apiVersion") != "credentialprovider.kubelet.k8s.io/v1" or r.get("kind") != "CredentialProviderResponse":
    sys.exit("wrong apiVersion or kind")
if r.get("cacheKeyType") not in ("Image", "Registry", "Global"):
    sys.exit("cacheKeyType the kubelet discards")
for pattern, a in (r.get("auth") or {}).items():
    if not set(a) <= {"username", "password"}:
        sys.exit("unknown auth field")
    if len(sys.argv) > 2 and pattern == sys.argv[1]:
        open(sys.argv[2], "w").write(a["password"])
print(json.dumps({"cacheKeyType": r["cacheKeyType"], "cacheDuration": r.get("cacheDuration"),
                  "auth": {p: a["username"] for p, a in (r.get("auth") or {}).items()}}, sort_keys=True))'
kubelet_request() { # IMAGE [SA-TOKEN [PROFILE]]: the JSON the kubelet writes on the plugin's stdin
  if [ -z "${2:-}" ]; then
    jq -cn --arg i "$1" '{kind: "CredentialProviderRequest", apiVersion: "credentialprovider.kubelet.k8s.io/v1", image: $i}'
  else
    jq -cn --arg i "$1" --arg t "$2" --arg p "${3:-}" '{kind: "CredentialProviderRequest",
      apiVersion: "credentialprovider.kubelet.k8s.io/v1", image: $i, serviceAccountToken: $t}
      + (if $p == "" then {} else {serviceAccountAnnotations: {"ibmcr/trusted-profile": $p}} end)'
  fi
}
# plugin_answer PROGRAM PATTERN REQUEST: run the plugin as the kubelet does (1-minute kill), decode
# strictly; PW = the password for PATTERN, REPLY = the decoded summary.
plugin_answer() {
  local prog=$1 pattern=$2 req=$3 out err rc
  out=$(printf '%s\n' "$req" | timeout -k 5 60 "$prog" "${@:4}" 2>"$T/tmp/plugin.err")
  rc=$?
  err=$(cat "$T/tmp/plugin.err")
  log "\$ printf <request for $(jq -r .image <<<"$req")> | $(basename "$prog") ${*:4}  => exit $rc"
  [ "$rc" = 0 ] || fail "plugin for $(jq -r .image <<<"$req") exited $rc: $err"
  [ -z "$err" ] || fail "plugin wrote to stderr: $err"
  rm -f "$T/tmp/plugin.pw"
  REPLY=$(printf '%s' "$out" | "$PY" -c "$PY_STRICT_REPLY" "$pattern" "$T/tmp/plugin.pw") ||
    fail "the kubelet's strict decoder would reject the reply: $REPLY"
  log "    reply: $REPLY"
  PW=$(cat "$T/tmp/plugin.pw" 2>/dev/null)
}
# authfile_for PATTERN: an auth file holding the plugin's answer for PATTERN (AF), as a kubelet hands
# credentials to the runtime; never the token in argv or a log.
authfile_for() {
  AF=$T/tmp/kubelet-auth.json
  rm -f "$AF"
  (umask 077 && jq -n --arg h "$1" --arg a "$(printf 'iambearer:%s' "$PW" | base64 -w0)" \
    '{auths: {($h): {auth: $a}}}' >"$AF")
}
scenario_l() {
  local r=us.icr.io/e2e/l-kubelet:1 rp=private.us.icr.io/e2e/l-kubelet:1 node link bearer
  fleet_profiles
  # The node: a CR token file for its own service account, traded for ci-pull (as a node would hold
  # one); the kubelet config's env would set these.
  node=$T/run/node-token
  cr_token_for "$CI_SA" >"$node"
  export IBMCLOUD_CR_TOKEN=@$node IBMCLOUD_CR_PROFILE=ci-pull
  # The kubelet runs the file named like the provider in its bin dir: a link to the helper.
  mkdir -p "$T/kubelet-plugins"
  link=$T/kubelet-plugins/ibmcr-credential-provider
  ln -sf "$(command -v docker-credential-ibmcr)" "$link"
  fresh_counts
  plugin_answer "$link" us.icr.io "$(kubelet_request "${r%:*}")"
  expect_eq "reply for us.icr.io" "$(jq -c '{cacheKeyType, auth}' <<<"$REPLY")" '{"cacheKeyType":"Registry","auth":{"us.icr.io":"iambearer"}}'
  expect_ne_empty "a password for us.icr.io" "$PW"
  bearer=$PW
  # A real client uses the answer: push, then pull, judged by the fake IBM API behind the registry.
  authfile_for us.icr.io
  expect_ok "skopeo copy (push) with the plugin's answer" \
    sk copy --authfile "$AF" "docker-archive:$IMG_TAR" "docker://$r"
  expect_ok "skopeo copy (pull) with the plugin's answer" \
    sk copy --authfile "$AF" "docker://$r" "dir:$T/tmp/l-pulled"
  rm -rf "$T/tmp/l-pulled"
  # private.us.icr.io needs its own pattern; cp.icr.io and other registries get no credentials.
  plugin_answer docker-credential-ibmcr private.us.icr.io "$(kubelet_request "${rp%:*}")" kubelet-plugin
  expect_eq "reply for private.us.icr.io" "$(jq -c .auth <<<"$REPLY")" '{"private.us.icr.io":"iambearer"}'
  authfile_for private.us.icr.io
  expect_ok "skopeo copy (push) to private.us.icr.io with the plugin's answer" \
    sk copy --authfile "$AF" "docker-archive:$IMG_TAR" "docker://$rp"
  for img in cp.icr.io/cp/db2 docker.io/library/nginx; do
    plugin_answer "$link" none "$(kubelet_request "$img")"
    expect_eq "reply for $img" "$(jq -c '{auth, cacheDuration}' <<<"$REPLY")" '{"auth":{},"cacheDuration":"0s"}'
  done
  expect_eq "cr-token mints for the node (every registry)" "$(grant_mints cr-token)" 1
  # KEP-4412: the pod's service account token and its ibmcr/trusted-profile annotation.
  plugin_answer "$link" us.icr.io "$(kubelet_request "${r%:*}" "$(cr_token_for "$SHOP_SA")" shop-pull)"
  expect_ne_empty "a password for the shop's service account" "$PW"
  [ "$PW" != "$bearer" ] || fail "the service account got the node's token"
  authfile_for us.icr.io
  expect_ok "skopeo inspect with the service account's answer" sk inspect --authfile "$AF" "docker://$r"
  plugin_answer "$link" us.icr.io "$(kubelet_request "${r%:*}" "$(cr_token_for "$SHOP_SA")" shop-pull)"
  expect_eq "cr-token mints (node + one service account, its second pod from the cache)" "$(grant_mints cr-token)" 2
  # A wrong request: exit 1, one line on stderr, nothing on stdout.
  # shellcheck disable=SC2016 # expanded by the inner sh
  capture sh -c 'printf "%s" "$1" | "$2" 2>"$3"' sh \
    "$(kubelet_request us.icr.io/x | sed 's#/v1"#/v1beta1"#')" "$link" "$T/tmp/plugin.err"
  expect_eq "plugin with a wrong apiVersion: exit" "$RC" 1
  expect_eq "plugin with a wrong apiVersion: stdout" "$OUT" ""
  one_line "plugin with a wrong apiVersion: stderr" "$(cat "$T/tmp/plugin.err")"
  stats_line
  expect_eq "metadata requests (not on VPC)" "$(fstat .metadata_requests)" 0
  expect_eq "requests offering the API key" "$(offered_count iamapikey)" 0
  expect_eq "iambearer requests refused" "$(offered_count iambearer 401)" 0
  no_key_anywhere "kubelet plugin"
  expect_not_in "scenario log" "$(cat "$T/logs/l.log")" "$bearer" "a token"
}
expect_ne_empty() { [ -n "$2" ] || fail "$1: empty"; } # LABEL VALUE

# --- m: the README's set-up: `login` once, push and pull, `doctor` says all is well -----------------
scenario_m() {
  local r=us.icr.io/e2e/m-login:1 line
  fresh_counts
  expect_ok "docker-credential-ibmcr login" helper login <<<"$FAKE_KEY"
  one_line "login's output" "$OUT"
  expect_eq "login's line" "$OUT" "logged in to icr.io with an API key of account $FAKE_ACCOUNT; it serves every IBM registry host without a key of its own"
  expect_eq "IAM requests by login" "$(iam_requests)" 1
  expect_eq "requests to the fake by login" "$(fake_get /_fake/requests | jq length)" 1
  expect_eq "list after login" "$(listed icr.io)" iamapikey
  dk_tag "$r"
  expect_ok "docker push after login" dk push "$r"
  pm_rmi "$r"
  expect_ok "podman pull after login" pm pull "$r"
  expect_eq "IAM mints for login, docker push and podman pull" "$(fstat .iam_mints)" 1
  expect_only_bearer "after login"
  expect_ok "doctor us.icr.io" helper doctor us.icr.io
  expect_not_in "doctor's output" "$OUT" "$FAKE_KEY" "the API key"
  expect_not_in "doctor's output" "$OUT" "eyJ" "a token"
  line=$(printf '%s\n' "$OUT" | tail -n 1)
  expect_eq "doctor's verdict" "$line" "us.icr.io: every check passed"
  expect_eq "doctor's ok lines" "$(printf '%s\n' "$OUT" | grep -c '^ok ')" 9
  expect_ok "erase icr.io" helper erase <<<"icr.io"
  expect_eq "list after erase" "$(listed icr.io)" ""
}
