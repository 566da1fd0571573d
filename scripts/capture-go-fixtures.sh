#!/usr/bin/env bash
# Captures the exact stdout bytes and exit codes of the real Go reference
# helper, Debian's docker-credential-secretservice
# (golang-docker-credential-helpers), into tests/fixtures/go/, where the
# integration tests compare our binary's answers with them byte for byte.
#
# Each case is a directory of steps NN-VERB.stdin; this script writes the
# stdin files, then runs the steps in order through the Go helper inside a
# fresh private Secret Service (scripts/with-secret-service.sh, one per
# case) and writes NN-VERB.stdout and NN-VERB.exit beside them.
# Only cases whose answers our helper must reproduce belong here: see
# tests/fixtures/go/README.md for what is left out and why.
#
# Usage: scripts/capture-go-fixtures.sh   (installs the packages it needs;
# then `git diff tests/fixtures/go` shows what the Go helper answers
# differently from the committed bytes)
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/go
helper=/usr/bin/docker-credential-secretservice

# Inside a private Secret Service: run one case's steps through the Go helper.
if [ "${1:-}" = "--run-case" ]; then
  for stdin in "$2"/*.stdin; do
    base=${stdin%.stdin}
    verb=${base##*-}
    status=0
    "$helper" "$verb" <"$stdin" >"$base.stdout" || status=$?
    printf '%s\n' "$status" >"$base.exit"
  done
  exit 0
fi

packages=(golang-docker-credential-helpers dbus dbus-user-session gnome-keyring)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

case_dir=""
n=0
# begin NAME: starts a case (a fresh directory, a fresh keyring).
begin() {
  case_dir="$out/$1"
  rm -rf "$case_dir"
  mkdir -p "$case_dir"
  n=0
}
# step VERB BYTES: the next step's stdin, byte for byte (no newline added).
step() {
  n=$((n + 1))
  printf '%s' "$2" >"$case_dir/$(printf %02d "$n")-$1.stdin"
}
# store_json URL USERNAME SECRET: what a Go client sends (plain values only).
store_json() {
  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "$1" "$2" "$3"
}

# Go's HTML escaping: <, >, & in values; what `docker login` sends
# (../shared/protocol.md §1.2 and Appendix A).
begin html-escaping
step store "$(store_json a.example '<token>' 's3cr&t')"$'\n'
step get a.example
step store $'{"ServerURL":"localhost:5001","Username":"iamapikey","Secret":"pa\\"ss\\u003c\\u0026\\u003e"}\n'
step get localhost:5001
step list unused

# Quotes, backslashes, \t \n \r, other C0 controls, DEL, U+2028/U+2029,
# non-ASCII (raw and as \u escapes, a surrogate pair, `\/`), in values and
# in keys; list sorts keys bytewise.
begin control-and-unicode
step store $'{"ServerURL":"c.example","Username":"q\\"b\\\\a&","Secret":"a\\\\b\\tc\\nd\\re\\u0001f\\u001fg\x7fh\\u007fi\\u2028j\xe2\x80\xa9k \xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\\ud83d\\ude00\\u00e9\\/>"}\n'
step get c.example
step store $'{"ServerURL":"k<&>\xe2\x80\xa8\xc3\xa9.example","Username":"\\u2029","Secret":"s"}\n'
step get $'k<&>\xe2\x80\xa8\xc3\xa9.example'
step store $'{"ServerURL":"\xc3\xa9.example","Username":"u","Secret":"s"}\n'
step list unused

# \b and \f: Go 1.19 (this package) writes \u0008 and \u000c, Go >= 1.22
# writes \b and \f (README.md in the fixture dir).
begin backspace-form-feed
step store $'{"ServerURL":"b.example","Username":"u\\b","Secret":"x\\by\\fz\\u0008\\u000c"}\n'
step get b.example
step list unused

# Invalid UTF-8 that both Go and Rust replace byte by byte with U+FFFD.
begin invalid-utf8
step store $'{"ServerURL":"x\xffy.example","Username":"u\xc0","Secret":"a\xffb\xed\xa0\x80c\xf5d\x80e"}\n'
step get $'x\xef\xbf\xbdy.example'
step list unused

# Truncated UTF-8 sequences: Go replaces each byte, Rust's from_utf8_lossy
# the whole sequence (a known divergence, see README.md).
begin invalid-utf8-truncated
step store $'{"ServerURL":"t.example","Username":"u","Secret":"a\xe2\x82b\xf0\x9f\x98c\xe2"}\n'
step get t.example

# Lone UTF-16 surrogates in \u escapes: Go decodes each to U+FFFD (a known
# divergence, see README.md).
begin lone-surrogates
step store $'{"ServerURL":"l.example","Username":"u","Secret":"a\\ud800b\\udc00c\\ud83dd"}\n'
step get l.example

# Go's decoding of store input: case-insensitive keys, unknown fields and
# trailing bytes ignored, pretty-printed lines joined, null, docker-py's
# spaces, a second value ignored, no Secret.
begin store-decoding
step store '{"serverurl":"a.example","USERNAME":"u-a","sEcReT":"s-a"}'
step get a.example
step store '{"Email":"x@example.com","ServerURL":"b.example","Username":"u-b","Secret":"s-b","Extra":{"n":[1,2,{"k":null}]}}'
step get b.example
step store '{"ServerURL":"c.example","Username":"u-c","Secret":"s-c"} trailing-garbage {['
step get c.example
step store $'{\n  "ServerURL": "d.example",\r\n  "Username": "u-d",\n  "Secret": "s-d"\n}\n'
step get d.example
step store '{"ServerURL":"e.example","Username":"u-e","Secret":null}'
step store '{"ServerURL": "f.example", "Username": "u-f", "Secret": "s-f"}'
step get f.example
step store '{"ServerURL":"g.example","Username":"u-g","Secret":"s-g"}{"ServerURL":"h.example","Username":"x","Secret":"y"}'
step get g.example
step get h.example
step store '{"ServerURL":"i.example","Username":"u-i"}'
step list unused

# get/erase input: surrounding whitespace (ASCII and Unicode) trimmed,
# lines joined without a separator; what is not whitespace stays.
begin trim-and-join
step store "$(store_json localhost:5000 u p)"$'\n'
step get $'\t localhost:5000\r\n'
step get $'local\nhost:5000'
step get $' \xc2\xa0\xe2\x80\xa8localhost:5000\xe3\x80\x80\xc2\x85'
step get $'\vlocalhost:5000\f'
step get $'localhost:5000\n\n'
step get $'\xe2\x80\x8blocalhost:5000'
step erase $'  localhost:5000\r\n'
step get localhost:5000

# The exact texts for a missing server URL or username (ServerURL first).
begin missing-fields
for input in '' $' \t\r\n ' $'\n\n'; do
  step get "$input"
  step erase "$input"
done
step store '{"Username":"u","Secret":"s"}'
step store '{"ServerURL":"","Username":"u","Secret":"s"}'
step store '{"ServerURL":null,"Username":"u","Secret":"s"}'
step store '{}'
step store '{"ServerURL":"","Username":""}'
step store '{"ServerURL":"localhost:5000","Secret":"s"}'
step store '{"ServerURL":"localhost:5000","Username":"","Secret":"s"}'
step store '{"ServerURL":"localhost:5000","Username":null,"Secret":"s"}'
step list unused

# Keys are the exact ServerURL strings: another spelling is another key.
begin exact-keys
step store "$(store_json https://index.docker.io/v1/ hubuser hub-pass)"$'\n'
step store "$(store_json localhost:5000 '<token>' identity-token)"$'\n'
step store "$(store_json ghcr.io octocat 'ghp_x&y')"$'\n'
step get https://index.docker.io/v1/
step get localhost:5000
step get ghcr.io
for other in https://ghcr.io ghcr.io/ GHCR.IO http://localhost:5000 localhost:5000/ns/repo \
  index.docker.io docker.io https://index.docker.io/v1; do
  step get "$other"
done
step list unused
step erase https://ghcr.io
step get ghcr.io

# Look-alikes of IBM hosts are plain keys (our helper agrees: none is an
# IBM host).
begin hostile-names
hostile=(cp.icr.io us.icr.io.evil.example evil.example/us.icr.io us.icr.io@evil.example xus.icr.io us.icr.io:5443)
for i in "${!hostile[@]}"; do
  step store "$(store_json "${hostile[$i]}" iamapikey "hostile-$i")"$'\n'
done
step list unused
for name in "${hostile[@]}"; do
  step get "$name"
  step get "https://$name"
  step get "${name^^}"
done
step erase us.icr.io@evil.example
step list unused

# erase exits 0 whether or not the key is there (the four forms docker
# logout sends).
begin erase-idempotent
step erase localhost:5000
step store "$(store_json localhost:5000 u p)"$'\n'
step get localhost:5000
for url in localhost:5000 localhost:5000 http://localhost:5000 https://localhost:5000; do
  step erase "$url"
done
step get localhost:5000
step list unused
step erase localhost:5000

# list: Go's sorted map (bytewise: upper case first), `{}` when empty.
begin list-sorted
step list unused
step store "$(store_json https://index.docker.io/v1/ hub p1)"$'\n'
step store "$(store_json b.example u p2)"$'\n'
step store "$(store_json a.example '<token>' p3)"$'\n'
step store "$(store_json Zeta.example:5000 z p4)"$'\n'
step list unused
for url in https://index.docker.io/v1/ b.example a.example Zeta.example:5000; do
  step erase "$url"
done
step list unused

# A store line of 65,535 bytes (bufio.Scanner's limit is 65,536).
begin line-at-the-limit
head='{"ServerURL":"localhost:5000","Username":"u","Secret":"'
pad=$(head -c $((65535 - ${#head} - 2)) /dev/zero | tr '\0' s)
step store "$head$pad\"}"$'\n'
step get localhost:5000

# What the keyring tests replay against our helper's keyring store.
begin keyring-round-trip
step store "$(store_json keyring.example:5000 kr-user 'kr-secret-<1>&2')"$'\n'
step get keyring.example:5000
step list unused
step store "$(store_json keyring.example:5000 kr-user kr-secret-2)"$'\n'
step get keyring.example:5000
step erase keyring.example:5000
step erase keyring.example:5000
step get keyring.example:5000
step list unused

for dir in "$out"/*/; do
  scripts/with-secret-service.sh "$0" --run-case "${dir%/}" 2> >(grep -v '^dbus-daemon\[' >&2)
done

go=$(grep -aom1 'go1\.[0-9]*\.[0-9]*' "$helper")
{
  echo "# Written by scripts/capture-go-fixtures.sh"
  dpkg-query -W -f='${Package} ${Version}\n' golang-docker-credential-helpers gnome-keyring
  echo "$helper built with $go"
} >"$out/captured-with.txt"
echo "info: captured $(find "$out" -name '*.stdout' | wc -l) answers with $helper ($go) into $out" >&2
