"""Leads of the last round, each checked as a user would see it: the
secrets' empty values and foreign keys, what a run's record keeps, the
exit code a cancelled run records. Embedded and against a daemon alike."""
import os

import pytest

from conftest import same
from daemonlib import TOKENS, Daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("explore-leads")).serving() as d:
        yield d


# ---- secrets --------------------------------------------------------------

EMPTY = ("pysprinter: secret set: the value of LEADS_EMPTY is empty: nothing stored "
         "(an empty secret takes --allow-empty)\n")


def test_secret_set_from_empty_stdin_is_refused(cli, both, daemon):
    """`secret set X < /dev/null` stored an empty value and said "secret X
    set": a redirect from the wrong file, a pipe whose producer failed,
    silently became a secret every run then saw as ''."""
    for given in ("", "\n"):
        r = same(*both("secret", "set", "LEADS_EMPTY", input=given))
        assert (r.returncode, r.stdout, r.stderr) == (2, "", EMPTY)
    assert all("LEADS_EMPTY" not in r.stdout for r in both("secret", "ls"))
    empty = cli.write("empty.txt", "")
    r = same(*both("secret", "set", "LEADS_EMPTY", "--from-file", empty))
    assert (r.returncode, r.stderr) == (2, EMPTY)
    # Asked for, it is stored, on both paths.
    r = same(*both("secret", "set", "LEADS_EMPTY", "--allow-empty", input=""))
    assert (r.returncode, r.stdout, r.stderr) == (0, "secret LEADS_EMPTY set\n", "")
    assert all("LEADS_EMPTY" in r.stdout for r in both("secret", "ls"))


def test_secret_put_of_an_empty_value_needs_allow_empty(daemon):
    st, body = daemon.call("PUT", "/v1/secrets/LEADS_API_EMPTY", {"value": ""})
    assert st == 400, body
    assert body["error"]["message"] == ('the value of LEADS_API_EMPTY is empty: nothing stored '
                                        '(an empty secret takes "allow_empty": true)')
    st, body = daemon.call("GET", "/v1/secrets")
    assert "LEADS_API_EMPTY" not in [s["name"] for s in body["secrets"]]
    st, body = daemon.call("PUT", "/v1/secrets/LEADS_API_EMPTY", {"value": "", "allow_empty": True})
    assert (st, body["name"]) == (200, "LEADS_API_EMPTY")
    st, body = daemon.call("PUT", "/v1/secrets/LEADS_API_EMPTY", {"value": "x", "allow_empty": "yes"})
    assert st == 400, body
    # The Python client asks the same way.
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "python"))
    from pysprinter.client import APIError, Client
    c = Client(daemon.url, token=TOKENS["alice"])
    with pytest.raises(APIError) as e:
        c.set_secret("LEADS_PY_EMPTY", "")
    assert (e.value.status, e.value.code) == (400, "bad_request")
    assert c.set_secret("LEADS_PY_EMPTY", "", allow_empty=True)["name"] == "LEADS_PY_EMPTY"


SEALED = ("pysprinter: secret 'LEADS_K' cannot be opened: it was sealed with another key "
          "(a different secrets.key?)\n")


def test_a_secret_sealed_with_another_key_is_a_conflict_not_a_404(cli, tmp_path):
    """A secret the key cannot open was a 404 "not_found" at submit,
    deploy and DAG submit: the secret is there (`secret ls` lists it); it
    is the key that does not fit. Now 409 "conflict" naming the secret,
    exit 2 on both paths, the same words."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        assert d.call("PUT", "/v1/secrets/LEADS_K", {"value": "v"})[0] == 200
    (d.home / "secrets.key").unlink()  # restored without its key: a new one
    r = cli("secret", "set", "LEADS_K", input="v\n")
    assert r.returncode == 0, r.stderr
    key = cli.env["PYSPRINTER_HOME"] + "/secrets.key"
    os.unlink(key)
    cli("secret", "ls", check=0)  # creates no key; the next verb that needs one does
    cli.write("k.py", "def f():\n    return 1\n")
    cli.write("p.yaml", "tasks:\n  a:\n    file: k.py\n    secrets: [LEADS_K]\n")
    with d.serving():
        src = "def f():\n    return 1\n"
        st, body = d.call("POST", "/v1/runs", {"source": src, "secrets": ["LEADS_K"]})
        assert (st, body["error"]["code"]) == (409, "conflict"), body
        assert body["error"]["message"] == SEALED[len("pysprinter: "):-1]
        st, body = d.call("POST", "/v1/functions", {"name": "leadsk", "source": src, "secrets": ["LEADS_K"]})
        assert (st, body["error"]["code"]) == (409, "conflict"), body
        st, body = d.call("POST", "/v1/dags", {"pipeline": "tasks:\n  a:\n    file: k.py\n    secrets: [LEADS_K]\n",
                                               "files": {"k.py": src}})
        assert (st, body["error"]["code"]) == (409, "conflict"), body
        remote_env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
        # The embedded verb that makes the new key says so, once
        # (test_explore_keys.py); the ones below compare with the server.
        r = cli("run", "k.py", "--secret", "LEADS_K")
        assert r.returncode == 2 and "warning: made a new secrets key" in r.stderr, r.stderr
        for args in (("run", "k.py", "--secret", "LEADS_K"), ("dag", "run", "p.yaml")):
            local = cli(*args)
            remote = cli(*args, "--server", d.url, env=remote_env)
            r = same(local, remote)
            assert r.returncode == 2, r.stderr
            assert r.stderr.endswith(SEALED.replace("pysprinter: ", "")), r.stderr
        r = cli("schedule", "add", "leadsk", "--every", "1h", "--dag", "p.yaml", "--server", d.url, env=remote_env)
        assert r.returncode == 2 and "task 'a': " + SEALED[len("pysprinter: "):] in r.stderr, r.stderr
        assert d.call("GET", "/v1/schedules")[1]["schedules"] == []


# ---- connections past server.max_connections_per_ip ---------------------------

def raw_get(sock, path="/healthz"):
    """One HTTP/1.1 request on sock: (status line, headers text, body)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")), 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    lines = head.decode().split("\r\n")
    return lines[0], "\n".join(lines[1:]).lower(), body


def test_a_connection_past_the_per_address_limit_is_told_to_retry(tmp_path):
    """Past server.max_connections_per_ip the daemon reset the connection:
    curl said "Connection reset by peer", the Python client raised a
    ConnectionError, nothing told the client to back off. Now its request
    is answered 429 with Retry-After (which the CLI and the Python client
    honour) and the connection is closed."""
    import json
    import socket
    with Daemon(tmp_path / "d", config_extra="""
        server:
          max_connections_per_ip: 3
        """).serving() as d:
        from daemonlib import wait_for
        held = []

        def hold_one():
            """A connection the daemon answered 200 (one the start's
            requests left open on its side may still count a while)."""
            s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            if raw_get(s)[0] == "HTTP/1.1 200 OK":
                held.append(s)
                return True
            s.close()
            return False
        try:
            for _ in range(3):
                wait_for(hold_one, "a connection answered")
            extra = socket.create_connection(("127.0.0.1", d.port), timeout=30)
            status, headers, body = raw_get(extra)
            assert status == "HTTP/1.1 429 Too Many Requests", (status, body)
            assert "retry-after: 1" in headers.splitlines(), headers
            assert json.loads(body)["error"] == {
                "code": "too_many_requests",
                "message": "too many connections from this address (server.max_connections_per_ip is 3): "
                           "close some and retry"}
            assert extra.recv(1) == b""  # closed after the answer
            extra.close()
        finally:
            for s in held:
                s.close()
        # The places come back as the held connections close.
        wait_for(lambda: d.call("GET", "/healthz", token=None)[0] == 200, "a place for a new connection")
