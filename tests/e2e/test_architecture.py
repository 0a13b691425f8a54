"""The build and the docs tell the same story (issue 12):
- docs/ARCHITECTURE.md's module graph is exactly what the meson.build files
  link (direct module dependencies and libraries);
- no header cites a document that does not exist.
Pure checks over the tree: no binaries run."""
import pathlib
import re

from conftest import ROOT

SRC = ROOT / "src"
# Meson dependency objects of our modules -> the module's name in the graph.
MODULE_DEPS = {
    "basic_dep": "basic", "shared_dep": "shared", "pkg_dep": "pkg", "sandbox_dep": "sandbox", "store_dep": "store",
    "cluster_dep": "cluster",
    "worker_proto_dep": "worker/proto", "engine_dep": "engine", "data_dep": "data", "dag_dep": "dag",
    "daemon_core_dep": "daemon", "cli_args_dep": "cli",
}


def _calls(text, names):
    """The argument text of every call to one of `names` (balanced parens)."""
    for m in re.finditer(r"\b(%s)\s*\(" % "|".join(names), text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield text[m.end():i - 1]


def meson_graph():
    """{module: (set of modules, set of libraries)} from src/*/meson.build."""
    graph = {}
    for build in sorted(SRC.glob("**/meson.build")):
        module = str(build.parent.relative_to(SRC))
        text = re.sub(r"#[^\n]*", "", build.read_text())
        mods, libs = set(), set()
        for args in _calls(text, ["static_library", "executable", "declare_dependency"]):
            for deps in re.findall(r"dependencies\s*:\s*\[([^\]]*)\]", args):
                deps = re.sub(r"cc\.find_library\('(\w+)'[^)]*\)", r"\1", deps)
                for name in re.findall(r"\b\w+\b", deps):
                    if name in MODULE_DEPS:
                        mods.add(MODULE_DEPS[name])
                    else:
                        libs.add(name)
        mods.discard(module)
        graph[module] = (mods, libs)
    return graph


def doc_graph():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"## Modules \(src/\).*?```\n(.*?)```", text, re.S).group(1)
    graph = {}
    for line in block.splitlines():
        m = re.fullmatch(r"(\S+)\s+->\s*(.*?)\s*\[(.*)\]\s*", line)
        assert m, f"docs/ARCHITECTURE.md: cannot read graph line {line!r}"
        split = lambda s: {x.strip() for x in s.split(",") if x.strip()}
        graph[m.group(1)] = (split(m.group(2)), split(m.group(3)))
    return graph


def test_module_graph_matches_meson():
    built, documented = meson_graph(), doc_graph()
    assert set(built) == set(documented), \
        f"modules built but not in the graph: {set(built) - set(documented)}; " \
        f"in the graph but not built: {set(documented) - set(built)}"
    wrong = {m: {"meson": built[m], "docs": documented[m]} for m in built if built[m] != documented[m]}
    assert not wrong, f"docs/ARCHITECTURE.md's graph differs from meson.build: {wrong}"


CITATION = re.compile(r"\b((?:docs|contrib|examples|tools|bench|fuzz|src)/[\w./-]*\w|README\.md)|\b(DESIGN)(?:\.md)?\s*§")


def test_headers_cite_only_existing_docs():
    missing = []
    for h in sorted(SRC.glob("**/*.h")):
        for lineno, line in enumerate(h.read_text().splitlines(), 1):
            for path, design in CITATION.findall(line):
                if design:
                    # DESIGN.md is not part of this tree: cite the docs/ page.
                    missing.append(f"{h.relative_to(ROOT)}:{lineno}: DESIGN §… (no DESIGN.md in the tree)")
                elif not (ROOT / path).exists():
                    missing.append(f"{h.relative_to(ROOT)}:{lineno}: {path}")
    assert not missing, "headers cite documents that do not exist:\n" + "\n".join(missing)
