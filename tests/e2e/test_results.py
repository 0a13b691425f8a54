"""Results of the types real code returns (issue 16, docs/python.md): one
table, each row a return value, its printed JSON (`run --json`), what a
downstream DAG task receives, and what the Python client returns."""
import base64
import json
import subprocess
import sys

import pytest

from conftest import CLI, ROOT, sandbox_args
import daemonlib
import pkgindex

sys.path.insert(0, str(ROOT / "python"))
import pysprinter  # noqa: E402  (the in-tree package, python/pysprinter)

VALUES = '''
import dataclasses, datetime, decimal, enum, pathlib, uuid
from typing import NamedTuple
from pysprinter import requirements

@dataclasses.dataclass
class Point:
    x: int
    y: float
    tags: list

class Pair(NamedTuple):
    left: int
    right: str

class Model:  # what pydantic's BaseModel offers
    def model_dump(self):
        return {"id": 7, "when": datetime.date(2024, 2, 29)}

class Opaque:
    pass

class Broken:  # its model_dump() raises: the conversion must not fail the run
    def model_dump(self):
        raise RuntimeError("no")
    def __repr__(self):
        return "Broken()"

class Colour(enum.Enum):
    RED = "red"

def deep(n):
    v = []
    for _ in range(n):
        v = [v]
    return v

VALUES = {
    "dataclass": lambda: Point(1, 2.5, ["a"]),
    "namedtuple": lambda: Pair(1, "b"),
    "model_dump": lambda: Model(),
    "datetime": lambda: datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=datetime.timezone.utc),
    "date": lambda: datetime.date(2024, 5, 6),
    "time": lambda: datetime.time(7, 8, 9),
    "decimal": lambda: decimal.Decimal("1.10"),
    "uuid": lambda: uuid.UUID(int=1),
    "path": lambda: pathlib.PurePosixPath("/data/x.csv"),
    "bytes": lambda: b"\\x00\\xffhi",
    "set": lambda: {3, 1, 2},
    "frozenset": lambda: frozenset({"b", "a"}),
    "enum": lambda: Colour.RED,
    "nested": lambda: {"at": [datetime.date(2020, 1, 1), {b"k": 1} if False else {"b": b"x"}]},
    "keys": lambda: {1: "a", None: "n", datetime.date(2020, 1, 2): "d"},
    "timedelta": lambda: datetime.timedelta(minutes=1, milliseconds=500),
    "object": lambda: Opaque(),
    "broken": lambda: Broken(),
    "half_built": lambda: object.__new__(Point),
    "too_deep": lambda: deep(500),
}

def produce(name: str):
    return VALUES[name]()

def consume(v):
    return {"type": type(v).__name__, "repr": repr(v)}
'''

# name: (printed JSON, (type, repr) downstream, value in the client)
TABLE = {
    # (a DAG passes objects with their keys sorted: the engine's JSON)
    "dataclass": ({"x": 1, "y": 2.5, "tags": ["a"]}, ("dict", "{'tags': ['a'], 'x': 1, 'y': 2.5}"),
                  {"x": 1, "y": 2.5, "tags": ["a"]}),
    "namedtuple": ({"left": 1, "right": "b"}, ("dict", "{'left': 1, 'right': 'b'}"), {"left": 1, "right": "b"}),
    "model_dump": ({"id": 7, "when": "2024-02-29"}, ("dict", "{'id': 7, 'when': '2024-02-29'}"),
                   {"id": 7, "when": "2024-02-29"}),
    "datetime": ("2024-05-06T07:08:09.123000+00:00", ("str", "'2024-05-06T07:08:09.123000+00:00'"),
                 "2024-05-06T07:08:09.123000+00:00"),
    "date": ("2024-05-06", ("str", "'2024-05-06'"), "2024-05-06"),
    "time": ("07:08:09", ("str", "'07:08:09'"), "07:08:09"),
    "decimal": ("1.10", ("str", "'1.10'"), "1.10"),
    "uuid": ("00000000-0000-0000-0000-000000000001", ("str", "'00000000-0000-0000-0000-000000000001'"),
             "00000000-0000-0000-0000-000000000001"),
    "path": ("/data/x.csv", ("str", "'/data/x.csv'"), "/data/x.csv"),
    "bytes": ({"$bytes": base64.b64encode(b"\x00\xffhi").decode()}, ("bytes", "b'\\x00\\xffhi'"), b"\x00\xffhi"),
    "set": ([1, 2, 3], ("list", "[1, 2, 3]"), [1, 2, 3]),
    "frozenset": (["a", "b"], ("list", "['a', 'b']"), ["a", "b"]),
    "enum": ("red", ("str", "'red'"), "red"),
    "keys": ({"1": "a", "null": "n", "2020-01-02": "d"}, ("dict", "{'1': 'a', '2020-01-02': 'd', 'null': 'n'}"),
             {"1": "a", "null": "n", "2020-01-02": "d"}),
    "timedelta": (60.5, ("float", "60.5"), 60.5),
    "nested": ({"at": ["2020-01-01", {"b": {"$bytes": "eA=="}}]},
               ("dict", "{'at': ['2020-01-01', {'b': b'x'}]}"), {"at": ["2020-01-01", {"b": b"x"}]}),
}
# No JSON view: repr() and the warning, as before the table.
REPR = {"object": "<values.Opaque object at", "too_deep": "[[[[[", "broken": "Broken()",
        "half_built": "<unrepresentable Point"}


@pytest.fixture
def values(cli):
    cli.write("values.py", VALUES)
    return cli


@pytest.mark.parametrize("name", sorted(TABLE))
def test_printed_json(values, name):
    p = values("run", *sandbox_args(), "values.py::produce", "-a", name, "--json", check=0)
    assert json.loads(p.stdout) == TABLE[name][0]
    assert "warning" not in p.stderr


@pytest.mark.parametrize("name", sorted(REPR))
def test_no_json_view_keeps_repr_and_warning(values, name):
    p = values("run", *sandbox_args(), "values.py::produce", "-a", name, check=0)
    assert p.stdout.startswith(REPR[name])
    assert "cannot be represented as JSON" in p.stderr


def test_bytes_print_raw_into_a_pipe(values):
    p = subprocess.run([str(CLI), "run", *sandbox_args(), "values.py::produce", "-a", "bytes"],
                       capture_output=True, env=values.env, cwd=values.cwd, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"\x00\xffhi"


def test_downstream_dag_task_receives(values):
    tasks = {}
    for name in TABLE:
        tasks[f"p_{name}"] = {"file": "values.py", "function": "produce", "args": [name]}
        tasks[f"c_{name}"] = {"file": "values.py", "function": "consume", "args": [f"${{p_{name}}}"]}
    values.write("t.yaml", json.dumps({"tasks": tasks}))   # JSON is YAML
    p = values("dag", "run", *sandbox_args(), "t.yaml", "--json", "--no-cache", check=0)
    dag = json.loads(p.stdout)
    got = {n: (dag["tasks"][f"c_{n}"]["result"]["type"], dag["tasks"][f"c_{n}"]["result"]["repr"])
           for n in TABLE}
    assert got == {n: row[1] for n, row in TABLE.items()}


def test_client_receives(tmp_path):
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path)).start()
    try:
        f = tmp_path / "values.py"
        f.write_text(VALUES)
        c = pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"])
        names = sorted(TABLE)
        assert c.map(f"{f}::produce", names, concurrency=4) == [TABLE[n][2] for n in names]
        # bytes also travel as an argument: the client sends the marker, the
        # function gets bytes.
        assert c.run(f"{f}::consume", b"\x01z") == {"type": "bytes", "repr": "b'\\x01z'"}
        with pytest.warns(UserWarning, match="cannot be represented as JSON"):
            assert c.run(f"{f}::produce", "object").startswith("<values.Opaque object at")
    finally:
        d.stop()


@pytest.fixture(scope="module")
def numpy_index():
    wheel = pkgindex.repack_debian("numpy")
    if wheel is None:
        pytest.skip("Debian's python3-numpy is not installed: no real numpy to test with")
    ix = pkgindex.Index()
    ix.add(wheel)
    ix.start()
    yield ix
    ix.stop()


def test_numpy_values(cli, numpy_index):
    cli.write("np_values.py", '''
        from pysprinter import requirements
        import numpy as np

        @requirements({"numpy": ""})
        def f():
            return {"array": np.arange(6).reshape(2, 3), "f32": np.float32(1.5), "i64": np.int64(7),
                    "bool": np.bool_(True), "mixed": [np.float64(0.25)]}
        ''')
    p = cli("run", *sandbox_args(), "--index-url", numpy_index.url, "np_values.py", "--json", check=0)
    assert json.loads(p.stdout) == {"array": [[0, 1, 2], [3, 4, 5]], "f32": 1.5, "i64": 7,
                                              "bool": True, "mixed": [0.25]}


# ---- opt-in: a value with its Python type (pysprinter.pickled, protocol 5) ------

PICKLED = '''
import datetime, decimal, os
from pysprinter import pickled

class Canary:
    """Unpickling it creates a directory: it shows where a pickle is read."""
    def __init__(self, path):
        self.path = path
    def __reduce__(self):
        return (os.mkdir, (self.path,))

def produce():
    return pickled({"when": datetime.datetime(2024, 1, 2, 3, 4), "amount": decimal.Decimal("1.10"), "s": {1, 2}})

def canary(path: str):
    return pickled(Canary(path))

def consume(v):
    return repr(v)
'''
TYPED = "{'when': datetime.datetime(2024, 1, 2, 3, 4), 'amount': Decimal('1.10'), 's': {1, 2}}"
VIEW = {"when": "2024-01-02T03:04:00", "amount": "1.10", "s": [1, 2]}


def test_pickled_value_keeps_its_type_downstream_and_shows_its_view(cli):
    cli.write("pk.py", PICKLED)
    p = cli("run", *sandbox_args(), "pk.py::produce", check=0)
    assert json.loads(p.stdout) == VIEW                       # the CLI shows the view
    marker = json.loads(cli("run", *sandbox_args(), "pk.py::produce", "--json", check=0).stdout)
    assert set(marker) == {"$pickle", "type", "view"} and marker["view"] == VIEW
    cli.write("pk.yaml", "tasks:\n  p: {file: pk.py, function: produce}\n"
              "  c: {file: pk.py, function: consume, args: ['${p}']}\n")
    p = cli("dag", "run", *sandbox_args(), "pk.yaml", "--json", "--no-cache", check=0)
    assert json.loads(p.stdout)["tasks"]["c"]["result"] == TYPED


def test_pickle_is_read_only_by_an_opted_in_client(tmp_path):
    """The daemon stores the pickle and the CLI and a default client show
    its view: only Client(unpickle=True) runs it, in its own process."""
    d = daemonlib.Daemon(tmp_path / "d", sandbox=daemonlib.sandbox_mode(tmp_path)).start()
    canary = tmp_path / "canary"
    try:
        f = tmp_path / "pk.py"
        f.write_text(PICKLED)
        c = pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"])
        assert c.run(f"{f}::produce") == VIEW
        assert c.run(f"{f}::canary", str(canary)) is None    # no JSON view: null
        st, runs = d.call("GET", "/v1/runs?limit=10")
        assert st == 200 and not canary.exists()              # the daemon never unpickled it
        typed = pysprinter.Client(server=d.url, token=daemonlib.TOKENS["alice"], unpickle=True)
        import datetime, decimal
        assert typed.run(f"{f}::produce") == {"when": datetime.datetime(2024, 1, 2, 3, 4),
                                              "amount": decimal.Decimal("1.10"), "s": {1, 2}}
        assert not canary.exists()
        typed.run(f"{f}::canary", str(canary))
        assert canary.is_dir()                                # … this process did
    finally:
        d.stop()
