#!/usr/bin/python3
"""A cancel while a run installs, and the wake-ups of a run that sleeps
(docs/internals/performance-log.md "a cancel during an install, and no 100 ms tick").

usage: bench_cancel.py BUILD_OR_BIN_DIR [BASELINE_DIR]

Each DIR is a meson build dir or a dir holding pysprinter, pysprinter-worker
and pysprinterd. For each: the time from Ctrl-C (and from `cancel RUN`) to
the end of a run whose only wheel (2 MiB) a local index serves over 30 s,
embedded and against a pysprinterd; and the voluntary context switches per
second of an embedded run of a function sleeping 5 s (the CLI, its worker
and the run, from /proc/PID/task/*/status). Run with the baseline in the
same run: the figures move with the machine's load."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import pkgindex  # noqa: E402


def binaries(d):
    d = pathlib.Path(d)
    if (d / "src" / "cli" / "pysprinter").exists():
        return d / "src/cli/pysprinter", d / "src/worker/pysprinter-worker", d / "src/daemon/pysprinterd"
    return d / "pysprinter", d / "pysprinter-worker", d / "pysprinterd"


def base_env(worker):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPRINTER_", "PIP_"))}
    env.update(PYSPRINTER_WORKER=str(worker), NO_COLOR="1")
    return env


def cancel_times(cli, worker, daemon, tmp):
    ix = pkgindex.Index()
    names = [f"slowq{i}" for i in range(4)]
    paths = {}
    for n in names:
        w = pkgindex.build_wheel(tmp / "w", n, "1.0",
                                 files={f"{n}.py": "X = 1\n", f"{n}_blob.bin": os.urandom(2 << 20)})
        ix.add(w)
        paths[n] = f"/files/{w.name}"
        ix.slow[paths[n]] = 30
    ix.start()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp / "d.yaml").write_text(f"index:\n  url: {ix.url}\n")
    env = dict(base_env(worker), PYSPRINTER_INDEX_URL=ix.url)
    d = subprocess.Popen([str(daemon), "--listen", f"127.0.0.1:{port}", "--config", str(tmp / "d.yaml"),
                          "--no-auth", "--sandbox=none"], env=dict(env, PYSPRINTER_HOME=str(tmp / "dhome")),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    url = f"http://127.0.0.1:{port}"
    e = dict(env, PYSPRINTER_HOME=str(tmp / "chome"))

    def one(n, server, how):
        (tmp / f"{n}.py").write_text(f"@requirements({{'{n}': ''}})\ndef f():\n    return 1\n")
        pre = ["--server", server] if server else []
        p = subprocess.Popen([str(cli), *pre, "run", f"{n}.py", "--sandbox=none"], cwd=tmp, env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while ix.sent.get(paths[n], 0) == 0:
            time.sleep(0.01)
        time.sleep(0.5)
        if how == "ctrl-c":
            t0 = time.time()
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=120)
            return f"exit {p.returncode} after {time.time() - t0:.3f} s"
        ps = subprocess.run([str(cli), *pre, "ps", "--json", "-n", "1"], cwd=tmp, env=e, capture_output=True,
                            text=True)
        rid = json.loads(ps.stdout)[0]["id"]
        t0 = time.time()
        c = subprocess.run([str(cli), *pre, "cancel", rid], cwd=tmp, env=e, capture_output=True, text=True)
        answered = time.time() - t0
        p.communicate(timeout=120)
        return (f"answered {c.stdout.strip().replace(rid, 'RID')!r} after {answered:.3f} s; "
                f"the run exited {p.returncode} after {time.time() - t0:.3f} s")

    try:
        k = iter(names)
        for how in ("ctrl-c", "cancel"):
            for server in (None, url):
                print(f"  {how:7} {'daemon  ' if server else 'embedded'}: {one(next(k), server, how)}", flush=True)
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(30)
        ix.stop()


def process_tree(pid):
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                pp = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(pp, []).append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        x = todo.pop()
        out.append(x)
        todo += kids.get(x, [])
    return out


def voluntary(pids):
    tot = {}
    for pid in pids:
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                for line in open(f"/proc/{pid}/task/{t}/status"):
                    if line.startswith("voluntary_ctxt_switches"):
                        tot[(pid, t)] = int(line.split()[1])
        except OSError:
            pass
    return tot


def wakeups(cli, worker, tmp):
    (tmp / "s.py").write_text("import time\ndef f():\n    time.sleep(5)\n    return 1\n")
    env = dict(base_env(worker), PYSPRINTER_HOME=str(tmp / "h"))
    subprocess.run([str(cli), "run", "s.py", "--sandbox=none"], cwd=tmp, env=env, capture_output=True)
    for i in range(3):
        p = subprocess.Popen([str(cli), "run", "s.py", "--sandbox=none"], cwd=tmp, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)              # past the start: the run phase
        pids = process_tree(p.pid)
        a = voluntary(pids)
        t0 = time.time()
        time.sleep(3)
        b = voluntary(pids)
        dt = time.time() - t0
        p.communicate()
        cli_rate = sum(b[k] - a[k] for k in b if k in a and k[0] == p.pid) / dt
        all_rate = sum(b[k] - a[k] for k in b if k in a) / dt
        print(f"  sleeping run {i}: voluntary context switches {cli_rate:.1f}/s (CLI), "
              f"{all_rate:.1f}/s (CLI + worker + run)", flush=True)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    for d in argv[1:]:
        cli, worker, daemon = binaries(d)
        print(d, flush=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench-cancel-"))
        cancel_times(cli, worker, daemon, tmp)
        wakeups(cli, worker, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
