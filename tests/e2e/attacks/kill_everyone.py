import os, signal

@requirements({})
def main():
    out = {}
    for name, target in (("all", -1), ("parent", os.getppid()), ("init", 1)):
        try:
            os.kill(target, signal.SIGKILL)
            out[name] = "sent"
        except OSError as e:
            out[name] = e.strerror
    return out
