"""Environment and record lifetime, second pass (after test_explore_gc.py):
what a collection or a prune keeps and how it reports it."""
import json
import re

import pytest

from conftest import CLI, WORKER
from test_explore_gc import NOSANDBOX, write_fn

pytestmark = pytest.mark.skipif(not CLI.exists() or not WORKER.exists(),
                                reason="pysprinter/pysprinter-worker not built")


def test_gc_and_env_prune_spell_sizes_alike(cli, home):
    """`pysprinter gc` said `freed 0 B` and `env prune` `freed 0B` (and
    `4.9 KiB` against `4.9K`): two formatters for one quantity. Every
    report now spells a size one way."""
    p = cli("env", "prune")
    assert (p.returncode, p.stdout) == (0, "removed 0 environments, freed 0 B\n"), p
    cli.write("loud.py", "def f():\n    print('x' * 5000)\n    return 1\n")
    cli("run", NOSANDBOX, "loud.py", check=0)
    p = cli("gc", "--max-log-bytes", "1", "--dry-run")
    sizes = re.findall(r"\(\d+ logs, ([^)]*)\)", p.stdout)
    assert sizes == ["4.9 KiB"], p.stdout
