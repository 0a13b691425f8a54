"""libFuzzer over pysprinterd's request parsing (fuzz/fuzz-request.c), built
with clang and run for a bounded time (PYSPRINTER_FUZZ_SECONDS, default 30).
With PYSPRINTER_FUZZ_RUNS (CI: 400,000) the seed is fixed and the run stops
after that many inputs, the time only a backstop: the same inputs on every
host, as tools/run-fuzzers.sh does. Skips when clang or its libFuzzer
runtime is missing."""
import os
import pathlib
import shutil
import subprocess

import pytest

from conftest import ROOT

SEEDS = [
    b'\x00{"source": "def f(x: int):\\n    return x\\n", "raw_args": ["1"], "kwargs": {"y": [1, {"z": null}]},'
    b' "limits": {"timeout_ms": 1000, "network": true}}',
    b'\x01{"source": "def f():\\n    pass\\n", "function": "f"}',
    b'\x02{"name": "fn-1", "source": "def f(): pass", "requirements": {"requests": ">=2"}, "description": "d"}',
    b'\x03{"args": [1, 2.5, "x", [true]], "version": 3, "raw_kwargs": {"a": "b"}}',
    # NUL: kept in arguments and a source, refused (by name) elsewhere.
    b'\x00{"source": "a\\u0000\xe9", "args": ["\\u0000"], "kwargs": {"k": "\\u0000"}, "filename": "b\\u0000"}',
    b'\x04tokens:\n  - tenant: a\n    token: aaaaaaaaaaaaaaaaaaaa\n    role: admin\nserver:\n  max_body_bytes: 4096\n'
    b'limits:\n  maxima: {timeout_ms: 10}\npackages: {allow: [x], deny: [y]}\nindex: {url: "http://x", extra_urls: []}\n',
    b'\x05arn:aws:lambda:us-east-1:123456789012:function:my-fn:7',
    b'\x05["event", "*", "flag", "**kw"]',
]


def test_fuzz_request_parsing(tmp_path):
    clang = shutil.which("clang")
    if not clang:
        pytest.skip("clang is not installed")
    exe = tmp_path / "fuzz-request"
    src = ROOT / "src"
    cmd = [clang, "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=undefined",
           "-D_GNU_SOURCE", f"-I{src}/basic", f"-I{src}/engine", f"-I{src}/store", f"-I{src}/daemon",
           f"-I{src}/data", f"-I{src}/shared", f"-I{src}/pkg", str(src / "data" / "data-fetch.c"), str(src / "data" / "data-config.c"),
           str(src / "pkg" / "pkg-util.c"),
           *map(str, sorted((src / "shared").glob("shared-*.c"))),
           str(ROOT / "fuzz" / "fuzz-request.c"), str(src / "daemon" / "daemon-request.c"),
           str(src / "daemon" / "daemon-cors.c"),
           str(src / "daemon" / "daemon-config.c"), str(src / "daemon" / "daemon-gc-config.c"),
           str(src / "store" / "store-retention-config.c"), str(src / "store" / "store-function-record.c"), *map(str, sorted((src / "basic").glob("basic-*.c"))),
           "-ljansson", "-lyaml", "-lcrypto", "-lcurl", "-o", str(exe)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        if "fuzzer" in p.stderr and ("cannot find" in p.stderr or "not found" in p.stderr or "No such file" in p.stderr):
            pytest.skip("clang's libFuzzer runtime is missing (libclang-rt-dev): " + p.stderr[-300:])
        pytest.fail("building the fuzzer failed:\n" + p.stderr[-3000:])
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, s in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(s)
    seconds = int(os.environ.get("PYSPRINTER_FUZZ_SECONDS", "30"))
    runs = os.environ.get("PYSPRINTER_FUZZ_RUNS")
    fixed = ["-seed=1", f"-runs={int(runs)}"] if runs else []
    p = subprocess.run([str(exe), f"-max_total_time={seconds}", *fixed, "-rss_limit_mb=1024", "-max_len=65536",
                        "-print_final_stats=1", str(corpus)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=seconds + 120)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "stat::number_of_executed_units" in p.stderr
