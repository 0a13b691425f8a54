"""helper-203's review of what a Function URL's answer can do to the
dashboard it shares an origin with (docs/endpoints.md "Same origin as the
dashboard"), and of the daemon's own answers' hardening headers."""
import http.client
import json
import time

import pytest

from conftest import DAEMON
from daemonlib import TOKENS, Daemon

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

ANSWER = """\
def f(event):
    return {"statusCode": 200, "body": "hello", %s: %r}
"""


def deploy(d, name, how, value, token="bob"):
    st, out = d.call("POST", "/v1/functions", {"name": name, "source": ANSWER % (how, value), "url": "public"},
                     token=token)
    assert st in (200, 201), out


def last_run_error(d, name, token="bob"):
    st, b = d.call("GET", f"/v1/functions/{name}/runs", token=token)
    assert st == 200, b
    run = b["runs"][0]
    st, r = d.call("GET", f"/v1/runs/{run['id']}", token=token)
    assert st == 200, r
    return json.dumps(r.get("error"))


def test_a_function_cannot_fill_the_dashboards_cookie_header(tmp_path):
    """A public function's cookie with Path=/ (or /v1, /ui) is sent back
    with every dashboard request. Ten of 4 KB (what a browser keeps) made
    every later dashboard request's Cookie header larger than the daemon
    reads (libmicrohttpd answers 431): the visitor's dashboard stopped
    working until she cleared the origin's cookies by hand. Now a cookie
    whose Path reaches past /fn/TENANT (the dashboard's paths, or another
    tenant's functions, where it would fix a session for their visitors)
    or that names a Domain is the function's malformed answer (502, the
    reason in its run); one of no Path (the browser keeps it under
    /fn/TENANT) or of a Path under /fn/TENANT still goes out."""
    # Some 30 calls from one address: past the public rate's burst (20).
    d = Daemon(tmp_path / "d", config_extra="server:\n  endpoint_rate: 1000\n  endpoint_burst: 1000\n")
    with d.serving():
        # What such a jar does to the dashboard: its requests are refused.
        jar = "; ".join(f"c{i}={'x' * 4000}" for i in range(10))
        st, _, _ = d.request("GET", "/ui/session", token=None, headers={"Cookie": jar})
        assert st in (400, 413, 431), st
        for i, path in enumerate(["/", "/v1", "/ui/", "/u", "/login", " / ", "/fnx", "/fn", "/fn/alice/x",
                                  "/fn/bobby"]):
            for tag, how in (("c", '"cookies"'), ("h", '"headers"')):
                cookie = f"big{i}={'x' * 4000}; path={path}; Max-Age=99999"
                value = [cookie] if how == '"cookies"' else {"Set-Cookie": cookie}
                name = f"flood{i}{tag}"
                deploy(d, name, how, value)
                st, hs, body = d.request("GET", f"/fn/bob/{name}", token=None)
                assert st == 502 and "set-cookie" not in hs, (path, how, st, hs, body)
                assert "Path" in last_run_error(d, name), (path, how)
        # A Path a browser ignores (not starting with "/") means the
        # default one, under /fn/: fine, as no Path and /fn/... are.
        # Nor one for another host under a Domain.
        deploy(d, "dom", '"cookies"', ["theme=dark; Domain=example.com"])
        st, hs, body = d.request("GET", "/fn/bob/dom", token=None)
        assert st == 502 and "set-cookie" not in hs, (st, hs, body)
        assert "Domain" in last_run_error(d, "dom")
        for i, cookie in enumerate(["theme=dark", "theme=dark; Path=/fn/bob/ok0", "theme=dark; Path=/fn/bob",
                                    "theme=dark; Path=", "theme=dark; Path=ui", "theme=dark; HttpOnly; Secure"]):
            deploy(d, f"ok{i}", '"cookies"', [cookie])
            st, hs, body = d.request("GET", f"/fn/bob/ok{i}", token=None)
            assert st == 200 and hs["set-cookie"] == cookie, (cookie, st, hs, body)


def test_a_function_cannot_pin_the_shared_host_to_https(tmp_path):
    """Strict-Transport-Security names the host (and, includeSubDomains,
    every name under it): the operator's choice, not a tenant's. A
    function's went out as it set it — behind a TLS proxy a public function
    could pin the whole domain to HTTPS for a year, or lift the operator's
    pin with max-age=0. Now it is the function's malformed answer (502, the
    reason in its run), as Clear-Site-Data is."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        for i, v in enumerate(["max-age=31536000; includeSubDomains; preload", "max-age=0"]):
            deploy(d, f"hsts{i}", '"headers"', {"strict-TRANSPORT-security": v})
            st, hs, body = d.request("GET", f"/fn/bob/hsts{i}", token=None,
                                     headers={"X-Forwarded-Proto": "https"})
            assert st == 502 and "strict-transport-security" not in hs, (st, hs, body)
            assert "strict-transport-security" in last_run_error(d, f"hsts{i}").lower()


def raw_headers(d, method, path, token="alice", body=None):
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    try:
        h = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
        if body is not None:
            h["Content-Type"] = "application/json"
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
        r = c.getresponse()
        r.read()
        return r.status, [(k.lower(), v) for k, v in r.getheaders()]
    finally:
        c.close()


def test_the_daemons_own_answers_say_nosniff(tmp_path):
    """The dashboard's answers said X-Content-Type-Options: nosniff, the
    API's did not (a JSON answer or a run's log read as something else by
    an old browser). Now every answer of the daemon's own says it, once; a
    function's answer carries it only when the function sets it."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        deploy(d, "plain", '"headers"', {"Content-Type": "text/plain"})
        deploy(d, "sniff", '"headers"', {"X-Content-Type-Options": "nosniff"})
        for method, path, token in [("GET", "/v1/runs", "alice"), ("GET", "/v1/nope", "alice"),
                                    ("GET", "/v1/runs", None), ("GET", "/ui/", None),
                                    ("GET", "/ui/session", None), ("GET", "/healthz", None),
                                    ("GET", "/metrics", "alice")]:
            st, hs = raw_headers(d, method, path, token)
            got = [v for k, v in hs if k == "x-content-type-options"]
            assert got == ["nosniff"], (method, path, st, hs)
        # The daemon's own refusal of a /fn/ call says it too.
        st, hs = raw_headers(d, "GET", "/fn/bob/nope", None)
        assert st == 401 and [v for k, v in hs if k == "x-content-type-options"] == ["nosniff"], hs
        st, hs = raw_headers(d, "GET", "/fn/bob/plain", None)
        assert st == 200 and "x-content-type-options" not in dict(hs), hs
        st, hs = raw_headers(d, "GET", "/fn/bob/sniff", None)
        assert st == 200 and [v for k, v in hs if k == "x-content-type-options"] == ["nosniff"], hs


def test_a_wait_let_in_before_its_token_was_removed_gets_its_answer(tmp_path):
    """docs/api.md: a request its token let in completes, as Lambda
    finishes a call authenticated at its start (streams are looked at
    again: they go on sending new runs). A ?wait=true submit whose token is
    removed from the config while its run runs gets the run's answer; the
    next request with that token is a 401."""
    import threading
    from test_explore_tenants import reload
    d = Daemon(tmp_path / "d")
    with d.serving():
        got = {}
        t = threading.Thread(target=lambda: got.update(r=d.call(
            "POST", "/v1/runs?wait=true", {"source": "import time\ndef f():\n    time.sleep(6)\n    return 'done'\n"})))
        t.start()
        deadline = time.time() + 60
        while not any(r["status"] == "running" for r in d.call("GET", "/v1/runs")[1]["runs"]):
            assert time.time() < deadline and t.is_alive(), got
            time.sleep(0.05)
        text = d.config.read_text()
        assert TOKENS["alice"] in text
        reload(d, text.replace(TOKENS["alice"], "alice-token-moved-0123456789"))
        assert d.request("GET", "/v1/runs")[0] == 401
        t.join(120)
        st, run = got["r"]
        assert st == 200 and run["status"] == "succeeded" and run["result"] == "done", run
