"""One YAML rule (issue 12, docs/internals/yaml.md): the daemon's config file
and a pipeline file read `yes`, `on` and `1.5` the same way — YAML 1.2 core
schema: `yes`/`on` are strings, `1.5` is a real, booleans are true/false.
A key given twice in a mapping is refused by every reader, not "last wins"
(issue 141). Real binaries: pysprinterd reading its config (start,
--check-config, SIGHUP), `pysprinter dag run` embedded and with --server."""
import json
import signal
import subprocess
import time

import pytest

from conftest import DAEMON, WORKER, sandbox_args
from daemonlib import TOKENS, Daemon, config_text, free_port, wait_for

FRAGMENT = "{a: yes, b: on, c: 1.5, d: true, e: '1.5'}"

TYPES = """
def types(a, b, c, d, e):
    return [type(v).__name__ + ":" + repr(v) for v in (a, b, c, d, e)]
"""


def daemon_refuses(tmp_path, config):
    """Starts pysprinterd on `config`; it must exit non-zero before serving.
    -> its output."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(config)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "PYSPRINTER_HOME": str(home), "PYSPRINTER_WORKER": str(WORKER)}
    p = subprocess.run([str(DAEMON), "--listen", f"127.0.0.1:{free_port()}", "--config", str(cfg),
                        "--sandbox=none"], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode != 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout + p.stderr


def test_pipeline_reads_yes_on_as_strings_and_1_5_as_a_real(cli):
    cli.write("t.py", TYPES)
    cli.write("p.yaml", f"tasks:\n  t: {{file: t.py, function: types, kwargs: {FRAGMENT}}}\n")
    p = cli("dag", "run", *sandbox_args(), "p.yaml", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    result = out["tasks"]["t"]["result"] if "tasks" in out and isinstance(out["tasks"], dict) else None
    if result is None:
        result = next(t["result"] for t in out["tasks"] if t["name"] == "t")
    assert result == ["str:'yes'", "str:'on'", "float:1.5", "bool:True", "str:'1.5'"]


def test_config_reads_on_as_a_string(tmp_path):
    # A tenant named `on`: YAML 1.1 (and this daemon before) read a boolean
    # and refused the config.
    d = Daemon(tmp_path / "d")
    d.config.write_text("tokens:\n  - {tenant: on, token: on-token-0123456789abcdef}\n")
    d.start()
    try:
        st, body = d.call("GET", "/v1/runs", token="on-token-0123456789abcdef")
        assert st == 200, body
    finally:
        d.stop()


def test_yes_is_not_a_boolean_in_either_file(tmp_path, cli):
    out = daemon_refuses(tmp_path, "limits:\n  maxima: {network: yes}\n")
    assert "limits.maxima.network" in out and "true or false" in out, out

    cli.write("s.py", "def f():\n    return 1\n")
    cli.write("p.yaml", "tasks:\n  a:\n    file: s.py\n    limits: {network: yes}\n")
    p = cli("dag", "run", *sandbox_args(), "p.yaml")
    assert p.returncode == 3, (p.returncode, p.stderr)
    # FILE:LINE:COL of the value, the key and what was written.
    assert "p.yaml:4:23:" in p.stderr and "network" in p.stderr and "'yes'" in p.stderr, p.stderr


def test_1_5_is_a_real_in_either_file(tmp_path, cli):
    # A real where an integer is wanted is refused, naming the key — in the
    # config as in a pipeline.
    out = daemon_refuses(tmp_path, "limits:\n  defaults: {timeout_ms: 1.5}\n")
    assert "limits.defaults.timeout_ms" in out and "integer" in out, out

    cli.write("s.py", "def f():\n    return 1\n")
    cli.write("p.yaml", "concurrency: 1.5\ntasks:\n  a: {file: s.py}\n")
    p = cli("dag", "run", *sandbox_args(), "p.yaml")
    assert p.returncode == 3 and "p.yaml:1:14:" in p.stderr and "concurrency" in p.stderr, p.stderr


def test_inf_is_refused_with_its_place_in_either_file(tmp_path, cli):
    out = daemon_refuses(tmp_path, "server:\n  max_wait_s: .inf\n")
    assert ":2:15:" in out and "'.inf'" in out and "quote it" in out, out

    cli.write("s.py", "def f(x):\n    return x\n")
    cli.write("p.yaml", "tasks:\n  a: {file: s.py, args: [.inf]}\n")
    p = cli("dag", "run", *sandbox_args(), "p.yaml")
    assert p.returncode == 3 and "p.yaml:2:26:" in p.stderr and "'.inf'" in p.stderr, p.stderr


# ---- a key given twice (issue 141) ----------------------------------------------

# (config, where, key, first): the second key's LINE:COL, the first one's line
# (and column when both sit on one line).
DUPLICATES = [
    # A second `tenants:` would drop alice's grants.
    ("tenants:\n  alice: {network: true}\nlimits:\n  maxima: {timeout_ms: 1000}\ntenants:\n  bob: {}\n",
     "5:1", "tenants", "line 1"),
    # A tenant given twice.
    ("tenants:\n  alice:\n    maxima: {timeout_ms: 1000}\n  alice:\n    network: true\n", "4:3", "alice", "line 2"),
    # A limit raised by a second spelling of its key, quoted.
    ("limits:\n  maxima: {timeout_ms: 1000, \"timeout_ms\": 9000000}\n", "2:30", "timeout_ms", "line 2, column 12"),
]


@pytest.mark.parametrize("config, where, key, first", DUPLICATES, ids=["tenants", "tenant", "limit"])
def test_check_config_and_start_refuse_a_key_given_twice(tmp_path, config, where, key, first):
    cfg = tmp_path / "bad.yaml"  # the file daemon_refuses() starts on
    cfg.write_text(config)
    message = f"{cfg}:{where}: duplicate key '{key}' (first at {first})"
    p = subprocess.run([str(DAEMON), "--check-config", str(cfg)], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYSPRINTER_HOME": str(tmp_path / "home")}, timeout=30)
    assert p.returncode == 2 and p.stderr == message + "\n", (p.returncode, p.stdout, p.stderr)
    assert daemon_refuses(tmp_path, config) == f"pysprinterd: error: {message}\n"


def test_sighup_with_a_key_given_twice_keeps_the_old_config(tmp_path):
    """A second `tokens:` listing only bob: "last wins" would have revoked
    alice's token on the reload. It is refused; the old config serves."""
    d = Daemon(tmp_path / "d")
    d.start()
    try:
        good = d.config.read_text()
        assert good.startswith("tokens:\n")
        d.config.write_text(good + f"tokens:\n  - {{tenant: bob, token: {TOKENS['bob']}}}\n")
        d.proc.send_signal(signal.SIGHUP)
        line = good.count("\n") + 1
        wait_for(lambda: "reload failed, keeping the old configuration: "
                 f"{d.config}:{line}:1: duplicate key 'tokens' (first at line 1)" in d.log.read_text(),
                 "the refused reload", timeout=20)
        assert "configuration reloaded" not in d.log.read_text()
        for who in ("alice", "bob"):
            st, body = d.call("GET", "/v1/runs", token=who)
            assert st == 200, (who, body)
        # Fixed, the file reloads (the daemon is still listening to SIGHUP).
        d.config.write_text(config_text("limits:\n  maxima: {timeout_ms: 10000}\n"))
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in d.log.read_text(), "the reload", timeout=20)
        st, _ = d.call("GET", "/v1/runs", token="alice")
        assert st == 200
    finally:
        assert d.stop() == 0, d.log.read_text()


PIPELINE_TWICE = "tasks:\n  a:\n    file: s.py\n    kwargs: {x: 1}\n    kwargs: {x: 2}\n"


def test_pipeline_with_a_key_given_twice_is_refused_embedded_and_with_server(tmp_path, cli):
    cli.write("s.py", "def f(x):\n    return x\n")
    cli.write("p.yaml", PIPELINE_TWICE)
    message = "pysprinter: p.yaml:5:5: duplicate key 'kwargs' (first at line 4)\n"
    embedded = cli("dag", "run", *sandbox_args(), "p.yaml")
    # The exit code of any other malformed pipeline.
    cli.write("bad.yaml", "tasks:\n  a: {file: s.py, limits: {network: yes}}\n")
    other = cli("dag", "run", *sandbox_args(), "bad.yaml")
    assert embedded.returncode == other.returncode == 3, (embedded.stderr, other.stderr)
    assert embedded.stderr == message, embedded.stderr

    d = Daemon(tmp_path / "d")
    d.start()
    try:
        served = cli("dag", "run", "--server", d.url, "p.yaml", env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        assert (served.returncode, served.stdout, served.stderr) == (3, embedded.stdout, embedded.stderr)
        # The daemon's own reader (a pipeline posted by any client).
        st, b = d.call("POST", "/v1/dags", {"pipeline": PIPELINE_TWICE, "files": {"s.py": "def f(x):\n    return x\n"}})
        assert st == 400 and "pipeline.yaml:5:5: duplicate key 'kwargs' (first at line 4)" in b["error"]["message"], b
        st, b = d.call("GET", "/v1/dags")
        assert st == 200 and b["dags"] == [], b  # nothing was recorded
    finally:
        assert d.stop() == 0, d.log.read_text()
