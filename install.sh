#!/bin/sh
# install.sh: build docker-credential-ibmcr from this checkout and install it.
#
#   ./install.sh [--configure] [--prefix DIR] [--help]
#
# POSIX sh in the rustup-init style: everything runs in `main`; `say`, `warn` and
# `err` print `info:`, `warning:` and `error:` lines to stderr. It needs cargo and
# nothing else: keyring's libdbus is vendored and built with the system's C compiler.

set -u

BIN=docker-credential-ibmcr

usage() {
    cat <<EOF
install.sh: build $BIN from this checkout and install it

USAGE:
    ./install.sh [--configure] [--prefix DIR] [--help]

OPTIONS:
    --configure     afterwards, run '$BIN configure': docker's config.json and
                    the containers tools' auth.json send IBM registry hosts to it
    --prefix DIR    install into DIR/bin (default: \$PREFIX, else /usr/local
                    as root, else \$HOME/.local)
    -h, --help      print this help

It builds with 'cargo build --release --locked' and needs a Rust toolchain
(rustup) as new as the crate's rust-version, and a C compiler (gcc) for the
keyring's vendored libdbus; no other system packages. On x86_64 and aarch64
Linux with glibc it links the binary statically (glibc's libc.a: Debian's
libc6-dev, Fedora's glibc-static), which halves its start-up time; without
libc.a it builds the ordinary dynamically linked binary and says so.
EOF
}

say() {
    printf 'info: %s\n' "$1" >&2
}

warn() {
    printf 'warning: %s\n' "$1" >&2
}

err() {
    printf 'error: %s\n' "$1" >&2
    exit 1
}

check_cmd() {
    command -v "$1" >/dev/null 2>&1
}

need_cmd() {
    if ! check_cmd "$1"; then
        err "need '$1' (command not found)"
    fi
}

# Runs a command and stops the script if it fails.
ensure() {
    if ! "$@"; then
        err "command failed: $*"
    fi
}

# True when the C compiler finds glibc's static archive (a static link needs it).
static_libc_available() {
    _cc=${CC:-cc}
    check_cmd "$_cc" || _cc=gcc
    _libc_a=$("$_cc" -print-file-name=libc.a 2>/dev/null) || return 1
    case "$_libc_a" in
        /*) [ -f "$_libc_a" ] ;;
        *) return 1 ;;
    esac
}

# True when rustc can link an empty program for target $1 with the flags $2.
links_with() {
    _probe=$(mktemp -d 2>/dev/null) || return 1
    printf 'fn main() {}\n' >"$_probe/probe.rs"
    # shellcheck disable=SC2086 # $2 is a list of flags
    if rustc --edition 2021 --target "$1" $2 -o "$_probe/probe" "$_probe/probe.rs" >/dev/null 2>&1; then
        rm -rf "$_probe"
        return 0
    fi
    rm -rf "$_probe"
    return 1
}

is_root() {
    [ "$(id -u)" = 0 ]
}

# The physical path of an existing directory (symlinks resolved), or nothing.
physical_dir() {
    (cd "$1" 2>/dev/null && pwd -P)
}

# True when $2 (a physical directory) is one of the entries of the PATH list $1.
path_has_dir() {
    _list=$1
    _want=$2
    _found=1
    _old_ifs=$IFS
    IFS=:
    set -f
    for _entry in $_list; do
        if [ -n "$_entry" ] && [ "$(physical_dir "$_entry")" = "$_want" ]; then
            _found=0
            break
        fi
    done
    set +f
    IFS=$_old_ifs
    return "$_found"
}

# True when the dotted version $1 is at least $2 (major.minor compared).
version_at_least() {
    _have_major=$(printf '%s' "$1" | cut -d. -f1)
    _have_minor=$(printf '%s' "$1" | cut -d. -f2)
    _need_major=$(printf '%s' "$2" | cut -d. -f1)
    _need_minor=$(printf '%s' "$2" | cut -d. -f2)
    for _n in "$_have_major" "$_have_minor" "$_need_major" "$_need_minor"; do
        case "$_n" in
            '' | *[!0-9]*) return 0 ;; # cannot tell: let cargo decide
        esac
    done
    [ "$_have_major" -gt "$_need_major" ] ||
        { [ "$_have_major" -eq "$_need_major" ] && [ "$_have_minor" -ge "$_need_minor" ]; }
}

main() {
    _configure=no
    _prefix=
    _prefix_set=no
    while [ $# -gt 0 ]; do
        case "$1" in
            --configure)
                _configure=yes
                ;;
            --prefix)
                [ $# -ge 2 ] || err "--prefix needs a directory"
                _prefix=$2
                _prefix_set=yes
                shift
                ;;
            --prefix=*)
                _prefix=${1#--prefix=}
                _prefix_set=yes
                ;;
            -h | --help)
                usage
                return 0
                ;;
            *)
                err "unknown option: $1 (see ./install.sh --help)"
                ;;
        esac
        shift
    done

    need_cmd id
    need_cmd cut
    need_cmd sed
    need_cmd dirname
    need_cmd mkdir
    need_cmd install
    need_cmd mktemp

    # Where to install, decided before leaving the caller's directory (a relative
    # --prefix or PREFIX means relative to it).
    if [ "$_prefix_set" = no ]; then
        if [ -n "${PREFIX:-}" ]; then
            _prefix=$PREFIX
        elif is_root; then
            _prefix=/usr/local
        elif [ -n "${HOME:-}" ]; then
            _prefix=$HOME/.local
        else
            err "HOME is not set: pass --prefix DIR"
        fi
    fi
    [ -n "$_prefix" ] || err "--prefix needs a directory"
    case "$_prefix" in
        /*) ;;
        *) _prefix=$(pwd -P)/$_prefix ;;
    esac
    _bindir=$_prefix/bin
    _user_path=${PATH:-}

    _here=$(physical_dir "$(dirname "$0")") || err "cannot find the directory of $0"
    [ -f "$_here/Cargo.toml" ] || err "no Cargo.toml beside $0: run install.sh from its checkout"
    cd "$_here" || err "cannot enter $_here"

    # rustup puts cargo in ~/.cargo/bin, which a non-login shell (sudo, ssh -c) may lack.
    if ! check_cmd cargo; then
        _cargo_bin=${CARGO_HOME:-${HOME:-/nonexistent}/.cargo}/bin
        if [ -x "$_cargo_bin/cargo" ]; then
            say "cargo is not on PATH; using $_cargo_bin/cargo"
            PATH=$_cargo_bin:${PATH:-}
            export PATH
        fi
    fi
    need_cmd cargo
    need_cmd rustc

    _need_rust=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | sed -n 1p)
    _have_rust=$(rustc --version 2>/dev/null | cut -d' ' -f2)
    if [ -n "$_need_rust" ] && [ -n "$_have_rust" ] &&
        ! version_at_least "$_have_rust" "$_need_rust"; then
        err "rustc $_have_rust is older than $_need_rust, which this crate needs: install a newer toolchain with rustup (https://rustup.rs), then run this again"
    fi

    # A credential helper runs once per registry request, so its start-up is
    # most of its cost. On glibc Linux, link it statically and not
    # position-independent: no dynamic loader, no relocations, no shared
    # libraries to map (bench/run.sh measures the difference). The flags go to
    # this one target only (--target), never to build scripts and proc macros,
    # which cannot be static; the binary lands in target/<triple>/release.
    _host=$(rustc -vV 2>/dev/null | sed -n 's/^host: *//p')
    _triple=
    case "$_host" in
        x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu)
            if static_libc_available; then
                _triple=$_host
            else
                warn "no static glibc (libc.a; Debian: libc6-dev, Fedora: glibc-static): building a dynamically linked $BIN, which takes about twice as long to start"
            fi
            ;;
    esac
    if [ -n "$_triple" ]; then
        _static_flags="-C target-feature=+crt-static -C relocation-model=static"
        # glibc's start-up and exit code, listed in scripts/glibc-startup.order,
        # placed together at the start of .text rather than spread over libc.a:
        # the kernel maps a binary 64 KiB around each page fault, so this takes
        # a quarter off a cached get's RSS. Only where the linker understands
        # the list (lld, rustc's default on x86_64 Linux); a trial link decides.
        _order=$_here/scripts/glibc-startup.order
        case "$_order" in
            *[[:space:]]*) _order= ;; # RUSTFLAGS splits on spaces
        esac
        if [ -n "$_order" ] && [ -f "$_order" ] &&
            links_with "$_triple" "$_static_flags -C link-arg=-Wl,--symbol-ordering-file=$_order -C link-arg=-Wl,--no-warn-symbol-ordering"; then
            _static_flags="$_static_flags -C link-arg=-Wl,--symbol-ordering-file=$_order -C link-arg=-Wl,--no-warn-symbol-ordering"
        fi
        RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$_static_flags"
        export RUSTFLAGS
        say "building $BIN with cargo build --release --locked --target $_triple, RUSTFLAGS='$RUSTFLAGS' (rustc ${_have_rust:-?}) in $_here"
        ensure cargo build --release --locked --target "$_triple"
    else
        say "building $BIN with cargo build --release --locked (rustc ${_have_rust:-?}) in $_here"
        ensure cargo build --release --locked
    fi

    # Where cargo put it: CARGO_TARGET_DIR and .cargo/config.toml can move target/.
    _target_dir=$(cargo metadata --format-version 1 --no-deps --locked 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [ -n "$_target_dir" ] || _target_dir=$_here/target
    _built=$_target_dir/${_triple:+$_triple/}release/$BIN
    [ -x "$_built" ] || err "the build left no executable at $_built"

    ensure mkdir -p "$_bindir"
    _bindir=$(physical_dir "$_bindir") || err "cannot enter $_bindir"
    _installed=$_bindir/$BIN
    ensure install -m 0755 "$_built" "$_installed"
    say "installed $_installed"

    # docker and podman run "docker-credential-ibmcr" from PATH.
    if ! path_has_dir "$_user_path" "$_bindir"; then
        warn "$_bindir is not on PATH, so docker and podman will not find $BIN: add it, e.g. export PATH=\"$_bindir:\$PATH\" in ~/.profile"
    fi
    if ! is_root; then
        say "sudo docker and root podman search root's PATH (sudo's secure_path), not $_bindir: for them, install as root too (sudo ./install.sh)"
    fi
    _first=$(PATH=$_user_path command -v "$BIN" 2>/dev/null || true)
    if [ -n "$_first" ]; then
        _first_dir=$(physical_dir "$(dirname "$_first")")
        if [ "$_first_dir/$BIN" != "$_installed" ]; then
            warn "another $BIN comes earlier on PATH: $_first; docker and podman will run that one: remove it or put $_bindir first in PATH"
        fi
    fi

    if [ "$_configure" = yes ]; then
        say "running $_installed configure"
        ensure "$_installed" configure
    fi

    _version=$("$_installed" version) || err "$_installed version failed: the installed binary does not run"
    say "$_version"
}

main "$@" || exit 1
