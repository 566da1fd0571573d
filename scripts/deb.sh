#!/usr/bin/env bash
# scripts/deb.sh: the Debian package's CI step (issue 12.4). Builds
# target/debian/docker-credential-ibmcr_<version>_<arch>.deb with cargo-deb,
# checks what it holds, installs it with dpkg, runs the installed binary
# (version, the kubelet plugin's name, a store and a get), and removes it
# again on exit, whatever happens, so the machine is left as it was found
# (and no /usr/bin copy is left to be run by later tests).
#
# It needs root or sudo (dpkg -i), cargo, and apt's man-db and groff-base
# for the man page checks (scripts/deps.sh installs them); it installs
# cargo-deb when `cargo deb` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=docker-credential-ibmcr
link=ibmcr-credential-provider
# The newest cargo-deb (2026-09); it builds with rustc >= 1.85 in about
# 1 min 40 s on 2 cores, and only when `cargo deb` is not there already.
cargo_deb_version=3.8.0

say() { printf 'info: %s\n' "$*" >&2; }
err() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
# The exact bytes of file $1 must be those of $2 (a string) + a newline.
expect_line() {
  local got=$1 want=$2 what=$3
  printf '%s\n' "$want" | cmp -s - "$got" && return 0
  [ "$(cat "$got")" != "$want" ] || err "$what printed '$want' without exactly one final newline"
  err "$what printed '$(head -c 400 "$got" | tr '\n' '|')', want '$want' and a newline"
}
expect_empty() {
  [ ! -s "$1" ] || err "$2 wrote to stderr: $(head -c 400 "$1")"
}

start=$SECONDS
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
for cmd in cargo rustc dpkg dpkg-deb dpkg-query cmp od; do
  command -v "$cmd" >/dev/null || err "need $cmd (command not found)"
done
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | sed -n 1p)
[ -n "$version" ] || err "no version in Cargo.toml"
arch=$(dpkg --print-architecture)
host=$(rustc -vV | sed -n 's/^host: *//p')
have_man=no
dpkg-query -W -f='${Status}' man-db 2>/dev/null | grep -q 'install ok installed' && have_man=yes

work=$(mktemp -d)
keep_work=no
installed=no
declare -a saved=()
cleanup() {
  local rc=$?
  if [ "$installed" = yes ]; then
    if $sudo dpkg --purge "$pkg" >"$work/purge.log" 2>&1; then
      say "removed the package ($pkg) again"
    else
      cat "$work/purge.log" >&2
      printf 'error: dpkg --purge %s failed: remove it by hand\n' "$pkg" >&2
      rc=1
    fi
  fi
  local path
  for path in "${saved[@]}"; do
    if $sudo mv -f "$work/saved$path" "$path"; then
      say "put back $path, which belongs to no package"
    else
      printf 'error: could not put back %s from %s\n' "$path" "$work/saved$path" >&2
      rc=1
      keep_work=yes
    fi
  done
  [ "$keep_work" = yes ] || $sudo rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# (a) cargo-deb, from crates.io.
if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb $cargo_deb_version from crates.io"
  cargo install --locked cargo-deb --version "$cargo_deb_version"
fi
say "using $(cargo deb --version)"

# The man page must render without a single groff warning.
if command -v groff >/dev/null; then
  groff -man -Tutf8 -ww -z doc/$pkg.1 2>"$work/groff.log" || true
  [ ! -s "$work/groff.log" ] || err "doc/$pkg.1 does not render cleanly: $(cat "$work/groff.log")"
fi
grep -q "^\.TH .* \"$pkg $version\"" doc/$pkg.1 ||
  err "doc/$pkg.1's .TH line does not name version $version (Cargo.toml's): update it"

# (b) The binary: the one install.sh builds, byte for byte. install.sh is
# the one place that knows how to link it (static and not PIE on glibc
# x86_64/aarch64, glibc's start-up code ordered where the linker can, a
# dynamic binary where no libc.a is found), so this runs it into a scratch
# prefix and packages exactly what it installed with `cargo deb --no-build`,
# rather than a second copy of those flags in a `cargo deb` build that could
# drift from it. --no-strip: the release profile strips already, and the
# installed file must stay identical to install.sh's.
say "building with install.sh (into a scratch prefix)"
PATH="$work/prefix/bin:$PATH" ./install.sh --prefix "$work/prefix"
built=$work/prefix/bin/$pkg
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || target_dir=$PWD/target
target_args=()
static=no
if cmp -s "$built" "$target_dir/$host/release/$pkg"; then
  target_args=(--target "$host")
  static=yes
elif cmp -s "$built" "$target_dir/release/$pkg"; then
  say "install.sh built the dynamically linked binary: packaging that one"
else
  err "install.sh's $built is neither $target_dir/$host/release/$pkg nor $target_dir/release/$pkg"
fi
deb=$target_dir/debian/${pkg}_${version}_${arch}.deb
rm -f "$deb"
# For the static binary, cargo-deb's `$auto` depends (dpkg-shlibdeps) finds
# no shared library and warns "No $auto deps": right, it needs none.
cargo deb -p "$pkg" --locked --no-build --no-strip "${target_args[@]}" >"$work/cargo-deb.out"
[ -f "$deb" ] || err "cargo deb made no $deb (it said: $(cat "$work/cargo-deb.out"))"
say "built $deb ($(stat -c %s "$deb") bytes)"

# (c) What the package holds and says.
dpkg-deb -c "$deb" >"$work/listing"
awk '{ $1 = $2 = $3 = $4 = $5 = ""; sub(/^ +/, ""); print }' "$work/listing" >"$work/files"
for want in "./usr/bin/$pkg" "./usr/bin/$link -> $pkg" "./usr/share/man/man1/$pkg.1.gz" \
  "./usr/share/doc/$pkg/README.md" "./usr/share/doc/$pkg/copyright"; do
  grep -qxF -- "$want" "$work/files" || err "$deb lacks $want; it holds: $(tr '\n' ' ' <"$work/files")"
done
grep -q "^-rwxr-xr-x .* \./usr/bin/$pkg\$" "$work/listing" || err "$deb's /usr/bin/$pkg is not mode 0755"
for field in Package:$pkg Version:$version Architecture:$arch Section:utils Priority:optional; do
  got=$(dpkg-deb -f "$deb" "${field%%:*}")
  [ "$got" = "${field#*:}" ] || err "$deb's ${field%%:*} is '$got', want '${field#*:}'"
done
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || err "$deb names no Maintainer"
if [ "$static" = yes ] && [ -n "$(dpkg-deb -f "$deb" Depends)" ]; then
  err "$deb's static binary depends on $(dpkg-deb -f "$deb" Depends)"
fi

# (d) Install it. A package of this name installed before is not ours to
# remove, and a file of the package's that belongs to no package (a copy
# put there by hand) is set aside and put back on exit.
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed'; then
  err "$pkg is installed already ($(dpkg-query -W -f='${Version}' "$pkg")): remove it (dpkg --purge $pkg), then run this again"
fi
while IFS= read -r entry; do
  path=${entry#.}
  path=${path%% -> *}
  case "$path" in */) continue ;; esac
  if [ -e "$path" ] || [ -L "$path" ]; then
    if owner=$(dpkg-query -S "$path" 2>/dev/null); then
      err "$path belongs to ${owner%%:*}, which this package would overwrite"
    fi
    $sudo mkdir -p "$work/saved$(dirname "$path")"
    $sudo mv "$path" "$work/saved$path"
    saved+=("$path")
    say "set aside $path (it belongs to no package) until the end"
  fi
done <"$work/files"
installed=yes
$sudo dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || err "dpkg -i $deb failed: $(cat "$work/dpkg.log")"
say "installed $deb"
bin=/usr/bin/$pkg
cmp -s "$built" "$bin" || err "$bin is not the binary install.sh built"
[ "$(readlink "/usr/bin/$link")" = "$pkg" ] || err "/usr/bin/$link does not link to $pkg"
for text in "License: Apache-2.0" "Apache License" "Version 2.0, January 2004"; do
  grep -qF "$text" "/usr/share/doc/$pkg/copyright" ||
    err "/usr/share/doc/$pkg/copyright lacks '$text': not the Apache-2.0 text"
done

# (e) Run it from where it was installed: its version names Cargo.toml's
# version and the commit it was built from.
"$bin" version >"$work/version" 2>"$work/version.err" || err "$bin version failed: $(cat "$work/version" "$work/version.err")"
expect_empty "$work/version.err" "$bin version"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
line=$(cat "$work/version")
case "$line" in
  "$pkg ($pkg) v$version (commit $commit)" | "$pkg ($pkg) v$version (commit $commit-dirty)") ;;
  *) err "$bin version printed '$line', want '$pkg ($pkg) v$version (commit $commit)' (or $commit-dirty)" ;;
esac
say "$line"
if [ "$have_man" = yes ]; then
  page=$(man -w "$pkg" 2>&1) || err "man -w $pkg: $page"
  [ "$page" = "/usr/share/man/man1/$pkg.1.gz" ] || err "man -w $pkg found $page, not the package's page"
  say "man $pkg: $page"
else
  say "man-db is not installed: not looking the man page up"
fi

# The kubelet plugin, by the symlink's name: an image of another registry
# gets a valid reply with no credentials.
sandbox=$work/sandbox
mkdir -p "$sandbox/home" # IBMCR_HOME: made by the helper itself, 0700
run() {
  env -u IBMCLOUD_API_KEY -u IC_API_KEY -u IBMCLOUD_CR_TOKEN -u IBMCLOUD_CR_PROFILE -u IBMCR_IDENTITY \
    -u IBMCR_MODE -u XDG_DATA_HOME -u XDG_CACHE_HOME -u XDG_CONFIG_HOME \
    HOME="$sandbox/home" IBMCR_HOME="$sandbox/ibmcr" IBMCR_STORE=file "$@"
}
printf '%s' '{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"registry.example.com/app:1"}' |
  run "/usr/bin/$link" >"$work/plugin" 2>"$work/plugin.err" || err "/usr/bin/$link failed: $(cat "$work/plugin.err")"
expect_line "$work/plugin" '{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","cacheDuration":"0s"}' "/usr/bin/$link"
expect_empty "$work/plugin.err" "/usr/bin/$link"

# (f) A store and a get through the installed binary, in a scratch HOME with
# the file store; then a get of a host nothing is stored for.
canary=canary-deb-$$-$RANDOM
printf '{"ServerURL":"registry.example.com","Username":"u","Secret":"%s"}' "$canary" |
  run "$bin" store >"$work/store" 2>"$work/store.err" || err "$bin store failed: $(cat "$work/store" "$work/store.err")"
[ ! -s "$work/store" ] || err "$bin store printed $(cat "$work/store")"
expect_empty "$work/store.err" "$bin store"
[ -f "$sandbox/ibmcr/store.json" ] || err "$bin store wrote no $sandbox/ibmcr/store.json"
printf 'registry.example.com' | run "$bin" get >"$work/get" 2>"$work/get.err" ||
  err "$bin get failed: $(cat "$work/get" "$work/get.err")"
expect_line "$work/get" "{\"ServerURL\":\"registry.example.com\",\"Username\":\"u\",\"Secret\":\"$canary\"}" "$bin get"
expect_empty "$work/get.err" "$bin get"
rc=0
printf 'unknown.example.com' | run "$bin" get >"$work/miss" 2>"$work/miss.err" || rc=$?
[ "$rc" -eq 1 ] || err "$bin get of an unknown host exited $rc, want 1"
expect_line "$work/miss" "credentials not found in native keychain" "$bin get of an unknown host"
expect_empty "$work/miss.err" "$bin get of an unknown host"
say "store, get and a missing get answer from $bin"

# (g) The trap removes the package.
say "the package passes; scripts/deb.sh took $((SECONDS - start)) s before removing it"
