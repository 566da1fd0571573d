#!/usr/bin/env python3
"""Facts from the untimed strace runs of bench/run.sh, one `name<TAB>value`
line each: system calls and opens per command, files opened under /etc/ssl
on a cold mint, and the D-Bus method calls a keyring get sends (decoded from
the bytes it wrote, so each is named)."""

import argparse
import os
import re
import struct

HEX = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')
SYSCALL = re.compile(r"^\d+\s+([a-z_0-9]+)\(")


def lines(path):
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return [l for l in f if SYSCALL.match(l) and "resumed>" not in l]


def syscalls(path):
    return len(lines(path))


def opens(path, under=None):
    n = 0
    for l in lines(path):
        m = SYSCALL.match(l)
        if m.group(1) in ("open", "openat") and (under is None or f'"{under}' in l):
            n += 1
    return n


def pad(n, align):
    return (n + align - 1) // align * align


def method_calls(path):
    """Names of the D-Bus method calls written, in order: (member, expects_reply)."""
    calls = []
    for l in lines(path):
        if SYSCALL.match(l).group(1) not in ("sendmsg", "sendto", "write", "writev"):
            continue
        data = b"".join(bytes.fromhex(s.replace("\\x", "")) for s in HEX.findall(l))
        pos = 0
        while pos + 16 <= len(data):
            endian = {ord("l"): "<", ord("B"): ">"}.get(data[pos])
            if endian is None or data[pos + 3] != 1:
                break  # not a D-Bus message (the auth exchange, a stdout write)
            mtype, flags = data[pos + 1], data[pos + 2]
            body_len, _, fields_len = struct.unpack(endian + "III", data[pos + 4:pos + 16])
            member, p, end = None, pos + 16, pos + 16 + fields_len
            while p < end:
                p = pad(p - pos, 8) + pos
                if p >= end:
                    break
                code, sig_len = data[p], data[p + 1]
                sig = data[p + 2:p + 2 + sig_len].decode()
                p += 2 + sig_len + 1
                if sig in ("s", "o"):
                    p = pad(p - pos, 4) + pos
                    (n,) = struct.unpack(endian + "I", data[p:p + 4])
                    value = data[p + 4:p + 4 + n].decode(errors="replace")
                    p += 4 + n + 1
                    if code == 3:
                        member = value
                elif sig == "g":
                    n = data[p]
                    p += 1 + n + 1
                elif sig == "u":
                    p = pad(p - pos, 4) + pos + 4
                else:
                    break
            if mtype == 1:
                calls.append((member or "?", not flags & 1))
            pos = pad(end - pos, 8) + pos + body_len
    return calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    d = ap.parse_args().dir
    s = lambda name: os.path.join(d, f"strace.{name}")
    out = []
    for name in ("true", "floor", "file_ibm", "file_plain"):
        out.append((f"syscalls_{name}", syscalls(s(name))))
        out.append((f"opens_{name}", opens(s(name))))
    for name in ("cold", "https"):
        out.append((f"opens_{name}", opens(s(name))))
        out.append((f"ssl_opens_{name}", opens(s(name), "/etc/ssl")))
    for name in ("dbus_ibmcr", "dbus_ss"):
        calls = method_calls(s(name))
        out.append((f"{name}_calls", ",".join(m for m, _ in calls)))
        out.append((f"{name}_round_trips", sum(1 for _, r in calls if r)))
    for k, v in out:
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
