#!/usr/bin/env python3
"""The daemon's peak memory (VmHWM growth) for one large result through each
of its answers: POST /v1/runs?wait=true, POST /v1/functions/NAME/invoke, a
function URL, and 8 invokes of it at once. A fresh daemon per case, warmed
by two calls of an empty result of the same shape (not measured); the
answer's bytes are checked against the value's JSON.

    PYSPRINTER_BUILD=build python3 bench/bench_bigresult_daemon.py [MiB ...]

Sizes default to 10 50 100. A result is a flat string of that many bytes
("str") and, at 10 MiB, 200,000 small dicts ("dicts", tests/e2e
test_explore_bigtree.py's); past the 16 MiB result limit the run fails
("result limit") and what is measured is the daemon's cost of saying so.
Prints one table row per case (docs/performance.md)."""
import json
import os
import pathlib
import sys
import threading

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
os.environ.setdefault("PYSPRINTER_BUILD", str(HERE.parent / "build"))

from daemonlib import Daemon, sandbox_mode  # noqa: E402
from proctree import vm_hwm_kib  # noqa: E402

DICTS = "def f(event=None, context=None):\n    return [{'id': i, 'name': 'item%d' % i, 'v': i * 0.5, 'ok': True} for i in range(200000)]\n"
EMPTY = "def f(event=None, context=None):\n    return []\n"


def flat(mib):
    return f"def f(event=None, context=None):\n    return 'x' * {mib << 20}\n"


def url_body(mib):
    return ("def f(event=None, context=None):\n"
            f"    return {{'statusCode': 200, 'headers': {{'content-type': 'text/plain'}}, 'body': 'x' * {mib << 20}}}\n")


URL_BODY_EMPTY = ("def f(event=None, context=None):\n"
                  "    return {'statusCode': 200, 'headers': {'content-type': 'text/plain'}, 'body': ''}\n")
LIMITS = {"memory_bytes": 2 << 30}


def expect(src):
    ns = {}
    exec(src, ns)
    try:
        return ns["f"]()
    except TypeError:
        return ns["f"](None, None)


def measure(tmp, case, route, src, empty, concurrent=1):
    d = Daemon(tmp / f"{case}-{route}", sandbox=sandbox_mode(tmp))
    d.start()
    try:
        def deploy(name, source):
            body = {"name": name, "source": source, "filename": f"{name}.py", "limits": LIMITS}
            if route == "url":
                body["url"] = True
            st, out = d.call("POST", "/v1/functions", body)
            assert st in (200, 201), out

        def call(name, source):
            if route == "runs":
                return d.request("POST", "/v1/runs?wait=true", {"source": source, "limits": LIMITS}, timeout=600)
            if route == "invoke":
                return d.request("POST", f"/v1/functions/{name}/invoke?wait=true", {}, timeout=600)
            return d.request("GET", f"/fn/alice/{name}/", timeout=600)

        if route != "runs":
            deploy("big", src)
            deploy("empty", empty)
        for _ in range(2):
            st, _, body = call("empty", empty)
            assert st == 200, body[:500]
        before = vm_hwm_kib(d.proc.pid)
        outs = [None] * concurrent

        def one(i):
            outs[i] = call("big", src)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrent)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        grew = vm_hwm_kib(d.proc.pid) - before
        want = expect(src)
        oks = 0
        for st, _, body in outs:
            if st != 200:
                note = body[:200]
                continue
            if route == "url":
                if isinstance(want, dict) and "statusCode" in want:
                    oks += body.decode() == want["body"]
                else:
                    oks += json.loads(body) == want
                note = "url answer differs"
                continue
            got = json.loads(body)
            if route == "runs":
                note = got.get("status")
                if got.get("status") == "succeeded" and got["result"] == want:
                    oks += 1
                else:
                    note = json.dumps(got.get("error"))[:200]
            elif route == "invoke":
                if got.get("result") == want:
                    oks += 1
                else:
                    note = json.dumps(got)[:200]
        return grew, before, oks, note if oks < concurrent else "ok"
    finally:
        d.stop()


def main():
    import tempfile
    sizes = [int(a) for a in sys.argv[1:]] or [10, 50, 100]
    cases = []
    for mib in sizes:
        if mib == 10:
            cases.append(("10 MiB dicts", DICTS, EMPTY, None))
        cases.append((f"{mib} MiB str", flat(mib), EMPTY, mib))
    with tempfile.TemporaryDirectory(prefix="bigres-") as t:
        tmp = pathlib.Path(t)
        print("| result | route | daemon VmHWM growth | ok |")
        print("|---|---|---|---|")
        for name, src, empty, mib in cases:
            for route in ("runs", "invoke", "url"):
                s, e = src, empty
                if route == "url" and mib is not None:
                    s, e = url_body(mib), URL_BODY_EMPTY
                grew, before, oks, note = measure(tmp, name.replace(" ", "-"), route, s, e)
                label = name + (" body" if route == "url" and mib is not None else "")
                print(f"| {label} | {route} | +{grew // 1024} MiB (from {before // 1024}) | {note} |", flush=True)
        for name, src in (("10 MiB dicts", DICTS), ("10 MiB str", flat(10))):
            if 10 in sizes:
                grew, before, oks, note = measure(tmp, "c8-" + name.replace(" ", "-"), "invoke", src, EMPTY, 8)
                print(f"| 8 x {name} | invoke | +{grew // 1024} MiB (from {before // 1024}) | {oks}/8 {note} |",
                      flush=True)


if __name__ == "__main__":
    main()
