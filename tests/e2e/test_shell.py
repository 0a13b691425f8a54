"""The shell niceties (docs/cli.md): completion scripts, man pages kept in
sync with --help, and `pysprinter init`."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import CLI, DAEMON, ROOT, sandbox_args
from daemonlib import Daemon, TOKENS, sandbox_mode

pytestmark = pytest.mark.skipif(not CLI.exists(), reason="pysprinter not built")

MAN = ROOT / "docs" / "man"


def help_text(exe):
    p = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    return p.stdout


def cli_verbs():
    text = help_text(CLI)
    block = text.split("Verbs:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines()]


def options(text):
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", text))


def man_text(name):
    # troff's escaped minus is a minus to a reader
    return re.sub(r"\\f[BIRP]", "", (MAN / name).read_text().replace("\\-", "-"))


def test_man_page_lists_every_verb_and_global_option_of_help():
    man = man_text("pysprinter.1")
    verbs = cli_verbs()
    assert "schedule" in verbs and "completion" in verbs and "init" in verbs
    section = man.split(".SH VERBS", 1)[1].split(".SH", 1)[0]
    man_verbs = re.findall(r"^\.B (\S+)$", section, re.M)
    assert man_verbs == verbs, "docs/man/pysprinter.1's VERBS differ from `pysprinter --help`"
    help_globals = options(help_text(CLI).split("Global options", 1)[1])
    man_globals = options(man.split(".SH GLOBAL OPTIONS", 1)[1].split(".SH", 1)[0])
    assert help_globals == man_globals


def test_daemon_man_page_lists_every_option_of_help():
    if not DAEMON.exists():
        pytest.skip("pysprinterd not built")
    man = man_text("pysprinterd.8")
    help_opts = options(help_text(DAEMON))
    man_opts = options(man.split(".SH SYNOPSIS", 1)[1].split(".SH SIGNALS", 1)[0])
    assert help_opts == man_opts


def bash_complete(line, env):
    """COMPREPLY for the words of line (the cursor at its end)."""
    words = line.split(" ")
    script = (f"source <({CLI} completion bash)\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_pysprinter; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    e = dict(env, PATH=f"{CLI.parent}:{env.get('PATH', '')}")
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.splitlines() if w]


def test_bash_completion_verbs_and_options(env):
    if not shutil.which("bash"):
        pytest.skip("bash is not installed")
    assert bash_complete("pysprinter sch", env) == ["schedule"]
    assert set(bash_complete("pysprinter ", env)) >= set(cli_verbs())
    assert bash_complete("pysprinter deploy --pu", env) == ["--public"]
    assert bash_complete("pysprinter schedule add x --catch", env) == ["--catch-up"]
    assert bash_complete("pysprinter completion ", env) == ["bash", "zsh", "fish"]
    assert bash_complete("pysprinter schedule p", env) == ["pause"]


def test_bash_completion_asks_the_server_for_names(env, tmp_path):
    if not shutil.which("bash") or not DAEMON.exists():
        pytest.skip("bash or pysprinterd missing")
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path)).start()
    try:
        for name in ("alpha", "beta"):
            st, _ = d.call("POST", "/v1/functions", {"name": name, "source": "def f(x=1):\n    return x\n"})
            assert st == 201
        st, _ = d.call("POST", "/v1/schedules", {"name": "nightly", "function": "alpha", "cron": "@daily"})
        assert st == 201
        st, run = d.call("POST", "/v1/functions/alpha/invoke?wait=true", {})
        assert st == 200
        e = dict(env, **d.client_env())
        assert bash_complete("pysprinter invoke ", e) == ["alpha", "beta"]
        assert bash_complete("pysprinter invoke b", e) == ["beta"]
        assert bash_complete("pysprinter schedule rm ", e) == ["nightly"]
        assert bash_complete("pysprinter schedule add x --every 1h ", e) == ["alpha", "beta"]
        assert bash_complete("pysprinter show ", e) == [run["id"]]
        # Another tenant sees its own names only.
        e = dict(env, **d.client_env("bob"))
        assert bash_complete("pysprinter invoke ", e) == []
    finally:
        d.stop()
    # No server reachable: no names, no noise, still a completion.
    e = dict(env, PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"])
    assert bash_complete("pysprinter invoke ", e) == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_every_verb_and_parse(cli, shell):
    p = cli("completion", shell, check=0)
    for v in cli_verbs():
        assert re.search(rf"\b{v}\b", p.stdout), (shell, v)
    exe = shutil.which(shell)
    if not exe:
        pytest.skip(f"{shell} is not installed: the script's syntax is not checked")
    q = subprocess.run([exe, "-n"], input=p.stdout, capture_output=True, text=True, timeout=30)
    assert q.returncode == 0, q.stderr


def test_completion_usage(cli):
    assert cli("completion", "tcsh").returncode == 2
    assert cli("completion").returncode == 2
    assert "bash" in cli("completion", "--help", check=0).stdout


def test_init_writes_a_starter_that_runs_and_tests_pass(cli, tmp_path, env):
    p = cli("init", "proj", check=0)
    proj = tmp_path / "proj"
    assert sorted(x.name for x in proj.iterdir()) == ["hello.py", "pipeline.yaml", "test_hello.py"]
    assert "hello.py" in p.stdout
    r = cli("run", "--json", "proj/hello.py", "-a", "world", *sandbox_args(), check=0)
    assert json.loads(r.stdout.splitlines()[-1]) == "hello, world"
    r = cli("dag", "run", "--json", "proj/pipeline.yaml", check=0)
    assert "hello, hello, world and hello, world!" in r.stdout
    # The generated test passes, running the starter through pysprinter.
    t = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(proj / "test_hello.py")],
                       capture_output=True, text=True, cwd=proj, timeout=300,
                       env=dict(env, PYSPRINTER=str(CLI)))
    assert t.returncode == 0, t.stdout + t.stderr
    assert "2 passed" in t.stdout
    # Never overwrites: a second init refuses and leaves the files alone.
    (proj / "hello.py").write_text("# mine\n")
    p = cli("init", "proj")
    assert p.returncode == 2 and "exists" in p.stderr
    assert (proj / "hello.py").read_text() == "# mine\n"
    assert cli("init", "a", "b").returncode == 2


PRINTER = """
def handler(event):
    for i in range(3):
        print(f"{event['tag']} line {i}", flush=True)
    return event["tag"]
"""


def test_logs_function_tags_every_invocation_and_follows_new_ones(cli, env, tmp_path):
    if not DAEMON.exists():
        pytest.skip("pysprinterd not built")
    import time
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path)).start()
    try:
        st, _ = d.call("POST", "/v1/functions", {"name": "pr", "source": PRINTER})
        assert st == 201
        ids = []
        for tag in ("first", "second"):
            st, run = d.call("POST", "/2015-03-31/functions/pr/invocations", {"tag": tag}, raw=None)
            assert st == 200
        st, runs = d.call("GET", "/v1/functions/pr/runs")
        ids = [r["id"] for r in runs["runs"]][::-1]
        assert len(ids) == 2
        cli.env = dict(cli.env, PYSPRINTER_SERVER=d.url, PYSPRINTER_TOKEN=TOKENS["alice"])
        out = cli("logs", "--function", "pr", check=0).stdout.splitlines()
        tagged = [l for l in out if "line" in l]
        assert tagged == [f"[{ids[0]}] first line {i}" for i in range(3)] + \
                         [f"[{ids[1]}] second line {i}" for i in range(3)], out
        # -f: a new invocation shows up while following.
        p = subprocess.Popen([str(CLI), "logs", "--function", "pr", "-f"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cli.env)
        try:
            st, _ = d.call("POST", "/2015-03-31/functions/pr/invocations", {"tag": "third"})
            assert st == 200
            deadline = time.time() + 30
            lines = []
            import queue
            import threading
            # Lines come through a thread: the deadline holds even if the
            # CLI prints nothing more (a bare readline() would wait forever).
            got = queue.Queue()
            threading.Thread(target=lambda: [got.put(l) for l in p.stdout] + [got.put("")], daemon=True).start()
            while time.time() < deadline:
                try:
                    line = got.get(timeout=max(0.01, deadline - time.time()))
                except queue.Empty:
                    break
                if not line:
                    break
                lines.append(line.rstrip("\n"))
                if "third line 2" in line:
                    break
            assert any(l.endswith("] third line 2") for l in lines), lines
            third = next(l for l in lines if "third line 0" in l).split("]")[0][1:]
            assert third not in ids and third.startswith("r")
        finally:
            p.send_signal(subprocess.signal.SIGINT)
            p.wait(10)
        assert p.returncode == 130
        # Bob does not see alice's function's runs; no server: a clear error.
        # (for bob no function 'pr' exists: refused as invoke refuses it)
        p = cli("logs", "--function", "pr", env={"PYSPRINTER_TOKEN": TOKENS["bob"]}, check=2)
        assert "line" not in p.stdout and "no deployed function 'pr'" in p.stderr, p.stderr
    finally:
        d.stop()
    p = subprocess.run([str(CLI), "logs", "--function", "pr"], capture_output=True, text=True, env=env)
    assert p.returncode != 0 and "server" in p.stderr
    assert cli("logs", "--function").returncode == 2
