"""errno is captured before a message is formatted (issue 12, STYLE.md
"Errors"): formatting allocates, and an allocation may change errno, so
`*ret_error = xasprintf(..., strerror(errno)); return -errno;` can return
the wrong error. The lower layers take `r = -errno;` first and format with
strerror(-r). Pure check over the tree: no binaries run."""
import re

from conftest import ROOT

MODULES = ["basic", "pkg", "sandbox", "store", "worker", "engine", "data", "dag", "shared"]
# strerror(errno) or a %m conversion (not strftime's "%Y-%m-%d").
LATE = re.compile(r"strerror\(errno\)|\"[^\"]*(?<![%-])%m(?![-%])[^\"]*\"\s*[,)]")


def test_lower_layers_capture_errno_before_formatting():
    late = []
    for m in MODULES:
        for f in sorted((ROOT / "src" / m).glob("*.c")):
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if LATE.search(line) and "strftime" not in line:
                    late.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not late, "take `r = -errno;` before formatting, then strerror(-r):\n" + "\n".join(late)
