"""The part of `pysprinter` that is the same inside a run and outside one.

The worker compiles this very file into its binary and registers it as the
module `pysprinter` in every run, so `from pysprinter import requirements,
data_path, output_dir` means the same in the sandbox as it does after
`pip install ./python`. It also holds the result table (`to_jsonable`): the
runner converts a function's return value with it inside the sandbox, and
the client uses it to send arguments and `from_jsonable` to read results.

Standard library only. The worker imports this file at start, so it imports
nothing it does not need at once: a value of type datetime.date can only exist
if `datetime` is imported already, so the table looks the classes up in
sys.modules (numpy and pandas are likewise recognised by their type's
module, never imported).
"""
import binascii
import os
import sys

__all__ = ["requirements", "data_path", "output_dir", "to_jsonable", "from_jsonable", "pickled",
           "ConversionError", "BYTES_MARKER", "PICKLE_MARKER", "MAX_DEPTH", "MAX_NODES"]

BYTES_MARKER = "$bytes"
PICKLE_MARKER = "$pickle"
MAX_DEPTH = 100          # nesting of containers in one result
MAX_NODES = 5_000_000    # values visited while converting one result


def requirements(reqs: "dict[str, str] | None" = None, /):
    """@requirements({'name': 'specifier'}): declares pip dependencies. At run
    time it only tags the function (fn.__pysprinter_requirements__); the
    runner reads the dict statically, before any user code runs."""
    if callable(reqs):  # bare @requirements
        return reqs

    def decorate(fn):
        try:
            fn.__pysprinter_requirements__ = dict(reqs or {})
            _declared.update(k for k in (reqs or {}) if isinstance(k, str))
        except Exception:
            pass
        return fn
    return decorate


# The project names the module's @requirements declared (the runner's hint
# for a module that cannot be imported though its package is declared).
_declared = set()


# Filled by the runner from the run request: {NAME: path seen by the run}.
_data_paths = {}
# Set by the runner when the run has an output directory.
_output_dir = None
# True inside a run (the worker sets it), False in a pip-installed copy.
IN_RUN = False


def _check_name(name):
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid dataset name {name!r}")


def data_path(name: str) -> str:
    """Path of a named dataset. In a run: /data/NAME for a directory dataset,
    the file itself for one put from a single file or a URL (the stored host
    path under --sandbox=none). Outside a run: $PYSPRINTER_DATA_DIR/NAME
    (default ./data/NAME), so a file can be tried with `python3 file.py`."""
    _check_name(name)
    if name in _data_paths:
        return _data_paths[name]
    if IN_RUN:
        raise KeyError(f"dataset {name!r} is not attached to this run (run with --data {name})")
    path = os.path.join(os.environ.get("PYSPRINTER_DATA_DIR", "data"), name)
    if not os.path.exists(path):
        raise KeyError(f"dataset {name!r}: {path} does not exist "
                       "(outside a run, datasets are read from $PYSPRINTER_DATA_DIR/NAME)")
    return path


def output_dir() -> str:
    """Directory a run may write files into: /out in the sandbox, empty at
    the start of each run and private to it; `run --output-data NAME` (or a
    DAG task's `outputs: NAME`) stores what it holds when the run succeeds
    as the next version of dataset NAME, else it is discarded (docs/data.md
    "Outputs"). Outside a run: $PYSPRINTER_OUTPUT_DIR, default
    ./out, created on first use."""
    if _output_dir is not None:
        return _output_dir
    if IN_RUN:
        # A warm instance of a deployed function has no output dir of its own.
        raise RuntimeError("this run has no output directory (deployed functions do not; use a run or a DAG task)")
    path = os.environ.get("PYSPRINTER_OUTPUT_DIR") or "out"
    os.makedirs(path, exist_ok=True)
    return path


# ---- the result table (docs/python.md) ---------------------------------------

class ConversionError(ValueError):
    """The value has no JSON view by the table, or exceeds its bounds."""


def _is_namedtuple(v):
    return isinstance(v, tuple) and hasattr(type(v), "_fields") and hasattr(v, "_asdict")


def _module_of(v):
    return (type(v).__module__ or "").split(".")[0]


def to_jsonable(value: object, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> object:
    """The JSON view of value by the documented table, as plain dict/list/
    str/int/float/bool/None. Raises ConversionError for a value the table
    does not cover (the caller falls back to repr()) or one deeper than
    max_depth or larger than max_nodes."""
    budget = [max_nodes]
    return _conv(value, 0, max_depth, budget)


def _loaded(module, *names):
    """The classes `names` of `module` if it is imported already, else ()."""
    m = sys.modules.get(module)
    return tuple(getattr(m, n) for n in names if hasattr(m, n)) if m is not None else ()


def _scalar_view(v):
    """The string (or number) view of a datetime, Decimal, UUID, path or
    timedelta; None when v is none of those."""
    if isinstance(v, _loaded("datetime", "datetime", "date", "time")):
        return v.isoformat()
    if isinstance(v, _loaded("datetime", "timedelta")):
        return v.total_seconds()
    if isinstance(v, _loaded("decimal", "Decimal") + _loaded("uuid", "UUID") + _loaded("pathlib", "PurePath")):
        return str(v)
    return None


class pickled:
    """Opt-in: `return pickled(value)` sends value with its Python type, as
    pickle protocol 5, beside its JSON view:
        {"$pickle": BASE64, "type": "module.Class", "view": JSON view or null}
    A downstream DAG task (or a run given it as an argument) gets the
    unpickled value, inside its own sandbox; a Client(unpickle=True) gets it
    in its own process; everything else (the daemon, the CLI, a default
    client) only ever reads the view. Unpickling runs code: accept these
    only from your own runs (a DAG's values stay within its tenant)."""
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"pickled({self.value!r})"


def _pickled_view(v, depth, max_depth, budget):
    import pickle
    data = pickle.dumps(v.value, protocol=5)
    try:
        view = _conv(v.value, depth + 1, max_depth, budget)
    except Exception:
        view = None
    t = type(v.value)
    return {PICKLE_MARKER: binascii.b2a_base64(data, newline=False).decode("ascii"),
            "type": f"{t.__module__}.{t.__qualname__}", "view": view}


def _conv(v, depth, max_depth, budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise ConversionError("the result is too large to convert")
    if depth > max_depth:
        raise ConversionError(f"the result is nested deeper than {max_depth}")
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    d = depth + 1
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            key = _key(k)
            if key in out:
                # {1: "a", "1": "b"}: one entry would be dropped without a
                # word. Not JSON, then: the repr() path, which keeps both.
                raise ConversionError(f"two keys of a dict are the same JSON key {key!r}")
            out[key] = _conv(x, d, max_depth, budget)
        return out
    if _is_namedtuple(v):
        return {k: _conv(x, d, max_depth, budget) for k, x in v._asdict().items()}
    if isinstance(v, (list, tuple)):
        return [_conv(x, d, max_depth, budget) for x in v]
    if isinstance(v, (set, frozenset)):
        items = [_conv(x, d, max_depth, budget) for x in v]
        try:
            items.sort(key=lambda x: (type(x).__name__, x))
        except TypeError:
            pass  # mixed or unorderable members keep iteration order
        return items
    if isinstance(v, pickled):
        return _pickled_view(v, depth, max_depth, budget)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {BYTES_MARKER: binascii.b2a_base64(bytes(v), newline=False).decode("ascii")}
    view = _scalar_view(v)
    if view is not None:
        return view
    if isinstance(v, _loaded("enum", "Enum")):
        return _conv(v.value, d, max_depth, budget)
    mod = _module_of(v)
    if mod == "numpy":
        if hasattr(v, "tolist"):  # ndarray and numpy scalars (np.generic)
            return _conv(v.tolist(), depth, max_depth, budget)
    if mod == "pandas":
        name = type(v).__name__
        if name == "DataFrame":
            return _conv(v.to_dict(orient="records"), depth, max_depth, budget)
        if name == "Series":
            return _conv(v.tolist(), depth, max_depth, budget)
        if name == "Timestamp":
            return v.isoformat()
    dc = sys.modules.get("dataclasses")
    if dc is not None and dc.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _conv(getattr(v, f.name), d, max_depth, budget) for f in dc.fields(v)}
    for method in ("model_dump", "_asdict"):
        fn = getattr(v, method, None)
        if callable(fn) and not isinstance(v, type):
            return _conv(fn(), depth, max_depth, budget)
    raise ConversionError(f"{type(v).__name__} has no JSON view")


def _key(k):
    if isinstance(k, str):
        return k
    if isinstance(k, bool) or k is None:
        return str(k).lower() if k is not None else "null"
    if isinstance(k, (int, float)):
        return str(k)
    view = _scalar_view(k)
    if isinstance(view, str):
        return view
    raise ConversionError(f"a {type(k).__name__} dictionary key has no JSON view")


def _is_pickle_marker(value):
    return isinstance(value, dict) and isinstance(value.get(PICKLE_MARKER), str) and \
        set(value) <= {PICKLE_MARKER, "type", "view"}


def from_jsonable(value: object, unpickle: bool = False) -> object:
    """Reads a JSON view back: each {"$bytes": BASE64} becomes bytes; each
    {"$pickle": …} becomes the unpickled value when unpickle is true (only
    for values from your own runs: unpickling runs code), else its view.
    The rest stays as JSON decoded it (the table is one-way)."""
    if isinstance(value, dict):
        if len(value) == 1 and BYTES_MARKER in value and isinstance(value[BYTES_MARKER], str):
            try:
                import base64  # only when there is a marker to read
                return base64.b64decode(value[BYTES_MARKER], validate=True)
            except ValueError:
                return value
        if _is_pickle_marker(value):
            if not unpickle:
                return from_jsonable(value.get("view"))
            import base64
            import pickle
            return pickle.loads(base64.b64decode(value[PICKLE_MARKER], validate=True))
        # A scalar member is itself: no call per member for it (a Lambda
        # event read in a warm instance, docs/internals/performance-log.md round 19).
        return {k: x if type(x) in _JSON_SCALARS else from_jsonable(x, unpickle) for k, x in value.items()}
    if isinstance(value, list):
        return [x if type(x) in _JSON_SCALARS else from_jsonable(x, unpickle) for x in value]
    return value


# What from_jsonable() returns as it is (JSON's scalars, as json decodes them).
_JSON_SCALARS = frozenset((int, float, str, bool, type(None)))
