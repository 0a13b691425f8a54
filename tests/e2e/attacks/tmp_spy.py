import os, time

@requirements({})
def main(token: str, wait: float = 0):
    with open("/tmp/secret-" + token, "w") as f:
        f.write(token)
    deadline = time.time() + wait
    seen = set()
    while True:
        seen |= {n for n in os.listdir("/tmp") if n != "secret-" + token}
        seen |= {n for n in os.listdir("/dev/shm")}
        if time.time() >= deadline:
            break
        time.sleep(0.05)
    return {"seen": sorted(seen), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
