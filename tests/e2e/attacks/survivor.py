import os, sys

@requirements({})
def main(token: str):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            # Outlive the run (for a minute: long enough that a survivor
            # cannot pass for one that was killed), then try to leave a mark.
            os.execv("/bin/sh", ["sh", "-c", "sleep 60; echo survived-" + token + " > /tmp/marker", token])
        os._exit(0)
    os.wait()
    return "forked"
