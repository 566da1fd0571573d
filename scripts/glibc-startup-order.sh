#!/usr/bin/env bash
# Regenerates scripts/glibc-startup.order, which install.sh hands the linker
# (--symbol-ordering-file) for the static glibc build.
#
# A statically linked glibc program runs ~35,000 instructions of libc before
# main (tunables, CPU features and cache sizes, one resolver per IFUNC, TLS,
# malloc, the static dlopen set-up) and more after it, in functions spread
# over ~700 KB of libc.a. The kernel maps a binary's pages 64 KiB around each
# fault, so those scattered functions cost a quick process a dozen windows
# of RSS; listed here, the linker puts them together at the start of .text.
#
# The list: every function gdb steps through in a run of bench/floor.rs (a
# static Rust program, so the same glibc start-up and exit) except Rust's
# own, every IFUNC symbol of this machine's libc.a (their resolvers all run
# at start-up, whether called later or not), `main`, and a few tables the
# start-up reads. Names this glibc lacks are ignored by the linker.
#
# Needs rustc, gcc with libc6-dev, gdb and readelf (binutils). Usage:
#   scripts/glibc-startup-order.sh > scripts/glibc-startup.order
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rustc --edition 2021 -C opt-level=3 -C panic=abort \
  -C target-feature=+crt-static -C relocation-model=static \
  -o "$work/floor" "$repo/bench/floor.rs"
printf 'registry.example' >"$work/in"
printf '{}' >"$work/file.json"
cat >"$work/step.py" <<'PYEOF'
import gdb
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("starti")
seen, order = set(), []
while True:
    try:
        name = gdb.selected_frame().name()
    except gdb.error:
        break
    if name and name not in seen:
        seen.add(name)
        order.append(name)
    if name == "_exit":
        break
    try:
        gdb.execute("stepi", to_string=True)
    except gdb.error:
        break
for name in order:
    if "::" not in name and "<" not in name and not name.startswith(("_ZN", "_R")):
        print("FUNC " + name)
PYEOF
funcs=$(gdb -q -batch -x "$work/step.py" --args "$work/floor" "$work/file.json" <"$work/in" 2>/dev/null |
  sed -n 's/^FUNC //p')
[ -n "$funcs" ] || { echo "error: gdb stepped through nothing" >&2; exit 1; }
libc_a=$(gcc -print-file-name=libc.a)
ifuncs=$(readelf -sW "$libc_a" | awk '$4 == "IFUNC" && $7 != "UND" { print $8 }' | sort -u)

cat <<HEADER
# Functions and tables a static glibc program runs through at start-up and
# exit, for lld --symbol-ordering-file (see scripts/glibc-startup-order.sh,
# which wrote this; install.sh uses it). Generated with
# $(gcc -dumpmachine), glibc $(ldd --version 2>/dev/null | sed -n '1s/.* //p').
HEADER
{
  echo main
  printf '%s\n' "$funcs"
  printf '%s\n' "$ifuncs"
  # Tables read on the way to main.
  printf '%s\n' tunable_list intel_02_known system_dirs system_dirs_len _dl_x86_cpu_features
} | awk '!seen[$0]++'
