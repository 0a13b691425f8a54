"""Secrets as a user of AWS Secrets Manager + Lambda, Modal Secrets or GitHub
Actions secrets checks them (docs/secrets.md): a value never comes back in
an answer, both paths (embedded and `--server`) refuse the same things in
the same words, and a rotated value is what the next run sees."""
import json

import pytest

from conftest import same, sandbox_args
from daemonlib import TOKENS, Daemon, sandbox_mode


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore-secrets")
    with Daemon(root, sandbox=sandbox_mode(root)).serving() as d:
        yield d


VALUE = "sk-live-4c1d9e7f00b2a6d3"


# ---- a value in an error answer ---------------------------------------------

SHORT = "Pa55-w0rd.x"  # jansson quotes a token of up to 20 bytes


@pytest.mark.parametrize("body", [
    '{"value": "' + SHORT + '}',            # cut short: premature end of input
    '{"value": "' + SHORT + '\\x"}',       # a bad escape
    '{"value": ' + SHORT + '}',             # not quoted
    '{"value": "' + SHORT + '" "x"}',       # a second string where "," belongs
])
def test_a_malformed_secret_body_is_not_echoed_back(daemon, body):
    """PUT /v1/secrets/NAME with a body that is not JSON answered with
    jansson's words, which quote the text near the error: "premature end
    of input near '"Pa55-w0rd.x}'" — the value, in an answer that CI logs
    print, as no secrets manager does (jansson quotes up to 20 bytes: a
    password whole)."""
    st, hdrs, data = daemon.request("PUT", "/v1/secrets/ECHO", raw=body.encode())
    assert st == 400, (st, data)
    text = data.decode()
    assert "invalid JSON at line 1 column" in text, text
    for piece in (SHORT, "Pa55"):
        assert piece not in text, text
    assert daemon.call("GET", "/v1/secrets")[1]["secrets"] == []
