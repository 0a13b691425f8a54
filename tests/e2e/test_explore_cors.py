"""Explored by the helper `cors`: a function URL's own CORS settings
(Lambda's `Cors`: AllowOrigins, AllowMethods, AllowHeaders, ExposeHeaders,
MaxAge, AllowCredentials), set at deploy, kept across redeploys and
restarts, answered by the daemon for preflights and added to the
function's answers (docs/endpoints.md "CORS")."""
import pytest

from conftest import DAEMON
from daemonlib import Daemon, point_cli, sandbox_mode

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

FN = '''
def handler(event, context):
    if event["requestContext"]["http"]["method"] == "OPTIONS":
        return {"statusCode": 204, "headers": {"x-answered-by": "function"}}
    return {"statusCode": 200, "body": "hi",
            "headers": {"Access-Control-Allow-Origin": "https://evil.example",
                        "Access-Control-Expose-Headers": "x-fn", "x-fn": "1"}}
'''

CORS = {"AllowOrigins": ["https://app.example", "http://localhost:8080"], "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["content-type", "x-api-key"], "ExposeHeaders": ["x-fn"], "MaxAge": 300,
        "AllowCredentials": True}

PREFLIGHT = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("cors")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as daemon:
        yield daemon


def deploy(d, name, **fields):
    st, b = d.call("POST", "/v1/functions", {"name": name, "source": FN, "filename": "fn.py", **fields})
    assert st in (200, 201), b
    return b


def runs(d, name):
    return d.call("GET", f"/v1/functions/{name}/runs")[1]["runs"]


@pytest.mark.parametrize("url", [True, "public"])
def test_the_daemon_answers_the_preflight_from_the_config(d, url):
    name = "pf-pub" if url == "public" else "pf-tok"
    b = deploy(d, name, url=url, cors=CORS)
    assert b["url"]["cors"] == CORS, b
    st, h, body = d.request("OPTIONS", f"/fn/alice/{name}/x", token=None, headers=PREFLIGHT)
    assert (st, body) == (204, b""), (st, h, body)
    assert h["access-control-allow-origin"] == "https://app.example"
    assert h["access-control-allow-methods"] == "GET, POST"
    assert h["access-control-allow-headers"] == "content-type, x-api-key"
    assert h["access-control-max-age"] == "300"
    assert h["access-control-allow-credentials"] == "true"
    assert "origin" in h["vary"].lower()
    assert "x-answered-by" not in h
    assert runs(d, name) == []
    # An origin the config does not list: no Allow-Origin, so the browser refuses.
    st, h, _ = d.request("OPTIONS", f"/fn/alice/{name}/x", token=None,
                         headers=dict(PREFLIGHT, Origin="https://other.example"))
    assert st == 204 and "access-control-allow-origin" not in h, h
    assert "access-control-allow-credentials" not in h, h
    assert runs(d, name) == []


def test_the_functions_answer_gets_the_configs_headers(d):
    deploy(d, "ans", url="public", cors=CORS)
    st, h, body = d.request("GET", "/fn/alice/ans/", token=None, headers={"Origin": "http://localhost:8080"})
    assert (st, body) == (200, b"hi"), (st, body)
    # The function's own Allow-Origin is replaced by the config's.
    assert h["access-control-allow-origin"] == "http://localhost:8080", h
    assert h["access-control-expose-headers"] == "x-fn"
    assert h["access-control-allow-credentials"] == "true"
    assert "origin" in h["vary"].lower()
    assert h["x-fn"] == "1"
    # Another origin: none of the function's, none of the config's.
    st, h, _ = d.request("GET", "/fn/alice/ans/", token=None, headers={"Origin": "https://evil.example"})
    assert st == 200 and "access-control-allow-origin" not in h, h
    # A token URL's answer too, with the token.
    deploy(d, "ans-tok", url=True, cors={"AllowOrigins": ["*"]})
    st, h, _ = d.request("GET", "/fn/alice/ans-tok/", headers={"Origin": "https://any.example"})
    assert st == 200 and h["access-control-allow-origin"] == "*", h
    assert "access-control-allow-credentials" not in h


def test_without_a_config_nothing_changes(d):
    deploy(d, "plain", url="public")
    st, h, _ = d.request("GET", "/fn/alice/plain/", token=None, headers={"Origin": "https://app.example"})
    assert st == 200 and h["access-control-allow-origin"] == "https://evil.example", h
    st, h, _ = d.request("OPTIONS", "/fn/alice/plain/", token=None, headers=PREFLIGHT)
    assert h["x-answered-by"] == "function", h
    assert d.call("GET", "/v1/functions/plain")[1]["url"].get("cors") is None


def test_a_redeploy_keeps_the_config_and_no_cors_removes_it(d):
    deploy(d, "keep", url="public", cors=CORS)
    deploy(d, "keep")
    assert d.call("GET", "/v1/functions/keep")[1]["url"]["cors"] == CORS
    deploy(d, "keep", url=True)
    assert d.call("GET", "/v1/functions/keep")[1]["url"]["cors"] == CORS
    deploy(d, "keep", cors=None)
    assert d.call("GET", "/v1/functions/keep")[1]["url"].get("cors") is None
    # A URL removed takes its CORS with it; a new one starts without.
    deploy(d, "keep", url="public", cors=CORS)
    deploy(d, "keep", url=False)
    deploy(d, "keep", url="public")
    assert d.call("GET", "/v1/functions/keep")[1]["url"].get("cors") is None


@pytest.mark.parametrize("cors, word", [
    ({"AllowOrigins": ["*"], "AllowCredentials": True}, "AllowCredentials"),
    ({"AllowOrigins": ["app.example"]}, "AllowOrigins"),
    ({"AllowOrigins": ["https://a.example/path"]}, "AllowOrigins"),
    ({"AllowOrigins": ["https://a.example\r\nX-Evil: 1"]}, "AllowOrigins"),
    ({"AllowHeaders": ["x-a\r\nx-b: 1"]}, "AllowHeaders"),
    ({"ExposeHeaders": ["bad header"]}, "ExposeHeaders"),
    ({"AllowMethods": ["GET\n"]}, "AllowMethods"),
    ({"MaxAge": 86401}, "MaxAge"),
    ({"MaxAge": -1}, "MaxAge"),
    ({"AllowOrigins": ["https://a%d.example" % i for i in range(101)]}, "AllowOrigins"),
    ({"Origins": ["*"]}, "Origins"),
    ("*", "cors"),
])
def test_a_bad_config_is_refused(d, cors, word):
    st, b = d.call("POST", "/v1/functions", {"name": "bad", "source": FN, "filename": "fn.py", "url": "public",
                                             "cors": cors})
    assert st == 400 and word in b["error"]["message"], (st, b)


def test_cors_needs_a_url(d):
    st, b = d.call("POST", "/v1/functions", {"name": "nourl", "source": FN, "filename": "fn.py",
                                             "cors": {"AllowOrigins": ["*"]}})
    assert st == 400 and "url" in b["error"]["message"], (st, b)


def test_the_config_survives_a_restart(tmp_path):
    daemon = Daemon(tmp_path, sandbox=sandbox_mode(tmp_path))
    with daemon.serving():
        deploy(daemon, "rs", url="public", cors=CORS)
    with daemon.serving():
        assert daemon.call("GET", "/v1/functions/rs")[1]["url"]["cors"] == CORS
        st, h, _ = daemon.request("OPTIONS", "/fn/alice/rs/", token=None, headers=PREFLIGHT)
        assert st == 204 and h["access-control-allow-origin"] == "https://app.example", h


def test_the_cli_sets_and_removes_cors(d, cli, tmp_path):
    point_cli(cli, d, tmp_path)
    cli.write("fn.py", FN)
    cli("deploy", "fn.py", "--name", "clic", "--url", "--public", "--cors-origin", "https://app.example",
        "--cors-origin", "http://localhost:8080", "--cors-method", "GET", "--cors-method", "POST",
        "--cors-header", "content-type", "--cors-header", "x-api-key", "--cors-expose", "x-fn",
        "--cors-max-age", "300", "--cors-credentials", check=0)
    assert d.call("GET", "/v1/functions/clic")[1]["url"]["cors"] == CORS
    cli("deploy", "fn.py", "--name", "clic", check=0)
    assert d.call("GET", "/v1/functions/clic")[1]["url"]["cors"] == CORS
    cli("deploy", "fn.py", "--name", "clic", "--cors", '{"AllowOrigins": ["*"], "MaxAge": 5}', check=0)
    assert d.call("GET", "/v1/functions/clic")[1]["url"]["cors"] == {"AllowOrigins": ["*"], "MaxAge": 5}
    p = cli("deploy", "fn.py", "--name", "clic", "--cors-origin", "*", "--cors-credentials")
    assert p.returncode != 0 and "AllowCredentials" in p.stderr, p.stderr
    cli("deploy", "fn.py", "--name", "clic", "--no-cors", check=0)
    assert d.call("GET", "/v1/functions/clic")[1]["url"].get("cors") is None
    p = cli("deploy", "fn.py", "--name", "clic", "--no-cors", "--cors-origin", "*")
    assert p.returncode != 0, p.stderr


def test_a_clusters_gateways_share_the_config(tmp_path):
    """In a cluster the settings live in Redis, in the function's hash beside
    its URL mode: set through one gateway, every gateway answers from them."""
    from clusterlib import loopback_cluster
    with loopback_cluster(tmp_path, nodes=(("g1", "gateway"), ("g2", "gateway"), ("w1", "worker"))) as (g1, g2, _):
        deploy(g1, "cl", url="public", cors=CORS)
        for gw in (g1, g2):
            assert gw.call("GET", "/v1/functions/cl")[1]["url"]["cors"] == CORS
            st, h, _ = gw.request("OPTIONS", "/fn/alice/cl/", token=None, headers=PREFLIGHT)
            assert st == 204 and h["access-control-allow-origin"] == "https://app.example", h
        st, h, body = g2.request("GET", "/fn/alice/cl/", token=None, headers={"Origin": "https://app.example"})
        assert (st, body) == (200, b"hi") and h["access-control-allow-origin"] == "https://app.example", h
        # A redeploy through g2 that says nothing keeps them; --no-cors removes them.
        deploy(g2, "cl", url=True)
        assert g1.call("GET", "/v1/functions/cl")[1]["url"]["cors"] == CORS
        deploy(g2, "cl", cors=None)
        assert g1.call("GET", "/v1/functions/cl")[1]["url"].get("cors") is None
        # A URL removed takes them with it.
        deploy(g1, "cl", cors=CORS)
        deploy(g1, "cl", url=False)
        deploy(g1, "cl", url="public")
        assert g2.call("GET", "/v1/functions/cl")[1]["url"].get("cors") is None
        st, b = g1.call("POST", "/v1/functions", {"name": "cl2", "source": FN, "filename": "fn.py",
                                                  "cors": {"AllowOrigins": ["*"]}})
        assert st == 400 and "url" in b["error"]["message"], b


def test_the_python_client_sets_and_removes_cors(d, tmp_path):
    import sys
    from conftest import ROOT
    from daemonlib import TOKENS
    sys.path.insert(0, str(ROOT / "python"))
    from pysprinter import Client
    (tmp_path / "fn.py").write_text(FN)
    c = Client(server=d.url, token=TOKENS["alice"])
    f = c.deploy("py", str(tmp_path / "fn.py"), url="public", cors={"AllowOrigins": ["https://app.example"]})
    assert f["url"]["cors"] == {"AllowOrigins": ["https://app.example"]}, f
    assert c.deploy("py", str(tmp_path / "fn.py"))["url"]["cors"] == {"AllowOrigins": ["https://app.example"]}
    assert "cors" not in c.deploy("py", str(tmp_path / "fn.py"), cors=False)["url"]
