import signal, time

@requirements({})
def main():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(1000)
