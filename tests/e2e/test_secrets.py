"""Secrets and environment variables for functions (docs/secrets.md), embedded
and against a real daemon: a run sees `--secret NAME` as os.environ[NAME] and
`--env KEY=VALUE` as os.environ[KEY]; the value is sealed at rest and appears
in no record, database file, daemon log or API answer; another tenant can
neither read nor use it (404)."""
import hashlib
import json
import os
import pathlib
import sqlite3
import stat

import pytest

from conftest import sandbox_args
from daemonlib import TOKENS, module_daemon, point_cli

VALUE = "sk-live-7f3a9c1e5b2d4f60a8e9"
PRINTS = """
    import os
    @requirements({})
    def main():
        print("API_KEY=" + os.environ["API_KEY"])
        return {"len": len(os.environ["API_KEY"]), "mode": os.environ.get("MODE"),
                "path": os.environ.get("PATH")}
"""


def files_containing(root, needle, skip=("logs",)):
    """Every file under root whose bytes contain needle (run logs hold what
    the function itself printed, so they are skipped)."""
    hits = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for f in filenames:
            p = pathlib.Path(dirpath) / f
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def sealed_rows(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT tenant, name, sealed FROM secrets").fetchall()
    finally:
        c.close()


# ---- embedded -----------------------------------------------------------

def test_embedded_secret_reaches_the_run_and_nothing_else(cli, home):
    f = cli.write("f.py", PRINTS)
    p = cli("secret", "set", "API_KEY", input=VALUE + "\n", check=0)
    key = home / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == 32
    ls = cli("secret", "ls", check=0)
    assert "API_KEY" in ls.stdout and VALUE not in ls.stdout
    ls = cli("secret", "ls", "--json", check=0)
    assert [s["name"] for s in json.loads(ls.stdout)] == ["API_KEY"] and VALUE not in ls.stdout

    r = cli("run", *sandbox_args(), f, "--secret", "API_KEY", "--env", "MODE=prod", check=0)
    assert "API_KEY=" + VALUE in r.stdout
    out = json.loads(r.stdout[r.stdout.index("{"):])
    assert out["len"] == len(VALUE) and out["mode"] == "prod"
    # The allow-list stays for everything else.
    assert out["path"] == "/usr/local/bin:/usr/bin:/bin"

    for args in (("ps", "--json"), ("ps",)):
        assert VALUE not in cli(*args, check=0).stdout
    run_id = json.loads(cli("ps", "--json", check=0).stdout)[0]["id"]
    shown = cli("show", run_id, "--json", check=0).stdout
    assert VALUE not in shown and run_id in shown
    assert files_containing(home, VALUE) == []
    # At rest: nonce + ciphertext + tag, nothing else.
    rows = sealed_rows(home / "pysprinter.db")
    assert [(t, n) for t, n, _ in rows] == [("local", "API_KEY")]
    assert len(rows[0][2]) == len(VALUE) + 12 + 16 and VALUE.encode() not in rows[0][2]


def test_embedded_value_never_from_argv_and_missing_secret(cli, home):
    f = cli.write("f.py", PRINTS)
    p = cli("secret", "set", "API_KEY", VALUE)
    assert p.returncode == 2 and "never from the command line" in p.stderr
    p = cli("run", *sandbox_args(), f, "--secret", "API_KEY")
    assert p.returncode != 0 and "no secret named 'API_KEY'" in p.stderr
    vf = cli.write("value.txt", VALUE)
    cli("secret", "set", "API_KEY", "--from-file", vf, check=0)
    assert "API_KEY=" + VALUE in cli("run", *sandbox_args(), f, "--secret", "API_KEY", check=0).stdout
    cli("secret", "rm", "API_KEY", check=0)
    assert cli("secret", "rm", "API_KEY").returncode != 0
    assert "API_KEY" not in cli("secret", "ls", check=0).stdout
    assert cli("secret", "set", "1BAD", input="x").returncode == 2
    assert cli("run", f, "--env", "NOEQUALS").returncode == 2


def refuses_values_no_environment_can_hold(cli):
    for name, value in (("bin", b"a\xffb"), ("nul", b"a\0b")):
        path = pathlib.Path(cli.cwd) / name
        path.write_bytes(value)
        p = cli("secret", "set", "ODD", "--from-file", path)
        assert p.returncode == 2, (name, p.returncode, p.stderr)
        assert "a secret's value must be UTF-8 text without NUL bytes" in p.stderr, (name, p.stderr)
    assert "ODD" not in cli("secret", "ls", check=0).stdout


def test_embedded_refuses_a_value_that_is_not_utf8_as_a_daemon_does(cli, home):
    """Embedded used to store it, and the run then had no such variable."""
    refuses_values_no_environment_can_hold(cli)


# ---- against a daemon ------------------------------------------------------

@pytest.fixture(scope="module")
def d(tmp_path_factory):
    yield from module_daemon(tmp_path_factory, "secrets-daemon")


@pytest.fixture
def rcli(cli, d, tmp_path):
    return point_cli(cli, d, tmp_path)


def test_daemon_secret_reaches_the_run_and_no_answer_log_or_file(rcli, d):
    key = d.home / "secrets.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == 32
    rcli("secret", "set", "API_KEY", input=VALUE, check=0)
    f = rcli.write("f.py", PRINTS)
    r = rcli("run", f, "--secret", "API_KEY", "--env", "MODE=prod", "--json", check=0)
    # --json: the function's own output goes to stderr, the result to stdout.
    assert "API_KEY=" + VALUE in r.stderr
    assert json.loads(r.stdout) == {"len": len(VALUE), "mode": "prod", "path": "/usr/local/bin:/usr/bin:/bin"}
    answers = [rcli("secret", "ls", "--json", check=0).stdout, rcli("ps", "--json", check=0).stdout]
    run_id = json.loads(answers[1])[0]["id"]
    answers.append(rcli("show", run_id, "--json", check=0).stdout)
    for path in ("/v1/runs", f"/v1/runs/{run_id}", "/v1/secrets", "/v1/envs", "/v1/workers"):
        st, hdrs, body = d.request("GET", path)
        assert st == 200, (path, body)
        answers.append(body.decode())
    st, _, body = d.request("GET", "/metrics", token="admin")
    assert st == 200
    answers.append(body.decode())
    st, body = d.run("import os\ndef f():\n    return len(os.environ['API_KEY'])\n", secrets=["API_KEY"])
    assert st == 200 and body["status"] == "succeeded" and body["result"] == len(VALUE)
    answers.append(json.dumps(body))
    for a in answers:
        assert VALUE not in a
    assert files_containing(d.home, VALUE) == []
    assert VALUE not in d.log.read_text(errors="replace")
    rows = sealed_rows(d.home / "pysprinter.db")
    assert ("alice", "API_KEY") in [(t, n) for t, n, _ in rows]
    assert all(VALUE.encode() not in s for _, _, s in rows)


def test_daemon_refuses_a_value_that_is_not_utf8(rcli):
    refuses_values_no_environment_can_hold(rcli)


def test_daemon_other_tenant_can_neither_read_nor_use(d):
    st, _ = d.call("PUT", "/v1/secrets/DB_PASSWORD", {"value": VALUE})
    assert st == 200
    # bob: not listed, not deletable, not usable -> 404
    st, body = d.call("GET", "/v1/secrets", token="bob")
    assert st == 200 and "DB_PASSWORD" not in json.dumps(body)
    st, body = d.call("DELETE", "/v1/secrets/DB_PASSWORD", token="bob")
    assert st == 404
    st, body = d.run("import os\ndef f():\n    return os.environ.get('DB_PASSWORD')\n", token="bob",
                     secrets=["DB_PASSWORD"])
    assert st == 404 and "DB_PASSWORD" in body["error"]["message"], body
    # bob's own secret of the same name is his, not alice's.
    st, _ = d.call("PUT", "/v1/secrets/DB_PASSWORD", {"value": "bobs-own"}, token="bob")
    assert st == 200
    st, body = d.run("import os\ndef f():\n    return os.environ['DB_PASSWORD']\n", token="bob",
                     secrets=["DB_PASSWORD"])
    assert st == 200 and body["result"] == "bobs-own"
    # A read-only token cannot set one.
    st, _ = d.call("PUT", "/v1/secrets/X", {"value": "v"}, token="reader")
    assert st == 403
    st, _ = d.call("PUT", "/v1/secrets/X", {"value": "v", "extra": 1})
    assert st == 400
    st, _ = d.call("DELETE", "/v1/secrets/DB_PASSWORD")
    assert st == 200
    st, _ = d.call("DELETE", "/v1/secrets/DB_PASSWORD")
    assert st == 404


def test_daemon_env_and_bad_names(d):
    st, body = d.run("import os\ndef f():\n    return [os.environ.get('A'), os.environ.get('B'), "
                     "sorted(k for k in os.environ if k in ('A', 'B', 'PYSPRINTER_TOKEN'))]\n",
                     env={"A": "1", "B": "two words"})
    assert st == 200 and body["result"] == ["1", "two words", ["A", "B"]], body
    st, body = d.run("def f():\n    return 1\n", env={"1X": "v"})
    assert st == 400
    st, body = d.run("def f():\n    return 1\n", secrets=["not-a-name"])
    assert st == 400


def test_daemon_deploy_with_secret_and_env(rcli, d):
    st, _ = d.call("PUT", "/v1/secrets/SVC_KEY", {"value": "first-" + VALUE})
    assert st == 200
    f = rcli.write("svc.py", """
        import hashlib, os
        def handler(event):
            return [hashlib.sha256(os.environ["SVC_KEY"].encode()).hexdigest(), os.environ["MODE"]]
    """)
    rcli("deploy", f, "--name", "svc", "--secret", "SVC_KEY", "--env", "MODE=prod", check=0)
    st, fn = d.call("GET", "/v1/functions/svc")
    assert st == 200 and fn["secrets"] == ["SVC_KEY"] and fn["env"] == ["MODE"], fn
    assert VALUE not in json.dumps(fn)
    st, body = d.call("POST", "/v1/functions/svc/invoke?wait=true", {"args": [{}]})
    assert st == 200 and body["result"] == [sha("first-" + VALUE), "prod"], body
    # A changed secret reaches the next invocation (a new warm instance).
    st, _ = d.call("PUT", "/v1/secrets/SVC_KEY", {"value": "second-" + VALUE})
    st, body = d.call("POST", "/v1/functions/svc/invoke?wait=true", {"args": [{}]})
    assert st == 200 and body["result"] == [sha("second-" + VALUE), "prod"], body
    # bob cannot deploy with alice's secret.
    st, body = d.call("POST", "/v1/functions", {"name": "steal", "source": "def f():\n    return 1\n",
                                                "secrets": ["SVC_KEY"]}, token="bob")
    assert st == 404, body
    st, _, workers = d.request("GET", "/v1/workers")
    assert VALUE.encode() not in workers
    assert files_containing(d.home, VALUE) == []
    assert VALUE not in d.log.read_text(errors="replace")


# ---- DAG tasks: secrets: and env: -------------------------------------------

DAG_STEPS = """
    import hashlib, os
    def use():
        return [hashlib.sha256(os.environ["API_KEY"].encode()).hexdigest(), os.environ["MODE"],
                os.environ.get("N")]
    def plain(prev):
        return [prev[1], os.environ.get("API_KEY"), os.environ.get("MODE")]
"""
DAG_YAML = """
tasks:
  use:
    file: steps.py
    function: use
    secrets: [API_KEY]
    env: {MODE: prod, N: 5}
  plain: {file: steps.py, function: plain, args: ["${use}"]}
"""


def check_dag_tasks(out):
    assert out["status"] == "succeeded", out
    t = out["tasks"]
    assert t["use"]["result"] == [sha(VALUE), "prod", "5"]
    # The downstream task declared neither: it sees neither.
    assert t["plain"]["result"] == ["prod", None, None]


def test_dag_task_secrets_and_env_embedded(cli, home):
    cli.write("steps.py", DAG_STEPS)
    cli.write("p.yaml", DAG_YAML)
    p = cli("dag", "run", *sandbox_args(), "p.yaml", "--json")
    assert p.returncode != 0 and "no secret named 'API_KEY'" in p.stdout + p.stderr
    cli("secret", "set", "API_KEY", input=VALUE, check=0)
    p = cli("dag", "run", *sandbox_args(), "p.yaml", "--json", "--no-cache", check=0)
    check_dag_tasks(json.loads(p.stdout))
    assert files_containing(home, VALUE) == []
    cli.write("bad.yaml", "tasks:\n  t: {file: steps.py, function: use, env: {1X: v}}\n")
    p = cli("dag", "run", "bad.yaml")
    assert p.returncode == 3 and "env maps names" in p.stderr


def test_dag_task_secrets_and_env_on_daemon(rcli, d):
    st, _ = d.call("PUT", "/v1/secrets/API_KEY", {"value": VALUE})
    assert st == 200
    rcli.write("pipe/steps.py", DAG_STEPS)
    rcli.write("pipe/p.yaml", DAG_YAML)
    p = rcli("dag", "run", "pipe/p.yaml", "--json", "--no-cache", check=0)
    check_dag_tasks(json.loads(p.stdout))
    # bob's pipeline naming alice's secret: 404 before anything runs.
    bob = dict(PYSPRINTER_TOKEN=TOKENS["bob"])
    st, before = d.call("GET", "/v1/dags", token="bob")
    p = rcli("dag", "run", "pipe/p.yaml", "--json", "--no-cache", env=bob)
    assert p.returncode != 0 and "task 'use': no secret named 'API_KEY'" in p.stderr, (p.stdout, p.stderr)
    st, after = d.call("GET", "/v1/dags", token="bob")
    assert st == 200 and after == before
    assert files_containing(d.home, VALUE) == []
    assert VALUE not in d.log.read_text(errors="replace")
