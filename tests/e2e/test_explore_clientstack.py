"""Explored by the helper `clientstack`: Ctrl-C in the Python client's
run() and invoke() before the daemon's first answer (docs/python.md), a
stack's files sent by their path relative to the stack file (docs/cli.md
"stack"), and a token Function URL's CORS preflight answered by the daemon
(docs/api.md "Function URLs")."""
import signal
import subprocess
import sys
import time

import pytest

from conftest import DAEMON, ROOT
import daemonlib

pytestmark = pytest.mark.skipif(not DAEMON.exists(), reason=f"{DAEMON} is not built")

NAP = '''
import time

@requirements({})
def nap(s: float):
    print("napping", flush=True)
    time.sleep(s)
    return s
'''


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("d")
    with daemonlib.Daemon(tmp, sandbox=daemonlib.sandbox_mode(tmp)).serving_function("nap", NAP, "nap.py") as d:
        yield d


def running_runs(d, pred):
    st, ls = d.call("GET", "/v1/runs?status=running,queued")
    assert st == 200, ls
    return [r for r in ls["runs"] if pred(r)]


def interrupt_client_call(d, call, pred, tmp_path):
    """Starts a child process making `call` on a Client, sends it SIGINT once
    a run matching pred runs (before any answer: the call waits for the run's
    end, 60 s away), and returns (the child's output, the run's id)."""
    (tmp_path / "nap.py").write_text(NAP)
    # Python's own SIGINT handler, set here: a child of a shell's background
    # job (CI's `nohup … &`) starts with SIGINT ignored, which Python keeps.
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'python')!r})\n"
              "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "import pysprinter\n"
              f"c = pysprinter.Client(server={d.url!r}, token={daemonlib.TOKENS['alice']!r})\n"
              "try:\n"
              f"    {call}\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        run_id = None
        for _ in range(600):
            mine = [r for r in running_runs(d, pred) if r["status"] == "running"]
            if mine:
                run_id = mine[0]["id"]
                break
            time.sleep(0.1)
        assert run_id, "the run never ran"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    return out, run_id


def test_ctrl_c_in_invoke_before_the_answer_cancels_the_invocation(daemon, tmp_path):
    """Before: the invocation ran on to its end (60 s) for nobody."""
    out, rid = interrupt_client_call(daemon, "c.invoke('nap', 45)", lambda r: r.get("fn_name") == "nap", tmp_path)
    assert "interrupted" in out
    rec = daemon.wait_status(rid, ["cancelled", "succeeded", "failed", "killed"], timeout=30)
    assert rec["status"] == "cancelled", rec


def test_ctrl_c_in_run_before_the_answer_cancels_the_run(daemon, tmp_path):
    out, rid = interrupt_client_call(daemon, "c.run('nap.py', 46)",
                                     lambda r: not r.get("fn_name") and r.get("args") == [46], tmp_path)
    assert "interrupted" in out
    rec = daemon.wait_status(rid, ["cancelled", "succeeded", "failed", "killed"], timeout=30)
    assert rec["status"] == "cancelled", rec

