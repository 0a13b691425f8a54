"""The operator's config, tenants, tokens and limits as an operator and a
hostile tenant meet them (helper-155's exploration): each test is named
after what a user checks, and failed on the daemon before its fix."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import DAEMON
from daemonlib import TOKENS, Daemon, check_config
from daemonlib import reload_config as reload
from uilib import start_browser, ui_login, wait_for

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

SLEEPY = "import time\n\ndef f(s: float = 5):\n    time.sleep(s)\n    return 'slept'\n"
LOUD = "def f(n: int = 100000):\n    print('x' * n)\n    return 'printed'\n"
QUICK = "def f():\n    return 1\n"
SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A daemon with the default limits: no maxima in its config."""
    with Daemon(tmp_path_factory.mktemp("tenants")).serving() as running:
        yield running


# ---- limits ------------------------------------------------------------------------


def test_a_reload_that_lowers_the_default_limits_applies_to_the_next_run(tmp_path):
    """docs/api.md: SIGHUP reloads the limits. Without `limits.maxima` in
    the file, a lowered `limits.defaults` was logged as reloaded and never
    used: the runs kept the defaults the daemon started with."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, b = d.run(LOUD)
        assert st == 200 and b["status"] == "succeeded", b
        reload(d, d.config.read_text() + "limits:\n  defaults: {timeout_ms: 300, max_output_bytes: 1000}\n")
        st, b = d.run(LOUD)
        assert st == 200 and b["status"] == "killed", b
        assert "output" in b["error"]["message"], b["error"]
        st, b = d.run(SLEEPY, kwargs={"s": 10})
        assert st == 200 and b["status"] == "killed" and b["error"]["type"] == "TimeLimit", b
        # A request still lowers, and may raise up to what no maximum caps.
        st, b = d.run(LOUD, limits={"max_output_bytes": 1000000})
        assert st == 200 and b["status"] == "succeeded", b


def test_a_lowered_grant_reaches_runs_still_queued(tmp_path):
    """Runs accepted under the old grant and still queued when SIGHUP
    lowered the tenant's maxima ran with what they had been granted; only
    runs resumed after a restart were lowered. The operator lowering a
    tenant (say, in response to abuse) meant the next runs, not only the
    next requests."""
    grant = "server:\n  max_concurrent_per_tenant: 1\ntenants:\n  alice:\n    maxima: {timeout_ms: %d}\n"
    d = Daemon(tmp_path / "d", config_extra=grant % 60000)
    with d.serving():
        st, first = d.run(SLEEPY, wait=False, kwargs={"s": 60})
        assert st == 202, first
        d.wait_status(first["id"], ["running"])
        st, queued = d.run(SLEEPY, wait=False, kwargs={"s": 20}, limits={"timeout_ms": 30000})
        assert st == 202, queued
        assert d.call("GET", f"/v1/runs/{queued['id']}")[1]["status"] == "queued"
        reload(d, d.config.read_text().replace("timeout_ms: 60000", "timeout_ms: 500"))
        d.cancel(first["id"])
        b = d.wait_status(queued["id"], ["succeeded", "killed", "failed", "cancelled"], timeout=60)
        assert b["status"] == "killed" and b["error"]["type"] == "TimeLimit", b
        assert "0.5s" in b["error"]["message"], b["error"]


def test_a_reload_of_an_empty_file_keeps_the_running_config(tmp_path):
    """A config rewritten in place is empty between its truncation and
    its write: a SIGHUP then was "configuration reloaded (0 tokens)", and
    every tenant was locked out. `{}` still means all defaults."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        good = d.config.read_text()
        for empty in ("", "\n# comments only\n"):
            reload(d, empty, until="the file is empty")
            assert "reload failed, keeping the old configuration" in d.log.read_text()
            assert d.call("GET", "/v1/runs", token="alice")[0] == 200
        reload(d, "{}\n")
        assert d.call("GET", "/v1/runs", token="alice")[0] == 401
        reload(d, good)
        assert d.call("GET", "/v1/runs", token="alice")[0] == 200


@pytest.mark.parametrize("where", ["defaults", "maxima"])
def test_a_timeout_past_seven_days_in_the_config_is_refused(tmp_path, where):
    """A timeout of 2^63-1 ms passed --check-config and then killed every
    run at once ("time limit (9.22337e+15s)": the deadline overflowed)."""
    code, err = check_config(tmp_path, f"limits:\n  {where}:\n    timeout_ms: 9223372036854775807\n")
    assert code == 2, err
    assert f"'limits.{where}.timeout_ms' must be at most {SEVEN_DAYS_MS}" in err, err
    code, err = check_config(tmp_path, f"tenants:\n  bob:\n    maxima: {{timeout_ms: {SEVEN_DAYS_MS + 1}}}\n")
    assert code == 2 and f"'tenants.bob.maxima.timeout_ms' must be at most {SEVEN_DAYS_MS}" in err, err
    code, err = check_config(tmp_path, f"limits:\n  {where}:\n    timeout_ms: {SEVEN_DAYS_MS}\n")
    assert code == 0, err


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "nonsense", "127.0.0.1:", "0.0.0.0:8080x"])
def test_check_config_refuses_a_listen_address_the_start_refuses(tmp_path, listen):
    """`--check-config` said ok for a listen address that a start then
    refused ("bad listen address"): a checked restart was an outage."""
    code, err = check_config(tmp_path, f"listen: '{listen}'\n")
    assert code == 2, err
    assert f"pysprinterd.yaml:1: 'listen' must be HOST:PORT or [V6]:PORT" in err and listen in err, err
    for good in ("127.0.0.1:8080", "[::1]:8080", ":8080", "localhost:80"):
        code, err = check_config(tmp_path, f"listen: '{good}'\n")
        assert code == 0, (good, err)


@pytest.mark.parametrize("value", ["|\n      abcdefghij0123456789\n", "'abcdefghij0123456789 '",
                                   "' abcdefghij0123456789'", "\"abcdefghij\\t0123456789\""])
def test_a_token_no_client_can_send_is_refused(tmp_path, value):
    """A token with a newline (a YAML block scalar keeps it), a space at
    an end or a control character passed --check-config, and no client
    could ever use it: the daemon reads "Bearer TOKEN" trimmed."""
    code, err = check_config(tmp_path, f"tokens:\n  - tenant: alice\n    token: {value}")
    assert code == 2, err
    assert "'tokens[0].token' must not have spaces at its ends or control characters" in err, err
    code, err = check_config(tmp_path, "tokens:\n  - tenant: alice\n    token: abcdefghij 0123456789\n")
    assert code == 0, err


def test_a_run_asking_for_a_timeout_past_seven_days_is_refused_not_killed(d):
    """Without maxima a request's huge timeout_ms ran and was killed at
    once by an overflowed deadline; the CLI's --timeout stops at 7 days."""
    for path, body in (("/v1/runs?wait=true", {"source": QUICK}),):
        st, b = d.call("POST", path, {**body, "limits": {"timeout_ms": 9223372036854775807}})
        assert st == 403, b
        assert "limits.timeout_ms" in b["error"]["message"] and str(SEVEN_DAYS_MS) in b["error"]["message"], b
    st, b = d.call("POST", "/v1/functions", {"name": "longf", "source": QUICK,
                                             "limits": {"timeout_ms": SEVEN_DAYS_MS + 1}})
    assert st == 403, b
    st, b = d.run(QUICK, limits={"timeout_ms": SEVEN_DAYS_MS})
    assert st == 200 and b["status"] == "succeeded", b


# ---- revocation reaches open streams ------------------------------------------------

TICKS = "import time\n\ndef f(n: int = 300):\n    for i in range(n):\n        print('tick', i, flush=True)\n        time.sleep(0.1)\n    return n\n"


def open_stream(d, path, headers, host="x"):
    """A raw GET of an SSE route: the socket once its 200 head arrived."""
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, got
        got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    return s, got


def read_until(s, got, what):
    while what not in got:
        chunk = s.recv(65536)
        assert chunk, got[-2000:]
        got += chunk
    return got


def stream_ends(s, within=20):
    """What arrived when the server ended the stream within `within`
    seconds (its last chunk, or a close), else None."""
    s.settimeout(within)
    deadline = time.time() + within
    got = b""
    try:
        while time.time() < deadline:
            chunk = s.recv(65536)
            got += chunk
            if not chunk or got.endswith(b"\r\n0\r\n\r\n"):
                return got
    except socket.timeout:
        return None
    except ConnectionResetError:
        return got
    return None


def made_token(d, tenant):
    st, b = d.call("POST", "/v1/tokens", {"tenant": tenant}, token="admin")
    assert st == 201, b
    return b["id"], b["token"]


def test_a_revoked_token_ends_the_log_stream_it_opened(d):
    """A log follower (`logs?follow=1`) opened with a token kept receiving
    the run's output after the token was revoked: only new requests were
    refused."""
    tid, token = made_token(d, "carol")
    _, other = made_token(d, "carol")
    st, run = d.run(TICKS, wait=False, token=token)
    assert st == 202, run
    s, got = open_stream(d, f"/v1/runs/{run['id']}/logs?follow=1", {"Authorization": "Bearer " + token})
    try:
        read_until(s, got, b"tick 1")
        st, b = d.call("DELETE", f"/v1/tokens/{tid}", token="admin")
        assert st == 200, b
        end = stream_ends(s)
        assert end is not None, "the stream went on after its token was revoked"
        assert b"event: revoked" in end and b"unauthorized" in end, end[-2000:]
        assert d.call("GET", f"/v1/runs/{run['id']}", token=other)[1]["status"] == "running"
    finally:
        s.close()
        d.cancel(run["id"], token=other)


def test_removing_a_token_from_the_config_ends_its_event_stream(tmp_path):
    """The same for the dashboard's /v1/events and a token the operator
    removed with SIGHUP, and for a session cookie after logout."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        s, got = open_stream(d, "/v1/events", {"Authorization": "Bearer " + TOKENS["bob"]})
        st, hs, body = d.request("POST", "/login", {"token": TOKENS["alice"]}, token=None,
                                 headers={"X-Pysprinter-CSRF": "1"})
        assert st == 200, body
        cookie = hs["set-cookie"].split(";")[0]
        c, cgot = open_stream(d, "/v1/events", {"Cookie": cookie})
        try:
            read_until(s, got, b"event: hello")
            read_until(c, cgot, b"event: hello")
            bob_hash = hashlib.sha256(TOKENS["bob"].encode()).hexdigest()
            reload(d, d.config.read_text().replace(bob_hash, hashlib.sha256(b"bob-next-token-0123456789").hexdigest()))
            assert d.call("GET", "/v1/runs", token="bob")[0] == 401
            assert stream_ends(s), "bob's event stream went on after bob's token was removed"
            st, _, _ = d.request("POST", "/logout", token=None, headers={"Cookie": cookie, "X-Pysprinter-CSRF": "1"})
            assert st == 200
            assert stream_ends(c), "the session's event stream went on after logout"
        finally:
            s.close()
            c.close()


def test_a_revoked_token_ends_a_dag_event_stream_and_the_clis_follow(d):
    """The DAG run's events and `pysprinter logs -f --server` opened with
    a token stop with it: the CLI says the server refused the token (exit
    6) instead of printing the run's output on."""
    from conftest import CLI
    tid, token = made_token(d, "dana")
    _, other = made_token(d, "dana")
    pipeline = "tasks:\n  slow: {file: s.py, function: f, kwargs: {n: 3000}}\n"
    st, dag = d.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"s.py": TICKS}}, token=token)
    assert st in (200, 201, 202), dag
    s, got = open_stream(d, f"/v1/dags/{dag['id']}/events", {"Authorization": "Bearer " + token})
    st, run = d.run(TICKS, wait=False, token=token)
    assert st == 202, run
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=token, PYSPRINTER_HOME=str(d.root / "cli-home"))
    follow = subprocess.Popen([str(CLI), "logs", "-f", run["id"]], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        read_until(s, got, b"event: dag")
        deadline = time.time() + 30
        while "tick 1" not in d.call("GET", f"/v1/runs/{run['id']}/logs", token=other)[1]:
            assert time.time() < deadline
            time.sleep(0.05)
        assert d.call("DELETE", f"/v1/tokens/{tid}", token="admin")[0] == 200
        end = stream_ends(s)
        assert end is not None and b"event: revoked" in end, end
        out, err = follow.communicate(timeout=30)
        assert follow.returncode == 6 and "refused the token" in err, (follow.returncode, err)
    finally:
        s.close()
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        d.cancel(run["id"], token=other)
        d.call("DELETE", f"/v1/dags/{dag['id']}", token=other)


def test_public_metrics_do_not_list_the_tenants(tmp_path):
    """With `metrics_public: true` (the default) anyone who reached the
    port read every tenant's name, its log and data bytes and its run
    count from /metrics. Those series are an admin token's now; the
    totals stay public."""
    d = Daemon(tmp_path / "d", config_extra="retention:\n  interval_s: 1\n")
    with d.serving():
        st, b = d.run(LOUD, token="bob", kwargs={"n": 10})
        assert st == 200 and b["status"] == "succeeded", b
        deadline = time.time() + 60
        while 'tenant="bob"' not in d.call("GET", "/metrics", token="admin")[1]:
            assert time.time() < deadline, "the collector never listed bob"
            time.sleep(0.2)
        for who in (None, "alice", "reader"):
            st, text = d.call("GET", "/metrics", token=who)
            assert st == 200 and "pysprinter_disk_bytes{" in text, text[:500]
            assert 'tenant="' not in text, [ln for ln in text.splitlines() if "tenant=" in ln]


def test_workers_do_not_show_a_tenant_another_tenants_packages(tmp_path):
    """/v1/envs hides which requirement sets other tenants use, but
    /v1/workers showed every warm worker's store dirs (each named by its
    wheel's sha256, which names the package) and its failed imports
    ("secretsauce: ... No module named ..."). Another tenant's are an
    admin's to see now; the owner still sees its own."""
    import pkgindex
    from daemonlib import sandbox_mode
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    idx = pkgindex.Index()
    idx.add(pkgindex.build_wheel(wheels, "secretsauce", "4.2",
                                 files={"secretsauce/__init__.py": "import nosuchmod_of_alice\n"}))
    idx.start()
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=f"index:\n  url: {idx.url}\n")
    try:
        with d.serving():
            st, b = d.run("@requirements({'secretsauce': '4.2'})\ndef f():\n    return 1\n")
            assert st == 200 and b["status"] == "succeeded", b
            sha = d.call("GET", f"/v1/runs/{b['id']}/lock")[1]["lock"]["packages"][0]["sha256"]

            def workers(who):
                st, w = d.call("GET", "/v1/workers", token=who)
                assert st == 200, w
                return json.dumps([x for x in w["workers"] if x["kind"] == "worker"])
            mine = workers("alice")
            assert sha in mine and "nosuchmod_of_alice" in mine, mine
            theirs = workers("bob")
            assert sha not in theirs and "secretsauce" not in theirs and "nosuchmod" not in theirs, theirs
            # The pool's totals are still shown; its workers only where bob's
            # runs use their environment (helper-231).
            assert d.call("GET", "/v1/workers", token="bob")[1]["pool"]["workers"] >= 1
            assert sha in workers("admin")
    finally:
        idx.stop()


# ---- made tokens on every route ----------------------------------------------------

HOOK = "def hook(event):\n    return {'statusCode': 200, 'body': 'hook ran'}\n"


def test_a_made_token_calls_its_tenants_function_url(d):
    """A token made with POST /v1/tokens (or `pysprinterd token create`)
    was refused on a function URL deployed with `url: true` (401 "invalid
    token"): the endpoint looked in the config's tokens only."""
    st, b = d.call("POST", "/v1/functions", {"name": "hook", "source": HOOK, "url": True})
    assert st in (200, 201), b
    tid, mine = made_token(d, "alice")
    _, theirs = made_token(d, "bob")
    st, b = d.call("POST", "/v1/tokens", {"tenant": "alice", "role": "readonly"}, token="admin")
    assert st == 201, b
    readonly = b["token"]
    st, _, body = d.request("GET", "/fn/alice/hook", token=mine)
    assert st == 200 and body == b"hook ran", (st, body)
    assert d.request("GET", "/fn/alice/hook", token=theirs)[0] == 403
    assert d.request("GET", "/fn/alice/hook", token=readonly)[0] == 403
    assert d.call("DELETE", f"/v1/tokens/{tid}", token="admin")[0] == 200
    assert d.request("GET", "/fn/alice/hook", token=mine)[0] == 401


def login_cookie(d, token, conn=None):
    h = {"X-Pysprinter-CSRF": "1", "Content-Type": "application/json"}
    c = conn or d.conn()
    c.request("POST", "/login", body=json.dumps({"token": TOKENS.get(token, token)}), headers=h)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, body
    return r.getheader("Set-Cookie").split(";")[0]


def test_one_tenant_logging_in_over_and_over_keeps_other_tenants_sessions(d):
    """The daemon keeps 4096 sessions and drops the oldest for a new one:
    alice, logging in 4096 times with her own token, logged bob's
    dashboard out. A token now holds at most 64 sessions: its own oldest
    goes first."""
    bob = login_cookie(d, "bob")
    alice_first = login_cookie(d, "alice")
    c = d.conn()
    try:
        for _ in range(4200):
            login_cookie(d, "alice", conn=c)
    finally:
        c.close()
    st, _, body = d.request("GET", "/v1/runs", token=None, headers={"Cookie": bob})
    assert st == 200, body
    assert d.request("GET", "/v1/runs", token=None, headers={"Cookie": alice_first})[0] == 401


# ---- the dashboard when its session ends ---------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through chromedriver, as tests/e2e/test_ui.py
    drives it (nothing downloads a browser)."""
    drv = start_browser()
    try:
        yield drv
    finally:
        drv.quit()


def live_text(drv):
    from selenium.webdriver.common.by import By
    return drv.find_element(By.ID, "live").text


def test_the_runs_page_goes_to_the_login_page_when_its_token_is_revoked(d, browser):
    """A dashboard left open on the runs page said '● live' or
    'reconnecting…' for ever once its token was revoked: its stream
    failed and the page never told the user to log in again."""
    tid, token = made_token(d, "uitenant")
    ui_login(browser, d, token, "uitenant")
    browser.get(d.url + "/ui/#/runs")
    wait_for(lambda: "live" in live_text(browser) and "●" in live_text(browser), what="the live runs table")
    st, b = d.call("DELETE", f"/v1/tokens/{tid}", token="admin")
    assert st == 200, b
    wait_for(lambda: "/ui/login" in browser.current_url, timeout=20, what="the login page")


def test_the_run_page_goes_to_the_login_page_after_a_restart_lost_the_session(tmp_path, browser):
    """Sessions live in the daemon's memory: after a restart the open
    page's stream was refused (401) and the run page said 'disconnected'
    for ever, the runs page 'reconnecting…', instead of the login page."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        st, run = d.run(TICKS, wait=False, kwargs={"n": 100000})
        assert st == 202, run
        ui_login(browser, d, TOKENS["alice"], "alice")
        browser.get(d.url + f"/ui/#/runs/{run['id']}")
        from selenium.webdriver.common.by import By
        wait_for(lambda: "tick 2" in browser.find_element(By.ID, "log").text, what="the streaming log")
        port = d.port
        d.stop(signal.SIGKILL)
        d.start(port=port)
        wait_for(lambda: "/ui/login" in browser.current_url, timeout=30, what="the login page")
    finally:
        if d.proc.poll() is None:
            d.call("DELETE", f"/v1/runs/{run['id']}")
        d.stop()
