import os, signal

@requirements({})
def main():
    out = {"ppid": os.getppid()}
    # The parent lives outside the run's pid namespace: getppid() is 0 and
    # kill(0) would only hit our own process group, so it is not tried.
    targets = [("all", -1), ("init", 1)]
    if out["ppid"] > 0:
        targets.append(("parent", out["ppid"]))
    for name, target in targets:
        try:
            os.kill(target, signal.SIGKILL)
            out[name] = "sent"
        except OSError as e:
            out[name] = e.strerror
    return out
