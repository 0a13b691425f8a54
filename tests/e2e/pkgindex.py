"""Test package index tooling (tests only; never touches the internet).

- build_wheel(): writes a real PEP 427 wheel (METADATA, WHEEL, RECORD) for a
  tiny package the tests invent, optionally with hostile entries.
- repack_debian(): turns a distribution Debian installed under
  /usr/lib/python3/dist-packages into a proper wheel (cached on disk).
- Index: a PEP 503 (HTML) + PEP 691 (JSON) simple index served over HTTP on
  127.0.0.1 from a thread of the calling process, with optional PEP 658/714
  .metadata files, yanked files, requires-python, wrong hashes, HTTP range
  requests (opt-in: Index.ranges), ETag/Last-Modified with If-Range
  (opt-in: Index.validators) and injected failures.

Run as a script it builds the benchmark's index and serves it:
    python3 pkgindex.py serve DIR   (prints the URL, serves until killed)
"""
import base64
import email.utils
import hashlib
import html
import http.server
import io
import json
import os
import pathlib
import re
import shutil
import stat
import sys
import threading
import time
import urllib.parse
import zipfile

DIST_PACKAGES = pathlib.Path("/usr/lib/python3/dist-packages")
CACHE = pathlib.Path(os.environ.get(
    "PYSPRINTER_PKGINDEX_CACHE", f"/tmp/pysprinter-pkgindex-{os.getuid()}"))
PLAT_TAG = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"

# Debian strips install_requires from its egg-info; these are the upstream
# Requires-Dist of the versions Debian ships (charset-normalizer relaxed to <4
# as Debian's requests patch does, since Debian ships charset-normalizer 3).
DEBIAN_REQUIRES = {
    "requests": [
        "charset-normalizer<4,>=2",
        "idna<4,>=2.5",
        "urllib3<1.27,>=1.21.1",
        "certifi>=2017.4.17",
        "PySocks!=1.5.7,>=1.5.6; extra == \"socks\"",
        "chardet<6,>=3.0.2; extra == \"use-chardet-on-py3\"",
    ],
    "urllib3": [
        "brotli>=1.0.9; extra == \"brotli\"",
        "PySocks!=1.5.7,<2.0,>=1.5.6; extra == \"socks\"",
    ],
}
DEBIAN_EXTRAS = {"requests": ["security", "socks", "use-chardet-on-py3"],
                 "urllib3": ["brotli", "secure", "socks"]}


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _b64hash(data):
    d = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def metadata_text(name, version, requires=(), requires_python=None,
                  extras=(), summary="test package"):
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    for e in extras:
        lines.append(f"Provides-Extra: {e}")
    for r in requires:
        lines.append(f"Requires-Dist: {r}")
    return "\n".join(lines) + "\n\n"


def build_wheel(outdir, name, version, files=None, requires=(),
                requires_python=None, extras=(), tag="py3-none-any",
                extra_entries=(), record_tamper=None, metadata=None,
                compression=zipfile.ZIP_DEFLATED, distinfo=None):
    """Write NAME-VERSION-TAG.whl into outdir and return its path.

    files: {archive path: bytes|str} of the package's own files (default: a
    module NAME.py that records its version). extra_entries: raw
    (ZipInfo|name, bytes) written after everything else and NOT listed in
    RECORD unless record_tamper says otherwise. record_tamper(list of
    (path, hash, size)) may edit the RECORD rows (for mismatch tests).
    distinfo: the .dist-info directory's name (default NAME-VERSION.dist-info;
    hostile wheels name another project's)."""
    outdir = pathlib.Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    dist = re.sub(r"[-_.]+", "_", name)
    mod = dist.lower()
    if files is None:
        files = {f"{mod}.py": f"__version__ = {version!r}\nNAME = {name!r}\n"}
    distinfo = distinfo or f"{dist}-{version}.dist-info"
    meta = metadata if metadata is not None else metadata_text(
        name, version, requires, requires_python, extras)
    wheel_txt = ("Wheel-Version: 1.0\nGenerator: pysprinter-pkgindex\n"
                 f"Root-Is-Purelib: {'true' if tag.endswith('none-any') else 'false'}\n"
                 + "".join(f"Tag: {t}\n" for t in _expand_tags(tag)))
    entries = []
    for path, data in files.items():
        if isinstance(data, str):
            data = data.encode()
        entries.append((path, data))
    entries.append((f"{distinfo}/METADATA", meta.encode()))
    entries.append((f"{distinfo}/WHEEL", wheel_txt.encode()))
    rows = [(p, _b64hash(d), str(len(d))) for p, d in entries]
    if record_tamper:
        rows = record_tamper(rows)
    record = "".join(f"{p},{h},{s}\n" for p, h, s in rows)
    record += f"{distinfo}/RECORD,,\n"
    entries.append((f"{distinfo}/RECORD", record.encode()))
    fname = f"{dist}-{version}-{tag}.whl"
    path = outdir / fname
    with zipfile.ZipFile(path, "w", compression) as z:
        for p, d in entries:
            zi = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o644 | stat.S_IFREG) << 16
            zi.compress_type = compression
            z.writestr(zi, d)
        for zi, d in extra_entries:
            if isinstance(d, str):
                d = d.encode()
            z.writestr(zi, d)
    return path


def _expand_tags(tag):
    py, abi, plat = tag.split("-")
    return [f"{a}-{b}-{c}" for a in py.split(".") for b in abi.split(".")
            for c in plat.split(".")]


# ---- Debian repacks ----------------------------------------------------

DEBIAN_DISTS = {
    # distribution name -> (info dir glob prefix, top-level entries)
    "requests": "requests", "urllib3": "urllib3", "idna": "idna",
    "certifi": "certifi", "charset-normalizer": "charset_normalizer",
    "six": "six", "numpy": "numpy", "PyYAML": "PyYAML",
}


def _find_info(dist):
    prefix = re.sub(r"[-_.]+", "_", dist).lower()
    for p in sorted(DIST_PACKAGES.iterdir()):
        if not (p.name.endswith(".egg-info") or p.name.endswith(".dist-info")):
            continue
        n = re.sub(r"[-_.]+", "_", p.name.split("-")[0]).lower()
        if n == prefix:
            return p
    return None


def debian_version(dist):
    info = _find_info(dist)
    if info is None:
        return None
    return info.name[len(info.name.split("-")[0]) + 1:].rsplit(".", 1)[0].split("+")[0]


def repack_debian(dist, outdir=None):
    """Build (or reuse from the cache) a wheel of Debian's installed
    distribution `dist`; returns its path, or None if Debian lacks it."""
    info = _find_info(dist)
    if info is None:
        return None
    version = debian_version(dist)
    pkginfo = info / ("PKG-INFO" if info.name.endswith(".egg-info") else "METADATA")
    top = (info / "top_level.txt").read_text().split()
    files = {}
    native = False
    for t in top:
        d = DIST_PACKAGES / t
        if d.is_dir():
            for f in sorted(d.rglob("*")):
                if "__pycache__" in f.parts or f.suffix == ".pyc" or not f.is_file():
                    continue
                if f.suffix == ".so":
                    native = True
                files[str(f.relative_to(DIST_PACKAGES))] = f.read_bytes()
        elif (DIST_PACKAGES / f"{t}.py").exists():
            files[f"{t}.py"] = (DIST_PACKAGES / f"{t}.py").read_bytes()
        else:
            for so in DIST_PACKAGES.glob(f"{t}.*.so"):
                files[so.name] = so.read_bytes()
                native = True
    # METADATA: Debian's headers, minus its (stripped) Requires-Dist, plus
    # the upstream requirements.
    head = pkginfo.read_text(errors="replace").split("\n\n", 1)[0]
    lines = [l for l in head.splitlines()
             if not l.startswith(("Requires-Dist:", "Provides-Extra:", "Metadata-Version:"))
             and not l.startswith((" ", "\t"))]
    lines.insert(0, "Metadata-Version: 2.1")
    key = normalize(dist)
    if key in DEBIAN_EXTRAS:
        lines += [f"Provides-Extra: {e}" for e in DEBIAN_EXTRAS[key]]
    if key in DEBIAN_REQUIRES:
        lines += [f"Requires-Dist: {r}" for r in DEBIAN_REQUIRES[key]]
    meta = "\n".join(lines) + "\n\n"
    tag = PLAT_TAG if native else "py3-none-any"
    outdir = pathlib.Path(outdir) if outdir else CACHE / "debian"
    dname = re.sub(r"[-_.]+", "_", dist)
    target = outdir / f"{dname}-{version}-{tag}.whl"
    if target.exists():
        return target
    tmp = outdir / f".tmp-{os.getpid()}-{threading.get_ident()}"
    p = build_wheel(tmp, dist, version, files=files, tag=tag, metadata=meta)
    outdir.mkdir(parents=True, exist_ok=True)
    os.replace(p, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


REAL_SET = ["requests", "urllib3", "idna", "certifi", "charset-normalizer",
            "six", "numpy", "PyYAML"]


def debian_wheels(names=REAL_SET):
    return [w for w in (repack_debian(n) for n in names) if w is not None]


# ---- the index ---------------------------------------------------------

class IndexFile:
    def __init__(self, path, yanked=False, requires_python=None,
                 metadata=True, sha256=None):
        self.path = pathlib.Path(path)
        self.filename = self.path.name
        self.yanked = yanked            # False, True or a reason string
        self.requires_python = requires_python
        self.metadata = metadata        # serve PEP 658 .metadata
        self.real_sha256 = sha256_file(self.path)
        self.sha256 = sha256 or self.real_sha256   # what the index claims

    def project(self):
        if self.filename.endswith(".whl"):
            return normalize(self.filename.split("-")[0])
        m = re.match(r"(.+)-[^-]+\.(tar\.gz|zip)$", self.filename)
        return normalize(m.group(1))

    def core_metadata(self):
        with zipfile.ZipFile(self.path) as z:
            for n in z.namelist():
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA"):
                    return z.read(n)
        return None


class Index:
    """A simple index. mode: 'both' (content negotiation), 'html' (PEP 503
    only, ignores Accept), 'json' (PEP 691 only)."""

    def __init__(self, mode="both"):
        self.mode = mode
        self.files = []
        self.requests = []          # paths requested, in order
        self.fail = {}              # path -> [status, count]
        self.hold = {}              # path -> threading.Event: answer once set (pages too)
        self.truncate = {}          # path -> bytes sent before closing early
        self.slow = {}              # path -> seconds its body is spread over (a slow mirror)
        self.sent = {}              # path -> body bytes written so far (slow paths)
        self.ranges = False         # answer a file's Range: bytes=… with 206 (else the whole file)
        self.ranged = []            # (path, Range header) of each ranged GET of a file
        self.validators = False     # send a file's ETag and Last-Modified; honour If-Range
        self.etag_salt = ""         # changes every file's ETag (a re-deployed mirror)
        self.if_range = []          # (path, If-Range header) of each GET that sent one
        self.served = {}            # path -> bytes of the file's content sent (200/206 bodies)
        self.server = None
        self.thread = None

    def add(self, path, **kw):
        f = IndexFile(path, **kw)
        self.files.append(f)
        return f

    def projects(self):
        out = {}
        for f in self.files:
            out.setdefault(f.project(), []).append(f)
        return out

    def etag(self, f):
        return f'"{f.real_sha256[:20]}{self.etag_salt}"'

    @staticmethod
    def last_modified(f):
        return email.utils.formatdate(int(f.path.stat().st_mtime), usegmt=True)

    def fail_next(self, path, status, count=1):
        self.fail[path] = [status, count]

    # -- rendering
    def project_json(self, name):
        files = []
        for f in self.projects().get(name, []):
            d = {"filename": f.filename, "url": f"../../files/{f.filename}",
                 "hashes": {"sha256": f.sha256}}
            if f.requires_python:
                d["requires-python"] = f.requires_python
            if f.yanked:
                d["yanked"] = f.yanked if isinstance(f.yanked, str) else True
            if f.metadata and f.filename.endswith(".whl"):
                mh = hashlib.sha256(f.core_metadata()).hexdigest()
                d["core-metadata"] = {"sha256": mh}
                d["dist-info-metadata"] = {"sha256": mh}
            files.append(d)
        return json.dumps({"meta": {"api-version": "1.0"}, "name": name,
                           "files": files}).encode()

    def project_html(self, name):
        out = ["<!DOCTYPE html><html><head><meta name=\"pypi:repository-version\" "
               "content=\"1.0\"><title>Links</title></head><body>"]
        for f in self.projects().get(name, []):
            attrs = f'href="../../files/{html.escape(f.filename)}#sha256={f.sha256}"'
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                attrs += f' data-yanked="{html.escape(reason)}"'
            if f.metadata and f.filename.endswith(".whl"):
                mh = hashlib.sha256(f.core_metadata()).hexdigest()
                attrs += f' data-core-metadata="sha256={mh}" data-dist-info-metadata="sha256={mh}"'
            out.append(f"<a {attrs}>{html.escape(f.filename)}</a><br/>")
        out.append("</body></html>")
        return "\n".join(out).encode()

    def root_json(self):
        return json.dumps({"meta": {"api-version": "1.0"},
                           "projects": [{"name": n} for n in sorted(self.projects())]}).encode()

    def root_html(self):
        return ("<!DOCTYPE html><html><body>" + "".join(
            f'<a href="{n}/">{n}</a>' for n in sorted(self.projects())) +
            "</body></html>").encode()

    # -- serving
    def start(self):
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, a
            # keep-alive client (pip, libcurl) waits ~40 ms for each
            # response behind its own delayed ACK. Real index servers set
            # TCP_NODELAY; so does this one.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def send(self, code, body, ctype):
                self.send_response(code)
                if code == 200:
                    self.send_validators()
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def send_validators(self):
                # The ETag and Last-Modified of the file being answered
                # (Index.validators), as a static file server sends them.
                f = getattr(self, "index_file", None)
                if index.validators and f is not None:
                    self.send_header("ETag", index.etag(f))
                    self.send_header("Last-Modified", index.last_modified(f))

            def send_file(self, path):
                # Large wheels (the 1 GiB benchmark case) are streamed, not
                # read into this process's memory.
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_validators()
                self.end_headers()
                if self.command != "HEAD":
                    with open(path, "rb") as fh:
                        shutil.copyfileobj(fh, self.wfile, 1 << 20)
                    self.count(path.stat().st_size)

            def send_range(self, path, rng):
                # One "bytes=FIRST-LAST" or "bytes=-SUFFIX" range, as a
                # static file server answers it (206, Content-Range).
                size = path.stat().st_size
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if not m or (m.group(1) == "" and m.group(2) == ""):
                    return self.send(416, b"bad range", "text/plain")
                if m.group(1) == "":
                    first, last = max(0, size - int(m.group(2))), size - 1
                else:
                    first = int(m.group(1))
                    last = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
                if first >= size or first > last:
                    # RFC 9110 15.5.17: the file's size, as nginx sends it.
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "19")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(b"unsatisfiable range")
                    return
                with open(path, "rb") as fh:
                    fh.seek(first)
                    data = fh.read(last - first + 1)
                self.send_response(206)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
                self.send_header("Content-Length", str(len(data)))
                self.send_validators()
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                    self.count(len(data))

            def count(self, n):
                # Bytes of a file's content sent for the path asked.
                p = urllib.parse.urlparse(self.path).path
                index.served[p] = index.served.get(p, 0) + n

            def send_truncated(self, path, cut):
                # Promises the whole file, sends `cut` bytes, hangs up: a
                # transfer cut mid-download.
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_validators()
                self.end_headers()
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.count(min(cut, len(data)))
                self.close_connection = True

            def send_slow(self, path, seconds, url_path):
                # The whole length promised, the bytes trickled out over
                # `seconds`: a big wheel on a slow link. A client that
                # hangs up (a cancelled install) ends it.
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_validators()
                self.end_headers()
                steps = 100
                chunk = max(1, -(-len(data) // steps))
                try:
                    for i in range(0, len(data), chunk):
                        self.wfile.write(data[i:i + chunk])
                        self.wfile.flush()
                        index.sent[url_path] = index.sent.get(url_path, 0) + len(data[i:i + chunk])
                        self.count(len(data[i:i + chunk]))
                        time.sleep(seconds / steps)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = urllib.parse.urlparse(self.path).path
                index.requests.append(path)
                self.index_file = None      # a keep-alive handler answers many paths
                gate = index.hold.get(path)     # any path: a page, a wheel
                if gate is not None:
                    gate.wait(120)
                f = index.fail.get(path)
                if f and f[1] > 0:
                    f[1] -= 1
                    return self.send(f[0], b"injected failure", "text/plain")
                accept = self.headers.get("Accept", "")
                want_json = (index.mode == "json" or
                             (index.mode == "both" and "application/vnd.pypi.simple.v1+json" in accept))
                m = re.fullmatch(r"/simple/?", path)
                if m:
                    if want_json:
                        return self.send(200, index.root_json(), "application/vnd.pypi.simple.v1+json")
                    return self.send(200, index.root_html(), "text/html")
                m = re.fullmatch(r"/simple/([^/]+)/?", path)
                if m:
                    name = m.group(1)
                    if name != normalize(name):
                        self.send_response(301)
                        self.send_header("Location", f"/simple/{normalize(name)}/")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if name not in index.projects():
                        return self.send(404, b"not found", "text/plain")
                    if want_json:
                        return self.send(200, index.project_json(name), "application/vnd.pypi.simple.v1+json")
                    return self.send(200, index.project_html(name), "text/html")
                m = re.fullmatch(r"/files/(.+)", path)
                if m:
                    fn = urllib.parse.unquote(m.group(1))
                    meta = fn.endswith(".metadata")
                    if meta:
                        fn = fn[:-len(".metadata")]
                    for f in index.files:
                        if f.filename == fn:
                            if meta:
                                if not f.metadata:
                                    break
                                return self.send(200, f.core_metadata(), "application/octet-stream")
                            self.index_file = f
                            rng = self.headers.get("Range")
                            if rng:
                                index.ranged.append((path, rng))
                            cond = self.headers.get("If-Range")
                            if cond:
                                index.if_range.append((path, cond))
                                # RFC 9110 13.1.5: a validator that no longer
                                # matches gets the whole file.
                                if index.validators and cond not in (index.etag(f), index.last_modified(f)):
                                    rng = None
                            if rng and index.ranges:
                                return self.send_range(f.path, rng)
                            cut = index.truncate.get(path)
                            if cut is not None:
                                return self.send_truncated(f.path, cut)
                            secs = index.slow.get(path)
                            if secs:
                                return self.send_slow(f.path, secs, path)
                            if f.path.stat().st_size > (64 << 20):
                                return self.send_file(f.path)
                            data = f.path.read_bytes()
                            self.send(200, data, "application/octet-stream")
                            if self.command != "HEAD":
                                self.count(len(data))
                            return
                return self.send(404, b"not found", "text/plain")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/simple/"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def main(argv):
    if len(argv) >= 2 and argv[1] == "serve":
        ix = Index()
        for w in debian_wheels():
            ix.add(w)
        ix.start()
        print(ix.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        return 0
    if len(argv) >= 2 and argv[1] == "wheels":
        for w in debian_wheels():
            print(w)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
