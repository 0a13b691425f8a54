"""Tokens without editing YAML (docs/secrets.md "Tokens"): `pysprinterd token
create|ls|revoke` and the admin API /v1/tokens, against a real running daemon
that must see new and revoked tokens on the next request, without SIGHUP."""
import hashlib
import json
import sqlite3
import subprocess
import time

import pytest

from conftest import DAEMON
from daemonlib import Daemon


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens-daemon")
    daemon = Daemon(root).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def token_cmd(d, *args, check=0):
    p = subprocess.run([str(DAEMON), "token", *args, "--config", str(d.config)], env=d.env(),
                       capture_output=True, text=True, timeout=60)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def listed(d):
    return json.loads(token_cmd(d, "ls", "--json").stdout)


def test_create_use_list_revoke_without_sighup(d):
    p = token_cmd(d, "create", "--tenant", "carol")
    token = p.stdout.strip()
    assert token.startswith("pst_") and len(token) == 68
    # Only its sha256 is stored.
    db = d.home / "pysprinter.db"
    assert token.encode() not in db.read_bytes()
    c = sqlite3.connect(db)
    hashes = [h for (h,) in c.execute("SELECT sha256 FROM tokens")]
    c.close()
    assert hashlib.sha256(token.encode()).hexdigest() in hashes

    # The running daemon accepts it on the next request: tenant carol.
    st, body = d.run("def f():\n    return 7\n", token=token)
    assert st == 200 and body["result"] == 7, body
    run_id = body["id"]
    st, body = d.call("GET", "/v1/runs", token=token)
    assert st == 200 and run_id in [r["id"] for r in body["runs"]]
    # The run is carol's: alice does not see it.
    st, _ = d.call("GET", f"/v1/runs/{run_id}", token="alice")
    assert st == 404
    entry = [t for t in listed(d) if t["tenant"] == "carol"][0]
    assert entry["role"] == "user" and entry["expires_at"] is None and entry["last_used_at"] is not None
    assert len(entry["id"]) == 12 and "token" not in entry
    text = token_cmd(d, "ls").stdout
    assert entry["id"] in text and "carol" in text and token not in text

    token_cmd(d, "revoke", entry["id"])
    st, _ = d.call("GET", "/v1/runs", token=token)
    assert st == 401
    assert token_cmd(d, "revoke", entry["id"], check=None).returncode == 2


def test_roles_and_expiry(d):
    ro = token_cmd(d, "create", "--tenant", "dave", "--role", "readonly").stdout.strip()
    st, _ = d.call("GET", "/v1/runs", token=ro)
    assert st == 200
    st, _ = d.run("def f():\n    return 1\n", token=ro)
    assert st == 403
    assert token_cmd(d, "create", "--tenant", "x", "--role", "root", check=None).returncode == 2
    assert token_cmd(d, "create", "--tenant", "x", "--expires", "soon", check=None).returncode == 2
    assert token_cmd(d, "create", "--tenant", "bad/name", check=None).returncode == 2
    # An expired token is refused: made valid for 1 s, then past it.
    short = token_cmd(d, "create", "--tenant", "erin", "--expires", "1s").stdout.strip()
    entry = [t for t in listed(d) if t["tenant"] == "erin"][0]
    assert entry["expires_at"] is not None
    deadline = time.time() + 10
    while time.time() < deadline:
        st, _ = d.call("GET", "/v1/runs", token=short)
        if st == 401:
            break
        time.sleep(0.1)
    assert st == 401


def test_admin_api(d):
    st, body = d.call("POST", "/v1/tokens", {"tenant": "frank", "role": "user", "expires": "30d"}, token="admin")
    assert st == 201, body
    token, tid = body["token"], body["id"]
    assert body["tenant"] == "frank" and body["expires_at"]
    st, body = d.call("GET", "/v1/runs", token=token)
    assert st == 200
    st, body = d.call("GET", "/v1/tokens", token="admin")
    assert st == 200 and tid in [t["id"] for t in body["tokens"]] and token not in json.dumps(body)
    # Not for a user token, nor a read-only one.
    for who in ("alice", "reader", token):
        st, _ = d.call("GET", "/v1/tokens", token=who)
        assert st == 403
        st, _ = d.call("POST", "/v1/tokens", {"tenant": "mallory", "role": "admin"}, token=who)
        assert st == 403
    st, _ = d.call("POST", "/v1/tokens", {"tenant": "x", "role": "god"}, token="admin")
    assert st == 400
    # A prefix names it; the answer gives the token's id, not the prefix.
    st, body = d.call("DELETE", f"/v1/tokens/{tid[:6]}", token="admin")
    assert st == 200 and body == {"id": tid, "revoked": True}, body
    st, _ = d.call("GET", "/v1/runs", token=token)
    assert st == 401
    st, _ = d.call("DELETE", f"/v1/tokens/{tid}", token="admin")
    assert st == 404


def test_yaml_tokens_keep_working(d):
    for who in ("alice", "bob", "reader", "admin"):
        st, _ = d.call("GET", "/v1/runs", token=who)
        assert st == 200, who
    st, _ = d.call("GET", "/v1/runs", token="no-such-token")
    assert st == 401


def test_dashboard_login_with_a_made_token_ends_at_revoke(d):
    token = token_cmd(d, "create", "--tenant", "gina").stdout.strip()
    st, hdrs, body = d.request("POST", "/login", {"token": token}, token=None,
                               headers={"X-Pysprinter-CSRF": "1"})
    assert st == 200 and json.loads(body)["tenant"] == "gina", body
    cookie = hdrs["set-cookie"].split(";")[0]
    st, _, _ = d.request("GET", "/v1/runs", token=None, headers={"Cookie": cookie})
    assert st == 200
    tid = [t["id"] for t in listed(d) if t["tenant"] == "gina"][0]
    token_cmd(d, "revoke", tid)
    st, _, _ = d.request("GET", "/v1/runs", token=None, headers={"Cookie": cookie})
    assert st == 401


def test_restore_keeps_the_tokens_of_now_not_the_backups(tmp_path):
    """A database restore goes back in time for runs and functions, not for
    credentials: a token revoked after the backup stayed revoked nowhere
    (it worked again after the restore), and one created since was lost."""
    daemon = Daemon(tmp_path / "d").start()
    try:
        old = token_cmd(daemon, "create", "--tenant", "carol").stdout.strip()
        old_id = [t["id"] for t in listed(daemon) if t["tenant"] == "carol"][0]
        backup = tmp_path / "bk.db"
        p = subprocess.run([str(DAEMON), "backup", str(backup), "--data-dir", str(daemon.home)], env=daemon.env(),
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        token_cmd(daemon, "revoke", old_id)
        new = token_cmd(daemon, "create", "--tenant", "dave").stdout.strip()
    finally:
        daemon.stop()
    p = subprocess.run([str(DAEMON), "restore", str(backup), "--data-dir", str(daemon.home)], env=daemon.env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    daemon.start()
    try:
        assert daemon.call("GET", "/v1/runs", token=old)[0] == 401
        assert daemon.call("GET", "/v1/runs", token=new)[0] == 200
        assert [t["tenant"] for t in listed(daemon)] == ["dave"]
    finally:
        daemon.stop()


def test_restore_of_a_backup_older_than_tokens_keeps_the_tokens_of_now(tmp_path):
    """A backup from before the tokens table (schema 5 < 9) had no table to
    receive the current tokens: every token made with `pysprinterd token
    create` was lost by the restore."""
    from conftest import ROOT
    daemon = Daemon(tmp_path / "d").start()
    try:
        kept = token_cmd(daemon, "create", "--tenant", "carol").stdout.strip()
    finally:
        daemon.stop()
    p = subprocess.run([str(DAEMON), "restore", str(ROOT / "tests" / "fixtures" / "schema-v5.db"), "--data-dir",
                        str(daemon.home)], env=daemon.env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    daemon.start()
    try:
        assert daemon.call("GET", "/v1/runs", token=kept)[0] == 200
        assert [t["tenant"] for t in listed(daemon)] == ["carol"]
        # The backup's own data came back with it (two runs of hello.py among them).
        with sqlite3.connect(daemon.home / "pysprinter.db") as db:
            assert db.execute("SELECT count(*) FROM runs").fetchone()[0] >= 2
    finally:
        daemon.stop()
