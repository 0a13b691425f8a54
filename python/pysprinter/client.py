"""A client for pysprinterd's HTTP API (docs/api.md), standard library only
(http.client), over kept-alive connections.

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
import http.client
import inspect
import json
import os
import select
import threading
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
    trust: unpickling runs code); otherwise its JSON view is returned.
    It keeps its HTTP/1.1 connections open between calls (one per thread
    in a call at a time, docs/python.md "Connections"): close() or a with
    block closes them."""

    def __init__(self, server=None, token=None, timeout=600.0, unpickle=False):
        server = server or os.environ.get("PYSPRINTER_SERVER")
        if not server:
            raise ValueError("no server: pass server=URL or set PYSPRINTER_SERVER")
        self.server = server.rstrip("/")
        self.token = token if token is not None else os.environ.get("PYSPRINTER_TOKEN")
        self.timeout = timeout
        self._conns = _Connections(self.server)
        # Opt-in: results a function sent as pysprinter.pickled(value) come
        # back with their Python type (unpickled here, in this process).
        self.unpickle = unpickle

    # ---- HTTP ----------------------------------------------------------------

    def _request(self, method, path, body=None, stream=False, idempotency_key=None):
        """One request on a kept-alive connection. -> (status, headers,
        body bytes); with stream=True -> the unread response, on a connection
        of its own that closing the response closes. Statuses outside 2xx
        come back like any other: the caller maps them."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"User-Agent": "pysprinter-python/0.1.0"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if idempotency_key is not None:
            # With it, a request that met a closed connection is sent again
            # (_Connections.request): the daemon answers a repeat with the
            # first run.
            headers["Idempotency-Key"] = idempotency_key
        return self._conns.request(method, path, data, headers, self.timeout, stream)

    def _call(self, method, path, body=None, idempotency_key=None):
        """-> (status, decoded JSON); a 429/503 is retried after Retry-After."""
        deadline = time.monotonic() + self.timeout
        while True:
            status, headers, raw = self._request(method, path, body, idempotency_key=idempotency_key)
            if 200 <= status < 300:
                return status, json.loads(raw or b"null")
            if status in (429, 503) and time.monotonic() < deadline:
                time.sleep(min(float(headers.get("Retry-After") or 1), 5))
                continue
            try:
                err = json.loads(raw)["error"]
                raise APIError(status, err.get("code"), err.get("message")) from None
            except (ValueError, KeyError, TypeError):
                raise APIError(status, "http", raw.decode(errors="replace")[:500]) from None

    def close(self):
        """Closes the client's connections: the idle ones now, those in use
        by another thread when their request ends. A logs(follow=True)
        stream holds its own, closed when the stream ends or its generator
        is closed. The client stays usable: a later call connects again."""
        self._conns.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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

    def submit(self, path_or_function, *args, idempotency_key=None, **kwargs):
        """Starts a run without waiting; returns the run object (its "id").
        idempotency_key: a submit of a key this tenant used within 24 h
        starts nothing and returns the key's first run (docs/api.md
        "Idempotency"), so a lost answer can be asked again safely."""
        key = _idempotency_key(idempotency_key)
        source, filename, function = self._source(path_or_function)
        body = {"source": source, "filename": filename, **self._arguments(args, kwargs)}
        if function:
            body["function"] = function
        return self._call("POST", "/v1/runs", body, idempotency_key=key)[1]

    def run(self, path_or_function, *args, idempotency_key=None, **kwargs):
        """Runs a file's function (or a function object's, from its file) on
        the daemon with these arguments and returns its value; raises
        RunError if it did not succeed. idempotency_key: as submit()'s; a
        repeat returns the first run's value (waiting for its end)."""
        key = _idempotency_key(idempotency_key)
        source, filename, function = self._source(path_or_function)
        body = {"source": source, "filename": filename, **self._arguments(args, kwargs)}
        if function:
            body["function"] = function
        return self._finish(*self._call("POST", "/v1/runs?wait=true", body, idempotency_key=key))

    def deploy(self, name, path_or_function):
        """Deploys a file's function (or a function object's) as `name`;
        returns the function record (its "version")."""
        source, filename, function = self._source(path_or_function)
        body = {"name": name, "source": source, "filename": filename}
        if function:
            body["function"] = function
        return self._call("POST", "/v1/functions", body)[1]

    def invoke(self, name, *payload, idempotency_key=None, **kwargs):
        """Invokes a deployed function: invoke("f", event) passes the event
        as its one positional argument (like Lambda's invoke); keyword
        arguments are passed as keywords. idempotency_key: as run()'s."""
        key = _idempotency_key(idempotency_key)
        body = self._arguments(payload, kwargs)
        path = f"/v1/functions/{urllib.parse.quote(name, safe='')}/invoke?wait=true"
        return self._finish(*self._call("POST", path, body, idempotency_key=key))

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
            status, _, raw = self._request("GET", f"/v1/runs/{rid}/logs")
            if not 200 <= status < 300:
                raise APIError(status, "http", raw.decode(errors="replace")[:500])
            yield raw.decode("utf-8", "replace")
            return
        # The stream holds its own connection for as long as it lasts: the
        # client's other calls (other threads) go on beside it.
        r = self._request("GET", f"/v1/runs/{rid}/logs?follow=1", stream=True)
        if not 200 <= r.status < 300:
            with r:
                raise APIError(r.status, "http", r.read().decode(errors="replace")[:500])
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


def _idempotency_key(key):
    """key as sent, or None; the daemon's rule (idempotency_key_is_valid()
    in src/basic), checked before anything is sent."""
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not all("!" <= ch <= "~" for ch in key):
        raise ValueError("idempotency_key takes 1..200 visible ASCII characters (no spaces)")
    return key


# ---- connections --------------------------------------------------------------

# Failures of a kept-alive connection the server had closed: the request
# fails while it is sent (EPIPE, ECONNRESET) or finds the connection closed
# before any byte of an answer (http.client's RemoteDisconnected is a
# ConnectionResetError).
_STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
# Methods the API may receive twice with the effect of once.
_IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
# A connection idle this long is closed rather than reused: the daemon drops
# clients idle for server.read_timeout_s (30 s by default, docs/api.md), and
# a request sent as it does so meets a closed connection.
_MAX_IDLE_S = 20.0
# Idle connections kept (urllib3's default); more threads at once still each
# get their own, closed after use.
_MAX_KEPT = 10


def _unusable(sock):
    """True when an idle connection cannot carry a request: readable means
    the server closed it (EOF, RST) or sent bytes no request asked for."""
    try:
        if hasattr(select, "poll"):
            p = select.poll()
            p.register(sock, select.POLLIN)
            return bool(p.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _Connections:
    """The HTTP/1.1 connections of one Client to its server: a stack of idle
    ones, each used by one request at a time (a thread takes one, or opens
    one, and gives it back once the answer is read), so two requests never
    share a socket. Proxies as urllib: $http_proxy / $https_proxy unless
    $no_proxy names the host."""

    def __init__(self, server):
        u = urllib.parse.urlsplit(server)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"server must be an http:// or https:// URL, not {server!r}")
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.origin = f"{u.scheme}://{u.netloc.rpartition('@')[2]}"
        self.proxy, self.proxy_headers = None, {}
        proxy = urllib.request.getproxies().get(u.scheme)
        if proxy and not urllib.request.proxy_bypass(u.netloc.rpartition("@")[2]):
            p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            self.proxy = (p.hostname, p.port or 80)
            if p.username is not None:
                cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
                self.proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        self.lock = threading.Lock()
        self.idle = []          # [(connection, monotonic time it became idle)]
        self.generation = 0     # close() moves it on: older connections are not kept

    def _new(self):
        if self.https:
            # The default SSL context (certificates and host name verified),
            # as urllib's HTTPSHandler.
            c = http.client.HTTPSConnection(*(self.proxy or (self.host, self.port)))
            if self.proxy:
                c.set_tunnel(self.host, self.port, headers=self.proxy_headers)
        else:
            c = http.client.HTTPConnection(*(self.proxy or (self.host, self.port)))
        c._pysprinter_generation = self.generation
        return c

    def _take(self):
        """-> (connection, whether it carried a request before)."""
        with self.lock:
            now = time.monotonic()
            # The oldest lie at the bottom of the stack: close the ones past
            # reuse, not only the one on top.
            while self.idle and now - self.idle[0][1] >= _MAX_IDLE_S:
                self.idle.pop(0)[0].close()
            while self.idle:
                c, since = self.idle.pop()
                if c.sock is not None and now - since < _MAX_IDLE_S and not _unusable(c.sock):
                    return c, True
                c.close()
            return self._new(), False

    def _give_back(self, c):
        with self.lock:
            if (c.sock is not None and c._pysprinter_generation == self.generation
                    and len(self.idle) < _MAX_KEPT):
                self.idle.append((c, time.monotonic()))
                return
        c.close()

    def close(self):
        with self.lock:
            self.generation += 1
            idle, self.idle = self.idle, []
        for c, _ in idle:
            c.close()

    def request(self, method, path, data, headers, timeout, stream):
        """-> (status, headers, body) or, with stream, the unread response
        owning a connection of its own. A request that meets a kept-alive
        connection the server closed is sent again once on a new one, when
        that cannot do its work twice: it failed while it was sent (the
        server never had all of it), or its method is idempotent, or it
        carries an Idempotency-Key. Errors as urllib's: connecting or
        sending raises urllib.error.URLError, reading the answer raises
        what the socket or http.client raised."""
        if self.proxy and not self.https:
            target = self.origin + self.prefix + path
            headers = {**headers, **self.proxy_headers}
        else:
            target = self.prefix + path
        again = method in _IDEMPOTENT or "Idempotency-Key" in headers
        for attempt in (1, 2):
            # A retry takes a new connection: the server that closed one
            # idle connection may have closed the others too.
            c, reused = (self._new(), False) if stream or attempt == 2 else self._take()
            c.timeout = timeout
            sent = False
            try:
                try:
                    if c.sock is None:
                        c.connect()
                    else:
                        c.sock.settimeout(timeout)
                    c.request(method, target, body=data, headers=headers)
                except OSError as e:
                    if reused and attempt == 1 and isinstance(e, _STALE):
                        raise
                    raise urllib.error.URLError(e)
                sent = True
                r = c.getresponse()
                if stream:
                    # The response alone holds the socket now: closing it
                    # closes the connection (HTTPConnection.close() would
                    # close the response too).
                    sock, c.sock = c.sock, None
                    if sock is not None:
                        sock.close()
                    return r
                body = r.read()
            except BaseException as e:
                c.close()
                if (reused and attempt == 1 and isinstance(e, _STALE)
                        and not isinstance(e, urllib.error.URLError) and (not sent or again)):
                    continue
                raise
            self._give_back(c)
            return r.status, r.headers, body
