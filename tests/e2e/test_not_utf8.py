"""A source file that is not UTF-8 (issue 10, item 11) is a validation error
saying where the first bad byte is — embedded and through a daemon — and the
run's record ends terminal (it used to segfault and stay `running`)."""
import json

import pytest

from conftest import DAEMON, sandbox_args
from daemonlib import Daemon

LATIN1 = b'def f():\n    return "caf\xe9"\n'      # Latin-1 e-acute at 2:16
FF = b'\xff\ndef f():\n    return 1\n'             # one stray byte at 1:1


@pytest.mark.parametrize("verb", ["run", "validate"])
@pytest.mark.parametrize("name,data,where", [("lat.py", LATIN1, "2:16"), ("ff.py", FF, "1:1")])
def test_embedded_not_utf8_is_a_validation_error(cli, tmp_path, verb, name, data, where):
    (tmp_path / name).write_bytes(data)
    p = cli(verb, *sandbox_args(), name)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert f"{name}:{where}: ValidationError: not valid UTF-8" in p.stderr
    if verb == "validate":
        return  # validate keeps no record
    rec = json.loads(cli("ps", "--json").stdout)[0]
    assert rec["status"] == "invalid" and rec["exit_code"] == 3, rec
    assert rec["error"]["message"] == f"{name}:{where}: not valid UTF-8"


def test_valid_utf8_still_runs(cli, tmp_path):
    (tmp_path / "u.py").write_bytes('def f():\n    return "café"\n'.encode())
    p = cli("run", *sandbox_args(), "--json", "u.py")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == "café"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    if not DAEMON.exists():
        pytest.skip(f"{DAEMON} is not built")
    daemon = Daemon(tmp_path_factory.mktemp("daemon")).start()
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.log.read_text()


def raw_body(source: bytes, **fields) -> bytes:
    """A JSON body whose "source" carries the file's bytes as they are (a
    client that pasted a file into a template): not valid JSON text when the
    file is not UTF-8."""
    esc = source.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    rest = b"".join(b', "%s": %s' % (k.encode(), json.dumps(v).encode()) for k, v in fields.items())
    return b'{"source": "' + esc + b'"' + rest + b"}"


def test_daemon_run_not_utf8(d):
    st, _, body = d.request("POST", "/v1/runs?wait=true", raw=raw_body(LATIN1, filename="lat.py"))
    b = json.loads(body)
    assert st == 200 and b["status"] == "invalid" and b["exit_code"] == 3, b
    assert b["error"]["message"] == "lat.py:2:16: not valid UTF-8"
    st, rec = d.call("GET", f"/v1/runs/{b['id']}")
    assert st == 200 and rec["status"] == "invalid"


def test_daemon_validate_and_deploy_not_utf8(d):
    st, _, body = d.request("POST", "/v1/validate", raw=raw_body(FF, filename="ff.py"))
    b = json.loads(body)
    assert st == 200 and b["valid"] is False and b["exit_code"] == 3, b
    assert b["error"]["message"] == "ff.py:1:1: not valid UTF-8"
    st, _, body = d.request("POST", "/v1/functions", raw=raw_body(LATIN1, filename="lat.py", name="latin"))
    b = json.loads(body)
    assert st == 422 and b["error"]["code"] == "invalid_function", b
    assert b["error"]["message"] == "lat.py:2:16: not valid UTF-8"


def test_daemon_not_utf8_outside_source_is_a_bad_request(d):
    body = b'{"source": "def f():\\n    return 1\\n", "filename": "\xe9.py"}'
    st, _, out = d.request("POST", "/v1/runs?wait=true", raw=body)
    assert st == 400 and "not valid UTF-8" in json.loads(out)["error"]["message"]
    # A private-use character the escape uses is kept as it is when the body is valid.
    src = 'def f():\n    return "\U0010ffe9"\n'
    st, b = d.call("POST", "/v1/runs?wait=true", {"source": src})
    assert st == 200 and b["status"] == "succeeded" and b["result"] == "\U0010ffe9", b
