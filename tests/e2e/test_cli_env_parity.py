"""`env ls` embedded and against a daemon (GET /v1/envs): for the same
package store the same stdout, stderr and exit code. The daemon here runs
on the CLI's own home with --no-auth (its local user is an admin: it sees
every environment and the store's path)."""
import json
import os
import subprocess

import pytest

from conftest import CLI, WORKER, sandbox_args
from daemonlib import TOKENS, Daemon

ENVP = "@requirements({'envp': '1.0'})\ndef f():\n    import envp\n    return envp.V\n"


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    import pkgindex
    ix = pkgindex.Index()
    ix.add(pkgindex.build_wheel(tmp_path_factory.mktemp("wheels"), "envp", "1.0", files={"envp/__init__.py": "V = 7\n"}))
    ix.start()
    yield ix
    ix.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    w = tmp_path_factory.mktemp("env-parity")
    (w / "home").mkdir()
    (w / "uses_envp.py").write_text(ENVP)
    return w


def cli(home, args, server=None, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_HOME=str(home / "home"), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
    if token:
        env["PYSPRINTER_TOKEN"] = token
    pre = ["--server", server] if server else []
    return subprocess.run([str(CLI), *pre, *args], capture_output=True, text=True, env=env, cwd=home, timeout=120)


def start_daemon(home, index, args=("--no-auth",)):
    d = Daemon(home / "daemon", sandbox="none" if sandbox_args() else None, args=list(args), home=home / "home",
               config_extra=f"index:\n  url: {index.url}\n")
    return d.start()


def test_env_ls_on_a_server_prints_what_embedded_prints_for_the_same_store(home, index):
    empty = cli(home, ["env", "ls"])
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, f"no environments in {home / 'home'}\n", ""), empty
    r = cli(home, ["run", "uses_envp.py", "--index-url", index.url, "--sandbox=none"])
    assert (r.returncode, r.stdout) == (0, "7\n"), r
    local = {a: cli(home, ["env", "ls", *a]) for a in ((), ("--json",))}
    d = start_daemon(home, index)
    try:
        remote = {a: cli(home, ["env", "ls", *a], server=d.url) for a in local}
    finally:
        d.stop()
    for a in local:
        got = [(x.returncode, x.stdout, x.stderr) for x in (local[a], remote[a])]
        assert got[0] == got[1], (a, got)
    lines = local[()].stdout.splitlines()
    assert lines[0].split() == ["ENV", "SIZE", "LAST", "USED", "IN", "USE", "REQUIREMENTS"], lines
    assert lines[1].endswith("envp==1.0"), lines
    envs = json.loads(local[("--json",)].stdout)
    assert [e["requirements"] for e in envs] == [["envp==1.0"]], envs
    assert set(envs[0]) == {"key", "kind", "requirements", "packages", "size_bytes", "last_used", "in_use"}, envs


def test_env_ls_in_a_fresh_home_creates_nothing(tmp_path):
    """Embedded `env ls` opened the engine, which created the home, its
    database, lock and directories, to say there was nothing. A listing
    reads the package store's records alone: the empty list, and the home
    is left as it was (absent, or an empty directory)."""
    for fresh in (tmp_path / "absent", tmp_path / "empty"):
        if fresh.name == "empty":
            fresh.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
        env.update(PYSPRINTER_HOME=str(fresh), PYSPRINTER_WORKER=str(WORKER), NO_COLOR="1")
        for args, out in (((), f"no environments in {fresh}\n"), (("--json",), "[]\n")):
            r = subprocess.run([str(CLI), "env", "ls", *args], capture_output=True, text=True, env=env,
                               cwd=tmp_path, timeout=60)
            assert (r.returncode, r.stdout, r.stderr) == (0, out, ""), (fresh, args, r)
        assert (sorted(fresh.iterdir()) if fresh.exists() else None) == ([] if fresh.name == "empty" else None)


def test_env_ls_of_a_tenant_shows_its_own_environments(home, index):
    """A tenant's token sees the environments its runs resolved (and the
    empty one), never another tenant's; the same columns."""
    d = start_daemon(home, index, args=())
    try:
        bob = cli(home, ["env", "ls"], server=d.url, token=TOKENS["bob"])
        assert bob.returncode == 0, bob
        assert "envp" not in bob.stdout, bob.stdout
        r = cli(home, ["run", "uses_envp.py"], server=d.url, token=TOKENS["alice"])
        assert (r.returncode, r.stdout) == (0, "7\n"), r
        alice = cli(home, ["env", "ls"], server=d.url, token=TOKENS["alice"])
        assert alice.returncode == 0 and alice.stdout.splitlines()[1].endswith("envp==1.0"), alice
    finally:
        d.stop()


def test_env_prepare_and_prune_stay_local_and_say_so_with_a_server(home):
    r = cli(home, ["env", "prune", "--budget", "1G"], server="http://127.0.0.1:9")
    assert r.returncode == 0, r
    assert "acts on this machine's package store" in r.stderr, r.stderr
    r = cli(home, ["env", "ls"], server="http://127.0.0.1:9")
    assert r.returncode == 6, r
