"""Resource limits and quotas of runs, as a Lambda or Modal user and a
multi-tenant operator check them: a limit hit ends the run with exit 5 and
words naming the limit, the same embedded and through `--server`; a
request can lower what the operator granted its tenant, never raise it,
whatever value it gives; odd values are clear errors (docs/sandbox.md
"Limits", docs/api.md "Limits")."""
import json

import pytest

from conftest import same, sandbox_args
from daemonlib import TOKENS, Daemon, sandbox_mode
from pkgindex import build_wheel

# A package whose import registers an after-fork hook that fills 40 MiB:
# every process forked from a worker that imported it (a pre-forked spare
# too) holds that much before the run's code starts.
FORKHOG = ("import os\n_keep = []\n"
           "os.register_at_fork(after_in_child=lambda: _keep.append(b'x' * (40 << 20)))\n")
HOG_RUN = ("@requirements({'forkhog': ''})\ndef f(mb: int = 40):\n"
           "    x = b'y' * (mb << 20)\n    return len(x) >> 20\n")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits-wheels")
    build_wheel(d, "forkhog", "1.0", files={"forkhog/__init__.py": FORKHOG})
    return d


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, wheels):
    root = tmp_path_factory.mktemp("explore-limits")
    mode = sandbox_mode(root)
    if mode == "none":
        pytest.skip("limits are the sandbox's")
    extra = (f"index:\n  find_links: [{wheels}]\nlimits:\n  maxima: {{timeout_ms: 600000}}\n"
             "tenants:\n  bob:\n    maxima: {memory_bytes: 268435456, timeout_ms: 900000}\n"
             "  alice:\n    network: true\n"
             "server:\n  event_retry_delay_ms: 200\n")
    with Daemon(root / "d", sandbox=mode, config_extra=extra).serving() as d:
        yield d


def remote(cli, daemon, *args, token="alice"):
    return cli(*args, "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS[token]})


# ---- memory ----------------------------------------------------------------

def test_a_memory_limit_below_what_a_prepared_spare_holds_is_still_enforced(cli, daemon, wheels):
    """A daemon's run is handed to a spare forked ahead of time, which sits
    in the run's cgroup already; the run's memory limit is written then. v1
    refuses a limit below what the group holds (EBUSY), the write's error
    was ignored, and the run went on under the spare's limit (the
    defaults: 512 MiB): `--memory 32M` ran 80 MiB and succeeded, where the
    embedded run of the same file is killed. Every run is killed now."""
    if sandbox_args():
        pytest.skip("limits are the sandbox's")
    cli.write("hog.py", HOG_RUN)
    local = cli("run", "hog.py", "--find-links", wheels, "--memory", "32M")
    assert (local.returncode, local.stdout, local.stderr) == (5, "", "pysprinter: memory limit (32 MiB)\n")
    # Enough runs that some take a spare (the first ones start the worker).
    for _ in range(6):
        same(local, remote(cli, daemon, "run", "hog.py", "--memory", "32M"))


def test_limits_a_run_cannot_have_are_refused_by_name_not_ignored(daemon):
    """The API took `memory_bytes: 1` (the CLI's --memory wants 16M at
    least) and `max_procs: 10**12` (the CLI's --max-procs stops at 100000),
    and the kernel refused to write them: the run went on under other
    limits than asked — 1 byte of memory ran 50 MiB under the defaults, a
    trillion processes were 64. Both are a 400 naming the field now, for a
    run, a deploy and an invoke alike."""
    src = "def f():\n    return len(b'x' * (50 << 20))\n"
    bad = [({"memory_bytes": 1}, "field 'limits.memory_bytes' must be 0 (the default) or at least 16777216 (16 MiB)"),
           ({"memory_bytes": (16 << 20) - 1},
            "field 'limits.memory_bytes' must be 0 (the default) or at least 16777216 (16 MiB)"),
           ({"max_procs": 10 ** 12}, "field 'limits.max_procs' must be 0 (the default) or at most 100000")]
    st, out = daemon.call("POST", "/v1/functions", {"name": "lim-ok", "source": src, "filename": "lim.py"})
    assert st in (200, 201), out
    for limits, message in bad:
        for method, path, body in (("POST", "/v1/runs?wait=true", {"source": src, "limits": limits}),
                                   ("POST", "/v1/functions", {"name": "lim", "source": src, "filename": "lim.py",
                                                              "limits": limits}),
                                   ("POST", "/v1/functions/lim-ok/invoke", {"limits": limits})):
            st, out = daemon.call(method, path, body)
            assert (st, out) == (400, {"error": {"code": "bad_request", "message": message}}), (path, limits)
    st, out = daemon.call("POST", "/v1/runs?wait=true", {"source": src, "limits": {"memory_bytes": 16 << 20}})
    assert (st, out["status"], out["error"]["message"]) == (200, "killed", "memory limit (16 MiB)")


def test_a_pipeline_or_deploy_limit_a_run_cannot_have_is_refused_up_front(cli, both):
    """A DAG task's `memory: 1K` ran and was killed ("memory limit (1
    KiB)", exit 5) and `max_procs: 1000000000000` was taken; `deploy
    --memory 1K` was sent to the server. They are the run's usage errors
    now, with `run`'s words for the option."""
    cli.write("m.py", "def f():\n    return 1\n")
    for limits, message in (("{memory: 1K}", "p.yaml:4:22: task 'a': limit 'memory' must be at least 16M, got '1K'"),
                            ("{max_procs: 1000000000000}",
                             "p.yaml:4:25: task 'a': limit 'max_procs' must be a number from 1 to 100000, "
                             "got '1000000000000'")):
        cli.write("p.yaml", f"tasks:\n  a:\n    file: m.py\n    limits: {limits}\n")
        r = same(*both("dag", "run", "p.yaml"))
        assert (r.returncode, r.stderr) == (3, f"pysprinter: {message}\n"), r.stderr
    r = same(*both("deploy", "m.py", "--name", "tiny", "--memory", "1K"))
    assert r.returncode == 2 and r.stderr.startswith(
        "pysprinter: --memory needs a size of at least 16M such as 256M or 1G, got '1K'\n"), r.stderr


def test_a_refused_limit_names_the_config_key_that_refused_it(cli, daemon):
    """A request above `limits.maxima` (every tenant's cap) told the user
    to ask for `tenants.NAME.maxima`, which cannot raise it: a tenant's
    maxima only lower the global ones. The 403 names the key that binds."""
    cli.write("m.py", "def f():\n    return 1\n")
    r = remote(cli, daemon, "run", "m.py", "--timeout", "700s")
    assert (r.returncode, r.stderr) == (6, "pysprinter: the token lacks the right to do this (limits.timeout_ms is "
                                           "700000, above the 600000 this tenant may have (ask the operator: config "
                                           "'limits.maxima'))\n")
    # bob's own 900 s is above the global cap: the global one binds too.
    r = remote(cli, daemon, "run", "m.py", "--timeout", "700s", token="bob")
    assert "above the 600000 this tenant may have (ask the operator: config 'limits.maxima')" in r.stderr
    r = remote(cli, daemon, "run", "m.py", "--memory", "512M", token="bob")
    assert "above the 268435456 this tenant may have (ask the operator: config 'tenants.bob.maxima')" in r.stderr


# ---- time -------------------------------------------------------------------

def test_a_warm_instance_is_not_killed_by_the_cpu_time_of_its_past_invocations(cli, daemon):
    """A run's RLIMIT_CPU backstop (its timeout + 5 s of CPU) was set in a
    warm instance too, which serves every invocation in one process: its
    CPU time adds up across them, and after ~10 s of them in total an
    invocation of a function deployed with `--timeout 5s` died "crashed:
    SIGKILL" (exit 5), however short it was itself."""
    cli.write("burn.py", "def f(s: float = 0.5):\n    import os, time\n    t = time.process_time() + s\n"
                         "    while time.process_time() < t:\n        pass\n    return os.getpid()\n")
    r = remote(cli, daemon, "deploy", "burn.py", "--name", "burn", "--timeout", "5s")
    assert r.returncode == 0, r.stderr
    pids = set()
    for _ in range(24):  # 12 s of CPU in all, each invocation 0.5 s
        r = remote(cli, daemon, "invoke", "burn")
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        pids.add(r.stdout)
    assert len(pids) == 1  # one warm instance served them all


def test_lambda_get_function_shows_the_memory_and_timeout_an_invocation_gets(daemon):
    """GetFunction's MemorySize and Timeout were the config's defaults
    (512 MB) for a function deployed without limits, while each
    invocation ran with the tenant's grant (bob: 256 MiB), which its own
    `context.memory_limit_in_mb` said. Both say what is enforced now."""
    src = "def handler(event, context):\n    return context.memory_limit_in_mb\n"
    st, out = daemon.call("POST", "/v1/functions", {"name": "ctx", "source": src, "filename": "ctx.py"}, token="bob")
    assert st in (200, 201), out
    st, out = daemon.call("POST", "/2015-03-31/functions/ctx/invocations", {}, token="bob")
    assert (st, out) == (200, 256)
    st, out = daemon.call("GET", "/2015-03-31/functions/ctx", token="bob")
    assert st == 200, out
    assert (out["Configuration"]["MemorySize"], out["Configuration"]["Timeout"]) == (256, 60)


def test_the_config_refuses_limits_a_run_cannot_have(tmp_path):
    """`limits.defaults.memory_bytes: 1` passed --check-config and became
    every run's memory limit (a maximum of 1000 bytes lowered every
    default to it); a trillion processes passed as a maximum. The config
    now has the bounds a request has, checked as a start checks them."""
    import subprocess
    from conftest import DAEMON
    for text, message in (("limits:\n  defaults: {memory_bytes: 1}\n",
                           "c.yaml:2: 'limits.defaults.memory_bytes' must be 0 or at least 16777216 (16 MiB)\n"),
                          ("limits:\n  maxima: {memory_bytes: 1000}\n",
                           "c.yaml:2: 'limits.maxima.memory_bytes' must be 0 or at least 16777216 (16 MiB)\n"),
                          ("tenants:\n  x:\n    maxima: {max_procs: 1000000000000}\n",
                           "c.yaml:3: 'tenants.x.maxima.max_procs' must be at most 100000\n")):
        (tmp_path / "c.yaml").write_text(text)
        r = subprocess.run([str(DAEMON), "--check-config", "c.yaml"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
        assert (r.returncode, r.stdout, r.stderr) == (2, "", message)


def test_a_foreground_invoke_with_a_payload_ends_at_its_first_limit(cli, daemon):
    """`invoke NAME --payload` in the foreground was sent as a Lambda Event
    invocation and followed, so a try killed by a limit was tried twice
    more, `server.event_retry_delay_ms` (60 s by default) and twice that
    apart: the user's terminal waited three minutes, the function ran three
    times, and the answer was the same limit. The caller waits and hears
    the failure, as from a RequestResponse invocation: no retry, as `invoke
    NAME ARGS` has none."""
    cli.write("slow.py", "def handler(event, context):\n    import time\n    time.sleep(30)\n")
    r = remote(cli, daemon, "deploy", "slow.py", "--name", "slow", "--timeout", "1s")
    assert r.returncode == 0, r.stderr
    r = remote(cli, daemon, "invoke", "slow", "--payload", "{}")
    assert (r.returncode, r.stdout, r.stderr) == (5, "", "pysprinter: time limit (1s)\n")
    st, runs = daemon.call("GET", "/v1/functions/slow/runs")
    assert st == 200 and [x["attempt"] for x in runs["runs"]] == [1], runs
    # A Lambda client's own Event invocation is still tried again.
    st, _, _ = daemon.request("POST", "/2015-03-31/functions/slow/invocations", {},
                              headers={"X-Amz-Invocation-Type": "Event"})
    assert st == 202


# ---- deploy ------------------------------------------------------------------

def test_deploy_takes_every_limit_run_takes(cli, daemon, tmp_path):
    """`deploy` knew --timeout, --memory and --max-procs only, spelt
    `--timeout 5s`: `--network`, `--max-output` and `--timeout=5s` were
    "unexpected argument" (exit 2), and a stack file had no `network` or
    `max_output`. A function behind the Lambda route or a URL runs with its
    deploy's limits alone, so it could never reach the network its tenant
    was granted."""
    cli.write("net.py", "def handler(event, context):\n    import socket\n    s = socket.socket()\n"
                        "    try:\n        s.connect(('127.0.0.1', event['port']))\n        return True\n"
                        "    except OSError:\n        return False\n")
    r = remote(cli, daemon, "deploy", "net.py", "--name", "net", "--network", "--max-output=2M", "--timeout=20s")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    st, f = daemon.call("GET", "/v1/functions/net")
    assert f["limits"] == {"network": True, "max_output_bytes": 2 << 20, "timeout_ms": 20000}
    st, out = daemon.call("POST", "/2015-03-31/functions/net/invocations", {"port": daemon.port})
    assert (st, out) == (200, True)
    (tmp_path / "stack.yaml").write_text("functions:\n  net2:\n    file: net.py\n    network: true\n"
                                         "    max_output: 1M\n")
    r = remote(cli, daemon, "deploy", "-f", "stack.yaml")
    assert r.returncode == 0, r.stderr
    st, f = daemon.call("GET", "/v1/functions/net2")
    assert f["limits"] == {"network": True, "max_output_bytes": 1 << 20}
    st, out = daemon.call("POST", "/2015-03-31/functions/net2/invocations", {"port": daemon.port})
    assert (st, out) == (200, True)
    # bob is not granted the network: refused at deploy, as a run's --network.
    r = remote(cli, daemon, "deploy", "net.py", "--name", "net", "--network", token="bob")
    assert r.returncode == 6 and "limits.network: this tenant may not give its runs network access" in r.stderr


# ---- output ------------------------------------------------------------------

def test_limit_messages_spell_the_limit_exactly_and_alike(cli, both):
    """An output limit was spelt in whole MiB or in bytes (`--max-output 1K`:
    "output limit (1024 bytes)") and a memory limit rounded to MiB
    (`--memory 40.5M`: "memory limit (41 MiB)", a limit that was not the
    run's). Both say the limit exactly now, in the largest unit that holds
    it whole, the same embedded and through a server."""
    if sandbox_args():
        pytest.skip("limits are the sandbox's")
    cli.write("flood.py", "def f():\n    import sys\n    while True:\n        sys.stdout.write('x' * 4096)\n")
    for size, words in (("1K", "1 KiB"), ("1536K", "1536 KiB"), ("2M", "2 MiB")):
        r = same(*both("run", "flood.py", "--max-output", size))
        assert (r.returncode, r.stderr) == (5, f"pysprinter: output limit ({words})\n")
    cli.write("mem.py", "def f():\n    return len(b'x' * (200 << 20))\n")
    r = same(*both("run", "mem.py", "--memory", "40.5M"))
    assert (r.returncode, r.stderr) == (5, "pysprinter: memory limit (41472 KiB)\n")


# ---- quotas ------------------------------------------------------------------

def test_a_tenant_turned_away_for_its_own_share_is_told_so(tmp_path):
    """One tenant's share of the queue full answered what a full queue
    does, "run: the queue is full; retry later": the tenant could not tell
    its own backlog (server.max_queued_per_tenant) from a daemon full of
    other tenants' runs, nor the operator which cap to raise. Still a 429
    with Retry-After; the words name the tenant's share."""
    extra = ("server:\n  max_concurrent_runs: 4\n  max_concurrent_per_tenant: 1\n  max_queued_runs: 8\n"
             "  max_queued_per_tenant: 1\n")
    src = "def f():\n    import time\n    time.sleep(20)\n"
    with Daemon(tmp_path / "d", config_extra=extra).serving() as d:
        ids = []
        for _ in range(2):  # one running, one queued: alice's share
            st, out = d.call("POST", "/v1/runs", {"source": src})
            assert st == 202, out
            ids.append(out["id"])
        st, hdrs, body = d.request("POST", "/v1/runs", {"source": src})
        assert (st, hdrs.get("retry-after")) == (429, "2")
        assert json.loads(body) == {"error": {"code": "too_many_requests", "message": (
            "run: this tenant's share of the queue is full (server.max_queued_per_tenant); retry later")}}
        # bob is not turned away by alice's backlog.
        st, out = d.call("POST", "/v1/runs", {"source": "def f():\n    return 1\n"}, token="bob")
        assert st == 202, out
        for i in ids:
            d.cancel(i)
