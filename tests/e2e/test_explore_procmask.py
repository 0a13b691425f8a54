"""helper-217: what a fully sandboxed run can read in its /proc about the
worker that serves it and about the host (docs/sandbox.md "What a run
sees"). The promise: a run learns nothing about the host or about another
tenant's runs."""
from conftest import sandboxed, value

INIT_FDS = """
import os

def f():
    try:
        return sorted(os.listdir("/proc/1/fd"), key=int)
    except OSError as e:
        return e.strerror
"""


def test_a_run_cannot_list_its_workers_fds_through_its_pid_namespaces_init(cli):
    """The run's pid 1 (the init its worker clones per run) shared the
    worker's fd table: /proc/1/fd listed the worker's fd numbers, among them
    the pipes of every other run the worker was serving, so one tenant's
    run watched another's come and go. Now the init has an fd table of its
    own, empty."""
    seen = value(sandboxed(cli, "initfds.py", INIT_FDS, "--json"))
    assert seen in ([], "Permission denied"), seen

