"""Datasets: put, versions, mounts in runs and DAG tasks, URL sources
revalidated against a local HTTP server (DESIGN §8, issue 7)."""
import hashlib
import http.server
import json
import threading

import pytest

from conftest import sandbox_args

READER = """
import os
from pysprinter import data_path

def read(name, rel=""):
    p = data_path(name)
    with open(os.path.join(p, rel) if rel else p) as f:
        text = f.read()
    try:
        open(os.path.join(os.path.dirname(p) if os.path.isfile(p) else p, "new-file"), "w").close()
        writable = True
    except OSError:
        writable = False
    return {"path": p, "text": text, "writable": writable}
"""


def run(cli, *args, **kw):
    return cli("run", *sandbox_args(), *args, **kw)


def test_put_versions_and_read_in_a_run(cli, tmp_path):
    d = tmp_path / "ds"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("one")
    (d / "sub" / "b.txt").write_text("two")
    cli.write("reader.py", READER)
    put = json.loads(cli("data", "put", "corpus", str(d), "--json", check=0).stdout)
    assert put["version"] == 1 and put["new_version"] and put["files"] == 2 and put["size"] == 6
    again = json.loads(cli("data", "put", "corpus", str(d), "--json", check=0).stdout)
    assert again["version"] == 1 and not again["new_version"] and again["hash"] == put["hash"]
    (d / "a.txt").write_text("one, edited")
    v2 = json.loads(cli("data", "put", "corpus", str(d), "--json", check=0).stdout)
    assert v2["version"] == 2 and v2["hash"] != put["hash"]

    out = json.loads(run(cli, "reader.py", "--data", "corpus", "-a", "corpus", "-a", "a.txt",
                         "--json", check=0).stdout)
    assert out["text"] == "one, edited"
    if not sandbox_args():
        assert out["path"] == "/data/corpus"
        assert out["writable"] is False
    out1 = json.loads(run(cli, "reader.py", "--data", "corpus@1", "-a", "corpus", "-a", "sub/b.txt",
                          "--json", check=0).stdout)
    assert out1["text"] == "two"

    ls = json.loads(cli("data", "ls", "--json", check=0).stdout)
    assert [(x["name"], x["version"], x["versions"]) for x in ls] == [("corpus", 2, 2)]
    versions = json.loads(cli("data", "ls", "corpus", "--json", check=0).stdout)
    assert [v["version"] for v in versions] == [1, 2] and versions[1]["current"]
    # Same content as version 1 again: version 1 becomes current.
    (d / "a.txt").write_text("one")
    back = json.loads(cli("data", "put", "corpus", str(d), "--json", check=0).stdout)
    assert back["version"] == 1


def test_file_dataset_get_and_rm(cli, tmp_path):
    f = tmp_path / "numbers.csv"
    f.write_text("1,2,3\n")
    cli("data", "put", "nums", str(f), check=0)
    assert cli("data", "get", "nums", check=0).stdout == "1,2,3\n"
    cli("data", "get", "nums@1", "-o", str(tmp_path / "copy.csv"), check=0)
    assert (tmp_path / "copy.csv").read_text() == "1,2,3\n"
    cli.write("reader.py", READER)
    out = json.loads(run(cli, "reader.py", "--data", "nums", "-a", "nums", "--json", check=0).stdout)
    assert out["text"] == "1,2,3\n" and out["writable"] is False
    cli("data", "rm", "nums", check=0)
    assert cli("data", "get", "nums").returncode == 2
    p = run(cli, "reader.py", "--data", "nums", "-a", "nums", "-a", "x")
    assert p.returncode == 3 and "no dataset named 'nums'" in p.stderr


def test_data_path_of_a_single_file_dataset_is_the_file(cli, tmp_path):
    """open(data_path("greet")) of a dataset put from one file opens it (it
    used to be a directory: IsADirectoryError); a directory dataset holding
    one file still gives the directory."""
    f = tmp_path / "greeting.txt"
    f.write_text("hello\n")
    cli("data", "put", "greet", str(f), check=0)
    d = tmp_path / "onefile"
    d.mkdir()
    (d / "greeting.txt").write_text("from a dir\n")
    cli("data", "put", "greetdir", str(d), check=0)
    cli.write("g.py", """
        import os
        from pysprinter import data_path
        def g():
            f, d = data_path("greet"), data_path("greetdir")
            return {"file": f, "text": open(f).read(), "dir": d, "is_dir": os.path.isdir(d),
                    "listing": sorted(os.listdir(d))}
        """)
    p = run(cli, "g.py", "--data", "greet", "--data", "greetdir", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["text"] == "hello\n" and out["file"].endswith("/greeting.txt")
    assert out["is_dir"] and out["listing"] == ["greeting.txt"]
    if not sandbox_args():
        assert out["file"] == "/data/greet/greeting.txt" and out["dir"] == "/data/greetdir"


def test_directory_get_copies_out(cli, tmp_path):
    d = tmp_path / "tree"
    (d / "x").mkdir(parents=True)
    (d / "x" / "y.txt").write_text("deep")
    cli("data", "put", "tree", str(d), check=0)
    cli("data", "get", "tree", "-o", str(tmp_path / "out"), check=0)
    assert (tmp_path / "out" / "x" / "y.txt").read_text() == "deep"


@pytest.mark.parametrize("name", ["-x", "a/b", "..", "", "x" * 65])
def test_bad_names(cli, tmp_path, name):
    f = tmp_path / "f"
    f.write_text("x")
    p = cli("data", "put", name, str(f))
    assert p.returncode == 2 and "not a valid dataset name" in p.stderr


def test_symlinks_refused(cli, tmp_path):
    d = tmp_path / "withlink"
    d.mkdir()
    (d / "link").symlink_to("/etc/passwd")
    p = cli("data", "put", "l", str(d))
    assert p.returncode != 0 and "symbolic link" in p.stderr


def test_size_caps(cli, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"x" * 5000)
    p = cli("data", "put", "big", str(f), env={"PYSPRINTER_DATA_MAX_BYTES": "4096"})
    assert p.returncode != 0 and "cap" in p.stderr
    cli("data", "put", "a", str(f), env={"PYSPRINTER_DATA_TENANT_MAX_BYTES": "8000"}, check=0)
    g = tmp_path / "other"
    g.write_bytes(b"y" * 5000)
    p = cli("data", "put", "b", str(g), env={"PYSPRINTER_DATA_TENANT_MAX_BYTES": "8000"})
    assert p.returncode != 0 and "over its cap" in p.stderr
    # The same content again costs nothing.
    cli("data", "put", "c", str(f), env={"PYSPRINTER_DATA_TENANT_MAX_BYTES": "8000"}, check=0)


class Origin:
    """An HTTP origin on 127.0.0.1 with ETag and Last-Modified validators."""

    def __init__(self):
        self.body = b"v1 content\n"
        self.requests = []   # (If-None-Match, status)
        origin = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                etag = '"' + hashlib.sha256(origin.body).hexdigest()[:16] + '"'
                inm = self.headers.get("If-None-Match")
                if inm == etag:
                    origin.requests.append((inm, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                origin.requests.append((inm, 200))
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", "Tue, 01 Jan 2030 00:00:00 GMT")
                self.send_header("Content-Length", str(len(origin.body)))
                self.end_headers()
                self.wfile.write(origin.body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/files/table.csv?x=1"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin():
    o = Origin()
    yield o
    o.stop()


def test_url_source_revalidated(cli, origin):
    cli.write("reader.py", READER)
    put = json.loads(cli("data", "put", "remote", origin.url, "--json", check=0).stdout)
    assert put["version"] == 1 and put["kind"] == "url"
    assert origin.requests == [(None, 200)]

    def read():
        p = run(cli, "reader.py", "--data", "remote", "-a", "remote", "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)["text"], p.stderr

    text, _ = read()
    assert text == "v1 content\n"
    assert origin.requests[-1][1] == 304 and origin.requests[-1][0] is not None   # conditional GET
    origin.body = b"v2 content\n"
    text, _ = read()
    assert text == "v2 content\n"
    assert origin.requests[-1][1] == 200
    ls = json.loads(cli("data", "ls", "remote", "--json", check=0).stdout)
    assert [v["version"] for v in ls] == [1, 2]
    # The origin goes away: the cached copy is used, and we are told.
    origin.stop()
    text, err = read()
    assert text == "v2 content\n"
    assert "could not revalidate" in err and "cached copy" in err
    # A TTL skips revalidation while fresh.
    n = len(origin.requests)
    p = run(cli, "reader.py", "--data", "remote", "-a", "remote",
            env={"PYSPRINTER_DATA_TTL": "3600"}, check=0)
    assert "warning" not in p.stderr and len(origin.requests) == n


def test_dag_task_data(cli, tmp_path):
    f = tmp_path / "words.txt"
    f.write_text("a b c d\n")
    cli("data", "put", "words", str(f), check=0)
    cli.write("count.py", """
        import os
        from pysprinter import data_path
        def count():
            return len(open(data_path("words")).read().split())
        """)
    cli.write("d.yaml", "tasks:\n  count: {file: count.py, data: [words]}\n")
    p = cli("dag", "run", *sandbox_args(), "d.yaml", "--json", check=0)
    assert json.loads(p.stdout)["tasks"]["count"]["result"] == 4
    # New content of the dataset: a new memo key, so the task runs again.
    f.write_text("a b\n")
    cli("data", "put", "words", str(f), check=0)
    p = cli("dag", "run", *sandbox_args(), "d.yaml", "--json", check=0)
    t = json.loads(p.stdout)["tasks"]["count"]
    assert t["result"] == 2 and t["state"] == "succeeded"
    cli.write("bad.yaml", "tasks:\n  count: {file: count.py, data: [nope]}\n")
    p = cli("dag", "run", *sandbox_args(), "bad.yaml")
    assert p.returncode == 3 and "no dataset 'nope'" in p.stderr
