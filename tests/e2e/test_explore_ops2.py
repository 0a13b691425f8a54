"""Operating a daemon (docs/operations.md, docs/secrets.md): the shipped
systemd unit and the start-up check of what the full sandbox needs; a
daemon whose key does not open its secrets refuses new sets rather than
mix two keys in one store, and `secret ls` marks what does not open; a
rotation whose key file is on a read-only mount says what to do."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD, DAEMON
from daemonlib import Daemon, TOKENS, free_port

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody_available():
    return os.geteuid() == 0 and shutil.which("setpriv")


@pytest.fixture
def open_dir():
    """A directory uid 65534 may write (tmp_path's parents are root's 0700)."""
    d = tempfile.mkdtemp(prefix="ops2-", dir="/tmp")
    os.chmod(d, 0o777)
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


# ---- lead 1: who the daemon runs as ------------------------------------------

@pytest.mark.skipif(not as_nobody_available(), reason="needs root and setpriv to start a daemon as nobody")
def test_a_daemon_that_cannot_make_the_full_sandbox_refuses_to_start(open_dir):
    """The shipped unit ran pysprinterd as User=pysprinter: it started,
    said nothing, and every run failed "the worker … did not start". A
    daemon that cannot make the full sandbox now refuses at its start,
    exit 2, saying why and what to do."""
    e = {"PATH": os.environ["PATH"], "HOME": str(open_dir)}
    p = subprocess.run([*NOBODY, str(DAEMON), "--no-auth", "--listen", f"127.0.0.1:{free_port()}",
                        "--data-dir", str(open_dir / "data")], env=e, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "the full sandbox" in p.stderr and "root" in p.stderr and "--sandbox=none" in p.stderr, p.stderr
    assert "unshare(CLONE_NEWNS): Operation not permitted" in p.stderr, p.stderr
    # --sandbox=none (trusted code) is the operator's choice: that starts.
    port = free_port()
    d = subprocess.Popen([*NOBODY, str(DAEMON), "--no-auth", "--listen", f"127.0.0.1:{port}", "--sandbox=none",
                          "--data-dir", str(open_dir / "data")], env=e, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    try:
        import http.client
        import time
        deadline = time.time() + 30
        while time.time() < deadline:
            assert d.poll() is None, d.stderr.read()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("the --sandbox=none daemon did not come up")
    finally:
        d.terminate()
        d.wait(timeout=60)
        d.stderr.close()


@pytest.mark.parametrize("unit", ["pysprinterd", "pysprinterd-gateway", "pysprinterd-worker"])
def test_the_shipped_units_run_the_daemon_with_what_its_sandbox_needs(unit, tmp_path):
    """As root (the sandbox maps each worker to an unprivileged uid of its
    own), with a delegated cgroup subtree, and nothing that forbids the
    namespaces or the mounts the sandbox makes."""
    text = (BUILD / f"{unit}.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert keys.get("User", "root") == "root", keys.get("User")
    assert keys.get("Delegate") == "yes"
    for forbidden in ("RestrictNamespaces", "ProtectControlGroups", "SystemCallFilter", "CapabilityBoundingSet",
                      "PrivateUsers", "DynamicUser"):
        assert keys.get(forbidden, "no") in ("no", "false"), (forbidden, keys.get(forbidden))
    if not shutil.which("systemd-analyze"):
        return
    # The unit as systemd reads it, with this build's binary.
    local = tmp_path / f"{unit}.service"
    local.write_text(re.sub(r"^ExecStart=\S+", f"ExecStart={DAEMON}", text, flags=re.M))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr


# ---- lead 2: one key per store ------------------------------------------------

def test_a_set_under_another_key_than_the_stores_is_refused_on_both_paths(cli, home, tmp_path):
    """A database restored without its key: the start (or the first secret
    verb) made a new key, and every `secret set` then sealed with it next
    to secrets sealed with the lost one: two keys in one store, which no
    single key backup opens. Now the set is refused in the same words on
    both paths (exit 2; a daemon answers 409), and `secret ls` marks the
    secrets that the key does not open."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        assert d.call("PUT", "/v1/secrets/OPS2_OLD", {"value": "v"})[0] == 200
    assert cli("secret", "set", "OPS2_OLD", input="v\n").returncode == 0
    for key in (home / "secrets.key", d.home / "secrets.key"):
        key.write_bytes(os.urandom(32))
    with d.serving():
        st, body = d.call("PUT", "/v1/secrets/OPS2_NEW", {"value": "w"})
        assert st == 409, body
        msg = body["error"]["message"]
        assert "another key" in msg and "restore the key" in msg, msg
        remote = cli("secret", "set", "OPS2_NEW", "--server", d.url, input="w\n",
                     env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        local = cli("secret", "set", "OPS2_NEW", input="w\n")
        for r in (local, remote):
            assert r.returncode == 2, (r.returncode, r.stderr)
            assert msg in r.stderr, r.stderr
        # Nothing was stored.
        st, listed = d.call("GET", "/v1/secrets")
        assert [s["name"] for s in listed["secrets"]] == ["OPS2_OLD"], listed
        # Replacing the very secret that does not open is what fixes it:
        # allowed, and then the store is one key's again.
        ls_local = cli("secret", "ls")
        ls_remote = cli("secret", "ls", "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
        undated = [re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "DATE", r.stdout) for r in (ls_local, ls_remote)]
        assert undated[0] == undated[1], undated
        assert re.search(r"OPS2_OLD .*cannot be opened", ls_local.stdout), ls_local.stdout
        jl = json.loads(cli("secret", "ls", "--json").stdout)
        jr = json.loads(cli("secret", "ls", "--json", "--server", d.url,
                            env={"PYSPRINTER_TOKEN": TOKENS["alice"]}).stdout)
        assert [s.get("opens") for s in jl] == [s.get("opens") for s in jr] == [False], (jl, jr)
        assert d.call("PUT", "/v1/secrets/OPS2_OLD", {"value": "v2"})[0] == 200
        assert d.call("PUT", "/v1/secrets/OPS2_NEW", {"value": "w"})[0] == 200
        assert cli("secret", "set", "OPS2_OLD", input="v2\n").returncode == 0
        assert cli("secret", "set", "OPS2_NEW", input="w\n").returncode == 0
        assert "cannot be opened" not in cli("secret", "ls").stdout


# ---- lead 3: a key on a read-only mount ---------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root to mount a read-only bind")
def test_rotating_a_key_on_a_read_only_mount_says_where_to_put_it(tmp_path):
    """A Kubernetes secret volume is read-only: the rotation failed exit 7
    "Read-only file system". Now exit 2, naming a writable key path."""
    vol = tmp_path / "vol"
    vol.mkdir()
    key = vol / "secrets.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    d = Daemon(tmp_path / "d", config_extra=f"secrets:\n  key_file: {key}\n")
    with d.serving():
        assert d.call("PUT", "/v1/secrets/OPS2_K", {"value": "v"})[0] == 200
    script = (f'mount --bind -o ro "{vol}" "{vol}" && exec "{DAEMON}" secret rotate-key --config "{d.config}" '
              f'--data-dir "{d.home}"')
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=d.env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "read-only" in p.stderr and "secrets.key_file" in p.stderr, p.stderr
    assert key.exists() and not (vol / "secrets.key.next").exists()


def test_a_backup_during_an_unfinished_rotation_names_the_next_key(tmp_path):
    """A rotation killed before its rename leaves secrets.key.next, which
    the secrets may be sealed with: a backup then says to keep that file
    with it (the daemon's start said so; the backup, where one looks when
    saving keys, did not)."""
    from test_explore_keys import kill9, stalled_rotation
    d = Daemon(tmp_path / "d")
    with d.serving():
        assert d.call("PUT", "/v1/secrets/OPS2_K", {"value": "v"})[0] == 200
    argv = [DAEMON, "secret", "rotate-key", "--config", d.config, "--data-dir", d.home]
    kill9(stalled_rotation(argv, d.env(), "before-rename"))
    p = subprocess.run([str(DAEMON), "backup", str(tmp_path / "b.db"), "--config", str(d.config), "--data-dir",
                        str(d.home)], env=d.env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "secrets.key.next" in p.stderr, p.stderr
