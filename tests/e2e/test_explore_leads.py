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
    assert "LEADS_EMPTY" not in same(*both("secret", "ls")).stdout
    empty = cli.write("empty.txt", "")
    r = same(*both("secret", "set", "LEADS_EMPTY", "--from-file", empty))
    assert (r.returncode, r.stderr) == (2, EMPTY)
    # Asked for, it is stored, on both paths.
    r = same(*both("secret", "set", "LEADS_EMPTY", "--allow-empty", input=""))
    assert (r.returncode, r.stdout, r.stderr) == (0, "secret LEADS_EMPTY set\n", "")
    assert "LEADS_EMPTY" in same(*both("secret", "ls")).stdout


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
        for args in (("run", "k.py", "--secret", "LEADS_K"), ("dag", "run", "p.yaml")):
            local = cli(*args)
            remote = cli(*args, "--server", d.url, env=remote_env)
            r = same(local, remote)
            assert r.returncode == 2, r.stderr
            assert r.stderr.endswith(SEALED.replace("pysprinter: ", "")), r.stderr
