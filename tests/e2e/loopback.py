"""A loopback TCP server for tests that script, byte for byte, what a
server sends to pysprinter.Client (tests/e2e/test_python_client_*.py):
it listens on 127.0.0.1 (a free port), calls serve(sock) in a thread per
accepted connection and counts them; requests_on() reads the HTTP/1.1
requests sent on such a socket (read_head() and read_body() each part)."""
import socket
import threading


class LoopbackServer:
    """Subclasses define serve(sock) (the socket is theirs to close) and set
    their own fields before calling __init__, which starts accepting."""

    def __init__(self):
        self.connections = 0
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.serve, args=(s,), daemon=True).start()

    def serve(self, s):
        raise NotImplementedError

    def stop(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)      # wakes the accept() of the thread
        except OSError:
            pass
        self.lsock.close()


def read_head(s, buf):
    """-> (request line, {lower-cased name: value}, bytes after the head),
    or None when the client closes (or resets) the connection first."""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = s.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return lines[0], headers, buf


def read_body(s, buf, need):
    """-> (the need bytes of a body, the bytes after it), or None when the
    connection ends first."""
    data = bytearray(buf)
    while len(data) < need:
        try:
            chunk = s.recv(1 << 20)
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data[:need]), bytes(data[need:])


def requests_on(s, at_head=None):
    """Yields (request line, headers, body) for each request read whole on
    s, until the client closes. at_head(line, headers), when given, is
    called as each head is read: False ends the connection's requests
    there, before the body is read."""
    buf = b""
    while True:
        got = read_head(s, buf)
        if got is None:
            return
        line, headers, buf = got
        if at_head is not None and at_head(line, headers) is False:
            return
        got = read_body(s, buf, int(headers.get("content-length", 0)))
        if got is None:
            return
        body, buf = got
        yield line, headers, body


def relay(a, b):
    """Copies what socket a receives to b until a ends or either fails,
    then shuts both down (one direction of a TCP proxy)."""
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for x in (a, b):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
