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
