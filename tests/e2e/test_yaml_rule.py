"""One YAML rule (issue 12, docs/internals/yaml.md): the daemon's config file
and a pipeline file read `yes`, `on` and `1.5` the same way — YAML 1.2 core
schema: `yes`/`on` are strings, `1.5` is a real, booleans are true/false.
Real binaries: pysprinterd reading its config, `pysprinter dag run`."""
import json
import subprocess
import time

from conftest import DAEMON, WORKER, sandbox_args
from daemonlib import Daemon, free_port

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
    d = Daemon(tmp_path / "d", config_extra="tokens:\n  - {tenant: on, token: on-token-0123456789abcdef}\n")
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
