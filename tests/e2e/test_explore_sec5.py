"""helper-202's adversarial review of the tokens, secrets, function URLs,
env verify/prune and datasets against the isolation promise: a credential
the operator took back grants nothing more, and a tenant reaches nothing
of another's. Each test is named after what an attacker tries."""
import json

import pytest

from conftest import DAEMON
from daemonlib import KEYS, TOKENS, Daemon
from test_explore_tenants import open_stream, read_until, reload, stream_ends

QUICK = "def f():\n    return 1\n"

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")


def sigv4_headers(d, method, path, key="alice"):
    """The headers of a SigV4-signed request (the access key of daemonlib's
    KEYS), as an AWS SDK sends them."""
    pytest.importorskip("botocore")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method=method, url=f"{d.url}{path}")
    key_id, secret = KEYS[key]
    SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def open_signed_stream(d, path):
    """A raw SigV4-signed GET of an SSE route (its Host the one signed):
    the socket once its 200 head arrived."""
    return open_stream(d, path, sigv4_headers(d, "GET", path), host=f"127.0.0.1:{d.port}")


def test_an_access_key_removed_from_the_config_ends_the_stream_it_opened(tmp_path):
    """docs/api.md: a stream open with a credential ends once it is removed
    from the config (SIGHUP). A SigV4 access key is accepted on every route,
    /v1/events included; a stream it opened was never looked at again and
    went on streaming the tenant's runs after the operator took the key
    back."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        s, got = open_signed_stream(d, "/v1/events")
        try:
            read_until(s, got, b"event: hello")
            key_id, secret = KEYS["alice"]
            text = d.config.read_text()
            assert key_id in text and secret in text
            reload(d, text.replace(key_id, "AKIDALICE00000000009"))
            st, _, _ = d.request("GET", "/v1/runs", token=None, headers=sigv4_headers(d, "GET", "/v1/runs"))
            assert st == 403
            end = stream_ends(s)
            assert end is not None, "the stream went on after its access key was removed"
            assert b"event: revoked" in end, end[-2000:]
        finally:
            s.close()


def login(d, who):
    st, hs, body = d.request("POST", "/login", {"token": TOKENS[who]}, token=None, headers={"X-Pysprinter-CSRF": "1"})
    assert st == 200, body
    name, value = hs["set-cookie"].split(";")[0].split("=", 1)
    assert name == "pysprinter_session"
    return value


# A cookie a browser would send as "pysprinter_session=…" or keep beside
# it: another case, or no name and a value that is the pair (RFC 6265bis:
# a nameless cookie is sent as its value).
PLANTS = ["PYSPRINTER_SESSION=%s; Path=/v1; HttpOnly", "Pysprinter_Session=%s", "=pysprinter_session=%s; Path=/v1",
          " = PYSPRINTER_session = %s"]
PLANT = """\
def f(event):
    return {"statusCode": 200, "body": "hello", %s: %r}
"""


def test_a_function_cannot_log_its_visitor_in_as_its_tenant(tmp_path):
    """docs/endpoints.md: a function must not log its visitor in or out of
    the daemon. The daemon read its session cookie by a case-insensitive
    name (libmicrohttpd's lookup), and a public function of bob's could set
    PYSPRINTER_SESSION to bob's session (its check refused the exact name
    only; a browser keeps both, the one of the longer Path sent first):
    alice's dashboard then acted as bob, and her next secret went to bob.
    Now the daemon reads the exact name only, and a function's cookie that
    a browser could send under the session's name in any case is refused."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        bob, alice = login(d, "bob"), login(d, "alice")
        # What alice's browser sends once bob's function set its cookie: it
        # comes first (the longer Path). A comma is no cookie separator
        # (RFC 6265: "; " only), so "x=v, pysprinter_session=…" is the one
        # cookie x, whose value a function may set (libmicrohttpd split it
        # in two, and the second was read as the session).
        for i, jar in enumerate([f"PYSPRINTER_SESSION={bob}; pysprinter_session={alice}",
                                 f"x=v, pysprinter_session={bob}; pysprinter_session={alice}",
                                 f"x=v,pysprinter_session={bob};pysprinter_session={alice}"]):
            st, _, body = d.request("PUT", f"/v1/secrets/KEY{i}", {"value": "alices-secret"}, token=None,
                                    headers={"Cookie": jar, "X-Pysprinter-CSRF": "1"})
            assert st == 200, (jar, body)
            assert f"KEY{i}" in [s["name"] for s in d.call("GET", "/v1/secrets", token="alice")[1]["secrets"]], jar
            assert d.call("GET", "/v1/secrets", token="bob")[1]["secrets"] == [], jar
        # Nor does an empty one planted so log her out.
        st, _, body = d.request("GET", "/v1/runs", token=None,
                                headers={"Cookie": f"x=v, pysprinter_session=; pysprinter_session={alice}"})
        assert st == 200, body
        # Alone, a cookie of another case is no session at all.
        st, _, _ = d.request("GET", "/v1/runs", token=None, headers={"Cookie": f"PYSPRINTER_SESSION={bob}"})
        assert st == 401
        for i, plant in enumerate(PLANTS):
            for how in ('"cookies"', '"headers"'):
                value = [plant % bob] if how == '"cookies"' else {"Set-Cookie": plant % bob}
                st, out = d.call("POST", "/v1/functions", {"name": f"plant{i}", "source": PLANT % (how, value),
                                                           "url": "public"}, token="bob")
                assert st in (200, 201), out
                st, hs, body = d.request("GET", f"/fn/bob/plant{i}", token=None)
                assert st == 502 and "set-cookie" not in hs, (plant, how, st, hs, body)
        # Other cookies still go out.
        st, out = d.call("POST", "/v1/functions", {"name": "other", "source": PLANT % ('"cookies"', ["theme=dark"]),
                                                   "url": "public"}, token="bob")
        assert st in (200, 201), out
        st, hs, body = d.request("GET", "/fn/bob/other", token=None)
        assert st == 200 and hs["set-cookie"] == "theme=dark", (st, hs, body)


CLEAR = """\
def f(event):
    return {"statusCode": 200, "headers": {"Clear-Site-Data": '"cookies", "storage"'}, "body": "bye"}
"""


def test_a_function_cannot_log_its_visitor_out_of_the_dashboard(tmp_path):
    """The same rule the other way: Clear-Site-Data "cookies" on a /fn/
    answer makes the browser drop every cookie of the origin (127.0.0.1 and
    localhost count as secure), the dashboard's session included. It went
    out as the function set it; now such an answer is the function's
    malformed response (502, the reason in its run), as a Set-Cookie of the
    session is."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, out = d.call("POST", "/v1/functions", {"name": "clear", "source": CLEAR, "url": "public"}, token="bob")
        assert st in (200, 201), out
        st, hs, body = d.request("GET", "/fn/bob/clear", token=None)
        assert st == 502 and "clear-site-data" not in {k.lower() for k in hs}, (st, hs, body)
        st, b = d.call("GET", "/v1/functions/clear/runs", token="bob")
        (run,) = b["runs"]
        st, r = d.call("GET", f"/v1/runs/{run['id']}", token="bob")
        assert "Clear-Site-Data" in json.dumps(r.get("error")), r


def test_no_route_hands_a_tenant_what_is_anothers(tmp_path):
    """What held (helper-202): every route that names a dataset, run,
    function, schedule, DAG run or secret of bob's answers alice as if it
    did not exist, changes nothing of bob's, and a run of hers can neither
    mount his dataset nor name his secret; her output of the same name is
    a dataset of her own."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        st, _, b = d.request("PUT", "/v1/data/shared?filename=x.txt", raw=b"bobdata", token="bob",
                             headers={"Content-Type": "application/octet-stream"})
        assert st == 201, b
        st, run = d.run("def f():\n    print('boblog')\n    return 'bobresult'\n", token="bob")
        assert st == 200, run
        assert d.call("POST", "/v1/functions", {"name": "bfn", "source": QUICK, "url": True}, token="bob")[0] == 201
        st, b = d.call("POST", "/v1/schedules", {"name": "bsch", "cron": "0 0 1 1 *", "function": "bfn"}, token="bob")
        assert st == 201, b
        st, dag = d.call("POST", "/v1/dags", {"pipeline": "tasks:\n  t: {file: s.py, function: f}\n",
                                              "files": {"s.py": QUICK}}, token="bob")
        assert st in (200, 201, 202), dag
        assert d.call("PUT", "/v1/secrets/BOBS", {"value": "bobs-value"}, token="bob")[0] == 200
        rid, did = run["id"], dag["id"]
        for method, path in [("GET", "/v1/data/shared"), ("GET", "/v1/data/shared/content"),
                             ("GET", "/v1/data/shared/usage"), ("DELETE", "/v1/data/shared"),
                             ("GET", f"/v1/runs/{rid}"), ("GET", f"/v1/runs/{rid[:6]}"),
                             ("GET", f"/v1/runs/{rid}/logs"), ("GET", f"/v1/runs/{rid}/lock"),
                             ("DELETE", f"/v1/runs/{rid}"), ("GET", "/v1/functions/bfn"),
                             ("POST", "/v1/functions/bfn/invoke"), ("DELETE", "/v1/functions/bfn"),
                             ("GET", "/v1/schedules/bsch"), ("POST", "/v1/schedules/bsch/pause"),
                             ("DELETE", "/v1/schedules/bsch"), ("GET", f"/v1/dags/{did}"),
                             ("GET", f"/v1/dags/{did}/graph"), ("GET", f"/v1/dags/{did}/tasks/t/logs"),
                             ("DELETE", f"/v1/dags/{did}"), ("DELETE", "/v1/secrets/BOBS"),
                             ("GET", "/2015-03-31/functions/bfn"),
                             ("POST", "/2015-03-31/functions/bfn/invocations")]:
            st, _, body = d.request(method, path, {} if method == "POST" else None, token="alice")
            assert st == 404 and b"bob" not in body, (method, path, st, body)
        st, _, body = d.request("POST", "/fn/bob/bfn", {}, token="alice")
        assert st == 403, (st, body)
        for listing in ("/v1/data", "/v1/runs", "/v1/functions", "/v1/schedules", "/v1/dags", "/v1/secrets"):
            st, _, body = d.request("GET", listing, token="alice")
            assert st == 200 and b"bob" not in body and b"shared" not in body, (listing, body)
        st, r = d.run("import os\ndef f():\n    return os.listdir('/data')\n", token="alice", data=["shared"])
        assert r["status"] == "error" and r["error"]["type"] == "DataError", r
        st, r = d.run(QUICK, token="alice", secrets=["BOBS"])
        assert st == 404, r
        st, r = d.run(QUICK, token="alice", output_data="shared")
        assert r["status"] == "succeeded", r
        st, mine = d.call("GET", "/v1/data/shared", token="alice")
        st, his = d.call("GET", "/v1/data/shared", token="bob")
        assert his["versions"][0]["size"] == 7 and len(his["versions"]) == 1 and mine["hash"] != his["hash"], (mine, his)
        # bob's things are all still there.
        assert d.call("GET", f"/v1/runs/{rid}", token="bob")[1]["result"] == "bobresult"
        assert d.call("GET", "/v1/schedules/bsch", token="bob")[1]["paused"] is False
        assert [s["name"] for s in d.call("GET", "/v1/secrets", token="bob")[1]["secrets"]] == ["BOBS"]
