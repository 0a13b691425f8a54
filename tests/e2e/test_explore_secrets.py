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


# ---- the same limits on both paths --------------------------------------------

ECHO_ENV = """
    import os
    def main():
        return sorted(k for k in os.environ if k.startswith("E_"))
"""


@pytest.mark.parametrize("case", ["65 variables", "65 secrets", "70 KiB of variables"])
def test_env_and_secret_limits_are_the_same_on_both_paths(cli, both, case):
    """docs/api.md: `secrets` and `env` hold at most 64 entries each, env
    at most 64 KiB. A daemon refused more with the API's words ("fields
    'secrets' and 'env' hold at most 64 entries each", "field 'env' is
    larger than 65536 bytes"), embedded ran it (exit 0)."""
    cli.write("f.py", ECHO_ENV)
    if case == "65 variables":
        opts = [w for i in range(65) for w in ("--env", f"E_{i}=1")]
        words = "at most 64 --env variables"
    elif case == "65 secrets":
        opts = [w for i in range(65) for w in ("--secret", f"S_{i}")]
        words = "at most 64 --secret names"
    else:
        opts = ["--env", "E_A=" + "a" * 40000, "--env", "E_B=" + "b" * 30000]
        words = "the --env variables hold more than 64 KiB"
    r = same(*both("run", *sandbox_args(), "f.py", *opts))
    assert (r.returncode, r.stdout) == (2, ""), r
    assert words in r.stderr, r.stderr


def test_env_and_secret_repeats_count_once_on_both_paths(cli, both):
    """A variable given again replaces the first (the last wins, as in a
    shell) and a secret named twice is one: 64 distinct ones still run."""
    cli.write("f.py", ECHO_ENV)
    opts = [w for i in range(64) for w in ("--env", f"E_{i:02}=1")] + ["--env", "E_00=2", "--env", "E_01=3"]
    local, remote = both("run", *sandbox_args(), "f.py", *opts)
    for r in (local, remote):
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [f"E_{i:02}" for i in range(64)]


# ---- rotation --------------------------------------------------------------

def test_a_dag_task_sees_a_rotated_secret_not_its_memo(cli, both):
    """A task's memo key held its secrets' names only: after `secret set`
    gave a new value, the next `dag run` answered "t: cached" with the
    result computed with the old one (the old database, the revoked key's
    account), on both paths, until --no-cache. The value was in its key
    the way an `env:` value is; a rotation now recomputes, and a run
    without a rotation is still a memo hit."""
    cli.write("t.py", """
        import os
        def show():
            return {"v": os.environ["EXPLORE_ROT"][::-1]}
    """)
    cli.write("p.yaml", """
        tasks:
          t: {file: t.py::show, secrets: [EXPLORE_ROT]}
    """)
    for value in ("one", "two"):
        local, remote = both("secret", "set", "EXPLORE_ROT", input=value + "\n")
        assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
        for r in both("dag", "run", "p.yaml", *sandbox_args()):
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout) == {"v": value[::-1]}, (value, r.stdout, r.stderr)
            assert "cached" not in r.stderr, r.stderr
    for r in both("dag", "run", "p.yaml", *sandbox_args()):
        assert (r.returncode, json.loads(r.stdout)) == (0, {"v": "owt"}), r.stderr
        assert "t: cached" in r.stderr, r.stderr


# ---- how many ----------------------------------------------------------------

def test_a_tenant_holds_at_most_1000_secrets_on_both_paths(cli, both, daemon, home):
    """Every other thing a tenant makes is capped; secrets were not: any
    number of 64 KiB values, one PUT each, into the daemon's database. Now
    a new name past 1000 is refused (409; exit 2) in the same words on both
    paths, and replacing one that exists still works."""
    import os
    import sqlite3
    r = cli("secret", "set", "EXPLORE_S0000", input="v\n")
    assert r.returncode == 0, r.stderr
    # Sealed with the home's key as the CLI seals (AES-256-GCM, nonce ||
    # ciphertext || tag, aad tenant NUL name): a row no key opens would
    # make every set refused (test_explore_ops2.py), not the quota's.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    aes = AESGCM((home / "secrets.key").read_bytes())

    def sealed(name):
        nonce = os.urandom(12)
        return nonce + aes.encrypt(nonce, b"v", b"local\0" + name.encode())
    db = sqlite3.connect(home / "pysprinter.db")
    with db:
        db.executemany("INSERT INTO secrets (tenant, name, sealed, created, updated) VALUES ('local', ?, ?, 1, 1)",
                       [(f"EXPLORE_S{i:04}", sealed(f"EXPLORE_S{i:04}")) for i in range(1, 1000)])
    db.close()
    have = {s["name"] for s in daemon.call("GET", "/v1/secrets")[1]["secrets"]}
    for i in range(1000):
        if len(have) >= 1000:
            break
        if f"EXPLORE_S{i:04}" not in have:
            st, out = daemon.call("PUT", f"/v1/secrets/EXPLORE_S{i:04}", {"value": "v"})
            assert st == 200, out
            have.add(f"EXPLORE_S{i:04}")
    r = same(*both("secret", "set", "EXPLORE_ONE_MORE", input="v\n"))
    assert (r.returncode, r.stdout) == (2, ""), r
    assert ("cannot add secret 'EXPLORE_ONE_MORE': a tenant holds at most 1000 secrets "
            "(remove one with: pysprinter secret rm NAME)") in r.stderr
    st, out = daemon.call("PUT", "/v1/secrets/EXPLORE_ONE_MORE", {"value": "v"})
    assert st == 409, out
    local, remote = both("secret", "set", "EXPLORE_S0000", input="w\n")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    # Room again after a removal; and bob is not alice.
    assert daemon.call("PUT", "/v1/secrets/EXPLORE_BOB", {"value": "v"}, token="bob")[0] == 200
    local, remote = both("secret", "rm", "EXPLORE_S0001")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    local, remote = both("secret", "set", "EXPLORE_ONE_MORE", input="v\n")
    assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    for name in sorted(have | {"EXPLORE_ONE_MORE"}):
        daemon.call("DELETE", f"/v1/secrets/{name}")


def instances(daemon):
    st, out = daemon.call("GET", "/v1/workers")
    assert st == 200, out
    return out["pool"]["instances"]


def test_a_rotated_or_removed_secret_leaves_no_warm_instance_holding_it(cli, daemon):
    """A deployed function's warm instance holds the environment it started
    with, and a changed secret starts a new one (docs/secrets.md) — but the
    old one stayed warm, the old (perhaps leaked, revoked) value in its
    memory, until its idle time ran out; so did every instance after a
    `secret rm`. Setting or removing a secret now retires the tenant's
    instances that hold an environment; the next invocation starts one
    with the value of now."""
    cli.write("h.py", """
        import os
        def handler(event=None, context=None):
            return {"v": os.environ.get("EXPLORE_WARM")}
    """)
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    srv = ["--server", daemon.url]
    assert cli("secret", "set", "EXPLORE_WARM", *srv, input="first\n", env=env).returncode == 0
    r = cli("deploy", "h.py", "--name", "explore-warm", "--secret", "EXPLORE_WARM", *srv, env=env)
    assert r.returncode == 0, r.stderr
    before = instances(daemon)
    for _ in range(2):
        r = cli("invoke", "explore-warm", *srv, env=env)
        assert (r.returncode, json.loads(r.stdout)) == (0, {"v": "first"}), r.stderr
    assert instances(daemon) == before + 1
    assert cli("secret", "set", "EXPLORE_WARM", *srv, input="second\n", env=env).returncode == 0
    assert instances(daemon) == before
    r = cli("invoke", "explore-warm", *srv, env=env)
    assert (r.returncode, json.loads(r.stdout)) == (0, {"v": "second"}), r.stderr
    assert instances(daemon) == before + 1
    assert cli("secret", "rm", "EXPLORE_WARM", *srv, env=env).returncode == 0
    assert instances(daemon) == before
    r = cli("invoke", "explore-warm", *srv, env=env)
    assert r.returncode == 2 and "no secret named 'EXPLORE_WARM'" in r.stderr
    # Another tenant's secrets leave alice's instances alone.
    assert cli("secret", "set", "EXPLORE_WARM", *srv, input="third\n", env=env).returncode == 0
    assert json.loads(cli("invoke", "explore-warm", *srv, env=env).stdout) == {"v": "third"}
    assert daemon.call("PUT", "/v1/secrets/EXPLORE_WARM", {"value": "bob's"}, token="bob")[0] == 200
    assert instances(daemon) == before + 1


# ---- removal while in use ------------------------------------------------------

def test_removing_a_secret_a_deployed_function_names_says_so(cli, daemon):
    """`secret rm` of a secret a deployed function uses said only "removed
    secret NAME": the function's next invocation (a schedule's fire, a
    Lambda client's call) failed with SecretError, found out there. As
    `functions rm` names the schedules that fire a function, `secret rm`
    now names the functions whose current version uses the secret (the
    answer's `warnings`); it still removes it, exit 0."""
    cli.write("h.py", """
        import os
        def handler(event=None, context=None):
            return {"n": len(os.environ["EXPLORE_RM"])}
    """)
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    srv = ["--server", daemon.url]
    assert cli("secret", "set", "EXPLORE_RM", *srv, input="v\n", env=env).returncode == 0
    assert cli("secret", "set", "EXPLORE_RM2", *srv, input="v\n", env=env).returncode == 0
    for name, secrets in (("explore-rm-a", ["EXPLORE_RM"]), ("explore-rm-b", ["EXPLORE_RM2", "EXPLORE_RM"]),
                          ("explore-rm-c", ["EXPLORE_RM2"])):
        r = cli("deploy", "h.py", "--name", name, *[w for s in secrets for w in ("--secret", s)], *srv, env=env)
        assert r.returncode == 0, r.stderr
    # bob's function of the same name is none of alice's business.
    assert daemon.call("PUT", "/v1/secrets/EXPLORE_RM", {"value": "b"}, token="bob")[0] == 200
    st, out = daemon.call("POST", "/v1/functions", {"name": "explore-rm-bob", "source": "def f():\n    return 1\n",
                                                    "filename": "f.py", "secrets": ["EXPLORE_RM"]}, token="bob")
    assert st in (200, 201), out
    r = cli("secret", "rm", "EXPLORE_RM", *srv, env=env)
    assert (r.returncode, r.stdout) == (0, "removed secret EXPLORE_RM\n"), r
    assert r.stderr == (
        "warning: function 'explore-rm-a' names secret 'EXPLORE_RM': its invocations fail until it is set again "
        "(pysprinter secret set EXPLORE_RM) or the function is deployed without it\n"
        "warning: function 'explore-rm-b' names secret 'EXPLORE_RM': its invocations fail until it is set again "
        "(pysprinter secret set EXPLORE_RM) or the function is deployed without it\n"), r.stderr
    st, out = daemon.call("DELETE", "/v1/secrets/EXPLORE_RM2")
    assert st == 200 and out["deleted"] is True and "explore-rm-c" in out["warnings"], out
    st, out = daemon.call("DELETE", "/v1/secrets/EXPLORE_RM", token="bob")
    assert st == 200 and "explore-rm-bob" in out["warnings"] and "explore-rm-a" not in out["warnings"], out
    assert cli("secret", "set", "EXPLORE_UNUSED", *srv, input="v\n", env=env).returncode == 0
    r = cli("secret", "rm", "EXPLORE_UNUSED", *srv, env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "removed secret EXPLORE_UNUSED\n", ""), r
    st, out = daemon.call("GET", "/v1/functions/explore-rm-a")
    assert st == 200 and out["secrets"] == ["EXPLORE_RM"]


# ---- the key ------------------------------------------------------------------

def test_a_daemon_started_without_the_key_its_secrets_need_says_so(tmp_path):
    """A database restored without its secrets.key (docs/operations.md asks
    to back both up) started silently with a new key: `secret ls` listed
    every secret, and each run that named one failed later with "cannot be
    opened". The start now says how many secrets the key cannot open and
    what to do, in the daemon's log."""
    d = Daemon(tmp_path / "d")
    with d.serving():
        for name in ("EXPLORE_K1", "EXPLORE_K2"):
            assert d.call("PUT", f"/v1/secrets/{name}", {"value": "v"})[0] == 200
        assert d.call("PUT", "/v1/secrets/EXPLORE_K1", {"value": "v"}, token="bob")[0] == 200
    with d.serving():
        pass
    assert "sealed with another key" not in d.log.read_text()
    (d.home / "secrets.key").unlink()
    with d.serving():
        st, out = d.run("def f():\n    import os\n    return 1\n", secrets=["EXPLORE_K1"])
        assert st == 409, out  # the secret is there; the key does not fit (test_explore_leads)
        assert "secret 'EXPLORE_K1' cannot be opened: it was sealed with another key" in out["error"]["message"]
    log = d.log.read_text()
    assert (f"warning: 3 of the 3 secrets in the database were sealed with another key than "
            f"{d.home / 'secrets.key'}: runs that name them fail (\"cannot be opened\"); restore the key "
            f"backed up with this database, or set each again (pysprinter secret set NAME)") in log, log


# ---- words ---------------------------------------------------------------------

def test_from_file_without_a_path_says_so_on_both_paths(both):
    """`secret set NAME --from-file` (the path forgotten) said "secret set
    takes the value from stdin or --from-file, never from the command
    line" — the user had asked for a file."""
    for args in (["--from-file"], ["--from-file="]):
        r = same(*both("secret", "set", "EXPLORE_FF", *args, input=""))
        assert (r.returncode, r.stdout) == (2, ""), r
        assert r.stderr == "pysprinter: secret set: --from-file needs a PATH\n", r.stderr


def test_a_name_too_long_is_refused_with_the_rule_it_breaks(cli, both):
    """A 129-character name was refused with "[A-Za-z_][A-Za-z0-9_]*", a
    pattern it matches: the rule is at most 128 characters (docs/api.md's
    {0,127}), which every message now says."""
    long = "A" * 129
    cli.write("f.py", ECHO_ENV)
    for args in (["secret", "set", long], ["secret", "rm", long], ["run", "f.py", "--secret", long],
                 ["run", "f.py", "--env", long + "=1"]):
        r = same(*both(*args, input="v\n"))
        assert (r.returncode, r.stdout) == (2, ""), r
        assert "[A-Za-z_][A-Za-z0-9_]{0,127}" in r.stderr, r.stderr
    r = same(*both("secret", "set", "A" * 128, input="v\n"))
    assert r.returncode == 0, r.stderr
    assert same(*both("secret", "rm", "A" * 128)).returncode == 0


def test_a_stack_past_the_limits_is_refused_at_its_line(cli, daemon):
    """`deploy -f` of a function with 65 `env:` keys or 65 `secrets:` was
    refused by the server with "fields 'secrets' and 'env' hold at most 64
    entries each", naming neither the file, the line nor the function. The
    schema now says it at the line (exit 3, as any schema mistake), and
    what only the server checks (64 KiB of variables) names the function."""
    cli.write("h.py", "def handler(event=None, context=None):\n    return 1\n")
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    keys = ", ".join(f"E{i}: 1" for i in range(65))
    names = ", ".join(f"S{i}" for i in range(65))
    cli.write("s1.yaml", f"functions:\n  fa:\n    file: h.py\n    env: {{{keys}}}\n")
    cli.write("s2.yaml", f"functions:\n  fb:\n    file: h.py\n    secrets: [{names}]\n")
    big = "a" * 40000
    cli.write("s3.yaml", f"functions:\n  fc:\n    file: h.py\n    env: {{A: {big}, B: {big}}}\n")
    r = cli("deploy", "-f", "s1.yaml", "--server", daemon.url, env=env)
    assert (r.returncode, r.stdout) == (3, ""), r
    assert "s1.yaml:4:10: has more than 64 keys" in r.stderr, r.stderr
    r = cli("deploy", "-f", "s2.yaml", "--server", daemon.url, env=env)
    assert (r.returncode, r.stdout) == (3, ""), r
    assert "s2.yaml:4:14: has more than 64 items" in r.stderr, r.stderr
    r = cli("deploy", "-f", "s3.yaml", "--server", daemon.url, env=env)
    assert (r.returncode, r.stdout) == (2, ""), r
    assert "function 'fc': field 'env' is larger than 65536 bytes" in r.stderr, r.stderr


def test_an_unusable_key_file_is_not_reported_as_a_server_problem(cli, home):
    """Embedded, a secrets.key that others may read (or that is not a key)
    ended `secret set`, `run --secret` and `dag run` with exit 6 — "server
    unreachable/auth" in docs/cli.md, with no server involved; a script
    that retries on 6 retried for ever. And a key of the wrong size was
    exit 3, a validation error. Both are now 7 (the installation's
    problem), with the message that says what to do."""
    cli.write("f.py", ECHO_ENV)
    cli.write("p.yaml", "tasks:\n  t: {file: f.py, secrets: [EXPLORE_KEY]}\n")
    assert cli("secret", "set", "EXPLORE_KEY", input="v\n").returncode == 0
    key = home / "secrets.key"
    key.chmod(0o644)
    for args in (["secret", "set", "EXPLORE_KEY"], ["run", *sandbox_args(), "f.py", "--secret", "EXPLORE_KEY"],
                 ["dag", "run", *sandbox_args(), "p.yaml"]):
        r = cli(*args, input="v\n")
        assert (r.returncode, r.stdout) == (7, ""), (args, r)
        assert f"{key}: mode 0644 lets others read the key; chmod 600 it" in r.stderr, r.stderr
    key.chmod(0o600)
    key.write_bytes(b"short")
    r = cli("run", *sandbox_args(), "f.py", "--secret", "EXPLORE_KEY")
    assert (r.returncode, r.stdout) == (7, ""), r
    assert f"{key}: not a 32-byte key file" in r.stderr, r.stderr


def test_quiet_secret_set_at_a_terminal_still_prompts(cli):
    """`pysprinter -q secret set NAME` at a terminal turned echo off and
    waited without a word: nothing showed, typed keys did not appear, the
    terminal looked hung. -q keeps to results and errors, but a prompt for
    input the command cannot go on without is neither: it shows (on
    stderr), and the "secret NAME set" line stays quiet."""
    from test_explore_data import _secret_set_on_a_pty
    code, shown, echo = _secret_set_on_a_pty(cli, [b"hunter2\n", b"\x04"],
                                             wrapper=["sh", "-c", 'exec "$0" -q "$@"'])
    assert code == 0, shown
    assert "value for TTYK (not shown; end with Ctrl-D):" in shown, shown
    assert "hunter2" not in shown and "secret TTYK set" not in shown, shown
    assert echo, "the terminal was left without echo"


def test_removing_a_secret_a_scheduled_dag_names_says_so(cli, daemon):
    """The same for a schedule that fires a DAG file (`schedule add --dag`)
    whose task names the secret: its fires fail with "no secret named"
    from then on, which `secret rm` now says."""
    cli.write("t.py", "import os\ndef f():\n    return len(os.environ['EXPLORE_SD'])\n")
    cli.write("p.yaml", "tasks:\n  pull: {file: t.py::f, secrets: [EXPLORE_SD]}\n")
    env = {"PYSPRINTER_TOKEN": TOKENS["alice"]}
    srv = ["--server", daemon.url]
    assert cli("secret", "set", "EXPLORE_SD", *srv, input="v\n", env=env).returncode == 0
    r = cli("schedule", "add", "explore-sd", "--cron", "0 3 * * *", "--dag", "p.yaml", *srv, env=env)
    assert r.returncode == 0, r.stderr
    r = cli("secret", "rm", "EXPLORE_SD", *srv, env=env)
    assert (r.returncode, r.stdout) == (0, "removed secret EXPLORE_SD\n"), r
    assert r.stderr == ("warning: schedule 'explore-sd' fires a DAG whose task 'pull' names secret 'EXPLORE_SD': "
                        "its fires fail until it is set again (pysprinter secret set EXPLORE_SD)\n"), r.stderr
    assert cli("schedule", "rm", "explore-sd", *srv, env=env).returncode == 0


def test_secret_ls_keeps_its_columns_with_a_long_name_on_both_paths(both):
    """NAME was 32 characters wide and a name may have 128: a longer one
    pushed its CREATED and UPDATED out of line with every other row's."""
    long = "EXPLORE_" + "L" * 52
    for name in (long, "EXPLORE_S"):
        local, remote = both("secret", "set", name, input="v\n")
        assert local.returncode == 0 and remote.returncode == 0, (local.stderr, remote.stderr)
    for r in both("secret", "ls"):
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].index("CREATED") == len(long) + 1, lines
        for line in lines[1:]:
            assert line[len(long)] == " " and line[len(long) + 1:len(long) + 3] == "20", lines
    for name in (long, "EXPLORE_S"):
        both("secret", "rm", name)


def test_a_secret_sealed_with_another_key_is_refused_alike_on_both_paths(cli, home, tmp_path):
    """A secret that the key cannot open (the key replaced, the database
    restored without it) was exit 2 against a daemon (refused at submit)
    and exit 3 embedded, in the same words: now exit 2 on both paths, as
    for a secret that is not there, for `run` and for `dag run`."""
    import os
    cli.write("f.py", ECHO_ENV)
    cli.write("p.yaml", "tasks:\n  t: {file: f.py, secrets: [EXPLORE_SEALED]}\n")
    d = Daemon(tmp_path / "d", sandbox=sandbox_mode(tmp_path))
    with d.serving():
        assert d.call("PUT", "/v1/secrets/EXPLORE_SEALED", {"value": "v"})[0] == 200
    assert cli("secret", "set", "EXPLORE_SEALED", input="v\n").returncode == 0
    for key in (home / "secrets.key", d.home / "secrets.key"):
        key.write_bytes(os.urandom(32))
    with d.serving():
        for args in (["run", *sandbox_args(), "f.py", "--secret", "EXPLORE_SEALED"],
                     ["dag", "run", *sandbox_args(), "p.yaml"]):
            local = cli(*args)
            remote = cli(*args, "--server", d.url, env={"PYSPRINTER_TOKEN": TOKENS["alice"]})
            r = same(local, remote)
            assert (r.returncode, r.stdout) == (2, ""), r
            assert "secret 'EXPLORE_SEALED' cannot be opened: it was sealed with another key" in r.stderr, r.stderr
