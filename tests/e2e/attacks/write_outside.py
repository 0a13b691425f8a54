import os, sys, sysconfig

@requirements({})
def main():
    targets = [os.path.join(sysconfig.get_paths()["stdlib"], "os.py"),
               os.path.join(sysconfig.get_paths()["stdlib"], "evil.pth"),
               "/usr/lib/python3/dist-packages/evil.pth",
               "/usr/local/lib/python3.11/dist-packages/evil.pth",
               "/etc/passwd", "/evil", "/proc/sys/kernel/hostname"]
    targets += [os.path.join(p, "evil.pth") for p in sys.path if p.startswith("/") and "store" in p]
    out = {}
    for t in targets:
        try:
            with open(t, "a") as f:
                f.write("import os; os.system('touch /tmp/pwned')\n")
            out[t] = "WRITTEN"
        except OSError as e:
            out[t] = e.strerror
    return out
