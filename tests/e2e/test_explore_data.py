"""A hostile, experienced user against secrets, files a run writes, result
types, datasets and pipelines (helper "data"): each test is a case the
earlier rounds' tests (test_outputs.py, test_secrets.py, test_data*.py,
test_dag*.py, test_results.py, test_explore_*.py) do not cover, asserting
what a user or an operator would check."""
import json
import subprocess

import pytest

from conftest import CLI, same, sandboxed, value
from daemonlib import TOKENS, Daemon


def outputs_left(home):
    root = home / "outputs"
    return [str(x) for x in root.rglob("*")] if root.exists() else []


# ---- /out: what its cap counts ----

DEEP_FILL = """\
import os, sys, time
from pysprinter import output_dir

def deep(levels: int = 300, files: int = 6, mb: int = 20):
    # Below the depth the engine's measure walked into, every byte was
    # invisible to the cap: only RLIMIT_FSIZE bounded each file.
    os.chdir(output_dir())
    for _ in range(levels):
        os.mkdir("d")
        os.chdir("d")
    for i in range(files):
        with open(f"f{i}", "wb") as f:
            for _ in range(mb):
                f.write(b"x" * (1 << 20))
        print(f"wrote {(i + 1) * mb} MiB", file=sys.stderr, flush=True)
        time.sleep(0.3)
    time.sleep(1)
    return "not stopped"
"""


def test_bytes_nested_below_the_measured_depth_still_count_against_the_out_cap(cli, home):
    """/out is capped at 1 MiB here. The measure of the output dir walked
    256 levels and no further, so a run that nested 300 directories and
    wrote there was never seen: it wrote 120 MiB past a 1 MiB cap and
    succeeded (as much of the host's disk as its time limit allowed). A
    tree deeper than the measure walks is now over the limit itself: the
    run is killed (exit 5, OutputDirLimit) before it writes there."""
    p = sandboxed(cli, "deep.py", DEEP_FILL, "--timeout", "120", env={"PYSPRINTER_MAX_OUT_BYTES": "1M"})
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "not stopped" not in p.stdout
    assert "output dir limit (256 levels)" in p.stderr, p.stderr[-2000:]
    assert outputs_left(home) == []


MANY = """\
import sys, time
from pysprinter import output_dir

def many(n: int, nap: float = 0):
    d = output_dir()
    for i in range(n):
        open(f"{d}/{i}", "wb").close()
    print(f"made {n}", file=sys.stderr, flush=True)
    time.sleep(nap)
    return n
"""


@pytest.mark.parametrize("nap", [0, 3])
def test_empty_files_past_the_out_entry_cap_kill_the_run(cli, home, nap):
    """Empty files and directories count no bytes: a run could leave
    millions of them in /out (a host's inodes are finite: ext4 has a fixed
    number, and the run's removal takes minutes), whatever the byte cap.
    Entries are now capped too (PYSPRINTER_MAX_OUT_FILES, here 1000):
    past it the run is killed as the byte cap kills it, whether it is
    still running (nap 3 s: the watch sees it) or already returned."""
    p = sandboxed(cli, "many.py", MANY, "--n", "3000", "--nap", nap, "--timeout", "120",
                  env={"PYSPRINTER_MAX_OUT_FILES": "1000"})
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr[-2000:])
    assert "output dir limit (1000 entries)" in p.stderr, p.stderr[-2000:]
    assert "PYSPRINTER_MAX_OUT_FILES" in p.stderr and "data.max_output_files" in p.stderr
    assert outputs_left(home) == []
    # At the cap is within it.
    assert value(sandboxed(cli, "many.py", MANY, "--n", "1000", "--json",
                           env={"PYSPRINTER_MAX_OUT_FILES": "1000"})) == 1000


def test_the_out_entry_cap_is_in_the_daemons_data_config(tmp_path):
    """The daemon's operator sets it beside data.max_output_bytes."""
    from daemonlib import Daemon, sandbox_mode
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path), config_extra="data:\n  max_output_files: 500\n")
    if d.sandbox != "full":
        pytest.skip("needs the full sandbox")
    with d.serving():
        st, b = d.run(MANY + "\n", args=[2000])
        assert st == 200, b
        assert b["status"] == "killed" and b["error"]["type"] == "OutputDirLimit", b
        assert "output dir limit (500 entries)" in b["error"]["message"], b
        st, b = d.run(MANY + "\n", args=[500])
        assert st == 200 and b["status"] == "succeeded", b


# ---- trees a dataset cannot hold: each reason in its own words ----

@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-data")).serving() as d:
        yield d


def test_a_tree_too_deep_for_a_dataset_is_not_called_a_symlink(both, tmp_path):
    """A dataset holds 64 levels of directories. A deeper tree was refused
    as "symbolic links are not supported in datasets" on both paths,
    though it held no symlink: the user looked for one that was not
    there."""
    top = tmp_path / "deep"
    p = top
    for _ in range(70):
        p = p / "a"
    p.mkdir(parents=True)
    (p / "f").write_text("x")
    r = same(*both("data", "put", "explore-deep", top))
    assert r.returncode == 2, r
    assert "symbolic link" not in r.stderr, r.stderr
    assert "nested deeper than 64 directories" in r.stderr, r.stderr
    assert f"data put: {top}: " in r.stderr, r.stderr


def test_a_name_with_a_newline_is_refused_in_the_same_words_on_both_paths(both, tmp_path):
    """The hash listing is one line per entry, so a name with a newline
    cannot be stored. Embedded said "cannot copy a<newline>b: Invalid
    argument"; through a daemon "the archive member ... is an absolute path
    or leads out of the directory ('..')", which it was not."""
    top = tmp_path / "nl"
    top.mkdir()
    (top / "ok").write_text("x")
    (top / "a\nb").write_text("x")
    r = same(*both("data", "put", "explore-nl", top))
    assert r.returncode == 2, r
    assert f"data put: {top}: a name holding a newline cannot be stored in a dataset (a\nb)" in r.stderr, r.stderr
    r = same(*both("data", "ls", "explore-nl"))
    assert r.returncode == 2 and "no dataset named 'explore-nl'" in r.stderr


def test_the_daemon_names_a_newline_in_an_uploaded_tar_for_what_it_is(daemon):
    """A tar sent to PUT /v1/data by another client: the member with a
    newline is refused as such, not as a path leading out."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("a\nb")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    st, _, body = daemon.request("PUT", "/v1/data/explore-tar-nl", raw=buf.getvalue(),
                                 headers={"Content-Type": "application/x-tar"})
    assert st == 400, (st, body)
    assert b"newline" in body and b"leads out" not in body, body


def test_the_daemon_refuses_a_tar_too_deep_by_its_member(daemon):
    """A tar of 70 nested directories was unpacked whole and then refused
    as "cannot hash the staged content: Too many levels of symbolic
    links"; the member that goes too deep is named now."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("/".join(["a"] * 70) + "/f")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    st, _, body = daemon.request("PUT", "/v1/data/explore-tar-deep", raw=buf.getvalue(),
                                 headers={"Content-Type": "application/x-tar"})
    assert st == 400, (st, body)
    assert b"nested deeper than 64 directories" in body and b"symbolic" not in body, body
    st, _, body = daemon.request("GET", "/v1/data/explore-tar-deep")
    assert st == 404, (st, body)
    # 64 levels are a dataset.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("/".join(["a"] * 64) + "/f")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    st, _, body = daemon.request("PUT", "/v1/data/explore-tar-deep", raw=buf.getvalue(),
                                 headers={"Content-Type": "application/x-tar"})
    assert st in (200, 201), (st, body)


NEWLINE_OUT = """\
from pysprinter import output_dir

def o():
    open(output_dir() + "/a\\nb", "w").write("x")
    return 1
"""

DEEP_OUT = """\
import os
from pysprinter import output_dir

def o(n: int = 70):
    os.chdir(output_dir())
    for _ in range(n):
        os.mkdir("a")
        os.chdir("a")
    open("f", "w").write("x")
    return n
"""


@pytest.mark.parametrize("source, words", [
    (NEWLINE_OUT, "OutputError: storing output_dir(): a name holding a newline cannot be stored in a dataset (a\nb)"),
    (DEEP_OUT, "OutputError: storing output_dir(): nested deeper than 64 directories (a/a/a/"),
])
def test_a_tree_in_out_a_dataset_cannot_hold_is_the_functions_error(cli, both, source, words):
    """What the function left in /out is its own doing: like a symlink
    there, a name with a newline or a tree too deep fails the run with exit
    1 and OutputError. The newline ended the run as an internal error (exit
    7, "cannot copy a<newline>b: Invalid argument"), the depth as "symbolic
    links are not supported"."""
    cli.write("o.py", source)
    local, remote = both("run", "o.py", "--output-data", "explore-out-refused")
    for p in (local, remote):
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert words in p.stderr, p.stderr
        assert "symbolic link" not in p.stderr and "Invalid argument" not in p.stderr, p.stderr


# ---- results: the 16 MiB limit is on the value's JSON ----

QUOTED = """\
def quoted(kind: str = "strings", mib: int = 11):
    # JSON whose text is mostly quotes or backslashes: escaped again inside
    # the runner's answer, it took up to twice its size there.
    if kind == "strings":
        return ["a"] * ((mib << 20) // 4)
    if kind == "backslashes":
        return "\\\\" * ((mib << 20) // 2)
    return "x" * (mib << 20)
"""


def json_size(value):
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.mark.parametrize("kind", ["strings", "backslashes"])
def test_a_result_under_16_mib_as_json_is_returned_whatever_its_characters(cli, both, kind):
    """A list of 2.9 million one-letter strings is 11 MiB as JSON, under
    the documented 16 MiB; it ended the run `killed` (exit 5, "larger than
    16 MiB as JSON") because the limit was applied to the runner's answer,
    where every quote and backslash of the JSON is escaped once more. The
    limit is now on the value's JSON, embedded and through a daemon."""
    cli.write("q.py", QUOTED)
    local, remote = both("run", "q.py", "--kind", kind, "--json")
    for p in (local, remote):
        assert p.returncode == 0, (p.returncode, p.stderr[-500:])
    assert local.stdout == remote.stdout
    got = json.loads(local.stdout)
    assert 10 << 20 < json_size(got) < 16 << 20
    # Past 16 MiB is still the limit.
    local, remote = both("run", "q.py", "--kind", kind, "--mib", "17")
    for p in (local, remote):
        assert p.returncode == 5 and "result limit" in p.stderr, (p.returncode, p.stderr[-500:])


@pytest.mark.parametrize("kind", ["strings", "backslashes"])
def test_a_deployed_functions_result_under_16_mib_as_json_is_returned(daemon, kind):
    """The same through a warm instance's answer ("done")."""
    st, out = daemon.call("POST", "/v1/functions", {"name": "quoted", "source": QUOTED, "filename": "q.py"})
    assert st in (200, 201), out
    st, out = daemon.call("POST", "/v1/functions/quoted/invoke?wait=true", {"kwargs": {"kind": kind}})
    assert st == 200 and out["status"] == "succeeded", (st, out.get("error"))
    assert 10 << 20 < json_size(out["result"]) < 16 << 20
    st, out = daemon.call("POST", "/v1/functions/quoted/invoke?wait=true", {"kwargs": {"kind": kind, "mib": 17}})
    assert st == 200 and out["status"] == "killed" and out["error"]["type"] == "ResultLimit", out.get("error")


# ---- secret set at a terminal ----

def _secret_set_on_a_pty(cli, keys, wait=1.0, wrapper=()):
    """`secret set TTYK` with a terminal for stdin/stdout/stderr; keys are
    typed one after the other (an int is a signal sent instead: the pty is
    not the CLI's controlling terminal, so a typed ^C would not be one).
    -> (exit code, what the terminal showed, the terminal's ECHO flag after
    the CLI ended)."""
    import os
    import pty
    import select
    import termios
    import time
    fd, slave = pty.openpty()
    p = subprocess.Popen([*wrapper, str(CLI), "secret", "set", "TTYK"], cwd=cli.cwd, env=cli.env, stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    shown = b""

    def drain(until):
        nonlocal shown
        while True:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    shown += os.read(fd, 4096)
                except OSError:
                    return
            elif until():
                return
    try:
        deadline = time.time() + 30
        drain(lambda: b"TTYK" in shown or time.time() > deadline)
        for k in keys:
            if isinstance(k, int):
                p.send_signal(k)
            else:
                os.write(fd, k)
            t = time.time() + wait
            drain(lambda: time.time() > t)
        code = p.wait(timeout=30)
        drain(lambda: True)
        echo = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(slave)
        os.close(fd)
    return code, shown.decode(errors="replace"), echo


def test_a_secret_typed_at_a_terminal_is_not_shown(cli):
    """`secret set NAME` at a terminal prompted and echoed the value as it
    was typed: the secret stood on the screen (and in a screen recording,
    a shared tmux, the scrollback). Input is read with echo off, as
    `gh secret set`, `docker login` or ssh-keygen read theirs."""
    code, shown, echo = _secret_set_on_a_pty(cli, [b"hunter2\n", b"\x04"])
    assert code == 0, shown
    assert "hunter2" not in shown, shown
    assert "not shown" in shown and "secret TTYK set" in shown, shown
    assert echo, "the terminal was left without echo"
    cli.write("s.py", "import os\ndef f():\n    return os.environ['TTYK']\n")
    p = cli("run", "s.py", "--secret", "TTYK", "--json")
    assert p.returncode == 0 and json.loads(p.stdout) == "hunter2", (p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_ctrl_c_at_the_secret_prompt_gives_the_terminal_its_echo_back(cli, sigint):
    """Interrupted while echo is off, the CLI restores the terminal before
    it dies as the signal says: a shell left without echo is unusable. Also
    when it was started with SIGINT ignored (a non-interactive shell's `cmd
    &`, where `kill -INT` still ends the CLI): the prompt then went back to
    waiting for good."""
    import signal
    wrapper = ("/bin/sh", "-c", 'trap "" INT; exec "$0" "$@"') if sigint == "ignored" else ()
    code, shown, echo = _secret_set_on_a_pty(cli, [b"hunt", signal.SIGINT], wrapper=wrapper)
    assert code != 0, shown
    assert "hunt" not in shown, shown
    assert echo, "the terminal was left without echo"
    p = cli("secret", "ls")
    assert "TTYK" not in p.stdout


# ---- a version number names one content for good ----

def test_a_removed_versions_number_is_not_given_to_new_content(both, tmp_path):
    """put a (v1), put b (v2), rm @2, put c: c was "version 2", so
    `NAME@2` pinned in a pipeline or a `run --data` silently read c where
    it had read b. Numbers go on from the highest the name ever had, also
    after the whole dataset was removed, embedded and through a daemon."""
    files = {}
    for k in "abc":
        files[k] = tmp_path / k
        files[k].write_text(k * 3)
    for step, want in (("a", "version 1"), ("b", "version 2")):
        for p in both("data", "put", "explore-nums", files[step], "--as", "f.txt"):
            assert p.returncode == 0 and want in p.stdout, (p.stdout, p.stderr)
    same(*both("data", "rm", "explore-nums@2"))
    for p in both("data", "put", "explore-nums", files["c"], "--as", "f.txt"):
        assert p.returncode == 0 and "version 3" in p.stdout, (p.stdout, p.stderr)
    r = same(*both("data", "get", "explore-nums@2"))
    assert r.returncode == 2 and "has no version 2" in r.stderr, r.stderr
    same(*both("data", "rm", "explore-nums"))
    for p in both("data", "put", "explore-nums", files["a"], "--as", "f.txt"):
        assert p.returncode == 0 and "version 4" in p.stdout, (p.stdout, p.stderr)


MAKE_READ = """\
import os
from pysprinter import output_dir, data_path

def make():
    with open(os.path.join(output_dir(), "p.txt"), "w") as f:
        f.write("made")
    return 1

def read():
    return open(os.path.join(data_path("explore-made"), "p.txt")).read()
"""

MAKE_READ_DAG = """\
tasks:
  make: {file: mr.py::make, outputs: explore-made}
  read: {file: mr.py::read, data: [explore-made]}
"""


def test_a_memoised_output_task_does_not_hand_on_another_contents_version(cli, tmp_path):
    """A memo hit of an `outputs:` task re-uses the version its run made,
    "if the dataset still has it". After `data rm NAME@1` and a `data put`
    of other content, that number was back with the other content: the
    task showed `cached` and its reader got the wrong files (a
    NotADirectoryError when the other content was one file)."""
    cli.write("mr.py", MAKE_READ)
    cli.write("mr.yaml", MAKE_READ_DAG)
    p = cli("dag", "run", "mr.yaml")
    assert p.returncode == 0 and p.stdout.strip() == "made", (p.stdout, p.stderr)
    assert cli("data", "rm", "explore-made@1").returncode == 0
    other = tmp_path / "other"  # a directory, as the task's output is (another kind is refused)
    other.mkdir()
    (other / "other.txt").write_text("not it")
    assert cli("data", "put", "explore-made", other).returncode == 0
    p = cli("dag", "run", "mr.yaml")
    assert p.returncode == 0 and p.stdout.strip() == "made", (p.stdout, p.stderr)
    assert "make: cached" not in p.stderr, p.stderr


# ---- what a run made unreadable in /out ----

LOCKED = """\
import os
from pysprinter import output_dir

def locked(mb: int = 0):
    d = output_dir()
    os.mkdir(d + "/locked")
    with open(d + "/locked/x", "wb") as f:
        f.write(b"x" * (mb << 20) if mb else b"x")
    with open(d + "/unreadable", "w") as f:
        f.write("y")
    os.chmod(d + "/unreadable", 0)
    os.chmod(d + "/locked", 0)
    return 1
"""


@pytest.fixture
def nobody(cli):
    """nobody(*args, env=) -> `pysprinter ARGS` run as uid 65534 (no
    CAP_DAC_OVERRIDE: the modes a run leaves then matter, as they do for a
    daemon that is not root) in a directory of its own outside pytest's
    (0700) tree, which also holds its PYSPRINTER_HOME (nobody.home) and
    locked.py. --sandbox=none in the tests: an unprivileged sandbox needs
    user namespaces this machine may not give."""
    import os
    import shutil
    import tempfile
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the CLI as another user")
    top = tempfile.mkdtemp(prefix="explore-data-nobody-")
    os.chmod(top, 0o777)
    home = os.path.join(top, "home")

    def _run(*args, env=None):
        e = {**cli.env, "PYSPRINTER_HOME": home, "HOME": top, **(env or {})}
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(CLI),
                               *map(str, args)], capture_output=True, text=True, env=e, cwd=top, timeout=120)
    with open(os.path.join(top, "locked.py"), "w") as f:
        f.write(LOCKED)
    os.chmod(os.path.join(top, "locked.py"), 0o644)
    _run.home = home
    try:
        yield _run
    finally:
        subprocess.run(["chmod", "-R", "u+rwX", top], check=False)
        shutil.rmtree(top, ignore_errors=True)


def outputs_empty(home):
    import os
    out = os.path.join(home, "outputs")
    return not os.path.exists(out) or os.listdir(out) == []


def test_what_a_run_made_unreadable_in_out_is_still_stored(nobody):
    """A run left a directory and a file of mode 000 in /out. Storing it
    (--output-data) failed as an internal error, exit 7, "cannot copy
    locked: Permission denied", wherever the collector has no
    CAP_DAC_OVERRIDE (a daemon that is not root, a user's CLI). The tree
    is the engine's own to consume: it is made readable to its owner
    first, and stored like any other."""
    p = nobody("run", "locked.py", "--sandbox=none", "--output-data", "locked")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    p = nobody("data", "ls", "locked", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)[0]["files"] == 2, (p.stdout, p.stderr)
    assert outputs_empty(nobody.home)


def test_bytes_in_a_directory_a_run_made_unreadable_count_against_the_out_cap(nobody):
    """The measure skipped a directory it could not open: 2 MiB behind a
    mode-000 directory passed a 1 MiB cap where the collector has no
    CAP_DAC_OVERRIDE."""
    p = nobody("run", "locked.py", "--mb", "2", "--sandbox=none", env={"PYSPRINTER_MAX_OUT_BYTES": "1M"})
    assert p.returncode == 5, (p.returncode, p.stdout, p.stderr)
    assert "output dir limit (1 MiB)" in p.stderr, p.stderr
    assert outputs_empty(nobody.home)


def test_a_user_who_is_not_root_can_put_get_and_remove_a_dataset(nobody):
    """Every `data put` of a user who is not root failed: "cannot move the
    content into …/objects/HASH: Permission denied" (exit 6). The staged
    tree was made read-only before its rename, and renaming a directory to
    another parent needs write access to it (its ".." changes), which only
    root's CAP_DAC_OVERRIDE gave. (The suite runs as root: nothing saw it.)"""
    import os
    top = os.path.dirname(nobody.home)
    src = os.path.join(top, "tree")
    os.makedirs(os.path.join(src, "sub"))
    for rel, text in (("a.txt", "a"), ("sub/b.txt", "b")):
        with open(os.path.join(src, rel), "w") as f:
            f.write(text)
    subprocess.run(["chmod", "-R", "a+rwX", src], check=True)
    p = nobody("data", "put", "tree", src)
    assert p.returncode == 0 and "version 1" in p.stdout, (p.returncode, p.stdout, p.stderr)
    p = nobody("data", "put", "one", os.path.join(src, "a.txt"))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    p = nobody("data", "get", "one")
    assert p.returncode == 0 and p.stdout == "a", (p.returncode, p.stdout, p.stderr)
    out = os.path.join(top, "copy")
    p = nobody("data", "get", "tree", "-o", out)
    assert p.returncode == 0 and open(os.path.join(out, "sub", "b.txt")).read() == "b", (p.returncode, p.stderr)
    for name in ("tree", "one"):
        p = nobody("data", "rm", name)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    p = nobody("gc")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)


def test_a_dataset_a_user_who_is_not_root_removes_leaves_no_content(nobody):
    """`data rm` deletes the content no version references: it moves the
    object to the staging directory (another parent) first, which failed
    silently without write access to the read-only object, so a user who
    is not root kept every removed dataset's bytes on disk."""
    import os
    top = os.path.dirname(nobody.home)
    src = os.path.join(top, "gone")
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "sub", "f"), "w") as f:
        f.write("bytes")
    subprocess.run(["chmod", "-R", "a+rwX", src], check=True)
    p = nobody("data", "put", "gone", src)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    objects = os.path.join(nobody.home, "data", "objects")
    assert len(os.listdir(objects)) == 1
    p = nobody("data", "rm", "gone")
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert os.listdir(objects) == []


def test_a_file_the_user_cannot_read_is_a_usage_error_for_data_put(nobody, daemon):
    """`data put x FILE` of a file the user may not read exited 6 ("server
    unreachable or token refused") embedded, where `run FILE` and the same
    put against a daemon say exit 2."""
    import os
    import tempfile
    d = tempfile.mkdtemp(prefix="explore-data-private-")
    try:
        path = os.path.join(d, "f.txt")
        with open(path, "w") as f:
            f.write("private")
        os.chmod(path, 0o600)
        local = nobody("data", "put", "private", path)
        remote = nobody("data", "put", "private", path, "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        for p in (local, remote):
            assert p.returncode == 2, (p.returncode, p.stderr)
            assert f"data put: cannot read {path}: Permission denied" in p.stderr, p.stderr
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("as_name", ["a\nb.txt", "tab\there.txt"])
def test_a_file_name_with_a_control_character_is_refused_on_both_paths(both, tmp_path, as_name):
    """`data put x FILE --as 'a<newline>b'` stored the file under that name
    embedded (a newline, which the dataset hash's line-based listing
    refuses inside a directory), while through a daemon the query string
    was refused ("the request query holds a control character"). One
    rule, checked before either backend is asked; a source file so named
    is refused the same way."""
    src = tmp_path / "plain.txt"
    src.write_text("x")
    r = same(*both("data", "put", "explore-ctl", src, "--as", as_name))
    assert r.returncode == 2 and "control character" in r.stderr, r.stderr
    odd = tmp_path / as_name
    odd.write_text("x")
    r = same(*both("data", "put", "explore-ctl", odd))
    assert r.returncode == 2 and "control character" in r.stderr and "--as FILENAME" in r.stderr, r.stderr
    r = same(*both("data", "ls", "explore-ctl"))
    assert r.returncode == 2 and "no dataset named 'explore-ctl'" in r.stderr


def test_data_get_to_dash_writes_to_stdout(cli, both, tmp_path):
    """`data get NAME -o -` wrote a file named "-" in the current
    directory, where curl, tar and this CLI's own `map` read "-" as the
    standard stream: it is stdout, as without -o."""
    src = tmp_path / "words.txt"
    src.write_text("hello\n")
    for p in both("data", "put", "explore-dash", src):
        assert p.returncode == 0, p.stderr
    r = same(*both("data", "get", "explore-dash", "-o", "-"))
    assert r.returncode == 0 and r.stdout == "hello\n", (r.stdout, r.stderr)
    assert not (cli.cwd / "-").exists()
