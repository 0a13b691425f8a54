"""Issue 15 (b), round 7: the invoke path writes its worker message, the
Lambda context and the answers as text instead of jansson objects
(docs/internals/performance-log.md "Invoke path: round 7"). Its answers must stay byte for
byte those of the build before (main 88d814d): a corpus of invokes on both
routes — results of every JSON type, unicode and control characters, big
values, reals, exceptions, bad arguments, timeouts, a missing function —
each answer's status, its headers a client reads and its body, with what
changes per call (ids, times, timings' values) masked, compared with the
corpus recorded from that build (tests/e2e/data/invoke_corpus.json).
Re-record (from a build you trust): PYSPRINTER_RECORD_CORPUS=1. Re-recorded
once when run objects gained fn_name, fn_version, schedule and limits
(round 49): only those fields differ from the 88d814d corpus."""
import json
import os
import pathlib
import re

import pytest

from conftest import DAEMON
from daemonlib import Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

CORPUS = pathlib.Path(__file__).parent / "data" / "invoke_corpus.json"

FUNCTIONS = {
    "values": """
def main(kind="none", context=None):
    return VALUES[kind]()


def handler(event, context):
    return VALUES[event["kind"]]()


def VALUE_TABLE():
    big = 2 ** 62
    return {
        "none": None, "int": 7, "neg": -3, "big": big, "huge": 2 ** 80, "real": 0.1, "reals": [1.5, 1e-7, 1e300, -0.0, 2.0],
        "str": "h\\u00e9llo \\u2028 \\U0001F600 \\"q\\" \\\\ \\n\\t\\x01\\x1f\\x7f",
        "bool": True, "list": [1, "a", None, [2, {"k": "v"}]], "dict": {"b": 1, "a": {"z": [], "y": {}}},
        "long": "x" * 100000, "bytes": b"\\x00\\xffab", "tuple": (1, 2), "set": {3},
        "nan": float("nan"), "inf": float("inf"), "obj": object,
    }


VALUES = {k: (lambda k=k: VALUE_TABLE()[k]) for k in VALUE_TABLE()}
""",
    "fails": """
def main(why="boom", context=None):
    print("out line", flush=True)
    import sys
    print("err line", file=sys.stderr, flush=True)
    if why == "exit":
        raise SystemExit(4)
    if why == "unicode":
        raise ValueError("caf\\u00e9 \\U0001F600 \\"x\\"\\n")
    raise RuntimeError("nope: " + str(why))
""",
    "slow": """
import time
def main(s=0.0, context=None):
    time.sleep(s)
    return s
""",
    "handler": """
def handler(event, context):
    name = context.function_name if hasattr(context, "function_name") else context["function_name"]
    return {"got": event, "function": name}
""",
    "ctx": """
def handler(event, context):
    keys = ("function_name", "function_version", "invoked_function_arn", "aws_request_id", "log_group_name",
            "log_stream_name", "memory_limit_in_mb")
    got = {k: getattr(context, k) for k in keys}
    got["deadline_in_future"] = 0 < context.get_remaining_time_in_millis() <= 60000
    return got
""",
    "add": """
def add(a: int, b: int, c: int = 0):
    return a + b + c
""",
}

V1 = "/v1/functions/{}/invoke?wait=true"
LAMBDA = "/2015-03-31/functions/{}/invocations"

CASES = [
    ("values", V1, {"kwargs": {"kind": k}}) for k in
    ("none", "int", "neg", "big", "huge", "real", "reals", "str", "bool", "list", "dict", "long", "bytes", "tuple",
     "set", "nan", "inf", "obj")
] + [
    ("lvalues", LAMBDA, {"kind": k}) for k in ("none", "int", "big", "huge", "reals", "str", "list", "dict", "bytes", "nan", "obj")
] + [
    ("values", V1, {"args": ["int"]}),
    ("values", V1, {"args": [], "kwargs": {"kind": "str", "extra": 1}}),
    ("values", V1, {"args": [{"\u00e9\u2028": [0.1, 1e-5, -1, "\n\x01"]}]}),
    ("fails", V1, {}),
    ("fails", V1, {"kwargs": {"why": "unicode"}}),
    ("fails", V1, {"kwargs": {"why": "exit"}}),
    ("fails", LAMBDA, {}),
    ("fails", LAMBDA, {"why": "unicode"}),
    ("slow", V1, {"args": [0.25]}),
    ("slow", V1, {"args": [30], "limits": {"timeout_ms": 1000}}),
    ("slow", LAMBDA, 0.2),
    ("handler", LAMBDA, {}),
    ("handler", LAMBDA, {"a": [1, 2.5, "\u00e9", 1e-5, 0.1], "b": {"c": None}, "big": 1234567890123456789}),
    ("handler", LAMBDA, [1, "two"]),
    ("ctx", LAMBDA, {}),
    ("handler", V1, {"args": [{"x": 1}, {"function_name": "handler"}]}),
    ("add", LAMBDA, {"a": 1, "b": 2}),
    ("add", LAMBDA, {"a": 1}),
    ("add", V1, {"args": [1, 2], "kwargs": {"c": 3}}),
    ("add", V1, {"args": [1, 2, 3, 4]}),
    ("add", V1, {"args": "no"}),
    ("nope", V1, {}),
    ("nope", LAMBDA, {}),
]

HEADERS = ("content-type", "x-amz-function-error", "x-amz-executed-version", "location", "x-amz-log-result")


def mask(text):
    text = re.sub(r'"(id|run_id|request_id)":"[^"]*"', r'"\1":"ID"', text)
    text = re.sub(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z', "TIME", text)
    text = re.sub(r'"(\w+_ms)":[0-9.e+-]+', r'"\1":MS', text)
    text = re.sub(r'"cold":(true|false)', '"cold":B', text)
    text = re.sub(r'/v1/runs/[a-z0-9]+', "/v1/runs/ID", text)
    text = re.sub(r'\b(run|r)[a-z0-9]{15,}\b', "ID", text)
    return text


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("corpus")).serving() as daemon:
        for name, src in FUNCTIONS.items():
            fn = "handler" if name in ("handler", "ctx") else ("add" if name == "add" else "main")
            st, b = daemon.call("POST", "/v1/functions", {"name": name, "source": src.lstrip("\n"), "function": fn})
            assert st == 201, b
        st, b = daemon.call("POST", "/v1/functions", {"name": "lvalues", "source": FUNCTIONS["values"].lstrip("\n"),
                                                      "function": "handler"})
        assert st == 201, b
        yield daemon


def answers(d):
    out = []
    for name, route, body in CASES:
        st, hdrs, raw = d.request("POST", route.format(name), body)
        out.append({"case": f"{route.format(name)} {json.dumps(body)[:200]}", "status": st,
                    "headers": {h: mask(hdrs[h]) for h in HEADERS if h in hdrs}, "body": mask(raw.decode())})
    return out


def test_answers_are_the_recorded_bytes(d):
    got = answers(d)
    if os.environ.get("PYSPRINTER_RECORD_CORPUS"):
        CORPUS.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    want = json.loads(CORPUS.read_text())
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, g["case"]
