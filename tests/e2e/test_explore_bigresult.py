"""Memory of large results (helper "bigresult"): an embedded `run` or `dag
run` whose function returns 15 MB held it about four times at once in the
CLI (~62 MiB for a 5 MiB CLI), `dag run --json` once more. Judged on the
CLI's own high-water mark (proctree.own_peak_run): the worker, a process
of its own, holds the value too and is not the CLI's to count."""
import json

import pytest

from conftest import BUILD, CLI, sandbox_args
from proctree import own_peak_run

SIZE = 15_000_000  # under the 16 MiB result limit
# A copy of the result more than the fixed CLI keeps (~2 at its peak: the
# value and SQLite's record of it) is let through; the old CLI's four are not.
COPIES = 3


def sanitized():
    opts = json.loads((BUILD / "meson-info" / "intro-buildoptions.json").read_text())
    return {o["name"]: o["value"] for o in opts}.get("b_sanitize", "none") != "none"


@pytest.fixture
def files(cli):
    if sanitized():
        pytest.skip("a sanitizer's allocator keeps freed memory: no bound on copies holds")
    cli.write("big.py", f"def big():\n    return 'x' * {SIZE}\n")
    cli.write("empty.py", "def empty():\n    return ''\n")
    cli.write("big.yaml", "tasks: {one: {file: big.py}}\n")
    cli.write("empty.yaml", "tasks: {one: {file: empty.py}}\n")
    # The home's first run sets up what later runs reuse: not measured.
    p = cli("run", *sandbox_args(), "empty.py")
    assert p.returncode == 0, p
    return cli


def judged(cli, verb, empty_args, big_args, want):
    """The CLI's own peak for the big result against its peak for an empty
    one in the same home: less than COPIES times the result's size more."""
    base = own_peak_run([str(CLI), *verb, *empty_args], env=cli.env, cwd=cli.cwd)
    assert base.returncode == 0, base
    big = own_peak_run([str(CLI), *verb, *big_args], env=cli.env, cwd=cli.cwd)
    assert (big.returncode, big.stderr) == (0, b""), big.stderr[-2000:]
    want(big.stdout)
    print(f"{' '.join(verb)} {' '.join(big_args)}: the CLI's own peak {big.peak_kib // 1024} MiB, "
          f"{base.peak_kib // 1024} MiB for an empty result")
    assert base.peak_kib > 0 and big.peak_kib > 0
    extra = big.peak_kib - base.peak_kib
    assert extra < COPIES * SIZE / 1024, (
        f"the CLI's peak grew by {extra // 1024} MiB for a {SIZE // 2**20} MiB result "
        f"({big.peak_kib // 1024} MiB against {base.peak_kib // 1024} MiB): more than {COPIES} copies of it")


def plain(out):
    assert out == b"x" * SIZE + b"\n"


def as_json(out):
    assert out == b'"' + b"x" * SIZE + b'"\n'


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["plain", "json"])
def test_run_with_a_large_result_holds_few_copies_of_it(files, json_flag):
    judged(files, ["run", *sandbox_args(), "--no-cache", *json_flag], ["empty.py"], ["big.py"],
           as_json if json_flag else plain)


def test_dag_run_json_with_a_large_result_holds_few_copies_of_it(files):
    """--json copied each task (its result included) before printing
    (plain `dag run`: test_explore_leads2.py)."""
    def want(out):
        d = json.loads(out)
        assert d["status"] == "succeeded" and d["tasks"]["one"]["result"] == "x" * SIZE, str(d)[:500]
    judged(files, ["dag", "run", "--no-cache", "-q", "--json", *sandbox_args()], ["empty.yaml"], ["big.yaml"],
           want)


# ---- the bytes are the same as before (the decoding moved out of jansson) ----

VALUES = r'''
def f():
    return {"s": "t\u00e9\u2028\U0001F600\x00\x1f\"\\/", "n": [0, -1, 2**63 - 1, -2**63, 1.5, 0.1, 1e300, -0.0, 1e-7],
            "e": [], "o": {}, "b": [True, False, None], "u": "\ud7ff\ue000"}
'''


def test_values_print_as_before(cli):
    """Escapes, NULs, surrogate pairs, reals and nesting, printed by `run`
    (the value as Python's json spells it, the separators ", " ": ") and
    --json (compact) as the value's JSON, byte for byte."""
    cli.write("v.py", VALUES)
    p = cli("run", *sandbox_args(), "v.py")
    assert p.returncode == 0, p
    ns = {}
    exec(VALUES, ns)
    want = ns["f"]()
    assert json.loads(p.stdout) == want
    assert p.stdout == json.dumps(want, ensure_ascii=False).replace("\\u001f", "\\u001F") + "\n"
    p = cli("run", *sandbox_args(), "--json", "v.py")
    assert p.returncode == 0, p
    assert p.stdout == json.dumps(want, ensure_ascii=False, separators=(",", ":")).replace("\\u001f", "\\u001F") + "\n"


def test_values_jansson_cannot_read_take_the_repr_path(cli):
    """An int past 64 bits or a lone surrogate has no JSON view the rest of
    the system reads back: its repr() with a warning, as before."""
    cli.write("r.py", "def r(k: int):\n    return [2**64, 1] if k == 0 else '\\ud800' if k == 1 else 2**70\n")
    for k, want in ((0, "[18446744073709551616,1]"), (1, "'\\ud800'"), (2, str(2**70))):
        p = cli("run", *sandbox_args(), "r.py", "-a", str(k))
        assert p.returncode == 0, p
        assert p.stdout == want + "\n", p
        assert "cannot be represented as JSON" in p.stderr, p
