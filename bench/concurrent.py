#!/usr/bin/env python3
"""N concurrent `get`s on an expired IBM token, for bench/run.sh.

Each round: wait until the cached IAM token has expired, reset the fake's
counters, start N `docker-credential-ibmcr get` processes at once
(posix_spawn, stdin from --input, stdout/stderr to files), reap them with
wait4 and take each one's wall time from just before its spawn to its reaping.
Then read how many mints the fake made (must be 1) and check that all N
answered the same valid bearer token. The helper's settings come from the
environment (IBMCR_STORE, IBMCR_HOME, IBMCR_MODE, endpoints).
"""

import argparse
import base64
import json
import os
import time
import urllib.request


def fake(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def jwt_exp(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["exp"]


def spawn(helper, infile, out, err):
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, infile, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    return os.posix_spawn(helper, [helper, "get"], os.environ, file_actions=actions)


def get_once(helper, infile, work):
    out, err = os.path.join(work, "prime.out"), os.path.join(work, "prime.err")
    pid = spawn(helper, infile, out, err)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"priming get failed: {open(err).read().strip()}")
    return json.load(open(out))


def round_once(args, index):
    base = args.fake
    # The token cached by the previous get expires `lifetime` s after its mint.
    time.sleep(args.lifetime + 1.2)
    fake(base + "/_fake/reset", "POST", {})
    work = os.path.join(args.work, f"round{index}")
    os.makedirs(work, exist_ok=True)
    started, files = {}, {}
    t_first = time.perf_counter()
    for i in range(args.parallel):
        out, err = os.path.join(work, f"{i}.out"), os.path.join(work, f"{i}.err")
        t0 = time.perf_counter()
        pid = spawn(args.helper, args.input, out, err)
        started[pid], files[pid] = t0, (out, err)
    walls, codes = [], []
    while started:
        pid, status, _ = os.wait4(-1, 0)
        t1 = time.perf_counter()
        if pid not in started:
            continue
        walls.append((t1 - started.pop(pid)) * 1000.0)
        codes.append((pid, os.waitstatus_to_exitcode(status)))
    round_ms = (time.perf_counter() - t_first) * 1000.0
    stats = fake(base + "/_fake/stats")
    requests = len(fake(base + "/_fake/requests"))

    answers, failures = set(), []
    now = time.time()
    for pid, code in codes:
        out, err = files[pid]
        if code != 0:
            failures.append(open(err).read().strip().splitlines()[:1] or [f"exit {code}"])
            continue
        answers.add(open(out).read())
    valid = False
    if len(answers) == 1:
        got = json.loads(next(iter(answers)))
        valid = got.get("Username") == "iambearer" and jwt_exp(got["Secret"]) > now
    return {
        "mints": stats["iam_mints"],
        "requests": requests,
        "ok": args.parallel - len(failures),
        "failures": [f[0] for f in failures][:3],
        "distinct_answers": len(answers),
        "answer_valid": valid,
        "round_ms": round_ms,
        "wall_ms": walls,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--helper", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--fake", required=True)
    p.add_argument("--parallel", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--lifetime", type=int, default=4, help="IAM token lifetime at the fake, s")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)

    fake(args.fake + "/_fake/config", "POST", {"iam_lifetime": args.lifetime})
    try:
        get_once(args.helper, args.input, args.work)  # a token that will expire
        rounds = [round_once(args, i) for i in range(args.rounds)]
    finally:
        fake(args.fake + "/_fake/config", "POST", {"iam_lifetime": 3600})
    with open(args.out, "w") as f:
        json.dump({"parallel": args.parallel, "lifetime": args.lifetime, "rounds": rounds}, f)


if __name__ == "__main__":
    main()
