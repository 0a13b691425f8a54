"""A client for pysprinterd's HTTP API (docs/api.md), standard library only
(its own small HTTP/1.1 transport over sockets), over kept-alive
connections.

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
import email.utils
import http.client
import inspect
import json
import os
import re
import select
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings

from .runtime import from_jsonable, to_jsonable

TERMINAL = {"succeeded", "failed", "invalid", "deps_failed", "killed", "cancelled", "error", "lost"}
DAG_TERMINAL = {"succeeded", "failed", "cancelled", "invalid", "deps_failed"}


class APIError(Exception):
    """The daemon refused a request: .status (HTTP), .code, .message."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class RunError(Exception):
    """A run did not succeed: .run is the run object, .run_id its id,
    .exit_code the CLI's exit code for it (1 the function raised, 3
    invalid, 4 dependencies, 5 killed by a limit or cancelled, 7
    internal); .type, .message and .traceback are its error's (the
    function's exception when it raised)."""

    def __init__(self, run):
        err = run.get("error") or {}
        self.run = run
        self.run_id = run.get("id")
        self.exit_code = run.get("exit_code")
        self.status = run.get("status")
        self.type = err.get("type") or self.status
        self.message = err.get("message") or ""
        if self.message.startswith(f"{self.type}: "):   # the daemon's "ValueError: …"
            self.message = self.message[len(self.type) + 2:]
        self.traceback = err.get("traceback") or ""
        super().__init__(f"run {run.get('id')} {self.status}: {self.type}: {self.message}")


class DagError(Exception):
    """A DAG run did not succeed (failed, cancelled, invalid, deps_failed):
    .dag is the DAG-run object, .dag_id its id, .status its state, .failed
    the names of the tasks that failed, .message its error."""

    def __init__(self, dag):
        self.dag = dag
        self.dag_id = dag.get("id")
        self.status = dag.get("status")
        self.failed = [t.get("name") for t in dag.get("tasks") or [] if t.get("state") == "failed"]
        err = dag.get("error")
        self.message = (err.get("message") if isinstance(err, dict) else err) or ""
        why = [self.message] if self.message else []
        for t in dag.get("tasks") or []:
            terr = t.get("error")
            if t.get("state") == "failed" and terr:
                why.append(f"{t.get('name')}: " + (terr.get("message") if isinstance(terr, dict) else str(terr)))
        super().__init__(f"DAG run {self.dag_id} {self.status}" + (": " + "; ".join(why) if why else ""))


class AuthError(APIError):
    """401: the daemon knows no such token (missing, mistyped, revoked)."""

    def __init__(self, status, code, message):
        super().__init__(status, code, message)
        # What the CLI says of a 401: where the token comes from.
        self.args = (f"{status} {code}: {message} (the daemon refused the token: pass token=, or set "
                     "PYSPRINTER_TOKEN, or 'token = …' in ~/.config/pysprinter/config)",)


class ForbiddenError(APIError):
    """403: the token is known but lacks the right (a read-only token's
    POST, a limit above the tenant's maximum)."""


class NotFoundError(APIError):
    """404: no such run, function, version, dataset or secret for this
    tenant (another tenant's is the same 404)."""


class ConflictError(APIError):
    """409: the thing is not in a state for this (cancelling a run that
    had already ended)."""


# The APIError subclass of a status; others are APIError itself. Each is an
# APIError, so `except APIError` and .status go on working.
_API_ERRORS = {401: AuthError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError}


def _api_error(status, raw):
    """The APIError of a refused answer: its {"error": {code, message}}
    when the body is one (the daemon's), else code "http" and the body's
    first 500 characters (a proxy's page); of the subclass of its status."""
    cls = _API_ERRORS.get(status, APIError)
    try:
        err = json.loads(raw)["error"]
        return cls(status, err.get("code"), err.get("message"))
    except (ValueError, KeyError, TypeError, AttributeError):
        return cls(status, "http", raw.decode(errors="replace")[:500])


def _retry_after(value, now=None):
    """Seconds to wait for a Retry-After header (RFC 9110 10.2.3): a
    number of seconds or an HTTP date (a date past is 0); 1 when absent or
    unreadable (a proxy's, not the daemon's, may say anything)."""
    if not value:
        return 1.0
    value = value.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 1.0
    if when.tzinfo is None:
        return 1.0
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Client:
    """Talks to one daemon as one tenant. server defaults to
    $PYSPRINTER_SERVER, token to $PYSPRINTER_TOKEN, each else to the CLI's
    config file (~/.config/pysprinter/config), as the CLI reads them. unpickle=True: a
    result sent as pysprinter.pickled(value) is unpickled (only for runs you
    trust: unpickling runs code); otherwise its JSON view is returned.
    It keeps its HTTP/1.1 connections open between calls (one per thread
    in a call at a time, docs/python.md "Connections"): close() or a with
    block closes them."""

    def __init__(self, server=None, token=None, timeout=600.0, unpickle=False):
        # The CLI's order (docs/cli.md): the argument, the environment,
        # then ~/.config/pysprinter/config ("server = URL", "token = T").
        server = server or os.environ.get("PYSPRINTER_SERVER") or _config_value("server")
        if not server:
            raise ValueError("no server: pass server=URL, set PYSPRINTER_SERVER, or write 'server = URL' in "
                             "~/.config/pysprinter/config")
        # A list (the CLI's failover, "URL1,URL2"): the client uses the first.
        self.server = server.split(",")[0].strip().rstrip("/")
        if token is None:
            token = os.environ.get("PYSPRINTER_TOKEN") or _config_value("token")
        self.token = token
        if self.token and any(ch in self.token for ch in "\r\n\0"):
            # It would end the Authorization header early; the message
            # names the cause, never the token.
            raise ValueError("the token holds a line break (CR or LF) or a NUL: a token read from a file keeps "
                             "the file's last line break; strip() it")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not timeout > 0):
            # 0 made the sockets non-blocking (URLError "Operation now in
            # progress"), "5" a TypeError at the first call.
            raise ValueError(f"timeout is a number of seconds above 0, or None for none; not {timeout!r}")
        self.timeout = timeout
        self._conns = _Connections(self.server)
        self._options = {}
        # Opt-in: results a function sent as pysprinter.pickled(value) come
        # back with their Python type (unpickled here, in this process).
        self.unpickle = unpickle

    # ---- HTTP ----------------------------------------------------------------

    def _request(self, method, path, body=None, stream=False, idempotency_key=None, content=None, headers=None):
        """One request on a kept-alive connection. -> (status, headers,
        body bytes); with stream=True -> the unread response, on a connection
        of its own that closing the response closes. Statuses outside 2xx
        come back like any other: the caller maps them. content: (bytes,
        content type) sent in place of a JSON body. headers: more request
        headers."""
        if content is not None:
            data, ctype = content
        elif isinstance(body, dict) and isinstance(body.get("source"), _RawSource):
            # A file that is not UTF-8 goes as its bytes, as the CLI sends
            # it: the daemon answers those in `source` with the validation
            # error FILE:LINE:COL: not valid UTF-8 (docs/api.md).
            data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogateescape")
            ctype = "application/json"
        else:
            data, ctype = (json.dumps(body).encode() if body is not None else None), "application/json"
        headers = {"User-Agent": "pysprinter-python/0.1.0", **(headers or {})}
        if data is not None:
            headers["Content-Type"] = ctype
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if idempotency_key is not None:
            # With it, a request that met a closed connection is sent again
            # (_Connections.request): the daemon answers a repeat with the
            # first run.
            headers["Idempotency-Key"] = idempotency_key
        timeout = self.timeout
        if stream and timeout is not None:
            # A follow stream is silent while the run is: the daemon sends a
            # keep-alive comment every 5 s of silence, so a shorter timeout
            # would end a healthy stream (TimeoutError with timeout=2).
            timeout = max(timeout, _STREAM_TIMEOUT_MIN)
        return self._conns.request(method, path, data, headers, timeout, stream)

    def _call(self, method, path, body=None, idempotency_key=None, content=None, decode=True, headers=None):
        """-> (status, decoded JSON, or the body's bytes without decode); a
        429/503 is retried after Retry-After. headers: more request headers."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        extra = headers
        while True:
            status, headers, raw = self._request(method, path, body, idempotency_key=idempotency_key,
                                                 content=content, headers=extra)
            if 200 <= status < 300:
                return status, (json.loads(raw or b"null") if decode else raw)
            if status in (429, 503) and (deadline is None or time.monotonic() < deadline):
                time.sleep(min(_retry_after(headers.get("Retry-After")), 5))
                continue
            raise _api_error(status, raw)

    def close(self):
        """Closes the client's connections: the idle ones now, those in use
        by another thread when their request ends. A logs(follow=True)
        stream holds its own, closed when the stream ends or its generator
        is closed. The client stays usable: a later call connects again."""
        self._conns.close()

    def __getstate__(self):
        """A client pickles as its settings, not its connections (they are
        this process's): it can be handed to a multiprocessing worker under
        the spawn or forkserver start method, or to concurrent.futures'
        ProcessPoolExecutor, which connects again."""
        return {"server": self.server, "token": self.token, "timeout": self.timeout, "unpickle": self.unpickle,
                "options": self._options}

    def __setstate__(self, state):
        self.server, self.token, self.timeout = state["server"], state["token"], state["timeout"]
        self.unpickle, self._options = state["unpickle"], state["options"]
        self._conns = _Connections(self.server)

    def __repr__(self):
        return f"Client(server={self.server!r})"      # never the token

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def options(self, **fields):
        """A client like this one (the same server, token and connections)
        whose runs and invokes carry these request fields (docs/api.md), as
        Ray's f.options(...) does: the CLI's run options, which a run's own
        keyword arguments leave no room for.

            c.options(data=["words"]).run("job.py", 3)           # --data words
            c.options(limits={"timeout_ms": 5000, "network": True}).invoke("f", e)

        run/submit/map take limits, data, retries, secrets, env (a dict),
        output_data, no_cache; invoke takes limits, data, retries. A field
        not among those is a TypeError here, one the call does not take a
        TypeError when it is made."""
        unknown = sorted(set(fields) - set(_RUN_OPTIONS))
        if unknown:
            raise TypeError(f"options() takes {', '.join(_RUN_OPTIONS)}, not {', '.join(unknown)}")
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._options = {**self._options, **{k: v for k, v in fields.items() if v is not None}}
        return other

    def _with_options(self, body, call):
        """body with this client's options() fields that `call` takes."""
        allowed = _INVOKE_OPTIONS if call == "invoke" else _RUN_OPTIONS
        refused = sorted(set(self._options) - set(allowed))
        if refused:
            raise TypeError(f"{call}() takes the options {', '.join(allowed)}, not {', '.join(refused)}")
        body.update(self._options)
        return body

    # ---- runs ----------------------------------------------------------------

    @staticmethod
    def _source(path_or_function):
        """(source text, filename, function name or None) of a path
        ("file.py" or "file.py::NAME") or of a function object (its file)."""
        if callable(path_or_function):
            fn = inspect.unwrap(path_or_function)
            # A run calls a top-level function of the file by its name: a
            # lambda, a function defined inside another or a method has no
            # such name (the daemon answered 400 "'<lambda>' is not a
            # Python identifier", or "no top-level function 'inner'").
            qualname = getattr(fn, "__qualname__", None)
            if not inspect.isfunction(fn) or fn.__name__ == "<lambda>" or qualname != fn.__name__:
                raise TypeError(f"{qualname or fn!r} is not a function defined at the top level of a file: "
                                "a run calls one by its name (define it with def at the file's top level, "
                                "or pass 'file.py::NAME')")
            path = inspect.getsourcefile(fn)
            if not path:
                raise ValueError(f"cannot find the source file of {fn!r}")
            return _read_source(path), os.path.basename(path), fn.__name__
        path, _, name = os.fspath(path_or_function).partition("::")
        return _read_source(path), os.path.basename(path), name or None

    @staticmethod
    def _arguments(args, kwargs):
        body = {}
        if args:
            body["args"] = [_sendable(to_jsonable(a), f"argument {i + 1}") for i, a in enumerate(args)]
        if kwargs:
            body["kwargs"] = {k: _sendable(to_jsonable(v), f"argument {k!r}") for k, v in kwargs.items()}
        return body

    def _wait_query(self):
        """The query of a request that waits for a run's end: the daemon
        answers within `timeout=` seconds, a 202 with the run still going
        when it has not ended by then, so that no answer takes longer than
        the client's own timeout (which bounds one answer, not a run)."""
        if self.timeout is None:
            return "wait=true"
        return f"wait=true&timeout={max(1, int(self.timeout) - 1)}"

    def _wait_run(self, run):
        """The run object once it has ended: asked again with ?wait=true
        (a long poll, each answer within the client's timeout)."""
        path = f"/v1/runs/{urllib.parse.quote(run['id'], safe='')}?{self._wait_query()}"
        patience = _Patience(self.timeout)
        while run.get("status") not in TERMINAL:
            try:
                _, run = self._call("GET", path)
            except (OSError, http.client.HTTPException, APIError) as e:
                # The run is the daemon's, recorded: a daemon restarting (an
                # upgrade, a crash: it runs the run again, docs/api.md
                # "Delivery"), a network blip or a cluster's gateway cut
                # from its Redis for a while (502, docs/cluster.md) does
                # not lose it. Asked again for up to the client's timeout
                # of failures in a row, as Ray's and Modal's clients
                # reconnect; then the error. Any other refusal is final.
                if not _daemon_away(e) or not patience.failed():
                    raise
                continue
            patience.ok()
        return run

    def _finish(self, status, run):
        """Waits for a run the daemon answered 202 on; returns its value.
        Ctrl-C while it waits cancels the run, as the CLI's Ctrl-C does
        (a hang-up while the POST waited already did, for a run)."""
        try:
            run = self._wait_run(run)
        except KeyboardInterrupt:
            self._cancel_quietly(run["id"])
            raise
        return self.result(run)

    def _cancel_quietly(self, run_id):
        """Cancels a run this call started and is giving up on (Ctrl-C):
        best effort, the interrupt is what the caller sees."""
        try:
            self._request("DELETE", f"/v1/runs/{urllib.parse.quote(run_id, safe='')}")
        except Exception:
            pass

    def get(self, run_id):
        """The run object of run_id (an id or a unique prefix of one), as it
        stands: `pysprinter show --json`."""
        return self._call("GET", f"/v1/runs/{urllib.parse.quote(_run_id(run_id), safe='')}")[1]

    def wait(self, run):
        """Waits for a run (its id or its object, as submit() returns it) to
        end and returns its value as run() does: a RunError if it did not
        succeed. Ctrl-C here stops waiting and leaves the run going."""
        rid = _run_id(run)
        return self.result(self._wait_run({"id": rid}))

    def cancel(self, run):
        """Cancels a queued or running run (its id or its object): `pysprinter
        cancel`. Returns the run object, ended `cancelled` (or still ending
        when that takes the daemon over 10 s); a run that had already ended
        is an APIError 409."""
        return self._call("DELETE", f"/v1/runs/{urllib.parse.quote(_run_id(run), safe='')}")[1]

    def runs(self, limit=100, status=None, before=None, function=None, schedule=None, grep=None):
        """The tenant's run objects, newest first (`pysprinter ps --json`);
        status: a state or a list of states to list only those; before: a
        run (id or object) to list the runs after it in this order, a page
        further back (`ps --before ID`); function: only the runs of that
        deployed function (any version; `ps --function NAME`); schedule:
        only the runs that schedule fired (`ps --schedule NAME`); grep: only
        the runs with that text in their id, file name, function, deployed
        function or schedule, ASCII letters in either case (`ps --grep
        TEXT`, the API's q=). An args, kwargs, result, result_repr,
        error.message or error.traceback over 4 KiB is null in an entry
        and named in its "elided": get() has the whole run, and result() of
        an entry fetches it."""
        query = f"limit={int(limit)}"
        if status is not None:
            query += "&status=" + urllib.parse.quote(status if isinstance(status, str) else ",".join(status))
        if function is not None:
            query += "&function=" + urllib.parse.quote(function, safe="")
        if schedule is not None:
            query += "&schedule=" + urllib.parse.quote(schedule, safe="")
        if grep is not None:
            query += "&q=" + urllib.parse.quote(grep, safe="")
        if before is not None:
            query += "&before=" + urllib.parse.quote(_run_id(before), safe="")
        return self._call("GET", f"/v1/runs?{query}")[1]["runs"]

    def result(self, run):
        """A finished run object's value: the JSON result with bytes read
        back; repr() text (with a warning) when it had no JSON view; a
        RunError when the run did not succeed."""
        if run.get("status") not in TERMINAL:
            # A submitted run's object: it has not failed, it has not ended.
            raise ValueError(f"run {run.get('id')} is {run.get('status')}, not ended: wait() for it")
        if run.get("status") != "succeeded":
            if {"error.message", "error.traceback"} & set(run.get("elided") or ()):
                run = self.get(run["id"])   # a listing's entry: its error whole
            raise RunError(run)
        if {"result", "result_repr"} & set(run.get("elided") or ()):
            # A listing's entry (runs()) leaves a large value out: the
            # whole run has it (docs/api.md "GET /v1/runs").
            run = self.get(run["id"])
        if run.get("result") is None and run.get("result_repr") is not None:
            warnings.warn(f"run {run.get('id')}: the result cannot be represented as JSON; "
                          "this is its repr()", stacklevel=_caller_stacklevel())
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
        return self._call("POST", "/v1/runs", self._with_options(body, "submit"), idempotency_key=key)[1]

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
        return self._finish(*self._submit_waiting(f"/v1/runs?{self._wait_query()}", self._with_options(body, "run"),
                                                  key))

    def _submit_waiting(self, path, body, key):
        """A submit's POST (a run's that waits for its end, ?wait=true; a
        DAG run's, run_dag()): its answer brings the id, so a daemon that dies or restarts while it
        waits (a cluster's gateway killed, an upgrade) would leave the
        caller with neither the id nor the value, and the run going on.
        Sent with an Idempotency-Key (the caller's, or one made here), it
        is sent again while the daemon does not answer, as _wait_run() asks
        again: the daemon answers a repeat with the first run, waiting for
        its end. Before, the first lost connection was raised."""
        key = key or "pyclient-" + base64.b32encode(os.urandom(15)).decode().lower()
        patience = _Patience(self.timeout)
        while True:
            try:
                return self._call("POST", path, body, idempotency_key=key)
            except (OSError, http.client.HTTPException) as e:
                # Refused before anything was sent: no daemon there, no run.
                if patience.since is None and isinstance(e, ConnectionRefusedError):
                    raise
                if not patience.failed():
                    raise

    def deploy(self, name, path_or_function, *, description=None, limits=None, requirements=None, env=None,
               secrets=None, retries=None, url=None, cors=None):
        """Deploys a file's function (or a function object's) as `name`;
        returns the function record (its "version"). The keywords are the
        deploy's fields (docs/api.md `POST /v1/functions`, the CLI's
        `deploy` options): description, limits (its invocations'
        defaults), requirements ({"pkg": "specifier"} for a file without
        @requirements), env (a dict), secrets (names), retries, url (True
        or "public": a function URL), cors (the URL's CORS settings, a
        dict in Lambda's Cors shape; False removes them; None keeps
        them, docs/endpoints.md "Settings")."""
        source, filename, function = self._source(path_or_function)
        body = {"name": name, "source": source, "filename": filename}
        if function:
            body["function"] = function
        fields = {"description": description, "limits": limits, "requirements": requirements, "env": env,
                  "secrets": secrets, "retries": retries, "url": url}
        body.update({k: v for k, v in fields.items() if v is not None})
        if cors is not None:
            body["cors"] = cors or None
        return _warn_of(self._call("POST", "/v1/functions", body)[1])

    def invoke(self, name, *payload, idempotency_key=None, **kwargs):
        """Invokes a deployed function: invoke("f", event) passes the event
        as its one positional argument (like Lambda's invoke); keyword
        arguments are passed as keywords. name may name a version,
        "f::2" as the CLI writes it or "f:2" as Lambda does ("f::$LATEST":
        the latest). idempotency_key: as run()'s."""
        key = _idempotency_key(idempotency_key)
        path, body = self._invoke_request(name, payload, kwargs)
        # Ctrl-C before the daemon's answer has no run id to cancel by: the
        # interrupt closes the connection (_Connections.request), and this
        # header asks the daemon to cancel the invocation on that hang-up,
        # as it does a run()'s. Without it an invocation runs to its end,
        # as Lambda's does (docs/api.md).
        sep = "&" if "?" in path else "?"  # an alias's ?version=
        return self._finish(*self._call("POST", f"{path}{sep}{self._wait_query()}", body, idempotency_key=key,
                                        headers=_CANCEL_ON_HANGUP))

    def submit_invoke(self, name, *payload, idempotency_key=None, **kwargs):
        """Starts an invocation of a deployed function without waiting
        (`pysprinter invoke NAME --detach`, a Lambda Event invocation,
        Modal's .spawn()) and returns its run object: wait() for its value,
        logs() for its output, cancel() to stop it. Arguments as invoke()'s."""
        key = _idempotency_key(idempotency_key)
        path, body = self._invoke_request(name, payload, kwargs)
        return self._call("POST", path, body, idempotency_key=key)[1]

    def _invoke_request(self, name, payload, kwargs):
        """(path, body) of an invoke of name ("f", "f::2", "f:2", "f::prod")."""
        name, version = _function_version(name, aliases=True)
        body = self._with_options(self._arguments(payload, kwargs), "invoke")
        path = f"/v1/functions/{urllib.parse.quote(name, safe='')}/invoke"
        if isinstance(version, str):
            # An alias goes as ?version= (the body's version is a number).
            return path + f"?version={version}", body
        if version:
            body["version"] = version
        return path, body

    def map(self, path_or_function, iterable, concurrency=8, return_exceptions=False):
        """Calls the function once per item (the item is its one argument),
        at most `concurrency` at a time, and returns the values in input
        order. A failure raises its RunError (the calls not started yet are
        not started), or stands in its place with return_exceptions=True."""
        return self._fan_out(path_or_function, ([item] for item in iterable), concurrency, return_exceptions)

    def starmap(self, path_or_function, iterable, concurrency=8, return_exceptions=False):
        """As map(), each item a sequence (a tuple, a list) of the call's
        positional arguments: f(*item), as Modal's .starmap calls it and as
        the CLI's map reads a JSON array line."""
        def arguments(iterable):
            for item in iterable:
                if isinstance(item, (str, bytes, dict)) or not isinstance(item, (tuple, list)):
                    raise TypeError(f"starmap: an item is a tuple or a list of arguments, not {type(item).__name__}")
                yield list(item)
        return self._fan_out(path_or_function, arguments(iterable), concurrency, return_exceptions)

    def _fan_out(self, path_or_function, argument_lists, concurrency, return_exceptions):
        """map() and starmap(): one call per list of positional arguments."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        source, filename, function = self._source(path_or_function)
        # Every item is converted first: one JSON cannot carry refuses the
        # map before any call starts (the CLI's map reads all its input first).
        bodies = []
        for args in argument_lists:
            body = {"source": source, "filename": filename, **self._arguments(args, {})}
            if function:
                body["function"] = function
            bodies.append(self._with_options(body, "map"))
        # Each call is submitted, then waited for: its run id is known while
        # it runs, so that an interrupt (Ctrl-C) cancels the calls in flight
        # as the CLI's map does. Before, the calls ran on to their end and
        # map() returned only then.
        lock = threading.Lock()
        in_flight, stopping = set(), []

        def one(body):
            run = self._call("POST", "/v1/runs", body)[1]
            with lock:
                if stopping:
                    self._cancel_quietly(run["id"])
                in_flight.add(run["id"])
            try:
                return self.result(self._wait_run(run))
            finally:
                with lock:
                    in_flight.discard(run["id"])

        results = [None] * len(bodies)
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            futures = {pool.submit(one, body): i for i, body in enumerate(bodies)}
            try:
                for fut in concurrent.futures.as_completed(futures):
                    i = futures[fut]
                    try:
                        results[i] = fut.result()
                    except (RunError, APIError) as e:
                        if not return_exceptions:
                            raise
                        results[i] = e
            except BaseException as e:
                for fut in futures:
                    fut.cancel()
                if not isinstance(e, (RunError, APIError)):
                    with lock:
                        stopping.append(e)
                        running = list(in_flight)
                    for rid in running:
                        self._cancel_quietly(rid)
                raise
        return results

    # ---- functions, secrets, datasets (the CLI's functions, secret, data) -----

    def functions(self):
        """The latest version of each deployed function (`pysprinter functions`)."""
        return self._call("GET", "/v1/functions")[1]["functions"]

    def function(self, name, version=None):
        """One deployed function's record with its `versions` (`functions
        show`); version: that version's, default the latest. name may say
        the version as invoke() takes it ("NAME:2", a Lambda ARN)."""
        name, named = _function_version(name)
        version = named if version is None else version
        q = f"?version={int(version)}" if version is not None else ""
        return self._call("GET", f"/v1/functions/{_segment(name)}{q}")[1]

    def aliases(self, name):
        """name's aliases, [{name, version, description, updated}] by name
        (`functions aliases NAME`, docs/api.md "Aliases")."""
        return self._call("GET", f"/v1/functions/{_segment(name)}/aliases")[1]["aliases"]

    def set_alias(self, name, alias, version, description=""):
        """Points alias of name at version, creating or moving it
        (`functions alias NAME ALIAS VERSION`); invoke("NAME::ALIAS") then
        runs that version. Returns the alias, with created."""
        body = {"version": int(version), "description": description}
        return self._call("PUT", f"/v1/functions/{_segment(name)}/aliases/{_segment(alias)}", body)[1]

    def delete_alias(self, name, alias):
        """Deletes alias of name (`functions alias rm NAME ALIAS`)."""
        return self._call("DELETE", f"/v1/functions/{_segment(name)}/aliases/{_segment(alias)}")[1]

    def delete_function(self, name, version=None):
        """Deletes a deployed function with every version (`functions rm
        NAME`), or one version alone when name or version says which
        ("NAME:2", a Lambda ARN ending :2; `functions rm NAME:2`): not the
        latest, nor one a schedule is pinned to (409 APIError)."""
        if isinstance(name, str) and name.endswith(":$LATEST"):
            # Read as "no version", it would delete every version.
            raise ValueError(f"{name!r}: $LATEST cannot be deleted alone: name the function to delete every version")
        name, named = _function_version(name)
        version = named if version is None else version
        q = f"?version={int(version)}" if version is not None else ""
        return _warn_of(self._call("DELETE", f"/v1/functions/{_segment(name)}{q}")[1])

    def secrets(self):
        """The tenant's secrets, names and times, never values (`secret ls`)."""
        return self._call("GET", "/v1/secrets")[1]["secrets"]

    def set_secret(self, name, value, allow_empty=False):
        """Sets a secret (`secret set`); runs see it as an environment
        variable when they ask for it: options(secrets=[name]). An empty
        value is refused (400) unless allow_empty, as `secret set
        --allow-empty`."""
        body = {"value": value}
        if allow_empty:
            body["allow_empty"] = True
        return self._call("PUT", f"/v1/secrets/{_segment(name)}", body)[1]

    def delete_secret(self, name):
        return self._call("DELETE", f"/v1/secrets/{_segment(name)}")[1]

    def datasets(self):
        """The tenant's datasets (`data ls`)."""
        return self._call("GET", "/v1/data")[1]["datasets"]

    def dataset(self, name, version=None):
        """One dataset's metadata with its versions (`data ls NAME`)."""
        q = f"?version={int(version)}" if version is not None else ""
        return self._call("GET", f"/v1/data/{_segment(name)}{q}")[1]

    def put_data(self, name, source, filename=None):
        """Stores the next version of dataset NAME (`data put NAME
        FILE|URL`): source is bytes, a file's path, or an http(s):// URL
        the daemon fetches and caches. Returns the version's metadata. The
        body is held in memory (a file up to the daemon's limits)."""
        if isinstance(source, (bytes, bytearray, memoryview)):
            content, fname = (bytes(source), "application/octet-stream"), filename
        elif isinstance(source, str) and source.startswith(("http://", "https://")):
            return self._call("PUT", f"/v1/data/{_segment(name)}", {"url": source})[1]
        else:
            path = os.fspath(source)
            if os.path.isdir(path):
                raise IsADirectoryError(f"{path}: a directory dataset is put with the CLI's `data put` (a tar)")
            with open(path, "rb") as f:
                content = (f.read(), "application/octet-stream")
            fname = filename or os.path.basename(path)
        q = f"?filename={urllib.parse.quote(fname, safe='')}" if fname else ""
        return self._call("PUT", f"/v1/data/{_segment(name)}{q}", content=content)[1]

    def get_data(self, name, version=None):
        """A single-file dataset's bytes (`data get NAME`)."""
        q = f"?version={int(version)}" if version is not None else ""
        return self._call("GET", f"/v1/data/{_segment(name)}/content{q}", decode=False)[1]

    def delete_data(self, name, version=None):
        """Removes a dataset's every version, or one (`data rm`)."""
        q = f"?version={int(version)}" if version is not None else ""
        return self._call("DELETE", f"/v1/data/{_segment(name)}{q}")[1]

    # ---- pipelines and schedules (the CLI's dag and schedule verbs) ----------

    def submit_dag(self, pipeline, params=None, *, concurrency=None, keep_going=None, no_cache=None, files=None,
                   idempotency_key=None):
        """Starts a pipeline (a YAML file, docs/dag.md) on the daemon without
        waiting and returns its DAG-run object, as `pysprinter dag run
        --server` sends it: the pipeline's text and its tasks' files, read
        relative to the pipeline's directory (files: those paths instead of
        the ones found in its `file:` keys). params override its params:.
        idempotency_key: a submit of a key this tenant used within 24 h
        starts nothing and returns that key's DAG run, as submit()'s."""
        key = _idempotency_key(idempotency_key)
        return self._call("POST", "/v1/dags", _dag_body(pipeline, params, concurrency, keep_going, no_cache,
                                                        files), idempotency_key=key)[1]

    def run_dag(self, pipeline, params=None, *, concurrency=None, keep_going=None, no_cache=None, files=None,
                idempotency_key=None):
        """Runs a pipeline as submit_dag() starts it and returns the ended
        DAG-run object (each task's `result` in `tasks`); a DagError when
        it did not succeed. Ctrl-C while it waits cancels the DAG run, as
        the CLI's Ctrl-C does. The submit carries an Idempotency-Key (the
        caller's, or one made here) and is sent again while the daemon
        does not answer it, as run()'s: a repeat starts no second DAG
        run. Before, a lost answer raised, the DAG run going on."""
        key = _idempotency_key(idempotency_key)
        dag = self._submit_waiting("/v1/dags", _dag_body(pipeline, params, concurrency, keep_going, no_cache,
                                                         files), key)[1]
        try:
            return self.wait_dag(dag)
        except KeyboardInterrupt:
            try:
                self._request("DELETE", f"/v1/dags/{_segment(dag['id'])}")
            except Exception:
                pass
            raise

    def wait_dag(self, dag):
        """Waits for a DAG run (its id or its object) to end and returns its
        object; a DagError when it did not succeed. Ctrl-C here stops
        waiting and leaves it going."""
        dag = {"id": _run_id(dag)} if isinstance(dag, str) else dag
        path = f"/v1/dags/{_segment(_run_id(dag))}?{self._wait_query()}"
        patience = _Patience(self.timeout)
        while dag.get("status") not in DAG_TERMINAL:
            try:
                _, dag = self._call("GET", path)
            except (OSError, http.client.HTTPException, APIError) as e:
                # A daemon restarting resumes the DAG run (docs/api.md
                # "Restarts"): asked again as _wait_run() asks for a run.
                if not _daemon_away(e) or not patience.failed():
                    raise
                continue
            patience.ok()
        if dag.get("status") != "succeeded":
            raise DagError(dag)
        return dag

    def get_dag(self, dag):
        """A DAG run's object as it stands (`dag status --json`): its id, a
        unique prefix of it, or its object."""
        return self._call("GET", f"/v1/dags/{_segment(_run_id(dag))}")[1]

    def dags(self, limit=100, status=None):
        """The tenant's DAG runs, newest first, without their tasks (`dag
        ls`); status: a state or a list of states."""
        query = f"limit={int(limit)}"
        if status is not None:
            query += "&status=" + urllib.parse.quote(status if isinstance(status, str) else ",".join(status))
        return self._call("GET", f"/v1/dags?{query}")[1]["dags"]

    def cancel_dag(self, dag):
        """Cancels a DAG run (`dag cancel`): no task starts any more, running
        ones are cancelled. Returns its object; one that had already ended
        is a ConflictError (409)."""
        return self._call("DELETE", f"/v1/dags/{_segment(_run_id(dag))}")[1]

    def dag_logs(self, dag, task):
        """The output of a task's last attempt (`dag logs ID TASK`), as text;
        a ConflictError when the task has not run."""
        raw = self._call("GET", f"/v1/dags/{_segment(_run_id(dag))}/tasks/{_segment(task)}/logs", decode=False)[1]
        return raw.decode("utf-8", "replace")

    def schedules(self):
        """The tenant's schedules (`schedule ls`)."""
        return self._call("GET", "/v1/schedules")[1]["schedules"]

    def schedule(self, name):
        """One schedule with the ids of the runs it started, newest first
        (`schedule show`)."""
        return self._call("GET", f"/v1/schedules/{_segment(name)}")[1]

    def add_schedule(self, name, function=None, *, cron=None, every=None, tz=None, catch_up=None,
                     allow_overlap=None, paused=None, args=None, kwargs=None, version=None, limits=None, data=None,
                     dag=None, params=None, concurrency=None, keep_going=None, no_cache=None):
        """Adds a schedule (`schedule add`, docs/schedules.md): of a deployed
        function (its name; what each fire's invoke carries: args, kwargs,
        version, limits, data) or of a pipeline (dag: its file, sent with
        its tasks' files as run_dag() sends them; params, concurrency,
        keep_going, no_cache). Exactly one of cron ("0 2 * * *") and every
        ("10m", or seconds as a number). Returns the schedule."""
        if (function is None) == (dag is None):
            raise ValueError("add_schedule() takes a function's name or dag=PIPELINE, one of the two")
        if (cron is None) == (every is None):
            raise ValueError("add_schedule() takes cron= or every=, one of the two")
        body = {"name": name}
        if dag is not None:
            body["dag"] = _dag_body(dag, params, concurrency, keep_going, no_cache, None)
        else:
            body["function"] = function
            if args is not None or kwargs is not None:
                body.update(self._arguments(list(args or ()), dict(kwargs or {})))
            fields = {"version": version, "limits": limits, "data": data}
            body.update({k: v for k, v in fields.items() if v is not None})
        fields = {"cron": cron, "every": f"{every}s" if isinstance(every, (int, float)) else every, "tz": tz,
                  "catch_up": catch_up, "allow_overlap": allow_overlap, "paused": paused}
        body.update({k: v for k, v in fields.items() if v is not None})
        return _warn_of(self._call("POST", "/v1/schedules", body)[1])

    def delete_schedule(self, name):
        """Removes a schedule (`schedule rm`); the runs it started stay."""
        return self._call("DELETE", f"/v1/schedules/{_segment(name)}")[1]

    def pause_schedule(self, name):
        return self._call("POST", f"/v1/schedules/{_segment(name)}/pause")[1]

    def resume_schedule(self, name):
        return self._call("POST", f"/v1/schedules/{_segment(name)}/resume")[1]

    # ---- logs ----------------------------------------------------------------

    def logs(self, run_id, follow=True):
        """Yields the run's output text as it is written (stdout and stderr
        interleaved) until the run ends; follow=False yields what there is
        now, once. run_id: the run's id or its object."""
        rid = urllib.parse.quote(_run_id(run_id), safe="")
        if not follow:
            status, _, raw = self._request("GET", f"/v1/runs/{rid}/logs")
            if not 200 <= status < 300:
                raise _api_error(status, raw)
            yield raw.decode("utf-8", "replace")
            return
        # The stream holds its own connection for as long as it lasts: the
        # client's other calls (other threads) go on beside it. A stream
        # that breaks off (a proxy's timeout, a daemon restarting: it runs
        # the run again, docs/api.md "Delivery") is asked for again from
        # where it stood: each output event's id is how many bytes of the
        # log it ends at, sent back as Last-Event-ID, so nothing is yielded
        # twice or missed (docs/api.md "Following a run's output across a
        # cut connection or a restart"). A daemon that does not answer is
        # asked again as _wait_run() asks it.
        # A piece that is not UTF-8 carries its bytes in "base64" (docs/api.md):
        # one incremental decoder per stream joins a character cut between
        # two pieces; other bytes show as U+FFFD, as with follow=False.
        decoders = {}

        def piece(d):
            dec = decoders.setdefault(d.get("stream"), codecs.getincrementaldecoder("utf-8")("replace"))
            if isinstance(d.get("base64"), str):
                return dec.decode(base64.b64decode(d["base64"]))
            return dec.decode(b"", final=True) + d.get("text", "")

        at, patience = 0, _Patience(self.timeout)
        while True:
            try:
                r = self._request("GET", f"/v1/runs/{rid}/logs?follow=1", stream=True,
                                  headers={"Last-Event-ID": str(at)} if at else None)
            except (OSError, http.client.HTTPException):
                if not patience.failed():
                    raise
                continue
            if not 200 <= r.status < 300:
                with r:
                    raise _api_error(r.status, r.read())
            patience.ok()
            with r:
                event, data, event_id = None, [], None
                try:
                    for raw in r:
                        line = raw.decode("utf-8", "replace").rstrip("\r\n")
                        if line.startswith(":"):
                            continue
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("id:"):
                            event_id = line[3:].strip()
                        elif line.startswith("data:"):
                            value = line[5:]
                            data.append(value[1:] if value.startswith(" ") else value)  # one space, per SSE
                        elif line == "":
                            if event == "output" and data:
                                text = piece(json.loads("\n".join(data)))
                                if event_id and event_id.isdigit():
                                    at = int(event_id)
                                if text:
                                    yield text
                            elif event == "end":
                                return
                            event, data, event_id = None, [], None
                except (OSError, http.client.HTTPException):
                    pass  # cut: asked again below, from `at`
            time.sleep(0.05)


# How long a wait for a run goes on asking a daemon that does not answer,
# with timeout=None.
_RECONNECT_FOR_S = 600.0

class _Patience:
    """Asking a daemon that does not answer again (a restart, a network
    blip, a cluster's gateway cut from its Redis), as Ray's and Modal's
    clients reconnect: for up to the client's timeout of failures in a row
    (_RECONNECT_FOR_S with none), pausing 0.2 s, doubling up to 2 s."""

    def __init__(self, timeout):
        self.limit = timeout if timeout is not None else _RECONNECT_FOR_S
        self.ok()

    def ok(self):
        """An answer came: the next failure starts a new count."""
        self.since, self.pause = None, 0.2

    def failed(self):
        """After a failure: pauses and is true (ask again), or is false when
        the failures have lasted the limit (the caller raises)."""
        now = time.monotonic()
        self.since = self.since or now
        if now - self.since >= self.limit:
            return False
        time.sleep(self.pause)
        self.pause = min(self.pause * 2, 2.0)
        return True


def _daemon_away(e):
    """Whether e says the daemon is away for now, not that it refused: a
    connection that failed, or a gateway's 502-504 (docs/cluster.md)."""
    return not isinstance(e, APIError) or e.status in (502, 503, 504)


# The least read timeout of a follow stream: three of the daemon's 5 s
# keep-alives.
_STREAM_TIMEOUT_MIN = 15.0

# Sent with invoke()'s waiting POST: the daemon cancels the invocation when
# this client hangs up before its answer (Ctrl-C), as it does a run()'s.
_CANCEL_ON_HANGUP = {"X-Pysprinter-Cancel-On-Hangup": "true"}

# The request fields options() adds to a run (POST /v1/runs) and to an
# invoke (POST /v1/functions/NAME/invoke).
_RUN_OPTIONS = ("limits", "data", "retries", "secrets", "env", "output_data", "no_cache")
_INVOKE_OPTIONS = ("limits", "data", "retries")


def _config_value(key):
    """KEY's value in the CLI's config file ($XDG_CONFIG_HOME/pysprinter/
    config, else ~/.config/pysprinter/config): the first line "KEY = VALUE"
    (or "KEY: VALUE") not commented out with '#', read as the CLI reads it
    (cli_config_value() in src/cli/cli-common.c); None without one."""
    xdg, home = os.environ.get("XDG_CONFIG_HOME"), os.environ.get("HOME")
    if xdg:
        path = os.path.join(xdg, "pysprinter", "config")
    elif home:
        path = os.path.join(home, ".config", "pysprinter", "config")
    else:
        return None
    try:
        with open(path, "rb") as f:
            text = f.read(64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("#") or not line.startswith(key):
            continue
        rest = line[len(key):].strip()
        if rest[:1] in ("=", ":"):
            return rest[1:].strip()
    return None


class _RawSource(str):
    """A source file's text that is not UTF-8: its bytes decoded with
    surrogateescape, sent back as those bytes."""


def _read_source(path):
    """A file's text exactly as its bytes say (the CLI sends the bytes: no
    newline translation, a CRLF file keeps its CRs and its sha256); a file
    that is not UTF-8 as a _RawSource. Before, the file was read in text
    mode (CRLF became LF, the deploy's source_sha256 differed from the
    CLI's) and one that was not UTF-8 raised UnicodeDecodeError, which
    named no file."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _RawSource(raw.decode("utf-8", "surrogateescape"))


# A `file:` key of a pipeline and its value (plain, "double" or 'single'
# quoted): the client has no YAML parser (standard library only), so it
# looks for the key anywhere; a value that names no file beside the
# pipeline is not a task file (a task's `kwargs: {file: x}`) and is not
# sent — a task's that is missing is then the daemon's 400 naming it.
_FILE_KEY = re.compile(r"""(?:^|[\s{,-])file\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s,}\]#]+)""", re.M)


def _task_files(text):
    """The relative paths the `file:` keys of a pipeline's text name
    (FILE::FUNC gives FILE), in their order, once each."""
    out = []
    for m in _FILE_KEY.finditer(text):
        v = m.group(1)
        if v[:1] == '"':
            try:
                v = json.loads(v)
            except ValueError:
                continue
        elif v[:1] == "'":
            v = v[1:-1].replace("''", "'")
        v = v.partition("::")[0]
        if v and v not in out:
            out.append(v)
    return out


def _inside(base, rel):
    """rel's path under base, or None when it is absolute, has a . or ..
    part, or resolves (through a symlink) outside base: the daemon only
    ever sees the pipeline's own files (docs/dag.md "Against a daemon")."""
    if not rel or os.path.isabs(rel) or any(part in (".", "..") for part in rel.replace("\\", "/").split("/")):
        return None
    path = os.path.join(base, rel)
    real, root = os.path.realpath(path), os.path.realpath(base)
    if not real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    return path


def _dag_body(pipeline, params, concurrency, keep_going, no_cache, files):
    """The body of POST /v1/dags (and a DAG schedule's `dag`) for the
    pipeline file at path `pipeline`: its text and the files its tasks
    name, as `dag run --server` sends them."""
    path = os.fspath(pipeline)
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    base = os.path.dirname(os.path.abspath(path))
    sent = {}
    for rel in (_task_files(text) if files is None else [os.fspath(x) for x in files]):
        where = _inside(base, rel)
        if where is None:
            if files is not None:
                raise ValueError(f"{rel}: a pipeline's files are relative paths inside its directory "
                                 f"({base}), without . or .. parts")
            continue
        if not os.path.isfile(where):
            if files is not None:
                raise FileNotFoundError(f"{where}: no such file")
            continue
        with open(where, "rb") as f:
            sent[rel] = f.read().decode("utf-8")
    body = {"pipeline": text, "filename": os.path.basename(path), "files": sent}
    fields = {"params": params, "concurrency": concurrency, "keep_going": keep_going, "no_cache": no_cache}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _warn_of(answer):
    """answer, after its "warnings" text (a deploy's: what CPython's parser
    said of the file, a schedule the new version refuses; a delete's: the
    schedules that fire the function) is shown as a UserWarning naming the
    caller's line, as the CLI prints it on stderr. Before, it was only a
    field of the returned record, which nobody reads."""
    text = answer.get("warnings") if isinstance(answer, dict) else None
    if isinstance(text, list):
        text = "\n".join(str(t) for t in text)
    if isinstance(text, str) and text.strip():
        warnings.warn(text.rstrip("\n"), UserWarning, stacklevel=_caller_stacklevel())
    return answer


def _segment(name):
    """name as one path segment of a URL."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"a name is a non-empty str, not {name!r}")
    return urllib.parse.quote(name, safe="")


def _run_id(run):
    """A run's id from its id or its object (what submit() returns)."""
    if isinstance(run, dict):
        run = run.get("id")
    if not isinstance(run, str) or not run:
        raise TypeError(f"a run is its id (str) or its object (dict with an 'id'), not {type(run).__name__}")
    return run


# Integers the daemon reads as JSON numbers (64-bit, jansson's json_int_t).
_INT_MIN, _INT_MAX = -2 ** 63, 2 ** 63 - 1


def _sendable(value, what):
    """value, checked to be JSON the daemon reads: no NaN or infinity (not
    JSON at all) and no integer beyond 64 bits (the daemon's JSON holds 64
    bits). ValueError naming the argument otherwise, before anything is
    sent: the daemon's "invalid JSON at line 1 column 503" names a column
    of a body the caller never saw."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            stack.extend(v.values())
        elif t is list:
            stack.extend(v)
        elif t is float:
            if v != v or v in (_INF, -_INF):
                raise ValueError(f"{what} holds {v!r}, which JSON cannot carry: pass it as a string")
        elif t is int and not _INT_MIN <= v <= _INT_MAX:
            raise ValueError(f"{what} holds an integer outside the 64-bit range the daemon reads "
                             f"({v}): pass it as a string, str(n)")
    return value


_INF = float("inf")


def _caller_stacklevel():
    """The stacklevel of a warning raised in this module that names the
    first frame outside it: the caller's own line, for `warnings` to show
    and filter by module (a fixed stacklevel named a line of this file when
    run() and invoke() reached result() through _finish())."""
    f, level = sys._getframe(1), 1
    while f is not None and f.f_code.co_filename == __file__:
        f, level = f.f_back, level + 1
    return level


_ALIAS = re.compile(r"(?![0-9]+$)[A-Za-z0-9_-]{1,128}")


def _function_version(ref, aliases=False):
    """(name, version or None) of "NAME", "NAME::VERSION" or "NAME:VERSION"
    (a function name holds no ':'), also as the end of Lambda's ARN;
    VERSION is a version number as the daemon writes it, or $LATEST, or
    with aliases an alias name (returned as a str: the daemon resolves it,
    docs/api.md "Aliases"). ValueError otherwise, before sending."""
    if not isinstance(ref, str):
        raise TypeError(f"a function name is a str, not {type(ref).__name__}")
    # Lambda's ARN or partial ARN (…:function:NAME[:VERSION]), as the
    # daemon's Lambda route and the CLI read it: any region and account.
    ref = ref.partition(":function:")[2] or ref
    name, sep, version = ref.partition("::") if "::" in ref else ref.partition(":")
    if not sep:
        return ref, None
    if version == "$LATEST":
        return name, None
    if aliases and _ALIAS.fullmatch(version):
        return name, version
    if not version.isascii() or not version.isdigit() or version.startswith("0"):
        raise ValueError(f"{ref!r}: a version is a number (1, 2, …) or $LATEST, as in 'NAME::2'")
    return name, int(version)


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
# before any byte of an answer (Disconnected is a ConnectionResetError).
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
# Limits on an answer's head, as http.client's: a longer line or more
# header lines is a ProtocolError, not memory spent on a broken server.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_RECV = 65536
# A body up to this long is read into one buffer of its Content-Length;
# a longer one in pieces as they come.
_TRUSTED_LENGTH = 1 << 20
_METHODS_WITH_BODY = {"POST", "PUT", "PATCH"}


class ProtocolError(http.client.HTTPException):
    """The server's answer is not HTTP/1.1 this client can read: a
    malformed status line, header line or chunk size, or one too long."""


class Disconnected(http.client.RemoteDisconnected):
    """The server closed the connection before the answer was whole (before
    its first byte, or in its body): a ConnectionResetError, and an
    http.client.RemoteDisconnected as the client raised before."""


class Headers:
    """An answer's header fields in the order received; get() and [] are
    case-insensitive and give the first field of a name (None when there is
    none, as http.client's HTTPMessage), get_all() every one."""

    __slots__ = ("_fields", "_first", "_repeated")

    def __init__(self, fields=()):
        self._fields = fields = list(fields)
        self._first = first = {}
        for name, value in fields:
            first.setdefault(name.lower(), value)
        self._repeated = len(first) < len(fields)

    def get(self, name, default=None):
        return self._first.get(name.lower(), default)

    def __getitem__(self, name):
        return self._first.get(name.lower())

    def get_all(self, name, default=None):
        name = name.lower()
        if not self._repeated:
            return [self._first[name]] if name in self._first else default
        found = [v for n, v in self._fields if n.lower() == name]
        return found or default

    def __contains__(self, name):
        return name.lower() in self._first

    def __repr__(self):
        return f"Headers({self._fields!r})"


def _fields(lines, start, what):
    """Header (or trailer) lines -> [(name, value)]; a line folded onto the
    one before (obs-fold) is joined to it with a space."""
    fields = []
    for i in range(start, len(lines)):
        line = lines[i]
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name or "\t" in name:
            if line[:1] in (" ", "\t") and fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip()}")
                continue
            raise ProtocolError(f"malformed {what} line from the server: {line[:200]!r}")
        fields.append((name, value.strip()))
    return fields


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


class _Conn:
    """One HTTP/1.1 connection: its socket (TCP, or TLS over TCP, possibly
    through a proxy's CONNECT tunnel) and the bytes received on it and not
    read yet. Requests are written in one sendall(); answers are read from
    its own buffer (refilled by one recv() at a time), so a kept-alive
    connection's leftover bytes are seen before it is used again."""

    __slots__ = ("address", "tls", "tunnel", "sock", "buf", "pos", "timeout", "generation")

    def __init__(self, address, tls, tunnel, generation):
        self.address = address          # (host, port) connected to: the server's or the proxy's
        self.tls = tls                  # (SSLContext, server_hostname) or None
        self.tunnel = tunnel            # (b"CONNECT …" request) or None
        self.sock = None
        self.buf, self.pos = b"", 0
        self.timeout = None
        self.generation = generation

    def connect(self, timeout):
        sock = socket.create_connection(self.address, timeout)
        try:
            # Small requests and answers: sent now, not held back waiting
            # for an ACK (Nagle), as http.client does.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock, self.timeout = sock, timeout
            if self.tunnel:
                sock.sendall(self.tunnel)
                status, reason, _, _ = self._head("CONNECT")
                if not 200 <= status < 300:
                    raise OSError(f"Tunnel connection failed: {status} {reason}")
                if self.pos < len(self.buf):
                    raise ProtocolError("the proxy sent bytes after its CONNECT answer")
            if self.tls:
                ctx, hostname = self.tls
                self.sock = ctx.wrap_socket(sock, server_hostname=hostname)
        except BaseException:
            sock.close()
            self.sock = None
            raise

    def close(self):
        sock, self.sock = self.sock, None
        self.buf, self.pos = b"", 0
        if sock is not None:
            sock.close()

    def pending(self):
        """Bytes received and not read: an idle connection with some has an
        answer no request asked for."""
        return self.pos < len(self.buf) or (self.tls is not None and self.sock.pending() > 0)

    # -- reading ------------------------------------------------------------

    def _fill(self):
        """One recv() into the buffer; False at EOF."""
        data = self.sock.recv(_RECV)
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data if self.pos < len(self.buf) else data
        self.pos = 0
        return True

    def readline(self):
        """A line with its b"\\n", or what came before EOF (b"" at EOF)."""
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line = self.buf[self.pos:i + 1]
                self.pos = i + 1
                return line
            if len(self.buf) - self.pos > _MAX_LINE:
                raise ProtocolError(f"a line of the answer is longer than {_MAX_LINE} bytes")
            if not self._fill():
                line = self.buf[self.pos:]
                self.buf, self.pos = b"", 0
                return line

    def read_some(self, n):
        """Up to n (> 0) bytes: what is buffered, else one recv(); b"" at EOF."""
        if self.pos >= len(self.buf) and not self._fill():
            return b""
        piece = self.buf[self.pos:self.pos + n]
        self.pos += len(piece)
        return piece

    def read_exact(self, n, what):
        """n bytes; Disconnected if the connection ends before them."""
        have = len(self.buf) - self.pos
        if have >= n:
            piece = self.buf[self.pos:self.pos + n]
            self.pos += n
            return piece
        if n - have > _TRUSTED_LENGTH:
            # A length is only a promise: memory is spent as its bytes
            # come, not all at once on a number a server sent.
            parts, got = [self.buf[self.pos:]], have
            self.buf, self.pos = b"", 0
            while got < n:
                piece = self.sock.recv(min(n - got, _TRUSTED_LENGTH))
                if not piece:
                    raise Disconnected(f"the server closed the connection after {got} of the {n} bytes of {what}")
                parts.append(piece)
                got += len(piece)
            return b"".join(parts)
        out = bytearray(n)
        out[:have] = self.buf[self.pos:]
        self.buf, self.pos = b"", 0
        view, got = memoryview(out), have
        while got < n:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise Disconnected(f"the server closed the connection after {got} of the {n} bytes of {what}")
            got += k
        return bytes(out)

    def _section(self, what):
        """The lines of a head (a status line and its header lines) or of a
        chunked body's trailers, up to the empty line that ends them, as
        text without their line ends. Usually the whole head came in one
        recv(): it is split at once; else (a head cut between segments,
        lines ending in a bare LF) line by line."""
        if self.pos >= len(self.buf) and not self._fill():
            if what == "head":
                raise Disconnected("the server closed the connection without answering")
            raise Disconnected(f"the server closed the connection in the answer's {what}")
        buf, pos = self.buf, self.pos
        if buf.startswith(b"\r\n", pos):
            self.pos = pos + 2
            return []
        end = buf.find(b"\r\n\r\n", pos)
        if 0 <= end <= pos + _MAX_LINE:
            block = buf[pos:end]
            lines = block.split(b"\r\n")
            if block.count(b"\n") == len(lines) - 1 and len(lines) <= _MAX_HEADERS + 1:
                self.pos = end + 4
                return block.decode("iso-8859-1").split("\r\n")
        lines = []
        while True:
            line = self.readline()
            if not line.endswith(b"\n"):
                if not lines and not line:
                    raise Disconnected("the server closed the connection without answering")
                raise Disconnected(f"the server closed the connection in the answer's {what}")
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            if not line:
                return lines
            if len(lines) > _MAX_HEADERS:
                raise ProtocolError(f"more than {_MAX_HEADERS} lines in the answer's {what}")
            lines.append(line.decode("iso-8859-1"))

    def _head(self, method):
        """Reads a status line and its header lines -> (status, reason,
        version, [(name, value)]): the answer's, 1xx interim ones skipped."""
        while True:
            lines = self._section("head")
            parts = lines[0].split(None, 2) if lines else ()
            if (len(parts) < 2 or len(parts[0]) != 8 or not parts[0].startswith("HTTP/1.")
                    or not parts[0][7].isdigit() or len(parts[1]) != 3 or not parts[1].isdigit()
                    or not parts[1].isascii()):
                raise ProtocolError(f"malformed status line from the server: {(lines or [''])[0][:200]!r}")
            status = int(parts[1])
            # 1xx answers are interim (100 Continue, 103 Early Hints): the
            # answer follows on the same connection. 101 would switch
            # protocols, which no request here asks for.
            if 100 <= status < 200 and status != 101:
                continue
            return status, (parts[2].strip() if len(parts) > 2 else ""), parts[0], _fields(lines, 1, "header")

    def response(self, method):
        """The answer to the request just sent, its head read."""
        status, reason, version, fields = self._head(method)
        headers = Headers(fields)
        if headers._repeated:
            conn = ",".join(headers.get_all("Connection", ()))
            te = ",".join(headers.get_all("Transfer-Encoding", ()))
            lengths = {v.strip() for v in headers.get_all("Content-Length", ())}
            if len(lengths) > 1:
                raise ProtocolError(f"Content-Lengths that differ in the answer: {sorted(lengths)!r}")
            cl = lengths.pop() if lengths else None
        else:
            first = headers._first
            conn, te, cl = first.get("connection", ""), first.get("transfer-encoding"), first.get("content-length")
        conn = conn.lower()
        will_close = "close" in conn or (version == "HTTP/1.0" and "keep-alive" not in conn)
        # The body's length (RFC 9112 6.3): none for these; else chunked;
        # else Content-Length; else up to the connection's end.
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            length = 0
        elif te:
            codings = [c.strip().lower() for c in te.split(",") if c.strip()]
            if codings and codings[-1] == "chunked":
                length = "chunked"
            else:
                length, will_close = None, True
        elif cl is None:
            length, will_close = None, True
        elif cl.isdigit() and cl.isascii():
            length = int(cl)
        else:
            raise ProtocolError(f"bad Content-Length in the answer: {cl!r}")
        return _Response(self, status, reason, headers, length, will_close)


class _Response:
    """An answer whose head is read: .status, .reason, .headers; its body
    through read(), readline() or iterating over its lines (by
    Content-Length, chunked, or up to the connection's end). own=True: it
    holds its connection alone and closing it (or reading its end)
    closes the connection."""

    __slots__ = ("conn", "status", "reason", "headers", "left", "chunked", "will_close", "own", "done",
                 "lines")

    def __init__(self, conn, status, reason, headers, length, will_close):
        self.conn, self.status, self.reason, self.headers = conn, status, reason, headers
        self.chunked = length == "chunked"
        self.left = 0 if self.chunked else length      # bytes left; None: up to EOF
        self.will_close = will_close
        self.own = False
        self.done = length == 0
        self.lines = b""

    def _chunk_size(self):
        """Reads the next chunk's size line (extensions ignored); at the last
        chunk reads the trailers and marks the body done."""
        line = self.conn.readline()
        if not line.endswith(b"\n"):
            raise Disconnected("the server closed the connection in a chunked body")
        size = line.split(b";", 1)[0].strip()
        if not 1 <= len(size) <= 16 or size.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolError(f"malformed chunk size line from the server: {line[:200]!r}")
        self.left = int(size, 16)
        if self.left == 0:
            _fields(self.conn._section("trailers"), 0, "trailer")
            self._end()

    def _chunk_end(self):
        line = self.conn.readline()
        if line not in (b"\r\n", b"\n"):
            if not line.endswith(b"\n"):
                raise Disconnected("the server closed the connection in a chunked body")
            raise ProtocolError(f"a chunk of the answer does not end with CRLF: {line[:200]!r}")

    def _end(self):
        self.done = True
        if self.own:
            self.close()

    def read_some(self, n=_RECV):
        """Up to n bytes of the body as soon as some are there; b"" at its end."""
        while not self.done:
            if self.chunked:
                if self.left == 0:
                    self._chunk_size()
                    continue
                piece = self.conn.read_some(min(n, self.left))
                if not piece:
                    raise Disconnected("the server closed the connection in a chunked body")
                self.left -= len(piece)
                if self.left == 0:
                    self._chunk_end()
                return piece
            if self.left is None:
                piece = self.conn.read_some(n)
                if not piece:
                    self._end()
                return piece
            piece = self.conn.read_some(min(n, self.left))
            if not piece:
                raise Disconnected(f"the server closed the connection with {self.left} bytes of the body unsent")
            self.left -= len(piece)
            if self.left == 0:
                self._end()
            return piece
        return b""

    def read(self, amt=None):
        if amt is not None:
            out = bytearray(self.lines[:amt])
            self.lines = self.lines[amt:]
            while len(out) < amt:
                piece = self.read_some(amt - len(out))
                if not piece:
                    break
                out += piece
            return bytes(out)
        if self.left and not self.chunked and not self.lines:
            body, self.left = self.conn.read_exact(self.left, "the answer's body"), 0
            self._end()
            return body
        pieces = [self.lines]
        self.lines = b""
        while True:
            piece = self.read_some()
            if not piece:
                return b"".join(pieces)
            pieces.append(piece)

    def readline(self):
        """The body's next line with its b"\\n" (the last one may have
        none); b"" at the body's end. A line longer than a piece is joined
        once, not grown piece by piece."""
        i = self.lines.find(b"\n")
        if i >= 0:
            line, self.lines = self.lines[:i + 1], self.lines[i + 1:]
            return line
        parts, self.lines = [self.lines], b""
        while True:
            piece = self.read_some()
            if not piece:
                return b"".join(parts)
            i = piece.find(b"\n")
            if i >= 0:
                parts.append(piece[:i + 1])
                self.lines = piece[i + 1:]
                return b"".join(parts)
            parts.append(piece)

    def __iter__(self):
        return iter(self.readline, b"")

    def close(self):
        if self.own:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
        # The Host header as http.client wrote it: the port only when it is
        # not the scheme's.
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == (443 if self.https else 80) else f"{host}:{self.port}"
        self.proxy, self.proxy_headers = None, {}
        proxy = urllib.request.getproxies().get(u.scheme)
        if proxy and not urllib.request.proxy_bypass(u.netloc.rpartition("@")[2]):
            p = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
            self.proxy = (p.hostname, p.port or 80)
            if p.username is not None:
                cred = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}"
                self.proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        # The default SSL context (certificates and host name verified,
        # SSL_CERT_FILE honoured), as urllib's HTTPSHandler; made once per
        # Client, as the proxies are read once.
        self.tls = None
        if self.https:
            ctx = ssl.create_default_context()
            ctx.set_alpn_protocols(["http/1.1"])
            self.tls = (ctx, self.host)
        self.tunnel = None
        if self.https and self.proxy:
            target = f"{host}:{self.port}"
            self.tunnel = (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
                           + "".join(f"{k}: {v}\r\n" for k, v in self.proxy_headers.items())
                           + "\r\n").encode("iso-8859-1")
        self.lock = threading.Lock()
        self.idle = []          # [(connection, monotonic time it became idle)]
        self.generation = 0     # close() moves it on: older connections are not kept
        self.pid = os.getpid()  # a fork's child keeps none of its parent's connections

    def _new(self):
        return _Conn(self.proxy or (self.host, self.port), self.tls, self.tunnel, self.generation)

    def _forked(self):
        """In a child of os.fork() (multiprocessing's default on Linux):
        forgets the parent's connections. Their sockets are the parent's
        too, and two processes writing requests and reading answers on one
        connection get each other's answers. The lock is made again: a
        thread of the parent may have held it at the fork."""
        self.pid = os.getpid()
        self.lock = threading.Lock()
        idle, self.idle = self.idle, []
        self.generation += 1
        for c, _ in idle:
            c.close()           # this process's descriptor only: no FIN, the parent's goes on

    def _take(self):
        """-> (connection, whether it carried a request before)."""
        if self.pid != os.getpid():
            self._forked()
        with self.lock:
            now = time.monotonic()
            # The oldest lie at the bottom of the stack: close the ones past
            # reuse, not only the one on top.
            while self.idle and now - self.idle[0][1] >= _MAX_IDLE_S:
                self.idle.pop(0)[0].close()
            while self.idle:
                c, since = self.idle.pop()
                if c.sock is not None and now - since < _MAX_IDLE_S and not c.pending() and not _unusable(c.sock):
                    return c, True
                c.close()
            return self._new(), False

    def _give_back(self, c):
        if self.pid != os.getpid():
            self._forked()
        with self.lock:
            if c.sock is not None and c.generation == self.generation and len(self.idle) < _MAX_KEPT:
                self.idle.append((c, time.monotonic()))
                return
        c.close()

    def close(self):
        if self.pid != os.getpid():
            self._forked()
        with self.lock:
            self.generation += 1
            idle, self.idle = self.idle, []
        for c, _ in idle:
            c.close()

    def _encode(self, method, target, data, headers):
        """The request's bytes: request line, headers and body, sent in one
        sendall() (one segment for a small request, one wakeup of the
        server)."""
        if _BAD_TARGET(target):
            raise http.client.InvalidURL(f"URL can't contain control characters: {target!r}")
        fields = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        # A CR, LF or NUL inside a name or value would end the field early
        # or forge another: one line per field, or the request is refused.
        n = len(headers)
        if fields.count("\n") != n or fields.count("\r") != n or "\0" in fields:
            # Names only: a value may be a credential (Authorization).
            bad = [k for k, v in headers.items() if any(ch in f"{k}{v}" for ch in "\r\n\0")]
            raise ValueError(f"the header {', '.join(bad)} holds CR, LF or NUL in its name or value")
        if data is not None:
            length = f"Content-Length: {len(data)}\r\n"
        else:
            length = "Content-Length: 0\r\n" if method in _METHODS_WITH_BODY else ""
        head = (f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\nAccept-Encoding: identity\r\n"
                f"{fields}{length}\r\n").encode("iso-8859-1")
        return head + data if data else head

    def request(self, method, path, data, headers, timeout, stream):
        """-> (status, headers, body) or, with stream, the unread response
        owning a connection of its own. A request that meets a kept-alive
        connection the server closed is sent again once on a new one, when
        that cannot do its work twice: it failed while it was sent (the
        server never had all of it), or its method is idempotent, or it
        carries an Idempotency-Key. Errors as urllib's: connecting or
        sending raises urllib.error.URLError, reading the answer raises
        what the socket raised, Disconnected or ProtocolError."""
        if self.proxy and not self.https:
            target = self.origin + self.prefix + path
            headers = {**headers, **self.proxy_headers}
        else:
            target = self.prefix + path
        wire = self._encode(method, target, data, headers)
        again = method in _IDEMPOTENT or "Idempotency-Key" in headers
        for attempt in (1, 2):
            # A retry takes a new connection: the server that closed one
            # idle connection may have closed the others too.
            c, reused = (self._new(), False) if stream or attempt == 2 else self._take()
            sent = False
            try:
                try:
                    if c.sock is None:
                        c.connect(timeout)
                    elif c.timeout != timeout:
                        c.sock.settimeout(timeout)
                        c.timeout = timeout
                    c.sock.sendall(wire)
                except OSError as e:
                    # A server may answer before it has read the whole
                    # request and close (the daemon's 413 for a body over
                    # its limit, announced by Content-Length): the send then
                    # fails with a reset, and the answer is still there to
                    # read. Before, that was URLError "Connection reset by
                    # peer" in place of the daemon's 413.
                    early = _early_answer(c, method) if isinstance(e, _STALE) and not stream else None
                    if early is not None:
                        c.close()
                        return early
                    if reused and attempt == 1 and isinstance(e, _STALE):
                        raise
                    raise urllib.error.URLError(e)
                sent = True
                r = c.response(method)
                if stream:
                    r.own = True
                    if r.done:
                        c.close()
                    return r
                body = r.read()
            except BaseException as e:
                c.close()
                if (reused and attempt == 1 and isinstance(e, _STALE)
                        and not isinstance(e, urllib.error.URLError) and (not sent or again)):
                    continue
                raise
            if r.will_close:
                c.close()
            else:
                self._give_back(c)
            return r.status, r.headers, body


def _early_answer(c, method):
    """(status, headers, body) of an answer a server sent on c before a
    request's send failed, or None when there is none whole."""
    try:
        r = c.response(method)
        return r.status, r.headers, r.read()
    except Exception:
        return None


_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]").search
