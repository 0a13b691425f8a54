"""pysprinter.Client explored as a user of the Modal, Ray or boto3 SDKs
would use it, against a real pysprinterd (docs/python.md "The client"):
after a fork and in a spawned process pool, with no timeout or a short
one, with a run longer than the client's timeout, with a token read from
a file or the CLI's config file, with arguments JSON cannot carry, a body
over the daemon's limit, a file that is CRLF or not UTF-8, a submitted
run or invocation to wait for, list or cancel, Ctrl-C in run and map, the
CLI's run options and its functions, secret and data verbs."""
import os
import signal
import sys
import threading
import warnings

import pytest

from conftest import ROOT
import daemonlib

sys.path.insert(0, str(ROOT / "python"))
import pysprinter  # noqa: E402

JOB = '''
import sys, time

@requirements({})
def ident(x):
    return x

def big():
    return 2 ** 64

def sleepy(s: float):
    print("sleeping", flush=True)
    time.sleep(s)
    return s

def boom(x=1):
    print("to stderr", file=sys.stderr)
    raise ValueError(f"bad {x}")

def words(name="words"):
    from pysprinter import data_path
    with open(data_path(name)) as f:
        return f.read()

def getenv(name):
    import os
    return os.environ.get(name)
'''


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("d")
    with daemonlib.Daemon(tmp, sandbox=daemonlib.sandbox_mode(tmp)).serving_function("ident", JOB, "job.py") as d:
        yield d


@pytest.fixture
def job(tmp_path):
    p = tmp_path / "job.py"
    p.write_text(JOB)
    return str(p)


def client(d, **kw):
    return pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"], **kw)


def run_statuses(d, runs):
    """{run id: status} of these run ids, as the daemon records them."""
    out = {}
    for rid in runs:
        st, r = d.call("GET", f"/v1/runs/{rid}")
        assert st == 200, r
        out[rid] = r["status"]
    return out


# ---- a client used on both sides of a fork ------------------------------------

def test_fork_does_not_share_kept_alive_connections(daemon):
    """A Client made before os.fork() (multiprocessing's default start
    method on Linux) and used in both processes: each call gets its own
    answer. Before, parent and child read each other's answers on the one
    inherited socket (wrong values, Disconnected)."""
    c = client(daemon)
    assert c.invoke("ident", -1) == -1                 # a kept-alive connection now exists
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(go_w)
        bad = 0
        try:
            os.read(go_r, 1)                           # both sides start together
            for i in range(300):
                bad += c.invoke("ident", 100000 + i) != 100000 + i
        except BaseException:
            bad += 1000
        os.write(w, str(bad).encode())
        os._exit(0)
    os.close(w)
    os.close(go_r)
    bad = []
    try:
        os.write(go_w, b"g")
        for i in range(300):
            try:
                got = c.invoke("ident", i)
            except Exception as e:
                got = e
            if got != i:
                bad.append((i, got))
    finally:
        os.close(go_w)
        child = b""
        while True:
            piece = os.read(r, 100)
            if not piece:
                break
            child += piece
        os.close(r)
        os.waitpid(pid, 0)
    assert bad == [] and child == b"0"


# ---- timeouts -----------------------------------------------------------------

def test_timeout_none_waits_without_a_limit(daemon, job):
    """timeout=None is "no timeout", as with socket, urllib and requests.
    Before: TypeError (float + NoneType) on the first call."""
    c = client(daemon, timeout=None)
    assert c.run(job + "::ident", 5) == 5
    assert c.invoke("ident", 6) == 6


def test_a_run_longer_than_the_client_timeout_is_waited_for(daemon, job):
    """The client's timeout bounds its wait for any one answer, not the
    run's length (that is the run's own limit): a run of 4 s with
    timeout=2 returns its value. Before: TimeoutError after 2 s, and the
    hang-up cancelled the run."""
    c = client(daemon, timeout=2)
    assert c.run(job + "::sleepy", 4) == 4
    assert c.invoke("ident", 7) == 7
    st, runs = daemon.call("GET", "/v1/runs?limit=5")
    assert [r["status"] for r in runs["runs"] if r["function"] == "sleepy"][:1] == ["succeeded"]


# ---- errors --------------------------------------------------------------------

def test_token_with_a_line_break_is_not_echoed(daemon, job):
    """token=open(file).read() keeps the file's last line break: the
    error says so and does not print the token. Before, the ValueError
    quoted every header, the bearer token included."""
    secret = daemonlib.TOKENS["alice"]
    with pytest.raises(ValueError) as e:
        pysprinter.Client(server=daemon.url, token=secret + "\n").run(job + "::ident", 1)
    assert secret not in str(e.value) and "line break" in str(e.value)


def test_logs_errors_are_api_errors_like_the_others(daemon):
    """logs() of a run that does not exist: APIError(404, "not_found",
    "run not found") as every other call raises it. Before, code "http"
    and the raw JSON body as the message."""
    c = client(daemon)
    for follow in (False, True):
        with pytest.raises(pysprinter.APIError) as e:
            list(c.logs("rnosuchrun", follow=follow))
        assert (e.value.status, e.value.code, e.value.message) == (404, "not_found", "run not found")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2 ** 64, -2 ** 63 - 1, [1, {"a": float("-inf")}]])
def test_argument_json_cannot_carry_is_refused_before_sending(daemon, job, value):
    """NaN, an infinity or an int beyond 64 bits as an argument: a
    ValueError naming the argument before anything is sent. Before, the
    client sent invalid JSON and raised the daemon's APIError 400
    "invalid JSON at line 1 column 503: invalid token near 'NaN'"."""
    c = client(daemon)
    with pytest.raises(ValueError) as e:
        c.run(job + "::ident", value)
    assert not isinstance(e.value, pysprinter.APIError)
    assert "argument 1" in str(e.value)
    with pytest.raises(ValueError) as e:
        c.invoke("ident", x=value)
    assert "argument 'x'" in str(e.value)


def test_repr_warning_points_at_the_callers_line(daemon, job):
    """The UserWarning of a result with no JSON view names the user's own
    line, where `warnings` shows it and filters by module. Before, it
    named a line of pysprinter/client.py."""
    c = client(daemon)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert c.run(job + "::big") == "18446744073709551616"
        assert c.invoke("ident", 1) == 1
    assert [x.filename for x in w] == [__file__]


# ---- a submitted run: wait for it, look at it, cancel it ------------------------

def test_submitted_run_can_be_waited_for_shown_listed_and_cancelled(daemon, job):
    """submit() returns a run object; the client can wait for its value
    (Modal's FunctionCall.get(), Ray's ray.get()), show it, list it and
    cancel it, as the CLI's show, ps and cancel do. Before, it had no
    method for any of these: a submitted run's value could not be had
    through the client."""
    c = client(daemon)
    quick = c.submit(job + "::ident", {"n": [1, None, "\u00e9"]})
    assert c.wait(quick) == {"n": [1, None, "\u00e9"]}
    assert c.wait(quick["id"]) == {"n": [1, None, "\u00e9"]}
    assert c.get(quick["id"])["status"] == "succeeded"
    failing = c.submit(job + "::boom", 4)
    with pytest.raises(pysprinter.RunError) as e:
        c.wait(failing)
    assert (e.value.status, e.value.type, e.value.message) == ("failed", "ValueError", "bad 4")
    slow = c.submit(job + "::sleepy", 60)
    ended = c.cancel(slow)
    daemon.wait_status(slow["id"], ["cancelled"])
    assert ended["id"] == slow["id"]
    with pytest.raises(pysprinter.RunError) as e:
        c.wait(slow)
    assert e.value.status == "cancelled"
    assert slow["id"] in [r["id"] for r in c.runs(status="cancelled")]
    assert [r["id"] for r in c.runs(limit=3)] == [slow["id"], failing["id"], quick["id"]]
    assert [r["id"] for r in c.runs(limit=2, before=slow)] == [failing["id"], quick["id"]]   # the next page
    with pytest.raises(pysprinter.APIError) as e:
        c.cancel(quick)                              # it had ended: 409, as the API says
    assert e.value.status == 409


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt for the test, as at a terminal: a
    pytest started in the background (`cmd &` in a script: SIGINT ignored,
    and Python then installs no handler) would ignore the test's Ctrl-C."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def interrupt_when(d, cond):
    """Sends this process SIGINT (Ctrl-C) from a thread once cond(runs of
    daemon d) holds; the main thread's call sees KeyboardInterrupt (with
    the ctrl_c_raises fixture)."""
    def look():
        try:
            return cond(d.call("GET", "/v1/runs?limit=20")[1]["runs"])
        except (OSError, KeyError, TypeError):
            return False  # a look that failed (a loaded machine) is taken again, not the watcher's end

    def watch():
        daemonlib.wait_for(look, "runs to start", 120)
        os.kill(os.getpid(), signal.SIGINT)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_ctrl_c_in_run_cancels_the_run(daemon, tmp_path, ctrl_c_raises):
    """Ctrl-C in run() cancels the run, as the CLI's Ctrl-C does, also once
    the client waits for it in steps (a run longer than its timeout)."""
    (tmp_path / "ctrlc.py").write_text(JOB)
    c = client(daemon, timeout=2)
    t = interrupt_when(daemon, lambda runs: any(r["filename"] == "ctrlc.py" and r["status"] == "running"
                                                for r in runs))
    with pytest.raises(KeyboardInterrupt):
        c.run(str(tmp_path / "ctrlc.py") + "::sleepy", 60)
    t.join()
    run = [r for r in daemon.call("GET", "/v1/runs?limit=20")[1]["runs"] if r["filename"] == "ctrlc.py"][0]
    assert daemon.wait_status(run["id"], ["cancelled", "succeeded"])["status"] == "cancelled"


def test_ctrl_c_in_map_cancels_the_calls_in_flight(daemon, tmp_path, ctrl_c_raises):
    """Ctrl-C in map(): no call starts after it and the calls in flight are
    cancelled, as the CLI's map does. Before, map() went on waiting for
    the running calls (Ctrl-C answered only when they ended) and they ran
    to their end."""
    (tmp_path / "mapc.py").write_text(JOB)
    c = client(daemon)
    t = interrupt_when(daemon, lambda runs: sum(r["filename"] == "mapc.py" and r["status"] == "running"
                                                for r in runs) == 2)
    with pytest.raises(KeyboardInterrupt):
        c.map(str(tmp_path / "mapc.py") + "::sleepy", [60] * 5, concurrency=2)
    t.join()
    runs = [r for r in daemon.call("GET", "/v1/runs?limit=20")[1]["runs"] if r["filename"] == "mapc.py"]
    assert len(runs) == 2
    assert [daemon.wait_status(r["id"], ["cancelled", "succeeded"])["status"] for r in runs] == ["cancelled"] * 2


def test_map_refuses_an_item_json_cannot_carry_before_any_call(daemon, tmp_path):
    (tmp_path / "mapnan.py").write_text(JOB)
    c = client(daemon)
    with pytest.raises(ValueError, match="argument 1"):
        c.map(str(tmp_path / "mapnan.py") + "::ident", [1, 2, float("nan")])
    assert not [r for r in daemon.call("GET", "/v1/runs?limit=20")[1]["runs"] if r["filename"] == "mapnan.py"]


# ---- large payloads ---------------------------------------------------------------

def test_body_over_the_daemons_limit_is_its_413(daemon, job):
    """A body over the daemon's 12 MiB limit: the daemon answers 413 as soon
    as it reads the length and closes; the client reads that answer.
    Before, URLError "Connection reset by peer" (the send failed first)."""
    c = client(daemon)
    with pytest.raises(pysprinter.APIError) as e:
        c.run(job + "::ident", "x" * 13_000_000)
    assert (e.value.status, e.value.code) == (413, "payload_too_large")
    assert c.run(job + "::ident", "small") == "small"      # the client goes on


# ---- the CLI's run and deploy options ---------------------------------------------

def test_options_carry_a_runs_datasets_and_limits(daemon, job):
    """c.options(data=..., limits=..., env=...) gives runs and invokes the
    CLI's --data, --timeout, --env (Ray's f.options()); deploy() takes the
    deploy's fields as keywords. Before, neither existed: a run through the
    client could not see a dataset (data_path() raised KeyError), have a
    lower limit or an environment variable, and deploy() could not set a
    description or env."""
    st, _, body = daemon.request("PUT", "/v1/data/words?filename=words.txt", raw=b"alpha beta\n",
                                 headers={"Content-Type": "application/octet-stream"})
    assert st in (200, 201), body
    c = client(daemon)
    with pytest.raises(pysprinter.RunError) as e:
        c.run(job + "::words")
    assert e.value.type == "KeyError"
    with_words = c.options(data=["words"])
    assert with_words.run(job + "::words") == "alpha beta\n"
    assert with_words.map(job + "::words", ["words", "words"]) == ["alpha beta\n"] * 2
    assert c.options(env={"GREETING": "hi"}).run(job + "::getenv", "GREETING") == "hi"
    with pytest.raises(pysprinter.RunError) as e:
        c.options(limits={"timeout_ms": 1000}).run(job + "::sleepy", 60)
    assert e.value.status == "killed"
    rec = c.deploy("words", job + "::words", description="reads a dataset", env={"GREETING": "hi"})
    assert rec["description"] == "reads a dataset"
    assert with_words.invoke("words") == "alpha beta\n"
    with pytest.raises(TypeError, match="env"):
        c.options(env={"A": "1"}).invoke("words")       # an invoke takes no env: said before sending
    with pytest.raises(TypeError, match="bogus"):
        c.options(bogus=1)


def test_run_error_carries_the_run_id_and_exit_code(daemon, job):
    """RunError has the run's id and the CLI's exit code for it (1 raised,
    3 invalid, 5 killed), beside its type, message and traceback; result()
    of a run not ended yet says so instead of raising RunError for a run
    that has not failed; logs() takes the run object as wait() does."""
    c = client(daemon)
    with pytest.raises(pysprinter.RunError) as e:
        c.run(job + "::boom", 2)
    assert e.value.run_id == e.value.run["id"] and e.value.exit_code == 1
    assert "to stderr" in "".join(c.logs(e.value.run_id, follow=False))
    with pytest.raises(pysprinter.RunError) as e:
        c.run(job + "::ident", 1, 2)                        # too many arguments: invalid
    assert (e.value.status, e.value.exit_code) == ("invalid", 3)
    run = c.submit(job + "::sleepy", 0.5)
    with pytest.raises(ValueError, match="wait"):
        c.result(run)
    assert "".join(c.logs(run)) == "sleeping\n"
    assert c.wait(run) == 0.5


def test_server_and_token_from_the_clis_config_file(daemon, job, tmp_path, monkeypatch):
    """Client() with no arguments finds the server and token where the CLI
    does: the environment, else ~/.config/pysprinter/config (boto3 reads
    ~/.aws/config, Modal ~/.modal.toml). Before, a machine set up for the
    CLI by its config file got ValueError "no server"."""
    monkeypatch.delenv("PYSPRINTER_SERVER", raising=False)
    monkeypatch.delenv("PYSPRINTER_TOKEN", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".config" / "pysprinter").mkdir(parents=True)
    (tmp_path / ".config" / "pysprinter" / "config").write_text(
        f"# the CLI's settings\nserver = {daemon.url}/\ntoken = {daemonlib.TOKENS['alice']}\n")
    assert pysprinter.Client().run(job + "::ident", 8) == 8
    monkeypatch.setenv("PYSPRINTER_TOKEN", "not-a-token")          # the environment comes first
    with pytest.raises(pysprinter.APIError) as e:
        pysprinter.Client().run(job + "::ident", 8)
    assert e.value.status == 401


def test_functions_secrets_and_datasets_verbs(daemon, job, tmp_path):
    """The CLI's functions, secret and data verbs have their counterparts
    (boto3's list_functions/delete_function, Modal's Secret and Volume).
    Before, the client had none: a program could deploy a function but not
    list or delete it, and could not set a secret or put a dataset its runs
    then read."""
    c = client(daemon)
    c.deploy("tmpfn", job + "::ident")
    c.deploy("tmpfn", job + "::ident")
    assert "tmpfn" in [f["name"] for f in c.functions()]
    assert c.function("tmpfn")["versions"] == [1, 2] and c.function("tmpfn", version=1)["version"] == 1
    assert c.delete_function("tmpfn")["deleted"] is True
    with pytest.raises(pysprinter.APIError) as e:
        c.invoke("tmpfn", 1)
    assert e.value.status == 404
    c.set_secret("API_KEY", "s3cr\u00e9t")
    assert "API_KEY" in [s["name"] for s in c.secrets()]
    assert c.options(secrets=["API_KEY"]).run(job + "::getenv", "API_KEY") == "s3cr\u00e9t"
    c.delete_secret("API_KEY")
    assert "API_KEY" not in [s["name"] for s in c.secrets()]
    blob = bytes(range(256)) * 100
    c.put_data("blob", blob, filename="blob.bin")
    (tmp_path / "words.txt").write_text("one two\n")
    c.put_data("pyc-words", tmp_path / "words.txt")
    assert c.get_data("blob") == blob
    assert c.options(data=["pyc-words"]).run(job + "::words", "pyc-words") == "one two\n"
    assert c.dataset("pyc-words")["filename"] == "words.txt"
    assert {"blob", "pyc-words"} <= {d["name"] for d in c.datasets()}
    c.delete_data("blob")
    with pytest.raises(pysprinter.APIError) as e:
        c.get_data("blob")
    assert e.value.status == 404


def square_in_a_worker(args):
    c, x = args
    return c.invoke("ident", x * x)


def test_client_goes_to_a_spawned_process_pool(daemon):
    """A Client passed to a process pool under the spawn start method
    (macOS's default, and what multiprocessing warns to use with threads)
    pickles as its settings and connects again there; its repr shows no
    token. Before: TypeError "cannot pickle '_thread.lock' object"."""
    import concurrent.futures
    import multiprocessing
    c = client(daemon).options(limits={"timeout_ms": 60000})
    assert daemonlib.TOKENS["alice"] not in repr(c)
    assert c.invoke("ident", 2) == 2
    import pickle
    assert pickle.loads(pickle.dumps(c)).invoke("ident", 3) == 3
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(square_in_a_worker, [(c, i) for i in range(6)])) == [i * i for i in range(6)]


@pytest.mark.parametrize("bad", [0, -1, "5", True])
def test_timeout_that_is_no_timeout_is_refused_when_made(daemon, bad):
    """timeout=0 made the sockets non-blocking (URLError "Operation now in
    progress" at the first call), "5" raised TypeError there: a ValueError
    when the Client is made, as a bad server URL is."""
    with pytest.raises(ValueError, match="timeout"):
        client(daemon, timeout=bad)


def test_follow_stream_outlives_a_short_client_timeout(daemon, job):
    """logs(follow=True) of a run silent longer than the client's timeout:
    the daemon's keep-alives (every 5 s) hold the stream, and the output
    comes. Before, with timeout=2 the stream raised TimeoutError in the
    run's first silence."""
    c = client(daemon, timeout=2)
    run = c.submit(job + "::sleepy", 7)
    assert "".join(c.logs(run)) == "sleeping\n"
    assert c.wait(run) == 7


def test_source_file_goes_as_its_bytes_like_the_clis(daemon, tmp_path, cli):
    """The client sends a file's bytes as the CLI does: a CRLF file keeps
    its CRs (the deploy's source_sha256 is the file's, the CLI's), and a
    file that is not UTF-8 is the run's validation error FILE:LINE:COL, exit
    code 3, as `pysprinter run` says. Before, the file was read in text
    mode (another sha256 than the CLI's deploy of the same file) and a
    byte that is not UTF-8 raised UnicodeDecodeError naming no file."""
    import hashlib
    crlf = tmp_path / "crlf.py"
    crlf.write_bytes(b"@requirements({})\r\ndef f(x):\r\n    return x\r\n")
    c = client(daemon)
    rec = c.deploy("crlf", str(crlf))
    assert rec["source_sha256"] == hashlib.sha256(crlf.read_bytes()).hexdigest()
    p = cli("deploy", str(crlf), "--name", "crlf", "--server", daemon.url, "--token", daemonlib.TOKENS["alice"],
            "--json", check=0)
    assert __import__("json").loads(p.stdout)["source_sha256"] == rec["source_sha256"]
    bad = tmp_path / "latin.py"
    bad.write_bytes(b"@requirements({})\ndef f(x):\n    # caf\xe9\n    return x\n")
    with pytest.raises(pysprinter.RunError) as e:
        c.run(str(bad), 1)
    assert (e.value.status, e.value.exit_code) == ("invalid", 3)
    p = cli("run", str(bad), "-a", "1", "--server", daemon.url, "--token", daemonlib.TOKENS["alice"], check=3)
    assert e.value.message == "latin.py:3:10: not valid UTF-8"
    assert p.stderr == "latin.py:3:10: ValidationError: not valid UTF-8\n"


def test_invoke_without_waiting(daemon):
    """submit_invoke() is `pysprinter invoke NAME --detach` (a Lambda Event
    invocation, Modal's .spawn()): the run object at once, its value by
    wait(). Before, a deployed function could only be invoked and waited
    for."""
    c = client(daemon)
    runs = [c.submit_invoke("ident", i) for i in range(4)]
    assert all(r["status"] in ("queued", "running", "succeeded") for r in runs)
    assert [c.wait(r) for r in runs] == [0, 1, 2, 3]
    assert c.submit_invoke("ident::1", x="v")["id"]


def test_deploy_warnings_are_python_warnings(daemon, tmp_path):
    """What CPython's parser said of a deployed file (the CLI prints it on
    stderr) is a UserWarning naming the caller's line. Before, it was only
    the record's "warnings" field: `x is 1` deployed without a word."""
    f = tmp_path / "warn.py"
    f.write_text('@requirements({})\ndef f(x):\n    return x is 1\n')
    c = client(daemon)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c.deploy("warned", str(f))
    assert [(x.filename, x.category) for x in w] == [(__file__, UserWarning)]
    assert 'warn.py:3: SyntaxWarning: "is" with a literal' in str(w[0].message)
    clean = tmp_path / "clean.py"
    clean.write_text('@requirements({})\ndef f(x):\n    return x == 1\n')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        c.deploy("warned", str(clean))                  # nothing to say: no warning
        c.delete_function("warned")
    assert w == []


def test_wait_survives_a_daemon_restart(tmp_path, job):
    """A daemon killed while a run is waited for runs it again at its next
    start (docs/api.md "Delivery"); the client's wait asks again until it
    answers and returns the value. Before, wait() (and run() past its
    first answer) raised the refused connection, and the run's value was
    the caller's to go and find."""
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path)).start()
    try:
        c = client(d, timeout=30)
        run = c.submit(job + "::sleepy", 3)
        d.wait_status(run["id"], ["running"])
        got = []
        t = threading.Thread(target=lambda: got.append(c.wait(run)), daemon=True)
        t.start()
        d.kill9()
        d.start(port=d.port)
        t.join(120)
        assert got == [3]
    finally:
        d.stop()


def test_refusals_are_typed_by_status(daemon, job):
    """A refusal's class says which (boto3's error codes, Modal's AuthError,
    NotFoundError): a token the daemon does not know is an AuthError whose
    message says where a token comes from, as the CLI's 401 does; a
    read-only token's run a ForbiddenError; a missing function a
    NotFoundError; cancelling an ended run a ConflictError. Each is an
    APIError with its .status, as before."""
    with pytest.raises(pysprinter.AuthError) as e:
        pysprinter.Client(server=daemon.url, token="not-a-token").run(job + "::ident", 1)
    assert e.value.status == 401 and "PYSPRINTER_TOKEN" in str(e.value)
    with pytest.raises(pysprinter.ForbiddenError) as e:
        pysprinter.Client(server=daemon.url, token=daemonlib.TOKENS["reader"]).run(job + "::ident", 1)
    assert e.value.status == 403
    c = client(daemon)
    with pytest.raises(pysprinter.NotFoundError):
        c.invoke("no-such-function", 1)
    run = c.submit(job + "::ident", 1)
    c.wait(run)
    with pytest.raises(pysprinter.ConflictError):
        c.cancel(run)
    assert issubclass(pysprinter.NotFoundError, pysprinter.APIError)
