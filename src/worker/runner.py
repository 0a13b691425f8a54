"""The Python half of pysprinter-worker, compiled into the worker binary.

The C side owns processes, sockets and fds; this module owns everything that
is easier to get right in Python: parsing the user's file with `ast` (user
code never runs to validate it), binding and converting arguments by the
function's annotations, running the function and serialising the outcome.

Entry points called from C (each takes and returns JSON text):
  validate(request_json) -> reply_json
  run(request_json, result_fd) -> None   (in the forked run child)
"""
import ast
import binascii
import builtins
import codecs
import json
import linecache
import marshal
import os
import sys
import traceback
import types
import warnings

MAX_FUNCTIONS_LISTED = 20
TRUE_WORDS = {"true", "1", "yes", "y", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "off"}
NONE_WORDS = {"none", "null"}


class ValidationError(Exception):
    """A problem with the user's file or arguments (exit 3)."""

    def __init__(self, message, line=None, col=None, text=None, kind="ValidationError"):
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.text = text
        self.kind = kind
        self.fn = None  # the function's AST once it was found (_analyse)


# ---- the `pysprinter` module user code sees ---------------------------------
# It is python/pysprinter/runtime.py, compiled into the worker next to this
# file and registered as sys.modules["pysprinter"] before this module runs
# (worker-python.c): the same code a user gets from `pip install ./python`.
import pysprinter as _rt

_rt.IN_RUN = True
requirements = _rt.requirements
data_path = _rt.data_path
_data_paths = _rt._data_paths


# ---- multiprocessing's spawn and forkserver ----------------------------------
# Their children are fresh interpreters that import the function's module by
# name to unpickle what they run (mp.square). The user's module exists only
# in the run's process (its source came in the request), so every pool
# worker died on "No module named 'mp'" and the pool waited for the run's
# timeout. multiprocessing.spawn is wrapped when it is imported (24 ms of
# import: not made for every run): the first child it prepares in a run
# gets, in a private directory, the source and a main module that
# multiprocessing runs in the child before anything is unpickled. That main
# module gives the source the `requirements` the run gave it and finds the
# module by its name, compiled under the run's file name, its lines read
# from the source: the child's tracebacks read as the run's own do.
_spawn_module = [None, None]  # [(module name, file name, source), its dir]

_SPAWN_MAIN = """# pysprinter: what a spawn/forkserver child of a run runs first
import builtins, importlib.util, os, sys, types
if "pysprinter" not in sys.modules:
    sys.modules["pysprinter"] = types.ModuleType("pysprinter")
    sys.modules["pysprinter"].requirements = lambda reqs=None: reqs if callable(reqs) else (lambda fn: fn)
builtins.requirements = sys.modules["pysprinter"].requirements
_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "source.py")


class RunModule:
    @staticmethod
    def find_spec(name, path=None, target=None):
        return importlib.util.spec_from_loader(name, RunModule) if name == {modname!r} else None

    @staticmethod
    def create_module(spec):
        return None

    @staticmethod
    def exec_module(module):
        module.__file__ = {filename!r}
        exec(compile(RunModule.get_source(module.__name__), {filename!r}, "exec"), module.__dict__)

    @staticmethod
    def get_source(name):
        with open(_SOURCE, encoding="utf-8") as f:
            return f.read()


sys.meta_path.insert(0, RunModule)
"""


def _spawn_main_path():
    """The main module a spawned child of this run runs first, written on
    first use; None outside a run."""
    if _spawn_module[0] is None:
        return None
    if _spawn_module[1] is None:
        import tempfile
        modname, filename, source = _spawn_module[0]
        d = tempfile.mkdtemp(prefix="pysprinter-module-")
        for name, text in (("source.py", source),
                           ("main.py", _SPAWN_MAIN.format(modname=modname, filename=filename))):
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
        _spawn_module[1] = os.path.join(d, "main.py")
    return _spawn_module[1]


def _wrap_spawn(module):
    real = module.get_preparation_data

    def get_preparation_data(name):
        d = real(name)
        main = _spawn_main_path()
        if main:
            d["init_main_from_path"] = main
        return d
    module.get_preparation_data = get_preparation_data


class _SpawnImportHook:
    """On sys.meta_path: finds multiprocessing.spawn as Python would and
    wraps it once it has run; every other import passes through."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "multiprocessing.spawn":
            return None
        import importlib.machinery
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            _wrap_spawn(module)
        spec.loader.exec_module = exec_module
        return spec


if "multiprocessing.spawn" in sys.modules:
    _wrap_spawn(sys.modules["multiprocessing.spawn"])
else:
    sys.meta_path.insert(0, _SpawnImportHook)


# ---- static analysis ---------------------------------------------------------

def _requirements_names(tree):
    """The names the decorator goes by in this file: ({`requirements` and
    each `from pysprinter import requirements as NAME`}, {`pysprinter` and
    each `import pysprinter as NAME`}), from its top-level imports."""
    names, modules = {"requirements"}, {"pysprinter"}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "pysprinter" and node.level == 0:
            names.update(a.asname for a in node.names if a.name == "requirements" and a.asname)
        elif isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name == "pysprinter" and a.asname)
    return names, modules


def _is_requirements(f, aliases):
    """f (a decorator, or its call's func) names requirements (aliases:
    _requirements_names())."""
    names, modules = aliases
    if isinstance(f, ast.Name):
        return f.id in names
    return isinstance(f, ast.Attribute) and f.attr == "requirements" and \
        isinstance(f.value, ast.Name) and f.value.id in modules


def _decorator_requirements_call(dec, aliases):
    """The Call node if dec is @requirements(...) / @pysprinter.requirements(...)
    (or an imported alias of either)."""
    return dec if isinstance(dec, ast.Call) and _is_requirements(dec.func, aliases) else None


def _not_literal(node):
    """How a dict key or value that is no string literal reads in a message
    (never ast's repr, which holds a memory address)."""
    kinds = {ast.JoinedStr: "an f-string", ast.Call: "a call", ast.BinOp: "an expression",
             ast.Attribute: "an attribute", ast.Subscript: "a subscript"}
    if isinstance(node, ast.Name):
        return f"the name {node.id}"
    if isinstance(node, ast.Constant):
        return f"{type(node.value).__name__} {node.value!r}"
    return kinds.get(type(node), "an expression")


def _literal_requirements(call, filename):
    if call.keywords:
        kw = call.keywords[0]
        raise ValidationError(
            "@requirements takes one dict literal, not keyword arguments",
            kw.lineno, kw.col_offset + 1)
    if len(call.args) > 1:
        raise ValidationError("@requirements takes one dict literal", call.lineno, call.col_offset + 1)
    if not call.args:
        return {}
    node = call.args[0]
    if not isinstance(node, ast.Dict):
        raise ValidationError(
            "@requirements needs a literal dict of str -> str, e.g. {'requests': '2.28.1'}",
            node.lineno, node.col_offset + 1)
    # Read from the tree, not literal_eval'd: each refusal points at the
    # key or value and says what it is.
    value = {}
    for k, v in zip(node.keys, node.values):
        if k is None:
            raise ValidationError("@requirements takes a literal dict: no ** unpacking",
                                  v.lineno, v.col_offset + 1)
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            raise ValidationError(f"a requirement name must be a string literal, not {_not_literal(k)}",
                                  k.lineno, k.col_offset + 1)
        if k.value in value:
            raise ValidationError(f"requirement {k.value!r} is given twice", k.lineno, k.col_offset + 1)
        # None reads as "no constraint", as '' does.
        if isinstance(v, ast.Constant) and (v.value is None or isinstance(v.value, str)):
            value[k.value] = v.value or ""
            continue
        raise ValidationError(
            f"requirement {k.value!r}: the version must be a string literal ('' means any version), "
            f"not {_not_literal(v)}", v.lineno, v.col_offset + 1)
    return value


def _target_hint(filename):
    """What the user types to name a function of the file: `-` for the
    source read from stdin (the CLI names it <stdin>), as `run -::NAME`."""
    return "-" if filename == "<stdin>" else filename


def _refuse_inner_requirements(tree, aliases):
    """@requirements marks the top-level function to run: on a method, a
    nested function or one defined under an `if`, its pins were dropped
    without a word and another function ran without them."""
    kinds = {"class": "a method", "def": "a nested function", "block": "not defined at the top of the file"}

    def walk(node, prefix, where):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if where and not isinstance(child, ast.ClassDef):
                    for dec in child.decorator_list:
                        if _decorator_requirements_call(dec, aliases) is not None or (
                                isinstance(dec, ast.Name) and dec.id in aliases[0]):
                            raise ValidationError(
                                f"@requirements on {name} ({kinds[where]}): it marks the function to run, "
                                "which is defined at the top of the file", dec.lineno, dec.col_offset + 1)
                walk(child, name + ".", "class" if isinstance(child, ast.ClassDef) else "def")
            else:
                walk(child, prefix, where or "block")
    walk(tree, "", None)


def _find_function(tree, wanted, filename):
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    decorated = []
    aliases = _requirements_names(tree)
    _refuse_inner_requirements(tree, aliases)
    for fn in functions:
        found = False
        for dec in fn.decorator_list:
            call = _decorator_requirements_call(dec, aliases)
            if call is not None or (isinstance(dec, ast.Name) and dec.id in aliases[0]):
                if found:
                    # Only one dict is read: a second one's pins would be
                    # dropped without a word.
                    raise ValidationError(
                        f"{fn.name}() has a second @requirements; give its requirements in one dict",
                        dec.lineno, dec.col_offset + 1)
                decorated.append((fn, call))
                found = True
    names = [f.name for f in functions]
    if wanted:
        # The last definition wins, as at run time.
        for fn in reversed(functions):
            if fn.name == wanted:
                call = next((c for f, c in decorated if f is fn), None)
                return fn, call
        listing = ", ".join(names[:MAX_FUNCTIONS_LISTED]) or "none"
        raise ValidationError(f"no top-level function '{wanted}' in {filename} (functions: {listing})")
    if len(decorated) == 1:
        return decorated[0]
    if len(decorated) > 1:
        listing = ", ".join(f.name for f, _ in decorated[:MAX_FUNCTIONS_LISTED])
        raise ValidationError(
            f"{filename} has several @requirements functions ({listing}); "
            f"choose one with {_target_hint(filename)}::NAME")
    if len(functions) == 1:
        return functions[0], None
    if not functions:
        raise ValidationError(f"{filename} defines no top-level function to run")
    listing = ", ".join(names[:MAX_FUNCTIONS_LISTED])
    raise ValidationError(
        f"no function in {filename} is decorated with @requirements; "
        f"choose one with {_target_hint(filename)}::NAME (functions: {listing})")


def _source(req):
    """The request's source text without a leading UTF-8 byte order mark,
    which CPython skips when it runs a file (ast.parse of a str does not:
    "invalid non-printable character U+FEFF")."""
    source = req.get("source", "")
    return source[1:] if source.startswith("\ufeff") else source


# A path no open() can find: /dev/null is not a directory, in the
# sandbox as outside it.
_NO_FILE = "/dev/null/"


def _parse(source, filename):
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as e:
        e = _syntax_error_of_source(source, filename) or e
        raise ValidationError(e.msg, e.lineno, e.offset, e.text, kind=type(e).__name__)
    except (MemoryError, RecursionError):
        # CPython 3.11's parser raises a bare MemoryError past its stack
        # (6000 levels: "-" * 10000 + "1"). Past the memory limit of a
        # large file's validation, worker.c tells the limit from this.
        raise ValidationError(f"{filename} is nested too deeply to parse")
    except ValueError as e:
        raise ValidationError(f"cannot parse {filename}: {e}")


def _syntax_error_of_source(source, filename):
    """source's SyntaxError with its line and column taken from source.
    CPython's parser, refusing a module, reads the offending line back from
    the file its filename names when one exists (pegen_errors.c,
    _PyErr_ProgramDecodedTextObject) and measures the column in that line.
    With --sandbox=none the worker's directory is the user's, where the base
    name may be another file (run sub/f.py beside an f.py) or this one with
    its byte order mark; a daemon's worker finds none. Parsed again under a
    name no file has: only a refused file pays for it, and the name is in
    no message (they name the file themselves)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first parse showed them
        try:
            ast.parse(source, filename=_NO_FILE + filename)
        except SyntaxError as e:
            return e
        except (MemoryError, RecursionError, ValueError):
            pass  # past a limit this time: the first error, as it came
    return None


# ---- annotations and conversion ---------------------------------------------

class Conv:
    """A converter derived statically from an annotation AST node."""

    def __init__(self, kind, inner=None, optional=False, label=None, items=None):
        self.kind = kind          # str int float bool list dict tuple literal any union path bytes none
        self.inner = inner
        # The elements' converters of list[X] (one), dict[K, V] (V's),
        # tuple[X, ...] (one) and tuple[X, Y] (a list): None when they
        # need no check (bare list, list[Any], an unknown element type).
        self.items = items
        self.optional = optional
        self.label = label or kind
        # `str` itself, whose typed values are checked; an unknown
        # annotation is kind "str" too, and passes them through. Set here,
        # since Optional[...] relabels the converter it wraps.
        self.exact_str = kind == "str" and self.label == "str"


def _annotation_name(node):
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
            node.value.id in ("typing", "builtins", "t", "pathlib"):
        return node.attr
    return None


SIMPLE = {
    "str": "str", "int": "int", "float": "float", "bool": "bool",
    "list": "list", "List": "list", "Sequence": "list", "dict": "dict", "Dict": "dict",
    "Mapping": "dict", "tuple": "tuple", "Tuple": "tuple", "Any": "any",
    "Path": "path", "bytes": "bytes",
}


def _element_conv(node):
    """The converter of a container's element annotation, or None when
    elements need no check (Any, an unknown name: passed as they are)."""
    c = _conv_from_annotation(node)
    return None if c.kind == "any" or (c.kind == "str" and not c.exact_str) else c


def _items_conv(kind, sl):
    """Conv.items of list[sl], dict[sl] or tuple[sl] (see Conv)."""
    elts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
    if kind == "list" and len(elts) == 1:
        return _element_conv(elts[0])
    if kind == "dict" and len(elts) == 2:
        return _element_conv(elts[1])
    if kind == "tuple":
        if len(elts) == 2 and isinstance(elts[1], ast.Constant) and elts[1].value is Ellipsis:
            return _element_conv(elts[0])
        return [_conv_from_annotation(e) for e in elts]  # tuple[()]: elts is [] already
    return None


def _conv_from_annotation(node):
    if node is None:
        # Unannotated: CLI strings stay strings (seed behaviour), typed JSON
        # values pass through as they are.
        return Conv("any", label="any")
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return Conv("str")
    if isinstance(node, ast.Constant) and node.value is None:
        return Conv("none", optional=True, label="None")
    # X | None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        parts = _flatten_union(node)
        return _union(parts)
    name = _annotation_name(node)
    if name is not None:
        kind = SIMPLE.get(name)
        return Conv(kind, label=name) if kind else Conv("str", label=name)
    if isinstance(node, ast.Subscript):
        base = _annotation_name(node.value)
        sl = node.slice
        if base == "Optional":
            c = _conv_from_annotation(sl)
            c.optional = True
            c.label = f"Optional[{c.label}]"
            return c
        if base == "Union":
            parts = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
            return _union(parts)
        if base == "Annotated" and isinstance(sl, ast.Tuple) and sl.elts:
            # Annotated[X, metadata...] (Typer's and FastAPI's way to
            # attach options) converts as X: the metadata is not ours.
            return _conv_from_annotation(sl.elts[0])
        if base == "Literal":
            values = _literal_values(sl)
            if values is not None:
                return Conv("literal", inner=values, optional=None in values, label=ast.unparse(node))
        kind = SIMPLE.get(base or "")
        if kind in ("list", "dict", "tuple"):
            return Conv(kind, label=ast.unparse(node), items=_items_conv(kind, sl))
    return Conv("str", label=ast.unparse(node))


def _literal_values(sl):
    """The values of Literal[sl] when each is a constant a CLI word can
    spell (str, int, float, bool, None), else None: the annotation then
    stays unknown (the string passes)."""
    values = []
    for elt in sl.elts if isinstance(sl, ast.Tuple) else [sl]:
        try:
            v = ast.literal_eval(elt)
        except ValueError:
            return None
        if type(v) not in (str, int, float, bool, type(None)):
            return None
        values.append(v)
    return values


def _literal_spells(v, raw):
    """raw, a CLI string, spells the Literal value v."""
    if type(v) is str:
        return raw == v
    w = raw.strip().lower()
    if v is None:
        return w in NONE_WORDS
    if type(v) is bool:
        return w in (TRUE_WORDS if v else FALSE_WORDS)
    try:
        return (int(w) if type(v) is int else float(w)) == v
    except ValueError:
        return False


def _literal_choice(param, conv, v):
    """The Literal value a typed JSON value is (a number of either kind
    equal to it counts; a bool is never a number here), or the error."""
    for x in conv.inner:
        if v == x and (type(v) is type(x) or
                       type(v) in (int, float) and type(x) in (int, float)):
            return x
    _typed_mismatch(param, f"one of {', '.join(map(repr, conv.inner))}", v)


def _flatten_union(node):
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flatten_union(node.left) + _flatten_union(node.right)
    return [node]


def _union(parts):
    has_none = any(isinstance(p, ast.Constant) and p.value is None or
                   _annotation_name(p) == "None" for p in parts)
    rest = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None or
                                     _annotation_name(p) == "None")]
    if len(rest) == 1:
        c = _conv_from_annotation(rest[0])
    else:
        # A CLI word is always a str: the members that take any word (str,
        # an unknown annotation, Path, bytes) come last, so Union[int, str]
        # makes "5" the int and "x" the str, in any order of declaration.
        items = [_conv_from_annotation(p) for p in rest]
        items = [i for i in items if i.kind not in _ANY_WORD] + [i for i in items if i.kind in _ANY_WORD]
        c = Conv("union", items=items, label=" | ".join(ast.unparse(p) for p in rest))
        c.inner = c.label  # the members, however Optional[...] relabels it
    c.optional = c.optional or has_none
    return c


# The kinds whose _convert_raw takes any word.
_ANY_WORD = frozenset(("str", "any", "none", "path", "bytes"))


_NO_MEMBER = object()


def _union_member(conv, check, param, value):
    """What check(param, member, value) (_convert_raw, _check_typed) gives
    for the first member of the Union conv, in _union's order, that takes
    value; _NO_MEMBER when none does."""
    for c in conv.items:
        try:
            return check(param, c, value)
        except ValidationError:
            pass
    return _NO_MEMBER


def _union_expected(conv):
    return conv.inner + (" | None" if conv.optional else "")


def _convert_raw(param, conv, raw, one=True):
    """Convert a CLI string by the parameter's annotation; one: a word that
    is no JSON array may be a list's one element (not for a Union's
    member: Union[list[str], int] keeps `5` the int)."""
    def bad(expected):
        # Optional[X] takes `none`/`null` too: say so for a scalar X (a
        # container's label says Optional itself).
        if conv.optional and conv.kind in ("int", "float", "bool"):
            expected += " or none"
        raise ValidationError(f"argument '{param}': expected {expected}, got {raw!r}")
    if conv.optional and raw.strip().lower() in NONE_WORDS:
        return None
    k = conv.kind
    if k in ("str", "any", "none"):
        return raw
    if k == "path":
        import pathlib
        return pathlib.Path(raw)
    if k == "bytes":
        return os.fsencode(raw)  # the word's own bytes (surrogateescape)
    if k == "int":
        try:
            # A prefix (after a sign: -0x10) means int(s, 0); other text
            # keeps int(s)'s decimal rules ("010" is 10, not an error).
            t = raw.strip()
            body = t[1:] if t[:1] in ("+", "-") else t
            return int(t, 0) if body.lower().startswith(("0x", "0o", "0b")) else int(raw)
        except ValueError:
            bad("an integer")
    if k == "float":
        try:
            return float(raw)
        except ValueError:
            bad("a number")
    if k == "bool":
        w = raw.strip().lower()
        if w in TRUE_WORDS:
            return True
        if w in FALSE_WORDS:
            return False
        bad("a boolean (true/false, yes/no, 1/0)")
    if k == "literal":
        for v in conv.inner:
            if _literal_spells(v, raw):
                return v
        bad(f"one of {', '.join(map(repr, conv.inner))}")
    if k in ("list", "dict", "tuple"):
        try:
            v = json.loads(raw)
        except ValueError:
            v = _NOT_JSON
        if one and type(v) is not list and k != "dict" and not raw.lstrip().startswith("[") and \
                not isinstance(conv.items, list):
            # `--names a` is ['a'], as `--names a --names b` is ['a', 'b']
            # (_convert_repeated): Typer's and argparse's one element. A
            # JSON array is the whole list; a word that starts with '['
            # and is no JSON, and a word the element refuses, keep the
            # errors below (with an example of what to type).
            try:
                return _elements(param, conv, [raw])
            except ValidationError:
                pass
        if v is _NOT_JSON:
            bad(f"JSON for {conv.label}, such as '{_json_example(conv)}'")
        return _check_typed(param, conv, v)
    if k == "union":
        v = _union_member(conv, _convert_member, param, raw)
        if v is _NO_MEMBER:
            bad(_union_expected(conv))
        return v
    return raw


_NOT_JSON = object()


def _convert_member(param, conv, raw):
    return _convert_raw(param, conv, raw, one=False)


def _elements(param, conv, words):
    """words (CLI strings) as the elements of the list or tuple parameter
    conv, each converted as its element's annotation converts a word."""
    items = conv.items
    if conv.kind == "tuple" and isinstance(items, list):
        if len(words) != len(items):
            _typed_mismatch(param, f"{len(items)} element{'' if len(items) == 1 else 's'} for {conv.label}", words)
        return tuple(_convert_raw(f"{param}[{i}]", c, w) for i, (c, w) in enumerate(zip(items, words)))
    out = [w if items is None else _convert_raw(f"{param}[{i}]", items, w) for i, w in enumerate(words)]
    return tuple(out) if conv.kind == "tuple" else out


def _convert_repeated(param, conv, words):
    """--NAME given once per element (`--xs 1 --xs 2`, argparse's
    action='append', click's multiple=True, Typer's list[X]): each word is
    one element. Only a list or tuple parameter (or an unannotated one:
    the words) takes them."""
    if len(words) == 1:
        return _convert_raw(param, conv, words[0])
    if conv.kind == "any":
        return list(words)
    if conv.kind in ("list", "tuple"):
        return _elements(param, conv, words)
    opt = "--" + param.replace("_", "-")
    shown = " ".join(f"{opt} {w}" for w in words)
    raise ValidationError(f"argument '{param}': given {len(words)} times ({shown}); only a list or tuple "
                          f"parameter takes an option more than once")


def _json_example(conv, n=0, depth=0):
    """A JSON text conv takes, for the error of a word that is not JSON
    (`--xs 1,2` for list[int]: '[1, 2]'); n picks the element (1 or 2)."""
    k = conv.kind if conv is not None else "any"
    if depth > 3:
        return "null"
    if k == "int":
        return str(n + 1)
    if k == "float":
        return f"{n + 1}.5"
    if k == "bool":
        return "false" if n % 2 else "true"
    if k == "none":
        return "null"
    if k == "literal" and conv.inner:
        return json.dumps(conv.inner[n % len(conv.inner)])
    if k == "union" and conv.items:
        return _json_example(conv.items[0], n, depth + 1)
    if k in ("list", "tuple"):
        items = conv.items
        parts = items if isinstance(items, list) else [items, items]
        return "[" + ", ".join(_json_example(c, i, depth + 1) for i, c in enumerate(parts)) + "]"
    if k == "dict":
        return '{"key": ' + _json_example(conv.items, n, depth + 1) + "}"
    return json.dumps("ab"[n % 2])


def _typed_mismatch(param, expected, v):
    """_check_typed's error; module-level, not a closure made on every
    call (a function object per argument per invoke showed in the warm
    instance's profile, docs/internals/performance-log.md round 19)."""
    raise ValidationError(f"argument '{param}': expected {expected}, got {json.dumps(v)[:80]}")


def _check_typed(param, conv, v):
    """Check (and lightly coerce) an already-typed JSON value."""
    if v is None and conv.optional:
        return None
    k = conv.kind
    if k == "any":  # unannotated: the value as it is
        return v
    if k == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                return int(v)
            _typed_mismatch(param, "an integer", v)
    elif k == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _typed_mismatch(param, "a number", v)
        return float(v)
    elif k == "bool":
        if not isinstance(v, bool):
            _typed_mismatch(param, "a boolean", v)
    elif k == "list":
        if not isinstance(v, list):
            _typed_mismatch(param, f"a JSON array for {conv.label}", v)
        if conv.items is not None:
            return [_check_typed(f"{param}[{i}]", conv.items, x) for i, x in enumerate(v)]
    elif k == "tuple":
        if not isinstance(v, list):
            _typed_mismatch(param, f"a JSON array for {conv.label}", v)
        return _check_tuple(param, conv, v)
    elif k == "dict":
        if not isinstance(v, dict):
            _typed_mismatch(param, f"a JSON object for {conv.label}", v)
        if conv.items is not None:
            return {key: _check_typed(f"{param}[{key!r}]", conv.items, x) for key, x in v.items()}
    elif k == "str":
        if not isinstance(v, str) and conv.exact_str:
            _typed_mismatch(param, "a string", v)
    elif k == "literal":
        return _literal_choice(param, conv, v)
    elif k == "union":
        member = _union_member(conv, _check_typed, param, v)
        if member is _NO_MEMBER:
            _typed_mismatch(param, _union_expected(conv), v)
        return member
    elif k == "path":
        if not isinstance(v, str):
            _typed_mismatch(param, "a path (a string)", v)
        import pathlib
        return pathlib.Path(v)
    elif k == "bytes":
        if isinstance(v, str):
            return v.encode()
        if not isinstance(v, bytes):
            _typed_mismatch(param, "bytes (a string, or {\"$bytes\": BASE64})", v)
    return v


def _check_tuple(param, conv, v):
    """tuple[X, ...] checks each element as X; tuple[X, Y] wants exactly
    that many, each checked by its own annotation."""
    items = conv.items
    if items is None:
        return tuple(v)
    if not isinstance(items, list):
        return tuple(_check_typed(f"{param}[{i}]", items, x) for i, x in enumerate(v))
    if len(v) != len(items):
        _typed_mismatch(param, f"{len(items)} element{'' if len(items) == 1 else 's'} for {conv.label}", v)
    return tuple(_check_typed(f"{param}[{i}]", c, x) for i, (c, x) in enumerate(zip(items, v)))


_validating = [False]  # validate() is binding: never unpickle (_convert)


def _holds_pickle(v):
    if isinstance(v, dict):
        return _rt._is_pickle_marker(v) or any(_holds_pickle(x) for x in v.values())
    if isinstance(v, list):
        return any(_holds_pickle(x) for x in v)
    return False


# The daemon's context (daemon-functions.c lambda_context_json()): an array
# of these inputs, in LambdaContext's attribute order. An array, not an
# object: the instance's JSON scanner read an object's keys at ~15k
# instructions per invoke, these values at ~7k (docs/internals/performance-log.md "The
# Lambda route's context (round 19)"). The log stream is the request id.
_CONTEXT_FIELDS = ("function_name", "function_version", "invoked_function_arn", "memory_limit_in_mb",
                   "aws_request_id", "log_group_name", "_deadline_ms")


class _ClientContextClient:
    """context.client_context.client on Lambda (the mobile SDK's fields)."""
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, d):
        for k in self.__slots__:
            setattr(self, k, d.get(k))


class _ClientContext:
    """context.client_context on Lambda: the invoke's ClientContext
    (X-Amz-Client-Context, a JSON object) as .custom, .env and .client."""
    __slots__ = ("custom", "env", "client")

    def __init__(self, d):
        self.custom = d.get("custom")
        self.env = d.get("env")
        c = d.get("client")
        self.client = _ClientContextClient(c) if isinstance(c, dict) else c


def _client_context(d):
    return _ClientContext(d) if isinstance(d, dict) else None


class LambdaContext:
    """What AWS Lambda passes as `context`: the invocation's metadata and
    get_remaining_time_in_millis(). Made from the daemon's array
    (_CONTEXT_FIELDS) or from an object with the attributes' names (a run
    queued by an older daemon, a client's {"context": {...}} argument)."""

    def __init__(self, d):
        if type(d) is list and len(d) in (len(_CONTEXT_FIELDS), len(_CONTEXT_FIELDS) + 1) and type(d[3]) is int:
            # The daemon's array: one unpacking, the attributes in the
            # order the object form gives them; an eighth value is the
            # invoke's client context.
            (self.function_name, self.function_version, self.invoked_function_arn, self.memory_limit_in_mb,
             self.aws_request_id, self.log_group_name, deadline_ms) = d[:7]
            self.log_stream_name = self.aws_request_id
            self.identity = None
            self.client_context = _client_context(d[7]) if len(d) > 7 else None
            self._deadline_ms = deadline_ms
            return
        if not isinstance(d, dict):
            d = {}
        self.function_name = d.get("function_name", "")
        self.function_version = d.get("function_version", "$LATEST")
        self.invoked_function_arn = d.get("invoked_function_arn", "")
        self.memory_limit_in_mb = int(d.get("memory_limit_in_mb", 0) or 0)
        self.aws_request_id = d.get("aws_request_id", "")
        self.log_group_name = d.get("log_group_name", "")
        self.log_stream_name = d.get("log_stream_name", "")
        self.identity = None
        self.client_context = _client_context(d.get("client_context"))
        self._deadline_ms = d.get("deadline_ms")

    def get_remaining_time_in_millis(self):
        import time
        if not self._deadline_ms:
            return 0
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self):
        return f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r})"


# JSON's scalars: from_jsonable() returns them as they are, and none holds
# a pickle.
_JSON_SCALARS = _rt._JSON_SCALARS


def _convert(param, conv, item):
    if type(item) is dict and len(item) == 1 and "value" in item:
        # The common encoding first: a scalar {"value": V} is V, checked
        # (what the general path below makes of it, without its tests).
        v = item["value"]
        if type(v) in _JSON_SCALARS:
            return _check_typed(param, conv, v)
    if isinstance(item, dict) and len(item) == 1 and "context" in item:
        return LambdaContext(item["context"])
    if isinstance(item, dict) and len(item) == 1 and item.get("bare") is True:
        # --NAME with no value after it: a flag, for a bool parameter only
        # (a forgotten value elsewhere must not become True silently).
        if conv.kind == "bool":
            return True
        opt = "--" + param.replace("_", "-")
        raise ValidationError(f"argument '{param}': a value is needed (only a bool parameter is a flag "
                              f"without one): {opt} VALUE, or {opt}=VALUE for a value that starts with '-'")
    if not isinstance(item, dict) or len(item) != 1 or not ("value" in item or "raw" in item):
        raise ValidationError(f"argument '{param}': malformed argument encoding")
    if "raw" in item:
        raw = item["raw"]
        if type(raw) is list and raw and all(type(w) is str for w in raw):
            return _convert_repeated(param, conv, raw)
        if not isinstance(raw, str):
            raise ValidationError(f"argument '{param}': raw value must be a string")
        return _convert_raw(param, conv, raw)
    # {"$bytes": BASE64} (an upstream task's or the client's bytes) arrives
    # as bytes, {"$pickle": …} (an upstream pysprinter.pickled) as its
    # value: unpickled here, in this tenant's sandbox, never in the daemon.
    # Nor in the validator: it runs in the worker every tenant's runs fork
    # from, and unpickling runs code (a pickle's exec() there was seen by
    # the next tenant's runs). Its type is checked by the run's own child,
    # which binds such a run itself (_compiled makes nothing for it).
    if _validating[0] and _holds_pickle(item["value"]):
        return None
    try:
        value = _rt.from_jsonable(item["value"], unpickle=True)
    except Exception as e:
        raise ValidationError(f"argument '{param}': cannot unpickle the value: {type(e).__name__}: {_safe_str(e)}")
    return _check_typed(param, conv, value)


class _BindPlan:
    """What _bind reads of a signature, worked out once: a warm instance
    binds every invocation to the same function, and deriving the parameter
    sets and converters from the AST each time was ~40% of its Python time
    per invoke (docs/internals/performance-log.md, round 7). Converters are never mutated
    once made, so one per parameter serves every call; each is made when a
    call first binds its parameter, as before (an annotation no call uses
    is never looked at)."""

    def __init__(self, fn):
        a = fn.args
        self.posonly = {p.arg for p in a.posonlyargs}
        self.positional = [p.arg for p in a.posonlyargs + a.args]
        n_defaults = len(a.defaults)
        self.required_pos = {p.arg for p in (a.posonlyargs + a.args)[:len(self.positional) - n_defaults]}
        self.kwonly = [p.arg for p in a.kwonlyargs]
        self.kwonly_required = {p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is None}
        # Every parameter a call must bind: one subset test per call, the
        # missing ones listed (in signature order) only when it fails.
        self.required = frozenset(self.required_pos | self.kwonly_required)
        self.annotations = {p.arg: p.annotation for p in a.posonlyargs + a.args + a.kwonlyargs}
        self.convs = {}
        self.names = {p.arg for p in a.args + a.kwonlyargs}
        self.known = [p.arg for p in a.args + a.kwonlyargs]
        self.vararg = a.vararg
        self.kwarg = a.kwarg

    def conv(self, name, node):
        c = self.convs.get(name)
        if c is None:
            c = self.convs[name] = _conv_from_annotation(node)
        return c


_BARE = {"bare": True}  # --NAME with no value after it (cli-args.c)
_FALSE = {"value": False}


def _bind(fn, args, kwargs, plan=None):
    """Bind encoded args/kwargs to fn's signature (from the AST, or plan:
    fn's _BindPlan when the caller keeps one); returns (positional values,
    keyword values) after conversion."""
    if plan is None:
        plan = _BindPlan(fn)
    positional = plan.positional
    annotations = plan.annotations
    out_args, out_kwargs, bound = [], {}, set()
    # Parameters bound by a flag without a value (--flag, --no-flag): the
    # last of them wins, in the order the options came (the kwargs'
    # order), as argparse's store_true/store_false into one dest and
    # click's --flag/--no-flag have it.
    flagged = set()

    if not isinstance(args, list):
        raise ValidationError("positional arguments must be a list")
    if not isinstance(kwargs, dict):
        raise ValidationError("keyword arguments must be an object")

    for i, item in enumerate(args):
        if i < len(positional):
            name = positional[i]
            out_args.append(_convert(name, plan.conv(name, annotations[name]), item))
            bound.add(name)
        elif plan.vararg:
            name = f"*{plan.vararg.arg}"
            out_args.append(_convert(name, plan.conv(name, plan.vararg.annotation), item))
        else:
            raise ValidationError(
                f"{fn.name}() takes {len(positional)} positional argument"
                f"{'' if len(positional) == 1 else 's'} but {len(args)} "
                f"{'was' if len(args) == 1 else 'were'} given")

    for name, item in kwargs.items():
        if name in plan.posonly:
            # As in Python, a positional-only parameter's name given as a
            # keyword is one more **kwargs item (f(a, /, **kw): f(1, a=2)
            # is kw == {'a': 2}); it binds no parameter.
            if not plan.kwarg:
                raise ValidationError(f"{fn.name}() got a positional-only argument passed as a keyword: "
                                      f"'{name}' (give it with -a VALUE)")
            out_kwargs[name] = _convert(name, plan.conv("**", plan.kwarg.annotation), item)
            continue
        flag = item == _BARE
        if flag and name not in plan.names and name[:3] == "no_":
            # --no-NAME, nothing after it: NAME=False for a bool NAME
            # (click's and Typer's --flag/--no-flag).
            off = name[3:]
            if off in plan.names and plan.conv(off, annotations[off]).kind == "bool":
                name, item = off, _FALSE
        if name in bound and not (flag and name in flagged):
            raise ValidationError(f"{fn.name}() got multiple values for argument '{name}'")
        if flag:
            flagged.add(name)
        if name in plan.names:
            out_kwargs[name] = _convert(name, plan.conv(name, annotations[name]), item)
        elif plan.kwarg:
            out_kwargs[name] = _convert(name, plan.conv("**", plan.kwarg.annotation), item)
        else:
            known = plan.known
            hint = f" (parameters: {', '.join(known)})" if known else " (it takes no named parameters)"
            raise ValidationError(f"{fn.name}() got an unexpected keyword argument '{name}'{hint}")
        bound.add(name)

    if plan.required <= bound:
        return out_args, out_kwargs
    missing = [p for p in positional if p in plan.required_pos and p not in bound]
    missing += [p for p in plan.kwonly if p in plan.kwonly_required and p not in bound]
    if missing:
        which = ", ".join(f"'{p}'" for p in missing)
        raise ValidationError(
            f"{fn.name}() missing {len(missing)} required argument{'s' if len(missing) > 1 else ''}: {which}"
            f" (give positional values with -a VALUE, named ones with --NAME VALUE)")  # RUN_ARGUMENT_HINT
    return out_args, out_kwargs


# ---- parameters converted at call time -------------------------------------------
# Arguments are bound from the AST before the module runs: a name such as
# `Color` (an Enum of the file) or `datetime` is then an unknown annotation
# and its value stays the string the user typed. Once the module ran, the
# function object tells which of its parameters are annotated with an
# enum.Enum (Typer's and pydantic's choices), a datetime, date, time,
# timedelta, Decimal or UUID: their values become those objects.

_BUILTIN_NAMES = frozenset(vars(builtins))


def _iso_conv(cls, what):
    def conv(param, v):
        if type(v) is not str:
            return v
        try:
            return cls.fromisoformat(v)
        except ValueError:
            raise ValidationError(f"argument '{param}': expected a {cls.__name__} (ISO 8601: {what}), got {v!r}")
    return conv


def _seconds_conv(cls):
    def conv(param, v):
        if type(v) in (int, float) or type(v) is str:
            try:
                return cls(seconds=float(v))
            except (ValueError, OverflowError):
                pass
            raise ValidationError(f"argument '{param}': expected a {cls.__name__} (seconds), got {v!r}")
        return v
    return conv


def _text_conv(cls, what, errors):
    def conv(param, v):
        if type(v) is str or (what == "a number" and type(v) in (int, float)):
            try:
                return cls(str(v))
            except errors:
                raise ValidationError(f"argument '{param}': expected a {cls.__name__} ({what}), got {v!r}")
        return v
    return conv


def _class_conv(cls):
    """The converter (param, value) -> value of a parameter annotated with
    the class cls, or None when cls takes what the validator bound."""
    enum = sys.modules.get("enum")
    if enum is not None and issubclass(cls, enum.Enum):
        return lambda param, v: _enum_member(param, cls, v)
    mod = sys.modules.get(cls.__module__)
    if mod is None or getattr(mod, cls.__name__, None) is not cls:
        return None
    key = (cls.__module__, cls.__name__)
    if key == ("datetime", "datetime"):
        return _iso_conv(cls, "2024-01-02T03:04:05")
    if key == ("datetime", "date"):
        return _iso_conv(cls, "2024-01-02")
    if key == ("datetime", "time"):
        return _iso_conv(cls, "03:04:05")
    if key == ("datetime", "timedelta"):
        return _seconds_conv(cls)
    if key == ("decimal", "Decimal"):
        return _text_conv(cls, "a number", (ArithmeticError, ValueError))
    if key == ("uuid", "UUID"):
        return _text_conv(cls, "8-4-4-4-12 hex digits", ValueError)
    return None


# Classes no call-time converter takes: skipped without a look.
_BOUND_CLASSES = frozenset((str, int, float, bool, list, dict, tuple, bytes, set, frozenset, object, type(None)))


def _late_annotation(a, fn):
    """(converter, container) when the annotation a is a class _class_conv()
    converts, Optional[C] / C | None (container None), list[C] (list) or
    tuple[C, ...] (tuple); None for anything else. A string annotation
    (`"Color"`, or every one under `from __future__ import annotations`)
    is evaluated in the function's module, as typing.get_type_hints()
    does."""
    if type(a) is type and a in _BOUND_CLASSES:
        return None
    if type(a) is str:
        g = getattr(fn, "__globals__", None)
        if g is None or a in _BUILTIN_NAMES and a not in g:  # "int": never one
            return None
        try:
            a = g[a] if a in g else eval(a, g)  # the run's own code, in its sandbox
        except Exception:
            return None
    if getattr(a, "__metadata__", None) is not None:  # Annotated[C, ...]
        a = a.__origin__
    if isinstance(a, type):
        conv = _class_conv(a)
        return (conv, None) if conv is not None else None
    members = getattr(a, "__args__", None)
    if type(members) is not tuple:
        return None
    origin = getattr(a, "__origin__", None)
    inner, container = None, None
    if origin in (list, tuple):
        if origin is tuple and not (len(members) == 2 and members[1] is Ellipsis):
            return None
        inner, container = (members[0] if members else None), origin
    else:
        rest = [m for m in members if m is not type(None)]
        if len(rest) == 1 and len(members) == 2:  # Optional[C], C | None
            inner = rest[0]
    conv = _class_conv(inner) if isinstance(inner, type) else None
    return (conv, container) if conv is not None else None


def _late_plan(fn):
    """{parameter name: (converter, container)} of fn's parameters
    converted at call time, and the names of its positional parameters,
    *args and **kwargs (from its code: what binds each value); None when it
    has none. Read once per run, once per warm instance."""
    f = fn
    for _ in range(100):  # functools.wraps: the function the AST described
        if not hasattr(f, "__wrapped__"):
            break
        f = f.__wrapped__
    ann = getattr(f, "__annotations__", None)
    code = getattr(f, "__code__", None)
    if not ann or type(ann) is not dict or code is None:
        return None
    late = {}
    for name, a in ann.items():
        if name != "return":
            try:
                found = _late_annotation(a, f)
            except Exception:  # an annotation object of the user's that raises when looked at
                found = None
            if found is not None:
                late[name] = found
    if not late:
        return None
    n = code.co_argcount
    names = code.co_varnames
    vararg = names[n + code.co_kwonlyargcount] if code.co_flags & 0x04 else None  # CO_VARARGS
    varkw = names[n + code.co_kwonlyargcount + bool(vararg)] if code.co_flags & 0x08 else None  # CO_VARKEYWORDS
    return late, names[:n], set(names[:n + code.co_kwonlyargcount]), vararg, varkw


def _enum_member(param, E, v):
    """The member of E that v (a CLI word or a typed JSON value) names: by
    value first (a word spells a number as a Literal's does), then by
    name; else the arguments' error, listing both."""
    if v is None or isinstance(v, E):
        return v
    for m in E:
        x = m.value
        if v == x and type(v) is not bool and type(x) is not bool or type(v) is type(x) and v == x:
            return m
        if type(v) is str and type(x) in (int, float, bool) and _literal_spells(x, v):
            return m
    if type(v) is str and v in E.__members__:
        return E.__members__[v]
    values = ", ".join(repr(m.value) for m in E)
    names = ", ".join(E.__members__)
    got = repr(v) if type(v) is str else json.dumps(v)[:80] if type(v) in _JSON_SCALARS else type(v).__name__
    raise ValidationError(f"argument '{param}': expected a {E.__name__}: one of {values} (or a name: {names}), "
                          f"got {got}")


def _late_value(param, found, v):
    conv, container = found
    if v is None:
        return v
    if container is None or not isinstance(v, (list, tuple)):
        return conv(param, v)
    return container(conv(f"{param}[{i}]", x) for i, x in enumerate(v))


def _late_args(plan, args, kwargs):
    """args and kwargs with each value of a parameter in plan (_late_plan's)
    converted; raises ValidationError for a value its type refuses."""
    late, positional, names, vararg, varkw = plan
    args = list(args)
    for i, v in enumerate(args):
        name = positional[i] if i < len(positional) else vararg
        found = late.get(name)
        if found is not None:
            args[i] = _late_value(name if i < len(positional) else f"*{name}", found, v)
    kwargs = dict(kwargs)
    for name, v in kwargs.items():
        found = late.get(name if name in names else varkw)
        if found is not None:
            kwargs[name] = _late_value(name, found, v)
    return args, kwargs


def _call_args(req, fn):
    """The positional arguments of a call; Lambda's handler(event, context)
    gets the context as the last one. {"if_missing": CONTEXT} (an invoke
    that gave the event alone, daemon-functions.c) only when fn's second
    parameter has no default: a call that worked without it is unchanged."""
    raw_args = list(req.get("args") or [])
    ctx = req.get("context")
    if type(ctx) is dict and "if_missing" in ctx:
        ctx = ctx["if_missing"] if not _has_defaults(fn) and _wants_context(fn) else None
    if ctx is not None:
        raw_args.append({"context": ctx})
    return raw_args


def _wants_context(fn):
    """Whether fn's second parameter is named as a Lambda handler's context
    is (`context`, `ctx`, `lambda_context`, ...): `def add(a, b)` invoked
    with one argument is a missing argument, not a handler wanting its
    context (it got a LambdaContext as b and raised TypeError)."""
    a = getattr(fn, "args", None)
    if isinstance(a, ast.arguments):
        names = [p.arg for p in a.posonlyargs + a.args]
    else:
        while hasattr(fn, "__wrapped__"):
            fn = fn.__wrapped__
        code = getattr(fn, "__code__", None)
        names = list(code.co_varnames[:code.co_argcount]) if code else []
    if len(names) < 2:
        return False
    name = names[1].lower().strip("_")
    return name in ("ctx", "context") or name.endswith("context") or name.endswith("_ctx")


def _has_defaults(fn):
    """Whether fn (its ast node at validation, the function in a run) has
    positional parameters with defaults."""
    a = getattr(fn, "args", None)
    if isinstance(a, ast.arguments):
        return bool(a.defaults)
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return bool(getattr(fn, "__defaults__", None))


def _signature_text(fn):
    """The signature as PEP 8 spells it, `greet(name: str, n: int = 1) ->
    str` (ast.unparse writes `n: int=1`), for `run FILE --help`."""
    a = fn.args

    def param(p, default, stars=""):
        text = stars + p.arg + (f": {ast.unparse(p.annotation)}" if p.annotation is not None else "")
        if default is not None:
            text += f" = {ast.unparse(default)}" if p.annotation is not None else f"={ast.unparse(default)}"
        return text

    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    parts = [param(p, d) for p, d in zip(positional, defaults)]
    if a.posonlyargs:
        parts.insert(len(a.posonlyargs), "/")
    if a.vararg is not None:
        parts.append(param(a.vararg, None, "*"))
    elif a.kwonlyargs:
        parts.append("*")
    parts += [param(p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        parts.append(param(a.kwarg, None, "**"))
    returns = f" -> {ast.unparse(fn.returns)}" if fn.returns is not None else ""
    return f"{fn.name}({', '.join(parts)}){returns}"


def _parameters(fn):
    """The parameter names in signature order, "*args" and "**kw" with their
    stars and a bare "*" for keyword-only markers: what the daemon's Lambda
    calling rule reads (it never parses Python itself)."""
    a = fn.args
    out = [p.arg for p in a.posonlyargs + a.args]
    if a.vararg is not None:
        out.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        out.append("*")
    out += [p.arg for p in a.kwonlyargs]
    if a.kwarg is not None:
        out.append("**" + a.kwarg.arg)
    return out


def _analyse(req):
    source = _source(req)
    filename = req.get("filename") or "<input>"
    tree = _parse(source, filename)
    fn, call = _find_function(tree, req.get("function"), filename)
    try:
        reqs = _literal_requirements(call, filename) if call is not None else {}
        if req.get("_skip_bind") or req.get("bind") is False:
            return tree, fn, reqs, [], {}
        args, kwargs = _bind(fn, _call_args(req, fn), req.get("kwargs") or {})
    except ValidationError as e:
        # Found, then refused (its arguments, its requirements): the
        # answer still names the function and its parameters.
        e.fn = fn
        raise
    return tree, fn, reqs, args, kwargs


# The most parser and compiler warnings a validation reply carries.
_WARNINGS_MAX = 100


def _warnings_text(caught, source, filename):
    """The warnings CPython's parser and compiler gave for the file
    (SyntaxWarning: '"is" with a literal', an invalid escape sequence),
    recorded by validate() instead of written on the worker's stderr —
    which is the CLI's own embedded, but the daemon's log on a server — as
    Python writes them, with the line taken from the source sent (never
    from a file of that name: CPython's linecache reads one from the
    worker's directory, the user's with --sandbox=none). The engine writes
    this text on the run's stderr: the same bytes on both paths."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out = []
    for w in caught[:_WARNINGS_MAX]:
        n = w.lineno or 0
        line = lines[n - 1] if w.filename == filename and 0 < n <= len(lines) else ""
        out.append(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, line))
    if len(caught) > _WARNINGS_MAX:
        out.append(f"{filename}: {len(caught) - _WARNINGS_MAX} more warnings not shown\n")
    return "".join(out)


class _QuietCompiler(warnings.catch_warnings):
    """Parser and compiler warnings dropped: a run child or an instance
    that parses or compiles the file again (validation reported them
    already, _warnings_text) would print them a second time."""

    def __enter__(self):
        r = super().__enter__()
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return r


def _error_reply(e, filename):
    err = {"type": e.kind, "message": e.message}
    if e.line is not None:
        err["filename"] = filename
        err["line"] = e.line
    if e.col is not None:
        err["col"] = e.col
    if e.text:
        err["text"] = e.text.rstrip("\n")
    reply = {"ok": False, "error": err}
    if e.fn is not None:
        reply["function"] = e.fn.name
        reply["parameters"] = _parameters(e.fn)
    return reply


def validate(request_json):
    """Check a file and its arguments without executing any of it. Past
    the memory limit of a large file's validation, worker.c tells the limit
    from what this answered (or raised) by how near it came."""
    req = json.loads(request_json)
    filename = req.get("filename") or "<input>"
    with warnings.catch_warnings(record=True) as caught:
        reply = _validate(req, filename)
    if caught:
        reply["warnings"] = _warnings_text(caught, _source(req), filename)
    return json.dumps(reply)


def _validate(req, filename):
    _validating[0] = True
    try:
        tree, fn, reqs, args, kwargs = _analyse(req)
    except ValidationError as e:
        return _error_reply(e, filename)
    except RecursionError:
        return _error_reply(ValidationError(f"{filename} is nested too deeply to parse"), filename)
    finally:
        _validating[0] = False
    params = [p.arg for p in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    imports = sorted(_top_level_imports(tree))
    reply = {
        "ok": True,
        "function": fn.name,
        "signature": _signature_text(fn),
        "doc": ast.get_docstring(fn),
        "params": params,
        "parameters": _parameters(fn),
        "is_async": isinstance(fn, ast.AsyncFunctionDef),
        "requirements": reqs,
        "imports": imports,
    }
    try:
        compiled = _compiled(req, tree, fn, args, kwargs, filename)
    except ValidationError as e:  # the compiler refused what the parser took
        return _error_reply(e, filename)
    if compiled is not None:
        reply["compiled"] = compiled
    return reply


# The largest code object and bound arguments (marshalled) a validation
# reply carries; a bigger file's run compiles in its own child as before.
_COMPILED_MAX = 256 << 10


def _compile_error(e, req, fn=None):
    """The ValidationError of a SyntaxError compile() raised for a tree
    ast.parse accepted ('break' outside a loop, a nonlocal with no
    binding, too many nested blocks): the file's error, located as a
    parser's is (file:line:col, the line and a caret), its line taken from
    the source sent (the compiler reads it from a file of that name)."""
    text = None
    if e.lineno:
        lines = _source(req).splitlines()
        text = lines[e.lineno - 1] if 0 < e.lineno <= len(lines) else None
    err = ValidationError(e.msg, e.lineno, e.offset if text is not None else None, text, kind=type(e).__name__)
    err.fn = fn
    return err


def _compiled(req, tree, fn, args, kwargs, filename):
    """What a run child would otherwise work out itself from the source:
    the module's code object and the bound, converted arguments, marshalled
    (issue 15 (c): ast.parse, binding and compile were ~265 µs and ~33
    copy-on-write faults of every run child). Made here, where the file is
    validated anyway, and only for what is a pure function of the request
    (the validation cache's key): none when the call carries a Lambda
    context (its values are per call, not in the key) or a pickled value
    (unpickled in the run's own sandbox, never here: unpickling runs code),
    none when compile() refuses what ast.parse accepted (the child then
    raises that SyntaxError as the run's error, as before) or a value does
    not marshal. The child loads what it gets and never compiles."""
    try:
        # Compiled in every case: the compiler's warnings are the
        # validation's to report (validate()), whoever compiles to run.
        code = compile(tree, filename, "exec")
    except SyntaxError as e:
        raise _compile_error(e, req, fn)
    except (ValueError, TypeError, RecursionError, MemoryError):
        return None
    if req.get("context") is not None or _holds_pickle(req.get("args")) or _holds_pickle(req.get("kwargs")):
        return None
    try:
        code = marshal.dumps(code)
        bound = marshal.dumps((tuple(args), kwargs))
    except (ValueError, TypeError, RecursionError, MemoryError):
        return None
    if len(code) + len(bound) > _COMPILED_MAX:
        return None
    return {"function": fn.name,
            "code": binascii.b2a_base64(code, newline=False).decode("ascii"),
            "bound": binascii.b2a_base64(bound, newline=False).decode("ascii")}


def _top_level_imports(tree):
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


# ---- running -----------------------------------------------------------------

def _user_traceback(exc, filename):
    """The traceback from the user's first frame on: the runner's frames are
    noise to the user."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


# json.dumps() with any keyword argument builds a JSONEncoder per call; these
# are made once (encode() writes exactly what dumps() with the same options
# writes). Each was ~1 µs of a warm invoke's ~20 µs of Python.
_VALUE_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_RESULT_JSON = json.JSONEncoder(ensure_ascii=False)
_MESSAGE_JSON = json.JSONDecoder()
# A JSON string's text as JSONEncoder(ensure_ascii=False).encode(str) writes it.
_json_string = json.encoder.encode_basestring


def _escape_unencodable(err):
    """A lone surrogate (\\udcff, from os.fsdecode() or surrogateescape) is not
    UTF-8, and the engine reads only UTF-8 (jansson): inside a JSON string,
    where it can only be, it becomes the six characters a repr() shows
    (backslash-u and four hex digits), backslash escaped so that JSON reads
    them back as text. An exception's message or a repr() that holds one
    reaches the user instead of an unreadable result."""
    return "".join("\\\\u%04x" % ord(ch) for ch in err.object[err.start:err.end]), err.end


codecs.register_error("pysprinter-json", _escape_unencodable)


def _serialise(value):
    """The result's JSON view by the table in docs/python.md (runtime.py's
    to_jsonable), converted here in the sandbox so the daemon only ever sees
    JSON; repr() with a warning for anything the table does not cover."""
    try:
        t = type(value)
        # The scalars' JSON text spelled out (what the table and the
        # encoder make of them): a run returning one skips the table's
        # Python and the encoder's, whose objects it would copy (issue 15
        # (c), round 10). An int too long for str() raises as there.
        if t is int:
            text = int.__repr__(value)
        elif t is str:
            text = _json_string(value)
        elif value is None or t is bool:
            text = "null" if value is None else "true" if value else "false"
        else:
            text = _VALUE_JSON.encode(_rt.to_jsonable(value))
        # A lone surrogate is not UTF-8 and has no JSON view: encode()
        # raises UnicodeEncodeError, and the value takes the repr() path.
        # isascii() is O(1): CPython's str knows.
        if (len(text) if text.isascii() else len(text.encode())) > _MAX_RESULT_BYTES:
            return _TOO_BIG
        return {"ok": True, "json": text}
    except Exception:
        # Not only ConversionError: the table calls the value's own code
        # (model_dump(), a dataclass's fields, tolist()), which may raise
        # anything; a result that cannot be shown is not a failed run.
        try:
            r = repr(value)
        except Exception as e:  # a hostile __repr__
            r = f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"
        if len(r) > _MAX_RESULT_BYTES:
            return _TOO_BIG
        return {"ok": True, "json": None, "repr": _shown(r), "type": _shown(type(value).__name__)}


def _write_result(fd, obj):
    data = _result_text(obj).encode("utf-8", "pysprinter-json")
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# A warm instance's invocation number, and the number each thread started
# during an invocation carries (threads started by such a thread inherit
# it). A thread left running by one invocation writes nothing through
# sys.stdout/sys.stderr once another invocation runs: its text would land
# in that invocation's log. Threads started outside any invocation (the
# module's own) and the serving thread always write. Bytes written to fds
# 1/2 directly cannot be told apart: see docs/workers.md.
_INVOCATION = [0]


def _tag_threads():
    import threading
    start = threading.Thread.start

    def tagged_start(self):
        if _INVOCATION[0]:
            me = threading.current_thread()
            self._pysprinter_invocation = getattr(me, "_pysprinter_invocation", _INVOCATION[0])
        return start(self)
    threading.Thread.start = tagged_start


def _text_stream(fd, cls):
    import io
    raw = io.FileIO(fd, "w", closefd=False)
    return cls(raw, encoding="utf-8", errors="backslashreplace",
               line_buffering=True, write_through=True)


def _setup_streams(per_invocation=False):
    # Unbuffered text streams: output reaches the runner as it is produced,
    # including partial lines (a progress bar without newlines).
    import io
    premade = _premade_streams[0]
    if premade and not per_invocation:
        # Made once in the worker (zygote) before its gc.freeze(): a run
        # only binds them, instead of building three stream objects whose
        # making writes ~100 of the worker's pages into this process.
        _premade_streams[0] = None
        sys.stdout = sys.__stdout__ = premade[0]
        sys.stderr = sys.__stderr__ = premade[1]
        sys.stdin = sys.__stdin__ = premade[2]
        _streams_mode[0] = False
        return
    cls = io.TextIOWrapper
    if per_invocation:
        # Made only where used: a class made per run child costs it the
        # pages its type object and MRO touch (~0.25 MiB copied per fork).
        import threading
        current = threading.current_thread

        class InvocationStream(io.TextIOWrapper):
            def write(self, s):
                tag = getattr(current(), "_pysprinter_invocation", None)
                if tag is not None and tag != _INVOCATION[0]:
                    return len(s)  # a stale invocation's thread: dropped
                return super().write(s)
        cls = InvocationStream

    sys.stdout = sys.__stdout__ = _text_stream(1, cls)
    sys.stderr = sys.__stderr__ = _text_stream(2, cls)
    # fd 0 is /dev/null already: wrap it rather than open another fd.
    sys.stdin = sys.__stdin__ = open(0, "r", closefd=False)
    _streams_mode[0] = per_invocation


# A run's three streams, made by the worker before its gc.freeze() and
# inherited by every process it forks (None once bound, or never made).
_premade_streams = [None]


def _premake_streams():
    """In the worker, before it forks: the stream objects each run binds
    as sys.stdout, sys.stderr and sys.stdin, made as a run makes its own.
    They wrap fds 1, 2 and 0 by number; a stream asks its fd once, when
    made, whether it can seek, so they are made while those numbers hold
    what a run has there (a pipe, a pipe, /dev/null), then the worker's
    own fds come back. Never written or read in the worker: each run gets
    them as fresh as if it had made them. (A sealed spare used to make
    them over /dev/null, so a run's sys.stdout.seekable() said True.)"""
    import io
    saved = (os.dup(0), os.dup(1), os.dup(2))
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(null, 0)
        os.dup2(w, 1)
        os.dup2(w, 2)
        made = (_text_stream(1, io.TextIOWrapper), _text_stream(2, io.TextIOWrapper),
                open(0, "r", closefd=False))
    finally:
        for fd, s in enumerate(saved):
            os.dup2(s, fd)
        for fd in saved + (r, w, null):
            os.close(fd)
    _premade_streams[0] = made
    # The worker's own streams stay referenced here, so a run that rebinds
    # sys.stdout does not finalize them: their finalizer (flush and close,
    # Python code) would write pages of the worker, and flush into the
    # run's fd 1 whatever the worker's stdout still buffered.
    _worker_streams[0] = (sys.stdout, sys.stderr, sys.stdin, sys.__stdout__, sys.__stderr__, sys.__stdin__)


_worker_streams = [None]


# The per_invocation mode the streams were set up with in this process (None:
# not yet). A sealed spare sets them up while idle: they wrap fds 0-2 by
# number, and the run's pipes are dup2()ed onto those numbers.
_streams_mode = [None]

_WARM_SOURCE = (
    "def warm(x: int = 1, *, name: str = 'a'):\n"
    "    return {'x': [x, x + 1.5, name, None, True]}\n"
)


def _warm_run():
    """One small run of the runner's own, as a run does it (parse, bind,
    compile, exec, call, JSON) with no output, no module registered and
    nothing in linecache: nothing a run could see."""
    req = json.loads(json.dumps({"source": _WARM_SOURCE, "filename": "<warm>", "function": "warm",
                                 "args": [{"value": 1}], "kwargs": {"name": {"raw": "b"}}}))
    tree, fn, _reqs, args, kwargs = _analyse(req)
    ns = {"__name__": "_pysprinter_warm"}
    exec(compile(tree, "<warm>", "exec"), ns)
    json.dumps(_serialise(_resolve_value(ns[fn.name](*args, **kwargs))), ensure_ascii=False)
    # The function and its globals (ns) refer to each other: a cycle only
    # a collection frees. A spare's warm-up is followed by its run, which
    # since round 9 may allocate too little to trigger one (it loads its
    # code instead of compiling it), so the run saw `warm` in
    # gc.get_objects(). Cleared here, both go at once.
    ns.clear()


# How many small runs the worker (the zygote every run is forked from)
# makes before its gc.freeze(): CPython 3.11 quickens a code object after 8
# calls and then rewrites its instructions into specialised forms (and
# backs off on misses) over the next few, and the type attribute cache and
# the interned strings fill with what a run looks up. Done here, in the
# zygote, every forked run only reads those pages instead of copying them.
_ZYGOTE_WARM_RUNS = 32
_zygote_warmed = [0]  # small runs the zygote made (tests look)


def _warm_zygote():
    for _ in range(_ZYGOTE_WARM_RUNS):
        _warm_run()
        _zygote_warmed[0] += 1
    try:
        _rehearse_compiled_runs()
    except OSError:
        pass  # no fd for /dev/null: the runs warm their own path, as before


# The module name and file of the zygote's rehearsal runs (never a run's:
# restored to whatever they held when the rehearsal ends).
_REHEARSAL_FILE = "_pysprinter_rehearsal.py"
_REHEARSAL_MODULE = "_pysprinter_rehearsal"


def _rehearse_compiled_runs():
    """A run's own path, rehearsed in the zygote (issue 15 (c), round 13):
    _warm_run() compiles its source, but a run loads the code validation
    compiled for it (_load_compiled), reads its message with the scanner
    (_run_message), registers its module (_user_module) and writes its
    result to a pipe (_write_result), all called from run(), which the C
    side looks up on this module as `run` (and `spare_ready`/`spare_warm`
    in a spare). Code the zygote never ran was unquickened in every run
    child (each call writes the code object's warm-up counter) and the
    type cache lacked the lookups it makes (each fills an entry of
    libpython's .bss): pages every run copied. So the zygote runs run()
    itself, as many times as its small runs, on a validated message of its
    own, with the result written to /dev/null and the streams left alone
    (the run's own are bound only in a run), then takes back what a run
    leaves: the module registered under its name, its linecache entry, the
    scanner's count. The cycle between the module's function and its
    globals is freed by settle()'s collection, before the freeze."""
    req = {"source": _WARM_SOURCE, "filename": _REHEARSAL_FILE, "function": "warm",
           "args": [{"value": 1}], "kwargs": {"name": {"raw": "b"}}}
    tree, fn, _reqs, args, kwargs = _analyse(req)
    compiled = _compiled(req, tree, fn, args, kwargs, _REHEARSAL_FILE)
    if compiled is None:
        return
    message = json.dumps({"source": _WARM_SOURCE, "filename": _REHEARSAL_FILE, "compiled": compiled})
    this = sys.modules[__name__]
    had_module = sys.modules.get(_REHEARSAL_MODULE)
    had_lines = linecache.cache.get(_REHEARSAL_FILE)
    scanned = _message_scanned[0]
    mode = _streams_mode[0]
    null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _streams_mode[0] = False  # the zygote's own streams stay bound
        for _ in range(_ZYGOTE_WARM_RUNS):
            for name in ("run", "spare_ready", "spare_warm"):
                getattr(this, name)  # the C side's look-ups (PyObject_CallMethod)
            run(message, null)
    finally:
        os.close(null)
        _streams_mode[0] = mode
        _message_scanned[0] = scanned
        if had_module is None:
            sys.modules.pop(_REHEARSAL_MODULE, None)
        else:
            sys.modules[_REHEARSAL_MODULE] = had_module
        if had_lines is None:
            linecache.cache.pop(_REHEARSAL_FILE, None)
        else:
            linecache.cache[_REHEARSAL_FILE] = had_lines


def spare_ready(warm=True):
    """In a spare the engine made, sealed, after Python's after-fork work,
    while it waits for its run: what every run does first (its streams, and
    one small run of our own), so that the pages of the worker those write
    are copied now and not on the run's critical path. Leaves nothing a run
    could see: no module registered, nothing in linecache, no output, no
    environment. warm False (a spare made while other runs are in flight,
    issue 15 (c)): the streams only; the small run costs a run ~0.2 ms of
    CPU more in all (its own work besides the pages), which the machine
    has none to spare for when it is busy, and spare_warm() does it later
    if the worker falls idle before the run comes."""
    _setup_streams()
    _spare_readied[0] = True
    if warm:
        spare_warm()


def spare_warm():
    """The small run spare_ready(False) left out (the worker asks an idle
    cold spare for it)."""
    _warm_run()
    _warmed[0] = True


_warmed = [False]  # the small run ran in this process (tests look)
_analysed = [0]  # runs of this process that parsed and compiled their source (tests look)
_spare_readied = [False]  # this process was a sealed spare (tests look)


def run(request_json, result_fd):
    """In the forked run child: execute the module, call the function, write
    the outcome as JSON to result_fd."""
    req = _run_message(request_json)
    filename = req.get("filename") or "<input>"
    try:
        _run(req, filename, result_fd)
    except BaseException as e:  # last resort: never leave without a result
        _write_result(result_fd, {"ok": False, "error": {
            "type": "InternalError", "message": f"{type(e).__name__}: {e}"}})
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass


def _run_message(text):
    """json.loads(text) for the run message the engine wrote (one JSON
    object, no surrounding whitespace): the decoder's C scanner directly.
    json.loads' Python layers (decode, raw_decode, two regex matches) are
    objects every run child touched only for this, each a page it copied
    (issue 15 (c), round 10). Anything else goes through json.loads."""
    try:
        value, end = _MESSAGE_JSON.scan_once(text, 0)
    except StopIteration:
        value, end = None, -1
    if end != len(text) or type(value) is not dict:
        return json.loads(text)
    _message_scanned[0] += 1
    return value


_message_scanned = [0]  # run messages read by the scanner directly (tests look)


def _run(req, filename, result_fd):
    if _streams_mode[0] is not False:
        _setup_streams()
    source = _source(req)
    loaded = _load_compiled(req.get("compiled"))
    if loaded is None:
        # Not validated with its code (see _compiled): analysed here,
        # refused here as the validator would.
        _analysed[0] += 1
        try:
            with _QuietCompiler():
                tree, fn, reqs, args, kwargs = _analyse(req)
        except ValidationError as e:
            _write_result(result_fd, _error_reply(e, filename))
            return
        name = fn.name
    mod = _user_module(source, filename, req)
    if loaded is None:
        try:
            with _QuietCompiler():
                code = compile(tree, filename, "exec")
        except SyntaxError as e:
            # The file's error, found by the compiler after ast.parse
            # accepted it ('break' outside a loop): not the function's.
            _write_result(result_fd, _error_reply(_compile_error(e, req, fn), filename))
            return
        except BaseException as e:
            _write_result(result_fd, _exception_result(e, filename, raised=False))
            return
    else:
        name, code, args, kwargs = loaded
    try:
        exec(code, mod.__dict__)
        target = mod.__dict__.get(name)
        if not callable(target):
            raise TypeError(f"'{name}' is not callable after the module ran")
    except BaseException as e:
        _write_result(result_fd, _exception_result(e, filename))
        return
    late = _late_plan(target)
    if late is not None:
        try:
            args, kwargs = _late_args(late, args, kwargs)
        except ValidationError as e:
            _write_result(result_fd, _error_reply(e, filename))
            return
    try:
        value = _resolve_value(target(*args, **kwargs))
    except BaseException as e:
        _write_result(result_fd, _exception_result(e, filename))
        return
    _write_result(result_fd, _serialise(value))


def _load_compiled(c):
    """(function name, code, args, kwargs) from what validation made for
    this run (_compiled), or None when it made nothing usable."""
    if not isinstance(c, dict):
        return None
    try:
        code = marshal.loads(binascii.a2b_base64(c["code"]))
        args, kwargs = marshal.loads(binascii.a2b_base64(c["bound"]))
    except (KeyError, TypeError, ValueError, EOFError, binascii.Error):
        return None
    name = c.get("function")
    if not isinstance(name, str) or not isinstance(kwargs, dict) or type(code) is not types.CodeType:
        return None
    return name, code, args, kwargs


def _module_name(filename):
    """os.path.splitext(os.path.basename(filename))[0], with str methods:
    posixpath's and genericpath's functions were pages of the worker every
    run child copied for this one name (issue 15 (c), round 10)."""
    base = filename.rpartition("/")[2]
    # splitext: the last dot, unless only dots come before it.
    dot = base.rfind(".")
    return base[:dot] if dot > 0 and base[:dot].strip(".") else base


def _user_module(source, filename, req):
    """The module the user's file runs in, registered under its file's name,
    with `requirements` defined, its source known to linecache (for
    tracebacks) and the run's datasets known to data_path()."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    modname = _module_name(filename) or "main"
    if not modname.isidentifier():
        modname = "main"
    mod = types.ModuleType(modname)
    mod.__file__ = filename
    _spawn_module[0] = (modname, filename, source)
    mod.__dict__["requirements"] = requirements
    sys.modules[modname] = mod
    # "data": {NAME: {"host": dir, "path": where this run sees it}}; the
    # sandbox bind-mounts host at path (/data/NAME).
    for n, d in (req.get("data") or {}).items():
        if isinstance(d, dict) and isinstance(d.get("path"), str):
            _data_paths[n] = d["path"]
    # "output_dir": the run's writable dir (/out in the sandbox, a host dir
    # under --sandbox=none), what pysprinter.output_dir() returns.
    if isinstance(req.get("output_dir"), str):
        _rt._output_dir = req["output_dir"]
    # "env": the run's --env values and opened --secret values
    # (docs/secrets.md). Set in this child only: the worker it forked from,
    # and every other run, keep the sandbox's cleared environment.
    for k, v in (req.get("env") or {}).items():
        if isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v:
            os.environ[k] = v
    return mod


def _exception_result(e, filename, raised=True):
    # "raised": the function's (or its module's) own exception, whatever
    # its class is called: a user's ValidationError (pydantic, jsonschema)
    # or InternalError (psycopg2) is a failed run with its traceback, not
    # pysprinter's validation or internal error, which _error_reply,
    # run()'s last resort and a compile() refusal (raised=False) write
    # without it.
    _hint(e)
    err = {
        "type": _shown(type(e).__name__),
        "message": _shown(_safe_str(e)),
        "traceback": _shown(_user_traceback(e, filename)),
    }
    if raised:
        err["raised"] = True
    return {"ok": False, "error": err}


def _resolve_value(value):
    """What a caller means by the function's result: a coroutine's value, a
    generator's items (as a list, like Modal's and Ray's generators when
    collected)."""
    # types, not inspect: importing inspect in every run child costs
    # milliseconds (the worker imported types before forking).
    if type(value) in _JSON_SCALARS:  # the common answer: nothing to resolve
        return value
    if isinstance(value, types.CoroutineType):
        import asyncio
        value = asyncio.run(value)
    if isinstance(value, types.GeneratorType):
        value = list(value)
    elif isinstance(value, types.AsyncGeneratorType):
        import asyncio

        async def collect(agen):
            return [x async for x in agen]
        value = asyncio.run(collect(value))
    return value


# Modules whose package on PyPI has another name: declaring the module's
# own name would install nothing or the wrong project ('yaml' is not
# PyYAML, 'sklearn' is a deprecated stub that refuses to install; cv2's
# headless wheel needs no libGL, which a sandbox lacks).
_PACKAGE_OF_MODULE = {
    "yaml": "PyYAML", "PIL": "Pillow", "cv2": "opencv-python-headless", "sklearn": "scikit-learn",
    "skimage": "scikit-image", "bs4": "beautifulsoup4", "dateutil": "python-dateutil",
    "dotenv": "python-dotenv", "jwt": "PyJWT", "Crypto": "pycryptodome", "serial": "pyserial",
    "OpenSSL": "pyOpenSSL", "zmq": "pyzmq", "fitz": "PyMuPDF", "docx": "python-docx",
    "magic": "python-magic", "MySQLdb": "mysqlclient", "attr": "attrs",
}


def _hint(e):
    """A note Python prints under the traceback when we know the fix."""
    if isinstance(e, ModuleNotFoundError) and e.name and hasattr(e, "add_note"):
        top = e.name.split(".")[0]
        if top in sys.stdlib_module_names:
            return
        package = _PACKAGE_OF_MODULE.get(top)

        def norm(n):  # PEP 503, extras dropped
            return n.split("[")[0].strip().lower().replace("_", "-").replace(".", "-")
        declared = {norm(k) for k in getattr(_rt, "_declared", ())}
        named = next((n for n in (package, top) if n and norm(n) in declared), None)
        if named:
            # Telling the user to declare what they declared sent them
            # looking at their decorator.
            e.add_note(f"pysprinter: {named!r} is declared in @requirements, but no module {top} was installed "
                       f"with it: its wheel may name its module otherwise, or its copy in the package store is "
                       f"damaged (`pysprinter env prune` removes the environments no process uses; the next run "
                       f"installs them again)")
        elif package:
            e.add_note(f"pysprinter: to install it, declare it: @requirements({{'{package}': ''}}) "
                       f"(the module {top} comes from the package {package})")
        else:
            e.add_note(f"pysprinter: to install it, declare it: @requirements({{'{top}': ''}}) "
                       "(the package name may differ from the module name)")


def _shown(text):
    """Text that is shown, not handed on (a message, a traceback, a repr):
    the engine keeps it as a C string, which a NUL would cut short, so a NUL
    becomes the four characters a repr() shows (backslash, x, 0, 0). A
    result's value keeps its NUL (JSON "\\u0000")."""
    return text.replace("\0", "\\x00") if text and "\0" in text else text


def _safe_str(e):
    try:
        return str(e)
    except Exception:
        return f"<{type(e).__name__}>"


def add_site_dirs(paths):
    """Put an environment's store dirs on sys.path in lock order; .pth files
    in them are honoured (site.addsitedir)."""
    import site
    for p in paths:
        site.addsitedir(p)


# ---- warm workers (DESIGN §6) -------------------------------------------------

def _top_level_modules(site_dir):
    """Top-level import names a store dir provides: each distribution's
    top_level.txt, else the first path component of its RECORD entries."""
    names = []
    try:
        entries = sorted(os.listdir(site_dir))
    except OSError:
        return names
    for entry in entries:
        if not entry.endswith(".dist-info"):
            continue
        d = os.path.join(site_dir, entry)
        found = []
        try:
            with open(os.path.join(d, "top_level.txt"), encoding="utf-8") as f:
                found = [line.strip() for line in f if line.strip()]
        except OSError:
            try:
                with open(os.path.join(d, "RECORD"), encoding="utf-8") as f:
                    for line in f:
                        path = line.split(",", 1)[0]
                        head = path.split("/", 1)[0]
                        if head.endswith((".dist-info", ".data")) or head.startswith(".."):
                            continue
                        if "/" in path:
                            found.append(head)
                        elif head.endswith(".py"):
                            found.append(head[:-3])
            except OSError:
                pass
        for n in found:
            n = n.replace("/", ".")
            if n.isidentifier() and not n.startswith("_") and n not in names:
                names.append(n)
    return names


def init(request_json):
    """Make this worker warm for an environment: its store dirs on sys.path,
    its top-level modules imported (a module that fails is skipped and
    noted). The worker answers "ready" then, and settle() comes after its
    first run was forked (worker.c): the first run of a cold environment
    does not wait for the zygote's warm-up."""
    import importlib
    req = json.loads(request_json)
    paths = req.get("sys_path") or []
    add_site_dirs(paths)
    imported, failed = [], {}
    capture = _ImportOutput()
    try:
        if req.get("preload", True):
            for p in paths:
                for name in _top_level_modules(p):
                    try:
                        importlib.import_module(name)
                        imported.append(name)
                    except BaseException as e:  # noqa: a package's import may do anything
                        failed[name] = f"{type(e).__name__}: {_safe_str(e)}"[:500]
        for name in req.get("modules") or []:
            try:
                importlib.import_module(name)
                imported.append(name)
            except BaseException as e:
                failed[name] = f"{type(e).__name__}: {_safe_str(e)}"[:500]
    finally:
        out, err = capture.end()
    reply = {"ok": True, "imported": imported, "failed": failed}
    if out:
        reply["stdout"] = out
    if err:
        reply["stderr"] = err
    return json.dumps(reply)


# What the env's imports print, per stream, at most (the rest is dropped
# and said to be).
IMPORT_OUTPUT_MAX = 64 << 10


class _ImportOutput:
    """fds 1 and 2 of the worker into two memfds while it imports the env's
    modules: what a package prints at import (a warning, a banner) is what
    `import pkg` prints in plain Python, and the engine makes it the first
    output of the run that started this worker (docs/workers.md). Without
    it, the worker's inherited stderr got it: the embedded CLI's terminal,
    outside the run's output, or a daemon's log, which the user never sees.
    A memfd, not a pipe: a pipe fills up while nobody reads it."""

    def __init__(self):
        self.saved = []
        try:
            self._flush()
            for fd in (1, 2):
                m = os.memfd_create("pysprinter-import-output", os.MFD_CLOEXEC)
                self.saved.append((fd, os.dup(fd), m))
                os.dup2(m, fd)
        except (OSError, AttributeError):
            self.end()

    @staticmethod
    def _flush():
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:  # noqa: a package may have replaced them
                pass

    def end(self):
        """Puts fds 1 and 2 back: (stdout text, stderr text)."""
        self._flush()
        texts = {1: "", 2: ""}
        for fd, old, m in self.saved:
            try:
                os.dup2(old, fd)
                size = os.fstat(m).st_size
                data = os.pread(m, IMPORT_OUTPUT_MAX, 0)
                text = data.decode("utf-8", "replace")
                if size > len(data):
                    text += f"\n[{size - len(data)} more bytes the environment's imports printed were dropped]\n"
                texts[fd] = text
            except OSError:
                pass
            finally:
                os.close(old)
                os.close(m)
        self.saved = []
        return texts[1], texts[2]


def settle(_request_json=None):
    """The zygote's last start-up step, before it forks any spare or warm
    instance: its small warm-up runs (_warm_zygote), a full collection, then
    gc.freeze() so forked children share the pages (a child's collections
    never walk, and so never copy, the frozen objects). Off the first run's
    path (issue 15, cold env): the worker calls it once idle after that run
    was forked."""
    import gc
    _warm_zygote()
    try:
        _premake_streams()
    except OSError:
        pass  # no fd to spare: each run makes its own streams, as before
    _snapshot_fork_weaksets()
    _rehearse_stdlib_fork_hooks()
    gc.collect()
    gc.freeze()
    _settled[0] = True


_settled = [False]  # settle() ran in this process or the zygote it was forked from (tests look)


def _snapshot_iter(self):
    # The items alive now, from a snapshot of the weak references: no
    # _IterationGuard (a weak reference to the set, an entry in its
    # _iterating set, and on leaving _commit_removals(), which ends by
    # catching an IndexError). A removal during the iteration cannot
    # disturb a snapshot, so it need not be deferred either.
    for ref in list(self.data):
        item = ref()
        if item is not None:
            yield item


def _rehearse_threading():
    import threading
    threading._after_fork()


def _rehearse_random():
    import random
    random._inst.seed()


def _rehearse_logging():
    import logging
    logging._acquireLock()  # its before-hook, which the child-hook undoes
    logging._after_at_fork_child_reinit_locks()


def _rehearse_futures():
    import concurrent.futures.thread as cft
    cft._global_shutdown_lock._at_fork_reinit()


# The stdlib's after_in_child hooks (CPython 3.11), by the module that
# registers them; each run only if that module was imported (so its hook
# is registered) and has the names.
_STDLIB_FORK_HOOKS = (("threading", _rehearse_threading), ("random", _rehearse_random),
                      ("logging", _rehearse_logging), ("concurrent.futures.thread", _rehearse_futures))

_rehearsed_fork_hooks = []  # modules whose after-fork hook the zygote ran once itself (tests look)


def _rehearse_stdlib_fork_hooks():
    """In the zygote, before its gc.freeze(): the stdlib's after-fork hooks
    (threading's _after_fork, random's reseed, logging's lock re-inits,
    concurrent.futures' lock), called once here as a forked child calls
    them. Every child runs them, and each attribute lookup they make that
    the zygote never made wrote an entry of CPython's type attribute cache
    in the child: a copied page of libpython's .bss apiece, and the cached
    name's incref a copied arena page (round 11: ~29 faults per run in
    _PyType_Lookup, about half of them under the hooks). Made here, the
    entries are only read in a child. The env's own hooks are not run: a
    package's hook runs sealed, in a child, never with the worker's
    privileges. Only while the zygote has no other Python thread
    (threading's hook marks every other thread stopped, as in a child)."""
    import threading
    if threading.active_count() != 1:
        return
    for modname, rehearse in _STDLIB_FORK_HOOKS:
        if modname not in sys.modules:
            continue
        try:
            rehearse()
        except (AttributeError, RuntimeError):
            continue  # another Python's names: that hook stays cold, nothing more
        _rehearsed_fork_hooks.append(modname)


_snapshot_weaksets = []  # (module, name) whose WeakSet iterates from a snapshot (tests look)


def _snapshot_fork_weaksets():
    """In the zygote, before its gc.freeze(): the two WeakSets that
    Python's after-fork hooks iterate in every forked child (threading's
    _dangling in threading._after_fork, logging's handlers in
    _after_at_fork_child_reinit_locks) become a WeakSet subclass that
    iterates a snapshot. Same items, same weak references, same order; but
    WeakSet.__iter__'s guard machinery is Python code whose objects (its
    functions, code objects, the guard class, an exception) are spread over
    pages a child otherwise copies just for that: ~40 of the ~180 pages
    the hooks write in every run child (measured: plain python3.11 with
    requests imported, 186 -> 146 minor faults). Modules the env did not
    import are left alone."""
    import weakref

    class SnapshotWeakSet(weakref.WeakSet):
        __iter__ = _snapshot_iter

    for modname, attr in (("threading", "_dangling"), ("logging", "_at_fork_reinit_lock_weakset")):
        mod = sys.modules.get(modname)
        old = getattr(mod, attr, None)
        if type(old) is weakref.WeakSet:
            setattr(mod, attr, SnapshotWeakSet(old))
            _snapshot_weaksets.append((modname, attr))


def _send_message(sock, obj):
    data = json.dumps(obj).encode()
    sock.sendall(len(data).to_bytes(4, "little") + data)


def serve_instance(request_json, sock_fd):
    """A deployed function's warm instance: run the module once, answer
    "ready", and return the function that serves one invocation (None when
    the module's function could not be found: "ready" said so). The loop
    around it is C (worker-python.c py_serve_instance()): it receives each
    invoke on sock_fd, decodes it with _MESSAGE_JSON's scanner, adopts the
    fds it brings, and sends "done" for the (id, result) the function
    returns (_done_body()'s bytes, the common result's text made in C),
    until the engine closes the socket. Globals persist between
    invocations, as on Lambda."""
    import socket
    req = json.loads(request_json)
    filename = req.get("filename") or "<input>"
    sock = socket.socket(fileno=sock_fd)
    try:
        try:
            with _QuietCompiler():
                tree, fn, _, _, _ = _analyse(dict(req, args=[], kwargs={}, context=None, _skip_bind=True))
        except ValidationError as e:
            _send_message(sock, {"type": "ready", "ok": False, "error": _error_reply(e, filename)["error"]})
            return None
        _setup_streams(per_invocation=True)
        _tag_threads()
        mod = _user_module(_source(req), filename, req)
        init_error, init_raised = None, True
        try:
            with _QuietCompiler():
                code = compile(tree, filename, "exec")
        except BaseException as e:  # the file's error (see _run)
            init_error, init_raised = e, False
        else:
            try:
                exec(code, mod.__dict__)
            except BaseException as e:
                init_error = e
        del tree
        plan = _BindPlan(fn)
        late = _late_plan(mod.__dict__.get(fn.name)) if init_error is None else None
        _freeze_module_objects()
        # A module that raised is loaded again by the next invocation, as
        # Lambda runs a failed init again: the engine retires this
        # instance once it answered its one invocation with the error.
        _send_message(sock, {"type": "ready", "ok": True, "init_failed": init_error is not None})
    finally:
        sock.detach()  # the socket stays open for the C loop

    def serve_one(msg):
        """One invocation: (its id, its result object). fds 1 and 2 (the
        instance's stdout/stderr pipes for its life) are in place: the
        first invocation brings them."""
        _INVOCATION[0] += 1
        result = None
        try:
            if init_error is not None:
                result = _exception_result(init_error, filename, raised=init_raised)
            else:
                # The function's binding, call and result, one frame (a
                # call less per invoke than a helper of its own).
                try:
                    args, kwargs = _bind(fn, _call_args(msg, fn), msg.get("kwargs") or {}, plan)
                    if late is not None:
                        args, kwargs = _late_args(late, args, kwargs)
                except ValidationError as e:
                    result = _error_reply(e, filename)
                else:
                    try:
                        value = _resolve_value(mod.__dict__.get(fn.name)(*args, **kwargs))
                    except BaseException as e:
                        result = _exception_result(e, filename)
                    else:
                        result = _serialise(value)
        finally:
            # All the invocation wrote is in the pipes before "done": the
            # engine reads them up to it.
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
            # From here no invocation runs: what the threads it left write
            # through sys.stdout/sys.stderr is dropped, not left in the
            # pipes for the next invocation to find.
            _INVOCATION[0] += 1
        return msg.get("id"), result
    return serve_one


def _freeze_module_objects():
    """What the module made at import (its globals, the packages it imported
    that the worker had not preloaded) lives as long as the instance: move it
    out of the collector's generations (gc.freeze, as the worker did for the
    environment's modules before forking) after collecting what the import
    left as garbage. A collection that an invocation's allocations trigger
    then scans only that invocation's survivors, not every object of the
    module: with a module of 200k objects a full collection costs ~13 ms,
    and one comes after enough invocations leave a few objects behind."""
    import gc
    gc.collect()
    gc.freeze()


_json_ascii_string = json.encoder.encode_basestring_ascii  # json.dumps(str)'s bytes

# The largest result as JSON (engine.h RUN_MAX_RESULT_BYTES), measured on
# the value's JSON text (or its repr()) by _serialise(), which answers
# _TOO_BIG past it. Measured on the answer instead, where that text is a
# JSON string again and every quote and backslash is escaped once more, a
# list of one-letter strings was "too big" at 9 MiB.
_MAX_RESULT_BYTES = 16 << 20
_TOO_BIG = {"ok": True, "json": None, "too_big": True}
# The largest answer that holds such a result: twice it (each byte escaped)
# and its frame (engine.h RUN_MAX_RESULT_ANSWER_BYTES; "done" fits in a
# message, WORKER_PROTO_MAX_MESSAGE). Only a result whose repr()'s type
# name is huge comes near it.
_MAX_ANSWER_BYTES = 2 * _MAX_RESULT_BYTES + 4096


def _result_text(result):
    """_RESULT_JSON.encode(result), spelled out for the common answer
    {"ok": true, "json": TEXT} (what _serialise returns for a value the table
    covers): the same bytes without walking a dict through the encoder."""
    if type(result) is dict and len(result) == 2 and result.get("ok") is True:
        text = result.get("json")
        if type(text) is str and next(iter(result)) == "ok":
            return '{"ok": true, "json": ' + _json_string(text) + '}'
    return _RESULT_JSON.encode(result)


def _done_body(invocation_id, result):
    """"done" {id, result} (or {id, result_too_big: true}): the result is
    spliced in as JSON text, serialised once. The instance's C loop
    (worker-python.c instance_done()) makes these bytes itself for a
    string id and a result _result_text() spells out, and calls this for
    anything else."""
    # The engine's ids are strings: json.dumps()'s bytes for them without
    # its per-call encoder set-up.
    head = '{"type":"done","id":' + (_json_ascii_string(invocation_id)
                                     if type(invocation_id) is str else json.dumps(invocation_id))
    data = b""
    if result is not None and result is not _TOO_BIG:
        data = _result_text(result).encode("utf-8", "pysprinter-json")
    if result is _TOO_BIG or len(data) > _MAX_ANSWER_BYTES:
        body = (head + ',"result_too_big":true}').encode()
    elif data:
        body = head.encode() + b',"result":' + data + b"}"
    else:
        body = (head + "}").encode()
    return body
