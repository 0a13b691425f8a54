"""Explored by the helper `clientstack`: Ctrl-C in the Python client's
run() and invoke() before the daemon's first answer (docs/python.md), a
stack's files sent by their path relative to the stack file (docs/cli.md
"stack"), and a token Function URL's CORS preflight answered by the daemon
(docs/api.md "Function URLs")."""
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import DAEMON, ROOT
import daemonlib

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

NAP = '''
import time

@requirements({})
def nap(s: float):
    print("napping", flush=True)
    time.sleep(s)
    return s
'''


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("d")
    with daemonlib.Daemon(tmp, sandbox=daemonlib.sandbox_mode(tmp)).serving_function("nap", NAP, "nap.py") as d:
        yield d


def running_runs(d, pred):
    st, ls = d.call("GET", "/v1/runs?status=running,queued")
    assert st == 200, ls
    return [r for r in ls["runs"] if pred(r)]


def interrupt_client_call(d, call, pred, tmp_path):
    """Starts a child process making `call` on a Client, sends it SIGINT once
    a run matching pred runs (before any answer: the call waits for the run's
    end, 60 s away), and returns (the child's output, the run's id)."""
    (tmp_path / "nap.py").write_text(NAP)
    # Python's own SIGINT handler, set here: a child of a shell's background
    # job (CI's `nohup … &`) starts with SIGINT ignored, which Python keeps.
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'python')!r})\n"
              "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "import pysprinter\n"
              f"c = pysprinter.Client(server={d.url!r}, token={daemonlib.TOKENS['alice']!r})\n"
              "try:\n"
              f"    {call}\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        run_id = None
        for _ in range(600):
            mine = [r for r in running_runs(d, pred) if r["status"] == "running"]
            if mine:
                run_id = mine[0]["id"]
                break
            time.sleep(0.1)
        assert run_id, "the run never ran"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return out, run_id


def test_ctrl_c_in_invoke_before_the_answer_cancels_the_invocation(daemon, tmp_path):
    """Before: the invocation ran on to its end (60 s) for nobody."""
    out, rid = interrupt_client_call(daemon, "c.invoke('nap', 45)", lambda r: r.get("fn_name") == "nap", tmp_path)
    assert "interrupted" in out
    rec = daemon.wait_status(rid, ["cancelled", "succeeded", "failed", "killed"], timeout=30)
    assert rec["status"] == "cancelled", rec


def test_ctrl_c_in_run_before_the_answer_cancels_the_run(daemon, tmp_path):
    out, rid = interrupt_client_call(daemon, "c.run('nap.py', 46)",
                                     lambda r: not r.get("fn_name") and r.get("args") == [46], tmp_path)
    assert "interrupted" in out
    rec = daemon.wait_status(rid, ["cancelled", "succeeded", "failed", "killed"], timeout=30)
    assert rec["status"] == "cancelled", rec


# ---- a stack's function files: their path relative to the stack file --------

@pytest.fixture
def stack(cli, daemon, tmp_path):
    """The CLI pointed at the module's daemon as alice, in tmp_path."""
    cli.env = dict(cli.env, PYSPRINTER_SERVER=daemon.url, PYSPRINTER_TOKEN=daemonlib.TOKENS["alice"],
                   HOME=str(tmp_path))
    return cli


def test_a_stack_names_its_files_by_their_path_from_the_stack_file(stack, daemon, tmp_path):
    """Before: a stack sent the base name, so the error said `add.py:3:` for
    fns/add.py, and a/handler.py and b/handler.py were both `handler.py`."""
    stack.write("fns/sub.py", "def sub(a: int, b: int):\n    x = 1\n    return a - b +\n")
    (tmp_path / "stack.yaml").write_text("functions:\n  cs-sub: {file: ./fns/sub.py}\n")
    p = stack("deploy", "-f", "stack.yaml")
    assert p.returncode == 3, (p.stdout, p.stderr)
    assert "fns/sub.py:3:" in p.stderr, p.stderr

    stack.write("a/handler.py", "def handler(event=None):\n    return 'a'\n")
    stack.write("b/handler.py", "def handler(event=None):\n    raise ValueError('b says no')\n")
    (tmp_path / "two.yaml").write_text("functions:\n  cs-a: {file: a/handler.py}\n  cs-b: {file: b/handler.py}\n")
    p = stack("deploy", "-f", "two.yaml", check=0)
    assert p.stdout.splitlines() == ["created function cs-a", "created function cs-b"], p.stdout
    assert daemon.call("GET", "/v1/functions/cs-a")[1]["filename"] == "a/handler.py"
    assert daemon.call("GET", "/v1/functions/cs-b")[1]["filename"] == "b/handler.py"
    p = stack("invoke", "cs-a")
    assert p.returncode == 0 and p.stdout == "a\n", (p.stdout, p.stderr)
    p = stack("invoke", "cs-b")
    assert p.returncode == 1 and 'File "b/handler.py", line 2, in handler' in p.stderr, p.stderr


def test_a_stack_deployed_by_an_older_cli_stays_unchanged(stack, daemon, tmp_path):
    """An older CLI sent the base name: the same file and settings are no
    new version now that the path goes (no `updated` for every function at
    the first deploy after an upgrade). A file moved later is an update."""
    src = "def mul(a: int = 2, b: int = 3):\n    return a * b\n"
    st, out = daemon.call("POST", "/v1/functions", {"name": "cs-mul", "source": src, "filename": "mul.py"})
    assert st in (200, 201), out
    stack.write("fns/mul.py", src)
    (tmp_path / "stack.yaml").write_text("functions:\n  cs-mul: {file: fns/mul.py}\n")
    p = stack("deploy", "-f", "stack.yaml", check=0)
    assert p.stdout.splitlines() == ["unchanged function cs-mul"], p.stdout
    assert daemon.call("GET", "/v1/functions/cs-mul")[1]["versions"] == [1]
    # Edited: the new version has the path; moved then: a version more.
    stack.write("fns/mul.py", src.replace("a * b", "b * a"))
    p = stack("deploy", "-f", "stack.yaml", check=0)
    assert p.stdout.splitlines() == ["updated function cs-mul"], p.stdout
    assert daemon.call("GET", "/v1/functions/cs-mul")[1]["filename"] == "fns/mul.py"
    stack.write("lib/mul.py", src.replace("a * b", "b * a"))
    (tmp_path / "stack.yaml").write_text("functions:\n  cs-mul: {file: lib/mul.py}\n")
    p = stack("deploy", "-f", "stack.yaml", check=0)
    assert p.stdout.splitlines() == ["updated function cs-mul"], p.stdout
    got = daemon.call("GET", "/v1/functions/cs-mul")[1]
    assert got["filename"] == "lib/mul.py" and got["versions"] == [1, 2, 3], got


def test_a_stack_path_outside_its_directory_sends_the_base_name(stack, daemon, tmp_path):
    """No directory of the user's machine reaches the server (docs/cli.md):
    a file above the stack's directory, or absolute, goes by its base name;
    `./` and empty components are dropped."""
    d = tmp_path / "proj"
    d.mkdir()
    stack.write("shared/up.py", "def up():\n    return 1\n")
    stack.write("proj/fns/here.py", "def here():\n    return 2\n")
    (d / "stack.yaml").write_text("functions:\n  cs-up: {file: ../shared/up.py}\n"
                                  f"  cs-abs: {{file: {tmp_path / 'shared' / 'up.py'}}}\n"
                                  "  cs-here: {file: .//fns/./here.py}\n")
    stack("deploy", "-f", "proj/stack.yaml", check=0)
    assert daemon.call("GET", "/v1/functions/cs-up")[1]["filename"] == "up.py"
    assert daemon.call("GET", "/v1/functions/cs-abs")[1]["filename"] == "up.py"
    assert daemon.call("GET", "/v1/functions/cs-here")[1]["filename"] == "fns/here.py"


# ---- a token Function URL's CORS preflight ----------------------------------

CORS_FN = '''
def handler(event, context):
    if event["requestContext"]["http"]["method"] == "OPTIONS":
        return {"statusCode": 204, "headers": {"access-control-allow-origin": "https://fn.example",
                                               "x-answered-by": "function"}}
    return {"statusCode": 200, "headers": {"access-control-allow-origin": "https://app.example"},
            "body": "hi " + event["rawPath"]}
'''

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def cors_view(hdrs):
    """The headers a browser reads from a preflight's answer (not the id)."""
    return {k: v for k, v in hdrs.items() if k.startswith("access-control-") or k in ("vary", "allow")}


def test_a_token_urls_preflight_is_answered_by_the_daemon(daemon):
    """A browser's CORS preflight carries no Authorization: before, a token
    URL answered it 401, so no page of another origin could call it. Now
    the daemon answers it (the function is not run), the same for every
    token URL, a function without one and no function at all."""
    for name, url in (("cs-cors", True), ("cs-cors-pub", "public"), ("cs-nourl", False)):
        st, out = daemon.call("POST", "/v1/functions", {"name": name, "source": CORS_FN, "filename": "cors.py",
                                                        "url": url})
        assert st in (200, 201), out
    st, hdrs, body = daemon.request("OPTIONS", "/fn/alice/cs-cors/items", token=None, headers=PREFLIGHT)
    assert st == 204, (st, hdrs, body)
    assert body == b""
    assert hdrs["access-control-allow-origin"] == "https://app.example"
    assert "POST" in hdrs["access-control-allow-methods"].split(", ")
    assert hdrs["access-control-allow-headers"] == "authorization, content-type"
    assert "access-control-allow-credentials" not in hdrs
    assert "content-security-policy" in hdrs and "x-answered-by" not in hdrs
    # Never the function's: no run.
    assert daemon.call("GET", "/v1/functions/cs-cors/runs")[1]["runs"] == []
    # Nothing tells a token URL from a function without one or none at all.
    for other in ("/fn/alice/cs-nourl/items", "/fn/alice/no-such-fn/items", "/fn/bob/cs-cors/items",
                  "/fn/alice/bad%20name"):
        st2, hdrs2, body2 = daemon.request("OPTIONS", other, token=None, headers=PREFLIGHT)
        assert (st2, cors_view(hdrs2), body2) == (st, cors_view(hdrs), body), other
    # The call itself still takes the token; the function's headers answer it.
    st, hdrs, body = daemon.request("POST", "/fn/alice/cs-cors/items", token=None,
                                    headers={"Origin": "https://app.example"})
    assert st == 401
    st, hdrs, body = daemon.request("POST", "/fn/alice/cs-cors/items", headers={"Origin": "https://app.example"})
    assert (st, body) == (200, b"hi /items") and hdrs["access-control-allow-origin"] == "https://app.example"
    # An OPTIONS that is no preflight (no Origin, or no requested method) is
    # the function's, as before: the token first.
    assert daemon.request("OPTIONS", "/fn/alice/cs-cors/items", token=None)[0] == 401
    st, hdrs, _ = daemon.request("OPTIONS", "/fn/alice/cs-cors/items", headers={"Origin": "https://app.example"})
    assert st == 204 and hdrs["x-answered-by"] == "function"
    # A public URL's preflight is its function's, as before.
    st, hdrs, _ = daemon.request("OPTIONS", "/fn/alice/cs-cors-pub/x", token=None, headers=PREFLIGHT)
    assert st == 204 and hdrs["x-answered-by"] == "function", hdrs
    assert hdrs["access-control-allow-origin"] == "https://fn.example"


def test_a_preflights_odd_headers_are_not_echoed(daemon):
    """Only a list of header names is echoed back; anything else is left out
    (a browser then refuses the call), never copied into the answer."""
    st, out = daemon.call("POST", "/v1/functions", {"name": "cs-cors2", "source": CORS_FN, "filename": "cors.py",
                                                    "url": True})
    assert st in (200, 201), out
    st, hdrs, _ = daemon.request("OPTIONS", "/fn/alice/cs-cors2", token=None,
                                 headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                                          "Access-Control-Request-Headers": "x-a, <script>"})
    assert st == 204 and "access-control-allow-headers" not in hdrs, hdrs
    st, hdrs, _ = daemon.request("OPTIONS", "/fn/alice/cs-cors2", token=None,
                                 headers={"Origin": "null", "Access-Control-Request-Method": "GET"})
    assert st == 204 and hdrs["access-control-allow-origin"] == "null", hdrs
