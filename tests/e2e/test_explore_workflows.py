"""Workflows a user drives both embedded and against a daemon (`--server`):
datasets, secrets, schedules. The promise checked here is the docs' one:
the same words and the same exit code on both paths, and a failed command
leaves the user's files as they were."""
import pytest

from conftest import same, sandbox_args
from daemonlib import TOKENS, Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-workflows")).serving() as d:
        yield d


# ---- datasets -----------------------------------------------------------

def test_data_get_of_a_missing_dataset_leaves_the_output_file_alone(cli, both, tmp_path):
    """Against a daemon, a refused `data get -o FILE` used to rename its
    empty download over FILE: the user's file was gone."""
    for ref in ("explore-missing", "explore-missing@3"):
        keep = tmp_path / "keep.txt"
        keep.write_text("precious\n")
        local, remote = both("data", "get", ref, "-o", keep)
        r = same(local, remote)
        assert r.returncode == 2 and "no dataset named 'explore-missing'" in r.stderr
        assert keep.read_text() == "precious\n"
        fresh = tmp_path / "fresh.txt"
        same(*both("data", "get", ref, "-o", fresh))
        assert not fresh.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if ".pysprinter-" in p.name) == []


def test_data_get_of_a_file_dataset_into_a_directory_same_on_both_paths(cli, both, daemon, tmp_path):
    """`data get NAME -o DIR` of a single-file dataset writes DIR/FILENAME
    embedded; against a daemon it was exit 7, "cannot write DIR: Is a
    directory". And the file a daemon's download left was mode 0600 where
    embedded writes 0644 (less the umask)."""
    src = tmp_path / "greeting.txt"
    src.write_text("hello\n")
    local, remote = both("data", "put", "explore-into", src, "--as", "hi.txt")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    outs = []
    for server in (None, ["--server", daemon.url]):
        d = tmp_path / ("out-remote" if server else "out-local")
        d.mkdir()
        r = cli("data", "get", "explore-into@1", "-o", d, *(server or []),
                env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        outs.append((r.returncode, r.stdout, r.stderr, sorted(p.name for p in d.iterdir())))
        assert r.returncode == 0, r.stderr
        assert (d / "hi.txt").read_text() == "hello\n"
        f = tmp_path / ("f-remote" if server else "f-local")
        r = cli("data", "get", "explore-into", "-o", f, *(server or []), env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        assert r.returncode == 0, r.stderr
        outs.append(oct(f.stat().st_mode & 0o777))
    assert outs[:2] == outs[2:]
    assert sorted(p.name for p in tmp_path.iterdir() if ".pysprinter-" in p.name) == []


@pytest.mark.parametrize("verb", [["ls"], ["get"], ["rm"]])
@pytest.mark.parametrize("ref", ["words@0", "words@", "words@1x", "a/b", ".."])
def test_data_bad_reference_same_words_on_both_paths(both, verb, ref):
    r = same(*both("data", *verb, ref))
    assert r.returncode == 2 and f"'{ref}' is not a dataset reference (NAME or NAME@VERSION)" in r.stderr


def test_data_ls_of_a_missing_version_same_words_on_both_paths(cli, both, tmp_path):
    """`data ls NAME@N` of a version that does not exist said "no dataset
    named 'NAME@N'" against a daemon: the dataset exists."""
    (tmp_path / "w.txt").write_text("hi\n")
    local, remote = both("data", "put", "explore-ls", tmp_path / "w.txt")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    r = same(*both("data", "ls", "explore-ls@7"))
    assert r.returncode == 2 and "dataset 'explore-ls' has no version 7" in r.stderr
    r = same(*both("data", "ls", "explore-nope"))
    assert r.returncode == 2 and "no dataset named 'explore-nope'" in r.stderr


# ---- secrets ------------------------------------------------------------

def test_secret_of_64_kib_piped_with_its_newline_is_accepted(both):
    """The trailing newline stdin drops is not part of the value: a 64 KiB
    value piped with `echo` is within the limit, one byte more is not."""
    value = "a" * (64 << 10)
    r = same(*both("secret", "set", "EXPLORE_BIG", input=value + "\n"))
    assert r.returncode == 0, r.stderr
    r = same(*both("secret", "set", "EXPLORE_BIG2", input=value + "a\n"))
    assert r.returncode == 2 and "larger than 64 KiB" in r.stderr


@pytest.mark.parametrize("name", ["a/b", "..", "A-B", "1X", "X?y"])
def test_secret_rm_of_a_bad_name_same_words_on_both_paths(both, name):
    """A name that cannot be a secret's was "no secret named" embedded and
    "no such endpoint: /v1/…" (or another secret's answer) via a daemon."""
    r = same(*both("secret", "rm", name))
    assert r.returncode == 2 and f"'{name}' is not a secret name" in r.stderr


# ---- schedules ----------------------------------------------------------

@pytest.mark.parametrize("verb", ["show", "rm", "pause", "resume"])
@pytest.mark.parametrize("name", ["", "a/b", "..", "x?y"])
def test_schedule_verbs_refuse_a_name_no_schedule_can_have(cli, daemon, verb, name):
    """`schedule show ""` printed the tenant's schedule list, exit 0; a '/'
    or '..' became another path of the API ("no such endpoint: /v1/")."""
    r = cli("schedule", verb, name, "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert (r.returncode, r.stdout) == (2, ""), r
    assert f"'{name}' is not a schedule name ([A-Za-z0-9_-]{{1,64}})" in r.stderr


# ---- DAG runs -----------------------------------------------------------

@pytest.mark.parametrize("verb", [["status"], ["show"], ["status", "--json"], ["cancel"], ["logs", "", "t"]])
def test_dag_verbs_with_an_empty_id_find_no_dag_run_on_both_paths(both, verb):
    """`dag status "$ID"` with an unset variable: a daemon read GET
    /v1/dags/ as its list and printed it as an empty DAG run, exit 0 (cancel
    said "method DELETE is not allowed"); embedded said "cannot read DAG run
    '': Invalid argument"."""
    args = verb if "" in verb else [verb[0], "", *verb[1:]]
    r = same(*both("dag", *args))
    assert r.returncode == 2 and r.stdout == ""
    assert "no DAG run '' (see `pysprinter dag ls`)" in r.stderr


def test_dag_resume_of_an_empty_id_finds_no_dag_run(cli):
    """It said "cannot read the store: Invalid argument", exit 3."""
    r = cli("dag", "resume", "")
    assert (r.returncode, r.stdout) == (2, "")
    assert "no DAG run '' (see `pysprinter dag ls`)" in r.stderr


def test_secret_set_json_same_shape_on_both_paths(both):
    """`secret set --json` printed {"name"} embedded and the API's secret
    object (name, created_at, updated_at, and since round 52 opens)
    against a daemon."""
    import json
    local, remote = both("secret", "set", "EXPLORE_JSON", "--json", input="v\n")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    a, b = json.loads(local.stdout), json.loads(remote.stdout)
    assert sorted(a) == sorted(b) == ["created_at", "name", "opens", "updated_at"]
    assert a["opens"] is b["opens"] is True
    assert a["name"] == b["name"] == "EXPLORE_JSON" and a["created_at"].endswith("Z")


def test_dag_summary_points_to_logs_only_for_a_task_that_ran(cli, both):
    """A task that failed before it ran (a reference its upstream's result
    does not have) has no run: the summary told the user to run `dag logs
    ID TASK`, which then says "task 'b' has not run", exit 2."""
    cli.write("t.py", """
        def lst():
            return {"n": None}
        def echo(x=None):
            return x
        def boom():
            raise ValueError("boom")
    """)
    cli.write("p.yaml", """
        tasks:
          a: {file: t.py::lst}
          b: {file: t.py::echo, args: ["${a.n.x}"]}
    """)
    for r in both("dag", "run", "p.yaml", "--keep-going", *sandbox_args()):
        assert r.returncode == 3, r.stderr
        assert "b failed (exit 3): task 'a' result has no key 'x'" in r.stderr
        assert "dag logs" not in r.stderr
    cli.write("q.yaml", """
        tasks:
          c: {file: t.py::boom}
    """)
    for r in both("dag", "run", "q.yaml", *sandbox_args()):
        assert r.returncode == 1 and "ValueError: boom" in r.stderr
        assert "    output: pysprinter dag logs " in r.stderr and r.stderr.rstrip().endswith(" c")


def test_schedule_with_a_leap_second_zone_says_why(cli, daemon):
    """docs/schedules.md refuses `right/…` zones; the message was "its tz
    database file cannot be used: Protocol not supported" (an errno's words)."""
    import os
    if not os.path.exists("/usr/share/zoneinfo/right/UTC"):
        pytest.skip("no right/UTC in this machine's tz database")
    r = cli("schedule", "add", "explore-tz", "--cron", "0 9 * * *", "--tz", "right/UTC", "nofunction",
            "--server", daemon.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
    assert r.returncode == 2, r
    assert "time zone 'right/UTC': leap-second zones (right/…) are not supported" in r.stderr
    assert "Protocol" not in r.stderr


def test_dag_validation_error_names_the_pipeline_as_written_on_both_paths(cli, both):
    """Embedded, a task that does not validate is reported as
    `sub/p.yaml:3: task 'a' …` (the path the user gave, like every parse
    error); a daemon's answer said `p.yaml:3: …`, the name it was sent."""
    cli.write("sub/t.py", """
        def one(x: int = 1):
            return x + 1
    """)
    cli.write("sub/p.yaml", """
        tasks:
          a:
            file: t.py::one
            args: [1, 2, 3]
    """)
    cli.write("sub/q.yaml", """
        tasks:
          a:
            file: t.py::one
            data: [explore-no-such-dataset]
    """)
    for pipeline, words in (("p.yaml", "sub/p.yaml:3: task 'a' (t.py): one() takes 1 positional argument"),
                            ("q.yaml", "sub/q.yaml:3:")):
        r = same(*both("dag", "run", f"sub/{pipeline}", "-q", *sandbox_args()))
        assert r.returncode == 3 and r.stderr.startswith(f"pysprinter: {words}"), r.stderr


def test_schedule_with_an_empty_tz_is_utc(cli, daemon):
    """`--tz "$TZ"` with an unset variable is read as UTC, as no --tz is;
    the schedule object said "tz": "" (not one of the documented values)."""
    import json
    e = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    st, out = daemon.call("POST", "/v1/functions", {"name": "explore-tz", "filename": "f.py",
                                                    "source": "def f():\n    return 1\n"})
    assert st in (200, 201), out
    r = cli("schedule", "add", "explore-empty-tz", "--cron", "0 9 * * *", "--tz", "", "explore-tz",
            "--server", daemon.url, env=e)
    assert r.returncode == 0, r.stderr
    r = cli("schedule", "show", "explore-empty-tz", "--server", daemon.url, env=e)
    assert json.loads(r.stdout)["tz"] == "UTC"


@pytest.mark.parametrize("special", ["/dev/null", "fifo"])
def test_data_put_of_a_special_file_refused_on_both_paths(cli, both, tmp_path, special):
    """Embedded refuses a device or a FIFO ("only regular files and
    directories can be stored"); against a daemon `data put x /dev/null`
    stored an empty file named 'null' as a new version (and a FIFO blocked
    in open() until something wrote to it)."""
    import os
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    r = same(*both("data", "put", "explore-special", special))
    assert r.returncode == 2
    assert f"data put: {special}: only regular files and directories can be stored ({special})" in r.stderr
    r = same(*both("data", "ls", "explore-special"))
    assert r.returncode == 2 and "no dataset named 'explore-special'" in r.stderr


def test_data_put_without_a_source_same_words_on_both_paths(both):
    """`data put NAME ""` said "no source given" embedded and "cannot read :
    No such file or directory" through a daemon."""
    r = same(*both("data", "put", "explore-nosource", ""))
    assert r.returncode == 2 and "data put: no source given" in r.stderr, r.stderr


def test_data_put_that_fails_does_not_announce_the_kept_file_name(both, tmp_path):
    """The "keeping the file name 'a.txt'" warning came before the put, so it
    stood above the error of a put that stored nothing."""
    src = tmp_path / "a.txt"
    src.write_text("one\n")
    local, remote = both("data", "put", "explore-keep", src)
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    r = same(*both("data", "put", "explore-keep", tmp_path / "missing" / "b.txt"))
    assert r.returncode != 0 and "cannot read" in r.stderr and "keeping" not in r.stderr, r.stderr
    other = tmp_path / "b.txt"
    other.write_text("two\n")
    local, remote = both("data", "put", "explore-keep", other)
    for p in (local, remote):
        assert p.returncode == 0 and "keeping the file name 'a.txt' of explore-keep" in p.stderr, p.stderr


def test_dag_run_reads_sandbox_as_run_does(cli):
    # `dag run --sandbox=default` was refused ("--sandbox is full or none")
    # although run, map and the docs take 'default' for 'full', and a bad
    # value got other words than run's.
    f = cli.write("f.py", "def f():\n    return 1\n")
    dag = cli.write("p.yaml", "tasks:\n  a:\n    run: missing.py\n")
    full = cli("dag", "run", dag, "--sandbox=full", check=None)
    default = cli("dag", "run", dag, "--sandbox=default", check=None)
    assert (default.returncode, default.stderr) == (full.returncode, full.stderr), (full.stderr, default.stderr)
    assert "--sandbox" not in default.stderr
    bad_dag = cli("dag", "run", dag, "--sandbox=bogus", check=None)
    bad_run = cli("run", f, "--sandbox=bogus", check=None)
    assert bad_dag.returncode == bad_run.returncode == 2
    want = "pysprinter: --sandbox is 'full' (the default) or 'none', got 'bogus'\n"
    assert bad_dag.stderr.startswith(want) and bad_run.stderr.startswith(want), (bad_dag.stderr, bad_run.stderr)
