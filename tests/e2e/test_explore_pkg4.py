"""Packages under a running daemon and moved or corrupted indexes (helper
pkg4):

- after `env verify --repair`, the next run or invoke of an environment
  that named a repaired package uses the repaired files: the warm workers
  and instances that imported the damaged ones are retired (before, they
  served the damaged module until the daemon restarted)."""
import pytest

from conftest import CLI, DAEMON
from daemonlib import TOKENS, Daemon
from test_explore_envhold import writable
from test_explore_pin2 import REQS, SOURCE, build, serve

pytestmark = pytest.mark.skipif(not (DAEMON.exists() and CLI.exists()), reason="pysprinterd or pysprinter not built")


def Runner(d):
    from conftest import Runner as R
    return R(d.env(), d.root)


def invoke(d, name="pinned"):
    st, b = d.call("POST", f"/v1/functions/{name}/invoke?wait=true", {})
    assert st == 200, (st, b)
    return b


def damaged_daemon(tmp_path):
    """A daemon whose store holds tinypkg 1.0 with its __init__.py changed
    to V = 'garbage' (installed by the CLI into the daemon's home), and the
    index serving it."""
    wheel = build(tmp_path, "w", "1.0")
    ix = serve(wheel)
    d = Daemon(tmp_path / "d", config_extra=f"index:\n  url: {ix.url}\n")
    r = Runner(d)
    p = r("env", "prepare", "--index-url", ix.url, "tinypkg>=1.0", env={"PYSPRINTER_SERVER": ""})
    assert p.returncode == 0, (p.stdout, p.stderr)
    (pkg,) = [x for x in (d.home / "store").iterdir() if (x / "tinypkg").is_dir()]
    writable(pkg)
    (pkg / "tinypkg" / "__init__.py").write_text("V = 'garbage'\n")
    d.start()
    return d, ix, pkg


def repair(d):
    p = Runner(d)("env", "verify", "--repair", env={"PYSPRINTER_SERVER": ""})
    assert p.stdout.splitlines()[-1] == "checked 1 package, 1 damaged, 1 removed", (p.stdout, p.stderr)


def test_an_invoke_after_a_repair_imports_the_repaired_package(tmp_path):
    d, ix, pkg = damaged_daemon(tmp_path)
    try:
        st, b = d.call("POST", "/v1/functions", {"name": "pinned", "source": SOURCE, "requirements": REQS})
        assert st == 201, b
        assert invoke(d)["result"] == "garbage"
        assert invoke(d)["result"] == "garbage"  # a warm instance now
        repair(d)
        r = invoke(d)
        assert r["status"] == "succeeded" and r["result"] == "1.0", r
        assert pkg.is_dir()
    finally:
        d.stop()
        ix.stop()


def test_an_adhoc_run_after_a_repair_imports_the_repaired_package(tmp_path):
    d, ix, pkg = damaged_daemon(tmp_path)
    try:
        r = Runner(d)
        f = r.write("f.py", "@requirements({'tinypkg': '>=1.0'})\ndef f():\n    import tinypkg\n    return tinypkg.V\n")
        for _ in range(2):  # the second from the env's warm worker
            p = r("run", "--server", d.url, f, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
            assert p.returncode == 0 and p.stdout.strip() == "garbage", (p.stdout, p.stderr)
        repair(d)
        p = r("run", "--server", d.url, f, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        assert p.returncode == 0 and p.stdout.strip() == "1.0", (p.stdout, p.stderr)
    finally:
        d.stop()
        ix.stop()

