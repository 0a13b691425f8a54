"""pysprinterd as a hostile tenant attacks it (issue 10): each test is named
after the attack and fails on a daemon that lets it through.

Only loopback addresses are ever connected to; refusal of private,
link-local and metadata addresses is a unit test of the policy
(tests/unit/test-daemon.c)."""
import json
import time

import pytest

from conftest import DAEMON
from daemonlib import KEYS, Daemon, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

# alice has the defaults (no network); bob is granted the network and a
# lower timeout than everyone else.
GRANTS = """
limits:
  maxima: {timeout_ms: 600000, memory_bytes: 1073741824, max_procs: 100, max_output_bytes: 20000000}
tenants:
  bob:
    network: true
    maxima: {timeout_ms: 1500}
"""

HELLO = "def f(x=1):\n    return x\n"
SLEEPY = "import time\n\ndef f():\n    time.sleep(30)\n    return 'not killed'\n"

# (limit, a value above the global maximum)
ABOVE = [
    ("timeout_ms", 600001),
    ("memory_bytes", 1073741825),
    ("max_procs", 101),
    ("max_output_bytes", 20000001),
    ("network", True),
]


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("trustd")
    daemon = Daemon(root, sandbox=sandbox_mode(root), config_extra=GRANTS)
    with daemon.serving() as running:
        yield running


def deploy(d, name, token="alice", **fields):
    return d.call("POST", "/v1/functions", {"name": name, "source": HELLO, "function": "f", **fields}, token=token)


# ---- 1. a tenant gives its own run the host network / more than granted ----

@pytest.mark.parametrize("limit,value", ABOVE)
def test_run_cannot_raise_a_limit_above_its_grant(d, limit, value):
    st, b = d.run(HELLO, limits={limit: value})
    assert st == 403, b
    assert b["error"]["code"] == "forbidden" and limit in b["error"]["message"], b


@pytest.mark.parametrize("limit,value", ABOVE)
def test_deploy_cannot_raise_a_limit_above_its_grant(d, limit, value):
    st, b = deploy(d, f"up-{limit.replace('_', '-')}", limits={limit: value})
    assert st == 403, b
    st, _ = d.call("GET", f"/v1/functions/up-{limit.replace('_', '-')}")
    assert st == 404


@pytest.mark.parametrize("limit,value", ABOVE)
def test_invoke_cannot_raise_a_limit_above_its_grant(d, limit, value):
    st, b = deploy(d, "plain")
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions/plain/invoke?wait=true", {"limits": {limit: value}})
    assert st == 403, b
    assert limit in b["error"]["message"]


@pytest.mark.parametrize("limit,yaml_value", [
    ("timeout", "601s"), ("memory", "2GiB"), ("max_procs", "101"), ("max_output", "30MB"), ("network", "true")])
def test_dag_task_cannot_raise_a_limit_above_its_grant(d, limit, yaml_value):
    pipeline = f"name: up\ntasks:\n  a: {{file: s.py, function: f, limits: {{{limit}: {yaml_value}}}}}\n"
    st, b = d.call("POST", "/v1/dags", {"pipeline": pipeline, "files": {"s.py": HELLO}})
    assert st == 403, b
    assert "task 'a'" in b["error"]["message"], b


def test_network_is_the_operators_grant(d):
    st, b = d.run(HELLO, limits={"network": True})
    assert st == 403 and "network" in b["error"]["message"], b
    st, b = d.run(HELLO, token="bob", limits={"network": True})
    assert st == 200 and b["status"] == "succeeded", b
    # bob's deployed function may keep it; alice's may not get it by invoke.
    st, b = deploy(d, "netfn", token="bob", limits={"network": True})
    assert st == 201, b
    st, b = d.call("POST", "/v1/functions/netfn/invoke?wait=true", {}, token="bob")
    assert st == 200 and b["status"] == "succeeded", b


def test_lambda_invoke_is_granted_too(d):
    st, b = deploy(d, "lam")
    assert st == 201, b
    st, b = d.call("POST", "/2015-03-31/functions/lam/invocations", {"x": 2})
    assert st == 200 and b == {"x": 2}, b


def test_a_tenant_maximum_lowers_the_default(d):
    # bob's timeout maximum (1.5 s) is below the default (60 s): a run that
    # asks for nothing gets bob's maximum, not the default.
    st, b = d.run(HELLO, token="bob", limits={"timeout_ms": 1501})
    assert st == 403 and "1500" in b["error"]["message"], b
    t0 = time.monotonic()
    st, b = d.run(SLEEPY, token="bob")
    assert st == 200 and b["status"] == "killed", b
    assert time.monotonic() - t0 < 20
    # alice's is not lowered by bob's grant.
    st, b = d.run(HELLO, limits={"timeout_ms": 5000})
    assert st == 200 and b["status"] == "succeeded", b


def test_lowering_a_limit_is_always_allowed(d):
    st, b = d.run(HELLO, limits={"timeout_ms": 20000, "memory_bytes": 268435456, "max_procs": 16,
                                 "max_output_bytes": 1000, "network": False})
    assert st == 200 and b["status"] == "succeeded", b


# ---- 6. a second daemon shares a port already in use ------------------------

def test_second_daemon_on_a_port_in_use_exits_6(d, tmp_path):
    import subprocess
    other = Daemon(tmp_path / "second", sandbox="none", args=["--no-auth"])
    p = subprocess.run([str(DAEMON), "--listen", f"127.0.0.1:{d.port}", "--config", str(other.config), "--no-auth",
                        "--sandbox=none"], env=other.env(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 6, (p.returncode, p.stderr)
    assert "address in use" in p.stderr, p.stderr
    # The first one still answers, with auth.
    st, _ = d.call("GET", "/v1/runs", token=None)
    assert st == 401


# ---- 12. NUL bytes in URLs truncate names -----------------------------------

def test_nul_in_a_run_id_does_not_cancel_the_prefix(d):
    st, b = d.run(SLEEPY, wait=False, limits={"timeout_ms": 20000})
    assert st == 202, b
    rid = b["id"]
    st, b = d.call("DELETE", f"/v1/runs/{rid[:8]}%00zzzz")
    assert st == 400 and "control character" in b["error"]["message"], b
    st, b = d.call("GET", f"/v1/runs/{rid}")
    assert st == 200 and b["status"] in ("queued", "running"), b
    d.cancel(rid)


@pytest.mark.parametrize("target", [
    "/v1/data/nul?filename=a%00b",
    "/v1/data/nul?filename=a%0ab",
    "/v1/data/nu%00l?filename=ab",
    "/v1/data/nul?filename=ab&x=%7f",
    "/v1/data/nu%1bl",
])
def test_control_characters_in_path_or_query_are_400(d, target):
    st, b = d.call("PUT", target, raw=b"data\n", headers={"Content-Type": "text/plain"})
    assert st == 400, b
    st, b = d.call("GET", "/v1/data")
    assert st == 200 and not [x for x in b["datasets"] if x["name"].startswith("nu")], b


def test_plain_percent_encoding_still_works(d):
    st, b = d.call("PUT", "/v1/data/enc?filename=a%20b.txt", raw=b"data\n", headers={"Content-Type": "text/plain"})
    assert st in (200, 201), b


# ---- 4. SSRF through URL datasets -------------------------------------------

class Redirector:
    """An HTTP server on 127.0.0.2 (an allow-listed-looking address) that
    answers every GET with a redirect to `target`, and /plain with data."""

    def __init__(self, target):
        import http.server
        import threading
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/plain"):
                    body = b"public data\n"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                outer.hits += 1
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.hits = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def put_url(d, name, url, token="alice"):
    return d.call("PUT", f"/v1/data/{name}", {"url": url}, token=token)


def test_url_dataset_cannot_fetch_the_daemons_own_api(d):
    st, b = put_url(d, "ssrf", f"{d.url}/healthz")
    assert st == 403, b
    assert "127.0.0.1 is a loopback address" in b["error"]["message"] and "data.url_allow" in b["error"]["message"], b
    st, b = d.call("GET", "/v1/data/ssrf")
    assert st == 404, b


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/x",
                                 "http://[::1]:1/x", "http://[::ffff:127.0.0.1]:1/x", "http://0.0.0.0:1/x",
                                 "http://localhost:1/x"])
def test_url_dataset_refuses_other_schemes_and_loopback_spellings(d, url):
    st, b = put_url(d, "ssrf2", url)
    assert st in (400, 403), b


def test_url_dataset_redirect_to_loopback_is_refused(tmp_path):
    # 127.0.0.2 is allow-listed (standing in for a public server); it
    # redirects to the daemon's own /healthz on 127.0.0.1, which is not.
    daemon = Daemon(tmp_path / "d", sandbox="none", config_extra="data:\n  url_allow: [127.0.0.2/32]\n")
    daemon.start()
    r = Redirector(f"http://127.0.0.1:{daemon.port}/healthz")
    try:
        st, b = put_url(daemon, "plain", r.url + "/plain")
        assert st == 201, b
        st, b = put_url(daemon, "redir", r.url + "/go")
        assert st == 403 and "127.0.0.1 is a loopback address" in b["error"]["message"], b
        assert r.hits == 1
    finally:
        r.close()
        assert daemon.stop() == 0


def test_url_dataset_loopback_allowed_by_the_operator(tmp_path):
    daemon = Daemon(tmp_path / "d", sandbox="none", config_extra="data:\n  url_allow: [127.0.0.0/8]\n")
    daemon.start()
    r = Redirector(f"http://127.0.0.1:{daemon.port}/healthz")
    try:
        st, b = put_url(daemon, "health", f"{daemon.url}/healthz")
        assert st == 201, b
        st, b = put_url(daemon, "redir", r.url + "/go")
        assert st in (200, 201), b
        st, hdrs, body = daemon.request("GET", "/v1/data/health/content")
        assert st == 200 and b'"status"' in body, body
    finally:
        r.close()
        assert daemon.stop() == 0


def test_bad_url_allow_is_a_config_error(tmp_path):
    import subprocess
    daemon = Daemon(tmp_path / "d", sandbox="none", config_extra="data:\n  url_allow: [10.0.0.0/33]\n")
    p = subprocess.run([str(DAEMON), "--listen", "127.0.0.1:1", "--config", str(daemon.config)], env=daemon.env(),
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "data.url_allow[0]" in p.stderr, (p.returncode, p.stderr)


# ---- 10. information leaks: other tenants' environments, server paths -------

def test_envs_show_a_tenant_its_own_requirement_sets_only(tmp_path):
    import pkgindex
    index = pkgindex.Index()
    for name in ("alphapkg", "betapkg"):
        index.add(pkgindex.build_wheel(tmp_path / "wheels", name, "1.0",
                                       files={f"{name}/__init__.py": "V = 1\n"}))
    index.start()
    daemon = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra=f"index:\n  url: {index.url}\n")
    daemon.start()
    try:
        for who, pkg in (("alice", "alphapkg"), ("bob", "betapkg")):
            st, b = daemon.run(f"@requirements({{'{pkg}': ''}})\ndef f():\n    import {pkg}\n    return {pkg}.V\n",
                               token=who)
            assert st == 200 and b["status"] == "succeeded", b

        def reqs(token):
            st, b = daemon.call("GET", "/v1/envs", token=token)
            assert st == 200, b
            return b, " ".join(" ".join(e["requirements"]) for e in b["envs"])

        b, seen = reqs("alice")
        assert "alphapkg" in seen and "betapkg" not in seen, b
        assert "data_dir" not in b and "package_store" not in b and str(daemon.home) not in json.dumps(b), b
        b, seen = reqs("bob")
        assert "betapkg" in seen and "alphapkg" not in seen, b
        b, seen = reqs("admin")
        assert "alphapkg" in seen and "betapkg" in seen and b["data_dir"], b
    finally:
        daemon.stop()
        index.stop()


def test_error_bodies_carry_no_server_paths(tmp_path):
    from conftest import BUILD
    daemon = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra="""
        server:
          max_body_bytes: 2048
        """)
    old_env = daemon.env
    daemon.env = lambda: {**old_env(), "PYSPRINTER_DATA_MAX_BYTES": "1000"}
    daemon.start()
    home, build = str(daemon.home.resolve()), str(BUILD)
    failing = [
        ("POST", "/v1/runs", {"source": "def f(:\n"}),
        ("POST", "/v1/runs?wait=true", {"source": "def f(:\n"}),
        ("POST", "/v1/runs?wait=true", {"source": "def f():\n    raise ValueError(open.__module__)\n"}),
        ("POST", "/v1/runs?wait=true", {"source": "@requirements({'nosuchpkg-xyz': ''})\ndef f():\n    pass\n"}),
        ("POST", "/v1/runs?wait=true", {"source": "def f():\n    import nosuchmod\n"}),
        ("POST", "/v1/runs", {"source": "x", "bogus": 1}),
        ("POST", "/v1/runs", {"source": "x" * 4000}),
        ("POST", "/v1/validate", {"source": "def f(x):\n    return x\n", "args": [1, 2, 3]}),
        ("POST", "/v1/functions", {"name": "bad", "source": "def f(:\n"}),
        ("POST", "/v1/functions/nope/invoke?wait=true", {}),
        ("POST", "/2015-03-31/functions/nope/invocations", {}),
        ("GET", "/v1/runs/nope", None),
        ("GET", "/v1/runs/nope/logs", None),
        ("DELETE", "/v1/runs/nope", None),
        ("PUT", "/v1/data/x", {"url": "http://127.0.0.1:1/x"}),
        ("PUT", "/v1/data/x", {"url": "file:///etc/passwd"}),
        ("PUT", "/v1/data/big?filename=big.bin", "x" * 1500),
        ("GET", "/v1/data/nope/content", None),
        ("POST", "/v1/dags?wait=true", {"pipeline": "tasks:\n  a: {file: s.py}\n", "files": {}}),
        ("POST", "/v1/dags?wait=true", {"pipeline": "tasks:\n  a: {file: s.py, function: f}\n",
                                        "files": {"s.py": "def f(:\n"}}),
        ("POST", "/v1/dags?wait=true", {"pipeline": "tasks:\n  a: {file: s.py, function: f}\n",
                                        "files": {"s.py": "def f():\n    raise OSError(__file__)\n"}}),
        ("GET", "/v1/nope", None),
        ("GET", "/v1/envs", None),
    ]
    try:
        bodies = []
        for method, path, body in failing:
            if isinstance(body, str):
                st, hdrs, data = daemon.request(method, path, raw=body.encode(),
                                                headers={"Content-Type": "application/octet-stream"})
            else:
                st, hdrs, data = daemon.request(method, path, body)
            bodies.append((method, path, st, data.decode(errors="replace")))
        # Follow-ups that show what the failed runs recorded.
        st, runs = daemon.call("GET", "/v1/runs?limit=100")
        bodies.append(("GET", "/v1/runs", st, json.dumps(runs)))
        st, dags = daemon.call("GET", "/v1/dags")
        for g in dags["dags"]:
            st, data = daemon.call("GET", f"/v1/dags/{g['id']}")
            bodies.append(("GET", "dag", st, json.dumps(data)))
        assert any(st >= 400 for _, _, st, _ in bodies)
        leaks = [(m, p, st, text[:300]) for m, p, st, text in bodies if home in text or build in text]
        assert not leaks, leaks
    finally:
        daemon.stop()


# ---- 7. SigV4 is not verified ----------------------------------------------

def _lambda(d, key_id, secret):
    boto3 = pytest.importorskip("boto3", reason="python3-boto3 is not installed")
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1", aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 0}))


def _signed(d, body, date=None, key="alice", secret=None):
    """A request signed by botocore, as (method, path, headers, body)."""
    pytest.importorskip("botocore")
    import datetime
    from unittest import mock
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    key_id, key_secret = KEYS[key]
    req = AWSRequest(method="POST", url=f"{d.url}/2015-03-31/functions/sig/invocations", data=body,
                     headers={"Content-Type": "application/json"})
    auth = SigV4Auth(Credentials(key_id, secret or key_secret), "lambda", "us-east-1")
    if date:
        with mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.utcnow.return_value = date
            dt.datetime.now.return_value = date
            auth.add_auth(req)
    else:
        auth.add_auth(req)
    return dict(req.headers.items())


def test_sigv4_boto3_signs_real_requests(d):
    from daemonlib import KEYS as keys
    st, b = d.call("POST", "/v1/functions", {"name": "sig", "source": "def f(event):\n    return event\n"})
    assert st == 201, b
    r = _lambda(d, *keys["alice"]).invoke(FunctionName="sig", Payload=json.dumps({"k": 1}))
    assert r["StatusCode"] == 200 and json.loads(r["Payload"].read()) == {"k": 1}
    # bob's own key reaches bob's functions only (404 for alice's).
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError) as e:
        _lambda(d, *keys["bob"]).invoke(FunctionName="sig", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_sigv4_a_token_as_key_id_with_any_secret_is_refused(d):
    from botocore.exceptions import ClientError
    from daemonlib import TOKENS
    with pytest.raises(ClientError) as e:
        _lambda(d, TOKENS["alice"], "whatever-secret").invoke(FunctionName="sig", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # A known key id with the wrong secret.
    with pytest.raises(ClientError) as e:
        _lambda(d, KEYS["alice"][0], "wrong-secret-0123456789").invoke(FunctionName="sig", Payload=b"{}")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_sigv4_tampered_signature_body_and_old_date_are_403(d):
    import datetime
    d.call("POST", "/v1/functions", {"name": "sig", "source": "def f(event):\n    return event\n"})
    body = b'{"amount": 1}'
    path = "/2015-03-31/functions/sig/invocations"
    h = _signed(d, body)
    st, _, data = d.request("POST", path, raw=body, token=None, headers=h)
    assert st == 200 and json.loads(data) == {"amount": 1}, data
    # The signature, one hex digit changed.
    sig = h["Authorization"]
    bad = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    st, _, data = d.request("POST", path, raw=body, token=None, headers={**h, "Authorization": bad})
    assert st == 403, data
    # The body, changed after signing.
    st, _, data = d.request("POST", path, raw=b'{"amount": 9}', token=None, headers=h)
    assert st == 403, data
    # Signed correctly, 20 minutes ago (a replay).
    old = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
    h_old = _signed(d, body, date=old)
    st, _, data = d.request("POST", path, raw=body, token=None, headers=h_old)
    assert st == 403 and b"15 minutes" in data, data
    # Any /v1 route checks it too: Credential=<token> with a junk signature.
    from daemonlib import TOKENS
    junk = (f"AWS4-HMAC-SHA256 Credential={TOKENS['alice']}/20240101/us-east-1/lambda/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "de" * 32)
    st, _, data = d.request("GET", "/v1/runs", token=None, headers={"Authorization": junk, "X-Amz-Date": "20240101T000000Z"})
    assert st == 403, data


# ---- 5. slowloris --------------------------------------------------------------

def test_slowloris_from_one_address_does_not_starve_another(tmp_path):
    import resource
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("cannot open 1,000 sockets here (RLIMIT_NOFILE)")
    daemon = Daemon(tmp_path / "d", sandbox="none", config_extra="""
        server:
          read_timeout_s: 30
          request_deadline_s: 3
          max_connections_per_ip: 64
          max_connections: 512           # fewer than the attacker's 1,000
        """)
    daemon.start()
    slow = []
    try:
        # 1,000 connections from 127.0.0.2, each holding a request open with
        # a header line now and then (never idle for read_timeout_s).
        for i in range(1000):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", daemon.port))
            except BlockingIOError:
                pass
            slow.append(s)

        def trickle(line):
            for s in slow:
                try:
                    s.send(line)
                except OSError:
                    pass

        trickle(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\n")
        # Meanwhile 127.0.0.1's requests keep being answered, fast.
        lat = []
        t_start = time.monotonic()
        i = 0
        while time.monotonic() - t_start < 6 or len(lat) < 200:
            t0 = time.monotonic()
            st, _ = daemon.call("GET", "/healthz", token=None)
            lat.append(time.monotonic() - t0)
            assert st == 200
            i += 1
            if i % 20 == 0:
                trickle(f"X-Slow-{i}: y\r\n".encode())
        lat.sort()
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(f"slowloris: {len(lat)} requests from 127.0.0.1, p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
              f"p99 {p99 * 1000:.1f} ms")
        assert p99 < 0.100, f"p99 {p99 * 1000:.1f} ms"
        # No slow connection outlived the 3 s deadline (+ the reaper's tick
        # and CPU noise): the server closed every one of them.
        deadline = time.monotonic() + 10
        open_ = list(slow)
        while open_ and time.monotonic() < deadline:
            still = []
            for s in open_:
                try:
                    if s.recv(4096) == b"":
                        continue
                except BlockingIOError:
                    still.append(s)
                    continue
                except OSError:
                    continue
            open_ = still
            if open_:
                time.sleep(0.1)
        assert not open_, f"{len(open_)} slow connections still open after the deadline"
    finally:
        for s in slow:
            s.close()
        daemon.stop()


# ---- a request lowers a default that grants the network ----

NET_DEFAULT = """
limits:
  defaults: {network: true}
  maxima: {network: true}
"""

CONNECT = """import socket

def f(port: int):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=2).close()
        return 'connected'
    except OSError as e:
        return 'blocked: ' + type(e).__name__
"""


@pytest.fixture(scope="module")
def netd(tmp_path_factory):
    root = tmp_path_factory.mktemp("netdefault")
    daemon = Daemon(root, sandbox=sandbox_mode(root), config_extra=NET_DEFAULT)
    with daemon.serving() as running:
        yield running


def host_listener():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def test_network_false_lowers_a_default_that_grants_it(netd):
    if sandbox_mode(netd.root) != "full":
        pytest.skip("needs the sandbox's network namespace")
    s = host_listener()
    port = s.getsockname()[1]
    try:
        # the default grants the host network ...
        st, b = netd.run(CONNECT, args=[port])
        assert st == 200 and b["result"] == "connected", b
        # ... and a run, a deploy and an invoke that say network: false get none
        st, b = netd.run(CONNECT, args=[port], limits={"network": False})
        assert st == 200 and b["result"].startswith("blocked"), b
        st, b = netd.call("POST", "/v1/functions", {"name": "offline", "source": CONNECT, "function": "f",
                                                    "limits": {"network": False}})
        assert st == 201, b
        st, b = netd.call("POST", "/v1/functions/offline/invoke?wait=true", {"args": [port]})
        assert st == 200 and b["result"].startswith("blocked"), b
        st, b = netd.call("POST", "/v1/functions", {"name": "online", "source": CONNECT, "function": "f"})
        assert st == 201, b
        st, b = netd.call("POST", "/v1/functions/online/invoke?wait=true", {"args": [port],
                                                                           "limits": {"network": False}})
        assert st == 200 and b["result"].startswith("blocked"), b
        pipeline = "name: off\ntasks:\n  a: {file: c.py, function: f, args: [%d], limits: {network: false}}\n" % port
        st, b = netd.call("POST", "/v1/dags?wait=true", {"pipeline": pipeline, "files": {"c.py": CONNECT}})
        task = next(t for t in b["tasks"] if t["name"] == "a")
        assert st == 200 and task["result"].startswith("blocked"), b
    finally:
        s.close()


def test_url_allow_is_reloaded_by_sighup(tmp_path):
    import signal
    daemon = Daemon(tmp_path / "d", sandbox="none")
    daemon.start()
    r = Redirector(f"http://127.0.0.1:{daemon.port}/healthz")
    try:
        st, b = put_url(daemon, "before", r.url + "/plain")
        assert st == 403 and "data.url_allow" in b["error"]["message"], b
        daemon.config.write_text(daemon.config.read_text()
                                 + "data:\n  url_allow: [127.0.0.2/32]\nserver:\n  max_connections_per_ip: 7\n")
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "configuration reloaded" not in daemon.log.read_text() and time.time() < deadline:
            time.sleep(0.05)
        log = daemon.log.read_text()
        assert "configuration reloaded" in log, log
        # what the HTTP server was started with is named, not silently kept
        assert "'server.max_connections_per_ip' changes need a restart" in log, log
        st, b = put_url(daemon, "after", r.url + "/plain")
        assert st == 201, b
        # the daemon's own API stays refused: only 127.0.0.2 was opened
        st, b = put_url(daemon, "own", f"{daemon.url}/healthz")
        assert st == 403, b
    finally:
        r.close()
        assert daemon.stop() == 0
