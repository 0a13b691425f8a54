import socket

@requirements({})
def main(port: int):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"hello")
        return "connected"
    except OSError as e:
        return "blocked: " + str(e)
