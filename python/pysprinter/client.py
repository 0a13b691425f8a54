"""A client for pysprinterd's HTTP API (docs/api.md), urllib only.

    from pysprinter import Client
    c = Client(server="http://127.0.0.1:8080", token="…")
    c.run("hello.py", "world")                     # a file, or a function object
    c.deploy("resize", "resize.py")                # a named, versioned function
    c.invoke("resize", {"width": 64})              # … invoked
    c.map("square.py", range(200), concurrency=8)  # results in input order
    for text in c.logs(run_id, follow=True): print(text, end="")
"""
import base64
import codecs
import concurrent.futures
import inspect
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

from .runtime import from_jsonable, to_jsonable

TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}


class APIError(Exception):
    """The daemon refused a request: .status (HTTP), .code, .message."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class RunError(Exception):
    """A run did not succeed: .run is the run object; .type, .message and
    .traceback are its error's (the function's exception when it raised)."""

    def __init__(self, run):
        err = run.get("error") or {}
        self.run = run
        self.status = run.get("status")
        self.type = err.get("type") or self.status
        self.message = err.get("message") or ""
        if self.message.startswith(f"{self.type}: "):   # the daemon's "ValueError: …"
            self.message = self.message[len(self.type) + 2:]
        self.traceback = err.get("traceback") or ""
        super().__init__(f"run {run.get('id')} {self.status}: {self.type}: {self.message}")


class Client:
    """Talks to one daemon as one tenant. server defaults to
    $PYSPRINTER_SERVER, token to $PYSPRINTER_TOKEN. unpickle=True: a
    result sent as pysprinter.pickled(value) is unpickled (only for runs you
    trust: unpickling runs code); otherwise its JSON view is returned."""

    def __init__(self, server=None, token=None, timeout=600.0, unpickle=False):
        server = server or os.environ.get("PYSPRINTER_SERVER")
        if not server:
            raise ValueError("no server: pass server=URL or set PYSPRINTER_SERVER")
        self.server = server.rstrip("/")
        self.token = token if token is not None else os.environ.get("PYSPRINTER_TOKEN")
        self.timeout = timeout
        # Opt-in: results a function sent as pysprinter.pickled(value) come
        # back with their Python type (unpickled here, in this process).
        self.unpickle = unpickle

    # ---- HTTP ----------------------------------------------------------------

    def _open(self, method, path, body=None, timeout=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        return urllib.request.urlopen(req, timeout=timeout or self.timeout)

    def _call(self, method, path, body=None):
        """-> (status, decoded JSON); a 429/503 is retried after Retry-After."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with self._open(method, path, body) as r:
                    return r.status, json.loads(r.read() or b"null")
            except urllib.error.HTTPError as e:
                raw = e.read()
                if e.code in (429, 503) and time.monotonic() < deadline:
                    time.sleep(min(float(e.headers.get("Retry-After") or 1), 5))
                    continue
                try:
                    err = json.loads(raw)["error"]
                    raise APIError(e.code, err.get("code"), err.get("message")) from None
                except (ValueError, KeyError, TypeError):
                    raise APIError(e.code, "http", raw.decode(errors="replace")[:500]) from None

    # ---- runs ----------------------------------------------------------------

    @staticmethod
    def _source(path_or_function):
        """(source text, filename, function name or None) of a path
        ("file.py" or "file.py::NAME") or of a function object (its file)."""
        if callable(path_or_function):
            fn = inspect.unwrap(path_or_function)
            path = inspect.getsourcefile(fn)
            if not path:
                raise ValueError(f"cannot find the source file of {fn!r}")
            with open(path, encoding="utf-8") as f:
                return f.read(), os.path.basename(path), fn.__name__
        path, _, name = os.fspath(path_or_function).partition("::")
        with open(path, encoding="utf-8") as f:
            return f.read(), os.path.basename(path), name or None

    @staticmethod
    def _arguments(args, kwargs):
        body = {}
        if args:
            body["args"] = [to_jsonable(a) for a in args]
        if kwargs:
            body["kwargs"] = {k: to_jsonable(v) for k, v in kwargs.items()}
        return body

    def _finish(self, status, run):
        """Waits for a run the daemon answered 202 on; returns its value."""
        while run.get("status") not in TERMINAL:
            _, run = self._call("GET", f"/v1/runs/{run['id']}")
            if run.get("status") not in TERMINAL:
                time.sleep(0.1)
        return self.result(run)

    def result(self, run):
        """A finished run object's value: the JSON result with bytes read
        back; repr() text (with a warning) when it had no JSON view; a
        RunError when the run did not succeed."""
        if run.get("status") != "succeeded":
            raise RunError(run)
        if run.get("result") is None and run.get("result_repr") is not None:
            warnings.warn(f"run {run.get('id')}: the result cannot be represented as JSON; "
                          "this is its repr()", stacklevel=3)
            return run["result_repr"]
        return from_jsonable(run.get("result"), unpickle=self.unpickle)

    def submit(self, path_or_function, *args, **kwargs):
        """Starts a run without waiting; returns the run object (its "id")."""
        source, filename, function = self._source(path_or_function)
        body = {"source": source, "filename": filename, **self._arguments(args, kwargs)}
        if function:
            body["function"] = function
        return self._call("POST", "/v1/runs", body)[1]

    def run(self, path_or_function, *args, **kwargs):
        """Runs a file's function (or a function object's, from its file) on
        the daemon with these arguments and returns its value; raises
        RunError if it did not succeed."""
        source, filename, function = self._source(path_or_function)
        body = {"source": source, "filename": filename, **self._arguments(args, kwargs)}
        if function:
            body["function"] = function
        return self._finish(*self._call("POST", "/v1/runs?wait=true", body))

    def deploy(self, name, path_or_function):
        """Deploys a file's function (or a function object's) as `name`;
        returns the function record (its "version")."""
        source, filename, function = self._source(path_or_function)
        body = {"name": name, "source": source, "filename": filename}
        if function:
            body["function"] = function
        return self._call("POST", "/v1/functions", body)[1]

    def invoke(self, name, *payload, **kwargs):
        """Invokes a deployed function: invoke("f", event) passes the event
        as its one positional argument (like Lambda's invoke); keyword
        arguments are passed as keywords."""
        body = self._arguments(payload, kwargs)
        path = f"/v1/functions/{urllib.parse.quote(name, safe='')}/invoke?wait=true"
        return self._finish(*self._call("POST", path, body))

    def map(self, path_or_function, iterable, concurrency=8, return_exceptions=False):
        """Calls the function once per item (the item is its one argument),
        at most `concurrency` at a time, and returns the values in input
        order. A failure raises its RunError (the calls not started yet are
        not started), or stands in its place with return_exceptions=True."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        source, filename, function = self._source(path_or_function)
        items = list(iterable)

        def one(item):
            body = {"source": source, "filename": filename, **self._arguments([item], {})}
            if function:
                body["function"] = function
            return self._finish(*self._call("POST", "/v1/runs?wait=true", body))

        results = [None] * len(items)
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {pool.submit(one, item): i for i, item in enumerate(items)}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except (RunError, APIError) as e:
                        if not return_exceptions:
                            raise
                        results[i] = e
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return results

    # ---- logs ----------------------------------------------------------------

    def logs(self, run_id, follow=True):
        """Yields the run's output text as it is written (stdout and stderr
        interleaved) until the run ends; follow=False yields what there is
        now, once."""
        rid = urllib.parse.quote(run_id, safe="")
        if not follow:
            try:
                with self._open("GET", f"/v1/runs/{rid}/logs") as r:
                    yield r.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as e:
                raise APIError(e.code, "http", e.read().decode(errors="replace")[:500]) from None
            return
        try:
            r = self._open("GET", f"/v1/runs/{rid}/logs?follow=1")
        except urllib.error.HTTPError as e:
            raise APIError(e.code, "http", e.read().decode(errors="replace")[:500]) from None
        # A piece that is not UTF-8 carries its bytes in "base64" (docs/api.md):
        # one incremental decoder per stream joins a character cut between
        # two pieces; other bytes show as U+FFFD, as with follow=False.
        decoders = {}

        def piece(d):
            dec = decoders.setdefault(d.get("stream"), codecs.getincrementaldecoder("utf-8")("replace"))
            if isinstance(d.get("base64"), str):
                return dec.decode(base64.b64decode(d["base64"]))
            return dec.decode(b"", final=True) + d.get("text", "")

        with r:
            event, data = None, []
            for raw in r:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if line.startswith(":"):
                    continue
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    value = line[5:]
                    data.append(value[1:] if value.startswith(" ") else value)  # one space, per SSE
                elif line == "":
                    if event == "output" and data:
                        text = piece(json.loads("\n".join(data)))
                        if text:
                            yield text
                    elif event == "end":
                        return
                    event, data = None, []
